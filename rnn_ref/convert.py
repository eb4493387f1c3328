"""Files in, files out: read and write every supported format, safely, and verify the result.

Formats (chosen from the extension, or named with ``--from``/``--to``):

============  ================  ==========================================================
name          extensions        what it holds, how it is read
============  ================  ==========================================================
keras         ``.keras``        a whole Keras model; ``keras.saving.load_model(safe_mode=
                                True, compile=False)``
keras-weights ``.weights.h5``   Keras 3 weights by position (``layers/<name>/.../vars/0,1,
                                2``); the architecture comes from the layer names and shapes
                                (layers in the order of Keras' ``_1``, ``_2`` suffixes), the
                                activation from ``--activation``
keras-h5      ``.h5``           legacy Keras HDF5, read by name with h5py: a whole model
                                (its ``model_config`` JSON) or weights with ``layer_names``
torch         ``.pt``, ``.pth`` a ``torch.nn.RNN`` (or ``RNNWithReadout``) state dict;
                                ``torch.load(weights_only=True)``; ``--activation`` tanh/relu
safetensors   ``.safetensors``  the same state dict in safetensors (torch names)
onnx          ``.onnx``         a graph of ``RNN`` nodes (:func:`rnn_ref.from_onnx`)
rnn-ref       ``.npz``          the canonical file (:func:`rnn_ref.load`)
============  ================  ==========================================================

Nothing from a file is ever executed: no pickle, Keras in safe mode, HDF5 and JSON parsed as
data. Output goes to a temporary file in the target folder and is renamed into place only
when it is complete (and verified, when asked), so a failed conversion leaves nothing behind;
an existing file is replaced only with ``force=True``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnn_ref.activations import Activation
from rnn_ref.config import RNNConfig
from rnn_ref.errors import FileFormatError, UnsupportedError
from rnn_ref.params import CellParams, Readout, RNNParams

__all__ = ["FORMATS", "Hints", "convertible", "detect", "hints_for", "read", "verify",
           "write"]

FORMATS: dict[str, tuple[str, ...]] = {
    "keras": (".keras",), "keras-weights": (".weights.h5",), "keras-h5": (".h5",),
    "torch": (".pt", ".pth"), "safetensors": (".safetensors",), "onnx": (".onnx",),
    "rnn-ref": (".npz",),
}
_KERAS_NAMES = {"tanh", "relu", "sigmoid", "linear", "softsign", "softplus", "hard_sigmoid",
                "elu", "leaky_relu"}


@dataclass(frozen=True)
class Hints:
    """What a weights-only file cannot tell: the activation (and a Keras bidirectional merge)."""

    activation: str | None = None
    merge_mode: str | None = None
    direction: str | None = None


def detect(path: str | os.PathLike[str], given: str | None = None) -> str:
    """The format of ``path``: ``given`` when set, else from the extension."""
    if given is not None:
        if given not in FORMATS:
            raise ValueError(f"format {given!r} is not one of {', '.join(FORMATS)}")
        return given
    name = str(path).lower()
    for fmt, exts in sorted(FORMATS.items(), key=lambda kv: -max(len(e) for e in kv[1])):
        if any(name.endswith(e) for e in exts):
            return fmt
    known = ", ".join(e for exts in FORMATS.values() for e in exts)
    raise ValueError(f"{path}: cannot tell the format from the extension (known: {known}); "
                     f"name it with --from/--to")


def _keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401  (before TensorFlow: the other order can crash)
    import keras

    return keras


def _need_activation(hints: Hints, fmt: str, allowed: set[str] | None = None) -> Activation:
    if hints.activation is None:
        raise ValueError(f"a {fmt} file does not record the activation: pass --activation "
                         f"(for example --activation tanh)")
    act = Activation(hints.activation) if hints.activation in _KERAS_NAMES | {"tanh", "relu"} \
        else None
    if act is None or (allowed is not None and act.name not in allowed):
        names = sorted(allowed or _KERAS_NAMES)
        raise ValueError(f"--activation {hints.activation!r} is not one of {', '.join(names)}")
    if act.name == "hard_sigmoid":
        return Activation("hard_sigmoid", 1 / 6, 0.5)
    if act.name == "elu":
        return Activation("elu", 1.0)
    if act.name == "leaky_relu":
        return Activation("leaky_relu", 0.2)
    return act


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def read(path: str | os.PathLike[str], fmt: str | None = None, hints: Hints = Hints()
         ) -> RNNParams:
    """Canonical parameters of a file. Raises ``FileFormatError`` (a ``ValueError``) for a
    corrupt, truncated or wrong-format file, ``UnsupportedError`` for a model rnn-ref cannot
    hold, ``FileNotFoundError`` for a missing one."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    fmt = detect(source, fmt)
    for name in ("activation", "merge_mode", "direction"):
        if getattr(hints, name) is not None and name not in _HINTS_USED[fmt]:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} does not apply to {fmt} files: they record that themselves")
    try:
        return _READERS[fmt](source, hints)
    except (FileFormatError, UnsupportedError, FileNotFoundError):
        raise
    except ValueError as exc:
        if "--activation" in str(exc) or "--merge-mode" in str(exc) or "--direction" in str(exc):
            raise
        raise FileFormatError(f"{source}: {exc}") from None
    except Exception as exc:  # a library's own complaint about a bad file
        raise FileFormatError(f"{source}: not a valid {fmt} file "
                              f"({type(exc).__name__}: {str(exc)[:300]})") from None


