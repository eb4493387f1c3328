"""Issue 21's Keras patterns, built the way tutorials write them: ``RNN(SimpleRNNCell(...))``,
a Bidirectional layer made by hand (a merge of a forward and a ``go_backwards`` layer), and
``to_keras`` of a network that selects the last step (torch ``out[:, -1]``).

Every model has seeded weights (``layer.set_weights`` from a seeded generator) and sizes that
differ (N=3 samples, T=8 steps, D=4 features, M=6 and 5 units, K=2 outputs); token ids come
from ``keras.utils.pad_sequences`` with its defaults (``padding="pre"``) into
``Embedding(mask_zero=True)``. Each is checked against Keras itself: ``rnn_ref.oracle(model)``
and the model ``to_keras`` writes from ``from_keras(model)`` compute what the model does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import need_keras

import rnn_ref
from rnn_ref import UnsupportedError

keras = need_keras()
L = keras.layers
N, T, D, M, M2, V, K = 3, 8, 4, 6, 5, 20, 2
TOL = 1e-5


def _seeded(model: Any, seed: int = 0) -> Any:
    """Every layer's weights drawn from ``seed`` (uniform in [-0.6, 0.6]) with set_weights."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype)
                               for w in weights])
    return model


def _ids() -> np.ndarray:
    """(N, T) token ids, padded at the front with zeros (pad_sequences' defaults)."""
    ids = keras.utils.pad_sequences([[3, 5, 7, 2, 9, 11, 4, 6], [8, 2, 4, 1, 9], [5, 6, 7]],
                                    maxlen=T)
    assert ids.shape == (N, T) and ids[2, 0] == 0 and ids[2, -1] == 7  # padding="pre"
    return ids


def _features(masked: bool = False) -> np.ndarray:
    """(N, T, D) features; with ``masked``, all-zero steps at the front, the end and inside."""
    x = np.random.default_rng(7).standard_normal((N, T, D)).astype(np.float32)
    if masked:
        x[0, :3] = 0.0
        x[1, 6:] = 0.0
        x[2, 4] = 0.0
    return x


def _np(v: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(v))


def _exact(model: Any, x: np.ndarray) -> float:
    """The oracle's and the rewritten model's largest error against ``model(x)``."""
    want = _np(model(x, training=False))
    got = rnn_ref.oracle(model)(x)
    assert got.shape == want.shape
    again = rnn_ref.to_keras(rnn_ref.from_keras(model))
    errs = [float(np.abs(got - want).max()), float(np.abs(_np(again(x)) - want).max())]
    assert max(errs) < TOL, errs
    return max(errs)


def _ids_input() -> Any:
    return keras.Input((None,), dtype="int32")


def _embedding() -> Any:
    return L.Embedding(V, D, mask_zero=True)


# --------------------------------------------------------------------------------------------
# 1. RNN(SimpleRNNCell(...))
# --------------------------------------------------------------------------------------------
def _cell_sequential_sequence() -> Any:
    return keras.Sequential([_ids_input(), _embedding(),
                             L.RNN(L.SimpleRNNCell(M), return_sequences=True), L.Dense(K)])


def _cell_sequential_final() -> Any:
    return keras.Sequential([_ids_input(), _embedding(), L.RNN(L.SimpleRNNCell(M)),
                             L.Dense(1, activation="sigmoid")])


def _cell_backwards_final() -> Any:
    return keras.Sequential([_ids_input(), _embedding(),
                             L.RNN(L.SimpleRNNCell(M, activation="relu"), go_backwards=True),
                             L.Dense(K)])


def _cell_backwards_sequence() -> Any:
    return keras.Sequential([_ids_input(), _embedding(),
                             L.RNN(L.SimpleRNNCell(M), go_backwards=True,
                                   return_sequences=True)])


def _cell_bidirectional() -> Any:
    return keras.Sequential([
        _ids_input(), _embedding(),
        L.Bidirectional(L.RNN(L.SimpleRNNCell(M), return_sequences=True)),
        L.RNN(L.SimpleRNNCell(M2)), L.Dense(3, activation="softmax")])


