"""Every framework rnn-ref speaks, described once and without importing any of them.

Each :class:`Framework` record says what the framework is called, which module of
``rnn_ref.backends`` implements it, which importable modules and pip distributions it needs,
its public converters (``rnn_ref.from_torch`` ...), the file formats it reads and writes (with
extensions and the hints a file cannot tell), its backends, and a pure
``unsupported(config)`` saying what of the network it cannot hold. Everything else is derived
from :data:`FRAMEWORKS`: the backend registry (:mod:`rnn_ref._registry`), the lazy converters
and the oracle dispatch (:mod:`rnn_ref._lazy`), the format tables and dispatch of
:mod:`rnn_ref.convert`, ``rnn-ref info``, the version lists of reports and benchmarks.

Adding a framework is one module in ``backends/`` (the functions of :data:`MODULE_API`, a
backend class) plus one entry here.

Framework facts that more than one module needs live here too: Keras' activation set with the
parameters Keras fixes (``keras/src/activations/activations.py``: ``hard_sigmoid`` is
``relu6(x + 3) / 6``, ``leaky_relu`` slope 0.2, ``elu`` alpha 1.0).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rnn_ref.activations import Activation
from rnn_ref.config import RNNConfig
from rnn_ref.network import POOLINGS, SHOWS_PADDED_STEPS

__all__ = ["CONVERTER_API", "DEVICES", "FILE_API", "FRAMEWORKS", "GRAPH_API", "KERAS_ACTIVATIONS",
           "MODULE_API", "BackendSpec", "FileFormat", "Framework", "Unrecorded", "backends",
           "by_name", "distributions", "file_format", "formats", "keras_weights_unrecorded",
           "missing", "records_all", "sniff", "sniff_h5", "torch_lone_rnn", "torch_unrecorded",
           "versions"]

Reason = tuple[str, str] | None
"""``(feature, why)`` for the first thing a target cannot express, or ``None``."""

#: What every framework module defines: ``unsupported``; the converter functions where the
#: framework has converters, the file functions where it has file formats.
MODULE_API = ("unsupported",)
CONVERTER_API = ("from_native", "to_native", "oracle", "owns")
FILE_API = ("read_file", "write_file", "load_native", "run_native", "list_arrays")
#: ... and for a format that holds a converted graph rather than parameters (not readable)
GRAPH_API = ("describe",)


def missing(modules: tuple[str, ...]) -> list[str]:
    """The modules of ``modules`` that are not installed (found without importing them)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


Unrecorded = Callable[[RNNConfig], dict[str, str]]
"""What a file of a format, written of a network, does not record: hint name -> the value
of that hint (as the command line takes it) that restores the piece."""


def records_all(config: RNNConfig) -> dict[str, str]:
    """A format that records the whole network it is written of."""
    return {}


@dataclass(frozen=True)
class FileFormat:
    """A file format: its name (``--from``/``--to``), extensions and the hints it reads.

    ``hints`` are what a file of this format may not record (a weights-only file's
    activation): a reader takes exactly these, any other hint is an error.
    ``unrecorded(config)`` is the one declaration of what a file written of ``config`` does
    not record, with the hint values that restore it (keys among ``hints``): the writer's
    ``wrote`` line names them, ``--verify`` reads the written file back with exactly them,
    and the reader asks for each (a ``MissingHintError``) rather than assume it.
    ``requires`` are the modules needed to read or write it besides the framework's own.
    """

    name: str
    extensions: tuple[str, ...]
    holds: str
    hints: frozenset[str] = frozenset()
    requires: tuple[str, ...] = ()
    readable: bool = True  # False: written and run, but the parameters cannot be read back
    #: the parameter dtypes its own runtime runs, with the runtime's name; None: any
    runs: tuple[str, tuple[str, ...]] | None = None
    unrecorded: Unrecorded = records_all


#: where a backend computes: "cpu", or a GPU as its framework names it (torch "cuda", JAX "gpu")
DEVICES = ("cpu", "cuda", "gpu")


@dataclass(frozen=True)
class BackendSpec:
    """A built-in backend: where it lives, which modules it needs (checked, not imported),
    the device it computes on and its precision mode (``"default"``: the framework's default
    arithmetic for float32, TF32 where the framework enables it; ``"fp32"``: strict float32;
    see :mod:`rnn_ref.backends.devices`). A backend on a GPU runs only when named: finding a
    GPU would mean importing its framework."""

    name: str
    target: str  # "module:attribute", the attribute a zero-argument factory or class
    requires: tuple[str, ...]  # importable top-level module names
    device: str = "cpu"  # one of DEVICES
    precision: str = "default"  # "default" or "fp32"

    def missing(self) -> list[str]:
        """The required modules that are not installed (found without importing them)."""
        return missing(self.requires)


@dataclass(frozen=True)
class Framework:
    """One framework, as rnn-ref sees it (see the module docstring)."""

    name: str  # short name: "torch", "keras", "onnx", "flax", "jax", "rnn-ref"
    title: str  # what an UnsupportedError names: "torch.nn.RNN"
    module: str  # its module in rnn_ref.backends
    requires: tuple[str, ...]  # importable modules the module needs
    distributions: tuple[str, ...]  # pip distributions, for `info` and every report
    unsupported: Callable[[RNNConfig], Reason]
    converters: tuple[str, str] | None = None  # ("from_torch", "to_torch")
    recognised_when: str | None = None  # oracle dispatch: this module must be imported already
    formats: tuple[FileFormat, ...] = ()
    backends: tuple[BackendSpec, ...] = field(default=())

    def missing(self) -> list[str]:
        return missing(self.requires)


