"""flax models as people build them (issue 12): linen ``nn.RNN(nn.SimpleCell)`` variables in
every layout flax 0.12 writes, ``nn.Bidirectional``, stacks, and nnx modules and their state.

Each model is built and run by flax itself, read with ``rnn_ref.from_flax``, and compared with
``rnn_ref.forward`` (float32 tolerance); ``to_flax`` writes it back bit-exact and flax runs
what was written to the same numbers. ``reverse=True`` with ``keep_order=False`` is the spec's
``output_order="processing"``; with ``keep_order=True`` it is a time-aligned reverse layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import need

import rnn_ref
from rnn_ref import UnsupportedError

jax = need("jax")
jnp = jax.numpy
linen = need("flax.linen")
nnx = need("flax.nnx")
serialization = need("flax.serialization")

N, T, D = 3, 7, 5
TOL = 3e-5  # float32 against the float64 oracle


def _x(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, T, D)).astype(np.float32)


def _perturb(tree: Any, seed: int | np.random.Generator) -> Any:
    """Every leaf plus seeded noise (flax initialises biases to zero: make them count), keys
    kept in flax's order (``jax.tree.map`` would sort them)."""
    rng = np.random.default_rng(seed)
    if isinstance(tree, dict):
        return {k: _perturb(v, rng) for k, v in tree.items()}
    return jnp.asarray(np.asarray(tree) + 0.3 * rng.standard_normal(tree.shape), tree.dtype)


def _init(module: Any, seed: int) -> dict:
    variables = module.init(jax.random.key(seed), jnp.asarray(_x()))
    return {"params": _perturb(variables["params"], seed)}


def _check(params: rnn_ref.RNNParams, got: Any, x: np.ndarray) -> float:
    want = rnn_ref.forward(params, x).outputs
    err = float(np.abs(np.asarray(got) - want).max())
    assert err < TOL, err
    return err


class _Compact(linen.Module):
    """RNN -> Bidirectional -> RNN(reverse, keep_order): cells adopted by this module's
    compact scope, written as ``SimpleCell_0`` ... ``SimpleCell_3``."""

    @linen.compact
    def __call__(self, x: Any) -> Any:
        x = linen.RNN(linen.SimpleCell(4))(x)
        x = linen.Bidirectional(linen.RNN(linen.SimpleCell(6)), linen.RNN(linen.SimpleCell(6)))(x)
        return linen.RNN(linen.SimpleCell(3), reverse=True, keep_order=True)(x)


class _Setup(linen.Module):
    """Named in setup: ``enc`` (an RNN) then ``bi`` (a Bidirectional)."""

    def setup(self) -> None:
        self.enc = linen.RNN(linen.SimpleCell(4, activation_fn=linen.relu))
        self.bi = linen.Bidirectional(linen.RNN(linen.SimpleCell(2)),
                                      linen.RNN(linen.SimpleCell(2)))

    def __call__(self, x: Any) -> Any:
        return self.bi(self.enc(x))


class _Deep(linen.Module):
    """Eleven RNNs whose cells have no parent: ``RNN_0`` ... ``RNN_10`` (a serializer that
    sorts keys puts ``RNN_10`` after ``RNN_1``)."""

    @linen.compact
    def __call__(self, x: Any) -> Any:
        for i in range(11):
            x = linen.RNN(linen.SimpleCell(3 + i % 4, parent=None))(x)
        return x


# (name, module, the hints variables need)
LINEN: list[tuple[str, Callable[[], Any], dict[str, Any]]] = [
    ("rnn", lambda: linen.RNN(linen.SimpleCell(4)), {}),
    ("rnn-reverse-keep-order",
     lambda: linen.RNN(linen.SimpleCell(4), reverse=True, keep_order=True),
     {"direction": "reverse"}),
    ("rnn-reverse-processing", lambda: linen.RNN(linen.SimpleCell(4), reverse=True),
     {"direction": "reverse", "output_order": "processing"}),
    ("bidirectional",
     lambda: linen.Bidirectional(linen.RNN(linen.SimpleCell(4)), linen.RNN(linen.SimpleCell(4))),
     {}),
    ("sequential", lambda: linen.Sequential([
        linen.RNN(linen.SimpleCell(4, activation_fn=linen.sigmoid)),
        linen.Bidirectional(linen.RNN(linen.SimpleCell(3)), linen.RNN(linen.SimpleCell(3))),
        linen.RNN(linen.SimpleCell(2), reverse=True)]),
     {"activation": [["sigmoid"], ["tanh", "tanh"], ["tanh"]],
      "direction": ["forward", "bidirectional", "reverse"], "output_order": "processing"}),
    ("compact-cells", _Compact, {"direction": ["forward", "bidirectional", "reverse"]}),
    ("setup-names", _Setup, {"activation": [["relu"], ["tanh", "tanh"]]}),
    ("compact-rnn-11", _Deep, {}),
]


