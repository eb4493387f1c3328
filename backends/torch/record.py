"""torch's record: what nn.RNN, nn.GRU, nn.LSTM and the torch network hold, what a state dict
records."""

from __future__ import annotations

from rnn_ref.activations import Activation
from rnn_ref.backends.records import (
    NETWORK_PIECES,
    BackendSpec,
    FileFormat,
    Framework,
    Reason,
    network_unsupported,
    padded_zeros,
)
from rnn_ref.config import RNNConfig

#: what torch's RNNWithReadout applies after its Linear
TORCH_READOUT_ACTIVATIONS = ("linear", "tanh", "relu", "sigmoid")


#: what torch's nn.GRU and nn.LSTM compute with: (f, g) and (f, g, h), fixed
TORCH_GATED_ACTIVATIONS = {"gru": ("sigmoid", "tanh"), "lstm": ("sigmoid", "tanh", "tanh")}


def unsupported(config: RNNConfig, *, padded: bool = False) -> Reason:
    """What torch cannot compute: ``rnn_ref.to_torch`` holds every piece of the network (one
    ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM`` per run of like layers, a reverse layer as a
    flipped module, a GRU or LSTM layer that ``nn.GRU``/``nn.LSTM`` cannot compute (a
    reset-before GRU, peepholes, ``input_forget``, a clip, other activations) as a
    :class:`~rnn_ref.backends.torch.network.GatedCell` of plain torch, the selection, pooling
    over time, the head and several outputs in plain torch) except Elman layers' activations
    other than tanh and relu and their clip (``nn.RNN`` has neither), and a bidirectional last
    layer returning the pair of directions. ``padded=True`` (inputs with padding or a mask)
    also refuses padded steps that do not output zeros: a ``PackedSequence`` pads with zeros
    (a converter warns instead, see ``adopt_padded_output``)."""
    for li, spec in enumerate(config.cells):
        if spec.kind != "elman":
            continue
        for r, act in enumerate(config.activations[li]):
            if act.name not in ("tanh", "relu"):
                return (f"activation {act} (Elman layer {li}, direction {r})",
                        "nn.RNN has only tanh and relu")
        if config.clips[li] is not None:
            return f"clip {config.clips[li]} (Elman layer {li})", "nn.RNN has no clip"
    if config.merge_modes[-1] is None:
        return ("merge_mode None (the pair of directions)",
                "the torch module returns one tensor; use another merge_mode")
    reason = network_unsupported(config, holds=set(NETWORK_PIECES))
    if reason is not None:
        return reason
    return padded_zeros(config, "a PackedSequence pads outputs with zeros") if padded else None


def torch_native_cell(config: RNNConfig, layer: int) -> bool:
    """Whether torch's own module computes layer ``layer``: an Elman layer (``nn.RNN``; what
    it cannot compute :func:`unsupported` refuses), or a GRU or LSTM layer ``nn.GRU`` /
    ``nn.LSTM`` computes: a reset-after GRU, an LSTM without peepholes or ``input_forget``
    (``proj_size`` is torch's), no clip, the activations sigmoid, tanh (and tanh) in every
    direction. The others are built in plain torch (``GatedCell``)."""
    spec = config.cell_of(layer)
    if spec.kind == "elman":
        return True
    want = TORCH_GATED_ACTIVATIONS[spec.kind]
    return (spec.reset_after and not spec.peepholes and not spec.input_forget
            and config.clips[layer] is None
            and all(tuple(str(a) for a in config.activations_of(layer, r)) == want
                    for r in range(config.num_directions_of(layer))))


def torch_lone_rnn(config: RNNConfig) -> bool:
    """Whether one ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM`` (with an ``RNNWithReadout`` readout)
    holds the network, and is what ``to_torch`` builds and a torch file holds: the plain
    stack of one cell, forward or bidirectional, one width, torch's own cells
    (:func:`torch_native_cell`; an Elman stack of one nonlinearity, an LSTM stack of one
    ``proj_size``), concatenated, a readout of :data:`TORCH_READOUT_ACTIVATIONS` per step.
    Any other network is a ``TorchNetwork``."""
    # RNNConfig.is_plain, of any one cell
    plain = (config.vocab_size is None and config.mask_value is None
             and len(set(config.directions)) == 1 and config.select == "sequence"
             and len(config.head) <= 1 and not config.identities
             and config.returns == ("result",) and len(set(config.cells)) == 1
             and all(d.bias and isinstance(d.activation, Activation) for d in config.head)
             and all(torch_native_cell(config, li) for li in range(config.num_layers)))
    acts = {a for layer in config.activations for a in layer}
    return (plain and config.directions[0] != "reverse" and config.uniform_hidden
            and len(set(config.hidden_sizes)) == 1
            and len(acts) == 1 and set(config.merge_modes) == {"concat"}
            and config.output_activation.name in TORCH_READOUT_ACTIVATIONS)


def torch_unrecorded(config: RNNConfig) -> dict[str, str]:
    """What a torch state dict of ``config`` does not record: nothing for a
    ``TorchNetwork``'s (its config buffer holds the network); for an ``nn.RNN``'s the
    nonlinearity (an ``nn.GRU``'s or ``nn.LSTM``'s is fixed), and for an
    ``RNNWithReadout``'s also the readout's activation."""
    if not torch_lone_rnn(config):
        return {}
    out = {"activation": config.activation_of(0, 0).name} if config.is_elman else {}
    if config.head:
        out["head_activation"] = config.output_activation.name
    return out


#: what a torch state dict does not record (a TorchNetwork's records all of it)
_TORCH_HINTS = frozenset({"activation", "select", "head_activation"})


FRAMEWORK = Framework(
    name="torch", title="torch.nn.RNN", module="rnn_ref.backends.torch.convert",
    requires=("torch",), distributions=("torch",), unsupported=unsupported,
    converters=("from_torch", "to_torch"), recognised_when="torch",
    formats=(
        FileFormat("torch", (".pt", ".pth"), "a state dict of an nn.RNN, nn.GRU or nn.LSTM "
                   "(told apart by their shapes), an RNNWithReadout, a TorchNetwork "
                   "(self-describing) or any module of nn.Embedding, those and nn.Linear; "
                   "torch.load(weights_only=True)", _TORCH_HINTS,
                   unrecorded=torch_unrecorded),
        FileFormat("safetensors", (".safetensors",), "the same state dict in safetensors",
                   _TORCH_HINTS, ("safetensors",), unrecorded=torch_unrecorded),
    ),
    files="rnn_ref.backends.torch.files",
    backends=(BackendSpec("torch", "rnn_ref.backends.torch.backend:TorchBackend",
                          ("torch",)),
              # cuDNN's RNN at torch's default (TF32 on) and in strict float32
              BackendSpec("torch[cuda]", "rnn_ref.backends.torch.backend:TorchCudaBackend",
                          ("torch",), device="cuda"),
              BackendSpec("torch[cuda,fp32]",
                          "rnn_ref.backends.torch.backend:TorchCudaFp32Backend",
                          ("torch",), device="cuda", precision="fp32")),
)