def _cell_functional() -> Any:
    inp = _ids_input()
    h = L.RNN(L.SimpleRNNCell(M), return_sequences=True)(_embedding()(inp))
    h = L.Bidirectional(L.RNN(L.SimpleRNNCell(M2, activation="sigmoid")), merge_mode="sum")(h)
    return keras.Model(inp, L.Dense(K)(h))


def _cell_functional_sequence() -> Any:
    inp = _ids_input()
    h = L.Bidirectional(L.RNN(L.SimpleRNNCell(M), return_sequences=True))(_embedding()(inp))
    return keras.Model(inp, L.TimeDistributed(L.Dense(K))(h))


CELL_MODELS: dict[str, Callable[[], Any]] = {
    "sequential-sequence": _cell_sequential_sequence,
    "sequential-final": _cell_sequential_final,
    "backwards-final": _cell_backwards_final,
    "backwards-sequence": _cell_backwards_sequence,
    "bidirectional": _cell_bidirectional,
    "functional": _cell_functional,
    "functional-bidirectional-sequence": _cell_functional_sequence,
}


@pytest.mark.parametrize("name", CELL_MODELS)
def test_rnn_of_simple_rnn_cell_is_read_exactly(name: str) -> None:
    model = _seeded(CELL_MODELS[name]())
    _exact(model, _ids())


def test_a_bare_rnn_of_simple_rnn_cell_with_a_mask_and_a_state() -> None:
    x = _features()
    mask = np.ones((N, T), bool)
    mask[0, :3] = mask[1, 6:] = False
    h0 = np.random.default_rng(3).standard_normal((N, M)).astype(np.float32)
    for kwargs in ({"return_sequences": True}, {"go_backwards": True, "return_state": True}):
        layer = L.RNN(L.SimpleRNNCell(M), **kwargs)
        layer.build((None, None, D))
        _seeded(keras.Sequential([keras.Input((None, D)), layer]))
        want = layer(x, mask=mask, initial_state=[h0])
        got = rnn_ref.oracle(layer)(x, mask=mask, initial_state=[h0])
        for w, g in zip(want if isinstance(want, (list, tuple)) else [want],
                        got if isinstance(got, tuple) else [got], strict=True):
            assert float(np.abs(_np(w) - g).max()) < TOL
    assert rnn_ref.from_keras(layer).config.direction == "reverse"


class _HalvingCell(L.Layer):
    """A cell of the user's own: ``h_t = (x_t @ 1 + h_{t-1}) / 2``, no weights."""

    state_size = M

    def call(self, inputs: Any, states: Any) -> Any:
        h = (keras.ops.sum(inputs, axis=-1, keepdims=True) + states[0]) / 2
        return h, [h]


def test_rnn_around_another_cell_is_refused_by_name() -> None:
    cases = [  # RNN(GRUCell), RNN(LSTMCell): tests/test_keras_gated.py
        (L.RNN(_HalvingCell(), name="own_rnn"), "_HalvingCell"),
        (L.RNN([L.SimpleRNNCell(M), L.SimpleRNNCell(M2)], name="stacked"), "StackedRNNCells"),
    ]
    for layer, word in cases:
        model = keras.Sequential([keras.Input((None, D)), layer])
        with pytest.raises(UnsupportedError, match=word):
            rnn_ref.from_keras(model)
        with pytest.raises(UnsupportedError, match=word):
            rnn_ref.from_keras(layer)


# --------------------------------------------------------------------------------------------
# 2. a Bidirectional layer made by hand
# --------------------------------------------------------------------------------------------
def _hand_made(merge: Any, *, masked: bool, backward_first: bool = False,
               sequences: bool = False, cell: bool = False) -> tuple[Any, np.ndarray]:
    """``f = SimpleRNN(M)(x); b = SimpleRNN(M, go_backwards=True)(x); merge([f, b])`` on
    embedded ids (masked) or features, then a Dense head."""
    if masked:
        inp = _ids_input()
        x, data = _embedding()(inp), _ids()
    else:
        inp = keras.Input((None, D))
        x, data = inp, _features()

    def rnn(**kw: Any) -> Any:
        return L.RNN(L.SimpleRNNCell(M), **kw) if cell else L.SimpleRNN(M, **kw)

    f = rnn(return_sequences=sequences)(x)
    b = rnn(return_sequences=sequences, go_backwards=True)(x)
    h = merge([b, f] if backward_first else [f, b])
    return keras.Model(inp, L.Dense(K)(h)), data


