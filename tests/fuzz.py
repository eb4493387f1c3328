"""A structural fuzzer for the readers (issue 14): valid files of every readable format are
changed the way a hostile or careless file would be, then read.

From a seed, :func:`sources` writes a few small networks (a plain two-layer stack; an
embedding with ``mask_zero``, the final state and a softmax head) in every format that holds
them, plus plain PyTorch state dicts (``nn.RNN`` + ``nn.Linear``) read with hints. Each mutant
changes one of them structurally (an ONNX node before, between or after the ``RNN`` nodes, an
unused initializer, an extra graph input, a constant ``initial_h`` or ``sequence_lens``,
metadata that contradicts the nodes; Keras layers inserted (``Rescaling``, ``Activation``,
``Lambda``, a ``Dense`` with an unknown activation), reordered, dropped, with units that no
longer fit their weights; state dicts with unknown, missing, misshapen or renamed keys; ``.npz``
members added, retyped or contradicted by the config) or is a truncation or bit flip.

Each mutant is read by ``rnn_ref.convert.read`` and classified:

* ``refused``: the project's own error with a message (``FileFormatError``,
  ``UnsupportedError``, ``MissingHintError``, ``LimitError``; a ``ValueError`` or
  ``TypeError``), not a library's crash inside the project's code that ``read`` wrapped;
* ``correct``: read, and the file run in its own framework (onnxruntime on the mutated graph,
  Keras or tf-keras on the mutated model; for weights-only files the framework loading the
  mutated file into the network read, strictly) computes what ``rnn_ref.forward`` of the
  parameters read computes, within float32 tolerance; and for weights-only files every array
  of the file is one of the parameters read;
* ``lenient``: read, and its framework refuses the file only for a layer config key it does
  not know (a bit flip in a key's name), a key the reader does not use either;
* ``failure``: anything else: a silent wrong answer, an array ignored, a crash.

A sample also runs ``rnn-ref convert SRC DST --verify`` and ``rnn-ref inspect``: exit 0, or 2
with exactly one line on stderr; never a traceback.

    python -m tests.fuzz --seed 1 --count 2000          (from the repository root)

prints the counts per category and every failure; it exits 1 when there is one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import traceback
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import rnn_ref  # noqa: E402
from rnn_ref import RNNConfig, convert  # noqa: E402
from rnn_ref.errors import FileFormatError, LimitError, UnsupportedError  # noqa: E402
from rnn_ref.network import Dense  # noqa: E402
from rnn_ref.params import RNNParams  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: where the project's own code lives (a bug-type exception raised there is a crash)
PROJECT_DIRS = tuple(str(ROOT / d) for d in ("rnn_ref", "backends", "conformance"))
N, T = 3, 5
#: exceptions that are bugs when the project's own code raised them (``read`` wraps them)
BUGS = (KeyError, IndexError, AttributeError, NameError, AssertionError, ZeroDivisionError)
CLEAN = (FileFormatError, UnsupportedError, convert.MissingHintError, LimitError, ValueError,
         TypeError)
#: formats whose files hold weights only (the network's shape comes from them)
WEIGHTS_ONLY = ("rnn-ref", "torch", "safetensors", "keras-weights")
#: what Keras and tf-keras say of a layer config key they do not know (a bit flip in a key:
#: the readers ignore keys they do not use, the frameworks refuse them)
UNKNOWN_KEYS = ("Unrecognized keyword arguments", "Keyword argument not understood")
Mutator = Callable[["Source", np.random.Generator], tuple[str, bytes]]


@dataclass(frozen=True)
class Source:
    """A valid file: its format, bytes, hints, the network it holds and inputs for it."""

    name: str
    fmt: str
    data: bytes
    hints: convert.Hints
    params: RNNParams
    x: np.ndarray[Any, Any]
    plain: bool = False  # a plain nn.RNN + nn.Linear state dict (read with hints)

    @property
    def ext(self) -> str:
        return ".weights.h5" if self.fmt == "keras-weights" else convert.FORMATS[self.fmt][0]


@dataclass
class Report:
    """Counts per category (``"onnx/insert-node"``) and outcome, and every failure."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    cli_runs: int = 0

    def add(self, category: str, outcome: str, detail: str = "") -> None:
        self.counts.setdefault(category, Counter())[outcome] += 1
        if outcome == "failure":
            self.failures.append(f"{category}: {detail}")

    def table(self) -> str:
        rows = [f"{'category':34} {'tried':>6} {'refused':>8} {'correct':>8} {'lenient':>8} "
                f"{'failures':>9}"]
        total: Counter[str] = Counter()
        for cat in [*sorted(self.counts), "total"]:
            c = total if cat == "total" else self.counts[cat]
            if cat != "total":
                total.update(c)
            rows.append(f"{cat:34} {sum(c.values()):6} {c['refused']:8} {c['correct']:8} "
                        f"{c['lenient']:8} {c['failure']:9}")
        rows.append(f"CLI runs (convert --verify, inspect): {self.cli_runs}")
        return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# the valid sources
