"""torch's record: what nn.RNN and the torch network hold, what a state dict records."""

from __future__ import annotations

from rnn_ref.backends.records import (
    GATED,
    NETWORK_PIECES,
    BackendSpec,
    FileFormat,
    Framework,
    Reason,
    first_activation,
    network_unsupported,
    padded_zeros,
)
from rnn_ref.config import RNNConfig

#: what torch's RNNWithReadout applies after its Linear
TORCH_READOUT_ACTIVATIONS = ("linear", "tanh", "relu", "sigmoid")


def unsupported(config: RNNConfig, *, padded: bool = False) -> Reason:
    """What torch cannot compute: ``rnn_ref.to_torch`` holds every piece of the network (one
    ``nn.RNN`` per run of like layers, a reverse layer as a flipped ``nn.RNN``, the selection,
    pooling over time and the head in plain torch) except cell activations other than tanh and
    relu, a clip, a bidirectional last layer returning the pair of directions, and several
    outputs (``returns``). ``padded=True`` (inputs
    with padding or a mask) also refuses padded steps that do not output zeros: a
    ``PackedSequence`` pads with zeros (a converter warns instead, see
    ``adopt_padded_output``)."""
    reason = first_activation(config, lambda a: a.name in ("tanh", "relu"),
                               "nn.RNN has only tanh and relu")
    if reason is not None:
        return reason
    if any(c is not None for c in config.clips):
        return "clip", "nn.RNN has no clip"
    if config.merge_modes[-1] is None:
        return ("merge_mode None (the pair of directions)",
                "the torch module returns one tensor; use another merge_mode")
    reason = network_unsupported(config, holds=set(NETWORK_PIECES) - {"returns", *GATED})
    if reason is not None:
        return reason
    return padded_zeros(config, "a PackedSequence pads outputs with zeros") if padded else None


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
