"""flax GRUCell, LSTMCell and OptimizedLSTMCell (issue 24), linen and nnx, against flax's own run.

Every model is built and run by flax itself in float64 (``jax.enable_x64``), read with
``rnn_ref.from_flax`` and compared with ``rnn_ref.forward``; ``to_flax`` writes canonical
parameters (seeded, non-zero biases, D != M != N != T) in every layout, flax runs what was
written, and it reads back bit-exact up to the bias rule (one-bias gates fold ``b_h`` into
``b_x``; a reset-after GRU's ``b_h["n"]`` is kept, or refused where nnx has no place for it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from conftest import need

import rnn_ref
from rnn_ref import RNNConfig, UnsupportedError
from rnn_ref.conformance.runner import _equivalent

jax = need("jax")
jnp = jax.numpy
linen = need("flax.linen")
nnx = need("flax.nnx")
serialization = need("flax.serialization")

N, T, D, M = 3, 7, 5, 4
TOL = 1e-12  # float64 flax against the float64 oracle, relative to max(1, |largest output|)


@contextmanager
def _x64() -> Iterator[None]:
    with jax.enable_x64(True):
        yield


def _x(seed: int = 1, d: int = D) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, T, d))


def _params(seed: int = 3, **config: Any) -> rnn_ref.RNNParams:
    """Seeded float64 weights, every bias non-zero (b_h too, so a merge shows)."""
    cfg = RNNConfig(config.pop("input_size", D), config.pop("hidden_size", M), **config)
    return rnn_ref.init(cfg, seed=seed, dtype=np.float64)


def _err(got: Any, want: np.ndarray) -> float:
    """The largest error, relative to the largest value (relu gates grow without bound)."""
    err = float(np.abs(np.asarray(got) - want).max()) / max(1.0, float(np.abs(want).max()))
    assert err < TOL, err
    return err


def _perturb_nnx(module: Any, seed: int) -> None:
    """Every parameter of an nnx module plus seeded noise (flax's biases start at zero)."""
    rng = np.random.default_rng(seed)
    state = nnx.state(module, nnx.Param)
    nnx.update(module, jax.tree.map(
        lambda a: jnp.asarray(np.asarray(a) + 0.3 * rng.standard_normal(a.shape), a.dtype),
        state))


def _perturb(tree: Any, rng: np.random.Generator) -> Any:
    """linen params plus seeded noise, keys kept in flax's order."""
    if isinstance(tree, dict):
        return {k: _perturb(v, rng) for k, v in tree.items()}
    return jnp.asarray(np.asarray(tree) + 0.3 * rng.standard_normal(tree.shape), tree.dtype)


def _linen_init(module: Any, seed: int, x: np.ndarray) -> dict[str, Any]:
    variables = module.init(jax.random.key(seed), jnp.asarray(x))
    return {"params": _perturb(variables["params"], np.random.default_rng(seed))}


# --------------------------------------------------------------------------------------------
# cells people build, read and compared with flax's own run
# --------------------------------------------------------------------------------------------
NNX_CELLS: dict[str, Callable[[int, int], Any]] = {
    "GRUCell": lambda d, m: nnx.GRUCell(d, m, rngs=nnx.Rngs(0), param_dtype=jnp.float64),
    "LSTMCell": lambda d, m: nnx.LSTMCell(d, m, rngs=nnx.Rngs(0), param_dtype=jnp.float64),
    "OptimizedLSTMCell": lambda d, m: nnx.OptimizedLSTMCell(
        d, m, rngs=nnx.Rngs(0), param_dtype=jnp.float64),
    "GRUCell-relu-gates": lambda d, m: nnx.GRUCell(
        d, m, gate_fn=nnx.relu, activation_fn=nnx.soft_sign, rngs=nnx.Rngs(0),
        param_dtype=jnp.float64),
    "LSTMCell-softplus": lambda d, m: nnx.LSTMCell(
        d, m, gate_fn=nnx.sigmoid, activation_fn=nnx.softplus, rngs=nnx.Rngs(0),
        param_dtype=jnp.float64),
}


@pytest.mark.parametrize("name", NNX_CELLS)
def test_nnx_cells_read_and_written(name: str) -> None:
    """An nnx cell in nnx.RNN with an initial carry: read (state and module), compared with
    flax, written back (bit-exact arrays) and the state of the written cell read again."""
    with _x64():
        cell = NNX_CELLS[name](D, M)
        _perturb_nnx(cell, seed=len(name))
        x = _x(2)
        lstm = "LSTM" in name
        rng = np.random.default_rng(9)
        h0, c0 = rng.standard_normal((N, M)), rng.standard_normal((N, M))
        carry = (jnp.asarray(c0), jnp.asarray(h0)) if lstm else jnp.asarray(h0)
        got = nnx.RNN(cell)(jnp.asarray(x), initial_carry=carry)
        params = rnn_ref.from_flax(cell)
        want = rnn_ref.forward(params, x, h0=h0[None], c0=c0[None] if lstm else None)
        _err(got, want.outputs)
        cfg = params.config
        assert cfg.cells[0].kind == ("lstm" if lstm else "gru")
        if name == "GRUCell-relu-gates":
            assert cfg.activations_of(0, 0) == (rnn_ref.Activation("relu"),
                                                rnn_ref.Activation("softsign"))
            assert not params.layers[0][0].b_h["n"].any()  # nnx has no b_hn: read as 0
        if name == "LSTMCell-softplus":
            assert cfg.activations_of(0, 0)[1:] == (rnn_ref.Activation("softplus"),) * 2
        # the state alone records no functions: hints
        hints = ({"activation": "softsign", "recurrent_activation": "relu"}
                 if "relu" in name else {"activation": "softplus"} if "softplus" in name
                 else {})
        assert rnn_ref.from_flax(nnx.state(cell), **hints) == params
        written = rnn_ref.to_flax(params, lstm="OptimizedLSTMCell" if "Opt" in name
                                  else "LSTMCell")
        assert type(written) is type(cell)
        for a, b in zip(jax.tree.leaves(nnx.state(cell, nnx.Param)),
                        jax.tree.leaves(nnx.state(written, nnx.Param)), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert rnn_ref.from_flax(written) == params


LINEN_CELLS: dict[str, Callable[[int], Any]] = {
    "GRUCell": lambda m: linen.GRUCell(m, param_dtype=jnp.float64),
    "LSTMCell": lambda m: linen.LSTMCell(m, param_dtype=jnp.float64),
    "OptimizedLSTMCell": lambda m: linen.OptimizedLSTMCell(m, param_dtype=jnp.float64),
}


@pytest.mark.parametrize("name", LINEN_CELLS)
def test_linen_cells_read_and_written(name: str) -> None:
    """A linen cell's variables (every bias non-zero: a GRU's ``hn`` bias is b_h["n"]) in
    nn.RNN: read, compared with flax; written back bit-exact, and flax runs what was written
    to the same numbers."""
    with _x64():
        module = linen.RNN(LINEN_CELLS[name](M))
        x = _x(3)
        variables = _linen_init(module, len(name), x)
        got = module.apply(variables, jnp.asarray(x))
        params = rnn_ref.from_flax(variables)
        err = _err(got, rnn_ref.forward(params, x).outputs)
        if name == "GRUCell":
            np.testing.assert_array_equal(params.layers[0][0].b_h["n"],
                                          np.asarray(variables["params"]["cell"]["hn"]["bias"]))
        assert rnn_ref.from_flax(module, variables=variables) == params
        written = rnn_ref.to_flax(params, kind="linen", layout="rnn",
                                  lstm="OptimizedLSTMCell" if "Opt" in name else "LSTMCell")
        np.testing.assert_array_equal(
            np.asarray(written[0].apply(written[1], jnp.asarray(x))), np.asarray(got))
        for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(written[1]), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert rnn_ref.from_flax(written) == params
        assert err < TOL


# --------------------------------------------------------------------------------------------
# canonical parameters written in every layout, run by flax
# --------------------------------------------------------------------------------------------
WRITTEN: dict[str, dict[str, Any]] = {
    "gru": {"cell": "gru"},
    "lstm": {"cell": "lstm"},
    "gru-zero-b_hn": {"cell": "gru"},  # nnx can hold it: b_h["n"] zeroed
    "lstm-2layer-bi": {"cell": "lstm", "hidden_size": (4, 3), "direction": "bidirectional"},
    "mixed-stack": {"cell": ["gru", "elman", "lstm"], "hidden_size": (6, 4, 3),
                    "direction": ["bidirectional", "reverse", "forward"],
                    "activation": [["softsign", "tanh"], ["relu"], ["tanh"]],
                    "recurrent_activation": [["sigmoid", "relu"], None, ["sigmoid"]]},
    "reverse-processing": {"cell": "lstm", "direction": "reverse",
                           "output_order": "processing"},
}


def _zero_b_hn(params: rnn_ref.RNNParams) -> rnn_ref.RNNParams:
    arrays = {k: (np.zeros_like(v) if k.endswith("b_h.n") else v)
              for k, v in params.named_arrays()}
    return rnn_ref.RNNParams.from_arrays(params.config, arrays)


def _runnable(params: rnn_ref.RNNParams, kind: str) -> bool:
    """nnx cannot hold a GRU's b_h["n"]: only the cases without one run there."""
    return kind == "linen" or not any(
        isinstance(c, rnn_ref.GRUParams) and c.b_h["n"].any() for lay in params.layers
        for c in lay)


_SLOW_WRITTEN = ("lstm-2layer-bi", "mixed-stack")  # several scans to compile each


@pytest.mark.parametrize("kind", ["nnx", "linen"])
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_WRITTEN
                                  else n for n in WRITTEN])