# --------------------------------------------------------------------------------------------
def networks() -> dict[str, RNNParams]:
    """A plain two-layer stack (non-square, sequence output) and an embedding network with
    ``mask_zero``, the final state and a softmax head."""
    plain = rnn_ref.init(RNNConfig(3, (5, 4), num_layers=2), seed=11)
    head = rnn_ref.init(RNNConfig(4, 6, vocab_size=11, mask_zero=True, select="final",
                                  head=[Dense(3, "softmax")]), seed=12)
    return {"stack": plain, "embed": head}


def inputs(params: RNNParams, seed: int) -> np.ndarray[Any, Any]:
    """Seeded inputs: token ids with trailing padding (id 0) for an embedding, else floats."""
    rng = np.random.default_rng(seed)
    cfg = params.config
    if cfg.vocab_size is None:
        return rng.standard_normal((N, T, cfg.input_size)).astype(np.float32)
    ids = rng.integers(1, cfg.vocab_size, (N, T))
    ids[1, 3:] = 0
    ids[2, 1:] = 0
    return ids.astype(np.int64)


def _format_holds(fmt: str, params: RNNParams) -> bool:
    if not convert.readable(fmt) or convert.convertible(params)[fmt] is not None:
        return False
    return not (fmt == "keras-weights" and params.config.vocab_size is not None)


def _plain_state_dict(params: RNNParams) -> dict[str, np.ndarray[Any, Any]]:
    """``nn.RNN`` (batch first) + ``nn.Linear`` keys of a stack: ``rnn.*``, ``fc.*``."""
    sd: dict[str, np.ndarray[Any, Any]] = {}
    for li, layer in enumerate(params.layers):
        c = layer[0]
        sd.update({f"rnn.weight_ih_l{li}": c.w_x.T.copy(), f"rnn.weight_hh_l{li}": c.w_h.T.copy(),
                   f"rnn.bias_ih_l{li}": c.b_x, f"rnn.bias_hh_l{li}": c.b_h})
    rng = np.random.default_rng(5)
    sd["fc.weight"] = rng.standard_normal((2, params.config.hidden_sizes[-1])).astype(np.float32)
    sd["fc.bias"] = rng.standard_normal(2).astype(np.float32)
    return sd


def _plain_sources(folder: Path, params: RNNParams, seed: int) -> list[Source]:
    cfg = params.config
    head = RNNConfig(cfg.input_size, cfg.hidden_sizes, select="final", head=[Dense(2)])
    sd = _plain_state_dict(params)
    with_head = RNNParams.from_arrays(head, {
        **dict(params.named_arrays()), "head.0.w": sd["fc.weight"].T, "head.0.b": sd["fc.bias"]})
    hints = convert.Hints(activation="tanh", select="final", head_activation="linear")
    out = []
    for fmt in ("torch", "safetensors"):
        path = folder / f"plain{convert.FORMATS[fmt][0]}"
        _save_state_dict(sd, path, fmt)
        out.append(Source("plain", fmt, path.read_bytes(), hints, with_head,
                          inputs(with_head, seed), plain=True))
    return out


def sources(folder: Path, seed: int = 0, formats: frozenset[str] | None = None
            ) -> list[Source]:
    """Every readable format's file (of ``formats``, default all) of every network it holds,
    read back once to be sure."""
    out = []
    for name, params in networks().items():
        for fmt in convert.FORMATS:
            if not _format_holds(fmt, params) or (formats is not None and fmt not in formats):
                continue
            src = Source(name, fmt, b"", convert.hints_for(params, fmt), params,
                         inputs(params, seed))
            path = convert.write(params, folder / f"{name}-{fmt}{src.ext}", fmt, force=True)
            back = convert.read(path, fmt, src.hints)
            out.append(Source(name, fmt, path.read_bytes(), src.hints, back, src.x))
    if formats is not None and not {"torch", "safetensors"} & formats:
        return out
    plain = _plain_sources(folder, networks()["stack"], seed)
    return out + [s for s in plain if formats is None or s.fmt in formats]


# --------------------------------------------------------------------------------------------
# helpers that go through a temporary file
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _scratch(data: bytes, suffix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="rnn-ref-fuzz-") as d:
        path = Path(d) / f"m{suffix}"
        path.write_bytes(data)
        yield path


def _save_state_dict(sd: dict[str, np.ndarray[Any, Any]], path: Path, fmt: str) -> None:
    import torch

    tensors = {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(path))
    else:
        torch.save(tensors, str(path))


def _load_state_dict(data: bytes, fmt: str) -> dict[str, np.ndarray[Any, Any]]:
    if fmt == "safetensors":
        from safetensors.numpy import load

        return dict(load(data))
    import torch

    sd = torch.load(io.BytesIO(data), weights_only=True)
    return {k: v.numpy() for k, v in sd.items()}


def _state_dict_bytes(sd: dict[str, np.ndarray[Any, Any]], fmt: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="rnn-ref-fuzz-") as d:
        path = Path(d) / f"m{convert.FORMATS[fmt][0]}"
        _save_state_dict(sd, path, fmt)
        return path.read_bytes()


# --------------------------------------------------------------------------------------------
# mutations of any file
# --------------------------------------------------------------------------------------------
def truncate(src: Source, rng: np.random.Generator) -> tuple[str, bytes]:
    k = int(rng.integers(0, len(src.data)))
    return "truncate", src.data[:k]


