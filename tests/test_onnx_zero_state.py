"""The zero initial state as torch.onnx.export(dynamo=False) computes it (issue 21, "A
regression"): a bare ``nn.RNN`` called without ``h0`` (``Expand`` of a zero constant to the
input's batch, or ``ConstantOfShape``) and the tutorial classifier's
``torch.zeros(L, x.size(0), M).to(x.device)`` (``Shape``, ``Gather``, ``Unsqueeze``,
``Concat``, ``ConstantOfShape``, ``Cast``) are the spec's default zero state and are read;
a computed state that is not zeros is refused by name, as is shape arithmetic nothing uses.

Every model is built as users write it, with seeded random weights (D != M != N != T),
exported at the pinned torch, and checked on fresh inputs (a batch size other than the
export's, where the export allows it) against the torch module, onnxruntime running the file,
``rnn_ref.oracle`` and the parameters ``rnn_ref.from_onnx`` reads.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rnn_ref
from rnn_ref import UnsupportedError, cli
from tests.conftest import need

onnx = need("onnx")
ort = need("onnxruntime")
torch = need("torch")
from onnx import helper, numpy_helper  # noqa: E402

nn = torch.nn
ATOL = 1e-5  # float32 runs (torch, onnxruntime) against the float64 reference
T_EXPORT, N_EXPORT = 6, 2
T_RUN, N_RUN = 9, 4  # fresh inputs: another length and another batch size


class Tutorial(nn.Module):
    """The most copied torch classifier, as written (``.to(x.device)`` included)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, num_classes: int,
                 nonlinearity: str = "tanh") -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.rnn = nn.RNN(input_size, hidden_size, num_layers, batch_first=True,
                          nonlinearity=nonlinearity)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: Any) -> Any:
        """``x`` ``(N, T, D)`` -> logits ``(N, K)`` from the last step."""
        h0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size).to(x.device)
        out, _ = self.rnn(x, h0)
        return self.fc(out[:, -1, :])


#: name -> (module factory, batch_first); sizes D, M, L, K all different from N and T
MODELS: dict[str, tuple[Any, bool]] = {
    "bare_bi_2layer": (lambda: nn.RNN(3, 5, num_layers=2, bidirectional=True), False),
    "bare_bi_2layer_relu_batch_first": (
        lambda: nn.RNN(4, 7, num_layers=2, bidirectional=True, nonlinearity="relu",
                       batch_first=True), True),
    "tutorial": (lambda: Tutorial(3, 5, 2, 4), True),
    "tutorial_relu_3layer": (lambda: Tutorial(7, 8, 3, 5, "relu"), True),
}


def _module(name: str) -> Any:
    torch.manual_seed(21)
    make, _ = MODELS[name]
    return make().eval()


def _x(name: str, n: int, t: int, seed: int) -> np.ndarray[Any, Any]:
    """Float32 input in the module's layout: ``(N, T, D)`` batch first, else ``(T, N, D)``."""
    module, batch_first = _module(name), MODELS[name][1]
    d = module.input_size if isinstance(module, nn.RNN) else module.rnn.input_size
    shape = (n, t, d) if batch_first else (t, n, d)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _export(module: Any, x: np.ndarray[Any, Any], batch_first: bool, dynamic: bool) -> Any:
    """``torch.onnx.export(dynamo=False)`` as users call it; ``dynamic``: batch and time axes
    named (without them the exporter writes the zero state as an ``Expand``)."""
    axes = {"x": {0: "N", 1: "T"} if batch_first else {0: "T", 1: "N"}} if dynamic else None
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), buf, dynamo=False,
                          input_names=["x"], dynamic_axes=axes)
    return onnx.load_from_string(buf.getvalue())


