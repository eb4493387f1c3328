"""Issue 24, Keras 3: ``rnn_ref.to_keras`` writes GRU and LSTM layers (both GRU forms,
``go_backwards``, ``Bidirectional`` with every merge mode, masks, mixed stacks with
SimpleRNN, poolings, heads, ``return_state`` with an LSTM's ``c``), the Keras files hold
them, the ``keras[...]`` backends run them, and what Keras 3 cannot hold is refused by name.

Every network has seeded weights drawn N(0, 0.5) (non-zero biases, ``b_h`` included, so a
reset-after GRU's ``b_h[n]`` inside ``r *`` shows), sizes that differ (N=3 samples, T=7
steps, D=4 features, M=6 and 5 units, K=2 outputs, V=13 token ids); padded inputs pad at the
end of one sample, the start of another and in the middle of a third. Each Keras model's own
output (``model(x)``) is compared with :func:`rnn_ref.forward` of the parameters written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import need_keras
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from strategies_gated import gated_configs

import rnn_ref
from rnn_ref import Activation, GRUParams, LSTMParams, RNNConfig, UnsupportedError, convert
from rnn_ref.backends.keras.record import KERAS_ACTIVATIONS, unsupported
from rnn_ref.reference import returned

keras = need_keras()
L = keras.layers
N, T, D, M, M2, V, K = 3, 7, 4, 6, 5, 13, 2
TOL = 1e-12  # float64 against float64: the same sums in another order
TOL_F32 = 2e-5  # float32 Keras against the float64 oracle, these sizes (measured <= 3e-7)
KERAS3_HARD_SIGMOID = Activation("hard_sigmoid", alpha=1 / 6, beta=0.5)


def _params(cfg: RNNConfig, seed: int = 0) -> rnn_ref.RNNParams:
    """``cfg``'s parameters in float64, every weight N(0, 0.5) from ``seed`` (the embedding
    too), but those ``rnn_ref.init`` makes zero (the biases of a bias-free layer)."""
    rng = np.random.default_rng(seed)
    base = rnn_ref.init(cfg, seed=seed, dtype=np.float64)
    return rnn_ref.RNNParams.from_arrays(cfg, {
        name: np.where(a != 0, rng.normal(0.0, 0.5, a.shape), 0.0)
        for name, a in base.named_arrays()})


def _inputs(cfg: RNNConfig, seed: int = 0) -> np.ndarray:
    """(N, T, D) features, or (N, T) token ids; where the network has a mask source, padded
    steps at the end of sample 0, the start of sample 1, the middle of sample 2."""
    rng = np.random.default_rng(seed + 1)
    if cfg.vocab_size is not None:
        ids = rng.integers(1, cfg.vocab_size, (N, T))
        if cfg.mask_zero:
            ids[0, 5:] = 0
            ids[1, :2] = 0
            ids[2, 3] = 0
        return ids.astype(np.int32)
    x = rng.normal(0.0, 1.0, (N, T, cfg.input_size))
    if cfg.mask_value is not None:
        x[0, 5:] = cfg.mask_value
        x[1, :2] = cfg.mask_value
        x[2, 3] = cfg.mask_value
    return x


def _call(model: Any, x: np.ndarray) -> list[np.ndarray]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not support masking")
        out = model(x)
    outs = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in outs]


def _largest_error(got: list[np.ndarray], want: tuple[Any, ...]) -> float:
    assert len(got) == len(want)
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        assert g.shape == np.shape(w), (g.shape, np.shape(w))
        worst = max(worst, float(np.abs(g - w).max()))
    return worst


def _written_as_read(params: rnn_ref.RNNParams, back: rnn_ref.RNNParams) -> None:
    """``back`` (read from the Keras model of ``params``) holds ``params``' weights
    bit-exactly, but for one-bias cells (an LSTM's, a reset-before GRU's, SimpleRNN's):
    ``b_x + b_h`` read as ``b_x``, ``b_h = 0``."""
    cfg = params.config
    assert back.config.cells == cfg.cells
    for li in range(cfg.num_layers):
        assert [back.config.activations_of(li, r) for r in range(cfg.num_directions_of(li))] \
            == [cfg.activations_of(li, r) for r in range(cfg.num_directions_of(li))]
        for a, b in zip(params.layers[li], back.layers[li], strict=True):
            two = isinstance(a, GRUParams) and cfg.cell_of(li).reset_after
            if isinstance(a, (GRUParams, LSTMParams)):
                assert isinstance(b, type(a))
                for g in a.gates:
                    np.testing.assert_array_equal(b.w_x[g], a.w_x[g])
                    np.testing.assert_array_equal(b.w_h[g], a.w_h[g])
                    np.testing.assert_array_equal(b.b_x[g], a.b_x[g] if two
                                                  else a.b_x[g] + a.b_h[g])
                    np.testing.assert_array_equal(b.b_h[g], a.b_h[g] if two else 0.0)
            else:
                np.testing.assert_array_equal(b.w_x, a.w_x)
                np.testing.assert_array_equal(b.b_x, a.b_x + a.b_h)


# --------------------------------------------------------------------------------------------
# the networks
# --------------------------------------------------------------------------------------------
SIGMOID, TANH = Activation("sigmoid"), Activation("tanh")
NETWORKS: dict[str, RNNConfig] = {
    # both GRU forms, two layers of different widths; b_h[n] != 0 in both
    "gru_reset_after_stack": RNNConfig(D, (M, M2), cell="gru", output_size=K),
    "gru_reset_before": RNNConfig(D, M, cell="gru", reset_after=False),
    "gru_both_forms_bidirectional": RNNConfig(
        D, (M, M2), cell="gru", reset_after=[True, False], direction="bidirectional",
        merge_mode=("mul", "ave")),
    # LSTM: reverse (go_backwards, processing order), Bidirectional sum, no bias
    "lstm_go_backwards_head": RNNConfig(D, M, cell="lstm", direction="reverse",
                                        output_order="processing", head=[(K, "softmax")]),
    "lstm_bidirectional_sum": RNNConfig(D, M, cell="lstm", direction="bidirectional",
                                        merge_mode="sum", num_layers=2),
    "lstm_no_bias": RNNConfig(D, M, cell="lstm", bias=False, select="final"),
    # activations: Keras 3's hard_sigmoid gates, other candidates, per direction
    "activations_per_direction": RNNConfig(
        D, (M, M2), cell=["lstm", "gru"], direction="bidirectional",
        recurrent_activation=[(KERAS3_HARD_SIGMOID, SIGMOID), (SIGMOID, KERAS3_HARD_SIGMOID)],
        activation=[("softsign", "relu"), (Activation("elu", 1.0), "tanh")]),
    # mixed stack with dropouts, a Masking layer, padded steps carried (TensorFlow's own)
    "mixed_masking_carry": RNNConfig(
        D, (M, M2, M), cell=["elman", "gru", "lstm"], mask_value=0.0,
        padded_output="carry_output", identities=[("input_dropout", 0.1, 1),
                                                  ("recurrent_dropout", 0.2, 2),
                                                  ("dropout", 0.3, 2)]),
    # the IMDB tutorial: Embedding(mask_zero) -> LSTM -> Dense(sigmoid)
    "embedding_lstm_final": RNNConfig(D, M, cell="lstm", vocab_size=V, mask_zero=True,
                                      select="final", head=[(1, "sigmoid")]),
    "masking_bigru_pool": RNNConfig(D, M, cell="gru", direction="bidirectional",
                                    mask_value=0.0, select="mean_valid", head=[(K, "tanh")]),
    "lstm_max_pool": RNNConfig(D, (M, M2), cell=["gru", "lstm"], select="max_all",
                               head=[(K, "linear")]),
    "gru_last_step": RNNConfig(D, M, cell="gru", select="last_step"),
    # return_state: out, h, c of the last LSTM, a GRU's h below it; a BiLSTM's states
    "return_state_stack": RNNConfig(
        D, (M, M2), cell=["gru", "lstm"], select="final",
        returns=["result", "c_n[-1]", "h_n[-2]", "h_n[-1]"]),
    "return_state_bilstm": RNNConfig(
        D, M, cell="lstm", direction="bidirectional", vocab_size=V, mask_zero=True,
        returns=["result", "h_n[-2]", "c_n[-2]", "h_n[-1]", "c_n[-1]"]),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_to_keras_computes_the_network(name: str) -> None:
    """The Keras model of the parameters returns what the reference computes (float64:
    1e-12; float32 within float32's error), and reads back as the weights written."""
    cfg = NETWORKS[name]
    params = _params(cfg, seed=len(name))
    x = _inputs(cfg, seed=len(name))
    want = returned(cfg, rnn_ref.forward(params, x))
    model = rnn_ref.to_keras(params)
    assert _largest_error(_call(model, x), want) < TOL, name
    _written_as_read(params, rnn_ref.from_keras(model))
    model32 = rnn_ref.to_keras(params.astype(np.float32))
    assert _largest_error(_call(model32, x if cfg.vocab_size else x.astype(np.float32)),
                          want) < TOL_F32, name


def test_what_is_written() -> None:
    """The layers and switches Keras is given: GRU ``reset_after`` and its bias shapes, an
    LSTM's one bias ``b_x + b_h`` in i, f, c, o, ``go_backwards``, the activations."""
    params = _params(NETWORKS["gru_both_forms_bidirectional"])
    bi = [layer for layer in rnn_ref.to_keras(params).layers
          if isinstance(layer, L.Bidirectional)]
    assert [(type(b.forward_layer).__name__, b.forward_layer.reset_after,
             b.backward_layer.go_backwards, b.merge_mode) for b in bi] == [
        ("GRU", True, True, "mul"), ("GRU", False, True, "ave")]
    assert bi[0].forward_layer.get_weights()[2].shape == (2, 3 * M)
    assert bi[1].forward_layer.get_weights()[2].shape == (3 * M2,)
    lstm_params = _params(NETWORKS["lstm_go_backwards_head"])
    lstm = rnn_ref.to_keras(lstm_params).layers[0]
    assert type(lstm) is L.LSTM and lstm.go_backwards
    assert (lstm.cell.recurrent_activation.__name__, lstm.cell.activation.__name__) == (
        "sigmoid", "tanh")
    cell = lstm_params.layers[0][0]
    assert isinstance(cell, LSTMParams)
    kernel, _, bias = lstm.get_weights()
    for k, g in enumerate(("i", "f", "g", "o")):
        np.testing.assert_array_equal(kernel[:, k * M:(k + 1) * M], cell.w_x[g])
        np.testing.assert_array_equal(bias[k * M:(k + 1) * M], cell.b_x[g] + cell.b_h[g])
    acts = rnn_ref.to_keras(_params(NETWORKS["activations_per_direction"])).layers[0]
    assert (acts.forward_layer.cell.recurrent_activation.__name__,
            acts.backward_layer.cell.activation.__name__) == ("hard_sigmoid", "relu")


def _user_models() -> dict[str, tuple[Any, np.ndarray]]:
    """Models as tutorials write them, float64, with seeded weights."""
    F64 = "float64"
    x = np.random.default_rng(3).normal(0.0, 1.0, (N, T, D))
    x[0, 5:] = x[1, :2] = x[2, 3] = 0.0
    inp = keras.Input((None, D), dtype=F64)
    h = L.Masking(0.0, dtype=F64)(inp)
    seq, h_f, c_f, h_b, c_b = L.Bidirectional(
        L.LSTM(M, return_sequences=True, return_state=True, dtype=F64), dtype=F64)(h)
    out = L.Dense(K, dtype=F64)(L.GRU(M2, reset_after=False, dtype=F64)(seq))
    models = {
        "masked_bilstm_states_gru_dense": (keras.Model(inp, [out, h_b, c_f]), x),
        "stack_simple_gru_lstm_backwards": (keras.Sequential([
            keras.Input((None, D), dtype=F64),
            L.SimpleRNN(M, return_sequences=True, dtype=F64),
            L.GRU(M2, return_sequences=True, recurrent_activation="hard_sigmoid", dtype=F64),
            L.LSTM(M, go_backwards=True, dtype=F64), L.Dense(1, activation="sigmoid",
                                                             dtype=F64)]), x),
    }
    rng = np.random.default_rng(0)
    for model, _ in models.values():
        for layer in model.layers:
            if layer.get_weights():
                layer.set_weights([rng.normal(0.0, 0.5, w.shape) for w in layer.get_weights()])
    return models


def test_user_models_round_trip_bit_exact() -> None:
    """A model built the way users do, read and written again: the same weights bit for bit
    (Keras' one bias read as ``b_x``), the same outputs as Keras' own."""
    for name, (model, x) in _user_models().items():
        params = rnn_ref.from_keras(model)
        again = rnn_ref.to_keras(params)
        for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
        assert rnn_ref.from_keras(again) == params, name
        want = _call(model, x)
        assert _largest_error(_call(again, x), tuple(want)) == 0.0, name
        assert _largest_error(want, returned(params.config, rnn_ref.forward(params, x))) < TOL


# --------------------------------------------------------------------------------------------
# what Keras 3 cannot hold
# --------------------------------------------------------------------------------------------
KERAS2_HARD_SIGMOID = Activation("hard_sigmoid", alpha=0.2, beta=0.5)
REFUSED: dict[str, tuple[RNNConfig, tuple[str, ...]]] = {
    "peepholes": (RNNConfig(D, M, cell="lstm", peepholes=True),
                  ("peepholes (layer 0)", "no peephole weights")),
    "input_forget": (RNNConfig(D, M, cell="lstm", input_forget=True),
                     ("input_forget (layer 0)", "1 - i")),
    "proj_size": (RNNConfig(D, M, cell=["gru", "lstm"], num_layers=2, proj_size=[None, 3]),
                  ("proj_size=3 (layer 1)", "no projection")),
    "clip": (RNNConfig(D, M, cell="gru", clip=1.5), ("clip=1.5 (layer 0)", "no clip")),
    "cell_activation": (RNNConfig(D, M, cell="lstm", cell_activation="relu"),
                        ("cell_activation relu with activation tanh (layer 0, direction 0)",
                         "one activation")),
    "affine_gates": (RNNConfig(D, M, cell="gru", direction="bidirectional",
                               recurrent_activation=[(SIGMOID, Activation("affine", 0.5, 0.1))]),
                     ("recurrent_activation affine(alpha=0.5, beta=0.1) (layer 0, direction 1)",
                      "Keras has")),
    "scaled_tanh_candidate": (RNNConfig(D, M, cell="gru",
                                        activation=Activation("scaled_tanh", 1.5, 0.7)),
                              ("activation scaled_tanh(alpha=1.5, beta=0.7)", "Keras has")),
    "whole_c_n": (RNNConfig(D, M, cell="lstm", select="final", returns=["result", "c_n"]),
                  ("returns 'c_n'", "name them c_n[k]")),
}


@pytest.mark.parametrize("name", REFUSED)
def test_what_keras_3_cannot_hold_is_refused_by_name(name: str) -> None:
    cfg, words = REFUSED[name]
    reason = unsupported(cfg)
    assert reason is not None, name
    with pytest.raises(UnsupportedError) as info:
        rnn_ref.to_keras(_params(cfg))
    for word in words:
        assert word in str(info.value), str(info.value)
    assert convert.convertible(_params(cfg))["keras"] is not None


def test_weights_h5_refuses_what_it_cannot_record(tmp_path: Path) -> None:
    """A ``.weights.h5`` numbers each layer class apart (a mixed stack's order is lost),
    shows a GRU's ``reset_after`` only in its bias' shape, and its hints give one gate
    activation a layer: each refused at writing, named; ``.keras`` and ``.h5`` hold them."""
    for cfg, words in ((RNNConfig(D, (M, M2), cell=["gru", "lstm"]),
                        "layers of different cells ['gru', 'lstm']"),
                       (RNNConfig(D, M, cell="gru", bias=False), "a GRU without a bias"),
                       (RNNConfig(D, M, cell="gru", direction="bidirectional",
                                  recurrent_activation=[(SIGMOID, KERAS3_HARD_SIGMOID)]),
                        "different activations per direction")):
        reasons = convert.convertible(_params(cfg))
        assert words in str(reasons["keras-weights"]), reasons["keras-weights"]
        assert reasons["keras"] is None and reasons["keras-h5"] is None
        with pytest.raises(UnsupportedError, match=words.replace("[", r"\[")):
            convert.write(_params(cfg), tmp_path / "w.weights.h5")


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------
FILE_NETWORKS = {
    "bilstm_stack_head": RNNConfig(D, (M, M2), cell="lstm", direction="bidirectional",
                                   merge_mode=("concat", "concat"), output_size=K),
    "gru_stack_hard_sigmoid": RNNConfig(D, (M, M2), cell="gru", reset_after=[True, False],
                                        recurrent_activation=KERAS3_HARD_SIGMOID,
                                        activation="softsign", select="final"),
    "lstm_states": RNNConfig(D, (M, M2), cell="lstm", select="final",
                             returns=["result", "h_n[-1]", "c_n[-1]"]),
}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=[] if n == "gru_stack_hard_sigmoid" else [pytest.mark.slow])
    for n in FILE_NETWORKS])