def test_hand_made_bidirectional_final_states_are_read_exactly() -> None:
    model, ids = _hand_made(L.Concatenate(), masked=True)
    _seeded(model)
    _exact(model, ids)
    cfg = rnn_ref.from_keras(model).config
    assert cfg.directions == ("bidirectional",) and cfg.select == "final" and cfg.mask_zero
    # sum, product and mean do not depend on the order of the branches
    for merge, mode in ((L.Add(), "sum"), (L.Average(), "ave"), (L.Multiply(), "mul")):
        model, x = _hand_made(merge, masked=False, backward_first=True, cell=True)
        _seeded(model, seed=1)
        _exact(model, x)
        assert rnn_ref.from_keras(model).config.merge_mode == mode


def test_hand_made_bidirectional_with_masking_and_dropout() -> None:
    inp = keras.Input((None, D))
    x = L.Dropout(0.2)(L.Masking(0.0)(inp))
    f = L.SimpleRNN(M)(x)
    b = L.SimpleRNN(M, go_backwards=True, activation="relu")(x)
    model = _seeded(keras.Model(inp, L.Dense(K, activation="tanh")(L.Concatenate()([f, b]))))
    _exact(model, _features(masked=True))
    assert rnn_ref.from_keras(model).config.mask_value == 0.0


@pytest.mark.parametrize("case, words", [
    ("sequences", ("sequences", "processing order", "time-aligned")),
    ("backward-first", ("forward first",)),
    ("two-forward", ("go_backwards [False, False]",)),
])
def test_hand_made_bidirectional_refusals_name_why(case: str, words: tuple[str, ...]) -> None:
    if case == "two-forward":
        inp = keras.Input((None, D))
        merged = L.Concatenate(name="cat")([L.SimpleRNN(M)(inp), L.SimpleRNN(M)(inp)])
        model = keras.Model(inp, merged)
    else:
        model, _ = _hand_made(L.Concatenate(name="cat"), masked=True,
                              sequences=case == "sequences",
                              backward_first=case == "backward-first")
    with pytest.raises(UnsupportedError) as info:
        rnn_ref.from_keras(model)
    for word in ("cat", *words):
        assert word in str(info.value), str(info.value)


def test_functional_models_read_the_mask_of_their_embedding_or_masking() -> None:
    inp = _ids_input()
    model = _seeded(keras.Model(inp, L.Dense(1, activation="sigmoid")(
        L.SimpleRNN(M)(_embedding()(inp)))))
    _exact(model, _ids())
    inp = keras.Input((None, D))
    h = L.SimpleRNN(M, return_sequences=True)(L.Masking(0.0)(inp))
    model = _seeded(keras.Model(inp, L.Dense(K)(h)))
    _exact(model, _features(masked=True))
    # a mask the model computes otherwise is refused, named
    inp = keras.Input((None, D))
    own = keras.ops.greater(keras.ops.sum(inp, axis=-1), 0.0)
    model = keras.Model(inp, L.SimpleRNN(M, name="rnn")(inp, mask=own))
    with pytest.raises(UnsupportedError, match="'rnn' called with a mask computed by"):
        rnn_ref.from_keras(model)


# --------------------------------------------------------------------------------------------
# 3. to_keras of select="last_step"
# --------------------------------------------------------------------------------------------
def test_last_step_of_forward_layers_is_written_as_the_final_state() -> None:
    x = _features()
    for cfg in (rnn_ref.RNNConfig(D, M, select="last_step", head=[(K, "tanh")]),
                rnn_ref.RNNConfig(D, [M, M2], direction=["bidirectional", "forward"],
                                  select="last_step", vocab_size=V, head=[K])):
        params = rnn_ref.init(cfg, seed=4)
        data = _ids() if cfg.vocab_size else x
        model = rnn_ref.to_keras(params)
        err = float(np.abs(_np(model(data)) - rnn_ref.forward(params, data).result).max())
        assert err < TOL
        assert rnn_ref.from_keras(model).config.select == "final"


