"""Helpers shared by the backend modules (no framework imports here).

Inputs are checked by :func:`rnn_ref.inputs.check_inputs`; a backend that takes right-padded
lengths only asks :meth:`rnn_ref.inputs.Inputs.lengths_or_none`.
"""

from __future__ import annotations

import warnings

from rnn_ref.errors import SemanticsWarning, UnsupportedError
from rnn_ref.network import SHOWS_PADDED_STEPS
from rnn_ref.params import RNNParams

__all__ = ["adopt_padded_output", "raise_if"]


def raise_if(reason: tuple[str, str] | None, target: str) -> None:
    """Raise :class:`UnsupportedError` when ``reason`` (feature, why) is set."""
    if reason is not None:
        raise UnsupportedError(target, *reason)



#: What each ``padded_output`` means, for messages.
_PADDED_MEANING = {
    "zeros": "zeros",
    "carry_output": "the last output (zeros before the first valid step)",
    "carry_state": "the carried state (h0 before the first valid step)",
}


def adopt_padded_output(params: RNNParams, native: str, target: str, *,
                        strict: bool = False) -> RNNParams:
    """``params`` under the padded-step behaviour ``native`` of ``target`` (a framework that
    computes padded steps one way only), for a converter.

    When ``params`` says otherwise, the weights still convert: a :class:`SemanticsWarning`
    names both behaviours (only inputs with padding or a mask differ), and the returned params
    record the target's. A network that selects final states computes the same result either
    way: no warning. With ``strict=True`` that is an :class:`UnsupportedError` instead.
    """
    mine = params.config.padded_output
    if mine == native:
        return params
    if params.config.select not in SHOWS_PADDED_STEPS:  # the result is the same either way
        return params.replace(padded_output=native)
    what = (f"padded_output {mine!r} (a padded step outputs {_PADDED_MEANING[mine]}); "
            f"{target} outputs {_PADDED_MEANING[native]} there ({native!r})")
    if strict:
        raise UnsupportedError(target, what, "pass strict=False to convert the weights anyway")
    warnings.warn(f"{what}. The weights convert exactly; outputs at padded or masked steps "
                  f"will differ. The result records padded_output={native!r}.",
                  SemanticsWarning, stacklevel=3)
    return params.replace(padded_output=native)