def test_files_convert_with_verify_and_back(name: str, tmp_path: Path) -> None:
    """``rnn-ref convert x.npz y.keras --verify`` (and ``.weights.h5``, ``.h5`` where they
    hold the network), then back to the canonical file: the same network."""
    params = _params(FILE_NETWORKS[name], seed=7)
    src = convert.write(params, tmp_path / "src.npz")
    x = _inputs(params.config, seed=7)
    want = returned(params.config, rnn_ref.forward(params, x))
    for fmt, suffix in (("keras", ".keras"), ("keras-weights", ".weights.h5"),
                        ("keras-h5", ".h5")):
        if convert.convertible(params)[fmt] is not None:
            assert fmt == "keras-weights" and name == "lstm_states", fmt
            continue
        dst = tmp_path / f"dst{suffix}"
        done = convert.convert(src, dst, dst_format=fmt, verify=True)
        assert done.verification is not None and done.verification.passed, (
            fmt, done.verification)
        back = convert.read(dst, fmt, convert.hints_for(params, fmt))
        assert back.config.cells == params.config.cells, fmt
        got = returned(back.config, rnn_ref.forward(back, x))
        assert _largest_error([np.asarray(g) for g in got], want) < TOL, fmt
        again = convert.convert(dst, tmp_path / f"back-{fmt}.npz", verify=True,
                                hints=convert.hints_for(params, fmt))
        assert again.verification is not None and again.verification.passed, fmt


