"""torch's files: state dicts (``.pt``, ``.pth``) and safetensors, read with their declared
sizes checked first (:mod:`rnn_ref.backends.file_limits`), never a pickle's code; the file
functions of :data:`rnn_ref.backends.records.FILE_API`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rnn_ref.activations import Activation
from rnn_ref.backends import file_limits
from rnn_ref.backends.torch.convert import (
    READOUT_ACTIVATIONS,
    RNNWithReadout,
    from_native,
    to_native,
)
from rnn_ref.backends.torch.graph import file_network, quiet_onednn, state_dict_cells
from rnn_ref.backends.torch.network import TorchNetwork
from rnn_ref.errors import FileFormatError
from rnn_ref.fileapi import Hints, NativeFile, hint_activation
from rnn_ref.params import RNNParams

__all__ = ["is_torchscript", "list_arrays", "load_native", "read_file", "run_native", "write_file"]


# --------------------------------------------------------------------------------------------
# files: state dicts (.pt, .pth) and safetensors
# --------------------------------------------------------------------------------------------
def _state_dict(path: Path, fmt: str) -> dict[str, torch.Tensor]:
    """The file's tensors by name, their declared sizes checked before any is copied
    (:mod:`file_limits`); a ``.pt`` must be torch's zip format, its members within the
    limits (the legacy format allocates what its pickle declares before reading)."""
    if fmt == "safetensors":
        from safetensors.torch import load_file

        sd = dict(load_file(str(path)))
    else:
        with open(path, "rb") as fh:
            if fh.read(2) != b"PK":
                raise FileFormatError(f"{path}: not torch's zip format (torch.save since 1.6); "
                                      f"the legacy format is not read")
        with file_limits.check_zip(path, str(path)) as zf:
            if is_torchscript(zf.namelist()):
                raise FileFormatError(
                    f"{path}: a TorchScript archive (torch.jit.save): it holds code, which "
                    f"rnn-ref never runs; save the weights instead with "
                    f"torch.save(model.state_dict(), path)")
            corrupt = zf.testzip()  # torch.load with mmap skips the CRC-32 torch's reader checks
        if corrupt is not None:
            raise FileFormatError(f"{path}: the member {corrupt!r} fails its CRC-32 check: "
                                  f"the file is corrupt")
        sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise FileFormatError(f"{path}: not a state dict of tensors (got {type(sd).__name__})")
    file_limits.check_tensors(sd, str(path))
    return sd


def is_torchscript(names: list[str]) -> bool:
    """Whether the members of a torch zip archive (``<folder>/<record>``) are a TorchScript
    archive's: ``torch.jit.save`` writes ``constants.pkl`` (what ``torch.load`` looks for,
    ``torch.serialization._is_torchscript_zip``) and the module's code under ``code/``;
    ``torch.save`` writes neither. Decided from the names alone, before torch reads it."""
    records = [n.split("/", 1)[1] for n in names if "/" in n]
    return any(r == "constants.pkl" or r.startswith("code/") for r in records)


def read_file(path: Path, fmt: str, hints: Hints) -> RNNParams:
    """The parameters of a state dict file: a :class:`TorchNetwork`'s records the whole
    network (a hint given must agree with it); any other takes, with ``nn.Linear`` layers,
    the ``select`` and ``head_activation`` hints, and with an ``nn.RNN`` its activation
    (tanh or relu) as a hint. An ``nn.GRU``'s or ``nn.LSTM``'s keys (told apart by their
    shapes, :func:`~rnn_ref.backends.torch.graph.read_state_dict`) need no activation: it
    is tanh, and a hint may only say so."""
    sd = {k: v.numpy() for k, v in _state_dict(path, fmt).items()}
    if any(k.endswith("rnn_ref_config") for k in sd):
        params = from_native(sd)
        _check_hints(params, hints)
        return params
    act = None
    if hints.activation is not None or "elman" in state_dict_cells(sd):
        act = hint_activation(hints, fmt, {"tanh": Activation("tanh"),
                                           "relu": Activation("relu")}).name
    return from_native(sd, nonlinearity=act, select=hints.select,
                       head_activation=hints.head_activation)


def _check_hints(params: RNNParams, hints: Hints) -> None:
    """``ValueError`` for a hint that says otherwise than the file records."""
    cfg = params.config
    acts = {a.name for layer in cfg.activations for a in layer}
    recorded = {"activation": acts.pop() if len(acts) == 1 else None, "select": cfg.select,
                "head_activation": ",".join(str(d.activation) for d in cfg.head) or None}
    for name, value in recorded.items():
        given = getattr(hints, name)
        if given is not None and given.replace(" ", "") != value:
            raise ValueError(f"the {name} hint says {given!r} but the file records {value!r}")


def write_file(params: RNNParams, path: Path, fmt: str) -> None:
    """The state dict of :func:`to_native`'s module (a :class:`TorchNetwork`'s records the
    whole network); padded steps are written as torch computes them (zeros)."""
    module = to_native(params.replace(padded_output="zeros"))
    sd = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save(sd, str(path))


def load_native(path: Path, fmt: str, params: RNNParams) -> NativeFile:
    """The file's tensors as stored, under its own keys, in torch modules
    (:func:`~rnn_ref.backends.torch.graph.file_network`; ``params``, read from the file with
    the hints, give what its keys do not say)."""
    return NativeFile(file_network(_state_dict(path, fmt), params.replace(
        padded_output="zeros")), takes_lengths=True)


def run_native(model: nn.Module, x: np.ndarray[Any, Any], lengths: Any = None) -> Any:
    """The result of a :class:`TorchNetwork` (what :func:`load_native` builds; a tuple for
    one of several outputs, as the oracle's ``returned`` gives them), or the first output of an
    ``nn.RNN``, ``nn.GRU``, ``nn.LSTM`` or :class:`RNNWithReadout`, on batch-first ``x``,
    through a packed sequence when ``lengths`` are given (padded steps are zeros)."""
    dtype = next(iter(model.parameters())).dtype
    xt = torch.from_numpy(np.ascontiguousarray(x))
    if xt.is_floating_point():
        xt = xt.to(dtype)  # the model's own dtype
    with torch.no_grad(), quiet_onednn():
        if isinstance(model, TorchNetwork):
            la = None if lengths is None else torch.from_numpy(np.asarray(lengths, np.int64))
            res = model(xt, la)
            if isinstance(res, tuple):
                return tuple(tuple(t.numpy() for t in item) if isinstance(item, tuple)
                             else item.numpy() for item in res)
            return res.numpy()
        if lengths is None:
            return model(xt)[0].numpy()
        packed = nn.utils.rnn.pack_padded_sequence(
            xt, torch.from_numpy(np.asarray(lengths, np.int64)), batch_first=True,
            enforce_sorted=False)
        rnn = model.rnn if isinstance(model, RNNWithReadout) else model
        out, _ = nn.utils.rnn.pad_packed_sequence(rnn(packed)[0], batch_first=True,
                                                  total_length=x.shape[1])
        if isinstance(model, RNNWithReadout):
            out = READOUT_ACTIVATIONS[model.activation](model.readout(out))
        return out.numpy()


def list_arrays(path: Path, fmt: str) -> list[tuple[str, tuple[int, ...], str]]:
    """Every tensor of the file by its own name: ``(name, shape, dtype)``."""
    return [(k, tuple(v.shape), str(v.dtype).replace("torch.", ""))
            for k, v in _state_dict(path, fmt).items()]
