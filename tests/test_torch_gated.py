"""torch nn.GRU and nn.LSTM (issue 23) read into the oracle and from_torch: the modules with
every switch, their cells, users' modules around them (read from their fx graphs), state
dicts and files; each against torch's own output in float64, and the refusals."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import need

import rnn_ref
from rnn_ref import UnsupportedError
from rnn_ref.convert import Hints

torch = need("torch")
nn = torch.nn
pack = nn.utils.rnn.pack_padded_sequence
unpack_seq = nn.utils.rnn.pad_packed_sequence

N, T, D, M, P, V, K = 3, 7, 5, 6, 4, 11, 2  # all different, so a transpose cannot hide
LENGTHS = np.array([T, 2, 5])  # unsorted: enforce_sorted=False
ATOL = 1e-13  # float64 torch against the float64 oracle (measured ~2e-16)
RNNS = {"gru": nn.GRU, "lstm": nn.LSTM}


def _seeded(module: Any, seed: int = 0) -> Any:
    """``module`` in float64, eval mode, every parameter (biases too) drawn non-zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) - 0.5)
    return module.double().eval()


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _close(got: Any, want: Any) -> None:
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
    assert np.shape(got) == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


# --------------------------------------------------------------------------------------------
# nn.GRU / nn.LSTM themselves: every switch
# --------------------------------------------------------------------------------------------
CELLS = {"gru": ("gru", None), "lstm": ("lstm", None), "lstm-proj": ("lstm", P)}
SWITCHES = list(itertools.product([1, 2], [False, True], [True, False], [False, True],
                                  [False, True], [False, True]))


def _switch_id(s: tuple[Any, ...]) -> str:
    layers, bidir, bias, batch_first, packed, state = s
    return "-".join([f"L{layers}", "bi" if bidir else "uni", "bias" if bias else "nobias",
                     "bf" if batch_first else "tm", "packed" if packed else "full",
                     "h0" if state else "zero"])


def _module(cell: str, layers: int = 1, bidir: bool = False, bias: bool = True,
            batch_first: bool = False, seed: int = 0) -> Any:
    kind, proj = CELLS[cell]
    extra = {"proj_size": proj} if proj else {}
    return _seeded(RNNS[kind](D, M, num_layers=layers, bidirectional=bidir, bias=bias,
                              batch_first=batch_first, **extra), seed)


@pytest.mark.parametrize("switches", SWITCHES, ids=[_switch_id(s) for s in SWITCHES])
@pytest.mark.parametrize("cell", CELLS)
def test_module_oracle_and_from_torch_match_torch(cell: str, switches: tuple[Any, ...]
                                                  ) -> None:
    layers, bidir, bias, batch_first, packed, state = switches
    module = _module(cell, layers, bidir, bias, batch_first, seed=layers + 2 * bidir)
    lstm = isinstance(module, nn.LSTM)
    S, width = layers * (2 if bidir else 1), module.proj_size or M
    x = _rng(1).standard_normal((N, T, D))
    xin = x if batch_first else x.transpose(1, 0, 2).copy()
    h0 = _rng(2).standard_normal((S, N, width)) if state else None
    c0 = _rng(3).standard_normal((S, N, M)) if state and lstm else None
    hx: Any = None if h0 is None else (h0, c0) if lstm else h0
    thx: Any = None if h0 is None else (torch.from_numpy(h0), torch.from_numpy(c0)) \
        if lstm else torch.from_numpy(h0)
    with torch.no_grad():
        if packed:
            seq = pack(torch.from_numpy(xin), torch.from_numpy(LENGTHS), batch_first=batch_first,
                       enforce_sorted=False)
            out_p, final = module(seq, thx)
            out = unpack_seq(out_p, batch_first=batch_first)[0]
        else:
            out, final = module(torch.from_numpy(xin), thx)
    h_n, c_n = final if lstm else (final, None)
    lengths = LENGTHS if packed else None
    got_out, got_final = rnn_ref.oracle(module)(xin, hx, lengths=lengths)
    _close(got_out, out)
    _close(got_final[0] if lstm else got_final, h_n)
    if lstm:
        _close(got_final[1], c_n)

    params = rnn_ref.from_torch(module)
    cfg = params.config
    assert cfg.cell == CELLS[cell][0] and cfg.proj_size == CELLS[cell][1]
    assert cfg.bias == bias and cfg.num_layers == layers
    res = rnn_ref.forward(params, x if not packed else x[:, :LENGTHS.max()], h0=h0, c0=c0,
                          lengths=lengths, padded_output="zeros")
    _close(res.outputs, out if batch_first else out.transpose(0, 1))
    _close(res.h_n, h_n)
    if lstm:
        _close(res.c_n, c_n)
    assert rnn_ref.from_torch(module.state_dict()) == params
    assert rnn_ref.from_torch({f"model.enc.{k}": v for k, v in module.state_dict().items()}
                              ) == params


