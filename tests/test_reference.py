"""The oracle: hand-computed cases, every semantic of docs/spec.md sections 2-4, and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import cases, configs

import rnn_ref
from rnn_ref import CellParams, RNNConfig, RNNParams

CLOSE = {"rtol": 1e-12, "atol": 1e-12}


def _cell(rng: np.random.Generator, d: int, m: int) -> CellParams:
    return CellParams(rng.standard_normal((d, m)) * 0.5, rng.standard_normal((m, m)) * 0.5,
                      rng.standard_normal(m) * 0.1, rng.standard_normal(m) * 0.1)


# --------------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------------
def test_one_unit_by_hand() -> None:
    """D = M = 1 with distinct weights and both biases, worked out with math.tanh."""
    cfg = RNNConfig(1, 1)
    p = RNNParams(cfg, [[CellParams([[0.5]], [[-0.25]], [0.1], [0.2])]])
    res = rnn_ref.forward(p, np.array([[[1.0], [2.0], [-1.0]]]))
    h1 = math.tanh(0.5 * 1.0 + 0.1 + 0.2)
    h2 = math.tanh(0.5 * 2.0 + 0.1 - 0.25 * h1 + 0.2)
    h3 = math.tanh(0.5 * -1.0 + 0.1 - 0.25 * h2 + 0.2)
    np.testing.assert_allclose(res.outputs[0, :, 0], [h1, h2, h3], rtol=1e-15)
    np.testing.assert_allclose(res.h_n, [[[h3]]], rtol=1e-15)


def test_one_unit_reverse_and_h0_by_hand() -> None:
    cfg = RNNConfig(1, 1, direction="reverse")
    p = RNNParams(cfg, [[CellParams([[0.5]], [[-0.25]], [0.1], [0.2])]])
    res = rnn_ref.forward(p, np.array([[[1.0], [2.0]]]), h0=np.array([[[0.4]]]))
    h_after_x1 = math.tanh(0.5 * 2.0 + 0.3 - 0.25 * 0.4)
    h_after_x0 = math.tanh(0.5 * 1.0 + 0.3 - 0.25 * h_after_x1)
    np.testing.assert_allclose(res.outputs[0, :, 0], [h_after_x0, h_after_x1], rtol=1e-15)
    np.testing.assert_allclose(res.h_n[0, 0, 0], h_after_x0, rtol=1e-15)
    proc = rnn_ref.forward(p, np.array([[[1.0], [2.0]]]), h0=np.array([[[0.4]]]),
                           output_order="processing")
    np.testing.assert_allclose(proc.outputs[0, :, 0], [h_after_x1, h_after_x0], rtol=1e-15)


def test_linear_unit_rnn_returns_exact_sums() -> None:
    """The tutorial's adder: W = U = 1, b = 0, linear activation; sums of digits are exact."""
    cfg = RNNConfig(1, 1, activation="linear")
    p = RNNParams(cfg, [[CellParams([[1.0]], [[1.0]], [0.0], [0.0])]])
    digits = np.random.default_rng(7).integers(0, 10, size=(50, 3, 1))
    res = rnn_ref.forward(p, digits)
    np.testing.assert_array_equal(res.outputs[..., 0], np.cumsum(digits[..., 0], axis=1))
    np.testing.assert_array_equal(res.h_n[0, :, 0], digits[..., 0].sum(axis=1))


def _tutorial_loop(params: RNNParams, x: np.ndarray) -> np.ndarray:
    """The tutorials' manual check, per sample: h = tanh(x W + h U + b); y = h V + c."""
    cell, ro = params.layers[0][0], params.readout
    assert ro is not None
    ys = np.zeros((x.shape[0], x.shape[1], ro.w.shape[1]))
    for n in range(x.shape[0]):
        h = np.zeros(cell.w_h.shape[0])
        for t in range(x.shape[1]):
            h = np.tanh(x[n, t] @ cell.w_x + h @ cell.w_h + (cell.b_x + cell.b_h))
            ys[n, t] = h @ ro.w + ro.b
    return ys