# --------------------------------------------------------------------------------------------
# the backends
# --------------------------------------------------------------------------------------------
def _mask() -> np.ndarray:
    mask = np.ones((N, T), bool)
    mask[0, 5:] = mask[1, :2] = mask[2, 3] = False
    return mask


BACKEND_CASES: dict[str, tuple[RNNConfig, str]] = {
    # (config, padding: "none", "lengths" or "mask")
    "bilstm_gru_h0_c0_lengths": (RNNConfig(D, (M, M2), cell=["lstm", "gru"],
                                           direction="bidirectional", output_size=K),
                                 "lengths"),
    "lstm_rev_processing_mask": (RNNConfig(D, M, cell="lstm", direction="reverse",
                                           output_order="processing"), "mask"),
    "gru_reset_before_carry_mask": (RNNConfig(D, (M, M2), cell="gru", reset_after=False,
                                              padded_output="carry_output"), "mask"),
    "mixed_widths_final": (RNNConfig(D, (M, M2, M), cell=["lstm", "elman", "lstm"],
                                     select="final", head=[(K, "sigmoid")]), "none"),
}


def _backend_inputs(cfg: RNNConfig, padding: str, dtype: Any) -> dict[str, Any]:
    rng = np.random.default_rng(11)
    out: dict[str, Any] = {
        "x": rng.normal(0.0, 1.0, (N, T, D)).astype(dtype),
        "h0": [rng.normal(0.0, 0.5, (N, m)).astype(dtype) for m in cfg.state_sizes],
        "c0": [rng.normal(0.0, 0.5, (N, m)).astype(dtype) for m in cfg.cell_state_sizes]
        or None}
    if padding == "lengths":
        out["lengths"] = np.array([5, T, 1])
    elif padding == "mask":
        out["mask"] = _mask()
    return out