# --------------------------------------------------------------------------------------------
# what each framework cannot hold: pure functions of the config
# --------------------------------------------------------------------------------------------
KERAS_ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh"), "relu": Activation("relu"), "sigmoid": Activation("sigmoid"),
    "linear": Activation("linear"), "softsign": Activation("softsign"),
    "softplus": Activation("softplus"),
    "hard_sigmoid": Activation("hard_sigmoid", alpha=1 / 6, beta=0.5),
    "elu": Activation("elu", alpha=1.0), "leaky_relu": Activation("leaky_relu", alpha=0.2),
}
#: what torch's RNNWithReadout applies after its Linear
TORCH_READOUT_ACTIVATIONS = ("linear", "tanh", "relu", "sigmoid")


#: The pieces of the network beyond the plain Elman stack (docs/spec.md section 2.6), as
#: :func:`network_unsupported` names them.
NETWORK_PIECES = ("embedding", "mask_value", "mixed_directions", "select", "pooling",
                  "head_stack", "softmax", "dense_without_bias", "returns")


def network_unsupported(config: RNNConfig, holds: frozenset[str] | set[str] = frozenset()
                        ) -> Reason:
    """The first piece of the network beyond the plain stack (:data:`NETWORK_PIECES`) that a
    framework's converters and backends do not hold (``holds`` lists those they do), or
    ``None``. Identity layers are not here: every framework runs them (as nothing)."""
    from rnn_ref.network import Softmax

    head = config.head
    pieces = (
        ("embedding", config.vocab_size is not None,
         f"an embedding (vocab_size={config.vocab_size})"),
        ("mask_value", config.mask_value is not None, f"Masking(mask_value={config.mask_value})"),
        ("mixed_directions", len(set(config.directions)) > 1,
         f"layers of different directions {list(config.directions)}"),
        ("select", config.select not in ("sequence", *POOLINGS), f"select={config.select!r}"),
        ("pooling", config.select in POOLINGS, f"a pooling over time (select={config.select!r})"),
        ("head_stack", len(head) > 1, f"a head of {len(head)} dense layers"),
        ("softmax", any(isinstance(d.activation, Softmax) for d in head),
         "a softmax head layer"),
        ("dense_without_bias", any(not d.bias for d in head), "a head layer without a bias"),
        ("returns", config.returns != ("result",),
         f"several outputs (returns={list(config.returns)})"),
    )
    for name, present, what in pieces:
        if present and name not in holds:
            return what, "this framework's converters do not hold it yet"
    return None


def _first_activation(config: RNNConfig, allowed: Callable[[Activation], bool], why: str
                      ) -> Reason:
    for li, layer in enumerate(config.activations):
        for r, act in enumerate(layer):
            if not allowed(act):
                return f"activation {act} (layer {li}, direction {r})", why
    return None


def _padded_zeros(config: RNNConfig, how: str) -> Reason:
    if config.padded_output != "zeros":
        return (f"padded_output {config.padded_output!r}",
                f"{how}; use params.replace(padded_output='zeros') to accept that")
    return None


def torch_unsupported(config: RNNConfig, *, padded: bool = False) -> Reason:
    """What torch cannot compute: ``rnn_ref.to_torch`` holds every piece of the network (one
    ``nn.RNN`` per run of like layers, a reverse layer as a flipped ``nn.RNN``, the selection,
    pooling over time and the head in plain torch) except cell activations other than tanh and
    relu, a clip, a bidirectional last layer returning the pair of directions, and several
    outputs (``returns``). ``padded=True`` (inputs
    with padding or a mask) also refuses padded steps that do not output zeros: a
    ``PackedSequence`` pads with zeros (a converter warns instead, see
    ``adopt_padded_output``)."""
    reason = _first_activation(config, lambda a: a.name in ("tanh", "relu"),
                               "nn.RNN has only tanh and relu")
    if reason is not None:
        return reason
    if any(c is not None for c in config.clips):
        return "clip", "nn.RNN has no clip"
    if config.merge_modes[-1] is None:
        return ("merge_mode None (the pair of directions)",
                "the torch module returns one tensor; use another merge_mode")
    reason = network_unsupported(config, holds=set(NETWORK_PIECES) - {"returns"})
    if reason is not None:
        return reason
    return _padded_zeros(config, "a PackedSequence pads outputs with zeros") if padded else None


def torch_lone_rnn(config: RNNConfig) -> bool:
    """Whether one ``nn.RNN`` (with an ``RNNWithReadout`` readout) holds the network, and is
    what ``to_torch`` builds and a torch file holds: the plain stack, forward or
    bidirectional, one width, one nonlinearity, concatenated, a readout of
    :data:`TORCH_READOUT_ACTIVATIONS` per step. Any other network is a ``TorchNetwork``."""
    acts = {a for layer in config.activations for a in layer}
    return (config.is_plain and config.directions[0] != "reverse" and config.uniform_hidden
            and len(acts) == 1 and set(config.merge_modes) == {"concat"}
            and config.output_activation.name in TORCH_READOUT_ACTIVATIONS)