def _read_npz(path: Path, hints: Hints) -> RNNParams:
    from rnn_ref.io import load

    return load(path)


def _read_onnx(path: Path, hints: Hints) -> RNNParams:
    import onnx

    from rnn_ref.backends import onnx_backend

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    return onnx_backend.from_native(model)


def _state_dict_params(sd: dict[str, Any], hints: Hints, fmt: str) -> RNNParams:
    from rnn_ref.backends import torch_backend

    act = _need_activation(hints, fmt, {"tanh", "relu"})
    return torch_backend.from_native({k: np.asarray(v) for k, v in sd.items()},
                                     nonlinearity=act.name)


def _read_torch(path: Path, hints: Hints) -> RNNParams:
    import torch

    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise FileFormatError(f"{path}: not a state dict of tensors (got {type(sd).__name__})")
    return _state_dict_params({k: v.numpy() for k, v in sd.items()}, hints, "torch")


def _read_safetensors(path: Path, hints: Hints) -> RNNParams:
    from safetensors.numpy import load_file

    return _state_dict_params(dict(load_file(str(path))), hints, "safetensors")


def _read_keras(path: Path, hints: Hints) -> RNNParams:
    keras = _keras()
    from rnn_ref.backends import keras_backend

    model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    return keras_backend.from_native(model)


_SUFFIX = re.compile(r"^(.*?)(?:_(\d+))?$")


def _layer_order(name: str) -> tuple[int, str]:
    m = _SUFFIX.match(name)
    base, index = (m.group(1), int(m.group(2) or 0)) if m else (name, 0)
    return index, base