def _backend_error(got: Any, want: Any) -> float:
    """The largest difference over outputs, h_n, c_n and y."""
    worst = 0.0
    for field in ("outputs", "h_n", "c_n", "y", "selected"):
        w = getattr(want, field)
        if w is None:
            assert field in ("c_n", "y") or getattr(got, field) is None
            continue
        g = getattr(got, field)
        assert g is not None, field
        for a, b in zip(*(v if isinstance(v, tuple) else (v,) for v in (g, w)), strict=True):
            assert np.shape(a) == np.shape(b), (field, np.shape(a), np.shape(b))
            worst = max(worst, float(np.abs(np.asarray(a, np.float64) - b).max()))
    return worst


@pytest.mark.parametrize("name", BACKEND_CASES)
def test_keras_backend_in_this_process(name: str) -> None:
    """The backend the ``keras[...]`` workers run (here on TensorFlow) on gated networks
    with h0, c0 and padding: outputs, h_n, c_n, y against the oracle."""
    from rnn_ref.backends.keras.backend import KerasBackend

    cfg, padding = BACKEND_CASES[name]
    params = _params(cfg, seed=5)
    kw = _backend_inputs(cfg, padding, np.float64)
    got = KerasBackend().forward(params, **kw)
    assert _backend_error(got, rnn_ref.forward(params, **kw)) < TOL