@pytest.mark.parametrize(("n", "t", "d", "m", "k"), [(1, 10, 3, 5, 2), (10, 20, 4, 4, 3)])
@pytest.mark.parametrize("scheme", ["keras", "torch"])
def test_tutorial_shapes_with_dense_readout(n: int, t: int, d: int, m: int, k: int,
                                            scheme: str) -> None:
    cfg = RNNConfig(d, m, output_size=k)
    params = rnn_ref.init(cfg, seed=3, scheme=scheme, dtype=np.float64)
    x = np.random.default_rng(4).standard_normal((n, t, d))
    res = rnn_ref.forward(params, x)
    assert res.outputs.shape == (n, t, m) and res.h_n.shape == (1, n, m)
    assert res.y.shape == (n, t, k)
    np.testing.assert_allclose(res.y, _tutorial_loop(params, x), **CLOSE)
    # all N at once equals one sample at a time
    for i in range(n):
        single = rnn_ref.forward(params, x[i : i + 1])
        np.testing.assert_allclose(single.y[0], res.y[i], **CLOSE)


# --------------------------------------------------------------------------------------------
# Variable lengths, masks, padded-step modes, length zero
# --------------------------------------------------------------------------------------------
@pytest.fixture
def small() -> RNNParams:
    cfg = RNNConfig(3, 4)
    return RNNParams(cfg, [[_cell(np.random.default_rng(11), 3, 4)]])


