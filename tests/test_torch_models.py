"""Torch models as users write them: any nn.Module of the network's pieces, read from its graph
(oracle and from_torch), state dicts with prefixes, to_torch's whole network, refusals."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import need

import rnn_ref
from rnn_ref import RNNConfig, UnsupportedError
from rnn_ref.convert import MissingHintError
from rnn_ref.errors import SemanticsWarning
from rnn_ref.reference import returned

torch = need("torch")
nn = torch.nn
from zoo_torch import STATE_DICT_HINTS, ZOO, D, M, N, T, V  # noqa: E402

ATOL = 2e-6  # float32 torch against the float64 oracle, on these small models


def _batch_first(name: str, x: torch.Tensor) -> torch.Tensor:
    return x.transpose(0, 1) if name == "time_major" else x


@pytest.mark.parametrize("name", ZOO)
def test_oracle_and_to_torch_compute_what_the_module_does(name: str) -> None:
    module, x = ZOO[name]()
    with torch.no_grad():
        want = module(x).numpy()
    np.testing.assert_allclose(rnn_ref.oracle(module)(x.numpy()), want, atol=ATOL)
    params = rnn_ref.from_torch(module, example=x)
    assert rnn_ref.from_torch(module) == params  # fx needs no example
    net = rnn_ref.to_torch(params)
    with torch.no_grad():
        got = net(_batch_first(name, x)).numpy()
    np.testing.assert_allclose(got, want, atol=ATOL)
    assert rnn_ref.from_torch(net) == params
    lengths = np.array([T, 2, 5])  # padded samples: the oracle's padded_output="zeros"
    xb = _batch_first(name, x)
    with torch.no_grad():
        padded = net(xb, torch.from_numpy(lengths)).numpy()
    want_padded = rnn_ref.forward(params, xb.numpy(), lengths=lengths).result
    np.testing.assert_allclose(padded, want_padded, atol=ATOL)


@pytest.mark.parametrize("name", STATE_DICT_HINTS)
def test_state_dicts_with_prefixes_read_with_their_hints(name: str) -> None:
    module, _ = ZOO[name]()
    params = rnn_ref.from_torch(module)
    sd = {f"model.{k}": v for k, v in module.state_dict().items()}
    act, select, head = STATE_DICT_HINTS[name]
    got = rnn_ref.from_torch(sd, nonlinearity=act, select=select, head_activation=head)
    # a state dict records no dropout, nor padding_idx (which changes no value)
    assert got == params.replace(identities=[], padding_idx=None)
    with pytest.raises(MissingHintError, match="give the select hint") as exc:
        rnn_ref.from_torch(sd, nonlinearity=act, head_activation=head)
    assert exc.value.hint == "select"
    with pytest.raises(MissingHintError, match="head_activation") as exc:
        rnn_ref.from_torch(sd, nonlinearity=act, select=select)
    assert exc.value.hint == "head_activation"


def test_state_dict_files_of_the_whole_network_describe_themselves(tmp_path: Path) -> None:
    module, _ = ZOO["bidirectional_final"]()
    params = rnn_ref.from_torch(module)
    for ext in (".pt", ".safetensors"):
        path = rnn_ref.convert.write(params, tmp_path / f"m{ext}")
        assert rnn_ref.convert.read(path) == params  # dropout and all, no hint needed
    with pytest.raises(ValueError, match="the select hint says 'last_step'"):
        rnn_ref.convert.read(tmp_path / "m.pt", hints=rnn_ref.convert.Hints(select="last_step"))
    plain = {f"enc.{k}": v for k, v in module.state_dict().items()}
    torch.save(plain, tmp_path / "user.pt")
    with pytest.raises(MissingHintError, match="select"):
        rnn_ref.convert.read(tmp_path / "user.pt", hints=rnn_ref.convert.Hints("tanh"))
    hints = rnn_ref.convert.Hints("tanh", select="final", head_activation="linear")
    assert rnn_ref.convert.read(tmp_path / "user.pt", hints=hints) == params.replace(
        identities=[])


def test_today_state_dict_layouts_still_read() -> None:
    torch.manual_seed(0)
    rnn = nn.RNN(D, M, num_layers=2)
    assert rnn_ref.from_torch(rnn.state_dict(), nonlinearity="tanh") == rnn_ref.from_torch(rnn)
    with pytest.raises(ValueError, match="unexpected state dict key 'extra'"):
        rnn_ref.from_torch({**rnn.state_dict(), "extra": torch.zeros(1)}, nonlinearity="tanh")
    between = {"a.weight_ih_l0": rnn.weight_ih_l0, "a.weight_hh_l0": rnn.weight_hh_l0,
               "mid.weight": torch.zeros(2, 2), "b.weight_ih_l0": rnn.weight_ih_l0,
               "b.weight_hh_l0": rnn.weight_hh_l0}
    with pytest.raises(ValueError, match="'mid' between its nn.RNN weights"):
        rnn_ref.from_torch(between, nonlinearity="tanh")


class _Mul(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(torch.mul(x, 2))[0]


class _SoftmaxOverTime(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, batch_first=True)
        self.fc = nn.Linear(M, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.fc(self.rnn(x)[0]), dim=1)


class _Flipped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(torch.flip(x, [1]))[1][-1]


class _Added(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, h = self.rnn(x)
        return out[:, -1] + h[-1]


class _WrongIndex(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0][-1]  # the last sample, not the last step


@pytest.mark.parametrize(("cls", "named"), [
    (_Mul, "torch.mul"), (_SoftmaxOverTime, "softmax over dim=1"), (_Flipped, "torch.flip"),
    (_Added, "operator.add"), (_WrongIndex, "[-1]"),
])
def test_an_operation_that_is_not_a_piece_is_refused_by_name(cls: type, named: str) -> None:
    module = cls().eval()
    with pytest.raises(UnsupportedError, match=re.escape(named)):
        rnn_ref.from_torch(module)
    with pytest.raises(UnsupportedError, match=re.escape(named)):
        rnn_ref.oracle(module)(np.zeros((N, T, D), np.float32))


WHOLE = {
    "reverse-then-bidirectional": dict(hidden_size=[4, 3], direction=["reverse", "bidirectional"],
                                       select="final", head=[(3, "softmax")]),
    "reverse-last-processing": dict(hidden_size=4, direction="reverse", output_order="processing",
                                    select="last_step", head=[2]),
    "directions-own-activations": dict(hidden_size=4, direction="bidirectional",
                                       activation=("relu", "tanh"), merge_mode="ave",
                                       head=[(5, {"name": "elu", "alpha": 0.7}),
                                             (2, "log_softmax", False)]),
    "embedding-mask-zero": dict(hidden_size=[4, 4, 3], num_layers=3, vocab_size=V,
                                mask_zero=True, direction=["forward", "forward", "bidirectional"],
                                merge_mode=["concat", "concat", "sum"],
                                select="final_backward",
                                identities=[("dropout", 0.25, 1), ("alpha_dropout", 0.1, 3),
                                            ("dropout", 0.5, 4)], head=[(2, "sigmoid")]),
}


def _inputs(cfg: RNNConfig, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if cfg.vocab_size is not None:
        ids = rng.integers(1, cfg.vocab_size, (N, T))
        ids[0, 5:] = 0  # padding ids
        ids[1, 2] = 0  # a hole
        return ids
    return rng.standard_normal((N, T, cfg.input_size))


@pytest.mark.parametrize("kw", WHOLE.values(), ids=WHOLE.keys())
def test_to_torch_runs_the_whole_network(kw: dict) -> None:
    params = rnn_ref.init(RNNConfig(D, **kw), seed=3).astype(np.float32)
    x, lengths = _inputs(params.config, 4), np.array([T, 3, 1])
    net = rnn_ref.to_torch(params)
    assert rnn_ref.from_torch(net) == params
    xt = torch.from_numpy(x if x.dtype.kind == "i" else x.astype(np.float32))
    for la in (None, lengths):
        with torch.no_grad():
            got = net(xt, None if la is None else torch.from_numpy(la)).numpy()
        want = rnn_ref.forward(params, x, lengths=la).result
        np.testing.assert_allclose(got, want, atol=ATOL)
    backend = rnn_ref.get_backend("torch")
    mask = np.ones((N, T), bool)
    mask[2, 1] = mask[0, 6] = False
    res, ref = (f(params, x, mask=mask) for f in (backend.forward, rnn_ref.forward))
    for a, b in ((res.outputs, ref.outputs), (res.y, ref.y), (res.selected, ref.selected)):
        np.testing.assert_allclose(a, b, atol=ATOL)
    for a, b in zip(res.h_n, ref.h_n, strict=True):
        np.testing.assert_allclose(a, b, atol=ATOL)


def test_backend_gradients_through_embedding_and_head() -> None:
    from rnn_ref.gradient import backward

    cfg = RNNConfig(D, **WHOLE["embedding-mask-zero"])
    params = rnn_ref.init(cfg, seed=5).astype(np.float64)
    x = _inputs(params.config, 6)
    res = rnn_ref.forward(params, x)
    rng = np.random.default_rng(7)
    cot = {"grad_outputs": rng.standard_normal(res.outputs.shape),
           "grad_h_n": tuple(rng.standard_normal(h.shape) for h in res.h_n),
           "grad_y": rng.standard_normal(res.y.shape)}
    got = rnn_ref.get_backend("torch").backward(params, x, **cot)
    want = backward(params, x, **cot)
    for (k, a), (_, b) in zip(got.params.named_arrays(), want.params.named_arrays(),
                              strict=True):
        np.testing.assert_allclose(a, b, atol=1e-10, err_msg=k)
    np.testing.assert_allclose(got.x, want.x, atol=1e-10)


def test_padded_output_of_another_framework_converts_with_a_warning() -> None:
    params = rnn_ref.init(RNNConfig(D, M, padded_output="carry_output"), seed=0)
    with pytest.warns(SemanticsWarning, match="carry_output"):
        net = rnn_ref.to_torch(params)
    assert rnn_ref.from_torch(net).config.padded_output == "zeros"
    with pytest.raises(UnsupportedError, match="carry_output"):
        rnn_ref.to_torch(params, strict=True)
    # a final-state selection never hands a padded step on: the same result, no warning
    final = rnn_ref.to_torch(params.replace(select="final"), strict=True)
    assert rnn_ref.from_torch(final).config.select == "final"
    with pytest.raises(UnsupportedError, match="activation sigmoid"):
        rnn_ref.to_torch(rnn_ref.init(RNNConfig(D, M, activation="sigmoid"), seed=0))


@pytest.mark.filterwarnings("ignore:The tensor attributes")  # nn.RNN's own flat weights
def test_the_module_exports() -> None:
    module, x = ZOO["bidirectional_final"]()
    net = rnn_ref.to_torch(rnn_ref.from_torch(module))
    exported = torch.export.export(net, (x,))
    with torch.no_grad():
        np.testing.assert_array_equal(exported.module()(x).numpy(), net(x).numpy())


def test_keras_simple_rnn_converts_to_torch() -> None:
    keras = need("keras")
    layer = keras.layers.SimpleRNN(4)
    layer.build((None, None, D))
    params = rnn_ref.from_keras(layer)
    assert params.config.select == "final"  # return_sequences=False
    x = np.random.default_rng(8).standard_normal((N, T, D)).astype(np.float32)
    # Keras pads with carry_output, torch with zeros; a final state is the same either way
    assert params.config.padded_output == "carry_output"
    net = rnn_ref.to_torch(params)  # so no SemanticsWarning (the suite makes warnings errors)
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, np.asarray(layer(x)), atol=2e-6)


def test_options_are_never_silently_ignored() -> None:
    """batch_first=False is refused for a whole network (its module takes batch-first input),
    and a hint that contradicts what a module records is an error, not dropped."""
    params = rnn_ref.init(RNNConfig(D, [M, M], direction=["forward", "bidirectional"],
                                    select="final", head=[(2, "softmax")]), seed=3)
    with pytest.raises(UnsupportedError, match="batch_first=False"):
        rnn_ref.to_torch(params, batch_first=False)
    net = rnn_ref.to_torch(params)
    assert rnn_ref.from_torch(net, select="final") == rnn_ref.from_torch(net)
    with pytest.raises(ValueError, match="example= checks a module read from its fx graph"):
        rnn_ref.from_torch(net, example=torch.zeros(2, 3, D))
    for hint, value in (("select", "last_step"), ("nonlinearity", "relu"),
                        ("head_activation", "tanh")):
        with pytest.raises(ValueError, match=f"{hint}=.*but the module records"):
            rnn_ref.from_torch(net, **{hint: value})


# --------------------------------------------------------------------------------------------
# the patterns of torch tutorials: packed sequences, zero states, h_n slices, torch.compile,
# nn.RNNCell (issue 21); each checked against the module itself
# --------------------------------------------------------------------------------------------
TUTORIAL_ATOL = 1e-5  # float32 module against the float64 oracle
pack_padded_sequence = nn.utils.rnn.pack_padded_sequence
pad_packed_sequence = nn.utils.rnn.pad_packed_sequence


class _PackedFinal(nn.Module):
    """The standard recipe: pack, run, pad; the classifier on the last layer's h_n[-1]."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, num_layers=2, batch_first=True)
        self.fc = nn.Linear(M, 3)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True)
        return self.fc(h[-1])


