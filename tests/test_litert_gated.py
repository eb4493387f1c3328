"""Issue 24: GRU and LSTM layers in LiteRT, through both Keras.

Keras 3 lowers every recurrent layer to a ``WHILE`` loop; tf-keras' LSTM (tanh, sigmoid gates,
a bias, no mask) becomes the fused ``UNIDIRECTIONAL_SEQUENCE_LSTM``, its hard_sigmoid LSTM,
its GRU and SimpleRNN ``WHILE`` loops. Each path is run against the oracle (float32; sizes
N=3, T=7, D=5, M=4 and 6, K=2, non-zero biases), the op each file took is read from the
file and printed by ``rnn-ref inspect``, and the fused op's state kept between invokes (the
recorded deviation) is reproduced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import need, need_keras

import rnn_ref
from rnn_ref import Activation, RNNConfig, UnsupportedError, cli, convert

need("ai_edge_litert")
need_keras()
need("tf_keras")
from rnn_ref.backends.litert.convert import to_native  # noqa: E402  (after the skip)
from rnn_ref.backends.litert.files import describe, lowering  # noqa: E402
from rnn_ref.backends.litert.record import fused_lstm_layers  # noqa: E402

N, T, D, M, M2, K = 3, 7, 5, 4, 6, 2
HARD_SIGMOID_2 = Activation("hard_sigmoid", alpha=0.2, beta=0.5)
FUSED = "UNIDIRECTIONAL_SEQUENCE_LSTM"


def _x(n: int = N, t: int = T, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, t, D)).astype(np.float32)


def _params(seed: int = 0, **kw: Any) -> rnn_ref.RNNParams:
    """A float32 network (torch's initialisation: every bias non-zero)."""
    return rnn_ref.init(RNNConfig(D, kw.pop("hidden_size", M), **kw), seed=seed,
                        dtype=np.float32)


#: networks through tf-keras, and whether each layer is the fused op
TF_KERAS: dict[str, tuple[dict[str, Any], list[int]]] = {
    "lstm": ({"cell": "lstm", "output_size": K}, [0]),
    "lstm-hard-sigmoid": ({"cell": "lstm", "recurrent_activation": HARD_SIGMOID_2}, []),
    "bilstm-then-gru-reset-before": ({"cell": ["lstm", "gru"], "hidden_size": (M, M2),
                                      "direction": "bidirectional",
                                      "reset_after": [None, False]}, [0]),
    "gru-lstm-relu": ({"cell": ["gru", "lstm"], "hidden_size": (M, M2),
                       "activation": "relu"}, []),
    "rnn-lstm": ({"cell": ["elman", "lstm"], "hidden_size": (M, M2)}, [1]),
}


@pytest.mark.parametrize("name", TF_KERAS)
def test_tf_keras_graph_fuses_the_lstm_it_can_and_computes_the_network(name: str,
                                                                       tmp_path: Path) -> None:
    """The tflite-keras2 file of each network: the ops it took (the fused LSTM where
    ``fused_lstm_layers`` says, a ``WHILE`` loop for the others), and its outputs."""
    kw, fused = TF_KERAS[name]
    params = _params(seed=len(name), **kw)
    assert fused_lstm_layers(params.config) == fused
    path = tmp_path / "m.tflite"
    convert.write(params, path, "tflite-keras2")
    ops = describe(path)
    directions = [params.config.num_directions_of(li) for li in fused]
    assert ops.count(FUSED) == sum(directions), ops
    loops = params.config.num_layers - len(fused)
    assert ops.count("WHILE") == sum(params.config.num_directions_of(li) for li in range(
        params.config.num_layers) if li not in fused), ops
    assert (FUSED in lowering(ops)) == bool(fused) and ("WHILE" in lowering(ops)) == bool(loops)
    from rnn_ref.backends.litert.files import load_native, run_native

    x = _x(seed=1)
    got = run_native(load_native(path, "tflite-keras2", params).model, x)
    err = float(np.abs(got - rnn_ref.forward(params, x).result).max())
    assert err < 1e-6, err


def test_fused_lstm_keeps_its_state_between_invokes() -> None:
    """The recorded deviation (litert_keras2.json): the fused op's states are variable
    tensors, so a second invoke of the same interpreter starts from the first one's final
    state; ``reset_all_variables()`` before each invoke gives the network again, and a graph
    whose initial states are inputs is not affected."""
    from ai_edge_litert.interpreter import Interpreter

    params = _params(seed=3, cell="lstm")
    x = _x(1, T, seed=4)
    want = rnn_ref.forward(params, x).outputs

    def twice(model: bytes, reset: bool, feeds: int = 1) -> list[float]:
        it = Interpreter(model_content=model)
        details = it.get_input_details()
        for d in details:
            shape = x.shape if len(d["shape_signature"]) == 3 else (1, M)
            it.resize_tensor_input(d["index"], list(shape))
        it.allocate_tensors()
        errs = []
        for _ in range(2):
            if reset:
                it.reset_all_variables()
            for d in details:
                it.set_tensor(d["index"], x if len(d["shape_signature"]) == 3
                              else np.zeros((1, M), np.float32))
            it.invoke()
            out = it.get_tensor(it.get_output_details()[0]["index"])
            errs.append(float(np.abs(out - want).max()))
        return errs

    plain = to_native(params, keras=2)
    assert FUSED in lowering(_ops_of(plain))
    first, second = twice(plain, reset=False)
    assert first < 1e-6 and second > 1e-2, (first, second)
    assert max(twice(plain, reset=True)) < 1e-6
    given = to_native(params, keras=2, initial_state=True)  # inputs x, h0_0, c0_0
    assert FUSED in lowering(_ops_of(given))
    assert max(twice(given, reset=False)) < 1e-6


def _ops_of(model: bytes) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    return [d["op_name"] for d in Interpreter(model_content=model)._get_ops_details()]


def test_cli_writes_verifies_and_says_which_op(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``rnn-ref convert m.npz m.tflite --to tflite-keras2 --verify``: the wrote line says the
    fused LSTM's state persists, ``inspect`` what the recurrent layers became."""
    params = _params(seed=5, cell=["lstm", "gru"], hidden_size=(M, M2), output_size=K)
    src = tmp_path / "m.npz"
    rnn_ref.save(params, src)
    dst = tmp_path / "m.tflite"
    code = cli.main(["convert", str(src), str(dst), "--to", "tflite-keras2", "--verify"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "LSTM layer 0 became the fused UNIDIRECTIONAL_SEQUENCE_LSTM" in out, out
    assert "reset_all_variables() before every invoke" in out and "verified: ok" in out, out
    code = cli.main(["inspect", str(dst)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"recurrent layers: {FUSED} (the fused LSTM" in out and "WHILE (a loop" in out, out


def test_what_each_path_refuses_by_name() -> None:
    peep = _params(cell="lstm", peepholes=True)
    with pytest.raises(UnsupportedError, match="LiteRT .through tf-keras. cannot express "
                                               "peepholes"):
        to_native(peep, keras=2)
    keras3_hs = _params(cell="gru", recurrent_activation=Activation("hard_sigmoid", 1 / 6, 0.5))
    with pytest.raises(UnsupportedError, match="recurrent_activation hard_sigmoid"):
        to_native(keras3_hs, keras=2)
    with pytest.raises(ValueError, match="keras must be 3 .Keras 3. or 2"):
        to_native(_params(), keras=1)
    assert convert.convertible(peep)["tflite-keras2"] is not None


def test_keras3_graph_holds_keras2_hard_sigmoid() -> None:
    """Through Keras 3 a Keras 2 hard_sigmoid is rnn-ref's registered function: it converts
    (the ops of 0.2 x + 0.5, clipped) and computes the network."""
    params = _params(seed=6, activation=HARD_SIGMOID_2, output_size=K)
    x = _x(seed=7)
    got = rnn_ref.get_backend("litert").forward(params, x)
    want = rnn_ref.forward(params, x)
    np.testing.assert_allclose(got.outputs, want.outputs, atol=1e-6)
    np.testing.assert_allclose(got.y, want.y, atol=1e-6)


@pytest.mark.slow
def test_layers_of_different_directions() -> None:
    """A stack of layers of different directions, each Keras layer its own: the ``WHILE``
    graphs compute it; the unrolled one zeroes a padded reverse layer's outputs (last, after
    a forward one) at the mirror image of its padded steps (the recorded Keras deviation,
    ``unrolled-reverse-mask-zeroes-wrong-steps``), its final states right."""
    rng = np.random.default_rng(11)
    x = _x(seed=12)
    lengths = np.array([T, 3, 5])
    elman = _params(seed=13, hidden_size=(M, M2), direction=["bidirectional", "reverse"],
                    output_order="processing")
    gated = _params(seed=14, cell=["gru", "lstm"], hidden_size=(M, M2),
                    direction=["bidirectional", "forward"], output_size=K)
    for params, names in ((elman, ("litert", "litert[keras2]")), (gated, ("litert[keras2]",))):
        cfg = params.config
        h0 = [rng.standard_normal((N, m)).astype(np.float32) for m in cfg.state_sizes]
        c0 = [rng.standard_normal((N, m)).astype(np.float32) for m in cfg.cell_state_sizes]
        kw: dict[str, Any] = {"h0": h0, "lengths": lengths, "c0": c0 or None}
        want = rnn_ref.forward(params, x, **kw)
        for name in names:
            got = rnn_ref.get_backend(name).forward(params, x, **kw)
            np.testing.assert_allclose(got.outputs, want.outputs, atol=2e-6, err_msg=name)
            for g, w in zip(got.h_n, want.h_n, strict=True):
                np.testing.assert_allclose(g, w, atol=2e-6, err_msg=name)
    fwd_rev = _params(seed=15, hidden_size=(M, M2), direction=["forward", "reverse"],
                      output_order="processing")
    kw = {"h0": [rng.standard_normal((N, m)).astype(np.float32)
                 for m in fwd_rev.config.state_sizes], "lengths": lengths}
    want = rnn_ref.forward(fwd_rev, x, **kw)
    got = rnn_ref.get_backend("litert[unrolled]").forward(fwd_rev, x, **kw)
    assert float(np.abs(got.outputs - want.outputs).max()) > 0.1
    for g, w in zip(got.h_n, want.h_n, strict=True):
        np.testing.assert_allclose(g, w, atol=2e-6)


KERAS3_GATED = {
    "bilstm-h0c0-lengths": dict(cell="lstm", direction="bidirectional", output_size=K),
    "gru-reset-before-lstm-hard-sigmoid": dict(
        cell=["gru", "lstm"], hidden_size=(M, M2), reset_after=[False, None],
        recurrent_activation=[(Activation("sigmoid"),), (HARD_SIGMOID_2,)]),
}


@pytest.mark.parametrize("name", KERAS3_GATED)
def test_keras3_graph_is_a_while_loop_of_each_gated_layer(name: str, tmp_path: Path) -> None:
    """The ``litert`` backend and the ``tflite`` file (Keras 3): every GRU and LSTM a
    ``WHILE`` loop, with h0, c0 in and h_n, c_n out."""
    params = _params(seed=8, **KERAS3_GATED[name])
    cfg = params.config
    rng = np.random.default_rng(9)
    h0 = [rng.standard_normal((N, m)).astype(np.float32) * 0.5 for m in cfg.state_sizes]
    c0 = [rng.standard_normal((N, m)).astype(np.float32) * 0.5 for m in cfg.cell_state_sizes]
    lengths = np.array([T, 3, 5])
    x = _x(seed=10)
    got = rnn_ref.get_backend("litert").forward(params, x, h0=h0, c0=c0, lengths=lengths)
    want = rnn_ref.forward(params, x, h0=h0, c0=c0, lengths=lengths)
    np.testing.assert_allclose(got.outputs, want.outputs, atol=2e-6)
    for g, w in zip(got.h_n, want.h_n, strict=True):
        np.testing.assert_allclose(g, w, atol=2e-6)
    for g, w in zip(got.c_n, want.c_n, strict=True):
        np.testing.assert_allclose(g, w, atol=2e-6)
    path = tmp_path / "m.tflite"
    convert.write(params, path, "tflite")
    ops = describe(path)
    assert FUSED not in ops and ops.count("WHILE") == sum(
        cfg.num_directions_of(li) for li in range(cfg.num_layers)), ops


@pytest.mark.slow
def test_litert_keras2_backend_passes_or_refuses_the_gated_quick_cases() -> None:
    from rnn_ref.conformance import cases, runner

    backend = rnn_ref.get_backend("litert[keras2]")
    gated = [c for c in cases.quick_cases() if not c.config.is_elman]
    rep = runner.run(backend, gated)
    assert rep.ok, [(r.case, r.category, r.detail) for r in rep.results if r.status != "pass"]
    compared = {r.case for r in rep.results if r.category == "forward" and r.status == "pass"}
    assert any(c.startswith("lstm_1layer_fwd_n3") for c in compared)  # the fused op
    assert any("hardsigmoid2" in c for c in compared)  # a WHILE loop
