"""Issue 24: Keras 2 (tf-keras) ``GRU`` and ``LSTM`` read, written and run, and the Keras 2 ->
Keras 3 migration.

Models are built the way tutorials and old projects build them (tf-keras ``Sequential`` and
functional models, Keras <= 2.2's ``GRU(reset_after=False)`` with
``recurrent_activation="hard_sigmoid"``, ``Bidirectional``, ``go_backwards``, masks, stacks
mixing ``SimpleRNN``), with seeded weights (normal, non-zero biases) and sizes that all differ
(N=3 samples, T=7 steps, D=4 features, M=5 and 6 units, K=2 outputs, V=11 token ids). Masked
inputs pad at the end of one sample, at the start of another and in the middle of a third.
Each model is compared with what tf-keras itself returns and with ``rnn_ref.forward``; the
float64 models to 1e-12, the float32 ones to float32's precision.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import need, need_keras

import rnn_ref
from rnn_ref import Activation, RNNConfig, UnsupportedError, cli, convert
from rnn_ref.convert import Hints, MissingHintError

keras = need_keras()  # torch before TensorFlow
tk = need("tf_keras")
from rnn_ref.backends.keras2 import convert as k2  # noqa: E402  (after the skip)

L = tk.layers
N, T, D, M, M2, K, V = 3, 7, 4, 5, 6, 2, 11
F64 = "float64"
TOL64 = 1e-12  # float64 against float64: the same sums in another order
TOL32 = 2e-6
HARD_SIGMOID_2 = Activation("hard_sigmoid", alpha=0.2, beta=0.5)
HARD_SIGMOID_3 = Activation("hard_sigmoid", alpha=1 / 6, beta=0.5)


def _seeded(model: Any, seed: int = 0) -> Any:
    """Every layer's weights drawn from ``seed`` (normal, scale 0.5: non-zero biases)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, 0.5, w.shape).astype(w.dtype)
                       for w in model.get_weights()])
    return model


def _x(seed: int = 0, dtype: str = F64, masked: bool = True) -> np.ndarray:
    """(N, T, D) features; ``masked``: zero steps (``Masking(0.0)``) at the end of sample 0,
    the start of sample 1 and the middle of sample 2."""
    x = np.random.default_rng(seed + 1).normal(0.0, 1.0, (N, T, D)).astype(dtype)
    if masked:
        x[0, 5:] = 0.0
        x[1, :2] = 0.0
        x[2, 3] = 0.0
    return x


def _ids(seed: int = 0) -> np.ndarray:
    ids = np.random.default_rng(seed + 1).integers(1, V, (N, T))
    ids[0, 5:] = 0
    ids[1, :2] = 0
    return ids.astype(np.int32)


def _save(model: Any, path: Path, weights_only: bool = False) -> Path:
    """``model.save`` / ``save_weights`` as users do (legacy HDF5), quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf-keras: "HDF5 is legacy"
        (model.save_weights if weights_only else model.save)(str(path))
    return path


# --------------------------------------------------------------------------------------------
# models as people built them
# --------------------------------------------------------------------------------------------
def _keras22_gru() -> Any:
    """Keras <= 2.2's GRU: reset before the product, hard_sigmoid gates; Masking, Dense."""
    return tk.Sequential([
        tk.Input((None, D), dtype=F64), L.Masking(0.0, dtype=F64),
        L.GRU(M, reset_after=False, recurrent_activation="hard_sigmoid", return_sequences=True,
              dtype=F64),
        L.Dense(K, dtype=F64)])


def _bilstm_gru_backwards() -> Any:
    """Masking -> Bidirectional(LSTM) -> GRU(go_backwards), its final state -> softmax."""
    return tk.Sequential([
        tk.Input((None, D), dtype=F64), L.Masking(0.0, dtype=F64),
        L.Bidirectional(L.LSTM(M, return_sequences=True, dtype=F64), dtype=F64),
        L.GRU(M2, go_backwards=True, dtype=F64),
        L.Dense(K, activation="softmax", dtype=F64)])


def _mixed_stack() -> Any:
    """SimpleRNN -> LSTM(hard_sigmoid gates, relu) -> Bidirectional(GRU reset-before, sum)."""
    return tk.Sequential([
        tk.Input((None, D), dtype=F64), L.SimpleRNN(3, return_sequences=True, dtype=F64),
        L.LSTM(M, recurrent_activation="hard_sigmoid", activation="relu",
               return_sequences=True, dtype=F64),
        L.Bidirectional(L.GRU(M2, reset_after=False, return_sequences=True, dtype=F64),
                        merge_mode="sum", dtype=F64)])


