"""The architecture of a recurrent network (Elman, GRU or LSTM layers): :class:`RNNConfig`.

Notation (docs/spec.md section 1.2): N samples, T steps, D input features, M hidden units, K readout
units, L layers, R directions (1 or 2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np

from rnn_ref.activations import Activation, ActivationLike, as_activation
from rnn_ref.cells import CELLS, CellSpec
from rnn_ref.network import SELECTS, Dense, HeadActivation, Identity, check_returns

__all__ = [
    "CELLS", "DIRECTIONS", "MERGE_MODES", "OUTPUT_ORDERS", "PADDED_OUTPUTS", "SELECTS",
    "ActivationSpec", "ActivationValue", "GatedActivationSpec", "RNNConfig", "SizeLike",
]

#: What a size argument of :class:`RNNConfig` may be: an int or a NumPy integer (never a bool).
SizeLike = int | np.integer[Any]
#: What :class:`RNNConfig`'s ``activation`` argument may be: one activation, one per direction,
#: or one list per layer of one per direction.
ActivationSpec = (
    ActivationLike | Sequence[ActivationLike] | Sequence[Sequence[ActivationLike]]
)
#: What ``recurrent_activation`` and ``cell_activation`` may be: the forms of
#: :data:`ActivationSpec`, and a per-layer list with ``None`` at the layers whose cell lacks it.
GatedActivationSpec = (
    ActivationSpec | Sequence[ActivationLike | Sequence[ActivationLike] | None]
)
#: What :attr:`RNNConfig.activation` holds: the most compact form of the L x R activations.
ActivationValue = Activation | tuple[Activation, ...] | tuple[tuple[Activation, ...], ...]

_T = TypeVar("_T")
_SIGMOID = Activation("sigmoid")

DIRECTIONS: tuple[str, ...] = ("forward", "reverse", "bidirectional")
MERGE_MODES: tuple[str | None, ...] = ("concat", "sum", "mul", "ave", None)
PADDED_OUTPUTS: tuple[str, ...] = ("zeros", "carry_output", "carry_state")
OUTPUT_ORDERS: tuple[str, ...] = ("aligned", "processing")


def _positive_int(value: Any, where: str) -> int:
    """An int or a NumPy integer (``np.int64(5)``), not a bool, at least 1, as a plain int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{where} must be a positive int, got {value!r}")
    return int(value)


def _choice(value: Any, allowed: Sequence[Any], where: str) -> Any:
    if value not in allowed:
        raise ValueError(f"{where} must be one of {list(allowed)!r}, got {value!r}")
    return value


def _per_layer(value: Any, num_layers: int, where: str) -> tuple[Any, ...]:
    """A scalar repeated L times, or a list/tuple of exactly L values."""
    if isinstance(value, (list, tuple)):
        if len(value) != num_layers:
            raise ValueError(
                f"{where} gives {len(value)} values but there are {num_layers} layers "
                f"(give one value, or one per layer)"
            )
        return tuple(value)
    return (value,) * num_layers


def _compact(values: tuple[_T, ...]) -> _T | tuple[_T, ...]:
    """One value when all L are equal, else the tuple of L."""
    return values[0] if len(set(values)) == 1 else values


def _layer_sizes(hidden_size: Any, num_layers: Any) -> tuple[int, ...]:
    """M of every layer, from ``hidden_size`` (one size or a list) and ``num_layers``."""
    if isinstance(hidden_size, (list, tuple)):
        if not hidden_size:
            raise ValueError("hidden_size must not be empty")
        sizes = tuple(_positive_int(m, f"hidden_size[{i}]") for i, m in enumerate(hidden_size))
        if num_layers is not None and num_layers != len(sizes):
            raise ValueError(
                f"num_layers={num_layers!r} but hidden_size lists {len(sizes)} sizes"
            )
        return sizes
    m = _positive_int(hidden_size, "hidden_size")
    return (m,) * _positive_int(1 if num_layers is None else num_layers, "num_layers")


def _layer_clips(clip: Any, num_layers: int) -> tuple[float | None, ...]:
    """The clip of every layer, each a positive finite float or ``None``."""
    clips = _per_layer(clip, num_layers, "clip")
    for i, c in enumerate(clips):
        if c is not None and (
            isinstance(c, bool) or not isinstance(c, (int, float)) or not c > 0
            or c == float("inf")
        ):
            raise ValueError(f"clip[{i}] must be a positive finite number or None, got {c!r}")
    return tuple(None if c is None else float(c) for c in clips)


def _layer_merges(merge_mode: Any, directions: tuple[str, ...]) -> tuple[str | None, ...]:
    """The merge mode of every layer, checked against that layer's direction."""
    L = len(directions)
    merges = _per_layer(merge_mode, L, "merge_mode")
    for i, mm in enumerate(merges):
        _choice(mm, MERGE_MODES, f"merge_mode[{i}]")
        if directions[i] != "bidirectional" and mm != "concat":
            raise ValueError(
                f"merge_mode[{i}]={mm!r} needs a bidirectional layer; layer {i} is "
                f"{directions[i]}, which allows only 'concat'"
            )
        if mm is None and i != L - 1:
            raise ValueError(
                f"merge_mode[{i}]=None (return the pair) is allowed only for the last layer"
            )
    return merges