def test_written_modules_run_by_flax(name: str, kind: str) -> None:
    """layout="rnn": the module flax applies, on the spec's inputs; read back equivalent
    (bit-exact up to the one-bias merge); processing order only there."""
    config = dict(WRITTEN[name])
    params = _params(seed=len(name), **config)
    if name == "gru-zero-b_hn" or (kind == "nnx" and "gru" in str(config["cell"])):
        params = _zero_b_hn(params)
    x = _x(4)
    want = rnn_ref.forward(params, x).outputs
    with _x64():
        for lstm in ("LSTMCell", "OptimizedLSTMCell"):
            written = rnn_ref.to_flax(params, kind=kind, layout="rnn", lstm=lstm)
            if kind == "nnx":
                got = written(jnp.asarray(x))
            else:
                got = written[0].apply(written[1], jnp.asarray(x))
            _err(got, want)
            assert _equivalent(params, rnn_ref.from_flax(written)) == ""
            if not any(c.kind == "lstm" for c in params.config.cells):
                break


@pytest.mark.parametrize("kind", ["nnx", "linen"])
def test_cell_lists_read_back_and_run(kind: str) -> None:
    """layout="cells": a list per layer of a list per direction; each cell run by flax with
    its carry equals the oracle's step; the lists read back with the hints variables need."""
    params = _zero_b_hn(_params(seed=11, cell=["lstm", "gru"], hidden_size=(4, 6),
                                direction=["bidirectional", "forward"]))
    with _x64():
        cells = rnn_ref.to_flax(params, kind=kind)
        assert len(cells) == 2 and len(cells[0]) == 2
        back = rnn_ref.from_flax(cells, direction=["bidirectional", "forward"])
        assert _equivalent(params, back) == ""
        x = np.random.default_rng(5).standard_normal((N, 2 * 4))
        h, c = np.random.default_rng(6).standard_normal((2, N, 6))
        if kind == "nnx":
            new, out = cells[1][0](jnp.asarray(h), jnp.asarray(x))
        else:
            new, out = linen.GRUCell(6, param_dtype=jnp.float64).apply(
                cells[1][0], jnp.asarray(h), jnp.asarray(x))
        step = rnn_ref.oracle(cells[1][0])(h, x)
        _err(new, step[0])
        _err(out, step[1])
        lstm = cells[0][1]
        h4, c4 = h[:, :4], c[:, :4]
        x5 = x[:, :D]
        if kind == "nnx":
            (c_new, h_new), _ = lstm((jnp.asarray(c4), jnp.asarray(h4)), jnp.asarray(x5))
        else:
            (c_new, h_new), _ = linen.LSTMCell(4, param_dtype=jnp.float64).apply(
                lstm, (jnp.asarray(c4), jnp.asarray(h4)), jnp.asarray(x5))
        (c_want, h_want), _ = rnn_ref.oracle(lstm)((c4, h4), x5)
        _err(c_new, c_want)
        _err(h_new, h_want)


