"""ONNX graphs of whole networks (issue 12): written, read back bit for bit, run by
onnxruntime, read from torch.onnx.export(dynamo=False) of custom modules, and refused by name
when a node, input or initializer is not part of the network (issue 14 item 1)."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import pytest

import rnn_ref
from rnn_ref import RNNConfig, UnsupportedError
from tests.conftest import need

onnx = need("onnx")
ort = need("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

N, T, D, V = 3, 7, 4, 13

CONFIGS = {
    "imdb_mask_zero": RNNConfig(D, 6, vocab_size=V, mask_zero=True, select="final",
                                head=[(1, "sigmoid")], padded_output="carry_output",
                                identities=[("dropout", 0.3, 1)]),
    "bi_then_forward_softmax": RNNConfig(D, [6, 5], direction=["bidirectional", "forward"],
                                         head=[(3, "softmax")], select="final",
                                         identities=[("spatial_dropout_1d", 0.1, 0),
                                                     ("gaussian_noise", 0.5, 1)]),
    "two_bi_final_concat_mlp": RNNConfig(D, 5, num_layers=2, direction="bidirectional",
                                         select="final", head=[(8, "relu"), (2, "linear")]),
    "last_step_log_softmax_no_bias": RNNConfig(D, 6, vocab_size=V, select="last_step",
                                               head=[(4, "log_softmax", False)]),
    "final_backward_sum": RNNConfig(D, 6, direction="bidirectional", merge_mode="sum",
                                    select="final_backward"),
    "tagger_ave_mul": RNNConfig(D, [6, 3], direction="bidirectional", merge_mode=["ave", "mul"],
                                head=[(5, "tanh"), (2, "softmax")]),
    "pair_final": RNNConfig(D, 6, direction="bidirectional", merge_mode=None, select="final"),
    "go_backwards_last_step": RNNConfig(D, 6, direction="reverse", output_order="processing",
                                        select="last_step",
                                        head=[(2, {"name": "affine", "alpha": 0.5,
                                                   "beta": 0.1})]),
    "embedding_per_step_elu": RNNConfig(D, 6, vocab_size=V, padding_idx=0,
                                        head=[(4, {"name": "elu", "alpha": 0.7})]),
}


def _x(cfg: RNNConfig, seed: int = 0) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    if cfg.vocab_size is None:
        return rng.standard_normal((N, T, D)).astype(np.float32)
    ids = rng.integers(1, V, (N, T))
    if cfg.mask_zero:
        ids[0, 4:] = 0  # right padding
        ids[2, 1:] = 0
    return ids


def _run(model: Any, feeds: dict[str, np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return [np.asarray(o) for o in session.run(None, feeds)]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_written_read_back_bit_exact_and_run_by_onnxruntime(name: str) -> None:
    cfg = CONFIGS[name]
    params = rnn_ref.init(cfg, seed=3)
    model = rnn_ref.to_onnx(params)
    back = rnn_ref.from_onnx(onnx.load_from_string(model.SerializeToString()))
    assert back == params  # the config (identities from metadata) and every array, exactly
    x = _x(cfg)
    want = rnn_ref.forward(params, x).result
    wants = want if isinstance(want, tuple) else (want,)
    got = _run(model, {"x": x})
    for g, w in zip(got, wants, strict=False):
        np.testing.assert_allclose(g, w, atol=3e-6)
    via = rnn_ref.get_backend("onnxruntime").forward(params, x)
    res = via.result if isinstance(via.result, tuple) else (via.result,)
    for g, w in zip(res, wants, strict=True):
        np.testing.assert_allclose(g, w, atol=3e-6)
    for g, w in zip(via.h_n, rnn_ref.forward(params, x).h_n, strict=True):
        np.testing.assert_allclose(g, w, atol=3e-6)


def test_mask_zero_with_holes_and_front_padding_is_computed_as_keras_does() -> None:
    params = rnn_ref.init(CONFIGS["imdb_mask_zero"], seed=1)
    ids = _x(params.config)
    backend = rnn_ref.get_backend("onnxruntime")
    ids[1, 2] = 0  # a zero before non-zero ids: Keras skips that step, and so does the graph
    ids[2, :2] = 0  # padding at the front (pad_sequences' default)
    np.testing.assert_allclose(backend.forward(params, ids).result,
                               rnn_ref.forward(params, ids).result, atol=3e-6)
    # a caller's lengths join the ids' mask: fed as zeros at the padded steps
    ids = _x(params.config)
    lengths = np.array([3, 5, 1])
    got = backend.forward(params, ids, lengths=lengths).result
    np.testing.assert_allclose(got, rnn_ref.forward(params, ids, lengths=lengths).result,
                               atol=3e-6)


def test_metadata_never_overrides_nodes() -> None:
    params = rnn_ref.init(RNNConfig(D, 5, head=[(2, "linear")], select="last_step"), seed=2)
    model = rnn_ref.to_onnx(params)
    lie = params.config.replace(activation="relu", head=[(2, "softmax")], select="final",
                                identities=[("dropout", 0.5, 1)])
    for p in model.metadata_props:
        if p.key == "rnn_ref.config":
            p.value = lie.to_json()
    back = rnn_ref.from_onnx(model)
    assert back == rnn_ref.RNNParams(params.config.replace(identities=[("dropout", 0.5, 1)]),
                                     params.layers, head=params.head)


# --------------------------------------------------------------------------------------------
# torch.onnx.export(..., dynamo=False) of custom modules
# --------------------------------------------------------------------------------------------
def _modules() -> dict[str, Any]:
    torch = need("torch")
    nn = torch.nn

    class Classifier(nn.Module):  # IMDB: embedding, out[:, -1], sigmoid
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(V, D)
            self.encoder = nn.RNN(D, 6, batch_first=True)
            self.fc = nn.Linear(6, 1)

        def forward(self, ids: Any) -> Any:
            out, _ = self.encoder(self.embed(ids))
            return torch.sigmoid(self.fc(out[:, -1]))

    class BiFinal(nn.Module):  # cat(h[-2], h[-1]) of a two-layer bidirectional stack
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.RNN(D, 5, num_layers=2, batch_first=True, bidirectional=True,
                              nonlinearity="relu", dropout=0.2)
            self.head = nn.Linear(10, 3)

        def forward(self, x: Any) -> Any:
            _, h = self.rnn(x)
            return torch.softmax(self.head(torch.cat([h[-2], h[-1]], 1)), dim=-1)

    class Mlp(nn.Module):  # h[-1] into nn.Sequential(Linear, ReLU, Linear)
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.RNN(D, 6, num_layers=2, batch_first=True)
            self.mlp = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))

        def forward(self, x: Any) -> Any:
            return self.mlp(self.rnn(x)[1][-1])

    class Tagger(nn.Module):  # per step: Linear on out, log_softmax
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.RNN(D, 6, batch_first=True, bidirectional=True)
            self.out = nn.Linear(12, 5)

        def forward(self, x: Any) -> Any:
            return torch.log_softmax(self.out(self.rnn(x)[0]), dim=-1)

    return {"classifier": Classifier, "bi_final": BiFinal, "mlp": Mlp, "tagger": Tagger}


def _export(module: Any, x: np.ndarray[Any, Any]) -> Any:
    torch = need("torch")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), buf, dynamo=False,
                          input_names=["tokens"], dynamic_axes={"tokens": {0: "N", 1: "T"}})
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("name", ["classifier", "bi_final", "mlp", "tagger"])
def test_reads_torch_exports_of_custom_modules(name: str) -> None:
    torch = need("torch")
    torch.manual_seed(5)
    module = _modules()[name]().eval()
    x = (_x(RNNConfig(D, 1, vocab_size=V)) if name == "classifier"
         else _x(RNNConfig(D, 1)))
    model = _export(module, x)
    params = rnn_ref.from_onnx(model)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(rnn_ref.forward(params, x).result, want, atol=3e-6)
    np.testing.assert_allclose(_run(model, {"tokens": x})[0], want, atol=3e-6)
    assert rnn_ref.from_onnx(rnn_ref.to_onnx(params)) == params
    # the export's initializers are the module's weights, bit for bit
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    if name == "classifier":
        np.testing.assert_array_equal(params.embedding, state["embed.weight"])
    last = [k for k in state if k.endswith(".weight") and "rnn" not in k and "encoder" not in k]
    np.testing.assert_array_equal(params.head[-1].w.T, state[last[-1]])


# --------------------------------------------------------------------------------------------
# refusals, each naming what is not part of the network
# --------------------------------------------------------------------------------------------
def _edited(params: Any, edit: Any) -> Any:
    model = rnn_ref.to_onnx(params)
    edit(model.graph)
    return model


def _mul_before_rnn(g: Any) -> None:
    first = next(n for n in g.node if n.op_type == "Transpose")
    g.initializer.append(numpy_helper.from_array(np.array(2, np.float32), "two"))
    g.node.insert(0, helper.make_node("Mul", ["x", "two"], ["x2"], name="scale"))
    first.input[0] = "x2"


def _const_initial_h(g: Any) -> None:
    rnn = next(n for n in g.node if n.op_type == "RNN")
    g.initializer.append(numpy_helper.from_array(np.full((1, 1, 5), 0.5, np.float32), "h_c"))
    rnn.input.extend(["", "h_c"])


def _const_lengths(g: Any) -> None:
    rnn = next(n for n in g.node if n.op_type == "RNN")
    g.initializer.append(numpy_helper.from_array(np.array([7, 7, 7], np.int32), "lens_c"))
    rnn.input.append("lens_c")


def _extra_input(g: Any) -> None:
    g.input.append(helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1]))


def _unused_initializer(g: Any) -> None:
    g.initializer.append(numpy_helper.from_array(np.ones(3, np.float32), "stray"))


def _softmax_axis_1(g: Any) -> None:
    next(n for n in g.node if n.op_type == "Softmax").attribute[0].i = 1


@pytest.mark.parametrize(("edit", "match"), [
    (_mul_before_rnn, "ONNX Mul node 'scale'"),
    (_const_initial_h, "initial_h is a constant"),
    (_const_lengths, "sequence_lens is a constant"),
    (_extra_input, "graph input 'scale'"),
    (_unused_initializer, "graph input or initializer 'stray'"),
    (_softmax_axis_1, "Softmax over axis 1, not the last axis"),
])
def test_refuses_what_is_not_the_network(edit: Any, match: str) -> None:
    params = rnn_ref.init(RNNConfig(D, 5, head=[(3, "softmax")]), seed=4)
    with pytest.raises(UnsupportedError, match=match):
        rnn_ref.from_onnx(_edited(params, edit))


def test_refuses_two_activations_on_one_dense_layer_and_mask_value() -> None:
    params = rnn_ref.init(RNNConfig(D, 5, head=[(3, "relu")], select="final"), seed=4)

    def relu_then_sigmoid(g: Any) -> None:
        out = next(n for n in g.node if n.op_type == "Relu")
        nxt = [n for n in g.node if out.output[0] in n.input]
        at = list(g.node).index(out) + 1
        g.node.insert(at, helper.make_node("Sigmoid", [out.output[0]], ["sig"], name="extra"))
        for n in nxt:
            n.input[list(n.input).index(out.output[0])] = "sig"

    with pytest.raises(UnsupportedError, match=r"\['relu', 'sigmoid'\]"):
        rnn_ref.from_onnx(_edited(params, relu_then_sigmoid))
    with pytest.raises(UnsupportedError, match="Masking"):
        rnn_ref.to_onnx(rnn_ref.init(RNNConfig(D, 5, mask_value=0.0), seed=0))


def test_an_unrolled_graph_is_refused_with_the_way_out() -> None:
    """torch 2.13's default exporter (dynamo=True) writes nn.RNN as per-step MatMul/Tanh with
    no RNN node (onnxscript, which it needs, is not installed here: a synthetic graph)."""
    w = numpy_helper.from_array(np.ones((D, 5), np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("Tanh", ["a"], ["y"])]
    graph = helper.make_graph(nodes, "unrolled",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, D])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])],
                              initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for read in (rnn_ref.from_onnx, rnn_ref.oracle):
        with pytest.raises(UnsupportedError, match="dynamo=False.*rnn-ref convert model.pt "
                                                   "model.onnx"):
            read(model)


@pytest.mark.parametrize("backend", ["openvino[f32]", "tract"])
def test_other_runtimes_run_the_whole_network(backend: str) -> None:
    need("openvino" if backend.startswith("openvino") else "tract")
    be = rnn_ref.get_backend(backend)
    for name in ("bi_then_forward_softmax", "embedding_per_step_elu", "imdb_mask_zero"):
        cfg = CONFIGS[name]
        params, x = rnn_ref.init(cfg, seed=3), _x(cfg)
        reason = be.supports(cfg, dtype=np.float32, lengths=False, mask=False)
        if reason is not None:  # declared, with the runtime's reason
            assert backend == "tract" and cfg.mask_zero and "sequence_lens" in reason
            continue
        np.testing.assert_allclose(be.forward(params, x).result,
                                   rnn_ref.forward(params, x).result, atol=3e-6)