def _read_keras_weights(path: Path, hints: Hints) -> RNNParams:
    import h5py

    with h5py.File(path, "r") as f:
        if "layers" not in f:
            raise FileFormatError(f"{path}: no 'layers' group: not a Keras 3 .weights.h5 file")
        groups = dict(f["layers"].items())

        def vars_of(group: Any) -> list[np.ndarray[Any, Any]]:
            v = group["vars"]
            return [np.asarray(v[str(i)]) for i in range(len(v))]

        rnn_names, dense_names, other = [], [], []
        for name, group in groups.items():
            if "forward_layer" in group or "cell" in group:
                rnn_names.append(name)
            elif "vars" in group and len(group["vars"]) in (1, 2):
                dense_names.append(name)
            elif "vars" in group and len(group["vars"]) == 0:
                continue  # Masking, InputLayer
            else:
                other.append(name)
        if other:
            raise UnsupportedError("rnn-ref", f"layers {sorted(other)} in {path.name}",
                                   "a weights file of SimpleRNN/Bidirectional [+ Dense] only")
        if len(dense_names) > 1:
            raise UnsupportedError("rnn-ref", f"{len(dense_names)} Dense layers",
                                   "one final Dense is the readout")
        if not rnn_names:
            raise FileFormatError(f"{path}: no SimpleRNN or Bidirectional layer")
        rnn_names.sort(key=_layer_order)
        act = _need_activation(hints, "keras-weights")
        layers, sizes, bidi, with_bias = [], [], set(), set()
        for name in rnn_names:
            g = groups[name]
            if "forward_layer" in g:
                cells = [vars_of(g["forward_layer"]["cell"]), vars_of(g["backward_layer"]["cell"])]
                bidi.add(True)
            else:
                cells = [vars_of(g["cell"])]
                bidi.add(False)
            row = []
            for v in cells:
                if len(v) not in (2, 3):
                    raise FileFormatError(f"{path}: layer {name!r} holds {len(v)} arrays; a "
                                          f"SimpleRNN cell has 2 or 3")
                with_bias.add(len(v) == 3)
                bias = v[2] if len(v) == 3 else np.zeros(v[1].shape[0], v[1].dtype)
                row.append(CellParams(v[0], v[1], bias, np.zeros_like(bias)))
            layers.append(row)
            sizes.append(row[0].hidden_size)
        if len(bidi) > 1:
            raise UnsupportedError("rnn-ref", "a mix of SimpleRNN and Bidirectional layers")
        if len(with_bias) > 1:
            raise UnsupportedError("rnn-ref", "layers with and without a bias")
        readout = None
        if dense_names:
            dv = vars_of(groups[dense_names[0]])
            readout = Readout(dv[0], dv[1] if len(dv) == 2 else np.zeros(dv[0].shape[1],
                                                                        dv[0].dtype))
    is_bidi = bidi.pop()
    merge = "concat"
    if is_bidi:
        merge = hints.merge_mode or "concat"
        widths = [layers[i + 1][0].w_x.shape[0] for i in range(len(layers) - 1)]
        if readout is not None:
            widths.append(readout.w.shape[0])
        if any(w == sizes[0] for w in widths) and hints.merge_mode is None:
            raise ValueError("the Bidirectional layers merge their directions without "
                             "concatenating, and the file does not say how: pass --merge-mode "
                             "sum, mul or ave")
    direction = "bidirectional" if is_bidi else (hints.direction or "forward")
    config = RNNConfig(
        input_size=int(layers[0][0].w_x.shape[0]), hidden_size=tuple(sizes),
        direction=direction, activation=act,
        bias=with_bias.pop(),
        output_size=None if readout is None else int(readout.w.shape[1]), merge_mode=merge,
        output_order="processing" if direction == "reverse" else "aligned",
    )
    return RNNParams(config, layers, readout)


def _read_keras_h5(path: Path, hints: Hints) -> RNNParams:
    import h5py

    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise FileFormatError(f"{path}: no layer_names: not a legacy Keras .h5 file")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in root.attrs["layer_names"]]
        config_json = f.attrs.get("model_config")
        weights: dict[str, dict[str, np.ndarray[Any, Any]]] = {}
        for name in names:
            g = root[name]
            wn = [w.decode() if isinstance(w, bytes) else str(w)
                  for w in g.attrs.get("weight_names", [])]
            weights[name] = {w: np.asarray(g[w]) for w in wn}
    layer_cfgs: dict[str, dict[str, Any]] = {}
    if config_json is not None:
        cfg = json.loads(config_json if isinstance(config_json, str) else config_json.decode())
        for layer in cfg.get("config", {}).get("layers", []):
            layer_cfgs[layer["config"]["name"]] = layer
    return _legacy_params(path, names, weights, layer_cfgs, hints)


