"""Keras 2 files (``keras2-h5``): read by weight name with h5py through Keras 3's legacy reader
in the Keras 2 flavour (nothing from the file is run), written by tf-keras as legacy HDF5; the
file functions of :data:`rnn_ref.backends.records.FILE_API`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rnn_ref.backends import file_limits
from rnn_ref.backends.keras.files import _legacy_h5_contents as legacy_h5_contents
from rnn_ref.backends.keras.files import list_arrays as _h5_arrays
from rnn_ref.backends.keras.files import read_legacy_h5
from rnn_ref.backends.keras.graph import KERAS2, gated_cell_weights
from rnn_ref.backends.keras2.convert import held_by_keras2, numpy_of, oracle, to_native
from rnn_ref.config import RNNConfig
from rnn_ref.errors import FileFormatError, UnsupportedError
from rnn_ref.fileapi import Hints, MissingHintError, NativeFile, hint_activations
from rnn_ref.params import CellParams, Readout, RNNParams

__all__ = ["list_arrays", "load_native", "read_file", "run_native", "write_file"]


# --------------------------------------------------------------------------------------------
# files: keras2-h5
# --------------------------------------------------------------------------------------------
def read_file(path: Path, fmt: str, hints: Hints) -> RNNParams:
    """The parameters of a Keras 2 ``.h5`` file, read with h5py: nothing from the file is
    run. A whole model (``model.save``) through its config, by Keras 3's legacy reader in
    the Keras 2 flavour; ``save_weights``' file, which records no config, by
    :func:`weights_params` with the hints."""
    file_limits.check_h5(path, str(path))
    names, weights, config = legacy_h5_contents(path)
    if config is None:
        return held_by_keras2(weights_params(path, names, weights, hints))
    return held_by_keras2(read_legacy_h5(path, hints, KERAS2))


#: a recurrent kernel (M, G*M): G -> the cell
_CELL_OF_GATES = {1: "elman", 3: "gru", 4: "lstm"}


def _direction_arrays(path: Path, layer: str, ws: dict[str, Any]
                      ) -> list[tuple[Any, Any, Any]]:
    """``(kernel, recurrent_kernel, bias or None)`` of each direction of a recurrent layer's
    weights (named ``.../<scope>/kernel:0``: the arrays of one direction share their scope;
    a ``Bidirectional``'s scopes hold ``forward_`` and ``backward_``), forward first.

    Raises:
        FileFormatError: a scope without its kernel or recurrent kernel, other arrays, or
            more than two scopes.
    """
    scopes: dict[str, dict[str, Any]] = {}
    for name, arr in ws.items():
        scope, _, leaf = name.rpartition("/")
        scopes.setdefault(scope, {})[leaf.split(":")[0]] = arr
    order = sorted(scopes, key=lambda sc: ("backward_" in sc.rpartition(layer)[2], sc))
    if len(order) > 2 or (len(order) == 2 and not (
            "forward_" in order[0] and "backward_" in order[1])):
        raise FileFormatError(f"{path}: layer {layer!r} holds the recurrent weights of "
                              f"{len(order)} scopes {order}; a layer has one, or a "
                              f"Bidirectional's forward_ and backward_")
    out = []
    for scope in order:
        got = scopes[scope]
        if {"kernel", "recurrent_kernel"} - set(got) or set(got) - {
                "kernel", "recurrent_kernel", "bias"}:
            raise FileFormatError(f"{path}: layer {layer!r} scope {scope!r} holds "
                                  f"{sorted(got)}; a recurrent cell holds kernel, "
                                  f"recurrent_kernel and bias")
        out.append((got["kernel"], got["recurrent_kernel"], got.get("bias")))
    return out


def _cell(path: Path, layer: str, arrays: tuple[Any, Any, Any]) -> tuple[str, bool, Any]:
    """One direction's cell kind (from its recurrent kernel ``(M, G*M)``: G = 1 SimpleRNN,
    3 GRU, 4 LSTM), its ``reset_after`` (a GRU's bias of two rows) and its parameters.

    Raises:
        FileFormatError: a recurrent kernel of no cell's shape.
        UnsupportedError: a GRU without a bias (the file does not say where its reset
            goes).
    """
    kernel, rec, bias = (None if a is None else np.asarray(a) for a in arrays)
    assert kernel is not None and rec is not None
    gates = rec.shape[1] // rec.shape[0] if rec.ndim == 2 and rec.shape[0] else 0
    kind = _CELL_OF_GATES.get(gates) if rec.ndim == 2 and rec.shape[1] == gates * rec.shape[0] \
        else None
    if kind is None:
        raise FileFormatError(f"{path}: layer {layer!r}: a recurrent_kernel of shape "
                              f"{rec.shape} is no cell's (M, G*M) with G 1, 3 or 4")
    if kind == "elman":
        b = bias if bias is not None else np.zeros(rec.shape[0], rec.dtype)
        if kernel.ndim != 2 or kernel.shape[1] != rec.shape[0] or b.shape != (rec.shape[0],):
            raise FileFormatError(f"{path}: layer {layer!r}: SimpleRNN arrays of shapes "
                                  f"{kernel.shape}, {rec.shape}, {b.shape} do not fit")
        return kind, True, CellParams(kernel, rec, b, np.zeros_like(b))
    if kind == "gru" and bias is None:
        raise UnsupportedError("rnn-ref", f"the GRU layer {layer!r} without a bias in a "
                               f"weights-only file", "its reset_after is recorded by the "
                               "bias's shape only; save the whole model")
    reset_after = kind == "gru" and bias is not None and bias.ndim == 2
    return kind, reset_after, gated_cell_weights(kind, reset_after, kernel, rec, bias,
                                                 where=f"{path}: layer {layer!r}")


def weights_params(path: Path, names: list[str], weights: dict[str, dict[str, Any]],
                   hints: Hints) -> RNNParams:
    """The network of tf-keras' ``save_weights("x.h5")`` file, which holds arrays by layer
    and weight name only: the recurrent layers in order (``SimpleRNN``, ``GRU``, ``LSTM``,
    told apart by the recurrent kernel's width; a ``Bidirectional`` by its ``forward_`` and
    ``backward_`` scopes; a GRU's ``reset_after`` by its bias's rows), then at most one
    ``Dense`` (linear). What the file does not record comes from ``hints``: the activation
    (one, or one per layer, comma-separated), a gated layer's ``recurrent_activation``
    (one, or one per GRU/LSTM layer), a non-concat merge mode; every layer runs forward and
    returns sequences, as nothing in the file says otherwise.

    Raises:
        MissingHintError: the activation, a gated layer's recurrent_activation, or a merge
            mode the widths show is not concat.
        UnsupportedError: layers other than recurrent and one Dense after them, layers with
            and without a bias, a Bidirectional of two different cells.
        FileFormatError: arrays that are no cell's or do not fit.
    """
    fmt = "keras2-h5"
    acts = dict(KERAS2.activations)
    layers: list[list[Any]] = []
    kinds: list[str] = []
    resets: list[bool] = []
    biases: set[bool] = set()
    readout: Readout | None = None
    for name in names:
        ws = weights[name]
        if not ws:
            continue
        leaves = {w.rpartition("/")[2].split(":")[0] for w in ws}
        if readout is not None:
            raise UnsupportedError("rnn-ref", f"the layer {name!r} after the Dense layer of "
                                   f"{path.name}", "a weights-only file is read as recurrent "
                                   "layers and one Dense readout")
        if "recurrent_kernel" not in leaves:
            if not leaves <= {"kernel", "bias"} or "kernel" not in leaves or not layers:
                raise UnsupportedError("rnn-ref", f"the layer {name!r} of {path.name} (arrays "
                                       f"{sorted(leaves)})", "a weights-only file is read as "
                                       "recurrent layers and one Dense readout")
            by_leaf = {k.rpartition("/")[2].split(":")[0]: np.asarray(v) for k, v in ws.items()}
            kernel = by_leaf["kernel"]
            readout = Readout(kernel, by_leaf.get("bias", np.zeros(kernel.shape[-1],
                                                                   kernel.dtype)))
            continue
        arrays = _direction_arrays(path, name, ws)
        row = [_cell(path, name, a) for a in arrays]
        if len({(k, r) for k, r, _ in row}) > 1:
            raise UnsupportedError("rnn-ref", f"the Bidirectional layer {name!r} whose "
                                   f"directions hold different cells",
                                   "the spec's layer has one cell for both directions")
        biases.update(a[2] is not None for a in arrays)
        kinds.append(row[0][0])
        resets.append(row[0][1])
        layers.append([c for _, _, c in row])
    if not layers:
        raise UnsupportedError("rnn-ref", f"{path.name} without recurrent layers")
    if len(biases) > 1:
        raise UnsupportedError("rnn-ref", "recurrent layers with and without a bias",
                               "the spec has one bias flag for the stack")
    g = hint_activations(hints, fmt, acts, len(layers))
    gated = sum(k != "elman" for k in kinds)
    if gated and hints.recurrent_activation is None:
        raise MissingHintError("recurrent_activation", "a keras2-h5 weights file does not "
                               "record its GRU/LSTM layers' gate activation "
                               "(recurrent_activation: sigmoid in tf-keras, hard_sigmoid, "
                               "0.2 x + 0.5, in Keras <= 2.2): give the recurrent_activation "
                               f"hint (one of {', '.join(acts)})")
    if not gated and hints.recurrent_activation is not None:
        raise ValueError("the recurrent_activation hint is for GRU and LSTM layers; the file "
                         "has none")
    f_it = iter(hint_activations(Hints(activation=hints.recurrent_activation), fmt, acts,
                                 gated) if gated else [])
    R = [len(row) for row in layers]
    merges: list[str | None] = []
    for li, row in enumerate(layers):
        merge = "concat"
        if R[li] == 2:
            m = _units(row[0])
            nxt = (_width(layers[li + 1][0]) if li + 1 < len(layers) else
                   int(readout.w.shape[0]) if readout is not None else None)
            if nxt is None:  # nothing after it shows its width: Keras' default unless told
                merge = hints.merge_mode or "concat"
            elif nxt == m:
                if hints.merge_mode is None:
                    raise MissingHintError("merge_mode", f"the Bidirectional layer "
                                           f"{li} merges its directions without "
                                           "concatenating, and the file does not say how: "
                                           "give the merge_mode hint (sum, mul or ave)")
                merge = hints.merge_mode
            elif hints.merge_mode not in (None, "concat"):
                raise ValueError(f"merge_mode hint {hints.merge_mode!r}, but the next "
                                 f"layer's width {nxt} is the concatenation of layer {li}")
        merges.append(merge)
    config = RNNConfig(
        input_size=_width(layers[0][0]),
        hidden_size=tuple(_units(row[0]) for row in layers),
        direction=["bidirectional" if r == 2 else "forward" for r in R],
        activation=[[a] * r for a, r in zip(g, R, strict=True)], bias=biases.pop(),
        merge_mode=merges,
        cell=kinds, recurrent_activation=None if not gated else [
            None if k == "elman" else [next(f_it)] * r for k, r in zip(kinds, R, strict=True)],
        reset_after=[r if k == "gru" else None for k, r in zip(kinds, resets, strict=True)]
        if "gru" in kinds else True,
        output_size=None if readout is None else int(readout.w.shape[1]),
    )
    return RNNParams(config, layers, readout)


def _width(cell: Any) -> int:
    """D_l of one cell."""
    w_x = cell.w_x if isinstance(cell, CellParams) else next(iter(cell.w_x.values()))
    return int(w_x.shape[0])


def _units(cell: Any) -> int:
    """M_l of one cell."""
    return int(cell.hidden_size)


def write_file(params: RNNParams, path: Path, fmt: str) -> None:
    """``to_native(params).save(path)`` by tf-keras, as legacy HDF5 (``.h5``)."""
    import warnings

    model = to_native(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf-keras calls HDF5 legacy
        model.save(str(path), save_format="h5")


def load_native(path: Path, fmt: str, params: RNNParams) -> NativeFile:
    """The file's weights loaded by tf-keras (``load_weights``, in layer order) into the model
    of ``params``' architecture: the file's config is never deserialised (a legacy ``.h5`` can
    hold a ``Lambda`` layer's marshalled code)."""
    model = to_native(params)
    model.load_weights(str(path))
    return NativeFile(model, takes_lengths=False, oracle=oracle(model))


def run_native(model: Any, x: np.ndarray[Any, Any], lengths: Any = None
               ) -> np.ndarray[Any, Any]:
    """The model's output on ``x``; with ``lengths``, padded steps are zeroed in the input
    (which a model of ``to_native(..., mask_value=0.0)`` masks)."""
    if lengths is not None:
        valid = np.arange(x.shape[1])[None, :, None] < np.asarray(lengths)[:, None, None]
        x = x * valid
    return numpy_of(model(x))


def list_arrays(path: Path, fmt: str) -> list[tuple[str, tuple[int, ...], str]]:
    """Every HDF5 dataset of the file by its path (``.../kernel:0``)."""
    return _h5_arrays(path, "keras-h5")