def flip_bits(src: Source, rng: np.random.Generator) -> tuple[str, bytes]:
    data = bytearray(src.data)
    for _ in range(int(rng.integers(1, 4))):
        data[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
    return "bit-flip", bytes(data)


# --------------------------------------------------------------------------------------------
# .npz
# --------------------------------------------------------------------------------------------
def _npz_members(data: bytes) -> dict[str, np.ndarray[Any, Any]]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _npz_bytes(members: dict[str, np.ndarray[Any, Any]]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **members)  # type: ignore[arg-type]
    return buf.getvalue()


def _weights(members: dict[str, np.ndarray[Any, Any]]) -> list[str]:
    return sorted(k for k, v in members.items() if v.dtype.kind == "f")


def npz_structure(src: Source, rng: np.random.Generator) -> tuple[str, bytes]:
    m = _npz_members(src.data)
    names = _weights(m)
    what = str(rng.choice(["extra-member", "retyped-member", "dropped-member",
                           "reshaped-member", "config-contradicts"]))
    key = names[int(rng.integers(len(names)))]
    if what == "extra-member":
        m[str(rng.choice(["extra", "layers.9.0.w_x", "head.0.w", "embedding"]))] = \
            rng.standard_normal((3, 2)).astype(np.float32)
    elif what == "retyped-member":
        m[key] = m[key].astype(str(rng.choice(["float64", "float16", "int32", "complex64"])))
    elif what == "dropped-member":
        del m[key]
    elif what == "reshaped-member":
        m[key] = np.concatenate([m[key], m[key][:1]])
    else:
        cfg = json.loads(str(m["__config__"]))
        field_, value = _contradiction(cfg, rng)
        cfg[field_] = value
        m["__config__"] = np.array(json.dumps(cfg))
    return f"npz/{what}", _npz_bytes(m)


def _contradiction(cfg: dict[str, Any], rng: np.random.Generator) -> tuple[str, Any]:
    """A config field and a value that the arrays do not fit (or that changes the meaning)."""
    choices: list[tuple[str, Any]] = [
        ("hidden_size", 7), ("input_size", cfg["input_size"] + 1), ("num_layers", 3),
        ("activation", "relu"), ("direction", "bidirectional"), ("bias", False),
        ("select", "last_step"), ("vocab_size", None), ("head", [])]
    return choices[int(rng.integers(len(choices)))]


# --------------------------------------------------------------------------------------------
# state dicts (.pt, .pth, .safetensors)
# --------------------------------------------------------------------------------------------
def _unknown_key(sd: dict[str, Any], rng: np.random.Generator) -> str:
    prefix = next(iter(k for k in sd if "weight_ih" in k)).split("weight_ih")[0]
    return str(rng.choice(["extra.weight", f"{prefix}weight_ih_l7", f"{prefix}bias_ih_l0_reverse",
                           "fc2.weight", "steps.9.weight", "embedding.weight", "rnn.lstm.weight"]))


def state_dict_structure(src: Source, rng: np.random.Generator) -> tuple[str, bytes]:
    sd = _load_state_dict(src.data, src.fmt)
    keys = sorted(k for k in sd if k != "rnn_ref_config")
    key = keys[int(rng.integers(len(keys)))]
    what = str(rng.choice(["unknown-key", "dropped-key", "reshaped", "transposed",
                           "renamed-one", "renamed-module", "retyped", "config-contradicts"]))
    if what == "unknown-key":
        sd[_unknown_key(sd, rng)] = rng.standard_normal((6, 3)).astype(np.float32)
    elif what == "dropped-key":
        del sd[key]
    elif what == "reshaped":
        sd[key] = np.concatenate([sd[key], sd[key][:1]])
    elif what == "transposed":
        sd[key] = np.ascontiguousarray(sd[key].T if sd[key].ndim == 2 else sd[key][::-1])
    elif what == "renamed-one":
        sd[key.replace(".", "_x.", 1) if "." in key else "x." + key] = sd.pop(key)
    elif what == "renamed-module":
        head = key.split(".")[0]
        sd = {("body" + k[len(head):] if k.startswith(head + ".") else k): v
              for k, v in sd.items()}
    elif what == "retyped":
        sd[key] = sd[key].astype(str(rng.choice(["float64", "float16", "int32"])))
    elif "rnn_ref_config" in sd:
        cfg = json.loads(bytes(sd["rnn_ref_config"]).decode())
        field_, value = _contradiction(cfg, rng)
        cfg[field_] = value
        sd["rnn_ref_config"] = np.frombuffer(json.dumps(cfg).encode(), np.uint8).copy()
    else:
        sd["rnn_ref_config"] = np.frombuffer(b'{"input_size": 3}', np.uint8).copy()
    return f"state-dict/{what}", _state_dict_bytes(sd, src.fmt)


# --------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------
def _fresh(m: Any, base: str) -> str:
    used = {t for n in m.graph.node for t in (*n.input, *n.output)} | {
        t.name for t in m.graph.initializer} | {i.name for i in m.graph.input}
    k = 0
    while f"{base}_{k}" in used:
        k += 1
    return f"{base}_{k}"


def _extra_node(m: Any, src_name: str, rng: np.random.Generator) -> list[Any]:
    """Nodes computing a new tensor from ``src_name``: a Mul, Add, Identity, Relu, Neg or a
    custom-domain op; constants as new initializers."""
    from onnx import helper, numpy_helper

    op = str(rng.choice(["Mul", "Add", "Identity", "Relu", "Neg", "com.fuzz:Scale"]))
    out = _fresh(m, "fuzz_out")
    if op in ("Mul", "Add"):
        const = _fresh(m, "fuzz_const")
        m.graph.initializer.append(numpy_helper.from_array(np.array(2.0, np.float32), const))
        return [helper.make_node(op, [src_name, const], [out])]
    if op.startswith("com."):
        if not any(o.domain == "com.fuzz" for o in m.opset_import):
            m.opset_import.append(helper.make_opsetid("com.fuzz", 1))
        return [helper.make_node("Scale", [src_name], [out], domain="com.fuzz")]
    return [helper.make_node(op, [src_name], [out])]


def _edges(m: Any) -> list[tuple[int, str]]:
    """(index of the producing node, tensor) for every node output that a later node reads
    or that is a graph output; index -1 for graph inputs."""
    inits = {t.name for t in m.graph.initializer}
    edges = [(-1, i.name) for i in m.graph.input if i.name not in inits]
    return edges + [(i, o) for i, n in enumerate(m.graph.node) for o in n.output if o]


def onnx_insert_node(src: Source, rng: np.random.Generator) -> tuple[str, bytes]:
    """A node on a random edge: before, between or after the RNN nodes (its consumers and a
    graph output read the new tensor instead)."""
    import onnx

    m = onnx.load_from_string(src.data)
    edges = _edges(m)
    at, name = edges[int(rng.integers(len(edges)))]
    nodes = _extra_node(m, name, rng)
    new = nodes[-1].output[0]
    for n in m.graph.node:
        for k, i in enumerate(n.input):
            if i == name:
                n.input[k] = new
    for o in m.graph.output:
        if o.name == name:  # a graph output keeps its name: the new node produces it
            nodes[-1].output[0] = name
            _rename_producer(m, at, name, new, nodes)
    for j, n in enumerate(nodes):
        m.graph.node.insert(at + 1 + j, n)
    where = "input" if at < 0 else m.graph.node[at].op_type
    return f"onnx/insert-node:{nodes[-1].op_type}-after-{where}", m.SerializeToString()


def _rename_producer(m: Any, at: int, name: str, new: str, nodes: list[Any]) -> None:
    """The graph output ``name`` is now made by ``nodes``: its old producer writes ``new``."""
    nodes[0].input[0] = new
    if at < 0:
        for i in m.graph.input:
            if i.name == name:
                i.name = new
        return
    producer = m.graph.node[at]
    for k, o in enumerate(producer.output):
        if o == name:
            producer.output[k] = new


def _rnn_node(m: Any) -> Any:
    return next(n for n in m.graph.node if n.op_type == "RNN")


def _hidden(m: Any, node: Any) -> int:
    return int(next(a.i for a in node.attribute if a.name == "hidden_size"))


def onnx_constant_input(src: Source, rng: np.random.Generator) -> tuple[str, bytes]:
    """A constant ``initial_h`` (zeros or not) or ``sequence_lens`` on the first RNN node."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load_from_string(src.data)
    node = _rnn_node(m)
    while len(node.input) < 6:
        node.input.append("")
    what = str(rng.choice(["initial_h", "initial_h-zeros", "sequence_lens"]))
    name = _fresh(m, "fuzz_" + what.split("-")[0])
    if what == "sequence_lens":
        value = rng.integers(1, T + 1, N).astype(np.int32)
        node.input[4] = name
    else:
        value = rng.standard_normal((1, N, _hidden(m, node))).astype(np.float32)
        value *= what == "initial_h"
        node.input[5] = name
    m.graph.initializer.append(numpy_helper.from_array(value, name))
    return f"onnx/constant-{what}", m.SerializeToString()


def onnx_extra_input(src: Source, rng: np.random.Generator) -> tuple[str, bytes]:
    """An unused initializer, an unused graph input, or a graph input added to ``x``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.load_from_string(src.data)
    what = str(rng.choice(["unused-initializer", "unused-input", "used-input"]))
    name = _fresh(m, "fuzz_extra")
    if what == "unused-initializer":
        m.graph.initializer.append(numpy_helper.from_array(
            rng.standard_normal(4).astype(np.float32), name))
        return f"onnx/{what}", m.SerializeToString()
    x = m.graph.input[0]
    elem = x.type.tensor_type.elem_type
    shape = [N, T] if elem != TensorProto.FLOAT else [N, T, src.params.config.input_size]
    m.graph.input.append(helper.make_tensor_value_info(name, elem, shape))
    if what == "used-input":
        add = _fresh(m, "fuzz_sum")
        for n in m.graph.node:
            n.input[:] = [add if i == x.name else i for i in n.input]
        m.graph.node.insert(0, helper.make_node("Add", [x.name, name], [add]))
    return f"onnx/{what}", m.SerializeToString()


def onnx_metadata(src: Source, rng: np.random.Generator) -> tuple[str, bytes]:
    """Metadata that contradicts the nodes, or an RNN attribute that contradicts the
    metadata (activations, hidden_size), or the metadata removed."""
    import onnx
    from onnx import helper

    m = onnx.load_from_string(src.data)
    what = str(rng.choice(["config-contradicts", "activation-attribute", "no-metadata",
                           "time-major"]))
    props = {p.key: p.value for p in m.metadata_props}
    if what == "config-contradicts" and "rnn_ref.config" in props:
        cfg = json.loads(props["rnn_ref.config"])
        field_, value = _contradiction(cfg, rng)
        cfg[field_] = value
        props["rnn_ref.config"] = json.dumps(cfg)
    elif what == "activation-attribute":
        node = _rnn_node(m)
        kept = [a for a in node.attribute if a.name != "activations"]
        del node.attribute[:]
        node.attribute.extend([*kept, helper.make_attribute("activations", ["Relu"])])
    elif what == "time-major":
        props["rnn_ref.time_major"] = "True"
    else:
        props = {}
    del m.metadata_props[:]
    helper.set_model_props(m, props)
    return f"onnx/{what}", m.SerializeToString()


# --------------------------------------------------------------------------------------------
# Keras: the model config of a .keras archive or of a legacy .h5 (Keras 3 or tf-keras)
# --------------------------------------------------------------------------------------------
def _layer(cls: str, modern: bool, rng: np.random.Generator, **config: Any) -> dict[str, Any]:
    name = f"fuzz_{cls.lower()}_{int(rng.integers(1000))}"
    out: dict[str, Any] = {"class_name": cls, "config": {"name": name, "trainable": True,
                                                          "dtype": "float32", **config}}
    if modern:
        out.update(module="keras.layers", registered_name=None)
    return out


def _extra_layer(rng: np.random.Generator, modern: bool) -> tuple[str, dict[str, Any]]:
    """A layer to insert: ones that compute something, a Lambda, an identity at inference."""
    kind = str(rng.choice(["Rescaling", "Activation", "Lambda", "Dense-unknown",
                           "Dense-unweighted", "Dropout", "GaussianNoise", "Softmax"]))
    if kind == "Rescaling":
        return kind, _layer(kind, modern, rng, scale=2.0, offset=0.5)
    if kind == "Activation":
        return kind, _layer(kind, modern, rng, activation=str(rng.choice(["relu", "sigmoid"])))
    if kind == "Lambda":  # code that does not decode: a reader must refuse it by name
        fn = {"class_name": "__lambda__", "config": {"code": "bm90IGNvZGU=", "defaults": None,
                                                     "closure": None}}
        return kind, _layer(kind, modern, rng, function=fn, output_shape=None, arguments={})
    if kind.startswith("Dense"):
        act = "fuzz_unknown" if kind == "Dense-unknown" else "linear"
        return kind, _layer("Dense", modern, rng, units=3, activation=act, use_bias=True)
    if kind == "Softmax":
        return kind, _layer(kind, modern, rng, axis=-1)
    return kind, _layer(kind, modern, rng, **({"rate": 0.5} if kind == "Dropout"
                                               else {"stddev": 0.5}))


def _chain(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    layers: list[dict[str, Any]] = cfg["config"]["layers"]
    return layers


def _insert(cfg: dict[str, Any], at: int, layer: dict[str, Any]) -> None:
    """Insert ``layer`` before position ``at`` of a Sequential or a chain-shaped functional
    model (rewiring its inbound nodes and the model's outputs)."""
    layers = _chain(cfg)
    if "inbound_nodes" in layers[0]:
        prev, new = _name_of(layers[at - 1]), layer["config"]["name"]
        layer["name"] = new
        layer["inbound_nodes"] = layers[at]["inbound_nodes"] if at < len(layers) else \
            json.loads(json.dumps(layers[at - 1]["inbound_nodes"]).replace(
                json.dumps(_name_of(layers[at - 2])), json.dumps(prev)))
        if at < len(layers):
            layers[at]["inbound_nodes"] = json.loads(json.dumps(
                layers[at]["inbound_nodes"]).replace(json.dumps(prev), json.dumps(new)))
        else:
            outs = json.dumps(cfg["config"]["output_layers"]).replace(json.dumps(prev),
                                                                       json.dumps(new))
            cfg["config"]["output_layers"] = json.loads(outs)
    layers.insert(at, layer)


def _name_of(layer: dict[str, Any]) -> str:
    return str(layer.get("name") or layer["config"]["name"])


def _change_field(layers: list[dict[str, Any]], rng: np.random.Generator) -> str:
    """Change one field of one layer: units, activation, return_sequences, go_backwards,
    use_bias, mask_zero."""
    fields = [(i, f) for i, la in enumerate(layers) for f in la["config"]
              if f in ("units", "activation", "return_sequences", "go_backwards", "use_bias",
                       "mask_zero", "output_dim")]
    i, f = fields[int(rng.integers(len(fields)))]
    c = layers[i]["config"]
    if f in ("units", "output_dim"):
        c[f] += 1
    elif f == "activation":
        c[f] = "relu" if c[f] != "relu" else "tanh"
    else:
        c[f] = not c[f]
    return f


def keras_config_mutation(cfg: dict[str, Any], rng: np.random.Generator, modern: bool) -> str:
    """Mutate a model config in place; returns what was done."""
    layers = _chain(cfg)
    what = str(rng.choice(["insert", "insert", "reorder", "drop", "field"]))
    functional = "inbound_nodes" in layers[0]
    if what == "insert":
        kind, layer = _extra_layer(rng, modern)
        _insert(cfg, int(rng.integers(1, len(layers) + 1)), layer)
        return f"insert-{kind}"
    if what == "field" or len(layers) < 3 or functional:
        return f"field-{_change_field(layers, rng)}"
    i = int(rng.integers(1, len(layers) - 1 + (what == "drop")))
    if what == "drop":
        del layers[i]
    else:
        layers[i], layers[i + 1] = layers[i + 1], layers[i]
    return what


def keras_archive_mutation(src: Source, rng: np.random.Generator) -> tuple[str, bytes]:
    """The config.json of a .keras archive changed; its weights kept."""
    with zipfile.ZipFile(io.BytesIO(src.data)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    cfg = json.loads(members["config.json"])
    what = keras_config_mutation(cfg, rng, modern=True)
    members["config.json"] = json.dumps(cfg).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    return f"keras/{what}", buf.getvalue()


def _h5_edit(src: Source, edit: Callable[[Any], str]) -> tuple[str, bytes]:
    import h5py

    with _scratch(src.data, ".h5") as path:
        with h5py.File(path, "r+") as f:
            what = edit(f)
        return what, path.read_bytes()


def legacy_h5_mutation(src: Source, rng: np.random.Generator) -> tuple[str, bytes]:
    """The model_config of a legacy .h5 changed (layers inserted, reordered, dropped, a field
    changed), or its weights (a layer group added, a dataset dropped or reshaped)."""
    def edit(f: Any) -> str:
        if rng.random() < 0.7:
            cfg = json.loads(f.attrs["model_config"])
            what = keras_config_mutation(cfg, rng, modern=False)
            f.attrs["model_config"] = json.dumps(cfg)
            return what
        return _h5_weights_mutation(f["model_weights"], rng)

    what, data = _h5_edit(src, edit)
    return f"{src.fmt}/{what}", data


def _datasets(group: Any) -> list[str]:
    import h5py

    names: list[str] = []
    group.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names


def _h5_weights_mutation(root: Any, rng: np.random.Generator) -> str:
    import h5py

    names = _datasets(root)
    name = names[int(rng.integers(len(names)))]
    what = str(rng.choice(["weights-extra-layer", "weights-dropped", "weights-reshaped"]))
    if what == "weights-extra-layer":
        g = root.create_group("fuzz_dense").create_group("fuzz_dense")
        g["kernel:0"] = rng.standard_normal((4, 2)).astype(np.float32)
        g["bias:0"] = np.zeros(2, np.float32)
        text = h5py.string_dtype()
        root["fuzz_dense"].attrs["weight_names"] = np.array(
            ["fuzz_dense/kernel:0", "fuzz_dense/bias:0"], dtype=text)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in root.attrs["layer_names"]]
        root.attrs["layer_names"] = np.array([*names, "fuzz_dense"], dtype=text)
    elif what == "weights-dropped":
        del root[name]
    else:
        value = np.asarray(root[name])
        del root[name]
        root[name] = np.concatenate([value, value[:1]])
    return what


def weights_h5_mutation(src: Source, rng: np.random.Generator) -> tuple[str, bytes]:
    """A Keras 3 .weights.h5: a layer group added, a variable dropped or reshaped, two
    layers' names swapped."""
    def edit(f: Any) -> str:
        layers = f["layers"]
        what = str(rng.choice(["extra-layer", "extra-var", "dropped-var", "reshaped-var",
                               "swapped-layers"]))
        names = [n for n in _datasets(layers)]
        name = names[int(rng.integers(len(names)))]
        if what == "extra-layer":
            v = layers.create_group("fuzz_dense").create_group("vars")
            v["0"] = rng.standard_normal((4, 2)).astype(np.float32)
            v["1"] = np.zeros(2, np.float32)
        elif what == "extra-var":
            group = layers[name.rsplit("/", 1)[0]]
            group[str(len(group))] = np.ones(3, np.float32)
        elif what == "dropped-var":
            del layers[name]
        elif what == "reshaped-var":
            value = np.asarray(layers[name])
            del layers[name]
            layers[name] = np.concatenate([value, value[:1]])
        else:
            top = sorted(layers)
            if len(top) > 1:
                layers.move(top[0], "fuzz_tmp")
                layers.move(top[1], top[0])
                layers.move("fuzz_tmp", top[1])
        return what

    what, data = _h5_edit(src, edit)
    return f"keras-weights/{what}", data


# --------------------------------------------------------------------------------------------
# what the file computes in its own framework
# --------------------------------------------------------------------------------------------
def _onnx_run(path: Path, src: Source) -> np.ndarray[Any, Any]:
    """onnxruntime on the mutated graph; an extra graph input gets seeded values."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    m = onnx.load(str(path))
    inits = {t.name for t in m.graph.initializer}
    rng = np.random.default_rng(99)
    feeds = {}
    for k, i in enumerate(x for x in m.graph.input if x.name not in inits):
        dtype = helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
        feeds[i.name] = src.x.astype(dtype) if k == 0 else (
            rng.standard_normal(src.x.shape[:2] + src.x.shape[2:]) + 1).astype(dtype)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(path.read_bytes(), options,
                                   providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feeds)[0])


def _keras_run(path: Path, src: Source) -> np.ndarray[Any, Any]:
    import keras

    model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    return np.asarray(keras.ops.convert_to_numpy(model(src.x)))


def _keras2_run(path: Path, src: Source) -> np.ndarray[Any, Any]:
    from rnn_ref.backends.keras2.convert import import_tf_keras

    model = import_tf_keras().models.load_model(str(path), compile=False)
    return np.asarray(model(src.x))


def _plain_torch_run(path: Path, src: Source) -> np.ndarray[Any, Any] | None:
    """The plain state dict loaded (strictly) into its own nn.RNN + nn.Linear: the final
    state's readout; None when it no longer fits them (renamed or reshaped: then only the
    accounting of its arrays checks the reading)."""
    import torch
    from torch import nn

    cfg = src.params.config
    rnn = nn.RNN(cfg.input_size, cfg.hidden_sizes[0], num_layers=cfg.num_layers,
                 batch_first=True)
    fc = nn.Linear(cfg.hidden_sizes[-1], 2)
    sd = {k: torch.from_numpy(v) for k, v in _load_state_dict(path.read_bytes(),
                                                               src.fmt).items()}
    try:
        nn.ModuleDict({"rnn": rnn, "fc": fc}).load_state_dict(sd)
    except RuntimeError:
        return None
    with torch.no_grad():
        _, h_n = rnn(torch.from_numpy(src.x))
        return np.asarray(fc(h_n[-1]).numpy())


def _weights_run(path: Path, src: Source, params: RNNParams) -> np.ndarray[Any, Any]:
    """A weights-only file loaded (strictly) by its framework into the network read."""
    module = convert.framework_module(src.fmt)
    native = module.load_native(path, src.fmt, params)
    return np.asarray(module.run_native(native.model, src.x))


def native_result(path: Path, src: Source, params: RNNParams) -> np.ndarray[Any, Any] | None:
    """What the file computes in its own framework on ``src.x``; None for a ``.npz``."""
    if src.fmt == "onnx":
        return _onnx_run(path, src)
    if src.fmt in ("keras", "keras-h5"):
        return _keras_run(path, src)
    if src.fmt == "keras2-h5":
        return _keras2_run(path, src)
    if src.plain:
        return _plain_torch_run(path, src)
    if src.fmt == "rnn-ref":
        return None
    return _weights_run(path, src, params)


# --------------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------------
def _project_crash(exc: BaseException) -> BaseException | None:
    """A bug-type exception raised in the project's own code somewhere in ``exc``'s chain
    (``read`` turns a library's complaint into a ``FileFormatError``; a ``KeyError`` of our
    own reader is a crash all the same)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, BUGS) and seen.__traceback__ is not None:
            last = traceback.extract_tb(seen.__traceback__)[-1].filename
            if last.startswith(PROJECT_DIRS):
                return seen
        seen = seen.__context__
    return None