def _legacy_params(path: Path, names: list[str], weights: dict[str, dict[str, Any]],
                   layer_cfgs: dict[str, dict[str, Any]], hints: Hints) -> RNNParams:
    def by(w: dict[str, Any], prefix: str, key: str) -> Any:
        found = [v for k, v in w.items() if k.startswith(prefix) and k.split("/")[-1]
                 .split(":")[0] == key]
        return found[0] if found else None

    def act_of(conf: dict[str, Any] | None) -> Activation:
        if conf is None:
            return _need_activation(hints, "keras-h5")
        name = conf.get("activation", "tanh")
        if name not in _KERAS_NAMES:
            raise UnsupportedError("rnn-ref", f"the Keras activation {name!r}")
        return _need_activation(Hints(activation=name), "keras-h5")

    layers: list[list[CellParams]] = []
    acts: list[tuple[Activation, ...]] = []
    sizes: list[int] = []
    merges: list[str | None] = []
    kinds: set[bool] = set()
    backwards: set[bool] = set()
    readout, out_act = None, Activation("linear")
    for name in names:
        w = weights[name]
        lc = layer_cfgs.get(name)
        cls = lc["class_name"] if lc else None
        if not w:
            continue
        if cls in ("LSTM", "GRU") or any("lstm" in k or "gru" in k for k in w):
            raise UnsupportedError("rnn-ref", f"a Keras {cls or 'LSTM/GRU'} layer ({name})",
                                   "only SimpleRNN is an Elman RNN")
        if by(w, "", "recurrent_kernel") is None:
            if readout is not None or cls not in (None, "Dense"):
                raise UnsupportedError("rnn-ref", f"layer {name} ({cls})")
            kernel = by(w, "", "kernel")
            bias = by(w, "", "bias")
            readout = Readout(kernel, bias if bias is not None else np.zeros(kernel.shape[1]))
            if lc:
                out_act = act_of(lc["config"])
            continue
        is_bidi = cls == "Bidirectional" or any("forward_" in k for k in w)
        kinds.add(is_bidi)
        prefixes = ([p for p in sorted({k.split("simple_rnn_cell")[0] for k in w})
                     if "forward" in p] + [p for p in sorted({k.split("simple_rnn_cell")[0]
                                                              for k in w}) if "backward" in p]
                    if is_bidi else [""])
        row = []
        for prefix in prefixes:
            k, r, b = by(w, prefix, "kernel"), by(w, prefix, "recurrent_kernel"), by(w, prefix,
                                                                                   "bias")
            if k is None or r is None:
                raise FileFormatError(f"{path}: layer {name} misses its kernel or "
                                      f"recurrent_kernel")
            b = b if b is not None else np.zeros(r.shape[0], r.dtype)
            row.append(CellParams(k, r, b, np.zeros_like(b)))
        layers.append(row)
        sizes.append(row[0].hidden_size)
        inner = (lc or {}).get("config", {})
        if is_bidi:
            merges.append(inner.get("merge_mode", hints.merge_mode or "concat"))
            sub = inner.get("layer", {}).get("config")
            acts.append((act_of(sub), act_of(inner.get("backward_layer", {}).get("config", sub))))
        else:
            merges.append("concat")
            acts.append((act_of(inner if lc else None),))
            backwards.add(bool(inner.get("go_backwards", False)))
    if len(kinds) != 1:
        raise UnsupportedError("rnn-ref", "this mix of layers" if kinds else "a file without "
                               "SimpleRNN layers")
    reverse = backwards == {True}
    config = RNNConfig(
        input_size=int(layers[0][0].w_x.shape[0]), hidden_size=tuple(sizes),
        direction="bidirectional" if kinds.pop() else ("reverse" if reverse else "forward"),
        activation=[list(a) for a in acts], merge_mode=tuple(merges),
        output_size=None if readout is None else int(readout.w.shape[1]),
        output_activation=out_act, output_order="processing" if reverse else "aligned",
    )
    return RNNParams(config, layers, readout)


#: the hints each format reads (a weights-only file cannot tell them); any other is an error
_HINTS_USED: dict[str, set[str]] = {
    "rnn-ref": set(), "onnx": set(), "keras": set(), "torch": {"activation"},
    "safetensors": {"activation"}, "keras-weights": {"activation", "merge_mode", "direction"},
    "keras-h5": {"activation", "merge_mode"},  # used only when the file has no model config
}

def hints_for(params: RNNParams, fmt: str) -> Hints:
    """The hints a ``fmt`` file of ``params`` needs to be read back (and no others)."""
    cfg = params.config
    used = _HINTS_USED[fmt]
    return Hints(
        activation=cfg.activation_of(0, 0).name if "activation" in used else None,
        merge_mode=(cfg.merge_modes[-1] or "concat") if "merge_mode" in used else None,
        direction=(cfg.direction if cfg.direction != "bidirectional" else None)
        if "direction" in used else None,
    )


