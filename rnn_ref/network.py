r"""The pieces of a network around the recurrent stack: the head, the selection, and the layers
that are the identity at inference.

A model as people train it (docs/spec.md section 2.6)::

    ids (N, T) --embedding--> x (N, T, D) --recurrent layers--> o (N, T, F)
        --select--> s (N, T, F) or (N, F) --head: dense_1 ... dense_J--> y

* :class:`Dense` is one dense layer of the head, ``y = g(s @ w + b)``, applied on the last
  axis (per step when the selection keeps the time axis: Keras ``Dense`` on a sequence and
  ``TimeDistributed(Dense)``, torch ``nn.Linear`` on ``out``). Its activation ``g`` is one of
  the cell activations (:data:`rnn_ref.ACTIVATIONS`) or :class:`Softmax`.
* :data:`SELECTS` says what the recurrent stack hands to the head (or returns without one).
* :class:`Identity` records a layer that computes nothing at inference (a dropout, noise), with
  its rate and where it sits, so that no layer of a model is silently lost and a converter can
  write it back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rnn_ref.activations import Activation, as_activation

__all__ = [
    "IDENTITY_KINDS", "POOLINGS", "RETURN_NAMES", "SELECTS", "SHOWS_PADDED_STEPS", "Dense",
    "HeadActivation", "Identity", "Softmax", "as_head_activation", "check_returns", "head_vjp",
    "pool", "pool_vjp", "state_entry", "state_item",
]

Array = npt.NDArray[np.floating]

#: What the recurrent stack hands on (the head's input, or the network's result without a head):
#:
#: ``"sequence"``  the last layer's merged outputs at every step, ``(N, T, F)``;
#: ``"last_step"`` those outputs at position ``T - 1``, ``(N, F)`` (torch ``out[:, -1]``; for a
#:                 padded sample it is the padded value, and for a bidirectional layer the
#:                 backward half is the state after its *first* processed step);
#: ``"final"``     the last layer's final states merged by its merge mode, ``(N, F)`` (Keras
#:                 ``return_sequences=False``; torch ``h_n[-1]`` of a one-direction layer,
#:                 ``cat([h_n[-2], h_n[-1]], 1)`` of a bidirectional one);
#: ``"final_forward"``, ``"final_backward"``  one direction's final state of a bidirectional
#:                 last layer, ``(N, M)`` (torch ``h_n[-2]`` and ``h_n[-1]``);
#: ``"mean_valid"`` the mean of the outputs over each sample's valid steps, ``(N, F)`` (Keras
#:                 ``GlobalAveragePooling1D``, masked or not; zeros for a sample with no valid
#:                 step, where Keras divides 0 by 0);
#: ``"mean_all"``  the mean over all T steps, padded steps included with what they output
#:                 (torch ``out.mean(dim=1)``, after ``pad_packed_sequence`` too);
#: ``"max_all"``   the maximum over all T steps, padded steps included (torch
#:                 ``out.max(dim=1).values``; Keras ``GlobalMaxPooling1D``, which ignores a mask).
SELECTS: tuple[str, ...] = ("sequence", "last_step", "final", "final_forward", "final_backward",
                            "mean_valid", "mean_all", "max_all")
#: The selections that pool the outputs over time (spec section 2.6).
POOLINGS: tuple[str, ...] = ("mean_valid", "mean_all", "max_all")
#: The selections that hand on a padded step's output (so ``padded_output`` reaches the
#: result); a final state is the last valid one, a valid-step mean sees no padded step, and a
#: lower layer's padded outputs feed only padded steps above.
SHOWS_PADDED_STEPS: tuple[str, ...] = ("sequence", "last_step", "mean_all", "max_all")

#: What a model with several outputs returns, each entry one of: ``"result"`` (the head's
#: output, else the selection), ``"sequence"`` (the last layer's merged outputs ``(N, T, F)``),
#: ``"h_n"`` (every final state, ``(S, N, M)``), or ``"h_n[k]"`` (final state k, ``(N, M_k)``,
#: k from -S to S-1: Keras ``return_state=True`` returns ``h_n[-1]``, or ``h_n[-2]`` and
#: ``h_n[-1]`` for a bidirectional layer), and for LSTM layers ``"c_n"`` (every cell state,
#: ``(C, N, M)``) or ``"c_n[k]"`` (Keras' LSTM returns ``h_n[-1]``, ``c_n[-1]``).
#: ``("result",)``, the default, is one output.
RETURN_NAMES: tuple[str, ...] = ("result", "sequence", "h_n", "h_n[k]", "c_n", "c_n[k]")
_STATE_ITEM = re.compile(r"([hc])_n\[(-?\d{1,4})\]")


def check_returns(returns: Any, num_states: int, num_cell_states: int = 0) -> tuple[str, ...]:
    """``returns`` validated (:data:`RETURN_NAMES`): a non-empty sequence of names, state
    indices within the S = ``num_states`` final states (C = ``num_cell_states`` cell states
    for ``c_n``); ``"h_n[-1]"`` is kept as written."""
    if isinstance(returns, str) or not isinstance(returns, (list, tuple)) or not returns:
        raise ValueError(f"returns must be a non-empty list of {list(RETURN_NAMES)}, got "
                         f"{returns!r}")
    if len(set(returns)) != len(returns):
        raise ValueError(f"returns names an output twice: {list(returns)}")
    counts = {"h": num_states, "c": num_cell_states}
    seen: set[tuple[str, int]] = set()
    for item in returns:
        match = _STATE_ITEM.fullmatch(item) if isinstance(item, str) else None
        if match is not None:
            which, k = match.group(1), int(match.group(2))
            n = counts[which]
            what = "final states" if which == "h" else "LSTM cell states"
            if not -n <= k < n:
                raise ValueError(f"returns names {item!r}, but the network has {n} {what}"
                                 + (f" ({which}_n[{-n}] to {which}_n[{n - 1}])" if n else ""))
            if (which, k % n) in seen:
                raise ValueError(f"returns names a final state twice: {list(returns)}")
            seen.add((which, k % n))
        elif item == "c_n" and not num_cell_states:
            raise ValueError("returns names 'c_n', but the network has no LSTM layer")
        elif item not in ("result", "sequence", "h_n", "c_n"):
            raise ValueError(f"returns: {item!r} is not one of {list(RETURN_NAMES)}")
    return tuple(returns)


def state_item(name: str) -> int | None:
    """k of a ``"h_n[k]"`` entry of ``returns``; ``None`` for the other names (``c_n[k]``
    included: :func:`state_entry` reads both)."""
    match = _STATE_ITEM.fullmatch(name)
    return None if match is None or match.group(1) != "h" else int(match.group(2))


def state_entry(name: str) -> tuple[str, int] | None:
    """``("h_n", k)`` or ``("c_n", k)`` for an entry ``"h_n[k]"`` / ``"c_n[k]"`` of
    ``returns``; ``None`` for the other names."""
    match = _STATE_ITEM.fullmatch(name)
    return None if match is None else (f"{match.group(1)}_n", int(match.group(2)))


def pool(how: str, outputs: Any, valid: npt.NDArray[np.bool_] | None) -> Any:
    """The pooling selection ``how`` (:data:`POOLINGS`) of the merged ``outputs (N, T, F)``;
    ``valid (N, T)`` marks each sample's valid steps (``None``: every step is valid)::

        mean_valid   s[n] = sum_{t valid} o[n, t] / #valid(n)    (0 when #valid(n) = 0)
        mean_all     s[n] = sum_t o[n, t] / T                      (0 when T = 0)
        max_all      s[n] = max_t o[n, t]                          (T >= 1)
    """
    o = np.asarray(outputs)
    if how == "max_all":
        return o.max(axis=1)
    if how == "mean_all" or valid is None:
        return o.sum(axis=1) / max(o.shape[1], 1)
    count = valid.sum(axis=1).astype(o.dtype)[:, None]  # (N, 1)
    total = np.where(valid[:, :, None], o, 0).sum(axis=1)
    return total / np.maximum(count, 1)


def pool_vjp(how: str, outputs: Any, valid: npt.NDArray[np.bool_] | None, g: Any
             ) -> npt.NDArray[np.floating]:
    """dL/d outputs ``(N, T, F)`` of :func:`pool` from dL/d s ``g (N, F)``: spread evenly over
    the steps the mean takes (``g / #valid`` or ``g / T``); for the maximum, all to the first
    step that attains it (as ``argmax`` picks)."""
    o = np.asarray(outputs)
    n, t_len, f = o.shape
    grad = np.zeros(o.shape)
    if how == "max_all":
        first = o.argmax(axis=1)  # (N, F)
        np.put_along_axis(grad, first[:, None, :], np.asarray(g)[:, None, :], axis=1)
        return grad
    if how == "mean_all" or valid is None:
        return grad + np.asarray(g)[:, None, :] / max(t_len, 1)
    count = np.maximum(valid.sum(axis=1), 1)[:, None, None]
    return np.where(valid[:, :, None], np.asarray(g)[:, None, :] / count, 0.0)

#: Layers that are the identity at inference, with what their ``rate`` means.
IDENTITY_KINDS: Mapping[str, str] = {
    "dropout": "the fraction dropped in training (Keras Dropout, torch nn.Dropout, nn.RNN's "
               "dropout between layers)",
    "spatial_dropout_1d": "the fraction of features dropped (Keras SpatialDropout1D)",
    "gaussian_noise": "the standard deviation of the noise (Keras GaussianNoise)",
    "gaussian_dropout": "the drop probability (Keras GaussianDropout)",
    "alpha_dropout": "the drop probability (Keras AlphaDropout, torch nn.AlphaDropout)",
    "input_dropout": "the fraction of a layer's inputs dropped (Keras SimpleRNN(dropout=...))",
    "recurrent_dropout": "the fraction of a layer's states dropped (Keras "
                         "SimpleRNN(recurrent_dropout=...))",
}


@dataclass(frozen=True)
class Softmax:
    """Softmax (``name="softmax"``) or log-softmax (``"log_softmax"``) over the last axis, a
    head activation (never a cell's: it is not elementwise).

    softmax(z)_k = exp(z_k - max z) / sum_j exp(z_j - max z); log_softmax(z) = z - max z -
    log sum_j exp(z_j - max z).
    """

    name: str

    def __post_init__(self) -> None:
        if self.name not in ("softmax", "log_softmax"):
            raise ValueError(f"Softmax: name must be 'softmax' or 'log_softmax', got {self.name!r}")

    def __call__(self, z: Array) -> Array:
        z = np.asarray(z)
        shifted = z - z.max(axis=-1, keepdims=True)
        e = np.exp(shifted)
        total = e.sum(axis=-1, keepdims=True)
        return e / total if self.name == "softmax" else shifted - np.log(total)

    def vjp(self, z: Array, g: Array) -> Array:
        """dL/dz from dL/dy ``g`` (both of z's shape): for softmax ``y * (g - sum(g y))``, for
        log-softmax ``g - softmax(z) * sum(g)``, the sums over the last axis."""
        s = Softmax("softmax")(z)
        if self.name == "softmax":
            return s * (g - (g * s).sum(axis=-1, keepdims=True))
        return g - s * g.sum(axis=-1, keepdims=True)

    def to_json(self) -> str:
        return self.name

    def __str__(self) -> str:
        return self.name


#: A head layer's activation: an elementwise :class:`~rnn_ref.Activation` or :class:`Softmax`.
HeadActivation = Activation | Softmax


def as_head_activation(spec: Any, *, where: str) -> HeadActivation:
    """A cell activation (name, mapping or :class:`~rnn_ref.Activation`), or ``"softmax"`` /
    ``"log_softmax"`` (or a :class:`Softmax`)."""
    if isinstance(spec, Softmax):
        return spec
    if spec in ("softmax", "log_softmax"):
        return Softmax(spec)
    try:
        return as_activation(spec, where=where)
    except ValueError as exc:
        raise ValueError(f"{exc}; a head layer also allows 'softmax', 'log_softmax'") from None


def head_vjp(g_fn: HeadActivation, z: Array, g: Array) -> Array:
    """dL/dz of ``y = g_fn(z)`` from dL/dy ``g`` (both of z's shape)."""
    if isinstance(g_fn, Softmax):
        return g_fn.vjp(z, g)
    return g * g_fn.derivative(z)


@dataclass(frozen=True, init=False)
class Dense:
    """One dense layer of the head: ``y = g(s @ w + b)`` on the last axis.

    Args:
        units: K, the output width (an int or NumPy integer).
        activation: g, a cell activation or ``"softmax"`` / ``"log_softmax"``; default linear.
        bias: ``False`` for a layer without a bias (Keras ``use_bias=False``, torch
            ``bias=False``); its ``b`` is then all zeros.
    """

    units: int
    activation: HeadActivation
    bias: bool

    def __init__(self, units: Any, activation: Any = "linear", bias: bool = True) -> None:
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"Dense: units must be a positive int, got {units!r}")
        if not isinstance(bias, bool):
            raise ValueError(f"Dense: bias must be True or False, got {bias!r}")
        object.__setattr__(self, "units", int(units))
        object.__setattr__(self, "activation",
                           as_head_activation(activation, where="Dense activation"))
        object.__setattr__(self, "bias", bias)

    @classmethod
    def parse(cls, spec: Any, where: str) -> Dense:
        """A :class:`Dense`, an int (linear, with bias), a ``(units, activation)`` or
        ``(units, activation, bias)`` tuple, or a ``{"units", "activation", "bias"}`` mapping."""
        if isinstance(spec, Dense):
            return spec
        try:
            if isinstance(spec, Mapping):
                extra = set(spec) - {"units", "activation", "bias"}
                if "units" not in spec or extra:
                    raise ValueError(f"a mapping needs 'units' and at most 'activation', "
                                     f"'bias'; got keys {sorted(spec)}")
                return cls(spec["units"], spec.get("activation", "linear"),
                           spec.get("bias", True))
            if isinstance(spec, (list, tuple)) and 1 <= len(spec) <= 3:
                return cls(*spec)
            if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
                return cls(spec)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        raise ValueError(f"{where}: expected a Dense, units, (units, activation[, bias]) or a "
                         f"mapping, got {spec!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"units": self.units, "activation": self.activation.to_json(), "bias": self.bias}

    def __str__(self) -> str:
        return f"Dense({self.units}, {self.activation}{'' if self.bias else ', no bias'})"


@dataclass(frozen=True)
class Identity:
    """A layer that is the identity at inference, recorded with its rate and position.

    Args:
        kind: one of :data:`IDENTITY_KINDS`.
        rate: what the layer's parameter is (a rate in ``[0, 1)``, or a standard deviation
            ``>= 0`` for ``gaussian_noise``).
        after: where it sits: ``0`` on the network's input (after the embedding), ``l`` for
            ``1 <= l <= L`` after recurrent layer ``l - 1`` (``L``: after the last layer and its
            selection), ``L + 1 + j`` after head layer ``j``. For ``input_dropout`` and
            ``recurrent_dropout`` (a cell's own), ``after = l`` means recurrent layer ``l``
            itself.
    """

    kind: str
    rate: float
    after: int

    def __post_init__(self) -> None:
        if self.kind not in IDENTITY_KINDS:
            raise ValueError(f"Identity: kind must be one of {list(IDENTITY_KINDS)}, "
                             f"got {self.kind!r}")
        r = self.rate
        if isinstance(r, bool) or not isinstance(r, (int, float, np.floating)) or not (
            0 <= r < (float("inf") if self.kind == "gaussian_noise" else 1)
        ):
            allowed = ">= 0 and finite" if self.kind == "gaussian_noise" else "in [0, 1)"
            raise ValueError(f"Identity {self.kind}: rate must be {allowed}, got {r!r}")
        a = self.after
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < 0:
            raise ValueError(f"Identity {self.kind}: after must be an int >= 0, got {a!r}")
        object.__setattr__(self, "rate", float(r))
        object.__setattr__(self, "after", int(a))

    @classmethod
    def parse(cls, spec: Any, where: str) -> Identity:
        """An :class:`Identity`, a ``(kind, rate, after)`` tuple or a mapping of those keys."""
        if isinstance(spec, Identity):
            return spec
        try:
            if isinstance(spec, Mapping):
                if set(spec) != {"kind", "rate", "after"}:
                    raise ValueError(f"a mapping needs exactly 'kind', 'rate', 'after'; got "
                                     f"keys {sorted(spec)}")
                return cls(spec["kind"], spec["rate"], spec["after"])
            if isinstance(spec, (list, tuple)) and len(spec) == 3:
                return cls(*spec)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        raise ValueError(f"{where}: expected an Identity, (kind, rate, after) or a mapping, "
                         f"got {spec!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rate": self.rate, "after": self.after}
