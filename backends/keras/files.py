"""Keras files: ``.keras`` (``keras.saving.load_model`` in safe mode, without compiling),
``.weights.h5`` (Keras 3 weights by position) and legacy ``.h5`` (read by name with h5py, never
by Keras), each checked against the limits before anything is read
(:mod:`rnn_ref.backends.file_limits`); the file functions of
:data:`rnn_ref.backends.records.FILE_API`."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from rnn_ref.activations import Activation
from rnn_ref.backends import file_limits
from rnn_ref.backends.keras.convert import (
    from_native,
    import_keras,
    keras_module,
    oracle,
    to_native,
)
from rnn_ref.backends.keras.graph import (
    KERAS2,
    KERAS3,
    Flavour,
    assemble,
    gated_cell_weights,
    parse_model,
)
from rnn_ref.backends.keras.record import KERAS_ACTIVATIONS, KERAS_READ_ACTIVATIONS
from rnn_ref.config import RNNConfig
from rnn_ref.errors import FileFormatError, UnsupportedError
from rnn_ref.fileapi import (
    Hints,
    MissingHintError,
    NativeFile,
    hint_activation,
    hint_activations,
)
from rnn_ref.params import AnyCellParams, CellParams, Readout, RNNParams

__all__ = ["LegacyReader", "legacy_h5_contents", "list_arrays", "load_native", "read_file",
           "read_legacy_h5", "run_native", "unused_weights", "write_file"]


def _load_model(keras: Any, path: Path) -> Any:
    """``keras.saving.load_model`` in safe mode, without compiling; quiet about the one
    warning a model rnn-ref reads may give: a ``GlobalMaxPooling1D`` after a mask ignores it,
    which is what ``max_all`` means."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not support masking")
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)


def read_file(path: Path, fmt: str, hints: Hints) -> RNNParams:
    """The parameters of a Keras file (the hints only for weights-only files), once what it
    declares is within the limits (:mod:`file_limits`)."""
    _check_declared(path, fmt)
    if fmt == "keras":
        return from_native(_load_model(import_keras(), path))
    if fmt == "keras-weights":
        return _read_weights_h5(path, hints)
    return read_legacy_h5(path, hints)


def _check_declared(path: Path, fmt: str) -> None:
    """A ``.keras`` archive's config and weights, or an HDF5 file's datasets, against the
    limits, before Keras or h5py reads any of it."""
    if fmt == "keras":
        file_limits.check_keras_archive(path, str(path))
    else:
        file_limits.check_h5(path, str(path))


_SUFFIX = re.compile(r"^(.*?)(?:_(\d+))?$")


def _layer_order(name: str) -> tuple[int, str]:
    m = _SUFFIX.match(name)
    base, index = (m.group(1), int(m.group(2) or 0)) if m else (name, 0)
    return index, base


_Arrays = list[list[np.ndarray[Any, Any]]]


#: the groups Keras' ``save_weights`` writes for the layers read (snake-case class names)
_KERAS_NAME = re.compile(r"^(simple_rnn|gru|lstm|bidirectional|dense)(_\d+)?$")


def _weights_h5_groups(path: Path) -> tuple[list[str], list[str], dict[str, _Arrays]]:
    """(RNN layer names in Keras' order, Dense layer names, every layer's arrays: one list
    per cell, one list for a Dense)."""
    import h5py

    def vars_of(group: Any) -> list[np.ndarray[Any, Any]]:
        v = group["vars"]
        return [np.asarray(v[str(i)]) for i in range(len(v))]

    with h5py.File(path, "r") as f:
        if "layers" not in f:
            raise FileFormatError(f"{path}: no 'layers' group: not a Keras 3 .weights.h5 file")
        rnn, dense, other = [], [], []
        arrays: dict[str, _Arrays] = {}
        for name, group in f["layers"].items():
            held = "cell" in group or "forward_layer" in group or len(group.get("vars", ()))
            if held and not _KERAS_NAME.match(name):  # Keras names it after the layer's class
                other.append(name)
            elif "forward_layer" in group:
                rnn.append(name)
                arrays[name] = [vars_of(group["forward_layer"]["cell"]),
                                vars_of(group["backward_layer"]["cell"])]
            elif "cell" in group:
                rnn.append(name)
                arrays[name] = [vars_of(group["cell"])]
            elif "vars" in group and len(group["vars"]) in (1, 2):
                dense.append(name)
                arrays[name] = [vars_of(group)]
            elif not ("vars" in group and len(group["vars"]) == 0):  # Masking, InputLayer
                other.append(name)
    _check_groups(path, rnn, dense, other)
    return sorted(rnn, key=_layer_order), dense, arrays


