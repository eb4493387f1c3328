"""The one input boundary: every entry point checks its inputs here, the same way.

:func:`check_inputs` checks what a forward (or backward) pass is given, ``x``, ``h0``,
``lengths`` and ``mask`` (docs/spec.md sections 3.5, 4.3, 4.4 and 5.4), against a config and
returns them validated as an :class:`Inputs`: ``x (N, T, D)``, ``h0`` as L*R arrays
``(N, M_l)`` (or ``None``), and one boolean mask ``valid (N, T)`` whatever form the padding was
given in. The oracle (:func:`rnn_ref.forward`, :func:`rnn_ref.forward_loop`), the gradient
(:func:`rnn_ref.backward`) and every built-in backend call it first, so a bad input raises the
same ``TypeError`` or ``ValueError``, with the same message, everywhere, and a backend that
runs its framework in another process (``keras[...]``) refuses it before sending anything.
A backend that takes right-padded lengths only asks :meth:`Inputs.lengths_or_none`.

The oracle's other arguments are checked here too: :func:`check_params`, :func:`check_dtype`
(``compute_dtype``) and :func:`check_options` (``padded_output``, ``output_order``).

Messages name the argument, what was given (its shape, dtype or value) and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rnn_ref.config import OUTPUT_ORDERS, PADDED_OUTPUTS, RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.params import RNNParams

__all__ = ["Inputs", "check_dtype", "check_inputs", "check_options", "check_params"]

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class Inputs:
    """Inputs checked against a config by :func:`check_inputs` (N samples, T steps).

    Attributes:
        config: the config they were checked against.
        x: ``(N, T, D)``, real numbers; in the requested dtype, else as given.
        h0: ``None`` when not given (zeros: :meth:`h0_or_zeros`), else a tuple of L*R arrays
            ``(N, M_l)``, index ``l*R + r`` (copies, in the requested dtype when one was given).
        lengths: the given ``lengths`` as int64 ``(N,)``, each in ``[0, T]``, or ``None``.
        valid: booleans ``(N, T)``, True at a valid step: from ``lengths``
            (``t < lengths[n]``) or ``mask`` (a copy), all True when neither was given.
        padding: the argument that gave the padding, ``"lengths"`` or ``"mask"``, or ``None``.
        padded: whether some step is padding (``not valid.all()``).
        right_padded: whether every row of ``valid`` is valid steps then padding (lengths, or a
            mask without holes or left padding), so lengths can say it.
        where: who checked the inputs, the default target of :meth:`lengths_or_none`.
    """

    config: RNNConfig
    x: Array
    h0: tuple[Array, ...] | None
    lengths: npt.NDArray[np.int64] | None
    valid: npt.NDArray[np.bool_]
    padding: str | None
    padded: bool
    right_padded: bool
    where: str

    @property
    def n(self) -> int:
        """N, the number of samples."""
        return int(self.x.shape[0])

    @property
    def t(self) -> int:
        """T, the number of steps."""
        return int(self.x.shape[1])

    def h0_or_zeros(self) -> tuple[Array, ...]:
        """``h0``, or L*R zero arrays ``(N, M_l)`` in ``x``'s dtype (float64 for integer x)."""
        if self.h0 is not None:
            return self.h0
        dt = self.x.dtype if self.x.dtype.kind == "f" else np.dtype(np.float64)
        R, sizes = self.config.num_directions, self.config.hidden_sizes
        return tuple(np.zeros((self.n, sizes[i // R]), dt)
                     for i in range(self.config.num_layers * R))

    def mask_or_none(self) -> npt.NDArray[np.bool_] | None:
        """``valid (N, T)`` when ``lengths`` or ``mask`` was given, else ``None``."""
        return None if self.padding is None else self.valid

    def lengths_or_none(self, target: str | None = None) -> npt.NDArray[np.int64] | None:
        """Right-padded lengths ``(N,)`` int64, for a target that takes lengths only.

        ``None`` when neither ``lengths`` nor ``mask`` was given, when N = 0, or when every
        length is T (nothing is padded). A mask with holes or left padding raises
        :class:`~rnn_ref.UnsupportedError` for ``target`` (default: :attr:`where`).
        """
        if self.padding is None:
            return None
        if not self.right_padded:
            raise UnsupportedError(target or self.where, "a mask with holes or left padding",
                                   "it takes right-padded lengths only")
        la = self.lengths if self.lengths is not None else self.valid.sum(axis=1).astype(np.int64)
        return None if self.n == 0 or la.min() == self.t else la


def check_params(params: Any) -> RNNParams:
    """``params`` itself, or ``TypeError`` when it is not an :class:`~rnn_ref.RNNParams`."""
    if not isinstance(params, RNNParams):
        raise TypeError(f"params must be rnn_ref.RNNParams, got {type(params).__name__}")
    return params


def check_dtype(value: Any, where: str = "dtype") -> np.dtype[Any]:
    """``value`` as a floating NumPy dtype; ``TypeError`` naming ``where`` otherwise."""
    try:
        dt = np.dtype(value)
    except TypeError:
        raise TypeError(f"{where} must be a floating dtype, got {value!r}") from None
    if dt.kind != "f":
        raise TypeError(f"{where} must be a floating dtype, got {dt}")
    return dt


def check_options(config: RNNConfig, padded_output: str | None = None,
                  output_order: str | None = None) -> tuple[str, str]:
    """``(padded_output, output_order)``: the per-call overrides, or the config's values.

    Raises ``ValueError`` for a value outside :data:`~rnn_ref.config.PADDED_OUTPUTS` or
    :data:`~rnn_ref.config.OUTPUT_ORDERS`, and for ``"processing"`` without
    ``direction="reverse"``.
    """
    po = config.padded_output if padded_output is None else padded_output
    if po not in PADDED_OUTPUTS:
        raise ValueError(f"padded_output must be one of {list(PADDED_OUTPUTS)}, got {po!r}")
    oo = config.output_order if output_order is None else output_order
    if oo not in OUTPUT_ORDERS:
        raise ValueError(f"output_order must be one of {list(OUTPUT_ORDERS)}, got {oo!r}")
    if oo == "processing" and config.direction != "reverse":
        raise ValueError(
            f"output_order='processing' needs direction='reverse', the network is "
            f"{config.direction}"
        )
    return po, oo


def _as_array(value: Any, where: str) -> Array:
    try:
        return np.asarray(value)
    except Exception as exc:
        raise TypeError(f"{where}: cannot be read as an array ({exc})") from None


def check_inputs(
    config: RNNConfig,
    x: Any,
    *,
    h0: Any = None,
    lengths: Any = None,
    mask: Any = None,
    dtype: Any = None,
    where: str = "rnn_ref",
) -> Inputs:
    """Check a pass's inputs against ``config`` (spec 3.5, 4.3, 4.4, 5.4).

    Args:
        config: the network's :class:`~rnn_ref.RNNConfig` (L layers, R directions, D, M_l).
        x: ``(N, T, D)`` with ``D = config.input_size``, real numbers (integers or floats).
        h0: ``None``, one array ``(L*R, N, M)`` (only when every layer has the same M), or a
            list or tuple of L*R arrays ``(N, M_l)``; real numbers.
        lengths: integers ``(N,)`` in ``[0, T]``; steps ``t >= lengths[n]`` are padding.
        mask: booleans ``(N, T)``, True at a valid step, any pattern. Not with ``lengths``.
        dtype: a floating dtype to cast ``x`` and ``h0`` to; ``None`` keeps theirs.
        where: who asks (a backend's or function's name), the default target of
            :meth:`Inputs.lengths_or_none`; messages do not depend on it.

    Returns:
        The :class:`Inputs`.

    Raises:
        TypeError: a value of the wrong kind (non-real ``x`` or ``h0``, non-integer
            ``lengths``, non-boolean ``mask``, non-floating ``dtype``).
        ValueError: a wrong shape, a length outside ``[0, T]``, or both ``lengths`` and
            ``mask``; the message names the argument, what was given and what is allowed.
    """
    dt = None if dtype is None else check_dtype(dtype, "dtype")
    xa = _check_x(x, config)
    n, t, _ = xa.shape
    h0s = None if h0 is None else _check_h0(h0, config, n, dt)

    if lengths is not None and mask is not None:
        raise ValueError("give lengths or mask, not both")
    la = None
    padding = None
    if lengths is not None:
        la = _check_lengths(lengths, n, t)
        valid = np.arange(t)[None, :] < la[:, None]
        padding, right = "lengths", True
    elif mask is not None:
        valid = _check_mask(mask, n, t)
        padding = "mask"
        right = bool(np.array_equal(valid, np.arange(t)[None, :] < valid.sum(axis=1)[:, None]))
    else:
        valid, right = np.ones((n, t), bool), True
    xa = xa if dt is None else xa.astype(dt, copy=False)
    return Inputs(config, xa, h0s, la, valid, padding, not bool(valid.all()), right, where)


def _check_x(x: Any, cfg: RNNConfig) -> Array:
    """``x`` as an array ``(N, T, D)`` of real numbers with ``D = cfg.input_size`` (not
    copied, not cast)."""
    xa = _as_array(x, "x")
    if xa.dtype.kind not in "iuf":
        raise TypeError(f"x must hold real numbers, got dtype {xa.dtype}")
    if xa.ndim != 3:
        hint = "; add a batch axis with x[None]" if xa.ndim == 2 else ""
        raise ValueError(f"x must have 3 dimensions (N, T, D), got shape {xa.shape}{hint}")
    d = xa.shape[2]
    if d != cfg.input_size:
        raise ValueError(
            f"x has {d} features (shape {xa.shape}) but config.input_size is {cfg.input_size}"
        )
    return xa


def _check_lengths(lengths: Any, n: int, t: int) -> npt.NDArray[np.int64]:
    """``lengths`` as int64 ``(N,)``, each in ``[0, T]``."""
    raw = _as_array(lengths, "lengths")
    if raw.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers, got dtype {raw.dtype}")
    if raw.shape != (n,):
        raise ValueError(f"lengths must have shape (N,) = ({n},), got {raw.shape}")
    if n and (raw.min() < 0 or raw.max() > t):
        raise ValueError(
            f"lengths must lie in [0, T] = [0, {t}], got min {raw.min()}, max {raw.max()}"
        )
    return raw.astype(np.int64)


def _check_mask(mask: Any, n: int, t: int) -> npt.NDArray[np.bool_]:
    """A copy of ``mask``, booleans ``(N, T)``, True at a valid step."""
    ma = _as_array(mask, "mask")
    if ma.dtype != np.bool_:
        raise TypeError(f"mask must be boolean (True = a valid step), got dtype {ma.dtype}")
    if ma.shape != (n, t):
        raise ValueError(f"mask must have shape (N, T) = ({n}, {t}), got {ma.shape}")
    return ma.copy()


def _check_h0(h0: Any, cfg: RNNConfig, n: int, dt: np.dtype[Any] | None) -> tuple[Array, ...]:
    """``h0`` as L*R arrays ``(N, M_l)`` (copies, cast to ``dt`` unless it is ``None``)."""
    L, R, sizes = cfg.num_layers, cfg.num_directions, cfg.hidden_sizes
    if isinstance(h0, (list, tuple)):
        if len(h0) != L * R:
            raise ValueError(f"h0 lists {len(h0)} states, expected L*R = {L * R}")
        states = [_as_array(h, f"h0[{i}]") for i, h in enumerate(h0)]
    else:
        arr = _as_array(h0, "h0")
        if not cfg.uniform_hidden:
            raise ValueError(
                f"the layers have different hidden sizes {sizes}, so h0 must be a list of "
                f"L*R = {L * R} arrays of shape (N, M_l), not one array"
            )
        if arr.shape != (L * R, n, sizes[0]):
            raise ValueError(
                f"h0 must have shape (L*R, N, M) = ({L * R}, {n}, {sizes[0]}), got {arr.shape}"
            )
        states = list(arr)
    out = []
    for i, h in enumerate(states):
        m = sizes[i // R]
        if h.dtype.kind not in "iuf":
            raise TypeError(f"h0[{i}] must hold real numbers, got dtype {h.dtype}")
        if h.shape != (n, m):
            raise ValueError(f"h0[{i}] must have shape (N, M) = ({n}, {m}), got {h.shape}")
        out.append(np.array(h, dtype=dt))
    return tuple(out)