class _PackedTagger(nn.Module):
    """A per-step head on pad_packed_sequence's output: max(lengths) steps, zeros after."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * M, 3)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
        return self.fc(out)


class _PackedLastStep(nn.Module):
    """``total_length=x.size(1)`` keeps T steps; ``out[:, -1, :]`` is then a padded zero for
    every shorter sample."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, batch_first=True, nonlinearity="relu")
        self.fc = nn.Linear(M, 3)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return self.fc(out[:, -1, :])


class _Sentiment(nn.Module):
    """The sentiment tutorial as written: time-major ids, lengths sorted longest first,
    pack/pad by attribute, dropout on ``cat((hidden[-2, :, :], hidden[-1, :, :]), dim=1)``."""

    def __init__(self, vocab_size: int = V, embedding_dim: int = D, hidden_dim: int = M,
                 output_dim: int = 1, n_layers: int = 2, dropout: float = 0.5) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.rnn = nn.RNN(embedding_dim, hidden_dim, num_layers=n_layers, bidirectional=True,
                          dropout=dropout)
        self.fc = nn.Linear(hidden_dim * 2, output_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, text: torch.Tensor, text_lengths: torch.Tensor) -> torch.Tensor:
        embedded = self.dropout(self.embedding(text))
        packed_embedded = nn.utils.rnn.pack_padded_sequence(embedded, text_lengths.to("cpu"))
        packed_output, hidden = self.rnn(packed_embedded)
        output, output_lengths = nn.utils.rnn.pad_packed_sequence(packed_output)
        hidden = self.dropout(torch.cat((hidden[-2, :, :], hidden[-1, :, :]), dim=1))
        return self.fc(hidden)