def test_last_step_of_a_torch_classifier_converts_to_keras() -> None:
    torch = pytest.importorskip("torch")

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.RNN(D, M, num_layers=2, batch_first=True)
            self.fc = torch.nn.Linear(M, K)

        def forward(self, x: Any) -> Any:
            out, _ = self.rnn(x)
            return self.fc(out[:, -1, :])

    torch.manual_seed(0)
    module = Classifier().eval()
    params = rnn_ref.from_torch(module)
    assert params.config.select == "last_step"
    x = _features()
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    assert float(np.abs(_np(rnn_ref.to_keras(params)(x)) - want).max()) < TOL


@pytest.mark.parametrize("changes, word", [
    ({"vocab_size": V, "mask_zero": True}, "never padded"),
    ({"mask_value": 0.0}, "never padded"),
    ({"direction": "reverse"}, "forward last layer"),
])
def test_last_step_is_refused_where_it_is_not_the_final_state(changes: dict[str, Any],
                                                              word: str) -> None:
    cfg = rnn_ref.RNNConfig(D, M, select="last_step", **changes)
    with pytest.raises(UnsupportedError, match=word):
        rnn_ref.to_keras(rnn_ref.init(cfg))
    cfg = rnn_ref.RNNConfig(D, M, direction="bidirectional", select="last_step")
    with pytest.raises(UnsupportedError, match="last_step"):
        rnn_ref.to_keras(rnn_ref.init(cfg))
    with pytest.raises(UnsupportedError, match="last_step"):
        rnn_ref.to_keras(rnn_ref.init(rnn_ref.RNNConfig(D, M, select="last_step")),
                         mask_value=0.0)


# --------------------------------------------------------------------------------------------
# 4. pooling over time, several outputs
# --------------------------------------------------------------------------------------------
def _outputs_exact(model: Any, x: np.ndarray) -> float:
    """:func:`_exact` for a model of several outputs (lists)."""
    want = [_np(w) for w in model(x, training=False)]
    got = rnn_ref.oracle(model)(x)
    again = rnn_ref.to_keras(rnn_ref.from_keras(model))(x)
    assert isinstance(got, list) and len(got) == len(want) == len(again)
    errs = [float(np.abs(g - w).max()) for g, w in zip(got, want, strict=True)]
    errs += [float(np.abs(_np(a) - w).max()) for a, w in zip(again, want, strict=True)]
    assert max(errs) < TOL, errs
    return max(errs)


def _pooled(pool: Any, rnn: Any, *, functional: bool) -> Any:
    if functional:
        inp = _ids_input()
        return keras.Model(inp, L.Dense(1, activation="sigmoid")(pool(rnn(_embedding()(inp)))))
    return keras.Sequential([_ids_input(), _embedding(), rnn, pool, L.Dense(K)])


@pytest.mark.parametrize("pool, select", [(L.GlobalAveragePooling1D, "mean_valid"),
                                          (L.GlobalMaxPooling1D, "max_all")])
@pytest.mark.parametrize("functional", [False, True])
def test_pooling_over_time_is_read_exactly(pool: Any, select: str, functional: bool) -> None:
    rnns = [L.SimpleRNN(M, return_sequences=True),
            L.Bidirectional(L.SimpleRNN(M, return_sequences=True), merge_mode="ave"),
            L.RNN(L.SimpleRNNCell(M), return_sequences=True, go_backwards=True)]
    for rnn in rnns[:2] if select == "mean_valid" else rnns:
        with warnings.catch_warnings():  # GlobalMaxPooling1D: "does not support masking"
            warnings.filterwarnings("ignore", message=".*does not support masking")
            model = _seeded(_pooled(pool(), rnn, functional=functional))
            _exact(model, _ids())
        assert rnn_ref.from_keras(model).config.select == select