def torch_unrecorded(config: RNNConfig) -> dict[str, str]:
    """What a torch state dict of ``config`` does not record: nothing for a
    ``TorchNetwork``'s (its config buffer holds the network); for an ``nn.RNN``'s the
    nonlinearity, and for an ``RNNWithReadout``'s also the readout's activation."""
    if not torch_lone_rnn(config):
        return {}
    out = {"activation": config.activation_of(0, 0).name}
    if config.head:
        out["head_activation"] = config.output_activation.name
    return out


def _keras_name(act: Any) -> str:
    """The Keras name of a cell or Dense activation (``act`` itself if Keras has none)."""
    return next((k for k, v in KERAS_ACTIVATIONS.items() if v == act), str(act))


def keras_weights_unrecorded(config: RNNConfig) -> dict[str, str]:
    """What a Keras 3 ``.weights.h5`` of ``config`` does not record (it holds arrays by
    position): each layer's activation (one name, or one per layer comma-separated), the
    Dense head's activations, a reverse direction, a Bidirectional merge other than concat
    (concatenation shows in the next layer's width)."""
    names = [_keras_name(layer[0]) for layer in config.activations]
    out = {"activation": names[0] if len(set(names)) == 1 else ",".join(names)}
    if config.directions[-1] == "reverse":
        out["direction"] = "reverse"
    merge = config.merge_modes[-1]
    if config.directions[-1] == "bidirectional" and merge not in (None, "concat"):
        out["merge_mode"] = merge
    if config.head:
        out["head_activation"] = ",".join(_keras_name(d.activation) for d in config.head)
    return out


def keras_masked_step_output(backend: str, *, zero_output_for_mask: bool, unroll: bool) -> str:
    """The padded-output variant of a Keras RNN layer on Keras ``backend``."""
    if zero_output_for_mask:
        return "zeros"
    if backend in ("jax", "numpy") and not unroll:
        return "carry_state"
    return "carry_output"




#: Why a Keras model cannot say a selection (:func:`_keras_select`).
_KERAS_SELECT_WHY = {
    "last_step": "the last step is the final state (return_sequences=False) only for a forward "
                 "last layer on inputs that are never padded (no lengths, mask, mask_zero or "
                 "Masking)",
    "mean_valid": "GlobalAveragePooling1D weighs a go_backwards layer's outputs, in processing "
                  "order, by the mask in time order",
    "mean_all": "GlobalAveragePooling1D takes the mean over the valid steps; the mean over all "
                "steps is written only for inputs that are never padded",
}


def _keras_select(config: RNNConfig, padded: bool) -> Reason:
    """The selections a Keras model says: every step (``return_sequences=True``), the final
    output (``False``), ``max_all`` (``GlobalMaxPooling1D``, which ignores the mask),
    ``mean_valid`` (``GlobalAveragePooling1D``; not over a padded go_backwards layer), and,
    on inputs never padded, ``mean_all`` (the same mean) and a forward layer's ``last_step``
    (its final state)."""
    sel, last = config.select, config.directions[-1]
    if sel in ("sequence", "final", "max_all") or (
            sel == "last_step" and not padded and last == "forward") or (
            sel == "mean_valid" and not (padded and last == "reverse")) or (
            sel == "mean_all" and not padded):
        return None
    return f"select={sel!r}", _KERAS_SELECT_WHY.get(
        sel, "a Keras model returns every step (return_sequences=True), the last layer's "
        "final output (return_sequences=False) or a pooling of its steps "
        "(GlobalAveragePooling1D, GlobalMaxPooling1D)")


def _keras_returns(config: RNNConfig) -> Reason:
    """Several outputs: final states ``h_n[k]`` (``return_state=True``), the result, and the
    last layer's sequence where Keras computes it (returning sequences, in its order)."""
    for name in config.returns:
        if name == "h_n":
            return ("returns 'h_n'", "Keras returns each final state as a tensor of its own: "
                    "name them h_n[k]")
        if name == "sequence" and (
                config.select not in ("sequence", *POOLINGS) or (
                config.directions[-1] == "reverse" and config.output_order == "aligned")):
            return (f"returns 'sequence' with select={config.select!r}",
                    "the Keras layer returns its sequence only with return_sequences=True, "
                    "and a go_backwards layer's in processing order")
    if config.returns != ("result",) and config.merge_modes[-1] is None:
        return "several outputs with merge_mode None", "Keras' Bidirectional returns the pair"
    return None


def _keras_layout(config: RNNConfig, padded: bool) -> Reason:
    """What a chain of Keras layers cannot say: selections (:func:`_keras_select`), several
    outputs (:func:`_keras_returns`), a reverse layer below another, a reverse layer's
    time-aligned outputs."""
    reason = _keras_select(config, padded) or _keras_returns(config)
    if reason is not None:
        return reason
    if "reverse" in config.directions[:-1]:
        return ("a reverse layer below another layer",
                "go_backwards hands the next layer its outputs in processing order")
    if config.directions[-1] == "reverse" and config.output_order != "processing" \
            and config.select == "sequence":
        return ("time-aligned outputs of a reverse direction",
                "go_backwards returns them in processing order; use "
                "params.replace(output_order='processing')")
    return None


