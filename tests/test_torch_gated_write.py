"""to_torch of GRU and LSTM networks (issue 24): nn.GRU / nn.LSTM (proj_size) where torch's
modules compute the layer, a GatedCell of plain torch where they cannot (reset-before GRU,
peepholes, input_forget, clip, other activations), the network around them, c0/h0 in and
(h_n, c_n) out, several outputs; state dict and safetensors files written and read back,
``convert --verify``; the torch backend's forward and backward with c0. Each module is run
by torch and compared with ``rnn_ref.forward`` in float64 and float32."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import need

import rnn_ref
import rnn_ref.convert
from rnn_ref import RNNConfig, UnsupportedError
from rnn_ref.reference import returned

torch = need("torch")
nn = torch.nn
from rnn_ref.backends.torch.convert import RNNWithReadout  # noqa: E402
from rnn_ref.backends.torch.network import GatedCell, TorchNetwork  # noqa: E402

N, T, D, M, P, K = 3, 7, 5, 6, 4, 2  # all different, so a transpose cannot hide
LENGTHS = np.array([T, 2, 5])
#: float64 torch against the float64 oracle (measured <= 1e-15); float32 at 24-bit products
ATOL = {np.float64: 1e-12, np.float32: 2e-5}
HS2 = {"name": "hard_sigmoid", "alpha": 0.2, "beta": 0.5}  # Keras 2's
#: torch's notice that a float32 projected nn.LSTM runs outside oneDNN (which kernel, not an error)
pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning")


def _params(cfg: RNNConfig, dtype: Any = np.float64, seed: int = 0) -> rnn_ref.RNNParams:
    """Seeded torch-scheme parameters: every weight and bias non-zero."""
    return rnn_ref.init(cfg, seed=seed, dtype=dtype)


def _states(params: rnn_ref.RNNParams, seed: int) -> tuple[Any, Any]:
    """Random h0 (S states) and c0 (C cell states, ``None`` without an LSTM) as the oracle
    takes them (stacked when the widths agree)."""
    cfg, rng = params.config, np.random.default_rng(seed)
    hs = [rng.standard_normal((N, m)).astype(params.dtype) for m in cfg.state_sizes]
    cs = [rng.standard_normal((N, m)).astype(params.dtype) for m in cfg.cell_state_sizes]
    h0 = np.stack(hs) if cfg.uniform_hidden else hs
    c0 = None if not cs else np.stack(cs) if cfg.uniform_cell else cs
    return h0, c0


def _t(a: Any) -> Any:
    if a is None:
        return None
    if isinstance(a, (list, tuple)):
        return [torch.from_numpy(np.ascontiguousarray(v)) for v in a]
    return torch.from_numpy(np.ascontiguousarray(a))


def _err(got: Any, want: Any) -> float:
    g = got.detach().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
    w = np.asarray(want)
    assert g.shape == w.shape, (g.shape, w.shape)
    return float(np.abs(g.astype(np.float64) - w.astype(np.float64)).max()) if w.size else 0.0


def _x(dtype: Any, seed: int = 1) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).standard_normal((N, T, D)).astype(dtype)


# --------------------------------------------------------------------------------------------
# torch's own modules: nn.GRU, nn.LSTM (proj_size), RNNWithReadout
# --------------------------------------------------------------------------------------------
NATIVE = {
    "gru": dict(cell="gru"),
    "gru-L2-bi": dict(cell="gru", num_layers=2, direction="bidirectional"),
    "gru-nobias": dict(cell="gru", num_layers=2, bias=False),
    "lstm": dict(cell="lstm"),
    "lstm-L2-bi": dict(cell="lstm", num_layers=2, direction="bidirectional"),
    "lstm-proj-L2-bi": dict(cell="lstm", num_layers=2, direction="bidirectional",
                            proj_size=P),
    "lstm-proj-nobias": dict(cell="lstm", proj_size=P, bias=False),
    "lstm-readout": dict(cell="lstm", num_layers=2, output_size=K,
                         output_activation="tanh"),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", NATIVE)
def test_native_modules_compute_the_oracle(name: str, dtype: Any) -> None:
    cfg = RNNConfig(D, M, **NATIVE[name])  # type: ignore[arg-type]
    params = _params(cfg, dtype, seed=len(name))
    lstm = cfg.cell == "lstm"
    for batch_first in (True, False):
        module = rnn_ref.to_torch(params, batch_first=batch_first)
        rnn = module.rnn if isinstance(module, RNNWithReadout) else module
        assert type(rnn) is (nn.LSTM if lstm else nn.GRU) and not rnn.training
        assert rnn.proj_size == (cfg.proj_size or 0) and rnn.batch_first == batch_first
        assert next(rnn.parameters()).dtype == {np.float64: torch.float64,
                                                np.float32: torch.float32}[dtype]
        assert isinstance(module, RNNWithReadout) == bool(cfg.head)
        x = _x(dtype)
        h0, c0 = _states(params, seed=2)
        want = rnn_ref.forward(params, x, h0=h0, c0=c0)
        xin = x if batch_first else x.transpose(1, 0, 2)
        with torch.no_grad():
            main, state = module(_t(xin), (_t(h0), _t(c0)) if lstm else _t(h0))
        main = main if batch_first else main.transpose(0, 1)
        h_n, c_n = state if lstm else (state, None)
        tol = ATOL[dtype]
        assert _err(main, want.result) < tol
        assert _err(h_n, want.h_n) < tol
        if lstm:
            assert _err(c_n, want.c_n) < tol
        back = rnn_ref.from_torch(module)
        assert back == params  # bit-exact both ways, biases unchanged


def test_the_gates_go_where_torch_reads_them() -> None:
    """A planted permutation: each canonical block lands in torch's r, z, n / i, f, g, o rows,
    transposed (a block of ones in one gate is found by name in the module)."""
    for cell, order in (("gru", "rzn"), ("lstm", "ifgo")):
        params = _params(RNNConfig(D, M, cell=cell))
        arrays = dict(params.named_arrays())
        for k, gate in enumerate(order):
            marked = {**arrays, f"layers.0.0.w_x.{gate}": np.full((D, M), float(k + 1))}
            module = rnn_ref.to_torch(rnn_ref.RNNParams.from_arrays(params.config, marked))
            rows = module.weight_ih_l0.detach().numpy()[k * M:(k + 1) * M]
            assert (rows == k + 1).all(), (cell, gate)


def test_packed_sequences_and_zero_lengths() -> None:
    """A written nn.LSTM run on a PackedSequence is the oracle with lengths (zeros at padded
    steps); in a TorchNetwork a zero length keeps h0 and c0, as the spec says (torch cannot
    pack it)."""
    params = _params(RNNConfig(D, M, cell="lstm", num_layers=2, direction="bidirectional",
                               proj_size=P))
    module = rnn_ref.to_torch(params)
    x, (h0, c0) = _x(np.float64), _states(params, 3)
    want = rnn_ref.forward(params, x, h0=h0, c0=c0, lengths=LENGTHS)
    packed = nn.utils.rnn.pack_padded_sequence(_t(x), _t(LENGTHS), batch_first=True,
                                               enforce_sorted=False)
    with torch.no_grad():
        out_p, (h_n, c_n) = module(packed, (_t(h0), _t(c0)))
    out = nn.utils.rnn.pad_packed_sequence(out_p, batch_first=True, total_length=T)[0]
    assert max(_err(out, want.outputs), _err(h_n, want.h_n), _err(c_n, want.c_n)) < 1e-12
    net = rnn_ref.to_torch(params.replace(returns=["sequence", "h_n", "c_n"]))
    zero = np.array([T, 0, 3])
    want = rnn_ref.forward(params, x, h0=h0, c0=c0, lengths=zero)
    with torch.no_grad():
        got = net(_t(x), _t(zero), h0=_t(h0), c0=_t(c0))
    for g, w in zip(got, (want.outputs, want.h_n, want.c_n), strict=True):
        assert _err(g, w) < 1e-12
    assert _err(got[1][:, 1], h0[:, 1]) == 0 and _err(got[2][:, 1], c0[:, 1]) == 0


# --------------------------------------------------------------------------------------------
# plain torch (GatedCell) and the network around the cells
# --------------------------------------------------------------------------------------------
PLAIN = {
    "gru-reset-before": dict(cell="gru", reset_after=False),
    "gru-reset-before-bi-L2": dict(cell="gru", reset_after=False, num_layers=2,
                                   direction="bidirectional"),
    "gru-clip-hardsigmoid": dict(cell="gru", clip=0.7, recurrent_activation=HS2),
    "gru-acts-per-direction": dict(cell="gru", direction="bidirectional",
                                   activation=["tanh", "softsign"]),
    "lstm-peepholes": dict(cell="lstm", peepholes=True, direction="bidirectional"),
    "lstm-input-forget": dict(cell="lstm", input_forget=True),
    "lstm-peepholes-input-forget-proj": dict(cell="lstm", peepholes=True, input_forget=True,
                                             proj_size=P),
    "lstm-clip": dict(cell="lstm", clip=0.5, num_layers=2),
    "lstm-acts": dict(cell="lstm", recurrent_activation=HS2, activation="relu",
                      cell_activation="softsign"),
    "lstm-reverse": dict(cell="lstm", direction="reverse"),
    "gru-reverse-nobias": dict(cell="gru", direction="reverse", bias=False,
                               reset_after=False),
    "mixed-stack": dict(cell=["lstm", "gru", "elman", "lstm"], hidden_size=[M, 4, 3, M],
                        direction=["bidirectional", "reverse", "forward", "forward"],
                        peepholes=[True, None, None, False], proj_size=[None, None, None, P],
                        merge_mode=["sum", "concat", "concat", "concat"]),
    "lstm-head": dict(cell="lstm", direction="bidirectional", select="final",
                      head=[(4, "relu"), (K, "softmax")]),
    "gru-pool-embedding": dict(cell="gru", vocab_size=11, select="mean_valid", head=[K]),
    "lstm-dropout-between": dict(cell="lstm", num_layers=2,
                                 identities=[{"kind": "dropout", "rate": 0.3, "after": 1}]),
    "gru-reverse-processing": dict(cell="gru", direction="reverse", reset_after=False,
                                   output_order="processing"),
    "lstm-proj-last-step": dict(cell="lstm", direction="bidirectional", proj_size=P,
                                select="last_step", merge_mode="ave", head=[K]),
}
#: the variants built in plain torch (the others are nn.GRU / nn.LSTM in a TorchNetwork)
GATED_CELLS = {"gru-reset-before", "gru-reset-before-bi-L2", "gru-clip-hardsigmoid",
               "gru-acts-per-direction", "lstm-peepholes", "lstm-input-forget",
               "lstm-peepholes-input-forget-proj", "lstm-clip", "lstm-acts",
               "gru-reverse-nobias", "mixed-stack", "gru-reverse-processing"}


def _config(name: str) -> RNNConfig:
    spec = dict(PLAIN[name])
    hidden = spec.pop("hidden_size", M)
    return RNNConfig(11 if "vocab_size" in spec else D, hidden, **spec)  # type: ignore[arg-type]


def _inputs(cfg: RNNConfig, dtype: Any) -> np.ndarray[Any, Any]:
    if cfg.vocab_size is not None:
        return np.random.default_rng(4).integers(0, cfg.vocab_size, (N, T))
    return _x(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", PLAIN)
def test_networks_compute_the_oracle(name: str, dtype: Any) -> None:
    cfg = _config(name)
    params = _params(cfg, dtype, seed=len(name))
    net = rnn_ref.to_torch(params)
    assert isinstance(net, TorchNetwork) and not net.training
    cells = [m for m in net.modules() if isinstance(m, GatedCell)]
    assert bool(cells) == (name in GATED_CELLS)
    x = _inputs(cfg, dtype)
    h0, c0 = _states(params, seed=5)
    tol = ATOL[dtype]
    for lengths, mask in ((None, None), (LENGTHS, None),
                          (None, np.random.default_rng(6).random((N, T)) < 0.7)):
        want = rnn_ref.forward(params, x, h0=h0, c0=c0, lengths=lengths, mask=mask,
                               padded_output="zeros")
        with torch.no_grad():
            got = net(_t(x), _t(lengths), _t(mask), h0=_t(h0), c0=_t(c0))
        assert _err(got, want.result) < tol * max(1.0, float(np.abs(want.result).max()))
    assert rnn_ref.from_torch(net) == params  # the module records the network whole


def test_a_gated_cell_is_the_spec_step_by_step() -> None:
    """One GatedCell of every LSTM switch against the oracle's loop (``forward_loop``), with
    a mask of holes: padded steps output zeros and carry h and c."""
    cfg = RNNConfig(D, M, cell="lstm", peepholes=True, proj_size=P, clip=0.9,
                    recurrent_activation=HS2, direction="reverse")
    params = _params(cfg)
    net = rnn_ref.to_torch(params.replace(returns=["sequence", "h_n", "c_n"]))
    mask = np.random.default_rng(7).random((N, T)) < 0.6
    x, (h0, c0) = _x(np.float64), _states(params, 8)
    want = rnn_ref.forward_loop(params, x, h0=h0, c0=c0, mask=mask, padded_output="zeros")
    with torch.no_grad():
        out, h_n, c_n = net(_t(x), mask=_t(mask), h0=_t(h0), c0=_t(c0))
    assert max(_err(out, want.outputs), _err(h_n, want.h_n), _err(c_n, want.c_n)) < 1e-12
    assert not out.numpy()[~mask].any()


def test_several_outputs() -> None:
    """``returns`` names the outputs a TorchNetwork returns, in order: the result, the last
    layer's sequence, final states, cell states (stacked, or tuples when widths differ)."""
    for cfg in (RNNConfig(D, M, cell="lstm", num_layers=2, select="final", head=[K],
                          returns=["result", "h_n[-1]", "c_n", "sequence"]),
                RNNConfig(D, [M, 4], cell=["lstm", "gru"], peepholes=[True, None],
                          returns=["sequence", "h_n", "c_n[0]"]),
                RNNConfig(D, M, select="final", returns=["result", "h_n[-1]"])):
        params = _params(cfg)
        net = rnn_ref.to_torch(params)
        x, (h0, c0) = _x(np.float64), _states(params, 9)
        want = returned(cfg, rnn_ref.forward(params, x, h0=h0, c0=c0, lengths=LENGTHS))
        with torch.no_grad():
            got = net(_t(x), _t(LENGTHS), h0=_t(h0), c0=_t(c0))
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            if isinstance(w, tuple):
                assert isinstance(g, tuple) and len(g) == len(w)
                assert max(_err(a, b) for a, b in zip(g, w, strict=True)) < 1e-12
            else:
                assert _err(g, w) < 1e-12
        oracle = rnn_ref.oracle(net)(x, LENGTHS, None, h0, c0)
        assert len(oracle) == len(want)


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------
FILES = {
    "lstm-proj-bi": RNNConfig(D, M, cell="lstm", num_layers=2, direction="bidirectional",
                              proj_size=P),
    "gru-readout": RNNConfig(D, M, cell="gru", output_size=K, output_activation="sigmoid"),
    "gru-reset-before": RNNConfig(D, M, cell="gru", reset_after=False, select="final",
                                  head=[K]),
    "lstm-peepholes-mixed": RNNConfig(D, [M, 4], cell=["lstm", "elman"], peepholes=[True, None],
                                      direction="bidirectional", bias=False),
    "several-outputs": RNNConfig(D, [M, 4], cell=["gru", "lstm"], reset_after=[False, None],
                                 returns=["sequence", "h_n", "c_n"]),
}


