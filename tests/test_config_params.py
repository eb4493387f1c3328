"""RNNConfig, RNNParams, init: validation, immutability, parameter counts, init schemes."""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest

import rnn_ref
from rnn_ref import Activation, CellParams, Readout, RNNConfig, RNNParams


@pytest.mark.parametrize(("d", "m", "keras"), [(3, 5, 45), (4, 4, 36), (10, 3, 42)])
def test_parameter_counts_of_the_tutorials(d: int, m: int, keras: int) -> None:
    cfg = RNNConfig(d, m)
    assert cfg.num_parameters("keras") == keras
    assert cfg.num_parameters("torch") == keras + m


def test_parameter_counts_stacked_bidirectional_readout() -> None:
    cfg = RNNConfig(3, 4, num_layers=2, direction="bidirectional", output_size=2)
    layer0 = 2 * (3 * 4 + 16 + 8)
    layer1 = 2 * (8 * 4 + 16 + 8)
    assert cfg.num_parameters("torch") == layer0 + layer1 + 8 * 2 + 2
    assert RNNConfig(3, 4, bias=False).num_parameters("keras") == 12 + 16
    summed = RNNConfig(3, 4, num_layers=2, direction="bidirectional", merge_mode="sum")
    assert summed.layer_input_size(1) == 4