@pytest.mark.parametrize("cell", CELLS)
def test_blocks_are_torch_gates_by_name(cell: str) -> None:
    """Each canonical block is torch's own slice of its packed rows (r, z, n; i, f, g, o),
    transposed: checked without running anything."""
    module = _module(cell, layers=2, bidir=True)
    params = rnn_ref.from_torch(module)
    order = ("r", "z", "n") if cell == "gru" else ("i", "f", "g", "o")
    for li, r in itertools.product(range(2), range(2)):
        sfx = f"_l{li}" + ("_reverse" if r else "")
        got = params.layers[li][r]
        for k, gate in enumerate(order):
            rows = slice(k * M, (k + 1) * M)
            w_ih = getattr(module, f"weight_ih{sfx}").detach().numpy()
            w_hh = getattr(module, f"weight_hh{sfx}").detach().numpy()
            assert np.array_equal(got.w_x[gate], w_ih[rows].T)
            assert np.array_equal(got.w_h[gate], w_hh[rows].T)
            assert np.array_equal(got.b_x[gate], getattr(module, f"bias_ih{sfx}")
                                  .detach().numpy()[rows])
            assert np.array_equal(got.b_h[gate], getattr(module, f"bias_hh{sfx}")
                                  .detach().numpy()[rows])
        if cell == "lstm-proj":
            assert np.array_equal(got.w_proj, getattr(module, f"weight_hr{sfx}")
                                  .detach().numpy().T)


@pytest.mark.parametrize("cell", CELLS)
def test_unbatched_input(cell: str) -> None:
    module = _module(cell, layers=2, bidir=True, batch_first=True)
    lstm = isinstance(module, nn.LSTM)
    x = _rng(4).standard_normal((T, D))
    h0 = _rng(5).standard_normal((4, module.proj_size or M))
    c0 = _rng(6).standard_normal((4, M))
    thx = (torch.from_numpy(h0), torch.from_numpy(c0)) if lstm else torch.from_numpy(h0)
    with torch.no_grad():
        out, final = module(torch.from_numpy(x), thx)
    got_out, got_final = rnn_ref.oracle(module)(x, (h0, c0) if lstm else h0)
    _close(got_out, out)
    for g, w in zip(got_final if lstm else [got_final], final if lstm else [final],
                    strict=True):
        _close(g, w)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_cells_step_as_torch_does(kind: str) -> None:
    cell = _seeded((nn.GRUCell if kind == "gru" else nn.LSTMCell)(D, M), seed=7)
    x = _rng(8).standard_normal((N, D))
    h, c = _rng(9).standard_normal((N, M)), _rng(10).standard_normal((N, M))
    f = rnn_ref.oracle(cell)
    with torch.no_grad():
        if kind == "gru":
            _close(f(x, h), cell(torch.from_numpy(x), torch.from_numpy(h)))
            _close(f(x), cell(torch.from_numpy(x)))
            _close(f(x[0], h[0]), cell(torch.from_numpy(x[0]), torch.from_numpy(h[0])))
        else:
            for args, targs in (((x, (h, c)), (torch.from_numpy(x), (torch.from_numpy(h),
                                                                      torch.from_numpy(c)))),
                                ((x,), (torch.from_numpy(x),)),
                                ((x[0], (h[0], c[0])), (torch.from_numpy(x[0]),
                                                        (torch.from_numpy(h[0]),
                                                         torch.from_numpy(c[0]))))):
                got, want = f(*args), cell(*targs)
                _close(got[0], want[0])
                _close(got[1], want[1])
    params = rnn_ref.from_torch(cell)
    assert params.config.select == "final" and params.config.cell == kind
    with pytest.raises(ValueError, match="takes hx=" if kind == "lstm" else "one tensor"):
        f(x, h if kind == "lstm" else (h, c))