class _Compact(linen.Module):
    """GRU -> Bidirectional LSTM -> SimpleCell, cells adopted by this compact module:
    ``GRUCell_0``, ``LSTMCell_0``, ``LSTMCell_1``, ``SimpleCell_0``."""

    @linen.compact
    def __call__(self, x: Any) -> Any:
        x = linen.RNN(linen.GRUCell(4, param_dtype=jnp.float64))(x)
        x = linen.Bidirectional(linen.RNN(linen.LSTMCell(3, param_dtype=jnp.float64)),
                                linen.RNN(linen.LSTMCell(3, param_dtype=jnp.float64)))(x)
        return linen.RNN(linen.SimpleCell(2, param_dtype=jnp.float64))(x)


@pytest.mark.slow
def test_compact_module_variables_sorted_and_not() -> None:
    """A compact module of mixed cells: its variables (auto-named per class), and the same
    after a serializer sorted the keys, read as the stack flax runs."""
    with _x64():
        module = _Compact()
        x = _x(7)
        variables = _linen_init(module, 7, x)
        got = module.apply(variables, jnp.asarray(x))
        params = rnn_ref.from_flax(variables)
        assert [c.kind for c in params.config.cells] == ["gru", "lstm", "elman"]
        _err(got, rnn_ref.forward(params, x).outputs)
        restored = serialization.msgpack_restore(serialization.msgpack_serialize(variables))
        assert rnn_ref.from_flax(restored) == params