def keras_unsupported(config: RNNConfig, *, backend: str | None = None, padded: bool = True
                      ) -> Reason:
    """What a Keras model (``Embedding``/``Masking``, ``SimpleRNN``/``Bidirectional``
    layers, dropout and noise layers, a ``Dense`` head) cannot express, on Keras ``backend``
    when given (the padded-step variant depends on it). A network with ``mask_zero`` or
    ``mask_value`` pads by itself."""
    from rnn_ref.network import Softmax

    keras_acts = list(KERAS_ACTIVATIONS.values())
    if any(c is not None for c in config.clips):
        return "clip", "Keras' SimpleRNN has no clip"
    reason = _first_activation(config, lambda a: a in keras_acts,
                               f"Keras has {', '.join(str(a) for a in keras_acts)}")
    if reason is not None:
        return reason
    for j, dense in enumerate(config.head):
        if not isinstance(dense.activation, Softmax) and dense.activation not in keras_acts:
            return f"head layer {j} activation {dense.activation}", "Dense takes Keras activations"
    reason = _keras_layout(config, padded or config.mask_zero or config.mask_value is not None) \
        or network_unsupported(config, holds=set(NETWORK_PIECES))
    if reason is not None:
        return reason
    mode = config.padded_output
    if not (padded or config.mask_zero or config.mask_value is not None) or mode == "zeros":
        return None
    if config.directions[-1] == "bidirectional":
        return (f"padded_output {mode!r} in a Bidirectional layer",
                "Bidirectional forces zero_output_for_mask when returning sequences")
    if backend is not None:
        native = keras_masked_step_output(backend, zero_output_for_mask=False, unroll=False)
        if mode != native:
            return (f"padded_output {mode!r} on Keras' {backend} backend",
                    f"its masked steps give {native!r} (or 'zeros')")
    return None


#: The network pieces one ONNX graph holds (backends/onnx_graph.py): ``Gather`` for the
#: embedding, an ``RNN`` node per layer with its own direction, the selection from ``Y`` or
#: ``Y_h`` (a pooling by ``ReduceMean``/``ReduceMax``/``ReduceSum``), the head as ``MatMul``
#: [+ ``Add``] + activation (``Softmax``/``LogSoftmax``).
#: Not ``mask_value``: Keras' Masking would need a mask derived from the features.
ONNX_HOLDS = frozenset({"embedding", "mixed_directions", "select", "pooling", "head_stack",
                        "softmax", "dense_without_bias"})


def onnx_unsupported(config: RNNConfig, *, padded: bool = True) -> Reason:
    """What a graph of ONNX ``RNN`` nodes cannot express (with ``sequence_lens`` when
    ``padded``, which ``mask_zero`` always is). ``padded_output`` matters only where a padded
    step is seen: the selection ``sequence`` or ``last_step`` (a final state is the last valid
    one, and a lower layer's padded outputs feed only padded steps above)."""
    reason = network_unsupported(config, holds=ONNX_HOLDS)
    if reason is not None:
        return reason
    if config.mask_zero and config.select in SHOWS_PADDED_STEPS:
        return (f"mask_zero with select={config.select!r}",
                "the graph moves each sample's non-zero ids to the front before the RNN nodes "
                "(Keras skips every id-0 step, wherever it stands), so its per-step outputs "
                "are in that order; it holds final states and the mean over the valid steps")
    if padded and config.select in SHOWS_PADDED_STEPS:
        return _padded_zeros(config, "sequence_lens zeroes padded outputs")
    return None


#: the RNN activations OpenVINO's CPU plugin computes
OPENVINO_ACTIVATIONS = ("tanh", "relu", "sigmoid")


def openvino_unsupported(config: RNNConfig, *, padded: bool = True) -> tuple[str, str] | None:
    """``(feature, why)`` for the first part of ``config`` OpenVINO cannot run as the spec
    says, or ``None``: ONNX's rules, then activations other than tanh, relu and sigmoid, then
    different activations for the two directions of a layer (computed with the first)."""
    reason = onnx_unsupported(config, padded=padded)
    if reason is not None:
        return reason
    for li, layer in enumerate(config.activations):
        for r, act in enumerate(layer):
            if act.name not in OPENVINO_ACTIVATIONS:
                return (f"activation {act} (layer {li}, direction {r})",
                        "OpenVINO's CPU plugin computes tanh, relu and sigmoid only "
                        "('Unknown activation function')")
        if len(set(layer)) > 1:
            return (f"different activations per direction (layer {li}: "
                    f"{', '.join(str(a) for a in layer)})",
                    "OpenVINO's RNNSequence applies the first direction's activation to both")
    return None