@pytest.mark.parametrize(("name", "make", "hints"), LINEN, ids=[c[0] for c in LINEN])
def test_linen_variables(name: str, make: Callable[[], Any], hints: dict[str, Any]) -> None:
    module = make()
    variables = _init(module, seed=len(name))
    x = _x(2)
    got = module.apply(variables, jnp.asarray(x))
    params = rnn_ref.from_flax(variables, **hints)
    _check(params, got, x)
    # keys sorted (jax.tree.map, msgpack): RNN_10 after RNN_1, "bi" before "enc"
    restored = serialization.msgpack_restore(serialization.msgpack_serialize(variables))
    assert list(restored["params"]) == sorted(restored["params"])
    assert rnn_ref.from_flax(restored, **hints) == params
    # written back as a module and its variables: bit-exact, and flax runs it the same
    written, again = rnn_ref.to_flax(params, kind="linen", layout="rnn")
    assert rnn_ref.from_flax(written, variables=again) == params
    assert rnn_ref.from_flax((written, again)) == params
    if name != "compact-rnn-11":  # eleven more scans to compile: the read back is enough there
        _check(params, written.apply(again, jnp.asarray(x)), x)


def test_linen_module_objects_record_reverse_and_keep_order() -> None:
    """Given the module with its variables, reverse / keep_order / activation_fn are read."""
    module = linen.Sequential([
        linen.RNN(linen.SimpleCell(4, activation_fn=linen.relu), reverse=True, keep_order=True),
        linen.RNN(linen.SimpleCell(3), reverse=True)])
    variables = _init(module, seed=4)
    params = rnn_ref.from_flax(module, variables=variables)
    cfg = params.config
    assert cfg.directions == ("reverse", "reverse") and cfg.output_order == "processing"
    assert cfg.activation_of(0, 0) == rnn_ref.Activation("relu")
    got = module.apply(variables, jnp.asarray(_x(3)))
    _check(params, got, _x(3))
    np.testing.assert_allclose(rnn_ref.oracle((module, variables))(_x(3)), np.asarray(got),
                               atol=TOL)
    with pytest.raises(UnsupportedError, match="return_carry=True"):
        rnn_ref.oracle(nnx.RNN(nnx.SimpleCell(3, 2, rngs=nnx.Rngs(0)), return_carry=True))
    with pytest.raises(ValueError, match="direction='forward' but the flax module"):
        rnn_ref.from_flax(module, variables=variables, direction="forward")


def _nnx_models() -> list[tuple[str, Any, dict[str, Any]]]:
    rngs = nnx.Rngs(0)
    cell = nnx.SimpleCell
    return [
        ("rnn", nnx.RNN(cell(D, 4, rngs=rngs)), {}),
        ("rnn-reverse-keep-order",
         nnx.RNN(cell(D, 4, activation_fn=nnx.relu, rngs=rngs), reverse=True, keep_order=True),
         {"direction": "reverse", "activation": "relu"}),
        ("rnn-reverse-processing", nnx.RNN(cell(D, 4, rngs=rngs), reverse=True),
         {"direction": "reverse", "output_order": "processing"}),
        ("bidirectional", nnx.Bidirectional(nnx.RNN(cell(D, 3, rngs=rngs)),
                                            nnx.RNN(cell(D, 3, rngs=rngs))), {}),
        ("sequential", nnx.Sequential(
            nnx.RNN(cell(D, 4, rngs=rngs), reverse=True, keep_order=True),
            nnx.Bidirectional(nnx.RNN(cell(4, 2, activation_fn=nnx.soft_sign, rngs=rngs)),
                              nnx.RNN(cell(4, 2, rngs=rngs))),
            nnx.RNN(cell(4, 6, rngs=rngs))),
         {"direction": ["reverse", "bidirectional", "forward"],
          "activation": [["tanh"], ["softsign", "tanh"], ["tanh"]]}),
    ]


@pytest.mark.parametrize("index", range(5), ids=[m[0] for m in
                                                  [("rnn",), ("rnn-reverse-keep-order",),
                                                   ("rnn-reverse-processing",),
                                                   ("bidirectional",), ("sequential",)]])