def _features(seed: int, shape: tuple[int, ...] = (N, T, D)) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape)
                            .astype(np.float32))


def _largest_error(got: np.ndarray, want: torch.Tensor) -> float:
    w = want.detach().numpy()
    assert np.shape(got) == w.shape, (np.shape(got), w.shape)
    return float(np.abs(np.asarray(got, np.float64) - w).max())


PACKED = {
    "final": (_PackedFinal, False, [T - 2, 2, 5]),  # max(lengths) < T: torch cuts to 5
    "tagger": (_PackedTagger, False, [3, T - 1, 1]),
    "last_step_total_length": (_PackedLastStep, False, [T, 2, 5]),
    "sentiment": (_Sentiment, True, [T, 5, 2]),  # sorted: enforce_sorted's default
}


@pytest.mark.parametrize("name", PACKED)
def test_packed_sequences_read_as_lengths(name: str) -> None:
    cls, time_major, lens = PACKED[name]
    torch.manual_seed(11)
    module = cls().eval()
    lengths = torch.tensor(lens)
    if cls is _Sentiment:
        x = torch.from_numpy(np.random.default_rng(12).integers(1, V, (T, N)))
    else:
        x = _features(12)
    with torch.no_grad():
        want = module(x, lengths)
    got = rnn_ref.oracle(module)(x.numpy(), lengths.numpy())
    assert _largest_error(got, want) < TUTORIAL_ATOL
    params = rnn_ref.from_torch(module, example=(x, lengths))
    assert params == rnn_ref.from_torch(module)
    assert params.config.padded_output == "zeros"
    with pytest.raises(ValueError, match=r"call the oracle with \(x, lengths\)"):
        rnn_ref.oracle(module)(x.numpy())