@pytest.mark.parametrize("ext", [".pt", ".safetensors"])
@pytest.mark.parametrize("name", FILES)
def test_files_written_read_back_exactly(tmp_path: Path, name: str, ext: str) -> None:
    need("safetensors")
    params = _params(FILES[name], np.float32)
    src = tmp_path / "src.npz"
    rnn_ref.convert.write(params, src)
    done = rnn_ref.convert.convert(src, tmp_path / f"m{ext}", verify=True)
    assert done.verification is not None and done.verification.passed, \
        done.verification.summary if done.verification else ""
    hints = rnn_ref.convert.hints_for(params, "torch")
    assert rnn_ref.convert.read(tmp_path / f"m{ext}", hints=hints) == params
    back = rnn_ref.convert.convert(tmp_path / f"m{ext}", tmp_path / "back.npz", hints=hints,
                                   verify=True)
    assert back.verification is not None and back.verification.passed
    assert rnn_ref.convert.read(tmp_path / "back.npz") == params


def test_a_users_file_verifies(tmp_path: Path) -> None:
    """A user's own nn.LSTM saved with torch.save converts to the canonical file and to the
    network of plain torch (via the canonical file), each checked by running both."""
    torch.manual_seed(0)
    lstm = nn.LSTM(D, M, num_layers=2, proj_size=P, bidirectional=True, batch_first=True)
    torch.save(lstm.state_dict(), tmp_path / "user.pt")
    done = rnn_ref.convert.convert(tmp_path / "user.pt", tmp_path / "user.npz", verify=True)
    assert done.verification is not None and done.verification.passed
    again = rnn_ref.convert.convert(tmp_path / "user.npz", tmp_path / "again.safetensors",
                                    verify=True)
    assert again.verification is not None and again.verification.passed