def test_nnx_modules_and_state(index: int) -> None:
    name, module, hints = _nnx_models()[index]
    state = nnx.state(module, nnx.Param)
    nnx.update(module, jax.tree.map(lambda a: a + 0.3 * jax.random.normal(
        jax.random.key(index), a.shape, a.dtype), state))
    x = _x(4)
    got = module(jnp.asarray(x))
    params = rnn_ref.from_flax(module)
    _check(params, got, x)
    assert rnn_ref.from_flax(nnx.state(module), **hints) == params
    written = rnn_ref.to_flax(params, layout="rnn")
    assert type(written) is type(module)
    assert rnn_ref.from_flax(written) == params
    for a, b in zip(jax.tree.leaves(nnx.state(module, nnx.Param)),
                    jax.tree.leaves(nnx.state(written, nnx.Param)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(written(jnp.asarray(x))), np.asarray(got))
    np.testing.assert_allclose(rnn_ref.oracle(module)(x), np.asarray(got), atol=TOL)


def test_lengths_valid_steps_of_a_bidirectional_layer() -> None:
    """With seq_lengths, flax flips each sample within its length: the valid steps are the
    spec's (the padded ones are not: flax/deviations/flax.json)."""
    module = linen.Bidirectional(linen.RNN(linen.SimpleCell(4)), linen.RNN(linen.SimpleCell(4)))
    variables = _init(module, seed=5)
    x, lengths = _x(6), np.array([7, 3, 5])
    got = np.asarray(module.apply(variables, jnp.asarray(x), seq_lengths=jnp.asarray(lengths)))
    want = rnn_ref.forward(rnn_ref.from_flax(variables), x, lengths=lengths).outputs
    for n, n_len in enumerate(lengths):
        np.testing.assert_allclose(got[n, :n_len], want[n, :n_len], atol=TOL)


def test_ambiguous_and_unchained_variables_say_which_hint() -> None:
    """Two cells of one shape (D == M) at the top of a stack: a bidirectional layer or two
    layers; the error lists both, and direction= decides."""
    cells = {f"SimpleCell_{i}": {"i": {"kernel": np.ones((4, 4), np.float32),
                                       "bias": np.zeros(4, np.float32)},
                                 "h": {"kernel": np.eye(4, dtype=np.float32)}}
             for i in range(2)}
    with pytest.raises(ValueError, match=r"more than one stack.*\['bidirectional'\]"):
        rnn_ref.from_flax({"params": cells})
    assert rnn_ref.from_flax({"params": cells}, direction="bidirectional").config.directions \
        == ("bidirectional",)
    assert rnn_ref.from_flax({"params": cells}, direction=["forward", "reverse"]
                             ).config.directions == ("forward", "reverse")
    cells["SimpleCell_1"]["i"]["kernel"] = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="widths chain.*in call order"):
        rnn_ref.from_flax({"params": cells})


def test_refusals_name_what_they_met() -> None:
    rnn = linen.RNN(linen.SimpleCell(4))
    variables = {"params": {"RNN_0": rnn.init(jax.random.key(0), jnp.ones((1, 2, 3)))["params"],
                            "Dense_0": {"kernel": np.ones((4, 2)), "bias": np.zeros(2)}}}
    with pytest.raises(UnsupportedError, match="the flax Dense layer 'Dense_0'"):
        rnn_ref.from_flax(variables)
    middle = nnx.Sequential(nnx.RNN(nnx.SimpleCell(3, 4, rngs=nnx.Rngs(0)), reverse=True),
                            nnx.RNN(nnx.SimpleCell(4, 4, rngs=nnx.Rngs(0))))
    with pytest.raises(UnsupportedError, match="keep_order=False below another layer"):
        rnn_ref.from_flax(middle)
    summed = nnx.Bidirectional(nnx.RNN(nnx.SimpleCell(3, 4, rngs=nnx.Rngs(0))),
                               nnx.RNN(nnx.SimpleCell(3, 4, rngs=nnx.Rngs(1))), merge_fn=jnp.add)
    with pytest.raises(UnsupportedError, match="merge_fn 'add'"):
        rnn_ref.from_flax(summed)
    with pytest.raises(UnsupportedError, match="flax.nnx.Linear"):
        rnn_ref.from_flax(nnx.Sequential(nnx.Linear(3, 4, rngs=nnx.Rngs(0))))
    with pytest.raises(ValueError, match="give variables="):
        rnn_ref.from_flax(rnn)
    processing = rnn_ref.init(rnn_ref.RNNConfig(3, 2, direction="reverse",
                                                output_order="processing"), seed=0)
    with pytest.raises(UnsupportedError, match="layout='rnn' writes"):
        rnn_ref.to_flax(processing)
    with pytest.raises(UnsupportedError, match="an embedding"):
        rnn_ref.to_flax(rnn_ref.init(rnn_ref.RNNConfig(3, 2, vocab_size=9), seed=0))