def _check_groups(path: Path, rnn: list[str], dense: list[str], other: list[str]) -> None:
    """Refuse a ``.weights.h5`` whose layer groups are not a stack of one recurrent class
    and at most one Dense."""
    if other:
        raise UnsupportedError("rnn-ref", f"layers {sorted(other)} in {path.name}",
                               "a weights file of SimpleRNN/GRU/LSTM/Bidirectional [+ Dense] "
                               "only")
    if len(dense) > 1:
        raise UnsupportedError("rnn-ref", f"{len(dense)} Dense layers",
                               "one final Dense is the readout")
    if not rnn:
        raise FileFormatError(f"{path}: no SimpleRNN, GRU, LSTM or Bidirectional layer")
    classes = sorted({_layer_order(name)[1] for name in rnn})
    if len(classes) > 1:
        raise UnsupportedError("rnn-ref", f"a mix of layers {classes} in {path.name}",
                               "a .weights.h5 names its layers after their class and numbers "
                               "each class apart, so the order of a mixed stack is not "
                               "recorded: save the whole model (.keras)")


def _one_bias_cell(path: Path, name: str, v: list[np.ndarray[Any, Any]]) -> AnyCellParams:
    """One cell of a ``.weights.h5`` layer from its ``kernel``, ``recurrent_kernel`` [and
    ``bias``]: the recurrent kernel ``(M, G*M)`` says the cell (G = 1 SimpleRNN, 3 GRU, 4
    LSTM), a GRU's bias ``(2, 3M)`` or ``(3M,)`` its ``reset_after``
    (:func:`keras_graph.gated_cell_weights`).

    Raises:
        FileFormatError: arrays of no cell.
        UnsupportedError: a GRU without a bias (its reset_after is not recorded).
    """
    if len(v) not in (2, 3):
        raise FileFormatError(f"{path}: layer {name!r} holds {len(v)} arrays; a SimpleRNN, "
                              f"GRU or LSTM cell has 2 or 3")
    rec = v[1]
    gates = rec.shape[1] // rec.shape[0] if rec.ndim == 2 and rec.shape[0] else 0
    if rec.ndim != 2 or gates not in (1, 3, 4) or rec.shape[1] != gates * rec.shape[0]:
        raise FileFormatError(f"{path}: layer {name!r} has a recurrent kernel of shape "
                              f"{rec.shape}, not (M, M), (M, 3M) or (M, 4M) (SimpleRNN, GRU, "
                              f"LSTM)")
    if gates == 1:
        bias = v[2] if len(v) == 3 else np.zeros(rec.shape[0], rec.dtype)
        return CellParams(v[0], v[1], bias, np.zeros_like(bias))
    kind = "gru" if gates == 3 else "lstm"
    packed = v[2] if len(v) == 3 else None
    if kind == "gru" and packed is None:
        raise UnsupportedError("rnn-ref", f"the GRU layer {name!r} without a bias in "
                               f"{path.name}", "whether it resets after the recurrent product "
                               "(reset_after) shows only in its bias: save the whole model "
                               "(.keras)")
    return gated_cell_weights(kind, packed is not None and packed.ndim == 2, v[0], v[1], packed,
                              where=f"{path}: layer {name!r}")


def _gates_activations(hints: Hints, gated: int) -> list[Activation]:
    """The gates' activation of each of the file's ``gated`` GRU/LSTM layers, from the
    ``recurrent_activation`` hint (one name, or one per gated layer comma-separated).

    Raises:
        MissingHintError: no hint for a file with GRU or LSTM layers.
        ValueError: a hint for a file without them, or a name Keras does not have.
    """
    if gated == 0:
        if hints.recurrent_activation is not None:
            raise ValueError("the recurrent_activation hint is for GRU and LSTM layers; the "
                             "file has none")
        return []
    if hints.recurrent_activation is None:
        raise MissingHintError("recurrent_activation", "a keras-weights file does not record "
                               "its GRU/LSTM layers' gate activation (Keras' "
                               "recurrent_activation, sigmoid by default): give the "
                               "recurrent_activation hint (one of "
                               f"{', '.join(KERAS_READ_ACTIVATIONS)})")
    return hint_activations(Hints(activation=hints.recurrent_activation), "keras-weights",
                            KERAS_READ_ACTIVATIONS, gated)


def _input_width(cell: AnyCellParams) -> int:
    """D_l of one cell."""
    w_x = cell.w_x if isinstance(cell, CellParams) else next(iter(cell.w_x.values()))
    return int(w_x.shape[0])