@pytest.mark.slow
def test_nnx_sequential_of_mixed_cells() -> None:
    with _x64():
        rngs = nnx.Rngs(0)
        model = nnx.Sequential(
            nnx.RNN(nnx.OptimizedLSTMCell(D, 4, rngs=rngs, param_dtype=jnp.float64),
                    reverse=True, keep_order=True),
            nnx.Bidirectional(
                nnx.RNN(nnx.GRUCell(4, 3, rngs=rngs, param_dtype=jnp.float64)),
                nnx.RNN(nnx.GRUCell(4, 3, gate_fn=nnx.relu, rngs=rngs,
                                    param_dtype=jnp.float64))),
            nnx.RNN(nnx.LSTMCell(6, 2, rngs=rngs, param_dtype=jnp.float64)))
        _perturb_nnx(model, 8)
        x = _x(8)
        got = model(jnp.asarray(x))
        params = rnn_ref.from_flax(model)
        assert params.config.directions == ("reverse", "bidirectional", "forward")
        assert params.config.activations_of(1, 1)[0] == rnn_ref.Activation("relu")
        _err(got, rnn_ref.forward(params, x).outputs)
        np.testing.assert_allclose(rnn_ref.oracle(model)(x), np.asarray(got), rtol=0,
                                   atol=TOL)
        assert rnn_ref.from_flax(rnn_ref.to_flax(params, layout="rnn")) == params


# --------------------------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------------------------
REFUSED = [
    ({"cell": "gru", "reset_after": False}, "reset_after=False (layer 0)"),
    ({"cell": "lstm", "peepholes": True}, "peepholes (layer 0)"),
    ({"cell": "lstm", "input_forget": True}, "input_forget (layer 0)"),
    ({"cell": "lstm", "proj_size": 2}, "proj_size=2 (layer 0)"),
    ({"cell": "lstm", "cell_activation": "relu"}, "cell_activation relu (layer 0"),
    ({"cell": "gru", "clip": 2.0}, "clip"),
    ({"cell": "lstm", "recurrent_activation": {"name": "hard_sigmoid", "alpha": 0.2,
                                               "beta": 0.5}},
     "gate activation hard_sigmoid"),
]


@pytest.mark.parametrize(("config", "feature"), REFUSED, ids=[f for _, f in REFUSED])
def test_what_flax_cannot_hold_is_refused_by_name(config: dict[str, Any], feature: str) -> None:
    params = _zero_b_hn(_params(**config))
    with pytest.raises(UnsupportedError, match=r"flax (GRU|LSTM)Cell cannot express "
                       + feature.replace("(", r"\(").replace(")", r"\)")):
        rnn_ref.to_flax(params, kind="nnx", layout="rnn")