def _imdb_lstm() -> Any:
    """The text classifier: Embedding(mask_zero) -> LSTM(dropouts) -> Dense(1, sigmoid)."""
    return tk.Sequential([
        tk.Input((None,), dtype="int32"), L.Embedding(V, D, mask_zero=True, dtype=F64),
        L.LSTM(M, dropout=0.2, recurrent_dropout=0.1, dtype=F64),
        L.Dense(1, activation="sigmoid", dtype=F64)])


def _functional_tagger() -> Any:
    """Functional, float32: GRU -> Dropout -> Bidirectional(LSTM, ave) -> TimeDistributed."""
    inputs = tk.Input((None, D))
    h = L.GRU(M, return_sequences=True)(inputs)
    h = L.Dropout(0.3)(h)
    h = L.Bidirectional(L.LSTM(M2, return_sequences=True), merge_mode="ave")(h)
    return tk.Model(inputs, L.TimeDistributed(L.Dense(K))(h))


MODELS: dict[str, tuple[Callable[[], Any], Callable[[int], np.ndarray], float]] = {
    "keras22-gru-reset-before-hard-sigmoid": (_keras22_gru, _x, TOL64),
    "masking-bilstm-gru-go-backwards-softmax": (_bilstm_gru_backwards, _x, TOL64),
    "simplernn-lstm-bigru-sum": (_mixed_stack, lambda s: _x(s, masked=False), TOL64),
    "embedding-mask-zero-lstm-dropouts": (_imdb_lstm, _ids, TOL64),
    "functional-gru-bilstm-ave-float32": (_functional_tagger,
                                          lambda s: _x(s, "float32", masked=False), TOL32),
}


@pytest.mark.parametrize("name", MODELS)
def test_model_reads_runs_writes(name: str, tmp_path: Path) -> None:
    """from_keras2 reads the model, the oracle returns what tf-keras returns, to_keras2 holds
    the same weights bit-exact and computes the same, and ``model.save("m.h5")`` reads to the
    same parameters."""
    make, inputs, tol = MODELS[name]
    model = _seeded(make(), seed=len(name))
    x = inputs(1)
    want = model(x).numpy()
    params = rnn_ref.from_keras2(model)
    assert not params.config.is_elman
    err = float(np.abs(rnn_ref.forward(params, x).result - want).max())
    assert err < tol, err
    np.testing.assert_allclose(k2.oracle(model)(x), want, atol=tol)
    again = rnn_ref.to_keras2(params)
    for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # packed in Keras' gate order again
    np.testing.assert_allclose(again(x).numpy(), want, atol=tol)
    assert rnn_ref.from_keras2(again) == params
    assert convert.read(_save(model, tmp_path / "m.h5"), "keras2-h5") == params


def test_what_is_read() -> None:
    """The switches a tf-keras layer records, where they land in the spec."""
    params = rnn_ref.from_keras2(_seeded(_mixed_stack()))
    cfg = params.config
    assert [c.kind for c in cfg.cells] == ["elman", "lstm", "gru"]
    assert not cfg.cell_of(2).reset_after
    assert cfg.activations_of(1, 0) == (HARD_SIGMOID_2, Activation("relu"), Activation("relu"))
    assert cfg.directions == ("forward", "forward", "bidirectional")
    assert cfg.merge_modes[2] == "sum"
    lstm = params.layers[1][0]
    assert lstm.w_x["i"].shape == (3, M) and lstm.w_h["o"].shape == (M, M)
    assert not any(np.any(b) for b in lstm.b_h.values())  # one Keras bias: b_x, b_h = 0
    cfg = rnn_ref.from_keras2(_seeded(_imdb_lstm())).config
    assert cfg.mask_zero and cfg.select == "final"
    assert [i.kind for i in cfg.identities] == ["input_dropout", "recurrent_dropout"]