def _read_weights_h5(path: Path, hints: Hints) -> RNNParams:
    rnn, dense, arrays = _weights_h5_groups(path)
    acts = hint_activations(hints, "keras-weights", KERAS_READ_ACTIVATIONS, len(rnn))
    layers = [[_one_bias_cell(path, name, v) for v in arrays[name]] for name in rnn]
    if len({len(row) for row in layers}) > 1:
        raise UnsupportedError("rnn-ref", "a mix of SimpleRNN and Bidirectional layers")
    if len({len(arrays[name][0]) for name in rnn}) > 1:
        raise UnsupportedError("rnn-ref", "layers with and without a bias")
    kinds = [row[0].kind for row in layers]
    resets = [bool(np.ndim(arrays[name][0][2]) == 2) if kind == "gru" else None
              for name, kind in zip(rnn, kinds, strict=True)]
    for name, row, v in zip(rnn, layers, (arrays[n] for n in rnn), strict=True):
        if len({c.kind for c in row}) > 1 or len({np.ndim(c[-1]) for c in v}) > 1:
            raise UnsupportedError("rnn-ref", f"the Bidirectional layer {name!r} whose "
                                   f"directions hold different cells",
                                   "the spec's layer has one cell for both directions")
    it = iter(_gates_activations(hints, sum(k != "elman" for k in kinds)))
    gates = [None if k == "elman" else [next(it)] * len(layers[0]) for k in kinds]
    readout, head_act = None, "linear"
    if dense:
        if hints.head_activation is None:
            raise MissingHintError("head_activation", "a keras-weights file does not record "
                                   "its Dense layer's activation: give the head_activation "
                                   f"hint (one of {', '.join(KERAS_ACTIVATIONS)})")
        head_act = hints.head_activation.strip()
        if head_act not in KERAS_ACTIVATIONS:
            raise ValueError(f"head_activation hint {hints.head_activation!r} is not one of "
                             f"{', '.join(KERAS_ACTIVATIONS)}")
        dv = arrays[dense[0]][0]
        readout = Readout(dv[0], dv[1] if len(dv) == 2 else np.zeros(dv[0].shape[1],
                                                                    dv[0].dtype))
    sizes = [row[0].hidden_size for row in layers]
    is_bidi = len(layers[0]) == 2
    merge = "concat"
    if is_bidi:
        merge = hints.merge_mode or "concat"
        widths = [_input_width(layers[i + 1][0]) for i in range(len(layers) - 1)]
        if readout is not None:
            widths.append(readout.w.shape[0])
        if any(w == sizes[0] for w in widths) and hints.merge_mode is None:
            raise MissingHintError("merge_mode", "the Bidirectional layers merge their "
                                   "directions without concatenating, and the file does not "
                                   "say how: give the merge_mode hint (sum, mul or ave)")
    direction = "bidirectional" if is_bidi else (hints.direction or "forward")
    select = (hints.select or "sequence").strip()
    if select not in ("sequence", "final"):
        raise ValueError(f"select hint {hints.select!r}: a keras-weights file's last layer "
                         f"returns every step ('sequence') or its final state ('final')")
    config = RNNConfig(
        input_size=_input_width(layers[0][0]), hidden_size=tuple(sizes),
        direction=direction, activation=[[a] * len(layers[0]) for a in acts],
        bias=len(arrays[rnn[0]][0]) == 3,
        output_size=None if readout is None else int(readout.w.shape[1]),
        output_activation=None if readout is None else KERAS_ACTIVATIONS[head_act],
        merge_mode=merge,
        output_order="processing" if direction == "reverse" else "aligned", select=select,
        cell=kinds, recurrent_activation=None if set(kinds) == {"elman"} else gates,
        reset_after=resets if "gru" in kinds else True,
    )
    return RNNParams(config, layers, readout)