def tract_unsupported(config: RNNConfig, *, padded: bool = True) -> tuple[str, str] | None:
    """``(feature, why)`` for the first part of ``config`` tract cannot run as the spec says
    (ONNX's rules; an activation other than tanh, computed as tanh; a clip, ignored), or
    ``None``. A reverse direction is not here: tract computes it forward, a recorded
    deviation."""
    reason = onnx_unsupported(config, padded=padded)
    if reason is not None:
        return reason
    if config.mask_zero:
        return ("Embedding(mask_zero=True)",
                "its graph derives sequence_lens from the ids, and tract refuses a "
                "sequence_lens that is not constant ('Non constant seq_len is not supported')")
    for li, layer in enumerate(config.activations):
        for r, act in enumerate(layer):
            if act.name != "tanh":
                return (f"activation {act} (layer {li}, direction {r})",
                        "tract computes every RNN activation as tanh")
    if any(c is not None for c in config.clips):
        return "clip", "tract ignores an RNN node's clip"
    return None


#: the activations mlx.nn computes for an RNN layer (leaky_relu: alpha in [0, 1])
MLX_ACTIVATIONS = ("tanh", "relu", "sigmoid", "softplus", "softsign", "linear", "elu",
                   "leaky_relu")


def _mlx_can_apply(act: Activation) -> bool:
    if act.name == "leaky_relu":
        return act.alpha is not None and 0.0 <= act.alpha <= 1.0
    return act.name in MLX_ACTIVATIONS


def mlx_unsupported(config: RNNConfig) -> tuple[str, str] | None:
    """``(feature, why)`` for the first part of ``config`` a list of ``mlx.nn.RNN`` layers
    cannot hold, or ``None``.

    In this order: a direction other than forward (reverse, bidirectional: so also merge
    modes and ``output_order="processing"``); a clip; an activation outside
    :data:`MLX_ACTIVATIONS` (leaky_relu only with ``0 <= alpha <= 1``); a readout.
    Per-layer hidden sizes and activations, and ``bias=False``, are expressible (each layer
    is its own module). ``padded_output`` is not a property of the layers (they take no
    lengths) and is not checked; the backend refuses lengths and masks.
    """
    reason = network_unsupported(config)
    if reason is not None:
        return reason
    if config.direction != "forward":
        return (f"direction {config.direction!r}",
                "mlx.nn.RNN runs forward only (no reverse, no bidirectional layer)")
    if any(c is not None for c in config.clips):
        return "clip", "mlx.nn.RNN has no clip"
    for li, layer in enumerate(config.activations):
        act = layer[0]
        if not _mlx_can_apply(act):
            return (f"activation {act} (layer {li})",
                    f"mlx.nn has {', '.join(MLX_ACTIVATIONS)} here; leaky_relu with "
                    f"0 <= alpha <= 1 (mlx computes max(alpha z, z))")
    if config.output_size is not None:
        return "a readout", "mlx.nn.RNN has no output layer"
    return None


#: Keras 2's activations by name: Keras 3's, except ``hard_sigmoid`` (0.2 x + 0.5)
KERAS2_ACTIVATIONS: dict[str, Activation] = {
    **KERAS_ACTIVATIONS, "hard_sigmoid": Activation("hard_sigmoid", alpha=0.2, beta=0.5)}
#: Keras 2 activation -> its name in Keras 2
KERAS2_NAMES = {v: k for k, v in KERAS2_ACTIVATIONS.items()}




def _keras2_pieces(config: RNNConfig) -> Reason:
    """What a Keras 2 model cannot hold of the pieces around its RNN layers."""
    from rnn_ref.network import Softmax

    if config.padding_idx is not None:
        return (f"padding_idx={config.padding_idx}",
                "Keras' Embedding has no padding row (mask_zero masks id 0)")
    if config.select not in ("sequence", "final"):
        return (f"select={config.select!r}", "a Keras RNN layer returns every step or its "
                "final states (return_sequences); 'sequence' or 'final'")
    allowed = list(KERAS2_ACTIVATIONS.values())
    for j, dense in enumerate(config.head):
        g = dense.activation
        if (isinstance(g, Softmax) and g.name != "softmax") or (
                not isinstance(g, Softmax) and g not in allowed):
            return (f"head activation {g} (Dense {j})",
                    "a Keras 2 Dense takes softmax and Keras 2's activations")
    return None


def _keras2_directions(config: RNNConfig, padded: bool) -> Reason:
    """go_backwards below another layer, time-aligned reverse outputs, padded steps."""
    L = config.num_layers
    for li, d in enumerate(config.directions):
        if d == "reverse" and li < L - 1:
            return (f"a reverse layer (layer {li}) below another layer",
                    "go_backwards hands the next layer its outputs in processing order")
    last = config.directions[-1]
    if last == "reverse" and config.select == "sequence" and config.output_order != "processing":
        return ("time-aligned outputs of a reverse direction",
                "go_backwards returns them in processing order; use "
                "params.replace(output_order='processing')")
    mode = config.padded_output
    if not padded or mode == "zeros" or config.select != "sequence":
        return None
    if last == "bidirectional":
        return (f"padded_output {mode!r} in a Bidirectional layer",
                "Bidirectional forces zero_output_for_mask when returning sequences")
    native = keras_masked_step_output("tensorflow", zero_output_for_mask=False, unroll=False)
    if mode != native:
        return (f"padded_output {mode!r} on Keras 2 (TensorFlow)",
                f"its masked steps give {native!r} (or 'zeros')")
    return None