def _unaccounted(path: Path, src: Source, params: RNNParams) -> list[str]:
    """The file's arrays that are none of the parameters read (weights-only formats)."""
    if src.fmt not in ("rnn-ref", "torch", "safetensors", "keras-weights"):
        return []
    module = convert.framework_module(src.fmt)
    arrays = {name: a for name, a in params.named_arrays()}
    held = [a for a in arrays.values()] + [a.T for a in arrays.values() if a.ndim == 2]
    if src.fmt == "rnn-ref":
        got = _npz_members(path.read_bytes())
    elif src.fmt == "keras-weights":
        import h5py

        with h5py.File(path, "r") as f:
            got = {n: np.asarray(f[n]) for n in _datasets(f)}
    else:
        got = _load_state_dict(path.read_bytes(), src.fmt)
    del module
    return [name for name, a in got.items()
            if a.dtype.kind == "f" and not any(
                h.shape == a.shape and np.array_equal(h, a) for h in held)]


def check_read(path: Path, src: Source, params: RNNParams) -> str:
    """Empty when the parameters read compute what the file computes in its own framework
    (and account for every array of a weights-only file), else what differs. A weights-only
    file is run on inputs of the width it holds."""
    try:
        lost = _unaccounted(path, src, params)
    except Exception as exc:  # e.g. torch.load (no mmap) checks the zip's CRC-32; mmap does not
        return (f"read, but its own framework cannot load it: {type(exc).__name__}: "
                f"{str(exc)[:200]}")
    if lost:
        return f"read, but arrays of the file are none of the parameters: {lost}"
    if src.fmt in WEIGHTS_ONLY:
        src = replace(src, x=inputs(params, 0))
    try:
        want = native_result(path, src, params)
    except Exception as exc:  # its own framework refuses the file that was read
        if any(m in str(exc) for m in UNKNOWN_KEYS):
            return "lenient"
        return (f"read, but its own framework cannot run it: {type(exc).__name__}: "
                f"{str(exc)[:200]}")
    if want is None:
        return ""
    got = rnn_ref.forward(params, src.x).result
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-5):
        diff = (float(np.max(np.abs(got - want))) if got.shape == want.shape
                else f"shapes {got.shape} vs {want.shape}")
        return f"silent wrong answer: rnn_ref.forward differs from the file's framework ({diff})"
    return ""