# --------------------------------------------------------------------------------------------
# the backend: c0 in, c_n out, gradients
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", [
    RNNConfig(D, M, cell="lstm", num_layers=2, direction="bidirectional", proj_size=P),
    RNNConfig(D, [M, 4], cell=["lstm", "lstm"], peepholes=[True, False], clip=[1.0, None],
              direction=["reverse", "bidirectional"], select="final", head=[K]),
    RNNConfig(D, M, cell="gru", reset_after=[False], bias=False, num_layers=1,
              direction="bidirectional"),
], ids=["native", "plain", "gru-plain-nobias"])
def test_backend_forward_and_backward_with_c0(cfg: RNNConfig) -> None:
    backend = rnn_ref.get_backend("torch")
    params = _params(cfg)
    x, (h0, c0) = _x(np.float64), _states(params, 10)
    want = rnn_ref.forward(params, x, h0=h0, c0=c0, lengths=LENGTHS, padded_output="zeros")
    got = backend.forward(params, x, h0=h0, c0=c0, lengths=LENGTHS)
    assert (got.c_n is None) == (want.c_n is None)
    for g, w in ((got.outputs, want.outputs), (got.h_n, want.h_n), (got.c_n, want.c_n)):
        if w is None:
            continue
        gs, ws = (g, w) if isinstance(w, tuple) else ((g,), (w,))
        assert max(_err(a, b) for a, b in zip(gs, ws, strict=True)) < 1e-12
    rng = np.random.default_rng(11)

    def like(a: Any) -> Any:
        return tuple(rng.standard_normal(np.shape(b)) for b in a) if isinstance(a, tuple) \
            else rng.standard_normal(np.shape(a))

    cot = {"grad_outputs": like(want.outputs), "grad_h_n": like(want.h_n)}
    if want.c_n is not None:
        cot["grad_c_n"] = like(want.c_n)
    if cfg.head:
        cot["grad_y"] = like(want.y)
    mine = backend.backward(params, x, h0=h0, c0=c0, lengths=LENGTHS, **cot)
    ref = rnn_ref.backward(params.replace(padded_output="zeros"), x, h0=h0, c0=c0,
                           lengths=LENGTHS, **cot)
    for (k, a), (_, b) in zip(mine.params.named_arrays(), ref.params.named_arrays(),
                              strict=True):
        assert _err(a, b) < 1e-10, k
    assert (mine.c0 is None) == (ref.c0 is None)
    for a, b in ((mine.x, ref.x), (mine.h0, ref.h0), (mine.c0, ref.c0)):
        if b is None:
            continue
        aa, bb = (a, b) if isinstance(b, tuple) else ((a,), (b,))
        assert max(_err(p, q) for p, q in zip(aa, bb, strict=True)) < 1e-10
    with pytest.raises(ValueError, match="no LSTM layer"):
        backend.backward(_params(RNNConfig(D, M, cell="gru")), x,
                         grad_c_n=np.zeros((1, N, M)))