def keras2_unsupported(config: RNNConfig, *, backend: str | None = None, padded: bool = True
                       ) -> Reason:
    """What a tf-keras model cannot hold: an embedding without ``padding_idx``, Masking,
    per-layer directions (a ``go_backwards`` layer only last), ``select`` ``"sequence"`` or
    ``"final"``, a head of Dense layers with Keras 2 activations or softmax, identity layers;
    no clip; cell activations of :data:`KERAS2_ACTIVATIONS`; TensorFlow's masked steps when
    ``padded``. Keras 2 runs on TensorFlow only, so ``backend`` is ``"tensorflow"`` or
    ``None``."""
    if backend not in (None, "tensorflow"):
        raise ValueError(f"backend must be 'tensorflow' or None for Keras 2, got {backend!r}")
    reason = _keras2_pieces(config)
    if reason is not None:
        return reason
    if any(c is not None for c in config.clips):
        return "clip", "Keras' SimpleRNN has no clip"
    allowed = list(KERAS2_ACTIVATIONS.values())
    reason = _first_activation(config, lambda a: a in allowed,
                               f"Keras 2 has {', '.join(str(a) for a in allowed)}")
    if reason is not None:
        return reason
    return _keras2_directions(config, padded or config.mask_zero or
                              config.mask_value is not None)


def sniff_h5(path: str | os.PathLike[str]) -> str | None:
    """Which Keras wrote a legacy ``.h5`` file: ``"keras2-h5"`` (Keras 2 / tf-keras / tf.keras
    of TF < 2.16), ``"keras-h5"`` (Keras 3), or ``None`` (not an HDF5 Keras file, or Keras 1).

    Reads only HDF5 attributes with h5py: ``keras_version`` (at the root for a whole model or a
    weights file, or on ``model_weights``), and when that is absent, whether any layer config
    records ``time_major`` (Keras 2 does, Keras 3 does not)."""
    import h5py

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version")
            if version is None and "model_weights" in f:
                version = f["model_weights"].attrs.get("keras_version")
            config = f.attrs.get("model_config")
    except (OSError, ValueError):
        return None
    if version is not None:
        major = text(version).split(".", 1)[0]
        return {"2": "keras2-h5", "3": "keras-h5"}.get(major)
    if config is not None and '"time_major"' in text(config):
        return "keras2-h5"
    return None


def litert_unsupported(config: RNNConfig, *, padded: bool = False) -> Reason:
    """``(feature, why)`` for the first part of ``config`` the ``.tflite`` graph of a Keras 3
    model cannot express, or ``None``: Keras' rules on its TensorFlow backend (clip,
    activations outside Keras' set, stacks of reverse layers, time-aligned reverse outputs;
    with ``padded``, the padded-step outputs that Keras on TensorFlow does not give). The
    pieces around the stack wait for its converter (:func:`network_unsupported`)."""
    reason = network_unsupported(config)
    if reason is not None:
        return reason
    return keras_unsupported(config, backend="tensorflow", padded=padded)


def nothing_unsupported(config: RNNConfig) -> Reason:
    """The canonical file, the oracle and the jax scan hold every network."""
    return None


FLAX_KINDS = ("nnx", "linen")
FLAX_LAYOUTS = ("cells", "rnn")
#: the activations a flax SimpleCell module is built with here (linen params record none)
FLAX_NNX_ACTIVATIONS = ("tanh", "relu", "sigmoid", "softplus", "softsign")


def flax_unsupported(config: RNNConfig, *, kind: str = "nnx", layout: str = "cells"
                     ) -> tuple[str, str] | None:
    """``(feature, why)`` for the first part of ``config`` that flax cannot hold.

    ``kind`` is ``"nnx"`` or ``"linen"``; ``layout`` is ``"cells"`` (lists of ``SimpleCell``
    s) or ``"rnn"`` (``RNN`` / ``Bidirectional`` modules in a ``Sequential``). In this order:
    the pieces around the stack (flax holds layers of mixed directions, nothing else); a clip on
    any layer; a readout; a merge mode other than ``"concat"`` (``Bidirectional``'s default
    concatenation is the one merge read back); ``output_order="processing"`` in ``"cells"``
    (a list of cells has no place for it; an ``RNN(reverse=True, keep_order=False)`` holds
    it); in modules (nnx, or linen ``"rnn"``), an activation other than tanh, relu, sigmoid,
    softplus, softsign (linen params record no activation, so every activation goes there).
    ``None`` when flax holds the whole network.
    """
    reason = network_unsupported(config, holds={"mixed_directions"})
    if reason is not None:
        return reason
    if kind not in FLAX_KINDS:
        raise ValueError(f"kind must be 'nnx' or 'linen', got {kind!r}")
    if layout not in FLAX_LAYOUTS:
        raise ValueError(f"layout must be 'cells' or 'rnn', got {layout!r}")
    if any(c is not None for c in config.clips):
        return "clip", "a SimpleCell has no clip"
    if config.output_size is not None:
        return "a readout", "a cell has no output layer"
    for li, mm in enumerate(config.merge_modes):
        if config.num_directions_of(li) == 2 and mm != "concat":
            return (f"merge_mode {mm!r} (layer {li})",
                    "flax's Bidirectional concatenates by default and a merge_fn of one's "
                    "own cannot be read back; it reads back as concat")
    if config.output_order != "aligned" and layout == "cells":
        return (f"output_order {config.output_order!r}",
                "a list of cells records no output order; it reads back as time-aligned "
                "(layout='rnn' writes RNN(reverse=True, keep_order=False))")
    if kind == "nnx" or layout == "rnn":
        return _first_activation(config, lambda a: a.name in FLAX_NNX_ACTIVATIONS,
                                 f"a flax SimpleCell module takes "
                                 f"{', '.join(FLAX_NNX_ACTIVATIONS)} here")
    return None