class _Tutorial(nn.Module):
    """The deep-learning-wizard variant: ``.requires_grad_()`` zeros, ``h0.detach()``."""

    def __init__(self, input_dim: int = D, hidden_dim: int = M, layer_dim: int = 2,
                 output_dim: int = 3) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.layer_dim = layer_dim
        self.rnn = nn.RNN(input_dim, hidden_dim, layer_dim, batch_first=True,
                          nonlinearity="relu")
        self.fc = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = torch.zeros(self.layer_dim, x.size(0), self.hidden_dim).requires_grad_()
        out, hn = self.rnn(x, h0.detach())
        out = self.fc(out[:, -1, :])
        return out


class _NewZerosBidirectional(nn.Module):
    """``x.new_zeros`` with ``x.shape[0]``; the final states of both directions."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * M, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = x.new_zeros(2, x.shape[0], M)
        _, hidden = self.rnn(x, h0)
        return self.fc(torch.cat((hidden[-2, :, :], hidden[-1, :, :]), dim=1))


class _LearnedState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.h0 = nn.Parameter(torch.ones(1, 1, M))
        self.rnn = nn.RNN(D, M, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x, self.h0.expand(1, x.size(0), M).contiguous())[0]


@pytest.mark.parametrize("cls", [_Tutorial, _NewZerosBidirectional])
def test_a_zero_initial_state_from_the_batch_size_is_the_default(cls: type) -> None:
    torch.manual_seed(13)
    module, x = cls().eval(), _features(14)
    with torch.no_grad():
        want = module(x)
    assert _largest_error(rnn_ref.oracle(module)(x.numpy()), want) < TUTORIAL_ATOL
    params = rnn_ref.from_torch(module, example=x)
    with torch.no_grad():
        got = rnn_ref.to_torch(params)(x)
    assert _largest_error(got.numpy(), want) < TUTORIAL_ATOL
    other = _features(15, (N + 2, T + 3, D))  # any batch and length: the state is the default
    with torch.no_grad():
        assert _largest_error(rnn_ref.oracle(module)(other.numpy()), module(other)) \
            < TUTORIAL_ATOL


def test_a_state_that_is_not_zeros_is_refused() -> None:
    with pytest.raises(UnsupportedError, match="the tensor self.h0 used directly"):
        rnn_ref.from_torch(_LearnedState())  # a learned initial state


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's own imports
def test_a_compiled_module_is_read_through_its_model() -> None:
    from zoo_torch import ZOO as zoo

    module, x = zoo["zero_state_classifier"]()
    compiled = torch.compile(module)
    with torch.no_grad():
        want = module(x)  # the module itself: the compiled one is never run
    assert _largest_error(rnn_ref.oracle(compiled)(x.numpy()), want) < TUTORIAL_ATOL
    assert rnn_ref.from_torch(compiled, example=x) == rnn_ref.from_torch(module)
    rnn = torch.compile(nn.RNN(D, M, batch_first=True))
    assert rnn_ref.from_torch(rnn) == rnn_ref.from_torch(rnn._orig_mod)


class _CellLoop(nn.Module):
    """An nn.RNNCell stepped in a Python loop over x.size(1); the classifier on the last h."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden_size = M
        self.cell = nn.RNNCell(D, M, nonlinearity="relu")
        self.fc = nn.Linear(M, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.size(0), self.hidden_size)
        for t in range(x.size(1)):
            h = self.cell(x[:, t], h)
        return self.fc(h)