def test_activation_forms_normalise() -> None:
    assert RNNConfig(2, 3).activation == Activation("tanh")
    bi = RNNConfig(2, 3, direction="bidirectional", activation=("relu", "tanh"))
    assert bi.activation_of(0, 1) == Activation("tanh")
    per_layer = RNNConfig(2, 3, num_layers=2, activation=[("relu",), ("sigmoid",)])
    assert per_layer.activation_of(1, 0) == Activation("sigmoid")
    mapping = RNNConfig(2, 3, activation={"name": "elu", "alpha": 0.5})
    assert mapping.activation_of(0, 0) == Activation("elu", alpha=0.5)
    with pytest.raises(ValueError, match="gives 3 activations but the layer has 2"):
        RNNConfig(2, 3, direction="bidirectional", activation=("relu", "tanh", "tanh"))
    with pytest.raises(ValueError, match="lists 3 layers but the network has 2"):
        RNNConfig(2, 3, num_layers=2, activation=[("relu",)] * 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_size": 0}, "input_size must be a positive int, got 0"),
        ({"hidden_size": 2.5}, "hidden_size must be a positive int, got 2.5"),
        ({"hidden_size": (4, 3), "num_layers": 3}, "num_layers=3 but hidden_size lists 2"),
        ({"direction": "backward"}, "direction must be one of"),
        ({"clip": -1.0}, r"clip\[0\] must be a positive finite number"),
        ({"merge_mode": "sum"}, "needs a bidirectional layer; layer 0 is forward"),
        ({"direction": "bidirectional", "merge_mode": None, "output_size": 2},
         "merge_mode=None returns a pair"),
        ({"direction": "bidirectional", "num_layers": 2, "merge_mode": None},
         r"merge_mode\[0\]=None .* only for the last layer"),
        ({"padded_output": "carry"}, "padded_output must be one of"),
        ({"output_order": "processing"}, "needs a reverse last layer"),
        ({"activation": "hard_sigmoid"}, "needs an explicit alpha"),
        ({"bias": 1}, "bias must be True or False"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict, message: str) -> None:
    base = {"input_size": 3, "hidden_size": 4}
    with pytest.raises(ValueError, match=message):
        RNNConfig(**{**base, **kwargs})


def test_config_dict_round_trip_and_unknown_keys() -> None:
    cfg = RNNConfig(3, (5, 4), direction="bidirectional",
                    activation=[("relu", {"name": "elu", "alpha": 0.7}), ("tanh", "sigmoid")],
                    clip=(2.0, None), output_size=2, output_activation="sigmoid",
                    merge_mode=("sum", "concat"), padded_output="carry_state")
    assert RNNConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(TypeError, match="expected an activation name, .* got int 3"):
        RNNConfig(3, 4, activation=3)
    with pytest.raises(ValueError, match=r"unknown keys \['hidden'\]"):
        RNNConfig.from_dict({"input_size": 3, "hidden_size": 4, "hidden": 2})


def test_numpy_integer_sizes_are_plain_ints() -> None:
    """Issue 14 item 8: a NumPy integer for a size is taken as the int it holds."""
    cfg = RNNConfig(3, np.int64(5))
    assert cfg == RNNConfig(3, 5) and hash(cfg) == hash(RNNConfig(3, 5))
    cfg = RNNConfig(np.int32(3), [np.int64(6), np.uint8(4)], num_layers=np.int16(2),
                    output_size=np.int64(2))
    assert cfg == RNNConfig(3, (6, 4), output_size=2)
    assert [type(v) for v in (cfg.input_size, cfg.num_layers, cfg.output_size)] == [int] * 3
    assert [type(m) for m in cfg.hidden_sizes] == [int, int]
    assert RNNConfig(3, 4, num_layers=np.int64(2)).to_json() == RNNConfig(3, 4, 2).to_json()
    for bad in (np.True_, True, np.float64(5.0), np.int64(0)):
        with pytest.raises(ValueError, match="hidden_size must be a positive int"):
            RNNConfig(3, bad)


def test_attributes_hold_the_normalised_values() -> None:
    """Issue 11 item 5: the constructor takes the wide forms, the attributes hold (and are
    typed as) the normalised ones, and equality, hash, repr and round trips see those."""
    hints = typing.get_type_hints(RNNConfig)
    assert hints["head"] == tuple[rnn_ref.Dense, ...]
    assert hints["num_layers"] is int and hints["input_size"] is int
    init = typing.get_type_hints(RNNConfig.__init__)
    assert init["output_activation"] == rnn_ref.activations.ActivationLike | None
    cfg = RNNConfig(5, 4, activation="relu", output_size=2, output_activation="tanh")
    assert cfg.output_activation == Activation("tanh") and cfg.activation == Activation("relu")
    two = RNNConfig(3, [6, 6], clip=[3, 3], activation=[("relu",), ("relu",)])
    assert (two.hidden_size, two.num_layers, two.clip) == (6, 2, 3.0)
    assert two == RNNConfig(3, 6, num_layers=2, clip=3.0, activation="relu")
    assert "hidden_size=6, num_layers=2" in repr(two)
    per_layer = RNNConfig(3, (6, 3), clip=(3.0, None))
    assert (per_layer.hidden_size, per_layer.clip) == ((6, 3), (3.0, None))
    for c in (cfg, two, per_layer):
        assert RNNConfig.from_dict(c.to_dict()) == c
        assert dataclasses.replace(c) == c and c.replace() == c
    assert dataclasses.replace(per_layer, hidden_size=[5, 5]).hidden_size == 5


def _cells(rng: np.random.Generator, d: int = 3, m: int = 4) -> list[CellParams]:
    return [CellParams(rng.standard_normal((d, m)), rng.standard_normal((m, m)),
                       rng.standard_normal(m), rng.standard_normal(m))]


def test_params_are_immutable_copies() -> None:
    w = np.ones((3, 4))
    cell = CellParams(w, np.eye(4), np.zeros(4), np.zeros(4))
    w[0, 0] = 5.0
    assert cell.w_x[0, 0] == 1.0
    with pytest.raises(ValueError, match="read-only"):
        cell.w_x[0, 0] = 2.0
    with pytest.raises(AttributeError):
        cell.w_x = np.zeros((3, 4))  # type: ignore[misc]


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda r: RNNParams(RNNConfig(3, 4), [[CellParams(r.standard_normal((4, 3)), np.eye(3),
                                                           np.zeros(3), np.zeros(3))]]),
         ValueError, r"layers\[0\]\[0\].w_x has shape \(4, 3\), expected \(3, 4\)"),
        (lambda r: CellParams(np.ones((3, 4)), np.ones((4, 5)), np.zeros(4), np.zeros(4)),
         ValueError, r"w_h has shape \(4, 5\), expected \(4, 4\)"),
        (lambda r: CellParams(np.ones((3, 4)), np.eye(4), np.zeros(3), np.zeros(4)),
         ValueError, r"b_x has shape \(3,\)"),
        (lambda r: RNNParams(RNNConfig(3, 4, direction="bidirectional"), [_cells(r)]),
         ValueError, r"must hold 2 CellParams"),
        (lambda r: RNNParams(RNNConfig(3, 4, num_layers=2), [_cells(r)]),
         ValueError, r"layers has 1 entries, config has 2"),
        (lambda r: RNNParams(RNNConfig(3, 4, bias=False), [_cells(r)]),
         ValueError, "non-zero biases but config.bias is False"),
        (lambda r: RNNParams(RNNConfig(3, 4, output_size=2), [_cells(r)]),
         ValueError, r"no weights were given: pass head=\[rnn_ref.Readout"),
        (lambda r: RNNParams(RNNConfig(3, 4), [_cells(r)], Readout(np.ones((4, 2)), np.ones(2))),
         ValueError, "head weights are given but the config has no head"),
        (lambda r: RNNParams(RNNConfig(3, 4, output_size=2), [_cells(r)],
                             Readout(np.ones((5, 2)), np.ones(2))),
         ValueError, r"head\[0\].w has shape \(5, 2\), expected \(4, 2\): \(F, K\)"),
        (lambda r: CellParams(np.ones((3, 4)).astype(str), np.eye(4), np.zeros(4), np.zeros(4)),
         TypeError, "w_x: expected a floating array"),
        (lambda r: RNNParams(RNNConfig(3, 4), [[CellParams(
            np.ones((3, 4), np.float32), np.eye(4), np.zeros(4), np.zeros(4))]]),
         TypeError, "all arrays must share one dtype"),
    ],
)
def test_params_errors(build, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        build(np.random.default_rng(0))


def test_non_finite_weights_are_rejected_with_their_location() -> None:
    w_h = np.eye(4)
    w_h[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"layers\[0\]\[0\].w_h holds a non-finite value "
                                         r"\(nan at index \(2, 1\)\)"):
        RNNParams(RNNConfig(3, 4), [[CellParams(np.ones((3, 4)), w_h, np.zeros(4), np.zeros(4))]])


def test_init_schemes() -> None:
    cfg = RNNConfig(3, 16, num_layers=2, direction="bidirectional", output_size=2)
    t = rnn_ref.init(cfg, seed=1, scheme="torch")
    k = 1 / np.sqrt(16)
    for _, arr in t.named_arrays():
        assert arr.dtype == np.float32
    cell = t.layers[1][1]
    assert cell.w_x.shape == (32, 16)
    assert np.abs(cell.w_h).max() <= k and np.abs(cell.b_h).max() <= k and np.any(cell.b_h)
    kr = rnn_ref.init(cfg, seed=1, scheme="keras", dtype=np.float64)
    c = kr.layers[0][0]
    np.testing.assert_allclose(c.w_h @ c.w_h.T, np.eye(16), atol=1e-12)  # orthogonal
    assert not np.any(c.b_x) and not np.any(c.b_h)
    assert np.abs(c.w_x).max() <= np.sqrt(6 / (3 + 16))
    assert rnn_ref.init(cfg, seed=1) == rnn_ref.init(cfg, seed=1)
    assert rnn_ref.init(cfg, seed=1) != rnn_ref.init(cfg, seed=2)
    nobias = rnn_ref.init(RNNConfig(3, 4, bias=False), seed=0)
    assert not np.any(nobias.layers[0][0].b_x)
    with pytest.raises(ValueError, match="scheme must be 'torch' or 'keras'"):
        rnn_ref.init(cfg, scheme="xavier")  # type: ignore[arg-type]


def test_astype_and_equality() -> None:
    p = rnn_ref.init(RNNConfig(3, 4, output_size=2), seed=0, dtype=np.float64)
    assert p.astype(np.float32).dtype == np.float32
    assert p.astype(np.float32) != p
    assert p.astype(np.float64) == p