def _ort(model: Any, x: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return [np.asarray(o) for o in session.run(None, {"x": x})]


def _torch(module: Any, x: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
    with torch.no_grad():
        got = module(torch.from_numpy(x))
    return [t.numpy() for t in (got if isinstance(got, tuple) else (got,))]


def _read(params: Any, x: np.ndarray[Any, Any], batch_first: bool, bare: bool
          ) -> list[np.ndarray[Any, Any]]:
    """What the parameters ``from_onnx`` read compute, in the module's result layout."""
    xb = x if batch_first else x.transpose(1, 0, 2)
    res = rnn_ref.forward(params, xb)
    if not bare:
        return [np.asarray(res.result)]
    out = res.outputs if batch_first else res.outputs.transpose(1, 0, 2)
    return [out, res.h_n]


def _biggest(got: list[np.ndarray[Any, Any]], want: list[np.ndarray[Any, Any]]) -> float:
    assert [g.shape for g in got] == [w.shape for w in want]
    return max(float(np.max(np.abs(np.asarray(g, np.float64) - w)))
               for g, w in zip(got, want, strict=True))


@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic_axes", "static"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_zero_initial_state_exports_are_read_exactly(name: str, dynamic: bool) -> None:
    module, batch_first = _module(name), MODELS[name][1]
    bare = isinstance(module, nn.RNN)
    model = _export(module, _x(name, N_EXPORT, T_EXPORT, seed=0), batch_first, dynamic)
    ops = {n.op_type for n in model.graph.node}
    # static: "ONNX Expand node" before; dynamic: ConstantOfShape, and "Cast of zeros" before
    # for the tutorial (its .to(x.device))
    assert ("ConstantOfShape" in ops and (bare or "Cast" in ops)) if dynamic \
        else "Expand" in ops
    params = rnn_ref.from_onnx(model)
    assert params.config.select == ("sequence" if bare else "last_step")
    rnn = module if bare else module.rnn
    assert params.config.activations[0][0].name == rnn.nonlinearity
    # the export's initializers are the module's weights, bit for bit
    for li in range(rnn.num_layers):
        for r, suffix in enumerate(["", "_reverse"][:1 + rnn.bidirectional]):
            w = getattr(rnn, f"weight_ih_l{li}{suffix}").detach().numpy()
            np.testing.assert_array_equal(params.layers[li][r].w_x, w.T)
    # a static export runs only at its own shape in onnxruntime; the others at a fresh one
    n, t = (N_RUN, T_RUN) if dynamic else (N_EXPORT, T_EXPORT)
    x = _x(name, n, t, seed=1)
    want = _torch(module, x)
    assert _biggest(_ort(model, x), want) < ATOL
    assert _biggest(rnn_ref.oracle(model)(x), want) < ATOL
    assert _biggest(_read(params, x, batch_first, bare), want) < ATOL
    x = _x(name, N_RUN, T_RUN, seed=2)  # what was read runs at any batch size
    assert _biggest(_read(params, x, batch_first, bare), _torch(module, x)) < ATOL


def test_cli_converts_the_expand_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    """``rnn-ref convert x.onnx y.npz`` of the export that regressed ("ONNX Expand node")."""
    module = _module("bare_bi_2layer")
    model = _export(module, _x("bare_bi_2layer", N_EXPORT, T_EXPORT, 0), False, False)
    src, dst = tmp_path / "bare.onnx", tmp_path / "bare.npz"
    onnx.save(model, str(src))
    assert cli.main(["convert", str(src), str(dst)]) == 0, capsys.readouterr()
    assert rnn_ref.load(dst) == rnn_ref.from_onnx(model)


# --------------------------------------------------------------------------------------------
# planted bugs: a computed state that is not zeros, shape arithmetic nothing uses
# --------------------------------------------------------------------------------------------
def _tutorial_export() -> tuple[Any, Any]:
    module = _module("tutorial")
    return module, _export(module, _x("tutorial", N_EXPORT, T_EXPORT, 0), True, True)


def _after(g: Any, op: str, node: Any) -> None:
    """Insert ``node`` (one input, one output) after the first ``op`` node and feed its
    output to every consumer of that node's output."""
    src = next(n for n in g.node if n.op_type == op)
    old = src.output[0]
    for n in g.node:
        for k, name in enumerate(n.input):
            if name == old:
                n.input[k] = node.output[0]
    node.input[0] = old
    g.node.insert(list(g.node).index(src) + 1, node)


def _ones_state(g: Any) -> None:
    """ConstantOfShape filled with 1.0: h0 = torch.ones(...)."""
    node = next(n for n in g.node if n.op_type == "ConstantOfShape")
    del node.attribute[:]
    node.attribute.append(helper.make_attribute(
        "value", numpy_helper.from_array(np.ones(1, np.float32))))


def _plus_one(g: Any) -> None:
    """zeros + 1 after the Cast: h0 = torch.zeros(...) + 1."""
    g.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), "one"))
    _after(g, "Cast", helper.make_node("Add", ["", "one"], ["h0_plus_one"], name="plus_one"))