def _embedding(vocab_size: Any, mask_zero: Any, padding_idx: Any, mask_value: Any
               ) -> tuple[int | None, bool, int | None, float | None]:
    """The embedding's V, ``mask_zero`` and ``padding_idx`` (normalised to ``[0, V)``), and the
    feature inputs' ``mask_value``, checked together."""
    v = None if vocab_size is None else _positive_int(vocab_size, "vocab_size")
    if not isinstance(mask_zero, bool):
        raise ValueError(f"mask_zero must be True or False, got {mask_zero!r}")
    if v is None and (mask_zero or padding_idx is not None):
        name = "mask_zero" if mask_zero else "padding_idx"
        raise ValueError(f"{name} needs an embedding (vocab_size), got vocab_size=None")
    if padding_idx is not None:
        if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)) \
                or not -(v or 0) <= padding_idx < (v or 0):
            raise ValueError(f"padding_idx must be an int in [-{v}, {v}) for vocab_size={v}, "
                             f"got {padding_idx!r}")
        padding_idx = int(padding_idx) % (v or 1)
    if mask_value is not None:
        if v is not None:
            raise ValueError("mask_value (Keras Masking) applies to feature inputs; an embedding "
                             "network masks token ids with mask_zero")
        if isinstance(mask_value, bool) or not isinstance(mask_value, (int, float, np.floating)) \
                or not np.isfinite(mask_value):
            raise ValueError(f"mask_value must be a finite number or None, got {mask_value!r}")
        mask_value = float(mask_value)
    return v, mask_zero, padding_idx, mask_value


def _head(head: Any, output_size: Any, output_activation: Any) -> tuple[Dense, ...]:
    """The head's dense layers, from ``head`` or the one-layer shorthand ``output_size`` /
    ``output_activation``."""
    g_given = output_activation is not None
    if head is not None:
        if output_size is not None or g_given:
            raise ValueError("give the head either as head=[...] or as output_size/"
                             "output_activation, not both")
        if isinstance(head, (str, bytes)) or not isinstance(head, Sequence):
            raise ValueError(f"head must be a list of dense layers, got {head!r}")
        return tuple(Dense.parse(d, f"head[{j}]") for j, d in enumerate(head))
    if output_size is None:
        if g_given and as_activation(output_activation, where="output_activation") != \
                Activation("linear"):
            raise ValueError(f"output_activation={output_activation!r} needs output_size "
                             f"(there is no readout without one)")
        return ()
    k = _positive_int(output_size, "output_size")
    return (Dense(k, "linear" if output_activation is None else output_activation),)


def _identities(identities: Any, num_layers: int, head_len: int) -> tuple[Identity, ...]:
    """The identity layers, each at a position the network has."""
    if isinstance(identities, (str, bytes)) or not isinstance(identities, Sequence):
        raise ValueError(f"identities must be a list, got {identities!r}")
    given = [Identity.parse(spec, f"identities[{i}]") for i, spec in enumerate(identities)]
    # in network order: by position, then as given (two spellings of one network are equal)
    out = tuple(sorted(given, key=lambda ident: ident.after))
    for i, ident in enumerate(out):
        cell = ident.kind in ("input_dropout", "recurrent_dropout")
        top = num_layers - 1 if cell else num_layers + head_len
        if ident.after > top:
            what = "a recurrent layer index" if cell else "a position of the network"
            raise ValueError(f"identities[{i}] ({ident.kind}): after={ident.after} is not "
                             f"{what} (0..{top})")
    return out


def _check_select(select: Any, directions: tuple[str, ...], merges: tuple[str | None, ...],
                  head: tuple[Dense, ...]) -> str:
    _choice(select, SELECTS, "select")
    if select in ("final_forward", "final_backward") and directions[-1] != "bidirectional":
        raise ValueError(f"select={select!r} picks one direction of a bidirectional last "
                         f"layer; the last layer is {directions[-1]}")
    if merges[-1] is None:
        if head:
            raise ValueError("merge_mode=None returns a pair of outputs, which a head cannot "
                             "take; use no head or another merge_mode")
        if select not in ("sequence", "final"):
            raise ValueError(f"merge_mode=None returns a pair; select={select!r} needs one "
                             f"merged output (allowed with None: 'sequence', 'final')")
    return str(select)


def _kinds(kinds: tuple[str, ...]) -> str:
    """``("gru", "lstm")`` as ``"GRU and LSTM"``."""
    return " and ".join(k.upper() for k in kinds)


def _layer_cells(cell: Any, reset_after: Any, peepholes: Any, input_forget: Any,
                 proj_size: Any, num_layers: int) -> tuple[CellSpec, ...]:
    """Every layer's :class:`~rnn_ref.cells.CellSpec`. A switch given as one value applies to
    the layers whose cell has it; a switch given for a network without such a layer, or a
    non-default value in a per-layer list at a layer whose cell lacks it, raises."""
    kinds = tuple(_choice(c, CELLS, f"cell[{i}]" if num_layers > 1 else "cell")
                  for i, c in enumerate(_per_layer(cell, num_layers, "cell")))
    switches = (("reset_after", reset_after, ("gru",), True),
                ("peepholes", peepholes, ("lstm",), False),
                ("input_forget", input_forget, ("lstm",), False),
                ("proj_size", proj_size, ("lstm",), None))
    per_layer: dict[str, tuple[Any, ...]] = {}
    for name, value, cells, default in switches:
        if value is None or (not isinstance(value, (list, tuple)) and value == default) or (
                isinstance(value, (list, tuple)) and all(v is None for v in value)
                and len(value) == num_layers):
            per_layer[name] = (default,) * num_layers
            continue
        has = [k in cells for k in kinds]
        if not any(has):
            raise ValueError(f"{name}={value!r} applies to {_kinds(cells)} layers; the "
                             f"network's layers are {list(kinds)}")
        if not isinstance(value, (list, tuple)):
            per_layer[name] = tuple(value if applies else default for applies in has)
            continue
        values = _per_layer(value, num_layers, name)
        for i, (v, applies) in enumerate(zip(values, has, strict=True)):
            if not applies and v is not None and v != default:
                raise ValueError(f"{name}[{i}]={v!r}, but layer {i} is {kinds[i]!r}: "
                                 f"{name} applies to {_kinds(cells)} layers")
        per_layer[name] = tuple(v if applies and v is not None else default
                                for v, applies in zip(values, has, strict=True))
    return tuple(CellSpec(kinds[i], reset_after=per_layer["reset_after"][i],
                          peepholes=per_layer["peepholes"][i],
                          input_forget=per_layer["input_forget"][i],
                          proj_size=per_layer["proj_size"][i])
                 for i in range(num_layers))