_READERS: dict[str, Callable[[Path, Hints], RNNParams]] = {
    "rnn-ref": _read_npz, "onnx": _read_onnx, "torch": _read_torch,
    "safetensors": _read_safetensors, "keras": _read_keras,
    "keras-weights": _read_keras_weights, "keras-h5": _read_keras_h5,
}


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
def convertible(params: RNNParams) -> dict[str, str | None]:
    """For every format: ``None`` when ``params`` can be written to it, else why not."""
    from rnn_ref.backends import keras_backend, onnx_backend, torch_backend

    out: dict[str, str | None] = {}
    reasons = {
        "torch": torch_backend.unsupported(params.config, padded=False),
        "onnx": onnx_backend.unsupported(params.config, padded=False),
        "keras": keras_backend.unsupported(params.config, padded=False),
        "rnn-ref": None,
    }
    for fmt in FORMATS:
        key = {"safetensors": "torch", "keras-weights": "keras", "keras-h5": "keras"}.get(fmt,
                                                                                          fmt)
        reason = reasons[key]
        target = {"torch": "torch.nn.RNN", "onnx": "ONNX RNN", "keras": "Keras"}.get(key, key)
        out[fmt] = None if reason is None else f"{target} cannot express {reason[0]}: {reason[1]}"
    return out


def _write_native(params: RNNParams, fmt: str, path: Path) -> None:
    """Write ``params`` to ``path`` (a temporary name with the right extension)."""
    if fmt == "rnn-ref":
        from rnn_ref.io import save

        save(params, path, overwrite=True)
    elif fmt == "onnx":
        import onnx

        from rnn_ref.backends import onnx_backend

        onnx.save(onnx_backend.to_native(params), str(path))
    elif fmt in ("torch", "safetensors"):
        from rnn_ref.backends import torch_backend

        module = torch_backend.to_native(params.replace(padded_output="zeros"))
        sd = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
        if fmt == "torch":
            import torch

            torch.save(sd, str(path))
        else:
            from safetensors.torch import save_file

            save_file(sd, str(path))
    else:
        _keras()
        from rnn_ref.backends import keras_backend

        model = keras_backend.to_native(params)
        if fmt == "keras":
            model.save(str(path))
        elif fmt == "keras-weights":
            model.save_weights(str(path))
        else:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.save(str(path))


def write(params: RNNParams, path: str | os.PathLike[str], fmt: str | None = None, *,
          force: bool = False, check: Callable[[Path], None] | None = None) -> Path:
    """Write ``params`` to ``path`` atomically: a temporary file in the same folder, checked
    by ``check(temporary_path)`` when given, then renamed into place.

    Raises:
        FileExistsError: ``path`` exists and ``force`` is False.
        UnsupportedError: the format cannot express the network.
    """
    target = Path(path)
    fmt = detect(target, fmt)
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass --force to replace it")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    tmpdir = Path(tempfile.mkdtemp(prefix=".rnn-ref-", dir=folder))
    try:
        tmp = tmpdir / ("out" + FORMATS[fmt][0])
        _write_native(params, fmt, tmp)
        if check is not None:
            check(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------------
# verification: each file run by its own framework
# --------------------------------------------------------------------------------------------
def _runner(path: Path, fmt: str, params: RNNParams
            ) -> tuple[Callable[..., Any], bool, Callable[..., Any] | None]:
    """(run(x, lengths) -> outputs or y, takes_lengths, oracle of that same call or None)
    using the file's own framework; the oracle is given where the file's model returns
    something other than full sequences (a Keras model returning its last output)."""
    if fmt == "rnn-ref":
        from rnn_ref.io import load
        from rnn_ref.reference import forward

        p = load(path)

        def run_npz(x: Any, lengths: Any) -> Any:
            res = forward(p, x, lengths=lengths, compute_dtype=p.dtype)
            return res.y if res.y is not None else res.outputs

        return run_npz, True, None
    if fmt == "onnx":
        import onnxruntime as ort

        from rnn_ref.backends import onnx_backend

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        if names == ["x"]:
            return (lambda x, lengths: sess.run(None, {"x": x.astype(np.float32)})[0]), False, None
        with_lengths = onnx_backend.to_native(params, lengths=True)
        sess2 = ort.InferenceSession(with_lengths.SerializeToString(),
                                     providers=["CPUExecutionProvider"])
        return (lambda x, lengths: sess2.run(None, {"x": x, "lengths": lengths.astype(
            np.int32)})[0]), True, None
    if fmt in ("torch", "safetensors"):
        import torch

        from rnn_ref.backends import torch_backend

        module = torch_backend.to_native(params.replace(padded_output="zeros"))
        if fmt == "torch":
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        else:
            from safetensors.torch import load_file

            sd = load_file(str(path))
        module.load_state_dict(sd)

        def run_torch(x: Any, lengths: Any) -> Any:
            with torch.no_grad():
                xt = torch.from_numpy(x)
                rnn = getattr(module, "rnn", module)
                packed = torch.nn.utils.rnn.pack_padded_sequence(
                    xt, torch.from_numpy(lengths), batch_first=True, enforce_sorted=False)
                out, _ = rnn(packed)
                out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                                total_length=x.shape[1])
                if isinstance(module, torch_backend.RNNWithReadout):
                    return torch_backend._READOUT_ACTIVATIONS[module.activation](
                        module.readout(out)).numpy()
                return out.numpy()

        return run_torch, True, None
    keras = _keras()
    from rnn_ref.backends import keras_backend

    if fmt == "keras":
        model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    else:  # Keras loads the weights into the architecture rnn-ref read
        model = keras_backend.to_native(params)
        model.load_weights(str(path))

    def run_keras(x: Any, lengths: Any) -> Any:
        return keras.ops.convert_to_numpy(model(x))

    return run_keras, False, keras_backend.oracle(model)