class _CellSequence(nn.Module):
    """Every step's state stacked on the time axis, a per-step head (hx left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn_cell = nn.RNNCell(D, M)
        self.out = nn.Linear(M, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = x.shape
        h = None
        outputs = []
        for t in range(steps):
            h = self.rnn_cell(x[:, t, :], h)
            outputs.append(h)
        return torch.log_softmax(self.out(torch.stack(outputs, dim=1)), dim=-1)


class _FixedSteps(nn.Module):
    """Five steps whatever the input's length: right only for T = 5."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.RNNCell(D, M)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.size(0), M)
        for t in range(5):
            h = self.cell(x[:, t], h)
        return h


@pytest.mark.parametrize("cls", [_CellLoop, _CellSequence])
def test_an_rnn_cell_stepped_in_a_loop_reads_for_every_length(cls: type) -> None:
    torch.manual_seed(16)
    module = cls().eval()
    for shape in ((N, T, D), (N + 1, T + 4, D), (1, 2, D)):
        x = _features(17, shape)
        with torch.no_grad():
            want = module(x)
        assert _largest_error(rnn_ref.oracle(module)(x.numpy()), want) < TUTORIAL_ATOL
    x = _features(18)
    params = rnn_ref.from_torch(module, example=x)
    with torch.no_grad():
        assert _largest_error(rnn_ref.to_torch(params)(x).numpy(), module(x)) < TUTORIAL_ATOL
    with pytest.raises(UnsupportedError, match=r"from_torch\(module, example=x\)") as exc:
        rnn_ref.from_torch(module)  # a loop over x.size(1) needs the input's length
    assert "nn.RNNCell" in str(exc.value)