def test_parametrized_weights_read_as_torch_computes_with_them() -> None:
    """A weight under ``torch.nn.utils.parametrize`` (weight_norm) is read through the
    module's attribute, its value: the state dict holds only its parametrization."""
    from torch.nn.utils.parametrizations import weight_norm

    module = weight_norm(_module("lstm", layers=2, batch_first=True), "weight_hh_l1")
    x = _rng(12).standard_normal((N, T, D))
    with torch.no_grad():
        out, (h_n, c_n) = module(torch.from_numpy(x))
    got_out, (got_h, got_c) = rnn_ref.oracle(module)(x)
    for g, w in ((got_out, out), (got_h, h_n), (got_c, c_n)):
        _close(g, w)


# --------------------------------------------------------------------------------------------
# users' modules around them, read from their graphs
# --------------------------------------------------------------------------------------------
class TextClassifier(nn.Module):
    """The tutorials' sentiment model: embedding, packed bidirectional 2-layer LSTM with
    dropout, cat of the last layer's two final states, dropout, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(V, D, padding_idx=0)
        self.lstm = nn.LSTM(D, M, num_layers=2, bidirectional=True, batch_first=True,
                            dropout=0.25)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(2 * M, K)

    def forward(self, text: Any, text_lengths: Any) -> Any:
        embedded = self.dropout(self.embedding(text))
        packed = pack(embedded, text_lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_output, (hidden, cell) = self.lstm(packed)
        hidden = self.dropout(torch.cat((hidden[-2, :, :], hidden[-1, :, :]), dim=1))
        return self.fc(hidden)


class Tagger(nn.Module):
    """A sequence tagger: packed GRU, its outputs padded back, a linear per step."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(D, M, bidirectional=True, batch_first=True)
        self.hidden2tag = nn.Linear(2 * M, K)

    def forward(self, x: Any, lengths: Any) -> Any:
        out, _ = self.gru(pack(x, lengths, batch_first=True, enforce_sorted=False))
        out, _ = unpack_seq(out, batch_first=True, total_length=x.size(1))
        return torch.log_softmax(self.hidden2tag(out), dim=-1)