@dataclass(frozen=True)
class Verification:
    passed: bool
    summary: str
    max_abs: float
    atol: float


def verify(src: Path, src_fmt: str, src_params: RNNParams, dst: Path, dst_fmt: str,
           dst_params: RNNParams, *, seed: int = 0) -> Verification:
    """Run both files in their own frameworks on seeded inputs (with lengths where both take
    them) and compare within the float32 tolerance."""
    from rnn_ref.conformance.compare import compare, tolerance

    cfg = src_params.config
    rng = np.random.default_rng(seed)
    n, t = 4, 9
    x = rng.standard_normal((n, t, cfg.input_size)).astype(np.float32)
    run_src, src_len, oracle_src = _runner(src, src_fmt, src_params)
    run_dst, dst_len, oracle_dst = _runner(dst, dst_fmt, dst_params)
    lengths = np.array([t, 3, 6, 1]) if src_len and dst_len else np.full(n, t)
    a, b = np.asarray(run_src(x, lengths)), np.asarray(run_dst(x, lengths))
    acts = [act for layer in cfg.activations for act in layer]

    def check(got: np.ndarray[Any, Any], want: np.ndarray[Any, Any]) -> Any:
        valid = np.arange(t)[None, :] < lengths[:, None]
        if cfg.output_order == "processing":
            valid = valid[:, ::-1]
        if got.ndim == 3 and want.ndim == 3:
            got, want = got[valid], want[valid]
        tol = tolerance("float32", t, acts, layers=cfg.num_layers,
                        scale=float(np.abs(want).max()) if want.size else 1.0)
        return compare(got, want, tol, time_axis=None)

    if a.shape == b.shape:
        rep = check(b, a)
        how = "target against source"
    else:  # e.g. a Keras model returning its last output, a target returning sequences
        from rnn_ref.reference import forward

        def reference(o: Callable[..., Any] | None, p: RNNParams) -> np.ndarray[Any, Any]:
            if o is not None:
                return np.asarray(o(x))
            res = forward(p, x, lengths=lengths)
            return res.y if res.y is not None else res.outputs

        reps = [check(a, reference(oracle_src, src_params)),
                check(b, reference(oracle_dst, dst_params))]
        rep = max(reps, key=lambda r: (not r.passed, r.max_abs))
        how = f"each against the oracle (source returns {a.shape}, target {b.shape})"
    what = "with lengths" if src_len and dst_len else "full length"
    rep_summary = f"{rep.summary()}; {how}"
    return Verification(rep.passed, f"{rep_summary} ({what}, N={n}, T={t}, seed {seed})",
                        rep.max_abs, rep.atol)