# --------------------------------------------------------------------------------------------
# what stays refused, by name
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cfg", "kwargs", "named"), [
    (RNNConfig(D, M, cell="lstm", direction="bidirectional", merge_mode=None), {},
     "merge_mode None"),
    (RNNConfig(D, [M, 4], cell=["gru", "elman"], activation=[["tanh"], ["sigmoid"]]), {},
     "activation sigmoid (Elman layer 1, direction 0)"),
    (RNNConfig(D, [M, 4], cell=["gru", "elman"], clip=[None, 2.0]), {},
     "clip 2.0 (Elman layer 1)"),
    (RNNConfig(D, M, cell="gru", reset_after=False), {"batch_first": False},
     "batch_first=False for this network"),
    (RNNConfig(D, M, cell="lstm", padded_output="carry_state"), {"strict": True},
     "padded_output 'carry_state'"),
], ids=["pair-of-directions", "elman-sigmoid", "elman-clip", "time-major-network",
        "padded-strict"])
def test_what_torch_cannot_hold_is_refused_by_name(cfg: RNNConfig, kwargs: dict[str, Any],
                                                   named: str) -> None:
    params = _params(cfg)
    with pytest.raises(UnsupportedError, match=re.escape(named)):
        rnn_ref.to_torch(params, **kwargs)
    reason = rnn_ref.convert.convertible(params)["torch"]
    assert (reason is not None and named in reason) == (not kwargs)


