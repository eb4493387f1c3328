"""torch.nn.RNN: bit-exact converters, the oracle against torch, the backend, refusals."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest
from conftest import need

import rnn_ref
from rnn_ref import RNNConfig, UnsupportedError

torch = need("torch")
nn = torch.nn

N, T, D, M = 3, 7, 5, 4  # all different, so a transpose cannot hide


def _x(seed: int = 0, n: int = N, t: int = T) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, t, D)).astype(np.float32)


def _module(seed: int, **kw: object) -> nn.RNN:
    torch.manual_seed(seed)
    return nn.RNN(D, M, **kw).eval()


MODULES = {
    "1layer-tanh": {},
    "2layer-bidir": {"num_layers": 2, "bidirectional": True},
    "relu-nobias": {"nonlinearity": "relu", "bias": False, "num_layers": 2},
    "time-major": {"batch_first": False, "bidirectional": True},
}


@pytest.mark.parametrize("kw", MODULES.values(), ids=MODULES.keys())
def test_round_trip_is_bit_exact(kw: dict) -> None:
    module = _module(1, **{"batch_first": True, **kw})
    params = rnn_ref.from_torch(module)
    assert params.layers[0][0].b_h.any() == module.bias  # both biases kept
    again = rnn_ref.to_torch(params, batch_first=module.batch_first)
    for (k, a), (k2, b) in zip(module.state_dict().items(), again.state_dict().items(),
                               strict=True):
        assert k == k2 and torch.equal(a, b), k
    assert rnn_ref.from_torch(again) == params
    assert rnn_ref.from_torch(module.state_dict(), nonlinearity=module.nonlinearity) == params


@pytest.mark.parametrize("kw", MODULES.values(), ids=MODULES.keys())
def test_oracle_matches_torch(kw: dict) -> None:
    module = _module(2, **{"batch_first": True, **kw})
    R, L = (2 if module.bidirectional else 1), module.num_layers
    x = _x(3)
    hx = np.random.default_rng(4).standard_normal((L * R, N, M)).astype(np.float32)
    xin = x if module.batch_first else x.transpose(1, 0, 2)
    want_out, want_h = module(torch.from_numpy(xin), torch.from_numpy(hx))
    got_out, got_h = rnn_ref.oracle(module)(xin, hx)
    np.testing.assert_allclose(got_out, want_out.detach().numpy(), atol=2e-6)
    np.testing.assert_allclose(got_h, want_h.detach().numpy(), atol=2e-6)


def test_oracle_of_packed_sequence_and_unbatched_input() -> None:
    module = _module(5, num_layers=2, bidirectional=True, batch_first=True)
    x, lengths = _x(6), np.array([7, 2, 5])
    packed = nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                               batch_first=True, enforce_sorted=False)
    out, h = module(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
    got_out, got_h = rnn_ref.oracle(module)(x, lengths=lengths)
    np.testing.assert_allclose(got_out, out.detach().numpy(), atol=2e-6)
    np.testing.assert_allclose(got_h, h.detach().numpy(), atol=2e-6)
    single_out, single_h = module(torch.from_numpy(x[0]))
    o, hh = rnn_ref.oracle(module)(x[0])
    assert o.shape == (T, 2 * M) and hh.shape == (4, M)
    np.testing.assert_allclose(o, single_out.detach().numpy(), atol=2e-6)
    np.testing.assert_allclose(hh, single_h.detach().numpy(), atol=2e-6)


def test_readout_module() -> None:
    cfg = RNNConfig(D, M, num_layers=2, output_size=3, output_activation="sigmoid")
    params = rnn_ref.init(cfg, seed=7)
    module = rnn_ref.to_torch(params)
    assert isinstance(module.readout, nn.Linear)
    x = _x(8)
    y, h = module(torch.from_numpy(x))
    ref = rnn_ref.forward(params, x)
    np.testing.assert_allclose(y.detach().numpy(), ref.y, atol=2e-6)
    assert rnn_ref.from_torch(module) == params
    y2, _ = rnn_ref.oracle(module)(x)
    np.testing.assert_allclose(y2, ref.y, rtol=1e-12)


def test_backend_with_lengths_and_h0() -> None:
    cfg = RNNConfig(D, M, num_layers=2, direction="bidirectional", activation="relu")
    params = rnn_ref.init(cfg, seed=9)
    x, lengths = _x(10), np.array([4, 7, 1])
    h0 = np.random.default_rng(11).standard_normal((4, N, M)).astype(np.float32)
    got = rnn_ref.get_backend("torch").forward(params, x, h0=h0, lengths=lengths)
    want = rnn_ref.forward(params, x, h0=h0, lengths=lengths)
    np.testing.assert_allclose(got.outputs, want.outputs, atol=2e-6)
    np.testing.assert_allclose(got.h_n, want.h_n, atol=2e-6)
    mask = np.arange(T)[None, :] < lengths[:, None]  # a hole-free mask is lengths
    again = rnn_ref.get_backend("torch").forward(params, x, h0=h0, mask=mask)
    np.testing.assert_array_equal(again.outputs, got.outputs)


@pytest.mark.parametrize(
    ("changes", "feature"),
    [
        ({"activation": "sigmoid"}, "activation sigmoid"),
        ({"clip": 1.0}, "clip"),
        ({"direction": "bidirectional", "merge_mode": None}, "merge_mode None"),
    ],
)
def test_what_torch_cannot_express_raises(changes: dict, feature: str) -> None:
    cfg = RNNConfig(**{"input_size": D, "hidden_size": M, **changes})
    params = rnn_ref.init(cfg, seed=0)
    with pytest.raises(UnsupportedError,
                       match=re.escape(f"torch.nn.RNN cannot express {feature}")):
        rnn_ref.to_torch(params)


def test_backend_runs_holes_and_zero_lengths_and_refuses_sigmoid() -> None:
    params = rnn_ref.init(RNNConfig(D, M, direction="bidirectional"), seed=0)
    backend = rnn_ref.get_backend("torch")
    mask = np.ones((N, T), bool)
    mask[1, 2] = False
    mask[2] = False  # a sample with no valid step keeps its initial state
    for kw in ({"mask": mask}, {"lengths": np.array([0, 7, 3])}):
        got = backend.forward(params, _x(), **kw)
        want = rnn_ref.forward(params, _x(), **kw)
        np.testing.assert_allclose(got.outputs, want.outputs, atol=2e-6)
        np.testing.assert_allclose(got.h_n, want.h_n, atol=2e-6)
    assert "sigmoid" in backend.supports(RNNConfig(D, M, activation="sigmoid"),
                                         dtype=np.float32, lengths=False, mask=False)
    assert backend.supports(RNNConfig(D, M), dtype=np.float32, lengths=True, mask=True) is None


class _DoubledGRU(nn.GRU):
    """A subclass of a recurrent module with a forward of its own: not torch's GRU."""

    def forward(self, x: object, hx: object = None) -> object:  # type: ignore[override]
        out, h = super().forward(x, hx)  # type: ignore[arg-type]
        return out * 2, h


