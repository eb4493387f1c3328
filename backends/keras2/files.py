"""Keras 2 files (``keras2-h5``): read by weight name with h5py through Keras 3's legacy reader
in the Keras 2 flavour (nothing from the file is run), written by tf-keras as legacy HDF5; the
file functions of :data:`rnn_ref.backends.records.FILE_API`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rnn_ref.activations import Activation
from rnn_ref.backends import file_limits
from rnn_ref.backends.keras.files import legacy_h5_contents, read_legacy_h5
from rnn_ref.backends.keras.files import list_arrays as _h5_arrays
from rnn_ref.backends.keras.graph import KERAS2, gated_cell_weights
from rnn_ref.backends.keras2.convert import held_by_keras2, numpy_of, oracle, to_native
from rnn_ref.config import RNNConfig
from rnn_ref.errors import FileFormatError, UnsupportedError
from rnn_ref.fileapi import Hints, MissingHintError, NativeFile, hint_activations
from rnn_ref.params import AnyCellParams, CellParams, Readout, RNNParams

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


@dataclass
class _WeightsFile:
    """What the arrays of a weights-only file say: each recurrent layer's cells (one or two
    directions), cell kind and ``reset_after``; whether they hold biases; the Dense readout."""

    layers: list[list[AnyCellParams]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    resets: list[bool] = field(default_factory=list)
    biases: set[bool] = field(default_factory=set)
    readout: Readout | None = None


def _weights_layers(path: Path, names: list[str], weights: dict[str, dict[str, Any]]
                    ) -> _WeightsFile:
    """The layers of a weights-only file in order: recurrent layers (a recurrent kernel),
    then at most one Dense (a kernel and a bias).

    Raises:
        UnsupportedError: another layer, a layer after the Dense, a Bidirectional of two
            different cells, no recurrent layer, layers with and without a bias.
    """
    got = _WeightsFile()
    for name in names:
        ws = weights[name]
        if not ws:
            continue
        by_leaf = {k.rpartition("/")[2].split(":")[0]: k for k in ws}
        dense = "recurrent_kernel" not in by_leaf and "kernel" in by_leaf and set(
            by_leaf) <= {"kernel", "bias"} and bool(got.layers)
        if got.readout is not None or ("recurrent_kernel" not in by_leaf and not dense):
            raise UnsupportedError("rnn-ref", f"the layer {name!r} of {path.name} (arrays "
                                   f"{sorted(by_leaf)})", "a weights-only file is read as "
                                   "recurrent layers and one Dense readout after them")
        if dense:
            kernel = np.asarray(ws[by_leaf["kernel"]])
            bias = np.asarray(ws[by_leaf["bias"]]) if "bias" in by_leaf else np.zeros(
                kernel.shape[-1], kernel.dtype)
            got.readout = Readout(kernel, bias)
            continue
        arrays = _direction_arrays(path, name, ws)
        row = [_cell(path, name, a) for a in arrays]
        if len({(k, r) for k, r, _ in row}) > 1:
            raise UnsupportedError("rnn-ref", f"the Bidirectional layer {name!r} whose "
                                   f"directions hold different cells",
                                   "the spec's layer has one cell for both directions")
        got.biases.update(a[2] is not None for a in arrays)
        got.kinds.append(row[0][0])
        got.resets.append(row[0][1])
        got.layers.append([c for _, _, c in row])
    if not got.layers:
        raise UnsupportedError("rnn-ref", f"{path.name} without recurrent layers")
    if len(got.biases) > 1:
        raise UnsupportedError("rnn-ref", "recurrent layers with and without a bias",
                               "the spec has one bias flag for the stack")
    return got


def _merge_modes(got: _WeightsFile, hints: Hints) -> list[str | None]:
    """Each layer's merge mode: ``concat`` unless the next layer's (or the readout's) input
    width is one direction's, then the ``merge_mode`` hint; a last Bidirectional layer with
    nothing after it takes the hint, else Keras' default ``concat``.

    Raises:
        MissingHintError: a merge the widths show is not concat, without the hint.
        ValueError: a hint the widths contradict.
    """
    merges: list[str | None] = []
    for li, row in enumerate(got.layers):
        merge = "concat"
        if len(row) == 2:
            nxt = (_width(got.layers[li + 1][0]) if li + 1 < len(got.layers) else
                   int(got.readout.w.shape[0]) if got.readout is not None else None)
            if nxt is None:  # nothing after it shows its width
                merge = hints.merge_mode or "concat"
            elif nxt == _units(row[0]):
                if hints.merge_mode is None:
                    raise MissingHintError("merge_mode", f"the Bidirectional layer {li} merges "
                                           "its directions without concatenating, and the "
                                           "file does not say how: give the merge_mode hint "
                                           "(sum, mul or ave)")
                merge = hints.merge_mode
            elif hints.merge_mode not in (None, "concat"):
                raise ValueError(f"merge_mode hint {hints.merge_mode!r}, but the next "
                                 f"layer's width {nxt} is the concatenation of layer {li}")
        merges.append(merge)
    return merges


def _gate_activations(got: _WeightsFile, hints: Hints) -> list[list[Activation] | None]:
    """Each gated layer's ``recurrent_activation`` per direction from the hint (one name, or
    one per GRU/LSTM layer comma-separated); ``None`` for a SimpleRNN layer.

    Raises:
        MissingHintError: gated layers without the hint.
        ValueError: the hint for a file without gated layers.
    """
    acts = dict(KERAS2.activations)
    gated = sum(k != "elman" for k in got.kinds)
    if not gated:
        if hints.recurrent_activation is not None:
            raise ValueError("the recurrent_activation hint is for GRU and LSTM layers; the "
                             "file has none")
        return [None] * len(got.kinds)
    if hints.recurrent_activation is None:
        raise MissingHintError("recurrent_activation", "a keras2-h5 weights file does not "
                               "record its GRU/LSTM layers' gate activation "
                               "(recurrent_activation: sigmoid in tf-keras, hard_sigmoid, "
                               "0.2 x + 0.5, in Keras <= 2.2): give the recurrent_activation "
                               f"hint (one of {', '.join(acts)})")
    it = iter(hint_activations(Hints(activation=hints.recurrent_activation), "keras2-h5", acts,
                               gated))
    return [None if k == "elman" else [next(it)] * len(row)
            for k, row in zip(got.kinds, got.layers, strict=True)]


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
    got = _weights_layers(path, names, weights)
    R = [len(row) for row in got.layers]
    g = hint_activations(hints, "keras2-h5", dict(KERAS2.activations), len(got.layers))
    gates = _gate_activations(got, hints)
    kinds = got.kinds
    config = RNNConfig(
        input_size=_width(got.layers[0][0]),
        hidden_size=tuple(_units(row[0]) for row in got.layers),
        direction=["bidirectional" if r == 2 else "forward" for r in R],
        activation=[[a] * r for a, r in zip(g, R, strict=True)], bias=got.biases.pop(),
        merge_mode=_merge_modes(got, hints), cell=kinds,
        recurrent_activation=None if set(kinds) == {"elman"} else gates,
        reset_after=[r if k == "gru" else None for k, r in zip(kinds, got.resets, strict=True)]
        if "gru" in kinds else True,
        output_size=None if got.readout is None else int(got.readout.w.shape[1]),
    )
    return RNNParams(config, got.layers, got.readout)


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