def test_a_fixed_number_of_cell_steps_is_refused() -> None:
    module = _FixedSteps().eval()
    with pytest.raises(UnsupportedError, match="5 steps of an nn.RNNCell on an input of"):
        rnn_ref.from_torch(module, example=_features(19, (N, 5, D)))
    with pytest.raises(UnsupportedError, match="5 steps of an nn.RNNCell on an input of 7"):
        rnn_ref.oracle(module)(_features(19).numpy())


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_a_bare_rnn_cell_is_one_step(nonlinearity: str) -> None:
    torch.manual_seed(20)
    cell = nn.RNNCell(D, M, nonlinearity=nonlinearity)
    x, h = _features(21, (N, D)), _features(22, (N, M))
    f = rnn_ref.oracle(cell)
    with torch.no_grad():
        assert _largest_error(f(x.numpy(), h.numpy()), cell(x, h)) < TUTORIAL_ATOL
        assert _largest_error(f(x.numpy()), cell(x)) < TUTORIAL_ATOL
        assert _largest_error(f(x[0].numpy(), h[0].numpy()), cell(x[0], h[0])) < TUTORIAL_ATOL
    params = rnn_ref.from_torch(cell)
    assert params.config.select == "final" and params.config.activations[0][0].name == \
        nonlinearity