class _DoubledCell(nn.LSTMCell):
    def forward(self, x: object, hx: object = None) -> object:  # type: ignore[override]
        return super().forward(x, hx)  # type: ignore[arg-type]


class _HoldsDoubledGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = _DoubledGRU(D, M, batch_first=True)

    def forward(self, x: object) -> object:
        return self.gru(x)[0]


@pytest.mark.parametrize("make, named", [
    (lambda: _DoubledGRU(D, M), r"_DoubledGRU:"),
    (lambda: _DoubledCell(D, M), r"_DoubledCell:"),
    (_HoldsDoubledGRU, r"_DoubledGRU \(self\.gru\):"),
], ids=["GRU-subclass", "LSTMCell-subclass", "module-holding-GRU-subclass"])
def test_oracle_refuses_unknown_recurrent_modules_at_once(make: Callable[[], object],
                                                          named: str) -> None:
    """Issue 22: the oracle of a module it cannot read was accepted and failed only at its
    first call, with an fx trace error. torch's GRU and LSTM are read since issue 23
    (tests/test_torch_gated.py); a subclass with its own forward is refused at once."""
    with pytest.raises(UnsupportedError, match=named + r".*its own forward"):
        rnn_ref.oracle(make())


def test_from_torch_refuses_other_modules_and_bad_state_dicts() -> None:
    with pytest.raises(UnsupportedError, match="_DoubledGRU"):
        rnn_ref.from_torch(_DoubledGRU(D, M))
    sd = _module(0).state_dict()
    with pytest.raises(ValueError, match="does not record the nonlinearity"):
        rnn_ref.from_torch(sd)
    del sd["weight_hh_l0"]
    with pytest.raises(ValueError, match="misses weight_hh_l0"):
        rnn_ref.from_torch(sd, nonlinearity="tanh")
    with pytest.raises(ValueError, match="unexpected state dict key 'extra'"):
        rnn_ref.from_torch({**_module(0).state_dict(), "extra": torch.zeros(1)},
                           nonlinearity="tanh")
    with pytest.raises(ValueError, match="nonlinearity='relu' but the module's is 'tanh'"):
        rnn_ref.from_torch(_module(0), nonlinearity="relu")


def test_one_state_dict_reader_never_assumes_a_head_activation() -> None:
    """An RNNWithReadout is read by the one state-dict reader (graph.read_state_dict), told
    its head's activation; its bare state dict, which does not record it, is refused naming
    the head_activation hint (the second reader assumed a linear readout)."""
    from rnn_ref.backends.torch.convert import RNNWithReadout
    from rnn_ref.backends.torch.graph import read_state_dict
    from rnn_ref.fileapi import MissingHintError

    torch.manual_seed(4)
    model = RNNWithReadout(nn.RNN(D, M, batch_first=True), nn.Linear(M, 2), "tanh").eval()
    params = rnn_ref.from_torch(model)
    assert str(params.config.head[0].activation) == "tanh"
    x = _x(4)
    want = model(torch.from_numpy(x))
    want = want[0] if isinstance(want, tuple) else want
    np.testing.assert_allclose(rnn_ref.forward(params, x).result, want.detach().numpy(),
                               atol=3e-6)
    with pytest.raises(MissingHintError, match="head_activation") as info:
        read_state_dict(model.state_dict(), nonlinearity="tanh")
    assert info.value.hint == "head_activation"