def classify(path: Path, src: Source) -> tuple[str, str]:
    """``("refused" | "correct" | "failure", detail)`` for reading ``path``."""
    try:
        params = convert.read(path, src.fmt, src.hints)
    except CLEAN as exc:
        crash = _project_crash(exc)
        if crash is not None:
            return "failure", f"crash in the reader: {type(crash).__name__}: {crash} ({exc})"
        if not str(exc).strip():
            return "failure", f"{type(exc).__name__} without a message"
        return "refused", str(exc)
    except Exception as exc:
        return "failure", f"crash: {type(exc).__name__}: {exc}"
    problem = check_read(path, src, params)
    if problem == "lenient":
        return "lenient", "read; its framework refuses a config key nothing reads"
    return ("failure", problem) if problem else ("correct", "")


# --------------------------------------------------------------------------------------------
# the command line, on a sample
# --------------------------------------------------------------------------------------------
def _hint_args(hints: convert.Hints) -> list[str]:
    out = []
    for name in convert.HINT_NAMES:
        value = getattr(hints, name)
        if value is not None:
            out += [f"--{name.replace('_', '-')}", value]
    return out


def check_cli(path: Path, src: Source) -> str:
    """Empty when ``convert --verify`` and ``inspect`` keep the contract: exit 0, or 2 (1: a
    verification that failed) with exactly one line on stderr and no traceback; else what
    broke it."""
    from rnn_ref import cli

    dst = path.parent / "out.npz"
    for argv in (["convert", str(path), str(dst), "--verify", *_hint_args(src.hints)],
                 ["inspect", str(path)]):
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = cli.main(argv)
        except BaseException as exc:  # noqa: BLE001  (SystemExit too: the contract is exit 2)
            return f"`rnn-ref {argv[0]}` raised {type(exc).__name__}: {exc}"
        lines = err.getvalue().strip().splitlines()
        failed = code == 1 and "verification failed" in err.getvalue()
        if code not in (0, 2) and not failed or "Traceback" in err.getvalue() or (
                code != 0 and len(lines) != 1):
            return f"`rnn-ref {argv[0]}` exit {code}, stderr: {err.getvalue()[:500]!r}"
        if argv[0] == "convert" and dst.exists() != (code == 0):
            return f"`rnn-ref convert` exit {code} but the output exists: {dst.exists()}"
    return ""


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------
STRUCTURAL: dict[str, list[Mutator]] = {
    "rnn-ref": [npz_structure],
    "torch": [state_dict_structure],
    "safetensors": [state_dict_structure],
    "onnx": [onnx_insert_node, onnx_insert_node, onnx_constant_input, onnx_extra_input,
             onnx_metadata],
    "keras": [keras_archive_mutation],
    "keras-h5": [legacy_h5_mutation],
    "keras2-h5": [legacy_h5_mutation],
    "keras-weights": [weights_h5_mutation],
}