def _compact_switch(cells: tuple[CellSpec, ...], name: str, kinds: tuple[str, ...]) -> Any:
    """A switch's most compact form: its default when no layer has it, one value when every
    layer that has it has the same, else a tuple of L (``None`` at a layer without it)."""
    values = [getattr(c, name) if c.kind in kinds else None for c in cells]
    present = {v for v, c in zip(values, cells, strict=True) if c.kind in kinds}
    if not present:
        return getattr(CellSpec("elman"), name)
    if len(present) == 1:
        return present.pop()
    return tuple(values)


def _cell_activations(kind: str, act: Activation, gates: tuple[Activation, ...] | None,
                      hs: tuple[Activation, ...] | None, r: int) -> tuple[Activation, ...]:
    """One direction's activations in ONNX's order: (f,) Elman, (f, g) GRU, (f, g, h) LSTM."""
    if kind == "elman":
        return (act,)
    assert gates is not None
    if kind == "gru":
        return (gates[r], act)
    assert hs is not None
    return (gates[r], act, hs[r])


@dataclass(frozen=True, init=False)
class RNNConfig:
    """The architecture of a recurrent network, independent of any framework.

    The network (docs/spec.md section 2.6): an optional embedding, L recurrent layers (each an
    Elman, GRU or LSTM cell, forward, reverse or bidirectional), a selection of what the stack
    hands on, an optional
    head of dense layers, and the identity-at-inference layers (dropouts, noise) recorded
    where they sit::

        ids --embedding--> x --layers--> o --select--> s --head--> y

    The constructor takes the wide forms listed under Args (names, mappings, lists, NumPy
    integers); every attribute holds the validated, normalised value and is typed as such. The
    class is a frozen dataclass whose explicit ``__init__`` takes the wide forms and stores the
    narrow ones, so equality, hashing, ``repr``, :meth:`to_dict` and ``dataclasses.replace`` all
    see normalised values, and two spellings of one network are equal
    (``RNNConfig(3, [4, 4]) == RNNConfig(3, 4, num_layers=2)``,
    ``RNNConfig(3, 4, output_size=2) == RNNConfig(3, 4, head=[2])``). After construction:

    - ``input_size``, ``num_layers``: ``int``; ``vocab_size``, ``padding_idx``: ``int | None``;
    - ``activation``: the most compact of one ``Activation``, a tuple of R, or a tuple of L
      tuples of R_l (:data:`ActivationValue`);
    - ``hidden_size``, ``direction``, ``clip`` (``float`` or ``None``) and ``merge_mode``: one
      value when every layer has the same, else a tuple of L;
    - ``head``: a tuple of :class:`~rnn_ref.Dense`; ``identities``: a tuple of
      :class:`~rnn_ref.Identity`;
    - ``bias``, ``padded_output``, ``output_order``, ``mask_zero``, ``mask_value``, ``select``:
      as given.

    For one value per layer whatever the form, read :attr:`hidden_sizes`, :attr:`directions`,
    :attr:`clips`, :attr:`merge_modes`, :attr:`activations` or :meth:`activation_of`.

    The gated cells' fields (``cell``, ``recurrent_activation``, ``cell_activation``,
    ``reset_after``, ``peepholes``, ``input_forget``, ``proj_size``) hold one value when every
    layer that has the switch has the same, else a tuple of L (``None`` at a layer without
    it); :meth:`cell_of` and :meth:`activations_of` give one layer's.

    Args:
        input_size: D, the features of each input step (the embedding width with an
            embedding). Sizes are ints or NumPy integers.
        hidden_size: M, an int, or one int per layer (Keras stacks often narrow, 64 then 32).
        num_layers: L. Defaults to the length of ``hidden_size`` when that is a list, else 1.
        direction: ``"forward"``, ``"reverse"`` (one direction that reads the sequence from its
            last valid step to its first) or ``"bidirectional"``; one value, or one per layer
            (Keras stacks mix them).
        activation: f of an Elman cell; g, the candidate's activation, of a GRU or LSTM cell
            (Keras' ``activation``). A name (``"tanh"``), an :class:`~rnn_ref.Activation` with
            explicit parameters, a ``{"name", "alpha", "beta"}`` mapping; a list or tuple of R
            of those (one per direction, every layer; all layers must then have R directions);
            or a list of L such lists (one per layer, then per direction).
        clip: c, every activation's input is limited to ``[-c, c]`` (ONNX ``clip``); ``None``
            for no clip. One value, or one per layer.
        bias: ``False`` for a bias-free recurrent stack (torch ``bias=False``, Keras
            ``use_bias=False``): all its biases are then zero and :class:`~rnn_ref.RNNParams`
            rejects non-zero ones. (Each head layer has its own ``bias``.)
        output_size: shorthand for a one-layer head ``head=[(output_size,
            output_activation)]``: the readout ``y = g(s @ W_y + b_y)``.
        output_activation: g of that readout; default linear. Only with ``output_size``.
        merge_mode: how a bidirectional layer joins its two directions: ``"concat"``
            (forward then backward, the default), ``"sum"``, ``"mul"``, ``"ave"``, or ``None``
            (the last layer returns the pair). One value, or one per layer. One-direction
            layers accept only ``"concat"``.
        padded_output: what a padded or masked step of the last layer outputs: ``"zeros"``
            (onnxruntime, torch ``pad_packed_sequence``), ``"carry_output"`` (the last output,
            zeros before the first valid step: Keras on TensorFlow and torch), or
            ``"carry_state"`` (the carried state, so a leading masked step outputs ``h0``:
            Keras on JAX and NumPy).
        output_order: ``"aligned"`` (position t holds the state after consuming ``x_t``: torch,
            ONNX) or ``"processing"`` (a reverse layer's outputs in the order it computed
            them: Keras ``go_backwards=True``). ``"processing"`` needs a reverse last layer and
            applies to its outputs only (the layers below hand on time-aligned outputs).
        vocab_size: V, adds the embedding: the input is token ids ``(N, T)`` in ``[0, V)`` and
            ``x[n, t] = table[ids[n, t]]`` with a ``(V, D)`` table. ``None`` for none.
        mask_zero: Keras ``Embedding(mask_zero=True)``: a step whose id is 0 is masked (it is
            padding, combined with any ``lengths``/``mask`` given).
        padding_idx: torch ``nn.Embedding(padding_idx=i)``: row i of the table gets no
            gradient. It changes no forward value.
        mask_value: Keras ``Masking(mask_value=v)`` on feature inputs: a step whose features
            all equal v is masked.
        select: what the stack hands on (:data:`~rnn_ref.SELECTS`): ``"sequence"`` (every
            step, the default), ``"last_step"`` (position T-1), ``"final"`` (the last layer's
            final states merged), ``"final_forward"`` / ``"final_backward"``.
        head: dense layers applied in order to the selection, each a :class:`~rnn_ref.Dense`,
            a ``(units, activation[, bias])`` tuple, units, or a mapping; activations may also
            be ``"softmax"``/``"log_softmax"`` (last axis). Per step when ``select`` is
            ``"sequence"``.
        identities: layers that are the identity at inference, each an
            :class:`~rnn_ref.Identity` ``(kind, rate, after)``, kept so a converter can write
            them back (stored in network order: by ``after``, then as given); they never
            change a value.
        returns: what the model returns (:data:`~rnn_ref.network.RETURN_NAMES`):
            ``("result",)``, the default, is the one result (the head's output, else the
            selection); several names make a model of several outputs, such as Keras
            ``SimpleRNN(return_state=True)`` (``("result", "h_n[-1]")``) or a torch module
            returning ``(output, hidden)`` (``("sequence", "h_n")``); an LSTM's cell states
            are ``"c_n"`` and ``"c_n[k]"``.
        cell: ``"elman"`` (the default), ``"gru"`` or ``"lstm"`` (:data:`CELLS`); one value,
            or one per layer (Keras stacks mix them). Spec section 2.7.
        recurrent_activation: f, the gates' activation of a GRU or LSTM cell (Keras'
            ``recurrent_activation``, ONNX's f); default sigmoid. The same forms as
            ``activation``; ``None`` at an Elman layer of a per-layer list. Keras 2's
            ``hard_sigmoid`` is ``Activation("hard_sigmoid", alpha=0.2, beta=0.5)``, Keras 3's
            ``alpha=1/6``.
        cell_activation: h of an LSTM cell, applied to the cell state (ONNX's h); default the
            layer's ``activation`` (Keras uses one activation for both).
        reset_after: GRU: ``True`` (the default: torch, cuDNN, Keras 3, ONNX
            ``linear_before_reset=1``) applies the reset gate after the recurrent product,
            ``r * (h W_hn + b_hn)``; ``False`` before it, ``(r * h) W_hn + b_hn``.
        peepholes: LSTM: the gates see the cell state through diagonal weights (ONNX ``P``).
        input_forget: LSTM: the forget gate is ``1 - i`` (ONNX ``input_forget=1``).
        proj_size: LSTM: P, the state is projected to P units (torch ``proj_size``).

    Raises:
        ValueError: any field out of its allowed set, named in the message.
    """

    input_size: int
    hidden_size: int | tuple[int, ...]
    num_layers: int
    direction: str | tuple[str, ...]
    activation: ActivationValue
    clip: float | None | tuple[float | None, ...]
    bias: bool
    merge_mode: str | None | tuple[str | None, ...]
    padded_output: str
    output_order: str
    vocab_size: int | None
    mask_zero: bool
    padding_idx: int | None
    mask_value: float | None
    select: str
    head: tuple[Dense, ...]
    identities: tuple[Identity, ...]
    returns: tuple[str, ...]
    cell: str | tuple[str, ...]
    recurrent_activation: ActivationValue | tuple[tuple[Activation, ...] | None, ...] | None
    cell_activation: ActivationValue | tuple[tuple[Activation, ...] | None, ...] | None
    reset_after: bool | tuple[bool, ...]
    peepholes: bool | tuple[bool, ...]
    input_forget: bool | tuple[bool, ...]
    proj_size: int | None | tuple[int | None, ...]
    _activations: tuple[tuple[Activation, ...], ...] = field(init=False, repr=False, compare=False)
    _cells: tuple[CellSpec, ...] = field(init=False, repr=False, compare=False)
    _cell_acts: tuple[tuple[tuple[Activation, ...], ...], ...] = field(
        init=False, repr=False, compare=False)

    def __init__(
        self,
        input_size: SizeLike,
        hidden_size: SizeLike | Sequence[SizeLike],
        num_layers: SizeLike | None = None,
        direction: str | Sequence[str] = "forward",
        activation: ActivationSpec = "tanh",
        clip: float | None | Sequence[float | None] = None,
        bias: bool = True,
        output_size: SizeLike | None = None,
        output_activation: ActivationLike | None = None,
        merge_mode: str | None | Sequence[str | None] = "concat",
        padded_output: str = "zeros",
        output_order: str = "aligned",
        *,
        vocab_size: SizeLike | None = None,
        mask_zero: bool = False,
        padding_idx: SizeLike | None = None,
        mask_value: float | None = None,
        select: str = "sequence",
        head: Sequence[Any] | None = None,
        identities: Sequence[Any] = (),
        returns: Sequence[str] = ("result",),
        cell: str | Sequence[str] = "elman",
        recurrent_activation: GatedActivationSpec | None = None,
        cell_activation: GatedActivationSpec | None = None,
        reset_after: bool | Sequence[bool | None] = True,
        peepholes: bool | Sequence[bool | None] = False,
        input_forget: bool | Sequence[bool | None] = False,
        proj_size: SizeLike | None | Sequence[SizeLike | None] = None,
    ) -> None:
        # validate every argument first, in the order of the signature, then store the results
        d = _positive_int(input_size, "input_size")
        sizes = _layer_sizes(hidden_size, num_layers)
        L = len(sizes)
        directions = tuple(_choice(v, DIRECTIONS, f"direction[{i}]" if L > 1 else "direction")
                           for i, v in enumerate(_per_layer(direction, L, "direction")))
        activations = self._normalise_activation(activation, directions)
        cells = _layer_cells(cell, reset_after, peepholes, input_forget, proj_size, L)
        gates = self._optional_activation(recurrent_activation, directions, cells, ("gru", "lstm"),
                                          "recurrent_activation", lambda li, r: _SIGMOID)
        hs = self._optional_activation(cell_activation, directions, cells, ("lstm",),
                                       "cell_activation", lambda li, r: activations[li][r])
        cell_acts = tuple(
            tuple(_cell_activations(c.kind, activations[li][r], gates[li], hs[li], r)
                  for r in range(len(activations[li])))
            for li, c in enumerate(cells))
        clips = _layer_clips(clip, L)
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be True or False, got {bias!r}")
        dense = _head(head, output_size, output_activation)
        merges = _layer_merges(merge_mode, directions)
        _choice(padded_output, PADDED_OUTPUTS, "padded_output")
        _choice(output_order, OUTPUT_ORDERS, "output_order")
        if output_order == "processing" and directions[-1] != "reverse":
            raise ValueError(
                f"output_order='processing' needs a reverse last layer (Keras go_backwards); "
                f"a {directions[-1]} layer's outputs are time-aligned"
            )
        embedding = _embedding(vocab_size, mask_zero, padding_idx, mask_value)
        sel = _check_select(select, directions, merges, dense)
        if sel == "mean_valid" and output_order == "processing":
            raise ValueError("select='mean_valid' with output_order='processing': which steps "
                             "are valid in the flipped outputs is ambiguous; use "
                             "output_order='aligned' (the mean is the same)")
        idents = _identities(identities, L, len(dense))
        counts = [2 if v == "bidirectional" else 1 for v in directions]
        rets = check_returns(returns, sum(counts),
                             sum(n for n, c in zip(counts, cells, strict=True) if c.kind == "lstm"))
        set_ = object.__setattr__  # the dataclass is frozen
        for name, value in (
            ("input_size", d), ("hidden_size", _compact(sizes)), ("num_layers", L),
            ("direction", _compact(directions)),
            ("activation", self._compact_activation(activations)), ("clip", _compact(clips)),
            ("bias", bias), ("merge_mode", _compact(merges)), ("padded_output", padded_output),
            ("output_order", output_order), ("vocab_size", embedding[0]),
            ("mask_zero", embedding[1]), ("padding_idx", embedding[2]),
            ("mask_value", embedding[3]), ("select", sel), ("head", dense),
            ("identities", idents), ("returns", rets),
            ("cell", _compact(tuple(c.kind for c in cells))),
            ("recurrent_activation", self._compact_optional(gates)),
            ("cell_activation", self._compact_optional(hs)),
            ("reset_after", _compact_switch(cells, "reset_after", ("gru",))),
            ("peepholes", _compact_switch(cells, "peepholes", ("lstm",))),
            ("input_forget", _compact_switch(cells, "input_forget", ("lstm",))),
            ("proj_size", _compact_switch(cells, "proj_size", ("lstm",))),
            ("_activations", activations), ("_cells", cells), ("_cell_acts", cell_acts),
        ):
            set_(self, name, value)

    @staticmethod
    def _normalise_activation(spec: Any, directions: tuple[str, ...]
                              ) -> tuple[tuple[Activation, ...], ...]:
        counts = [2 if d == "bidirectional" else 1 for d in directions]

        def per_direction(item: Any, where: str, R: int) -> tuple[Activation, ...]:
            if isinstance(item, (list, tuple)):
                if len(item) != R:
                    raise ValueError(
                        f"{where} gives {len(item)} activations but the layer has {R} "
                        f"direction(s)"
                    )
                return tuple(as_activation(a, where=f"{where}[{r}]") for r, a in enumerate(item))
            return (as_activation(item, where=where),) * R

        L = len(directions)
        if isinstance(spec, (list, tuple)) and spec and all(
            isinstance(a, (list, tuple)) for a in spec
        ):
            if len(spec) != L:
                raise ValueError(
                    f"activation lists {len(spec)} layers but the network has {L} layer(s)"
                )
            return tuple(per_direction(a, f"activation[{i}]", counts[i])
                         for i, a in enumerate(spec))
        if isinstance(spec, (list, tuple)) and len(set(counts)) > 1:
            raise ValueError("activation: one list per direction is ambiguous when layers have "
                             "different directions; give one list per layer")
        return tuple(per_direction(spec, "activation", r) for r in counts)

    @classmethod
    def _optional_activation(cls, spec: Any, directions: tuple[str, ...],
                             cells: tuple[CellSpec, ...], kinds: tuple[str, ...], where: str,
                             default: Any) -> tuple[tuple[Activation, ...] | None, ...]:
        """An activation only some cells have (the gates' f; the LSTM's h): per layer, R_l
        activations at a layer whose cell has it, ``None`` at the others. ``default(l, r)``
        fills a layer when ``spec`` is ``None``."""
        has = [c.kind in kinds for c in cells]
        counts = [2 if d == "bidirectional" else 1 for d in directions]
        if spec is None:
            return tuple(tuple(default(li, r) for r in range(counts[li])) if h else None
                         for li, h in enumerate(has))
        if not any(has):
            raise ValueError(f"{where}={spec!r} applies to {_kinds(kinds)} layers; the "
                             f"network's layers are {[c.kind for c in cells]}")
        per_layer = (isinstance(spec, (list, tuple)) and len(spec) == len(cells)
                     and all(a is None or isinstance(a, (list, tuple)) for a in spec)
                     and any(isinstance(a, (list, tuple)) for a in spec))
        if per_layer or (isinstance(spec, (list, tuple)) and None in spec):
            if len(spec) != len(cells):
                raise ValueError(f"{where} lists {len(spec)} layers but the network has "
                                 f"{len(cells)} layer(s)")
            out: list[tuple[Activation, ...] | None] = []
            for li, item in enumerate(spec):
                if not has[li]:
                    if item is not None:
                        raise ValueError(f"{where}[{li}]={item!r}, but layer {li} is "
                                         f"{cells[li].kind!r}, which has no {where}")
                    out.append(None)
                elif item is None:
                    out.append(tuple(default(li, r) for r in range(counts[li])))
                else:
                    out.append(cls._normalise_activation(item, (directions[li],))[0])
            return tuple(out)
        parsed = cls._normalise_activation(spec, tuple(d for d, h in zip(directions, has,
                                                                          strict=True) if h))
        it = iter(parsed)
        return tuple(next(it) if h else None for h in has)

    @staticmethod
    def _compact_optional(acts: tuple[tuple[Activation, ...] | None, ...]) -> Any:
        """The most compact form of an activation some layers lack: ``None`` when no layer
        has it, else that of the layers that do (a tuple of L, ``None`` where a layer lacks
        it, when they differ and some lack it)."""
        present = [a for a in acts if a is not None]
        if not present:
            return None
        if all(a == present[0][0] for layer in present for a in layer):
            return present[0][0]
        if len(present) == len(acts):
            return RNNConfig._compact_activation(tuple(present))
        return acts

    @staticmethod
    def _compact_activation(acts: tuple[tuple[Activation, ...], ...]) -> ActivationValue:
        if all(a == acts[0][0] for layer in acts for a in layer):
            return acts[0][0]
        if all(layer == acts[0] for layer in acts):
            return acts[0]
        return acts

    # -- derived sizes ----------------------------------------------------------------------
    @property
    def directions(self) -> tuple[str, ...]:
        """The direction of every layer, a tuple of L."""
        d = self.direction
        return d if isinstance(d, tuple) else (d,) * self.num_layers

    def num_directions_of(self, layer: int) -> int:
        """R_l: 2 for a bidirectional layer, else 1."""
        return 2 if self.directions[layer] == "bidirectional" else 1

    @property
    def num_directions(self) -> int:
        """R: 2 for a bidirectional network, else 1 (every layer the same; a mixed stack
        raises, read :meth:`num_directions_of`)."""
        counts = {self.num_directions_of(i) for i in range(self.num_layers)}
        if len(counts) > 1:
            raise ValueError(f"the layers have different directions {self.directions}; use "
                             f"num_directions_of(layer)")
        return counts.pop()

    @property
    def num_states(self) -> int:
        """S, the number of final states: the sum of R_l (L*R when every layer has R)."""
        return sum(self.num_directions_of(i) for i in range(self.num_layers))

    def state_index(self, layer: int, direction: int) -> int:
        """Where layer ``layer``, direction ``direction`` sits in ``h0``/``h_n``
        (``l*R + r`` when every layer has R directions)."""
        return sum(self.num_directions_of(i) for i in range(layer)) + direction

    def is_reverse(self, layer: int, direction: int) -> bool:
        """Whether that direction reads the sequence from its end: a reverse layer's one
        direction, a bidirectional layer's second."""
        return self.directions[layer] == "reverse" or direction == 1

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """M of every layer, a tuple of L ints (an LSTM's cell-state width)."""
        hs = self.hidden_size
        return hs if isinstance(hs, tuple) else (hs,) * self.num_layers

    @property
    def cells(self) -> tuple[CellSpec, ...]:
        """Every layer's cell and switches, a tuple of L :class:`~rnn_ref.cells.CellSpec`."""
        return self._cells

    def cell_of(self, layer: int) -> CellSpec:
        """Layer ``layer``'s cell and switches."""
        return self._cells[layer]

    @property
    def is_elman(self) -> bool:
        """True when every layer is an Elman cell."""
        return all(c.kind == "elman" for c in self._cells)

    def activations_of(self, layer: int, direction: int) -> tuple[Activation, ...]:
        """The activations of layer ``layer``, direction ``direction`` in ONNX's order:
        ``(f,)`` for an Elman cell, ``(f, g)`` for a GRU (gates, candidate), ``(f, g, h)`` for
        an LSTM (gates, candidate, cell state)."""
        return self._cell_acts[layer][direction]

    @property
    def output_sizes(self) -> tuple[int, ...]:
        """The width of every layer's state h and of each direction's outputs: M, or P for an
        LSTM with a projection; a tuple of L ints."""
        return tuple(m if c.proj_size is None else c.proj_size
                     for m, c in zip(self.hidden_sizes, self._cells, strict=True))

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """The width of every final state h, a tuple of S ints (in ``h_n`` order): M, or P
        for a projected LSTM."""
        return tuple(m for i, m in enumerate(self.output_sizes)
                     for _ in range(self.num_directions_of(i)))

    @property
    def num_cell_states(self) -> int:
        """C, the number of LSTM cell states ``c`` (one per direction of each LSTM layer)."""
        return sum(self.num_directions_of(i) for i, c in enumerate(self._cells)
                   if c.kind == "lstm")

    def cell_state_index(self, layer: int, direction: int) -> int:
        """Where an LSTM layer's direction sits in ``c0``/``c_n``: the LSTM directions below
        it, plus ``direction`` (``l*R + r`` when every layer is an LSTM of R directions).

        Raises:
            ValueError: layer ``layer`` is not an LSTM.
        """
        if self._cells[layer].kind != "lstm":
            raise ValueError(f"layer {layer} is {self._cells[layer].kind!r}: only an LSTM "
                             f"layer has a cell state")
        return sum(self.num_directions_of(i) for i in range(layer)
                   if self._cells[i].kind == "lstm") + direction

    @property
    def cell_state_sizes(self) -> tuple[int, ...]:
        """M of every cell state, a tuple of C ints (in ``c_n`` order)."""
        return tuple(m for i, (m, c) in enumerate(zip(self.hidden_sizes, self._cells,
                                                      strict=True))
                     if c.kind == "lstm" for _ in range(self.num_directions_of(i)))

    @property
    def clips(self) -> tuple[float | None, ...]:
        """The clip of every layer, a tuple of L values."""
        c = self.clip
        return c if isinstance(c, tuple) else (c,) * self.num_layers

    @property
    def merge_modes(self) -> tuple[str | None, ...]:
        """The merge mode of every layer, a tuple of L values."""
        m = self.merge_mode
        return m if isinstance(m, tuple) else (m,) * self.num_layers

    def activation_of(self, layer: int, direction: int) -> Activation:
        """f of layer ``layer``, direction ``direction`` (0 forward, 1 backward)."""
        return self._activations[layer][direction]

    @property
    def activations(self) -> tuple[tuple[Activation, ...], ...]:
        """f of every layer and direction: L tuples of R_l activations."""
        return self._activations

    def layer_input_size(self, layer: int) -> int:
        """D_l: D for layer 0, else the merged output width of the layer below."""
        return self.input_size if layer == 0 else self.layer_output_size(layer - 1)

    def layer_output_size(self, layer: int) -> int:
        """The feature width a layer hands on: R_l*M for ``concat``, M otherwise."""
        m = self.output_sizes[layer]
        return m * self.num_directions_of(layer) if self.merge_modes[layer] == "concat" else m

    @property
    def output_features(self) -> int:
        """The width of the last layer's merged outputs."""
        return self.layer_output_size(self.num_layers - 1)

    @property
    def selected_features(self) -> int:
        """The width of what :attr:`select` hands to the head: M for one direction's final
        state, else :attr:`output_features`."""
        if self.select in ("final_forward", "final_backward"):
            return self.output_sizes[-1]
        return self.output_features

    def head_input_size(self, j: int) -> int:
        """The input width of head layer ``j``."""
        return self.selected_features if j == 0 else self.head[j - 1].units

    @property
    def output_size(self) -> int | None:
        """K, the units of the head's last layer; ``None`` without a head."""
        return self.head[-1].units if self.head else None

    @property
    def output_activation(self) -> HeadActivation:
        """g of the head's last layer (linear without a head)."""
        return self.head[-1].activation if self.head else Activation("linear")

    @property
    def uniform_hidden(self) -> bool:
        """True when every state h has the same width, so ``h0``/``h_n`` are one (S, N, M)
        array."""
        return len(set(self.output_sizes)) == 1

    @property
    def uniform_cell(self) -> bool:
        """True when every cell state has the same M, so ``c0``/``c_n`` are one (C, N, M)
        array (also when there is none)."""
        return len(set(self.cell_state_sizes)) <= 1

    @property
    def is_plain(self) -> bool:
        """True for the recurrent stack alone with at most a one-layer readout per step: no
        embedding, no masking value, one direction kind, ``select="sequence"``, and no
        identity layers, one output, Elman cells; what every converter has handled since the
        first version."""
        return (self.vocab_size is None and self.mask_value is None
                and len(set(self.directions)) == 1 and self.select == "sequence"
                and len(self.head) <= 1 and not self.identities and self.returns == ("result",)
                and self.is_elman
                and not any(not d.bias or not isinstance(d.activation, Activation)
                            for d in self.head))

    def num_parameters(self, convention: Literal["keras", "torch"] = "torch") -> int:
        """Count the parameters as a framework does.

        An Elman cell has ``D*M + M*M`` weights, a GRU 3 and an LSTM 4 times as many (with
        ``P*M`` for ``M*M`` per gate when projected, plus ``M*P`` for the projection, plus M
        per peephole). ``"keras"`` counts one bias per gate (two for a GRU with
        ``reset_after``, Keras' ``(2, 3M)`` bias), ``"torch"`` two; both count the embedding
        (``V*D``) and each head layer (``F*K + K``, or ``F*K`` without a bias). A bias-free
        stack counts no cell bias.
        """
        _choice(convention, ("keras", "torch"), "convention")
        total = (self.vocab_size or 0) * self.input_size
        for layer, m in enumerate(self.hidden_sizes):
            d, p, cell = self.layer_input_size(layer), self.output_sizes[layer], self._cells[layer]
            g = len(cell.gates)
            nb = 0
            if self.bias:
                nb = 2 if convention == "torch" or (cell.kind == "gru" and cell.reset_after) else 1
            per = g * (d * m + p * m + nb * m) + len(cell.peephole_gates) * m
            if cell.proj_size is not None:
                per += m * p
            total += self.num_directions_of(layer) * per
        for j, dense in enumerate(self.head):
            total += self.head_input_size(j) * dense.units + (dense.units if dense.bias else 0)
        return total

    def describe(self) -> list[str]:
        """The whole network, one line per piece, input to output (``rnn-ref inspect``)."""
        lines = []
        if self.vocab_size is not None:
            extra = "".join([", mask_zero" if self.mask_zero else "",
                             "" if self.padding_idx is None else f", padding_idx "
                             f"{self.padding_idx}"])
            lines.append(f"embedding: {self.vocab_size} ids x {self.input_size}{extra}")
        else:
            masking = "" if self.mask_value is None else f", Masking(mask_value={self.mask_value})"
            lines.append(f"input: {self.input_size} features{masking}")
        by_place: dict[int, list[str]] = {}
        for ident in self.identities:
            in_cell = ident.kind in ("input_dropout", "recurrent_dropout")
            place = ident.after + 1 if in_cell else ident.after
            by_place.setdefault(place, []).append(
                f"  {ident.kind} {ident.rate:g}" + (f" (in layer {ident.after})" if in_cell
                                                    else ""))
        lines += by_place.get(0, [])
        for li, m in enumerate(self.hidden_sizes):
            cell = self.cell_of(li)
            per_dir = [self.activations_of(li, r) for r in range(self.num_directions_of(li))]
            names = ("f", "g", "h") if cell.kind != "elman" else ("",)
            acts = "/".join(" ".join(f"{n}={a}" if n else str(a) for n, a in
                                     zip(names, fs, strict=False))
                            for fs in (per_dir[:1] if len(set(per_dir)) == 1 and
                                       cell.kind != "elman" else per_dir))
            kind = "" if cell.kind == "elman" else f"{cell.describe()}, "
            merge = (f", merge {self.merge_modes[li]}"
                     if self.directions[li] == "bidirectional" else "")
            clip = "" if self.clips[li] is None else f", clip {self.clips[li]:g}"
            lines.append(f"layer {li}: {kind}{self.directions[li]}, hidden {m}, {acts}{merge}{clip}"
                         f"{'' if self.bias else ', no bias'}")
            lines += by_place.get(li + 1, [])
        order = ", processing order" if self.output_order == "processing" else ""
        lines.append(f"select: {self.select}{order}, padded steps output "
                     f"{self.padded_output}")
        for j, dense in enumerate(self.head):
            lines.append(f"head {j}: {dense}")
            lines += by_place.get(self.num_layers + 1 + j, [])
        if self.returns != ("result",):
            lines.append(f"returns: {', '.join(self.returns)}")
        return lines

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it exactly."""
        def enc(a: Any) -> Any:
            if isinstance(a, Activation):
                return a.to_json()
            if isinstance(a, tuple):
                return [enc(x) for x in a]
            return a

        return {
            "input_size": self.input_size,
            "hidden_size": enc(self.hidden_size),
            "num_layers": self.num_layers,
            "direction": enc(self.direction),
            "activation": enc(self.activation),
            "clip": enc(self.clip),
            "bias": self.bias,
            "merge_mode": enc(self.merge_mode),
            "padded_output": self.padded_output,
            "output_order": self.output_order,
            "vocab_size": self.vocab_size,
            "mask_zero": self.mask_zero,
            "padding_idx": self.padding_idx,
            "mask_value": self.mask_value,
            "select": self.select,
            "head": [d.to_dict() for d in self.head],
            "identities": [i.to_dict() for i in self.identities],
            "returns": list(self.returns),
            "cell": enc(self.cell),
            "recurrent_activation": enc(self.recurrent_activation),
            "cell_activation": enc(self.cell_activation),
            "reset_after": enc(self.reset_after),
            "peepholes": enc(self.peepholes),
            "input_forget": enc(self.input_forget),
            "proj_size": enc(self.proj_size),
        }

    #: Keys of configs written before the head existed, read as its one-layer shorthand.
    _SHORTHAND = ("output_size", "output_activation")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RNNConfig:
        """Build a config from :meth:`to_dict`'s output (or an older one with
        ``output_size``/``output_activation``); unknown keys raise ``ValueError``."""
        if not isinstance(data, Mapping):
            raise TypeError(f"config must be a mapping, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__ if not f.startswith("_")}
        known |= set(cls._SHORTHAND)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"config has unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
        if "input_size" not in data or "hidden_size" not in data:
            raise ValueError("config needs at least 'input_size' and 'hidden_size'")
        return cls(**dict(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes: Any) -> RNNConfig:
        """A copy with some fields changed (validated again); ``output_size`` and
        ``output_activation`` replace the head by a one-layer readout."""
        data = self.to_dict()
        if any(k in changes for k in self._SHORTHAND):
            data.pop("head")
            if self.head and len(self.head) == 1:
                data["output_size"] = self.head[0].units
                data["output_activation"] = self.head[0].activation.to_json()
        data.update(changes)
        return RNNConfig.from_dict(data)