def test_gate_blocks_are_keras_columns() -> None:
    """Keras packs z, r, h (GRU) and i, f, c, o (LSTM) on the last axis; a reset-after GRU's
    bias row 0 is b_x, row 1 b_h."""
    gru = L.GRU(M, dtype=F64)
    gru(np.zeros((1, 2, D)))
    _seeded_layer(gru)
    kernel, rec, bias = gru.get_weights()
    cell = rnn_ref.from_keras2(gru).layers[0][0]
    np.testing.assert_array_equal(cell.w_x["r"], kernel[:, M:2 * M])
    np.testing.assert_array_equal(cell.w_h["n"], rec[:, 2 * M:])
    np.testing.assert_array_equal(cell.b_h["n"], bias[1, 2 * M:])
    lstm = L.LSTM(M, dtype=F64)
    lstm(np.zeros((1, 2, D)))
    _seeded_layer(lstm)
    kernel, rec, bias = lstm.get_weights()
    cell = rnn_ref.from_keras2(lstm).layers[0][0]
    np.testing.assert_array_equal(cell.w_x["g"], kernel[:, 2 * M:3 * M])
    np.testing.assert_array_equal(cell.b_x["f"], bias[M:2 * M])


def _seeded_layer(layer: Any, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0.0, 0.5, w.shape) for w in layer.get_weights()])


BARE: dict[str, Callable[[], Any]] = {
    "gru-reset-before-states": lambda: L.GRU(M, reset_after=False, return_sequences=True,
                                             return_state=True, dtype=F64),
    "lstm-go-backwards-states": lambda: L.LSTM(M, go_backwards=True, return_state=True,
                                               recurrent_activation="hard_sigmoid", dtype=F64),
    "bidirectional-lstm-states": lambda: L.Bidirectional(
        L.LSTM(M, return_sequences=True, return_state=True, dtype=F64), dtype=F64),
}


@pytest.mark.parametrize("name", BARE)
def test_bare_layer_with_mask_and_initial_state(name: str) -> None:
    """A bare layer called with a mask and initial states ([h] for a GRU, [h, c] for an LSTM,
    each direction's in turn): the oracle returns the same tuple."""
    import tensorflow as tf

    layer = BARE[name]()
    x = _x(4)
    layer(x)
    _seeded_layer(layer)
    lstm = "lstm" in name
    R = 2 if name.startswith("bidirectional") else 1
    rng = np.random.default_rng(9)
    states = [rng.normal(0.0, 0.5, (N, M)) for _ in range(R * (2 if lstm else 1))]
    mask = np.any(x != 0.0, axis=-1)
    want = layer(x, mask=tf.constant(mask), initial_state=[tf.constant(s) for s in states])
    got = k2.oracle(layer)(x, mask=mask, initial_state=states)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), atol=TOL64)


# --------------------------------------------------------------------------------------------
# files: model .h5, save_weights .h5, an old config without reset_after
# --------------------------------------------------------------------------------------------
def _weights_stack() -> Any:
    """What a weights-only file can hold: forward layers returning sequences, one Dense."""
    return tk.Sequential([
        tk.Input((None, D)), L.SimpleRNN(3, return_sequences=True),
        L.Bidirectional(L.LSTM(M, recurrent_activation="hard_sigmoid", return_sequences=True),
                        merge_mode="sum"),
        L.GRU(M2, reset_after=False, return_sequences=True), L.GRU(M, return_sequences=True),
        L.Dense(K)])


def test_save_weights_file_with_hints(tmp_path: Path) -> None:
    """``save_weights("w.h5")`` records arrays by name only: the cells from their shapes, the
    rest from the hints (recurrent_activation per gated layer), asked for by name."""
    model = _seeded(_weights_stack(), 2)
    path = _save(model, tmp_path / "w.h5", weights_only=True)
    assert k2.sniff_h5(path) == "keras2-h5"
    want = rnn_ref.from_keras2(model)
    hints = Hints(activation="tanh", recurrent_activation="hard_sigmoid,sigmoid,sigmoid",
                  merge_mode="sum")
    assert convert.read(path, "keras2-h5", hints) == want
    x = _x(5, "float32", masked=False)
    np.testing.assert_allclose(rnn_ref.forward(want, x).result, model(x).numpy(), atol=TOL32)
    for given, missing in ((Hints(activation="tanh", merge_mode="sum"), "recurrent_activation"),
                           (Hints(activation="tanh", recurrent_activation="sigmoid"),
                            "merge_mode"),
                           (Hints(recurrent_activation="sigmoid", merge_mode="sum"),
                            "activation")):
        with pytest.raises(MissingHintError) as info:
            convert.read(path, "keras2-h5", given)
        assert info.value.hint == missing
    nobias = _save(tk.Sequential([tk.Input((None, D)), L.GRU(M, use_bias=False)]),
                   tmp_path / "nobias.h5", weights_only=True)
    with pytest.raises(UnsupportedError, match="the GRU layer .* without a bias.*reset_after"):
        convert.read(nobias, "keras2-h5", Hints(activation="tanh",
                                               recurrent_activation="sigmoid"))