def mutants(srcs: list[Source], seed: int, count: int) -> Iterator[tuple[Source, str, bytes]]:
    """``count`` mutants, each from its own generator (``(seed, i)``), sources in turn;
    three in four structural, the others truncations and bit flips."""
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        src = srcs[i % len(srcs)]
        pool = STRUCTURAL[src.fmt]
        pick: Mutator = (pool[int(rng.integers(len(pool)))] if rng.random() < 0.75
                         else (truncate if rng.random() < 0.5 else flip_bits))
        what, data = pick(src, rng)
        if "/" not in what:
            what = f"{src.fmt}/{what}"
        yield src, what, data


def run(seed: int, count: int, *, formats: frozenset[str] | None = None, cli_every: int = 5,
        log: Callable[[str], None] | None = None, verbose: bool = False) -> Report:
    """Fuzz ``count`` mutants of the sources in ``formats`` (default: all); the command line
    on every ``cli_every``-th (0: never)."""
    report = Report()
    with tempfile.TemporaryDirectory(prefix="rnn-ref-fuzz-") as folder:
        srcs = sources(Path(folder), seed, formats)
        for i, (src, what, data) in enumerate(mutants(srcs, seed, count)):
            with _scratch(data, src.ext) as path:
                outcome, detail = classify(path, src)
                if cli_every and i % cli_every == 0:
                    report.cli_runs += 1
                    problem = check_cli(path, src)
                    if problem:
                        outcome, detail = "failure", problem
            report.add(what.split(":")[0], outcome, f"[{src.name} #{i}] {detail}")
            if log is not None and (outcome == "failure" or verbose):
                log(f"{outcome.upper()} {what} [{src.name} seed {seed} #{i}]: {detail}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--formats", default="", help="comma-separated (default: all)")
    parser.add_argument("--cli-every", type=int, default=5,
                        help="run the command line on every Nth mutant (0: never)")
    parser.add_argument("--verbose", action="store_true", help="print every outcome")
    args = parser.parse_args(argv)
    formats = frozenset(args.formats.split(",")) if args.formats else None
    report = run(args.seed, args.count, formats=formats, cli_every=args.cli_every,
                 log=lambda line: print(line, file=sys.stderr, flush=True),
                 verbose=args.verbose)
    print(report.table())
    return 1 if report.failures else 0


if __name__ == "__main__":
    import torch  # noqa: F401  (before TensorFlow, as the tests do)

    sys.exit(main())