# --------------------------------------------------------------------------------------------
# the records
# --------------------------------------------------------------------------------------------
#: what a torch state dict does not record (a TorchNetwork's records all of it)
_TORCH_HINTS = frozenset({"activation", "select", "head_activation"})
_KERAS_BACKENDS = tuple(
    BackendSpec(f"keras[{b}]", f"rnn_ref.backends.keras_worker:{b}_backend", ("keras", b))
    for b in ("tensorflow", "jax", "torch"))

FRAMEWORKS: tuple[Framework, ...] = (
    Framework(
        name="rnn-ref", title="rnn-ref", module="rnn_ref.backends.numpy_backend",
        requires=("numpy",), distributions=("numpy",), unsupported=nothing_unsupported,
        formats=(FileFormat("rnn-ref", (".npz",), "the canonical file (rnn_ref.load)"),),
        backends=(BackendSpec("numpy", "rnn_ref.backends.numpy_backend:NumpyBackend",
                              ("numpy",)),),
    ),
    Framework(
        name="torch", title="torch.nn.RNN", module="rnn_ref.backends.torch_backend",
        requires=("torch",), distributions=("torch",), unsupported=torch_unsupported,
        converters=("from_torch", "to_torch"), recognised_when="torch",
        formats=(
            FileFormat("torch", (".pt", ".pth"), "a state dict of an nn.RNN, an RNNWithReadout, "
                       "a TorchNetwork (self-describing) or any module of nn.Embedding, "
                       "nn.RNN and nn.Linear; torch.load(weights_only=True)", _TORCH_HINTS,
                       unrecorded=torch_unrecorded),
            FileFormat("safetensors", (".safetensors",), "the same state dict in safetensors",
                       _TORCH_HINTS, ("safetensors",), unrecorded=torch_unrecorded),
        ),
        backends=(BackendSpec("torch", "rnn_ref.backends.torch_backend:TorchBackend",
                              ("torch",)),
                  # cuDNN's RNN at torch's default (TF32 on) and in strict float32
                  BackendSpec("torch[cuda]", "rnn_ref.backends.torch_backend:TorchCudaBackend",
                              ("torch",), device="cuda"),
                  BackendSpec("torch[cuda,fp32]",
                              "rnn_ref.backends.torch_backend:TorchCudaFp32Backend",
                              ("torch",), device="cuda", precision="fp32")),
    ),
    Framework(
        name="jax", title="jax lax.scan", module="rnn_ref.backends.jax_backend",
        requires=("jax", "jaxlib"), distributions=("jax", "jaxlib"),
        unsupported=nothing_unsupported,
        backends=(BackendSpec("jax", "rnn_ref.backends.jax_backend:JaxBackend",
                              ("jax", "jaxlib")),
                  # JAX's default matmul precision on a GPU, and "highest"
                  BackendSpec("jax[gpu]", "rnn_ref.backends.jax_backend:JaxGpuBackend",
                              ("jax", "jaxlib"), device="gpu"),
                  BackendSpec("jax[gpu,fp32]", "rnn_ref.backends.jax_backend:JaxGpuFp32Backend",
                              ("jax", "jaxlib"), device="gpu", precision="fp32")),
    ),
    Framework(
        name="flax", title="flax SimpleCell", module="rnn_ref.backends.flax_backend",
        requires=("flax", "jax"), distributions=("flax",), unsupported=flax_unsupported,
        converters=("from_flax", "to_flax"), recognised_when="flax",
    ),
    Framework(
        name="keras", title="Keras", module="rnn_ref.backends.keras_backend",
        requires=("keras", "h5py"), distributions=("keras", "tensorflow-cpu", "h5py"),
        unsupported=keras_unsupported, converters=("from_keras", "to_keras"),
        recognised_when="keras",
        formats=(
            FileFormat("keras", (".keras",), "a whole Keras model; keras.saving.load_model("
                       "safe_mode=True, compile=False)"),
            FileFormat("keras-weights", (".weights.h5",), "Keras 3 weights by position; the "
                       "architecture from the layer names and shapes",
                       frozenset({"activation", "merge_mode", "direction",
                                  "head_activation"}),
                       unrecorded=keras_weights_unrecorded),
            FileFormat("keras-h5", (".h5",), "legacy Keras HDF5 read by name with h5py: a "
                       "whole model or weights", frozenset({"activation", "merge_mode"})),
        ),
        backends=_KERAS_BACKENDS,
    ),
    Framework(
        name="keras2", title="Keras 2", module="rnn_ref.backends.keras2_backend",
        requires=("tf_keras", "tensorflow", "h5py"), distributions=("tf-keras",),
        unsupported=keras2_unsupported, converters=("from_keras2", "to_keras2"),
        recognised_when="tf_keras",
        formats=(FileFormat("keras2-h5", (".h5",), "Keras 2 (tf-keras) legacy HDF5, "
                            "model.save('x.h5') or save_weights; read by name with h5py",
                            frozenset({"activation", "merge_mode"})),),
        backends=(BackendSpec("keras2[tensorflow]",
                              "rnn_ref.backends.keras2_backend:tensorflow_backend",
                              ("tf_keras", "tensorflow")),),
    ),
    Framework(
        name="onnx", title="ONNX RNN", module="rnn_ref.backends.onnx_backend",
        requires=("onnx",), distributions=("onnx", "onnxruntime"),
        unsupported=onnx_unsupported, converters=("from_onnx", "to_onnx"),
        recognised_when="onnx",
        formats=(FileFormat("onnx", (".onnx",), "a graph of RNN nodes (rnn_ref.from_onnx)",
                            runs=("onnxruntime", ("float32",))),),
        backends=(BackendSpec("onnxruntime",
                              "rnn_ref.backends.onnx_backend:OnnxRuntimeBackend",
                              ("onnx", "onnxruntime")),),
    ),
    Framework(
        name="mlx", title="mlx.nn.RNN", module="rnn_ref.backends.mlx_backend",
        requires=("mlx",), distributions=("mlx",), unsupported=mlx_unsupported,
        converters=("from_mlx", "to_mlx"), recognised_when="mlx",
        backends=(BackendSpec("mlx", "rnn_ref.backends.mlx_backend:MlxBackend", ("mlx",)),),
    ),
    Framework(
        name="litert", title="LiteRT", module="rnn_ref.backends.litert_backend",
        requires=("ai_edge_litert", "tensorflow", "keras"), distributions=("ai-edge-litert",),
        unsupported=litert_unsupported,
        formats=(FileFormat("tflite", (".tflite",), "a TFLite flatbuffer of the Keras model "
                            "(batch 1, dynamic T); written and run, not read back as "
                            "parameters", readable=False),),
        backends=(BackendSpec("litert", "rnn_ref.backends.litert_backend:LiteRtBackend",
                              ("ai_edge_litert", "tensorflow", "keras")),
                  BackendSpec("litert[unrolled]",
                              "rnn_ref.backends.litert_backend:LiteRtUnrolledBackend",
                              ("ai_edge_litert", "tensorflow", "keras"))),
    ),
    Framework(
        name="openvino", title="OpenVINO", module="rnn_ref.backends.openvino_backend",
        requires=("onnx", "openvino"), distributions=("openvino",),
        unsupported=openvino_unsupported,
        backends=(BackendSpec("openvino", "rnn_ref.backends.openvino_backend:OpenVinoBackend",
                              ("onnx", "openvino")),
                  BackendSpec("openvino[f32]",
                              "rnn_ref.backends.openvino_backend:OpenVinoF32Backend",
                              ("onnx", "openvino"), precision="fp32")),
    ),
    Framework(
        name="tract", title="tract", module="rnn_ref.backends.tract_backend",
        requires=("onnx", "tract"), distributions=("tract",), unsupported=tract_unsupported,
        backends=(BackendSpec("tract", "rnn_ref.backends.tract_backend:TractBackend",
                              ("onnx", "tract")),),
    ),
)