def test_leading_masked_step_per_mode(small: RNNParams) -> None:
    """Left padding with a non-zero h0: the three modes differ exactly at the leading step."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 3))
    h0 = rng.standard_normal((1, 2, 4))
    mask = np.array([[False, True, True, False, True], [True] * 5])
    run = {mode: rnn_ref.forward(small, x, h0=h0, mask=mask, padded_output=mode)
           for mode in ("zeros", "carry_output", "carry_state")}
    # the state skips padded steps: sample 0 equals running its three valid steps
    ref = rnn_ref.forward(small, x[:1, [1, 2, 4]], h0=h0[:, :1])
    for res in run.values():
        np.testing.assert_allclose(res.h_n[:, :1], ref.h_n, **CLOSE)
        np.testing.assert_allclose(res.outputs[0, [1, 2, 4]], ref.outputs[0], **CLOSE)
        np.testing.assert_allclose(res.outputs[1], run["zeros"].outputs[1], **CLOSE)
    np.testing.assert_array_equal(run["zeros"].outputs[0, [0, 3]], 0.0)
    np.testing.assert_array_equal(run["carry_output"].outputs[0, 0], 0.0)
    np.testing.assert_array_equal(run["carry_state"].outputs[0, 0], h0[0, 0])
    for mode in ("carry_output", "carry_state"):  # the hole carries the last output
        np.testing.assert_array_equal(run[mode].outputs[0, 3], run[mode].outputs[0, 2])


def test_reverse_starts_at_last_valid_step(small: RNNParams) -> None:
    cfg = RNNConfig(3, 4, direction="reverse")
    p = RNNParams(cfg, small.layers)
    x = np.random.default_rng(2).standard_normal((2, 6, 3))
    res = rnn_ref.forward(p, x, lengths=[4, 6])
    alone = rnn_ref.forward(p, x[:1, :4])
    np.testing.assert_allclose(res.outputs[0, :4], alone.outputs[0], **CLOSE)
    np.testing.assert_allclose(res.h_n[0, 0], alone.h_n[0, 0], **CLOSE)
    np.testing.assert_array_equal(res.outputs[0, 4:], 0.0)
    # carry_output in a reverse direction: steps after the last valid one come first in
    # processing order, before any output, so they are zeros; carry_state gives h0 there
    h0 = np.full((1, 2, 4), 0.3)
    co = rnn_ref.forward(p, x, lengths=[4, 6], h0=h0, padded_output="carry_output")
    cs = rnn_ref.forward(p, x, lengths=[4, 6], h0=h0, padded_output="carry_state")
    np.testing.assert_array_equal(co.outputs[0, 4:], 0.0)
    np.testing.assert_array_equal(cs.outputs[0, 4:], 0.3)


def test_length_zero_gives_h0_and_padded_outputs(small: RNNParams) -> None:
    x = np.random.default_rng(3).standard_normal((3, 4, 3))
    h0 = np.random.default_rng(4).standard_normal((1, 3, 4))
    for mode, expected_pad in (("zeros", 0.0), ("carry_output", 0.0), ("carry_state", None)):
        res = rnn_ref.forward(small, x, h0=h0, lengths=[0, 4, 0], padded_output=mode)
        np.testing.assert_array_equal(res.h_n[0, [0, 2]], h0[0, [0, 2]])
        pad = np.broadcast_to(h0[0, 0], (4, 4)) if expected_pad is None else expected_pad
        np.testing.assert_array_equal(res.outputs[0], pad)
    empty = rnn_ref.forward(small, x[:, :0], h0=h0)  # T = 0 for everyone
    assert empty.outputs.shape == (3, 0, 4)
    np.testing.assert_array_equal(empty.h_n, h0)


def test_hole_free_mask_equals_lengths_and_all_true_mask_equals_none(small: RNNParams) -> None:
    x = np.random.default_rng(5).standard_normal((3, 5, 3))
    lengths = np.array([5, 2, 3])
    mask = np.arange(5)[None, :] < lengths[:, None]
    a = rnn_ref.forward(small, x, lengths=lengths)
    b = rnn_ref.forward(small, x, mask=mask)
    np.testing.assert_array_equal(a.outputs, b.outputs)
    np.testing.assert_array_equal(a.h_n, b.h_n)
    c = rnn_ref.forward(small, x, mask=np.ones((3, 5), bool))
    np.testing.assert_array_equal(c.outputs, rnn_ref.forward(small, x).outputs)


def test_nan_in_padding_never_leaks() -> None:
    cfg = RNNConfig(3, 4, num_layers=2, direction="bidirectional", output_size=2)
    p = rnn_ref.init(cfg, seed=5, dtype=np.float64)
    x = np.random.default_rng(6).standard_normal((2, 5, 3))
    x[0, 3:] = np.nan
    res = rnn_ref.forward(p, x, lengths=[3, 5])
    assert np.isfinite(res.outputs).all() and np.isfinite(res.h_n).all()
    np.testing.assert_allclose(res.outputs[0, :3], rnn_ref.forward(p, x[:1, :3]).outputs[0],
                               **CLOSE)


# --------------------------------------------------------------------------------------------
# Clip, merge modes, activations per direction, readout, dtypes
# --------------------------------------------------------------------------------------------
def test_clip_limits_the_preactivation() -> None:
    cfg = RNNConfig(2, 3, activation="linear", clip=0.5)
    rng = np.random.default_rng(8)
    p = RNNParams(cfg, [[_cell(rng, 2, 3)]])
    x = rng.standard_normal((2, 4, 2)) * 10
    res = rnn_ref.forward(p, x)
    assert np.abs(res.outputs).max() == pytest.approx(0.5)
    unclipped = rnn_ref.forward(RNNParams(cfg.replace(clip=None), p.layers), x)
    assert np.abs(unclipped.outputs).max() > 1.0


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave", None])
def test_merge_modes(mode: str | None) -> None:
    rng = np.random.default_rng(9)
    cells = [_cell(rng, 3, 4), _cell(rng, 3, 4)]
    bi = RNNParams(RNNConfig(3, 4, direction="bidirectional", merge_mode=mode), [cells])
    fw = RNNParams(RNNConfig(3, 4), [cells[:1]])
    bw = RNNParams(RNNConfig(3, 4, direction="reverse"), [cells[1:]])
    x = rng.standard_normal((2, 5, 3))
    f, b = rnn_ref.forward(fw, x).outputs, rnn_ref.forward(bw, x).outputs
    expected = {"concat": np.concatenate([f, b], -1), "sum": f + b, "mul": f * b,
                "ave": (f + b) / 2, None: None}[mode]
    out = rnn_ref.forward(bi, x).outputs
    if mode is None:
        np.testing.assert_allclose(out[0], f, **CLOSE)
        np.testing.assert_allclose(out[1], b, **CLOSE)
    else:
        np.testing.assert_allclose(out, expected, **CLOSE)


def test_one_unit_bidirectional_sigmoid_regression() -> None:
    """M = 1, concat: NumPy 2.4.6's in-place negative on a strided (N, 1) view gave wrong
    sigmoids for the second sample of the backward half (found by the property below)."""
    cfg = RNNConfig(1, 1, direction="bidirectional", activation=("tanh", "sigmoid"), bias=False)
    cells = [CellParams([[0.27]], [[-0.46]], [0.0], [0.0]),
             CellParams([[0.62]], [[0.82]], [0.0], [0.0])]
    x = np.random.default_rng(0).standard_normal((2, 4, 1))
    fast = rnn_ref.forward(RNNParams(cfg, [cells]), x)
    loop = rnn_ref.forward_loop(RNNParams(cfg, [cells]), x)
    np.testing.assert_allclose(fast.outputs, loop.outputs, **CLOSE)


def test_activation_per_direction_is_used() -> None:
    rng = np.random.default_rng(10)
    cells = [_cell(rng, 3, 4), _cell(rng, 3, 4)]
    x = rng.standard_normal((2, 5, 3))
    mixed = rnn_ref.forward(RNNParams(RNNConfig(3, 4, direction="bidirectional",
                                                activation=("relu", "sigmoid")), [cells]), x)
    relu_fw = rnn_ref.forward(RNNParams(RNNConfig(3, 4, activation="relu"), [cells[:1]]), x)
    sig_bw = rnn_ref.forward(RNNParams(RNNConfig(3, 4, direction="reverse",
                                                 activation="sigmoid"), [cells[1:]]), x)
    np.testing.assert_allclose(mixed.outputs[..., :4], relu_fw.outputs, **CLOSE)
    np.testing.assert_allclose(mixed.outputs[..., 4:], sig_bw.outputs, **CLOSE)


def test_narrowing_stack_with_list_h0() -> None:
    cfg = RNNConfig(3, (6, 2), direction="bidirectional", output_size=1)
    p = rnn_ref.init(cfg, seed=1, dtype=np.float64)
    x = np.random.default_rng(2).standard_normal((2, 4, 3))
    h0 = [np.full((2, 6), 0.1), np.full((2, 6), -0.1), np.full((2, 2), 0.2), np.zeros((2, 2))]
    res = rnn_ref.forward(p, x, h0=h0)
    assert isinstance(res.h_n, tuple) and [h.shape for h in res.h_n] == [(2, 6)] * 2 + [(2, 2)] * 2
    assert res.outputs.shape == (2, 4, 4) and res.y.shape == (2, 4, 1)
    with pytest.raises(ValueError, match="different hidden sizes"):
        rnn_ref.forward(p, x, h0=np.zeros((4, 2, 6)))


def test_compute_dtype() -> None:
    cfg = RNNConfig(4, 5, num_layers=2, output_size=3)
    p32 = rnn_ref.init(cfg, seed=0)
    assert p32.dtype == np.float32
    x = np.random.default_rng(0).standard_normal((3, 20, 4)).astype(np.float32)
    exact = rnn_ref.forward(p32, x)
    assert exact.outputs.dtype == np.float64  # float64 by default, whatever the weights
    fast = rnn_ref.forward(p32, x, compute_dtype=np.float32)
    assert fast.outputs.dtype == fast.h_n.dtype == fast.y.dtype == np.float32
    np.testing.assert_allclose(fast.y, exact.y, atol=1e-5)
    assert not np.array_equal(fast.y, exact.y.astype(np.float32))  # really computed in float32
    half = rnn_ref.forward(p32, x, compute_dtype="float16")
    assert half.outputs.dtype == np.float16
    np.testing.assert_allclose(half.outputs, exact.outputs, atol=2e-2)


@given(cases())
def test_clear_loop_equals_fast_path(case: dict) -> None:
    a = rnn_ref.forward(**case)
    b = rnn_ref.forward_loop(**case)
    _assert_results_close(a, b)


@given(cases(configs(directions=["reverse"], max_layers=2)))
def test_clear_loop_equals_fast_path_processing_order(case: dict) -> None:
    a = rnn_ref.forward(**case, output_order="processing")
    b = rnn_ref.forward_loop(**case, output_order="processing")
    _assert_results_close(a, b)


def _assert_results_close(a: rnn_ref.ForwardResult, b: rnn_ref.ForwardResult) -> None:
    outs_a = a.outputs if isinstance(a.outputs, tuple) else (a.outputs,)
    outs_b = b.outputs if isinstance(b.outputs, tuple) else (b.outputs,)
    for oa, ob in zip(outs_a, outs_b, strict=True):
        np.testing.assert_allclose(oa, ob, rtol=1e-10, atol=1e-10)
    hs_a = a.h_n if isinstance(a.h_n, tuple) else tuple(a.h_n)
    hs_b = b.h_n if isinstance(b.h_n, tuple) else tuple(b.h_n)
    for ha, hb in zip(hs_a, hs_b, strict=True):
        np.testing.assert_allclose(ha, hb, rtol=1e-10, atol=1e-10)
    assert (a.y is None) == (b.y is None)
    if a.y is not None:
        np.testing.assert_allclose(a.y, b.y, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------------------------
# Properties that tie the semantics together
# --------------------------------------------------------------------------------------------
def _single(cell: CellParams, cfg: RNNConfig, direction: str, layer: int,
            r: int) -> RNNParams:
    """A one-layer network made of one cell of ``cfg`` (same activation and clip)."""
    one = RNNConfig(cell.w_x.shape[0], cell.hidden_size, direction=direction,
                    activation=cfg.activation_of(layer, r), clip=cfg.clips[layer],
                    bias=cfg.bias, padded_output=cfg.padded_output)
    return RNNParams(one, [[cell]])


def _flip_valid(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Reverse each sample's valid steps in place of one another, padding untouched."""
    out = x.copy()
    for n in range(x.shape[0]):
        idx = np.flatnonzero(valid[n])
        out[n, idx] = x[n, idx[::-1]]
    return out