class _DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, batch_first=True)
        self.fc = nn.Linear(M, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, h = self.rnn(x)
        if out.sum() > 0:
            return self.fc(h[-1])
        return self.fc(out[:, -1])


def test_a_forward_fx_cannot_follow_names_its_line_and_what_the_module_holds() -> None:
    with pytest.raises(UnsupportedError) as exc:
        rnn_ref.from_torch(_DataDependent(), example=_features(23))
    text = str(exc.value)
    assert "if out.sum() > 0:" in text and "test_torch_models.py:" in text
    assert "the module holds rnn (torch.nn.RNN), fc (torch.nn.Linear)" in text
    with pytest.raises(UnsupportedError, match=r"torch\.mul at test_torch_models\.py:\d+ "
                                               r"`return self\.rnn\(torch\.mul\(x, 2\)\)\[0\]`"):
        rnn_ref.from_torch(_Mul())


class _PackedMean(nn.Module):
    """``out.mean(dim=1)`` after pad_packed_sequence: over max(lengths) steps, padded zeros
    included (select="mean_all")."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, batch_first=True)
        self.fc = nn.Linear(M, 3)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True)
        return self.fc(out.mean(dim=1))


class _MaxPool(nn.Module):
    """``out.max(dim=1)[0]`` of a bidirectional layer (select="max_all")."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * M, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.fc(out.max(dim=1)[0])


class _MaxValues(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, num_layers=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.max(self.rnn(x)[0], 0).values  # time-major: time is dim 0


def test_pooling_over_time_reads_and_converts() -> None:
    torch.manual_seed(24)
    x, lengths = _features(25), torch.tensor([5, 2, 4])
    packed = _PackedMean().eval()
    with torch.no_grad():
        want = packed(x, lengths)
    assert _largest_error(rnn_ref.oracle(packed)(x.numpy(), lengths.numpy()), want) \
        < TUTORIAL_ATOL
    assert rnn_ref.from_torch(packed).config.select == "mean_all"
    for module, xin in ((_MaxPool().eval(), x), (_MaxValues().eval(), x.transpose(0, 1))):
        with torch.no_grad():
            want = module(xin)
        assert _largest_error(rnn_ref.oracle(module)(xin.numpy()), want) < TUTORIAL_ATOL
        params = rnn_ref.from_torch(module, example=xin)
        assert params.config.select == "max_all"
        with torch.no_grad():
            got = rnn_ref.to_torch(params)(x)
        assert _largest_error(got.numpy(), want) < TUTORIAL_ATOL


@pytest.mark.parametrize("select", ["mean_valid", "mean_all", "max_all"])
def test_to_torch_pools_over_time_with_padding(select: str) -> None:
    params = rnn_ref.init(RNNConfig(D, M, direction="bidirectional", select=select,
                                    head=[3]), seed=26).astype(np.float32)
    x, lengths = _features(27).numpy(), np.array([T, 3, 1])
    net = rnn_ref.to_torch(params)
    assert rnn_ref.from_torch(net) == params
    for la in (None, lengths):
        with torch.no_grad():
            got = net(torch.from_numpy(x), None if la is None else torch.from_numpy(la))
        want = rnn_ref.forward(params, x, lengths=la).result
        np.testing.assert_allclose(got.numpy(), want, atol=TUTORIAL_ATOL)


class _LanguageModel(nn.Module):
    """A language model: ``(logits per step, hidden)``, with a zero initial state."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(V, D)
        self.rnn = nn.RNN(D, M, num_layers=2, batch_first=True)
        self.decoder = nn.Linear(M, V)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h0 = torch.zeros(2, ids.size(0), M, device=ids.device)
        output, hidden = self.rnn(self.embed(ids), h0)
        return self.decoder(output), hidden


class _Encoder(nn.Module):
    """A seq2seq encoder (time-major, packed): ``(outputs, hidden)``."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, bidirectional=True)

    def forward(self, src: torch.Tensor, src_len: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        packed = nn.utils.rnn.pack_padded_sequence(src, src_len.to("cpu"), enforce_sorted=False)
        packed_outputs, hidden = self.rnn(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(packed_outputs)
        return outputs, hidden


class _ResultAndLastState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * M, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out, h = self.rnn(x)
        return self.fc(out.mean(dim=1)), h[-1, :, :], out


def test_modules_returning_several_outputs() -> None:
    torch.manual_seed(28)
    ids = torch.from_numpy(np.random.default_rng(29).integers(0, V, (N, T)))
    x, lengths = _features(30), torch.tensor([4, T, 2])
    cases = [(_LanguageModel(), (ids,), ("result", "h_n"), (ids, None)),
             (_Encoder(), (x.transpose(0, 1), lengths), ("result", "h_n"), (x, lengths)),
             (_ResultAndLastState(), (x,), ("result", "h_n[-1]", "sequence"), (x, None))]
    for module, args, names, (xb, lb) in cases:
        module.eval()
        with torch.no_grad():
            want = module(*args)
        got = rnn_ref.oracle(module)(*[a.numpy() for a in args])
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert _largest_error(g, w) < TUTORIAL_ATOL
        params = rnn_ref.from_torch(module, example=args if len(args) > 1 else args[0])
        assert params.config.returns == names
        net = rnn_ref.to_torch(params)  # a TorchNetwork returning them, batch-first
        with torch.no_grad():
            mine = net(xb, lb)
        want = returned(params.config, rnn_ref.forward(
            params, xb.numpy(), lengths=None if lb is None else lb.numpy()))
        assert len(mine) == len(want)
        for g, w in zip(mine, want, strict=True):
            assert _largest_error(w, g) < TUTORIAL_ATOL