def legacy_h5_contents(path: Path) -> tuple[list[str], dict[str, dict[str, Any]], Any]:
    """(layer names, each layer's weights by name, the model config's JSON or ``None``) of a
    legacy Keras 3 or Keras 2 ``.h5`` file, read with h5py."""
    import h5py

    def text(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise FileFormatError(f"{path}: no layer_names: not a legacy Keras .h5 file")
        names = [text(n) for n in root.attrs["layer_names"]]
        config_json = f.attrs.get("model_config")
        weights: dict[str, dict[str, np.ndarray[Any, Any]]] = {}
        for name in names:
            g = root[name]
            weights[name] = {text(w): np.asarray(g[text(w)])
                             for w in g.attrs.get("weight_names", [])}
    return names, weights, None if config_json is None else json.loads(text(config_json))


def read_legacy_h5(path: Path, hints: Hints, flavour: Flavour = KERAS3) -> RNNParams:
    """The parameters of a legacy ``.h5`` file written by Keras 3 or (with :data:`KERAS2`)
    tf-keras: a whole model through its config (:func:`keras_graph.parse_model`), or
    ``save_weights``' file by weight name with the hints (:class:`LegacyReader`).

    Raises:
        FileFormatError: a layer holding fewer arrays than its config takes, or weights of
            another size than its config declares.
        UnsupportedError: what the parser refuses; weights no layer of the config reads.
    """
    names, weights, config = legacy_h5_contents(path)
    if config is None:  # weights only: read by weight name, with the hints
        return LegacyReader(path, hints, flavour).params(names, weights, {})
    net = parse_model(config, flavour=flavour, backend="tensorflow")
    takes: dict[str, set[int]] = {}  # a gated cell's blocks share their packed array
    for src in net.sources.values():
        if src is not None:
            takes.setdefault(src.layer, set()).add(src.index)
    for name, indices in takes.items():
        if len(weights.get(name, {})) < len(indices):
            raise FileFormatError(f"{path}: layer {name!r} holds {len(weights.get(name, {}))} "
                                  f"arrays, its config takes {len(indices)}")
    used: set[tuple[str, int]] = set()

    def fetch(name: str, index: int) -> np.ndarray[Any, Any]:
        used.add((name, index))
        return list(weights[name].values())[index]

    params = assemble(net, fetch)
    unused_weights(path, [f"{name}/{w}" for name, ws in weights.items()
                          for i, w in enumerate(ws) if (name, i) not in used])
    return params


def unused_weights(path: Path, names: list[str]) -> None:
    """Refuse a legacy ``.h5`` with weights (``names``, ``layer/weight``) that no layer of
    its model config reads: a layer missing from the config, or more arrays than its layer
    takes (they would be dropped without a word)."""
    if names:
        raise UnsupportedError("rnn-ref", f"the weights {sorted(names)[:8]} of {path.name}",
                               "no layer of the model config reads them (a layer missing from "
                               "the config, or more arrays than its layer takes)")


class LegacyReader:
    """Legacy ``.h5`` layers, read by weight name: SimpleRNN/Bidirectional layers then one
    Dense readout."""

    def __init__(self, path: Path, hints: Hints, flavour: Flavour = KERAS3) -> None:
        self.path, self.hints, self.flavour = path, hints, flavour
        self.layers: list[list[CellParams]] = []
        self.acts: list[tuple[Activation, ...]] = []
        self.merges: list[str | None] = []
        self.kinds: set[bool] = set()
        self.backwards: set[bool] = set()
        self.readout: Readout | None = None
        self.out_act = Activation("linear")

    @staticmethod
    def _by(w: dict[str, Any], prefix: str, key: str) -> Any:
        found = [v for k, v in w.items()
                 if k.startswith(prefix) and k.split("/")[-1].split(":")[0] == key]
        return found[0] if found else None

    def _act(self, conf: dict[str, Any] | None) -> Activation:
        acts = self.flavour.activations
        if conf is None:
            fmt = "keras2-h5" if self.flavour is KERAS2 else "keras-h5"
            return hint_activation(self.hints, fmt, dict(acts))
        name = conf.get("activation", "tanh") or "linear"
        if name not in acts:
            raise UnsupportedError("rnn-ref", f"the {self.flavour.name} activation {name!r}",
                                   f"rnn-ref reads {', '.join(acts)}")
        return acts[name]

    def _dense(self, name: str, cls: str | None, w: dict[str, Any],
               lc: dict[str, Any] | None) -> None:
        if self.readout is not None or cls not in (None, "Dense"):
            raise UnsupportedError("rnn-ref", f"layer {name} ({cls})")
        kernel, bias = self._by(w, "", "kernel"), self._by(w, "", "bias")
        self.readout = Readout(kernel, bias if bias is not None else np.zeros(kernel.shape[1]))
        if lc:
            self.out_act = self._act(lc["config"])

    def _rnn(self, name: str, cls: str | None, w: dict[str, Any],
             lc: dict[str, Any] | None) -> None:
        is_bidi = cls == "Bidirectional" or any("forward_" in k for k in w)
        self.kinds.add(is_bidi)
        stems = sorted({k.split("simple_rnn_cell")[0] for k in w})
        prefixes = ([p for p in stems if "forward" in p] + [p for p in stems if "backward" in p]
                    if is_bidi else [""])
        row = []
        for prefix in prefixes:
            k, r = self._by(w, prefix, "kernel"), self._by(w, prefix, "recurrent_kernel")
            b = self._by(w, prefix, "bias")
            if k is None or r is None:
                raise FileFormatError(f"{self.path}: layer {name} misses its kernel or "
                                      f"recurrent_kernel")
            b = b if b is not None else np.zeros(r.shape[0], r.dtype)
            row.append(CellParams(k, r, b, np.zeros_like(b)))
        self.layers.append(row)
        inner = (lc or {}).get("config", {})
        if is_bidi:
            self.merges.append(inner.get("merge_mode", self.hints.merge_mode or "concat"))
            sub = inner.get("layer", {}).get("config")
            self.acts.append((self._act(sub),
                              self._act(inner.get("backward_layer", {}).get("config", sub))))
        else:
            self.merges.append("concat")
            self.acts.append((self._act(inner if lc else None),))
            self.backwards.add(bool(inner.get("go_backwards", False)))

    def params(self, names: list[str], weights: dict[str, dict[str, Any]],
               layer_cfgs: dict[str, dict[str, Any]]) -> RNNParams:
        for name in names:
            w, lc = weights[name], layer_cfgs.get(name)
            cls = lc["class_name"] if lc else None
            if not w:
                continue
            if cls in ("LSTM", "GRU") or any("lstm" in k or "gru" in k for k in w):
                raise UnsupportedError("rnn-ref", f"a Keras {cls or 'LSTM/GRU'} layer ({name})",
                                       "only SimpleRNN is an Elman RNN")
            if self._by(w, "", "recurrent_kernel") is None:
                self._dense(name, cls, w, lc)
            else:
                self._rnn(name, cls, w, lc)
        if len(self.kinds) != 1:
            raise UnsupportedError("rnn-ref", "this mix of layers" if self.kinds else
                                   "a file without SimpleRNN layers")
        reverse = self.backwards == {True}
        config = RNNConfig(
            input_size=int(self.layers[0][0].w_x.shape[0]),
            hidden_size=tuple(row[0].hidden_size for row in self.layers),
            direction="bidirectional" if self.kinds.pop() else (
                "reverse" if reverse else "forward"),
            activation=[list(a) for a in self.acts], merge_mode=tuple(self.merges),
            output_size=None if self.readout is None else int(self.readout.w.shape[1]),
            output_activation=self.out_act, output_order="processing" if reverse else "aligned",
        )
        return RNNParams(config, self.layers, self.readout)


def write_file(params: RNNParams, path: Path, fmt: str) -> None:
    import warnings

    import_keras()
    model = to_native(params)
    if fmt == "keras":
        model.save(str(path))
    elif fmt == "keras-weights":
        model.save_weights(str(path))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras calls the legacy format legacy
            model.save(str(path))


def load_native(path: Path, fmt: str, params: RNNParams) -> NativeFile:
    """A ``.keras`` model as saved; for weights files, the weights loaded into the model of
    ``params``' architecture."""
    keras = import_keras()
    _check_declared(path, fmt)
    if fmt == "keras":
        model = _load_model(keras, path)
    else:
        model = to_native(params)
        model.load_weights(str(path))
    return NativeFile(model, takes_lengths=False, oracle=oracle(model))


def run_native(model: Any, x: np.ndarray[Any, Any], lengths: Any = None) -> Any:
    """The model's output on ``x`` (a list of arrays for a model of several outputs); with
    ``lengths``, padded steps are zeroed in the input, which a model of ``to_native(...,
    mask_value=0.0)`` masks."""
    if lengths is not None:
        valid = np.arange(x.shape[1])[None, :, None] < np.asarray(lengths)[:, None, None]
        x = x * valid
    with warnings.catch_warnings():  # GlobalMaxPooling1D ignores the mask, as max_all does
        warnings.filterwarnings("ignore", message=".*does not support masking")
        out = model(x)
    to_np = keras_module().ops.convert_to_numpy
    if isinstance(out, (list, tuple)):
        return [np.asarray(to_np(o)) for o in out]
    return np.asarray(to_np(out))


def list_arrays(path: Path, fmt: str) -> list[tuple[str, tuple[int, ...], str]]:
    """Every HDF5 dataset of the file (of a ``.keras`` archive's weights) by its path."""
    import io
    import zipfile

    import h5py

    out: list[tuple[str, tuple[int, ...], str]] = []
    source: Any = path
    if fmt == "keras":
        with zipfile.ZipFile(path) as zf:
            source = io.BytesIO(zf.read("model.weights.h5"))

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            out.append((name, obj.shape, str(obj.dtype)))

    with h5py.File(source, "r") as f:
        f.visititems(visit)
    return out