@given(cases(configs(directions=["forward"], max_layers=1, readout=False)))
def test_reverse_is_forward_on_flipped_input_realigned(case: dict) -> None:
    p: RNNParams = case["params"]
    rev = RNNParams(p.config.replace(direction="reverse"), p.layers)
    x = case["x"]
    valid = _valid_of(case)
    flipped = _flip_valid(x, valid)
    fwd = rnn_ref.forward(p, flipped, h0=case["h0"], mask=valid, padded_output="zeros")
    bwd = rnn_ref.forward(rev, x, h0=case["h0"], mask=valid, padded_output="zeros")
    np.testing.assert_allclose(bwd.outputs, _flip_valid(fwd.outputs, valid), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(bwd.h_n, fwd.h_n, rtol=1e-12, atol=1e-12)


def _valid_of(case: dict) -> np.ndarray:
    n, t = case["x"].shape[:2]
    if "mask" in case:
        return case["mask"]
    if "lengths" in case:
        return np.arange(t)[None, :] < case["lengths"][:, None]
    return np.ones((n, t), bool)


@given(cases(configs(directions=["bidirectional"], max_layers=1, readout=False)))
def test_bidirectional_is_both_directions_concatenated(case: dict) -> None:
    p: RNNParams = case["params"]
    cfg = p.config
    concat = RNNParams(cfg.replace(merge_mode="concat"), p.layers)
    kw = {k: case[k] for k in ("lengths", "mask") if k in case}
    h0 = case["h0"]
    both = rnn_ref.forward(concat, case["x"], h0=h0, **kw)
    fw = rnn_ref.forward(_single(p.layers[0][0], cfg, "forward", 0, 0), case["x"],
                         h0=None if h0 is None else h0[:1], **kw)
    bw = rnn_ref.forward(_single(p.layers[0][1], cfg, "reverse", 0, 1), case["x"],
                         h0=None if h0 is None else h0[1:], **kw)
    np.testing.assert_allclose(both.outputs, np.concatenate([fw.outputs, bw.outputs], -1),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(both.h_n, np.concatenate([fw.h_n, bw.h_n]), rtol=1e-12,
                               atol=1e-12)


@given(cases(padding="lengths"))
def test_lengths_equal_running_the_truncated_sequence(case: dict) -> None:
    p: RNNParams = case["params"]
    res = rnn_ref.forward(p, case["x"], h0=case["h0"], lengths=case["lengths"],
                          padded_output="zeros")
    outs = res.outputs if isinstance(res.outputs, tuple) else (res.outputs,)
    h_n = res.h_n if isinstance(res.h_n, tuple) else tuple(res.h_n)
    for n, length in enumerate(case["lengths"]):
        h0 = None if case["h0"] is None else [h[n : n + 1] for h in case["h0"]]
        alone = rnn_ref.forward(p, case["x"][n : n + 1, :length], h0=h0)
        alone_outs = alone.outputs if isinstance(alone.outputs, tuple) else (alone.outputs,)
        for o, ao in zip(outs, alone_outs, strict=True):
            np.testing.assert_allclose(o[n, :length], ao[0], rtol=1e-12, atol=1e-12)
            np.testing.assert_array_equal(o[n, length:], 0.0)
        alone_h = alone.h_n if isinstance(alone.h_n, tuple) else tuple(alone.h_n)
        for h, ah in zip(h_n, alone_h, strict=True):
            np.testing.assert_allclose(h[n], ah[0], rtol=1e-12, atol=1e-12)


@given(cases(padding="lengths"))
def test_hole_free_mask_equals_lengths(case: dict) -> None:
    lengths = case.pop("lengths")
    mask = np.arange(case["x"].shape[1])[None, :] < lengths[:, None]
    _assert_results_close(rnn_ref.forward(**case, lengths=lengths),
                          rnn_ref.forward(**case, mask=mask))


@given(cases(configs(directions=["forward", "reverse"], readout=False)), st.data())
def test_stacked_is_layers_applied_in_turn(case: dict, data: st.DataObject) -> None:
    p: RNNParams = case["params"]
    cfg = p.config
    kw = {k: case[k] for k in ("lengths", "mask") if k in case}
    whole = rnn_ref.forward(p, case["x"], h0=case["h0"], **kw)
    layer_input = case["x"]
    for li, layer in enumerate(p.layers):
        one = _single(layer[0], cfg, cfg.direction, li, 0)
        h0 = None if case["h0"] is None else [case["h0"][li]]
        res = rnn_ref.forward(one, layer_input, h0=h0, **kw)
        h_n = whole.h_n[li] if isinstance(whole.h_n, tuple) else whole.h_n[li]
        np.testing.assert_allclose(res.h_n[0], h_n, rtol=1e-12, atol=1e-12)
        layer_input = res.outputs
    np.testing.assert_allclose(layer_input, whole.outputs, rtol=1e-12, atol=1e-12)


def test_readout_sees_padded_outputs() -> None:
    """The readout runs at every step on what the outputs hold there (Dense / nn.Linear)."""
    cfg = RNNConfig(3, 4, output_size=2, output_activation="tanh")
    p = rnn_ref.init(cfg, seed=2, dtype=np.float64)
    x = np.random.default_rng(3).standard_normal((1, 4, 3))
    res = rnn_ref.forward(p, x, lengths=[2])
    ro = p.readout
    np.testing.assert_allclose(res.y[0, 3], np.tanh(ro.b), **CLOSE)  # zeros @ w + b
    np.testing.assert_allclose(res.y, np.tanh(res.outputs @ ro.w + ro.b), **CLOSE)


def test_every_public_name_of_reference_is_used() -> None:
    """Each name in ``rnn_ref.reference.__all__`` is imported from it or read off it somewhere
    else in the tree (issue 22: ``is_reverse`` was a dead wrapper of ``RNNConfig.is_reverse``)."""
    import ast
    from pathlib import Path

    from rnn_ref import reference

    root = Path(__file__).resolve().parent.parent
    used: set[str] = set()
    for folder in ("rnn_ref", "backends", "conformance", "benchmarks", "examples", "tests"):
        for path in (root / folder).rglob("*.py"):
            if path == root / "rnn_ref" / "reference.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module == "rnn_ref.reference":
                    used.update(alias.name for alias in node.names)
                elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                      and node.value.id == "reference"):
                    used.add(node.attr)
    unused = sorted(set(reference.__all__) - used)
    assert not unused, f"rnn_ref.reference exports names nothing uses: {unused}"