class LastStep(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(D, M, num_layers=2, batch_first=True, bias=False)
        self.fc = nn.Linear(M, K)

    def forward(self, x: Any) -> Any:
        out, h_n = self.rnn(x)
        return torch.sigmoid(self.fc(out[:, -1]))


class MeanPooled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(D, M, proj_size=P, batch_first=True)
        self.head = nn.Linear(P, K)

    def forward(self, x: Any) -> Any:
        out, _ = self.lstm(x)
        return torch.softmax(self.head(out.mean(dim=1)), dim=-1)


class FinalState(nn.Module):
    """``h_n[-1]`` of a time-major LSTM started from explicit zero states."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.LSTM(D, M, num_layers=2)
        self.decoder = nn.Linear(M, K)

    def forward(self, x: Any) -> Any:
        h0 = torch.zeros(2, x.size(1), M, dtype=x.dtype)
        c0 = torch.zeros(2, x.size(1), M, dtype=x.dtype)
        _, (h_n, _) = self.encoder(x, (h0, c0))
        return self.decoder(h_n[-1])


class Squeezed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(D, M, batch_first=True)
        self.out = nn.Linear(M, K)

    def forward(self, x: Any) -> Any:
        _, hidden = self.gru(x, torch.zeros(1, x.size(0), M).to(x.dtype))
        return self.out(hidden.squeeze(0))


class Encoder(nn.Module):
    """A seq2seq encoder returning ``(outputs, (h_n, c_n))`` as nn.LSTM does."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(V, D)
        self.rnn = nn.LSTM(D, M, num_layers=2, bidirectional=True, proj_size=P)

    def forward(self, src: Any) -> Any:
        outputs, (hidden, cell) = self.rnn(self.embedding(src))
        return outputs, (hidden, cell)


class LanguageModel(nn.Module):
    """The word language model's ``(decoded, hidden)``, hidden an LSTM's (h_n, c_n)."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.2)
        self.encoder = nn.Embedding(V, D)
        self.rnn = nn.LSTM(D, M, 2, dropout=0.2)
        self.decoder = nn.Linear(M, V)

    def forward(self, input: Any) -> Any:
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb)
        decoded = self.decoder(self.drop(output))
        return torch.log_softmax(decoded, dim=-1), hidden


class StatesOut(nn.Module):
    """The head's result with the last layer's final h and c, as Keras' return_state."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(D, M, batch_first=True, num_layers=2)
        self.fc = nn.Linear(M, K)

    def forward(self, x: Any) -> Any:
        out, (h, c) = self.lstm(x)
        return self.fc(h[-1]), h[-1], c[1]


class Stacked(nn.Module):
    """An LSTM, then a GRU on its outputs (one chain of two modules)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(D, M, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(2 * M, P, batch_first=True)
        self.fc = nn.Linear(P, K)

    def forward(self, x: Any) -> Any:
        out, _ = self.lstm(x)
        out, _ = self.gru(out)
        return self.fc(out[:, -1])


class GRUCellLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(D, M)
        self.fc = nn.Linear(M, K)

    def forward(self, x: Any) -> Any:
        h = torch.zeros(x.size(0), M, dtype=x.dtype)
        for t in range(x.size(1)):
            h = self.cell(x[:, t], h)
        return self.fc(h)


class LSTMCellLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(D, M)
        self.fc = nn.Linear(M, K)

    def forward(self, x: Any) -> Any:
        hx = torch.zeros(x.size(0), M, dtype=x.dtype)
        cx = torch.zeros(x.size(0), M, dtype=x.dtype)
        outputs = []
        for t in range(x.size(1)):
            hx, cx = self.cell(x[:, t], (hx, cx))
            outputs.append(hx)
        return self.fc(torch.stack(outputs, dim=1))


class LSTMCellPairLoop(nn.Module):
    """The LSTMCell's (h, c) handed back whole, its h taken last."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(D, M, bias=False)

    def forward(self, x: Any) -> Any:
        state = self.cell(x[:, 0, :])
        for t in range(1, x.size(1)):
            state = self.cell(x[:, t, :], state)
        return state[0]


#: name -> (module class, input kind: "x" (N, T, D), "tm" (T, N, D), "ids" (N, T),
#: "ids-tm" (T, N), whether the forward takes lengths, whether it loops over x.size(1))
USER_MODULES: dict[str, tuple[type, str, bool, bool]] = {
    "text-classifier": (TextClassifier, "ids", True, False),
    "tagger": (Tagger, "x", True, False),
    "last-step": (LastStep, "x", False, False),
    "mean-pooled": (MeanPooled, "x", False, False),
    "final-state": (FinalState, "tm", False, False),
    "squeezed": (Squeezed, "x", False, False),
    "encoder": (Encoder, "ids-tm", False, False),
    "language-model": (LanguageModel, "ids-tm", False, False),
    "states-out": (StatesOut, "x", False, False),
    "stacked": (Stacked, "x", False, False),
    "gru-cell-loop": (GRUCellLoop, "x", False, True),
    "lstm-cell-loop": (LSTMCellLoop, "x", False, True),
    "lstm-cell-pair-loop": (LSTMCellPairLoop, "x", False, True),
}


def _user_input(kind: str, seed: int = 11) -> np.ndarray:
    rng = _rng(seed)
    if kind.startswith("ids"):
        ids = rng.integers(1, V, (N, T))
        return ids.T.copy() if kind == "ids-tm" else ids
    x = rng.standard_normal((N, T, D))
    return x.transpose(1, 0, 2).copy() if kind == "tm" else x


def _flat(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [v for item in value for v in _flat(item)]
    return [value]


@pytest.mark.parametrize("name", USER_MODULES)
def test_users_modules_compute_what_torch_does(name: str) -> None:
    cls, kind, takes_lengths, loops = USER_MODULES[name]
    module = _seeded(cls(), seed=12)
    x = _user_input(kind)
    args = (x, LENGTHS) if takes_lengths else (x,)
    targs = tuple(torch.from_numpy(a) for a in args)
    with torch.no_grad():
        want = module(*targs)
    got = rnn_ref.oracle(module)(*args)
    assert type(got) is type(want) or not isinstance(want, tuple)
    assert [np.shape(g) for g in _flat(got)] == [tuple(w.shape) for w in _flat(want)]
    for g, w in zip(_flat(got), _flat(want), strict=True):
        _close(g, w)
    example = targs if takes_lengths else targs[0]
    params = rnn_ref.from_torch(module, example=example)  # checked against torch on it
    if not loops:
        assert rnn_ref.from_torch(module) == params
    assert params.config.cell in ("gru", "lstm", ("lstm", "gru"))


def test_what_the_graphs_read_as() -> None:
    """The configs read from the users' modules: selections, dropout, returns."""
    def cfg(name: str) -> Any:
        cls, kind, takes, _ = USER_MODULES[name]
        x = torch.from_numpy(_user_input(kind))
        example = (x, torch.from_numpy(LENGTHS)) if takes else x
        return rnn_ref.from_torch(_seeded(cls()), example=example).config

    c = cfg("text-classifier")
    assert (c.select, c.cell, c.directions, c.vocab_size) == (
        "final", "lstm", ("bidirectional",) * 2, V)
    assert [(i.kind, i.rate, i.after) for i in c.identities] == [
        ("dropout", 0.5, 0), ("dropout", 0.25, 1), ("dropout", 0.5, 2)]
    assert cfg("mean-pooled").select == "mean_all" and cfg("mean-pooled").proj_size == P
    assert cfg("last-step").bias is False
    assert cfg("encoder").returns == ("result", "h_n", "c_n")
    assert cfg("language-model").returns == ("result", "h_n", "c_n")
    assert cfg("states-out").returns == ("result", "h_n[-1]", "c_n[1]")
    s = cfg("stacked")
    assert s.cell == ("lstm", "gru") and s.hidden_sizes == (M, P)
    assert s.select == "last_step"


# --------------------------------------------------------------------------------------------
# state dicts and files
# --------------------------------------------------------------------------------------------
def test_state_dict_files_read_and_verify(tmp_path: Path) -> None:
    module = _seeded(TextClassifier())
    params = rnn_ref.from_torch(module)
    torch.save({f"model.{k}": v for k, v in module.state_dict().items()}, tmp_path / "m.pt")
    hints = Hints(select="final", head_activation="linear")
    want = params.replace(identities=[], padding_idx=None)  # a state dict records neither
    path = tmp_path / "m.pt"
    assert rnn_ref.convert.read(path, hints=hints) == want  # no activation hint needed
    assert rnn_ref.convert.read(path, hints=Hints("tanh", select="final",
                                                  head_activation="linear")) == want
    with pytest.raises(ValueError, match="candidate activation is tanh"):
        rnn_ref.convert.read(path, hints=Hints("relu", select="final", head_activation="linear"))
    done = rnn_ref.convert.convert(path, tmp_path / "m.npz", hints=hints, verify=True)
    assert done.verification is not None and done.verification.passed  # the file run in torch
    lstm = _module("lstm-proj", layers=2, bidir=True)
    from safetensors.torch import save_file

    torch.save(lstm.state_dict(), tmp_path / "lstm.pt")
    save_file(lstm.state_dict(), str(tmp_path / "lstm.safetensors"))
    for ext in (".pt", ".safetensors"):
        done = rnn_ref.convert.convert(tmp_path / f"lstm{ext}", tmp_path / f"lstm{ext}.npz",
                                       verify=True)
        assert done.verification is not None and done.verification.passed
        assert rnn_ref.convert.read(tmp_path / f"lstm{ext}.npz") == rnn_ref.from_torch(lstm)


def test_a_state_dict_says_its_cell_by_shapes() -> None:
    gru, lstm = _module("gru", layers=2), _module("lstm-proj")
    assert rnn_ref.from_torch(gru.state_dict()).config.cell == "gru"
    assert rnn_ref.from_torch(lstm.state_dict()).config.proj_size == P
    rnn = nn.RNN(D, M).double()
    with pytest.raises(ValueError, match="does not record the nonlinearity"):
        rnn_ref.from_torch({**rnn.state_dict(),
                            **{f"b.{k}": v for k, v in gru.state_dict().items()}})
    bad = dict(gru.state_dict())
    bad["weight_hh_l0"] = torch.zeros(2 * M, M, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"weight_hh_l0 has shape \(12, 6\)"):
        rnn_ref.from_torch(bad)
    bad = dict(gru.state_dict())
    bad["weight_ih_l1"] = torch.zeros(4 * M, M, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"weight_ih_l1 has shape \(24, 6\); the GRU"):
        rnn_ref.from_torch(bad)
    cut = {k: v for k, v in lstm.state_dict().items() if not k.startswith("weight_hr")}
    with pytest.raises(ValueError, match=r"weight_hh_l0 has shape \(24, 4\)"):
        rnn_ref.from_torch(cut)  # 4H/P = 6: no module's; never read as another
    with pytest.raises(ValueError, match="nonlinearity='relu'"):
        rnn_ref.from_torch(gru.state_dict(), nonlinearity="relu")


# --------------------------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------------------------
class OwnForwardLSTM(nn.LSTM):
    def forward(self, input: Any, hx: Any = None) -> Any:  # type: ignore[override]
        out, state = super().forward(input, hx)
        return out * 2, state


class HoldsOwnForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = OwnForwardLSTM(D, M, batch_first=True)

    def forward(self, x: Any) -> Any:
        return self.enc(x)[0]


class GivenState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(D, M, batch_first=True)

    def forward(self, x: Any, hidden: Any) -> Any:
        return self.lstm(x, hidden)[0]


class CellStateFeatures(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(D, M, batch_first=True)
        self.fc = nn.Linear(M, K)

    def forward(self, x: Any) -> Any:
        _, (h, c) = self.lstm(x)
        return self.fc(c[-1])


@pytest.mark.parametrize(("make", "named"), [
    (lambda: OwnForwardLSTM(D, M), "OwnForwardLSTM"),
    (HoldsOwnForward, "OwnForwardLSTM (self.enc)"),
    (GivenState, "an initial state given to self.lstm that is not zeros"),
    (CellStateFeatures, "torch.nn.Linear (self.fc) on an nn.LSTM's cell state c_n[k]"),
], ids=["subclass-own-forward", "holds-subclass", "given-state", "cell-state-features"])
def test_what_the_reference_cannot_say_is_refused_by_name(make: Any, named: str) -> None:
    module = make().double().eval()
    with pytest.raises(UnsupportedError, match=re.escape(named)):
        rnn_ref.from_torch(module)
    with pytest.raises(UnsupportedError, match=re.escape(named)):
        rnn_ref.oracle(module)(np.zeros((N, T, D)))


def test_read_modules_write_back_as_torch_modules() -> None:
    """to_torch (issue 24) writes back what was read: the same module type, the same
    weights (tests/test_torch_gated_write.py holds the writer's own tests)."""
    for module in (_module("gru"), _module("lstm-proj", layers=2, bidir=True)):
        params = rnn_ref.from_torch(module)
        back = rnn_ref.to_torch(params, batch_first=module.batch_first)
        assert type(back) is type(module) and back.proj_size == module.proj_size
        for (k, a), (k2, b) in zip(module.state_dict().items(), back.state_dict().items(),
                                   strict=True):
            assert k == k2 and torch.equal(a, b)
        assert rnn_ref.convert.convertible(params)["torch"] is None
