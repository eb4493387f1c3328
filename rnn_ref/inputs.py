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
        x: ``(N, T, D)``, real numbers; in the requested dtype, else as given. For a network
            with an embedding, the token ids ``(N, T)`` as int64.
        h0: ``None`` when not given (zeros: :meth:`h0_or_zeros`), else a tuple of S arrays
            ``(N, M_l)``, index ``config.state_index(l, r)`` (``l*R + r`` when every layer has
            R directions; copies, in the requested dtype when one was given).
        c0: ``None`` when not given (zeros: :meth:`c0_or_zeros`), else a tuple of C arrays
            ``(N, M_l)``, the LSTM layers' initial cell states, index
            ``config.cell_state_index(l, r)``.
        lengths: the given ``lengths`` as int64 ``(N,)``, each in ``[0, T]``, or ``None``.
        valid: booleans ``(N, T)``, True at a valid step: from ``lengths``
            (``t < lengths[n]``) or ``mask`` (a copy), all True when neither was given; and
            False where the network masks a step itself (``mask_zero``: id 0; ``mask_value``:
            every feature equals it).
        padding: what gave the padding, ``"lengths"`` or ``"mask"`` (also a mask the network
            derives from its inputs), or ``None``.
        padded: whether some step is padding (``not valid.all()``).
        right_padded: whether every row of ``valid`` is valid steps then padding (lengths, or a
            mask without holes or left padding), so lengths can say it.
        where: who checked the inputs, the default target of :meth:`lengths_or_none`.
    """

    config: RNNConfig
    x: Array
    h0: tuple[Array, ...] | None
    c0: tuple[Array, ...] | None
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

    def h0_or_zeros(self, dtype: Any = None) -> tuple[Array, ...]:
        """``h0``, or S zero arrays ``(N, M_l)`` in ``dtype``, else ``x``'s dtype (float64 for
        integer x)."""
        if self.h0 is not None:
            return self.h0
        dt = (np.dtype(dtype) if dtype is not None else
              self.x.dtype if self.x.dtype.kind == "f" else np.dtype(np.float64))
        return tuple(np.zeros((self.n, m), dt) for m in self.config.state_sizes)

    def c0_or_zeros(self, dtype: Any = None) -> tuple[Array, ...]:
        """``c0``, or C zero arrays ``(N, M_l)`` like :meth:`h0_or_zeros`."""
        if self.c0 is not None:
            return self.c0
        dt = (np.dtype(dtype) if dtype is not None else
              self.x.dtype if self.x.dtype.kind == "f" else np.dtype(np.float64))
        return tuple(np.zeros((self.n, m), dt) for m in self.config.cell_state_sizes)

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
    :data:`~rnn_ref.config.OUTPUT_ORDERS`, and for ``"processing"`` without a reverse last
    layer.
    """
    po = config.padded_output if padded_output is None else padded_output
    if po not in PADDED_OUTPUTS:
        raise ValueError(f"padded_output must be one of {list(PADDED_OUTPUTS)}, got {po!r}")
    oo = config.output_order if output_order is None else output_order
    if oo not in OUTPUT_ORDERS:
        raise ValueError(f"output_order must be one of {list(OUTPUT_ORDERS)}, got {oo!r}")
    if oo == "processing" and config.directions[-1] != "reverse":
        raise ValueError(
            f"output_order='processing' needs a reverse last layer, the last layer is "
            f"{config.directions[-1]}"
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
    c0: Any = None,
) -> Inputs:
    """Check a pass's inputs against ``config`` (spec 3.5, 4.3, 4.4, 5.4).

    Args:
        config: the network's :class:`~rnn_ref.RNNConfig` (L layers, R directions, D, M_l).
        x: ``(N, T, D)`` with ``D = config.input_size``, real numbers (integers or floats);
            with an embedding (``config.vocab_size``), integer token ids ``(N, T)`` in
            ``[0, V)``.
        h0: ``None``, one array ``(S, N, M)`` (only when every layer has the same M; S = L*R
            when every layer has R directions), or a list or tuple of S arrays ``(N, M_l)``;
            real numbers.
        lengths: integers ``(N,)`` in ``[0, T]``; steps ``t >= lengths[n]`` are padding.
        mask: booleans ``(N, T)``, True at a valid step, any pattern. Not with ``lengths``.
        c0: the LSTM layers' initial cell states, like ``h0`` with C = ``num_cell_states``
            entries of ``(N, M_l)``; only for a network with an LSTM layer.
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
    n, t = xa.shape[:2]
    h0s = None if h0 is None else _check_h0(h0, config, n, dt)
    c0s = None if c0 is None else _check_h0(c0, config, n, dt, "c0")

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
        right = _right_padded(valid)
    else:
        valid, right = np.ones((n, t), bool), True
    derived = _network_mask(config, xa)
    if derived is not None and not derived.all():
        valid = valid & derived
        padding = padding or "mask"
        right = _right_padded(valid)
    xa = xa if dt is None or config.vocab_size is not None else xa.astype(dt, copy=False)
    return Inputs(config, xa, h0s, c0s, la, valid, padding, not bool(valid.all()), right, where)


def _right_padded(valid: npt.NDArray[np.bool_]) -> bool:
    """Whether every row of ``valid (N, T)`` is valid steps, then padding."""
    t = valid.shape[1]
    return bool(np.array_equal(valid, np.arange(t)[None, :] < valid.sum(axis=1)[:, None]))


def _network_mask(cfg: RNNConfig, xa: Array) -> npt.NDArray[np.bool_] | None:
    """The steps the network itself keeps, ``(N, T)``: ids other than 0 with ``mask_zero``
    (Keras ``Embedding(mask_zero=True)``), steps with some feature other than ``mask_value``
    (Keras ``Masking``); ``None`` when it masks nothing itself."""
    if cfg.mask_zero:
        return np.asarray(xa != 0)
    if cfg.mask_value is not None:
        return np.asarray(np.any(xa != cfg.mask_value, axis=-1))
    return None


def _check_ids(x: Any, cfg: RNNConfig) -> Array:
    """Token ids ``(N, T)``, integers in ``[0, V)``, as int64."""
    xa = _as_array(x, "x")
    v = cfg.vocab_size
    if xa.dtype.kind not in "iu":
        raise TypeError(f"x must hold integer token ids for a network with an embedding "
                        f"(vocab_size={v}), got dtype {xa.dtype}")
    if xa.ndim != 2:
        raise ValueError(f"x must be token ids of shape (N, T) for a network with an "
                         f"embedding, got shape {xa.shape}")
    if xa.size and (xa.min() < 0 or xa.max() >= (v or 0)):
        raise ValueError(f"x holds token ids in [{xa.min()}, {xa.max()}], the embedding has "
                         f"vocab_size={v} (ids in [0, {v}))")
    return xa.astype(np.int64)


def _check_x(x: Any, cfg: RNNConfig) -> Array:
    """``x`` as an array ``(N, T, D)`` of real numbers with ``D = cfg.input_size`` (not
    copied, not cast), or token ids ``(N, T)`` for a network with an embedding."""
    if cfg.vocab_size is not None:
        return _check_ids(x, cfg)
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


def _check_h0(h0: Any, cfg: RNNConfig, n: int, dt: np.dtype[Any] | None, name: str = "h0"
              ) -> tuple[Array, ...]:
    """``h0`` as S arrays ``(N, M_l)`` (copies, cast to ``dt`` unless it is ``None``); with
    ``name="c0"``, the C cell states of the LSTM layers."""
    if name == "c0":
        sizes, S, what = cfg.cell_state_sizes, cfg.num_cell_states, "C"
        uniform, per = cfg.uniform_cell, "LSTM layer and direction"
        if not S:
            raise ValueError(f"c0 is given, but the network has no LSTM layer (its layers are "
                             f"{[c.kind for c in cfg.cells]})")
    else:
        sizes, S, what = cfg.state_sizes, cfg.num_states, "S"
        uniform, per = cfg.uniform_hidden, "layer and direction"
    if isinstance(h0, (list, tuple)):
        if len(h0) != S:
            raise ValueError(f"{name} lists {len(h0)} states, expected {what} = {S} (one per "
                             f"{per})")
        states = [_as_array(h, f"{name}[{i}]") for i, h in enumerate(h0)]
    else:
        arr = _as_array(h0, name)
        if not uniform:
            raise ValueError(
                f"the states have different hidden sizes {sorted(set(sizes))}, so {name} must be a "
                f"list of {what} = {S} arrays of shape (N, M_l), not one array"
            )
        if arr.shape != (S, n, sizes[0]):
            raise ValueError(
                f"{name} must have shape ({what}, N, M) = ({S}, {n}, {sizes[0]}), got "
                f"{arr.shape}"
            )
        states = list(arr)
    out = []
    for i, h in enumerate(states):
        m = sizes[i]
        if h.dtype.kind not in "iuf":
            raise TypeError(f"{name}[{i}] must hold real numbers, got dtype {h.dtype}")
        if h.shape != (n, m):
            raise ValueError(f"{name}[{i}] must have shape (N, M) = ({n}, {m}), got {h.shape}")
        out.append(np.array(h, dtype=dt))
    return tuple(out)