def test_average_pooling_over_go_backwards_unmasked_and_refused_masked() -> None:
    model = _seeded(keras.Sequential([keras.Input((None, D)),
                                      L.SimpleRNN(M, return_sequences=True, go_backwards=True),
                                      L.GlobalAveragePooling1D()]))
    _exact(model, _features())
    masked = _pooled(L.GlobalAveragePooling1D(name="gap"),
                     L.SimpleRNN(M, return_sequences=True, go_backwards=True), functional=False)
    with pytest.raises(UnsupportedError, match="'gap'.*processing order by the mask"):
        rnn_ref.from_keras(masked)
    with pytest.raises(UnsupportedError, match="keepdims"):
        rnn_ref.from_keras(keras.Sequential([keras.Input((None, D)),
                                             L.SimpleRNN(M, return_sequences=True),
                                             L.GlobalAveragePooling1D(keepdims=True)]))


def test_return_state_outputs_are_read_exactly() -> None:
    ids = _ids()
    inp = _ids_input()
    seq, state = L.SimpleRNN(M, return_sequences=True, return_state=True)(_embedding()(inp))
    model = _seeded(keras.Model(inp, [L.Dense(K)(seq), state]))
    _outputs_exact(model, ids)
    assert rnn_ref.from_keras(model).config.returns == ("result", "h_n[-1]")

    inp = _ids_input()
    out, state = L.RNN(L.SimpleRNNCell(M), return_state=True)(_embedding()(inp))
    model = _seeded(keras.Model(inp, [out, state]))
    _outputs_exact(model, ids)

    inp = _ids_input()
    lower, low_state = L.SimpleRNN(M, return_sequences=True, return_state=True)(
        _embedding()(inp))
    out, h_f, h_b = L.Bidirectional(L.SimpleRNN(M2, return_sequences=True,
                                                return_state=True))(lower)
    model = _seeded(keras.Model(inp, [h_b, L.Dense(K)(L.GlobalAveragePooling1D()(out)),
                                      low_state, out, h_f]))
    _outputs_exact(model, ids)
    cfg = rnn_ref.from_keras(model).config
    assert cfg.returns == ("h_n[-1]", "result", "h_n[-3]", "sequence", "h_n[-2]")


def test_outputs_and_states_off_the_chain_are_refused_by_name() -> None:
    inp = keras.Input((None, D))
    _, state = L.SimpleRNN(M, return_state=True, name="enc")(inp)
    with pytest.raises(UnsupportedError, match="taking output 1 of 'enc'"):
        rnn_ref.from_keras(keras.Model(inp, L.Dense(K, name="fc")(state)))
    inp = keras.Input((None, D))
    h = L.SimpleRNN(M)(inp)
    with pytest.raises(UnsupportedError, match="'two'.*off the path"):
        rnn_ref.from_keras(keras.Model(inp, [L.Dense(K, name="one")(L.Dense(3)(h)),
                                             L.Dense(K, name="two")(h)]))
    with pytest.raises(UnsupportedError, match="return_state=True in a Sequential"):
        rnn_ref.from_keras(keras.Sequential([keras.Input((None, D)),
                                             L.SimpleRNN(M, return_state=True)]))


def test_to_keras_writes_pooling_and_several_outputs() -> None:
    x = _features()
    cfg = rnn_ref.RNNConfig(D, [M, M2], direction=["forward", "bidirectional"],
                            select="mean_all", head=[K], returns=["sequence", "result", "h_n[0]"])
    params = rnn_ref.init(cfg, seed=5)
    model = rnn_ref.to_keras(params)
    want = rnn_ref.reference.returned(cfg, rnn_ref.forward(params, x))
    for got, w in zip(model(x), want, strict=True):
        assert float(np.abs(_np(got) - w).max()) < TOL
    back = rnn_ref.from_keras(model).config
    assert back.select == "mean_valid"  # the same mean where nothing pads
    assert back.returns == ("sequence", "result", "h_n[-3]")  # h_n[0] of S = 3 states
    for bad, word in (({"select": "mean_all", "mask_value": 0.0}, "mean over all"),
                      ({"returns": ["result", "h_n"]}, "h_n"),
                      ({"select": "final", "returns": ["sequence"]}, "sequence")):
        with pytest.raises(UnsupportedError, match=word):
            rnn_ref.to_keras(rnn_ref.init(rnn_ref.RNNConfig(D, M, **bad)))