def test_keras_backend_refuses_the_padding_it_does_not_compute() -> None:
    from rnn_ref.backends.keras.backend import KerasBackend

    params = _params(RNNConfig(D, M, cell="lstm", padded_output="carry_state"))
    with pytest.raises(UnsupportedError, match="padded_output 'carry_state'"):
        KerasBackend().forward(params, _inputs(params.config), mask=_mask())


@pytest.fixture(scope="module", params=["keras[tensorflow]", "keras[jax]", "keras[torch]"])
def keras_backend(request: pytest.FixtureRequest) -> Any:
    return rnn_ref.get_backend(request.param)


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKEND_CASES)
def test_keras_backends_run_gated_networks(keras_backend: Any, name: str) -> None:
    """Each Keras backend, in its worker, in float32 (and float64 where it computes it: not
    JAX without JAX_ENABLE_X64, and torch at float32's precision, a recorded deviation);
    JAX's padded steps carry the state."""
    cfg, padding = BACKEND_CASES[name]
    if keras_backend.name == "keras[jax]" and cfg.padded_output == "carry_output":
        cfg = cfg.replace(padded_output="carry_state")  # what Keras on JAX does
    params = _params(cfg, seed=5)
    for dtype, tol in ((np.float32, TOL_F32), (np.float64, TOL)):
        kw = _backend_inputs(cfg, padding, dtype)
        p = params.astype(dtype)
        if keras_backend.name == "keras[jax]" and dtype == np.float64:
            with pytest.raises(UnsupportedError, match="JAX_ENABLE_X64"):
                keras_backend.forward(p, **kw)
            continue
        if keras_backend.name == "keras[torch]" and dtype == np.float64:
            tol = TOL_F32  # float64-computes-at-float32-precision
        got = keras_backend.forward(p, **kw)
        assert _backend_error(got, rnn_ref.forward(params, **kw)) < tol, (dtype, name)