def test_config_without_reset_after_is_keras_2_1_2s_gru(tmp_path: Path) -> None:
    """Keras <= 2.1.2 had no reset_after (only the reset-before GRU) and wrote none: such a
    config reads as reset-before, what it computed (keras-team/keras PR #9112 added it)."""
    import h5py

    model = _seeded(tk.Sequential([tk.Input((None, D), dtype=F64),
                                   L.GRU(M, reset_after=False, dtype=F64)]))
    path = _save(model, tmp_path / "old.h5")
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        gru = config["config"]["layers"][-1]["config"]
        del gru["reset_after"]
        f.attrs["model_config"] = json.dumps(config)
    params = convert.read(path, "keras2-h5")
    assert params.config.cell_of(0).reset_after is False
    assert params == rnn_ref.from_keras2(model)


@pytest.mark.slow
def test_cli_converts_and_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``rnn-ref convert old.h5 X --verify`` for a Keras 2 GRU/LSTM model: the canonical file,
    and tf-keras' own .h5 again (both run in their own framework)."""
    path = _save(_seeded(_bilstm_gru_backwards()), tmp_path / "old.h5")
    for dst, fmt in (("m.npz", "rnn-ref"), ("again.h5", "keras2-h5")):
        code = cli.main(["convert", str(path), str(tmp_path / dst), "--to", fmt, "--verify"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "verified: ok" in out and "lstm, bidirectional" in out, out


# --------------------------------------------------------------------------------------------
# what tf-keras cannot hold, refused by name
# --------------------------------------------------------------------------------------------
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "peepholes": ({"cell": "lstm", "peepholes": True}, "peepholes .LSTM layer 0.*"
                  "PeepholeLSTMCell"),
    "input_forget": ({"cell": "lstm", "input_forget": True}, "input_forget"),
    "proj_size": ({"cell": "lstm", "proj_size": 2}, "proj_size=2"),
    "clip": ({"cell": "gru", "clip": 1.0}, "clip"),
    "cell_activation": ({"cell": "lstm", "cell_activation": "relu"},
                        "cell_activation relu != activation tanh"),
    "keras3-hard-sigmoid": ({"cell": "gru", "recurrent_activation": HARD_SIGMOID_3},
                            "recurrent_activation hard_sigmoid.alpha=0.1666"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_to_keras2_refuses_by_name(name: str) -> None:
    kw, match = REFUSED[name]
    params = rnn_ref.init(RNNConfig(D, M, **kw), seed=0)
    assert convert.convertible(params)["keras2-h5"] is not None
    with pytest.raises(UnsupportedError, match=match):
        rnn_ref.to_keras2(params)


def test_from_keras2_refuses_by_name() -> None:
    stateful = tk.Sequential([tk.Input((None, D), batch_size=N),
                              L.LSTM(M, stateful=True, name="s")])
    with pytest.raises(UnsupportedError, match="stateful"):
        rnn_ref.from_keras2(stateful)
    with pytest.raises(UnsupportedError, match="time_major=True"):
        rnn_ref.from_keras2(tk.Sequential([tk.Input((None, D)), L.GRU(M, time_major=True)]))
    with pytest.raises(UnsupportedError, match="the Keras 2 recurrent_activation 'selu'"):
        layer = L.GRU(M, recurrent_activation="selu")
        layer(np.zeros((1, 2, D), np.float32))
        rnn_ref.from_keras2(layer)


# --------------------------------------------------------------------------------------------
# the keras2[tensorflow] backend on the gated quick cases
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_keras2_backend_passes_or_refuses_the_gated_quick_cases() -> None:
    from rnn_ref.conformance import cases, runner

    backend = rnn_ref.get_backend("keras2[tensorflow]")
    gated = [c for c in cases.quick_cases() if not c.config.is_elman]
    rep = runner.run(backend, gated)
    assert rep.ok, [(r.category, r.detail) for r in rep.results if r.status != "pass"]
    refused = {r.case for r in rep.results if r.category == "must_raise"}
    for word in ("peepholes", "inputforget", "proj2", "clip", "hardsigmoid3", "_acts_"):
        assert any(word in name for name in refused), (word, refused)
    compared = {r.case for r in rep.results if r.category == "final_state"}
    assert any("hardsigmoid2" in c for c in compared)  # Keras 2's own hard_sigmoid
    assert any("resetbefore" in c for c in compared)
    assert any("h0c0" in c and "lstm" in c for c in compared)  # c0 in, c_n out


# --------------------------------------------------------------------------------------------
# Keras 2 -> Keras 3
# --------------------------------------------------------------------------------------------
def test_keras3_refuses_the_file_and_rebuilt_by_name_computes_another_lstm(
        tmp_path: Path) -> None:
    """Why the migration needs rnn-ref: Keras 3 cannot load a tf-keras GRU/LSTM .h5
    (``time_major``), and a Keras 3 LSTM rebuilt with the same weights and the same name of
    activation computes another function (Keras 3's hard_sigmoid is x/6 + 1/2)."""
    model = _seeded(tk.Sequential([tk.Input((None, D)), L.LSTM(
        M, recurrent_activation="hard_sigmoid", return_sequences=True)]), 4)
    path = _save(model, tmp_path / "old.h5")
    with pytest.raises(Exception, match="time_major"):
        keras.saving.load_model(path, compile=False)
    rebuilt = keras.Sequential([keras.Input((None, D)), keras.layers.LSTM(
        M, recurrent_activation="hard_sigmoid", return_sequences=True)])
    rebuilt.set_weights(model.get_weights())
    x = _x(6, "float32", masked=False)
    assert float(np.abs(np.asarray(rebuilt(x)) - model(x).numpy()).max()) > 1e-2


def _migrate(model: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, Path]:
    old = _save(model, tmp_path / "old.h5")
    new = tmp_path / "new.keras"
    code = cli.main(["convert", str(old), str(new), "--verify"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out, new


def _loads_only_with_rnn_ref(new: Path, model: Any, x: np.ndarray) -> None:
    """In a fresh process, Keras 3 refuses the file until rnn-ref's module is imported,
    then computes what the tf-keras model computes."""
    np.save(new.with_suffix(".x.npy"), x)
    code = (
        "import sys, numpy as np, keras\n"
        f"path, x = {str(new)!r}, np.load({str(new.with_suffix('.x.npy'))!r})\n"
        "try:\n"
        "    keras.saving.load_model(path)\n"
        "    sys.exit('loaded without rnn-ref')\n"
        "except Exception as exc:\n"
        "    assert 'rnn_ref>keras2_hard_sigmoid' in str(exc), exc\n"
        "import rnn_ref.backends.keras2.keras3\n"
        "m = keras.saving.load_model(path, safe_mode=True)\n"
        f"np.save({str(new.with_suffix('.y.npy'))!r}, np.asarray(m(x)))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "KERAS_BACKEND": "tensorflow"},
                         timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    got = np.load(new.with_suffix(".y.npy"))
    np.testing.assert_array_equal(got, model(x).numpy())  # the same ops in the same order


def test_migration_of_keras2_hard_sigmoid(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    """``rnn-ref convert old.h5 new.keras --verify`` of a tf-keras SimpleRNN with Keras 2's
    hard_sigmoid: the Keras 3 model holds rnn-ref's registered function, the wrote line says
    so, Keras 3 refuses the file without it and computes tf-keras' numbers with it."""
    model = _seeded(tk.Sequential([tk.Input((None, D)), L.Masking(0.0), L.SimpleRNN(
        M, activation="hard_sigmoid", return_sequences=True), L.Dense(K)]), 7)
    out, new = _migrate(model, tmp_path, capsys)
    assert "holds 'rnn_ref>keras2_hard_sigmoid'" in out and "import rnn_ref.backends.keras2" \
        ".keras3 before keras.saving.load_model" in out, out
    assert "verified: ok: max abs 0," in out, out
    assert convert.read(new, "keras").config.activation_of(0, 0) == HARD_SIGMOID_2
    _loads_only_with_rnn_ref(new, model, _x(8, "float32"))


def test_migration_of_gated_layers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's migration: a Keras 2 LSTM with hard_sigmoid gates and a reset-before GRU
    become a Keras 3 model computing what the Keras 2 model computed."""
    model = _seeded(tk.Sequential([
        tk.Input((None, D)), L.Masking(0.0),
        L.Bidirectional(L.LSTM(M, recurrent_activation="hard_sigmoid", return_sequences=True)),
        L.GRU(M2, reset_after=False, return_sequences=True), L.Dense(K)]), 8)
    out, new = _migrate(model, tmp_path, capsys)
    assert "holds 'rnn_ref>keras2_hard_sigmoid'" in out, out
    assert "verified: ok" in out, out
    back = convert.read(new, "keras")
    assert back == rnn_ref.from_keras2(model)
    _loads_only_with_rnn_ref(new, model, _x(9, "float32"))