# --------------------------------------------------------------------------------------------
# derived views
# --------------------------------------------------------------------------------------------
def by_name(name: str) -> Framework:
    for fw in FRAMEWORKS:
        if fw.name == name:
            return fw
    raise ValueError(f"unknown framework {name!r}; known: "
                     f"{', '.join(f.name for f in FRAMEWORKS)}")


def formats() -> dict[str, tuple[Framework, FileFormat]]:
    """Every file format by name, with the framework that reads and writes it."""
    return {f.name: (fw, f) for fw in FRAMEWORKS for f in fw.formats}


def file_format(name: str) -> tuple[Framework, FileFormat]:
    table = formats()
    if name not in table:
        raise ValueError(f"format {name!r} is not one of {', '.join(table)}")
    return table[name]


def backends() -> dict[str, BackendSpec]:
    """Every built-in backend by name."""
    return {b.name: b for fw in FRAMEWORKS for b in fw.backends}


def distributions() -> tuple[str, ...]:
    """The pip distributions behind every framework (for ``info`` and reports), in order."""
    seen: dict[str, None] = {}
    for fw in FRAMEWORKS:
        for d in (*fw.distributions, *(r for f in fw.formats for r in f.requires)):
            seen.setdefault(d, None)
    return tuple(seen)


def versions() -> dict[str, str | None]:
    """The installed version of rnn-ref and of every distribution behind a framework (``None``
    where not installed), read from package metadata: nothing is imported."""
    from importlib import metadata

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {d: version(d) for d in ("rnn-ref", *distributions())}


def sniff(path: str | os.PathLike[str], fmt: str) -> str:
    """The format of an existing file whose extension says ``fmt`` but which another format
    shares (``.h5``: Keras 3's legacy HDF5 or Keras 2's, told apart by :func:`sniff_h5`);
    ``fmt`` itself otherwise, and for a file not written yet."""
    if fmt in ("keras-h5", "keras2-h5") and os.path.isfile(path):
        return sniff_h5(path) or fmt
    return fmt