# --------------------------------------------------------------------------------------------
# the deviations recorded (backends/keras/deviations/)
# --------------------------------------------------------------------------------------------
_PRECISION_SCRIPT = """
import numpy as np, keras, rnn_ref
from rnn_ref import RNNConfig
from rnn_ref.backends.keras.backend import KerasBackend
be = KerasBackend()
x = np.random.default_rng(0).normal(size=(3, 7, 4))
mask = np.ones((3, 7), bool); mask[0, 5:] = False
print("matmul", keras.ops.convert_to_numpy(keras.ops.matmul(x[0], x[0].T)).dtype,
      "tanh", keras.ops.convert_to_numpy(keras.ops.tanh(x)).dtype)
for name, cfg in (("lstm", RNNConfig(4, 6, cell="lstm")),
                  ("gru_before", RNNConfig(4, 6, cell="gru", reset_after=False)),
                  ("lstm_relu", RNNConfig(4, 6, cell="lstm", activation="relu")),
                  ("rnn_relu", RNNConfig(4, 6, activation="relu")),
                  ("rnn_tanh", RNNConfig(4, 6))):
    p = rnn_ref.init(cfg, seed=1, dtype=np.float64)
    for m in (None, mask):
        try:
            got = be.forward(p, x, mask=m)
            err = float(np.abs(got.outputs - rnn_ref.forward(p, x, mask=m).outputs).max())
            print(name, "masked" if m is not None else "unpadded", got.outputs.dtype, err)
        except TypeError:
            print(name, "masked" if m is not None else "unpadded", "TypeError", -1)
"""