def test_nnx_gru_b_hn_refused_linen_holds_it() -> None:
    """nnx.GRUCell has no b_hn (flax #5594): a GRU with one is refused by name, never written
    without it; linen's GRUCell holds it exactly; zero b_hn is written to nnx."""
    params = _params(seed=4, cell="gru")
    with pytest.raises(UnsupportedError, match=r"nnx.GRUCell cannot express a non-zero "
                       r"b_h\['n'\] \(layer 0, direction 0.*flax #5594.*kind='linen'"):
        rnn_ref.to_flax(params)
    with _x64():
        back = rnn_ref.from_flax(rnn_ref.to_flax(params, kind="linen"))
        assert _equivalent(params, back) == ""
        np.testing.assert_array_equal(back.layers[0][0].b_h["n"], params.layers[0][0].b_h["n"])
        back = rnn_ref.from_flax(rnn_ref.to_flax(_zero_b_hn(params)))
        assert _equivalent(_zero_b_hn(params), back) == ""


def test_reading_refusals_name_what_they_met() -> None:
    with _x64():
        gru = nnx.RNN(nnx.GRUCell(3, 4, rngs=nnx.Rngs(0)))
        lstm = nnx.RNN(nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0)))
        with pytest.raises(UnsupportedError, match="Bidirectional 'Bidirectional' of a gru "
                           "and a lstm cell"):
            rnn_ref.from_flax(nnx.Bidirectional(gru, lstm))
        cell = nnx.GRUCell(3, 4, gate_fn=jax.nn.hard_sigmoid, rngs=nnx.Rngs(0))
        with pytest.raises(UnsupportedError, match="the flax gate_fn 'hard_sigmoid'"):
            rnn_ref.from_flax(cell)
        with pytest.raises(ValueError, match="recurrent_activation='relu' but cell "
                           r"\[0\]\[0\] has the gate_fn 'sigmoid'"):
            rnn_ref.from_flax(nnx.GRUCell(3, 4, rngs=nnx.Rngs(0)), recurrent_activation="relu")
        bad = nnx.state(nnx.GRUCell(3, 4, rngs=nnx.Rngs(0))).to_pure_dict()
        bad["dense_h"]["bias"] = np.zeros(12)
        with pytest.raises(ValueError, match="the Dense 'dense_h' of a GRUCell .* has no bias"):
            rnn_ref.from_flax(bad)
        tree = linen.GRUCell(4).init(jax.random.key(0), jnp.ones((1, 4)), jnp.ones((1, 3)))
        del tree["params"]["hn"]["bias"]
        with pytest.raises(ValueError, match="the Dense 'hn' of a GRUCell has a bias, but "
                           "none is given"):
            rnn_ref.from_flax(tree)
        with pytest.raises(ValueError, match="recurrent_activation='relu' applies to GRU and "
                           "LSTM layers"):
            rnn_ref.from_flax(nnx.SimpleCell(3, 4, rngs=nnx.Rngs(0)),
                              recurrent_activation="relu")
        with pytest.raises(ValueError, match="lstm must be one of"):
            rnn_ref.to_flax(_params(cell="lstm"), lstm="LSTM")


def test_jax_backend_round_trip_goes_through_flax_cells() -> None:
    """The jax backend's conversion check (to nnx cells and back) holds LSTM and zero-b_hn
    GRU networks; a GRU with b_h["n"] is refused (NotImplementedError), never altered."""
    backend = rnn_ref.get_backend("jax")
    lstm = _params(cell="lstm", direction="bidirectional")
    assert _equivalent(lstm, backend.round_trip(lstm)) == ""
    gru = _params(cell="gru")
    assert _equivalent(_zero_b_hn(gru), backend.round_trip(_zero_b_hn(gru))) == ""
    with pytest.raises(NotImplementedError, match="b_h\\['n'\\]"):
        backend.round_trip(gru)


def test_padded_steps_deviation_holds_for_gated_cells() -> None:
    """flax/deviations/flax.json: with seq_lengths an RNN keeps computing at padded steps,
    whatever the cell; the valid steps are the spec's."""
    with _x64():
        cell = nnx.LSTMCell(D, M, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
        _perturb_nnx(cell, 3)
        params = rnn_ref.from_flax(cell)
        x = _x(9)
        out = np.asarray(nnx.RNN(cell)(jnp.asarray(x), seq_lengths=jnp.array([2, 7, 4])))
        want = rnn_ref.forward(params, x, lengths=[2, 7, 4]).outputs
        for n, n_len in enumerate((2, 7, 4)):
            _err(out[n, :n_len], want[n, :n_len])
        assert np.abs(out[0, 2:]).min() > 0  # computed, not zeroed
