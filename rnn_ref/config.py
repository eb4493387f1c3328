"""The architecture of an Elman network: :class:`RNNConfig`.

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

__all__ = [
    "DIRECTIONS", "MERGE_MODES", "OUTPUT_ORDERS", "PADDED_OUTPUTS", "ActivationSpec",
    "ActivationValue", "RNNConfig", "SizeLike",
]

#: What a size argument of :class:`RNNConfig` may be: an int or a NumPy integer (never a bool).
SizeLike = int | np.integer[Any]
#: What :class:`RNNConfig`'s ``activation`` argument may be: one activation, one per direction,
#: or one list per layer of one per direction.
ActivationSpec = (
    ActivationLike | Sequence[ActivationLike] | Sequence[Sequence[ActivationLike]]
)
#: What :attr:`RNNConfig.activation` holds: the most compact form of the L x R activations.
ActivationValue = Activation | tuple[Activation, ...] | tuple[tuple[Activation, ...], ...]

_T = TypeVar("_T")

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


def _layer_merges(merge_mode: Any, num_layers: int, direction: str, output_size: int | None
                  ) -> tuple[str | None, ...]:
    """The merge mode of every layer, checked against the direction and the readout."""
    merges = _per_layer(merge_mode, num_layers, "merge_mode")
    for i, mm in enumerate(merges):
        _choice(mm, MERGE_MODES, f"merge_mode[{i}]")
        if direction != "bidirectional" and mm != "concat":
            raise ValueError(
                f"merge_mode[{i}]={mm!r} needs direction='bidirectional'; "
                f"a {direction} network allows only 'concat'"
            )
        if mm is None and i != num_layers - 1:
            raise ValueError(
                f"merge_mode[{i}]=None (return the pair) is allowed only for the last layer"
            )
    if merges[-1] is None and output_size is not None:
        raise ValueError(
            "merge_mode=None returns a pair of outputs, which a readout cannot take; "
            "use output_size=None or another merge_mode"
        )
    return merges


@dataclass(frozen=True, init=False)
class RNNConfig:
    """The architecture of an Elman network, independent of any framework.

    The constructor takes the wide forms listed under Args (names, mappings, lists, NumPy
    integers); every attribute holds the validated, normalised value and is typed as such. The
    class is a frozen dataclass whose explicit ``__init__`` takes the wide forms and stores the
    narrow ones, so equality, hashing, ``repr``, :meth:`to_dict` and ``dataclasses.replace`` all
    see normalised values, and two spellings of one network are equal
    (``RNNConfig(3, [4, 4]) == RNNConfig(3, 4, num_layers=2)``). After construction:

    - ``input_size``, ``num_layers``: ``int``; ``output_size``: ``int | None`` (NumPy integers
      become plain ints);
    - ``output_activation``: an :class:`~rnn_ref.Activation`;
    - ``activation``: the most compact of one ``Activation``, a tuple of R, or a tuple of L
      tuples of R (:data:`ActivationValue`);
    - ``hidden_size``, ``clip`` (``float`` or ``None``) and ``merge_mode``: one value when every
      layer has the same, else a tuple of L;
    - ``direction``, ``bias``, ``padded_output``, ``output_order``: as given.

    For one value per layer whatever the form, read :attr:`hidden_sizes`, :attr:`clips`,
    :attr:`merge_modes`, :attr:`activations` or :meth:`activation_of`.

    Args:
        input_size: D, the features of each input step. Sizes are ints or NumPy integers.
        hidden_size: M, an int, or one int per layer (Keras stacks often narrow, 64 then 32).
        num_layers: L. Defaults to the length of ``hidden_size`` when that is a list, else 1.
        direction: ``"forward"``, ``"reverse"`` (one direction that reads the sequence from its
            last valid step to its first) or ``"bidirectional"``.
        activation: f of the cell. A name (``"tanh"``), an :class:`~rnn_ref.Activation` with
            explicit parameters, a ``{"name", "alpha", "beta"}`` mapping; a list or tuple of R
            of those (one per direction, every layer); or a list of L such lists (one per layer,
            then per direction), e.g. ``[("relu", "tanh"), ("tanh", "tanh")]``.
        clip: c, the cell pre-activation is limited to ``[-c, c]`` (ONNX ``clip``); ``None``
            for no clip. One value, or one per layer.
        bias: ``False`` for a bias-free network (torch ``bias=False``, Keras
            ``use_bias=False``): all biases are then zero and :class:`~rnn_ref.RNNParams`
            rejects non-zero ones.
        output_size: K, adds the readout ``y_t = g(h_t @ W_y + b_y)``; ``None`` for none.
        output_activation: g of the readout, default ``"linear"``.
        merge_mode: how a bidirectional layer joins its two directions: ``"concat"``
            (forward then backward, the default), ``"sum"``, ``"mul"``, ``"ave"``, or ``None``
            (the last layer returns the pair). One value, or one per layer. Unidirectional
            networks accept only ``"concat"``.
        padded_output: what a padded or masked step of the last layer outputs: ``"zeros"``
            (onnxruntime, torch ``pad_packed_sequence``), ``"carry_output"`` (the last output,
            zeros before the first valid step: Keras on TensorFlow and torch), or
            ``"carry_state"`` (the carried state, so a leading masked step outputs ``h0``:
            Keras on JAX and NumPy).
        output_order: ``"aligned"`` (position t holds the state after consuming ``x_t``: torch,
            ONNX) or ``"processing"`` (a reverse direction's outputs in the order it computed
            them: Keras ``go_backwards=True``). Only for ``direction="reverse"``, and it applies
            to the last layer's outputs only (the layers below hand on time-aligned outputs).

    Raises:
        ValueError: any field out of its allowed set, named in the message.
    """

    input_size: int
    hidden_size: int | tuple[int, ...]
    num_layers: int
    direction: str
    activation: ActivationValue
    clip: float | None | tuple[float | None, ...]
    bias: bool
    output_size: int | None
    output_activation: Activation
    merge_mode: str | None | tuple[str | None, ...]
    padded_output: str
    output_order: str
    _activations: tuple[tuple[Activation, ...], ...] = field(init=False, repr=False, compare=False)

    def __init__(
        self,
        input_size: SizeLike,
        hidden_size: SizeLike | Sequence[SizeLike],
        num_layers: SizeLike | None = None,
        direction: str = "forward",
        activation: ActivationSpec = "tanh",
        clip: float | None | Sequence[float | None] = None,
        bias: bool = True,
        output_size: SizeLike | None = None,
        output_activation: ActivationLike = "linear",
        merge_mode: str | None | Sequence[str | None] = "concat",
        padded_output: str = "zeros",
        output_order: str = "aligned",
    ) -> None:
        # validate every argument first, in the order of the signature, then store the results
        d = _positive_int(input_size, "input_size")
        sizes = _layer_sizes(hidden_size, num_layers)
        L = len(sizes)
        _choice(direction, DIRECTIONS, "direction")
        R = 2 if direction == "bidirectional" else 1
        activations = self._normalise_activation(activation, L, R)
        clips = _layer_clips(clip, L)
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be True or False, got {bias!r}")
        k = None if output_size is None else _positive_int(output_size, "output_size")
        g = as_activation(output_activation, where="output_activation")
        merges = _layer_merges(merge_mode, L, direction, k)
        _choice(padded_output, PADDED_OUTPUTS, "padded_output")
        _choice(output_order, OUTPUT_ORDERS, "output_order")
        if output_order == "processing" and direction != "reverse":
            raise ValueError(
                f"output_order='processing' needs direction='reverse' (Keras go_backwards); "
                f"a {direction} network's outputs are time-aligned"
            )
        set_ = object.__setattr__  # the dataclass is frozen
        set_(self, "input_size", d)
        set_(self, "hidden_size", _compact(sizes))
        set_(self, "num_layers", L)
        set_(self, "direction", direction)
        set_(self, "activation", self._compact_activation(activations))
        set_(self, "clip", _compact(clips))
        set_(self, "bias", bias)
        set_(self, "output_size", k)
        set_(self, "output_activation", g)
        set_(self, "merge_mode", _compact(merges))
        set_(self, "padded_output", padded_output)
        set_(self, "output_order", output_order)
        set_(self, "_activations", activations)

    @staticmethod
    def _normalise_activation(spec: Any, L: int, R: int) -> tuple[tuple[Activation, ...], ...]:
        def per_direction(item: Any, where: str) -> tuple[Activation, ...]:
            if isinstance(item, (list, tuple)):
                if len(item) != R:
                    raise ValueError(
                        f"{where} gives {len(item)} activations but the network has {R} "
                        f"direction(s)"
                    )
                return tuple(as_activation(a, where=f"{where}[{r}]") for r, a in enumerate(item))
            return (as_activation(item, where=where),) * R

        if isinstance(spec, (list, tuple)) and spec and all(
            isinstance(a, (list, tuple)) for a in spec
        ):
            if len(spec) != L:
                raise ValueError(
                    f"activation lists {len(spec)} layers but the network has {L} layer(s)"
                )
            return tuple(per_direction(a, f"activation[{i}]") for i, a in enumerate(spec))
        return (per_direction(spec, "activation"),) * L

    @staticmethod
    def _compact_activation(acts: tuple[tuple[Activation, ...], ...]) -> ActivationValue:
        if all(a == acts[0][0] for layer in acts for a in layer):
            return acts[0][0]
        if all(layer == acts[0] for layer in acts):
            return acts[0]
        return acts

    # -- derived sizes ----------------------------------------------------------------------
    @property
    def num_directions(self) -> int:
        """R: 2 for a bidirectional network, else 1."""
        return 2 if self.direction == "bidirectional" else 1

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """M of every layer, a tuple of L ints."""
        hs = self.hidden_size
        return hs if isinstance(hs, tuple) else (hs,) * self.num_layers

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
        """f of every layer and direction: L tuples of R activations."""
        return self._activations

    def layer_input_size(self, layer: int) -> int:
        """D_l: D for layer 0, else the merged output width of the layer below."""
        return self.input_size if layer == 0 else self.layer_output_size(layer - 1)

    def layer_output_size(self, layer: int) -> int:
        """The feature width a layer hands on: R*M for ``concat``, M otherwise."""
        m = self.hidden_sizes[layer]
        return m * self.num_directions if self.merge_modes[layer] == "concat" else m

    @property
    def output_features(self) -> int:
        """The width of the last layer's merged outputs (the readout's input size)."""
        return self.layer_output_size(self.num_layers - 1)

    @property
    def uniform_hidden(self) -> bool:
        """True when every layer has the same M, so ``h0``/``h_n`` are one (L*R, N, M) array."""
        return len(set(self.hidden_sizes)) == 1

    def num_parameters(self, convention: Literal["keras", "torch"] = "torch") -> int:
        """Count the parameters as a framework does.

        ``"keras"`` counts one bias per cell (``D*M + M*M + M``), ``"torch"`` two
        (``D*M + M*M + 2*M``); both count the readout as ``F*K + K`` with F the last layer's
        output width. A bias-free network counts no bias.
        """
        _choice(convention, ("keras", "torch"), "convention")
        nb = (1 if convention == "keras" else 2) if self.bias else 0
        total = 0
        for layer, m in enumerate(self.hidden_sizes):
            d = self.layer_input_size(layer)
            total += self.num_directions * (d * m + m * m + nb * m)
        if self.output_size is not None:
            total += self.output_features * self.output_size + self.output_size
        return total

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it exactly."""
        act = self.activation

        def enc(a: Any) -> Any:
            if isinstance(a, Activation):
                return a.to_json()
            return [enc(x) for x in a]

        return {
            "input_size": self.input_size,
            "hidden_size": list(self.hidden_size) if isinstance(self.hidden_size, tuple)
            else self.hidden_size,
            "num_layers": self.num_layers,
            "direction": self.direction,
            "activation": enc(act),
            "clip": list(self.clip) if isinstance(self.clip, tuple) else self.clip,
            "bias": self.bias,
            "output_size": self.output_size,
            "output_activation": self.output_activation.to_json(),
            "merge_mode": list(self.merge_mode) if isinstance(self.merge_mode, tuple)
            else self.merge_mode,
            "padded_output": self.padded_output,
            "output_order": self.output_order,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RNNConfig:
        """Build a config from :meth:`to_dict`'s output; unknown keys raise ``ValueError``."""
        if not isinstance(data, Mapping):
            raise TypeError(f"config must be a mapping, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__ if not f.startswith("_")}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"config has unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
        if "input_size" not in data or "hidden_size" not in data:
            raise ValueError("config needs at least 'input_size' and 'hidden_size'")
        return cls(**dict(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes: Any) -> RNNConfig:
        """A copy with some fields changed (validated again)."""
        data = self.to_dict()
        data.update(changes)
        return RNNConfig.from_dict(data)