def _expand_ones(g: Any) -> None:
    """The Cast replaced by an Expand of 1.0 to the state's shape: h0 = torch.ones(...)."""
    g.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), "one"))
    node = next(n for n in g.node if n.op_type == "Cast")
    shape = next(n for n in g.node if n.op_type == "ConstantOfShape").input[0]
    node.op_type, node.name = "Expand", "expand_ones"
    del node.input[:], node.attribute[:]
    node.input.extend(["one", shape])


def _unused_shape(g: Any) -> None:
    """A Shape -> Gather computation nothing takes."""
    g.initializer.append(numpy_helper.from_array(np.array(0, np.int64), "zero_i"))
    g.node.extend([helper.make_node("Shape", ["x"], ["stray_shape"], name="stray_shape"),
                   helper.make_node("Gather", ["stray_shape", "zero_i"], ["stray_n"],
                                    name="stray_gather")])


@pytest.mark.parametrize(("edit", "match", "changes_result"), [
    (_ones_state, r"ConstantOfShape node '/ConstantOfShape' \(a constant filled with \[1.0\]",
     True),
    (_plus_one, r"Add node 'plus_one' \(Add of zeros, a constant\)", True),
    (_expand_ones, r"Expand node 'expand_ones' \(Expand of a constant, a shape: the network has "
                   r"it only in computing an all-zero initial state\)", True),
    (_unused_shape, r"Gather node 'stray_gather' \(a shape that nothing uses\)", False),
])
def test_a_state_that_is_not_provably_zeros_is_refused_by_name(edit: Any, match: str,
                                                                 changes_result: bool) -> None:
    module, model = _tutorial_export()
    edit(model.graph)
    onnx.checker.check_model(model)
    x = _x("tutorial", N_RUN, T_RUN, seed=1)
    if changes_result:  # the planted state is a real bug: onnxruntime computes another answer
        assert _biggest(_ort(model, x), _torch(module, x)) > 1e-3
    with pytest.raises(UnsupportedError, match=match):
        rnn_ref.from_onnx(model)



def test_computed_shape_arguments_are_never_the_operators_default() -> None:
    """Shape arithmetic feeds only zero-producers: a Split of an RNN node's Y whose sizes are
    computed (they could be [2, 0]) is refused, not read as the default equal split."""
    params = rnn_ref.init(rnn_ref.RNNConfig(3, 5, direction="bidirectional", merge_mode="sum"),
                          seed=0)
    model = rnn_ref.to_onnx(params)
    g = model.graph
    split = next(n for n in g.node if n.op_type == "Split")
    const = next(t for t in g.initializer if t.name == split.input[1])
    g.initializer.remove(const)
    g.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "axis0"))
    at = list(g.node).index(split)
    g.node.insert(at, helper.make_node("Squeeze", ["sizes_u", "axis0"], ["sizes"]))
    g.node.insert(at, helper.make_node("Unsqueeze", [const.name, "axis0"], ["sizes_u"]))
    g.node.insert(at, helper.make_node("Constant", [], [const.name], value=const))
    split.input[1] = "sizes"
    onnx.checker.check_model(model)
    with pytest.raises(UnsupportedError, match=r"ONNX Split node '\w+' \(a split of an RNN "):
        rnn_ref.from_onnx(model)