def test_float16_is_refused_by_name() -> None:
    params = _params(RNNConfig(D, M, cell="lstm"), np.float16)
    with pytest.raises(UnsupportedError, match="dtype float16"):
        rnn_ref.to_torch(params)


# --------------------------------------------------------------------------------------------
# property: any gated network torch holds runs as the oracle computes it
# --------------------------------------------------------------------------------------------
def _property_examples() -> int:
    import os

    return int(os.environ.get("RNN_REF_HYPOTHESIS_EXAMPLES", "25"))


from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from strategies_gated import EVERY, gated_cases, gated_configs  # noqa: E402


@settings(max_examples=_property_examples(), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=gated_cases(gated_configs(acts=EVERY, max_layers=3)))
def test_random_gated_networks_run_as_the_oracle_or_are_refused(case: dict[str, Any]) -> None:
    """Every switch, activation, direction, merge, selection, head, h0/c0, lengths and masks:
    the torch backend (the network to_torch builds) computes the oracle's numbers in float64
    (padded steps as zeros), or refuses by name what torch cannot hold; an input of no steps
    through torch's own modules is the recorded deviation (``empty-sequence-refused``)."""
    backend = rnn_ref.get_backend("torch")
    params = case["params"]
    cfg = params.config
    kwargs = {k: case[k] for k in ("h0", "c0", "lengths", "mask") if case.get(k) is not None}
    t = case["x"].shape[1]
    # what the inputs pad (lengths of T, a mask of every step: none)
    padded = bool(("lengths" in kwargs and (kwargs["lengths"] < t).any())
                  or ("mask" in kwargs and not kwargs["mask"].all()))
    reason = backend.supports(cfg, dtype=params.dtype, lengths="lengths" in kwargs,
                              mask="mask" in kwargs)
    if reason is not None and (padded or "padded_output" not in reason):
        event(f"refused: {reason.split(' (')[0].split(':')[0]}")
        with pytest.raises(UnsupportedError):
            backend.forward(params, case["x"], **kwargs)
        return
    from rnn_ref.backends.torch.record import torch_native_cell

    native = any(torch_native_cell(cfg, li) for li in range(cfg.num_layers))
    if t == 0 and native:
        event("no steps through torch's own module: the recorded deviation")
        with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0"):
            backend.forward(params, case["x"], **kwargs)
        return
    event("computed" + (" with GatedCells" if not all(
        torch_native_cell(cfg, li) for li in range(cfg.num_layers)) else ""))
    got = backend.forward(params, case["x"], **kwargs)
    want = rnn_ref.forward(params, case["x"], padded_output="zeros", **kwargs)
    for field in ("outputs", "h_n", "y", "selected", "c_n"):
        g, w = getattr(got, field), getattr(want, field)
        if w is None:
            assert g is None, field
            continue
        for a, b in zip(*(v if isinstance(v, tuple) else (v,) for v in (g, w)), strict=True):
            scale = max(1.0, float(np.abs(b).max())) if np.size(b) else 1.0
            assert _err(a, b) <= 1e-9 * scale, field