def _precision(backend: str) -> dict[str, Any]:
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_ENABLE_X64": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    res = subprocess.run([sys.executable, "-c", _PRECISION_SCRIPT], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    out: dict[str, Any] = {"ops": lines[-11].split()}
    for line in lines[-10:]:
        name, padding, dtype, err = line.split()
        out[f"{name} {padding}"] = (dtype, float(err))
    return out


@pytest.mark.slow
def test_keras_float64_precision_deviations() -> None:
    """``float64-computes-at-float32-precision`` (keras[torch]): ``ops.matmul`` of float64
    returns float32, so the generic loop (masked inputs, a reset-before GRU, SimpleRNN) is at
    float32's precision, while the backend's own LSTM loop (unpadded) is exact.
    ``float64-tanh-at-float32-precision`` (keras[jax], JAX_ENABLE_X64=1): ``ops.tanh`` of
    float64 returns float32, so networks of tanh are at float32's precision (a SimpleRNN of
    tanh on unpadded inputs raises), those without are exact."""
    pytest.importorskip("torch")
    torch = _precision("torch")
    assert torch["ops"] == ["matmul", "float32", "tanh", "float64"]
    for key in ("lstm masked", "gru_before unpadded", "gru_before masked", "rnn_relu masked"):
        dtype, err = torch[key]
        assert dtype == "float64" and 1e-9 < err < 1e-5, (key, torch[key])
    for key in ("lstm unpadded", "lstm_relu unpadded"):
        assert torch[key][1] < 1e-14, (key, torch[key])
    pytest.importorskip("jax")
    jax = _precision("jax")
    assert jax["ops"] == ["matmul", "float64", "tanh", "float32"]
    for key in ("lstm unpadded", "lstm masked", "gru_before masked", "rnn_tanh masked"):
        dtype, err = jax[key]
        assert dtype == "float64" and 1e-9 < err < 1e-5, (key, jax[key])
    assert jax["rnn_tanh unpadded"][0] == "TypeError"
    for key in ("lstm_relu unpadded", "lstm_relu masked", "rnn_relu unpadded"):
        assert jax[key][1] < 1e-14, (key, jax[key])


# --------------------------------------------------------------------------------------------
# property: written exactly, or refused
# --------------------------------------------------------------------------------------------
#: bounded activations (a gate of relu or linear grows the state without bound over the
#: steps): Keras 3's, and rarely (each 1 in 18) one of two it lacks
KERAS_ACTS = st.sampled_from([KERAS_ACTIVATIONS[name] for name in (
    "sigmoid", "tanh", "softsign", "hard_sigmoid")] * 4 + [KERAS2_HARD_SIGMOID,
                                                            Activation("affine", 0.5, 0.1)])


@st.composite
def _gated_networks(draw: st.DrawFn) -> RNNConfig:
    """:func:`gated_configs` of :data:`KERAS_ACTS`, half of them without the LSTM switches
    Keras lacks (peepholes, input_forget, a projection, a cell-state activation of its
    own), so that many are written."""
    cfg = draw(gated_configs(acts=KERAS_ACTS, clip=False))
    if draw(st.booleans()):
        cfg = cfg.replace(peepholes=None, input_forget=None, proj_size=None,
                          cell_activation=None)
    return cfg


@pytest.mark.slow
@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(cfg=_gated_networks(), seed=st.integers(0, 2**16))
def test_random_gated_networks_are_written_exactly_or_refused(cfg: RNNConfig,
                                                              seed: int) -> None:
    """A random gated network (tests/strategies_gated.py) either makes a Keras model that
    computes it on unpadded inputs (float64, 1e-12) or is refused with an
    :class:`UnsupportedError`; never another network."""
    params = _params(cfg, seed)
    reason = unsupported(cfg, padded=False)
    with warnings.catch_warnings():  # padded steps Keras computes otherwise: not shown here
        warnings.simplefilter("ignore", rnn_ref.SemanticsWarning)
        event("refused" if reason is not None else "written")
        if reason is not None:
            with pytest.raises(UnsupportedError):
                rnn_ref.to_keras(params)
            return
        model = rnn_ref.to_keras(params)
    x = _inputs(cfg, seed)
    want = tuple(a for w in returned(cfg, rnn_ref.forward(params, x))
                 for a in (w if isinstance(w, tuple) else (w,)))  # merge_mode None: a pair
    assert _largest_error(_call(model, x), want) < 1e-10

