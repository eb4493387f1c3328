"""GRU and LSTM in the spec's core: the config's switches, the per-gate parameters, the canonical
file, and the oracle's two implementations against each other and against torch (spec 2.7,
3.7)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import rnn_ref
from rnn_ref import Activation, GRUParams, LSTMParams, RNNConfig
from rnn_ref.cells import GATE_ORDERS, CellSpec, pack, unpack

KERAS2_HARD_SIGMOID = Activation("hard_sigmoid", alpha=0.2, beta=0.5)

# D=3, M=5, N=4, T=6 (P=2 when projected): no two sizes equal
CONFIGS = {
    "gru": RNNConfig(3, 5, cell="gru"),
    "gru_before_bidi_clip": RNNConfig(3, 5, cell="gru", reset_after=False,
                                      direction="bidirectional", clip=0.7),
    "gru_hard_sigmoid_reverse": RNNConfig(3, 5, cell="gru", direction="reverse",
                                          recurrent_activation=KERAS2_HARD_SIGMOID),
    "lstm": RNNConfig(3, 5, cell="lstm"),
    "lstm_peep_proj_2layers": RNNConfig(3, 5, cell="lstm", peepholes=True, proj_size=2,
                                        num_layers=2, direction="reverse"),
    "lstm_cifg_bidi": RNNConfig(3, 5, cell="lstm", input_forget=True, peepholes=True,
                                clip=0.5, direction="bidirectional", select="final",
                                cell_activation="softsign"),
    "mixed": RNNConfig(3, [5, 4, 6], cell=["lstm", "gru", "elman"],
                       direction=["bidirectional", "forward", "reverse"], proj_size=2,
                       returns=["result", "c_n", "h_n[-1]"]),
}
PADDINGS: dict[str, dict[str, Any]] = {
    "none": {},
    "lengths": {"lengths": [6, 3, 0, 5]},
    "holes_carry_output": {"mask": np.array([[1, 0, 1, 1, 0, 1], [0, 0, 1, 1, 1, 1],
                                              [1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]], bool),
                           "padded_output": "carry_output"},
    "holes_carry_state": {"mask": np.array([[0, 1, 1, 1, 0, 1], [1, 0, 1, 0, 1, 1],
                                             [1, 1, 1, 1, 1, 0], [1, 0, 0, 0, 0, 0]], bool),
                          "padded_output": "carry_state"},
}


def _leaves(value: Any) -> list[np.ndarray]:
    if value is None:
        return []
    if isinstance(value, (tuple, list)):
        return [np.asarray(v) for v in value]
    return [np.asarray(value)]


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("name", CONFIGS)
def test_fast_path_is_the_clear_loop(name: str, padding: str) -> None:
    cfg = CONFIGS[name]
    params = rnn_ref.init(cfg, seed=3, dtype=np.float64)
    x = np.random.default_rng(4).standard_normal((4, 6, 3))
    fast = rnn_ref.forward(params, x, **PADDINGS[padding])
    loop = rnn_ref.forward_loop(params, x, **PADDINGS[padding])
    for field in ("result", "outputs", "h_n", "c_n"):
        a, b = _leaves(getattr(fast, field)), _leaves(getattr(loop, field))
        assert len(a) == len(b)
        for u, v in zip(a, b, strict=True):
            np.testing.assert_allclose(u, v, rtol=0, atol=1e-14, err_msg=field)


def _from_torch(module: Any, cfg: RNNConfig) -> rnn_ref.RNNParams:
    """The canonical parameters of a torch nn.GRU / nn.LSTM, block by block (the test's own
    reading, independent of backends/torch)."""
    kind = cfg.cell_of(0).kind
    layers = []
    for li in range(cfg.num_layers):
        cells = []
        for sfx in ["", "_reverse"][:cfg.num_directions_of(li)]:
            def get(name: str, li: int = li, sfx: str = sfx) -> np.ndarray:
                return getattr(module, f"{name}_l{li}{sfx}").detach().numpy().astype(np.float64)

            order = f"{kind}:torch"
            blocks = {
                "w_x": {k: v.T for k, v in unpack(get("weight_ih"), order, cell=kind,
                                                  axis=0).items()},
                "w_h": {k: v.T for k, v in unpack(get("weight_hh"), order, cell=kind,
                                                  axis=0).items()},
                "b_x": unpack(get("bias_ih"), order, cell=kind),
                "b_h": unpack(get("bias_hh"), order, cell=kind),
            }
            if kind == "gru":
                cells.append(GRUParams(**blocks))
            else:
                proj = get("weight_hr").T if cfg.cell_of(li).proj_size else None
                cells.append(LSTMParams(**blocks, w_proj=proj))
        layers.append(cells)
    return rnn_ref.RNNParams(cfg, layers)


@pytest.mark.parametrize("kind, kwargs", [
    ("gru", {"bidirectional": True, "num_layers": 2}),
    ("lstm", {"proj_size": 3, "num_layers": 2}),
    ("lstm", {"bidirectional": True}),
])
def test_the_oracle_computes_torch(kind: str, kwargs: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = (torch.nn.GRU if kind == "gru" else torch.nn.LSTM)(
        4, 7, batch_first=True, **kwargs).double()
    cfg = RNNConfig(4, 7, cell=kind, num_layers=kwargs.get("num_layers", 1),
                    direction="bidirectional" if kwargs.get("bidirectional") else "forward",
                    proj_size=kwargs.get("proj_size"))
    params = _from_torch(module, cfg)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 4))
    h0 = rng.standard_normal((cfg.num_states, 3, cfg.state_sizes[0]))
    lengths = np.array([5, 2, 4])
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.tensor(x), torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    if kind == "gru":
        out, h_n = module(packed, torch.tensor(h0))
        c_n = None
        res = rnn_ref.forward(params, x, h0=h0, lengths=lengths)
    else:
        c0 = rng.standard_normal((cfg.num_cell_states, 3, 7))
        out, (h_n, c_n) = module(packed, (torch.tensor(h0), torch.tensor(c0)))
        res = rnn_ref.forward(params, x, h0=h0, c0=c0, lengths=lengths)
        np.testing.assert_allclose(res.c_n, c_n.detach().numpy(), rtol=0, atol=1e-14)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=5)
    np.testing.assert_allclose(res.outputs, out.detach().numpy(), rtol=0, atol=1e-14)
    np.testing.assert_allclose(res.h_n, h_n.detach().numpy(), rtol=0, atol=1e-14)


def test_reset_placements_are_different_functions() -> None:
    after = rnn_ref.init(RNNConfig(3, 5, cell="gru"), seed=1, dtype=np.float64)
    before = after.replace(reset_after=False)
    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    gap = np.abs(rnn_ref.forward(after, x).outputs - rnn_ref.forward(before, x).outputs).max()
    assert gap > 1e-3


def test_keras_hard_sigmoids_are_two_activations() -> None:
    k2 = RNNConfig(3, 5, cell="lstm", recurrent_activation=KERAS2_HARD_SIGMOID)
    k3 = k2.replace(recurrent_activation={"name": "hard_sigmoid", "alpha": 1 / 6, "beta": 0.5})
    assert k2 != k3
    p = rnn_ref.init(k2, seed=2, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    gap = np.abs(rnn_ref.forward(p, x).outputs
                 - rnn_ref.forward(p.replace(recurrent_activation=k3.recurrent_activation),
                                   x).outputs).max()
    assert gap > 1e-3


# -- the config ---------------------------------------------------------------------------------
def test_switches_and_their_compact_forms() -> None:
    cfg = RNNConfig(3, [4, 5], cell=["gru", "elman"], reset_after=False,
                    recurrent_activation=[KERAS2_HARD_SIGMOID, None])
    assert cfg.cell == ("gru", "elman") and cfg.reset_after is False
    assert cfg.recurrent_activation == KERAS2_HARD_SIGMOID and cfg.cell_activation is None
    assert cfg.activations_of(0, 0) == (KERAS2_HARD_SIGMOID, Activation("tanh"))
    assert cfg.activations_of(1, 0) == (Activation("tanh"),)
    assert RNNConfig.from_dict(cfg.to_dict()) == cfg
    assert RNNConfig(3, 4, cell="lstm") == RNNConfig(3, 4, cell="lstm", cell_activation="tanh",
                                                     recurrent_activation="sigmoid")
    lstm = RNNConfig(3, 4, cell="lstm", activation="relu")
    assert lstm.activations_of(0, 0) == (Activation("sigmoid"), Activation("relu"),
                                         Activation("relu"))  # h follows activation (Keras)
    assert RNNConfig(3, 4).is_elman and not lstm.is_elman


@pytest.mark.parametrize("kwargs, match", [
    ({"cell": "gru", "peepholes": True}, r"peepholes=True applies to LSTM layers"),
    ({"cell": "lstm", "reset_after": False}, r"reset_after=False applies to GRU layers"),
    ({"recurrent_activation": "sigmoid"}, r"recurrent_activation=.* applies to GRU and LSTM"),
    ({"cell": "gru", "cell_activation": "tanh"}, r"cell_activation=.* applies to LSTM"),
    ({"cell": "rnn"}, r"cell must be one of \['elman', 'gru', 'lstm'\], got 'rnn'"),
    ({"cell": "lstm", "proj_size": 0}, r"proj_size must be a positive int or None, got 0"),
    ({"cell": ["lstm", "gru"], "num_layers": 2, "proj_size": [2, 3]},
     r"proj_size\[1\]=3, but layer 1 is 'gru'"),
    ({"cell": "gru", "returns": ["result", "c_n"]}, r"no LSTM layer"),
    ({"cell": "lstm", "returns": ["result", "c_n[1]"]}, r"1 LSTM cell states"),
])
def test_config_refuses_a_switch_its_cells_lack(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RNNConfig(3, 4, **kwargs)


def test_sizes_of_a_projected_stack() -> None:
    cfg = RNNConfig(3, 5, cell="lstm", proj_size=2, num_layers=2, direction="bidirectional")
    assert cfg.output_sizes == (2, 2) and cfg.state_sizes == (2, 2, 2, 2)
    assert cfg.cell_state_sizes == (5, 5, 5, 5) and cfg.layer_input_size(1) == 4
    mixed = RNNConfig(3, [5, 4], cell=["gru", "lstm"], direction="bidirectional")
    assert mixed.num_cell_states == 2 and mixed.cell_state_index(1, 1) == 1
    with pytest.raises(ValueError, match="layer 0 is 'gru': only an LSTM layer"):
        mixed.cell_state_index(0, 0)


@pytest.mark.parametrize("kind, kwargs", [
    ("gru", {"bidirectional": True}), ("gru", {"bias": False, "num_layers": 2}),
    ("lstm", {"proj_size": 3, "num_layers": 2}), ("lstm", {}),
])
def test_parameter_counts_are_torch_counts(kind: str, kwargs: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    module = (torch.nn.GRU if kind == "gru" else torch.nn.LSTM)(4, 7, **kwargs)
    cfg = RNNConfig(4, 7, cell=kind, num_layers=kwargs.get("num_layers", 1),
                    direction="bidirectional" if kwargs.get("bidirectional") else "forward",
                    proj_size=kwargs.get("proj_size"), bias=kwargs.get("bias", True))
    assert cfg.num_parameters("torch") == sum(p.numel() for p in module.parameters())


def test_keras_parameter_counts() -> None:
    # Keras 3: GRU(5) on D=3: 3*(3*5 + 5*5) + 2*15 = 150 (reset_after: a (2, 15) bias);
    # GRU(5, reset_after=False): 135; LSTM(5): 4*(15 + 25) + 20 = 180
    assert RNNConfig(3, 5, cell="gru").num_parameters("keras") == 150
    assert RNNConfig(3, 5, cell="gru", reset_after=False).num_parameters("keras") == 135
    assert RNNConfig(3, 5, cell="lstm").num_parameters("keras") == 180


# -- the parameters -----------------------------------------------------------------------------
def _blocks(gates: str, shape: tuple[int, ...], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {g: rng.standard_normal(shape) for g in gates}


def test_a_packed_matrix_is_refused() -> None:
    with pytest.raises(TypeError, match=r"w_x must be a mapping of gate name to array"
                                        r".*rnn_ref.cells.unpack"):
        GRUParams(np.zeros((3, 15)), _blocks("zrn", (5, 5)), _blocks("zrn", (5,)),
                  _blocks("zrn", (5,)))


@pytest.mark.parametrize("change, error, match", [
    ({"w_x": _blocks("zr", (3, 5))}, ValueError, r"w_x has gates \['r', 'z'\], expected"),
    ({"w_h": _blocks("zrn", (4, 5))}, ValueError, r"w_h\['z'\] has shape \(4, 5\)"),
    ({"b_h": {**_blocks("zrn", (5,)), "n": np.array([0, 0, np.nan, 0, 0])}}, ValueError,
     r"non-finite value \(nan at index \(2,\)\)"),
])
def test_gru_params_are_checked(change: dict[str, Any], error: type[Exception],
                                match: str) -> None:
    arrays = {"w_x": _blocks("zrn", (3, 5)), "w_h": _blocks("zrn", (5, 5)),
              "b_x": _blocks("zrn", (5,)), "b_h": _blocks("zrn", (5,))}
    arrays.update(change)
    with pytest.raises(error, match=match):
        cell = GRUParams(**arrays)
        rnn_ref.RNNParams(RNNConfig(3, 5, cell="gru"), [[cell]])


def test_lstm_params_follow_the_switches() -> None:
    base = {"w_x": _blocks("ifgo", (3, 5)), "w_h": _blocks("ifgo", (5, 5)),
            "b_x": _blocks("ifgo", (5,)), "b_h": _blocks("ifgo", (5,))}
    with pytest.raises(ValueError, match=r"the layer has peepholes \(config.peepholes\), "
                                         r"the cell has none"):
        rnn_ref.RNNParams(RNNConfig(3, 5, cell="lstm", peepholes=True), [[LSTMParams(**base)]])
    with pytest.raises(ValueError, match=r"has gates \['i', 'f', 'g', 'o'\].*input_forget: "
                                         r"the forget gate is 1 - i"):
        rnn_ref.RNNParams(RNNConfig(3, 5, cell="lstm", input_forget=True),
                          [[LSTMParams(**base)]])
    with pytest.raises(ValueError, match=r"config.proj_size is 2, the cell has no w_proj"):
        rnn_ref.RNNParams(RNNConfig(3, 5, cell="lstm", proj_size=2), [[LSTMParams(**base)]])
    with pytest.raises(TypeError, match=r"layers\[0\]\[0\] must be rnn_ref.GRUParams "
                                        r"\(layer 0 is 'gru'\), got LSTMParams"):
        rnn_ref.RNNParams(RNNConfig(3, 5, cell="gru"), [[LSTMParams(**base)]])
    cifg = {k: {g: v for g, v in b.items() if g != "f"} for k, b in base.items()}
    cell = LSTMParams(**cifg, p={"i": np.ones(5), "o": np.ones(5)})
    net = rnn_ref.RNNParams(RNNConfig(3, 5, cell="lstm", input_forget=True, peepholes=True),
                            [[cell]])
    assert sorted(n for n, _ in net.named_arrays()) == sorted(
        [f"layers.0.0.{k}.{g}" for k in ("w_x", "w_h", "b_x", "b_h") for g in "igo"]
        + ["layers.0.0.p.i", "layers.0.0.p.o"])


def test_blocks_are_read_only_copies() -> None:
    w = np.zeros((3, 5))
    cell = GRUParams({"z": w, "r": w, "n": w}, _blocks("zrn", (5, 5)), _blocks("zrn", (5,)),
                     _blocks("zrn", (5,)))
    w[0, 0] = 1.0
    assert cell.w_x["z"][0, 0] == 0.0
    with pytest.raises(TypeError):
        cell.w_x["z"] = w  # type: ignore[index]
    with pytest.raises(ValueError):
        cell.w_x["z"][0, 0] = 2.0


def test_bias_free_gated_cells_need_zero_biases() -> None:
    cfg = RNNConfig(3, 5, cell="gru", bias=False)
    params = rnn_ref.init(cfg, seed=0)
    assert not any(a.any() for n, a in params.named_arrays() if ".b_" in n)
    cell = params.layers[0][0]
    assert isinstance(cell, GRUParams)
    with pytest.raises(ValueError, match="non-zero biases but config.bias is False"):
        rnn_ref.RNNParams(cfg, [[GRUParams(cell.w_x, cell.w_h, _blocks("zrn", (5,)),
                                           cell.b_h)]])


def test_elman_writers_are_stopped_at_a_gated_cell() -> None:
    params = rnn_ref.init(RNNConfig(3, 5, cell="lstm"))
    with pytest.raises(TypeError, match=r"layers\[0\]\[0\] is a LSTM cell; this code writes "
                                        r"Elman cells only"):
        params.elman_cell(0, 0)


# -- gate orders --------------------------------------------------------------------------------
def test_unpack_and_pack_are_inverse_and_name_the_order() -> None:
    packed = np.arange(4 * 3 * 2).reshape(3, 8)  # (D, 4M) with M = 2
    blocks = unpack(packed, "lstm:onnx", cell="lstm", axis=1)
    assert list(blocks) == ["i", "o", "f", "g"]
    np.testing.assert_array_equal(blocks["o"], packed[:, 2:4])
    np.testing.assert_array_equal(pack(blocks, "lstm:onnx", cell="lstm", axis=1), packed)
    torch_order = pack(blocks, "lstm:torch", cell="lstm", axis=1)
    np.testing.assert_array_equal(torch_order[:, 2:4], packed[:, 4:6])  # f second in torch
    with pytest.raises(ValueError, match=r"gate order 'lstm:tflite' is not recorded; known"):
        unpack(packed, "lstm:tflite", cell="lstm")
    with pytest.raises(ValueError, match=r"a packed gru matrix of 8 on its gate axis does not "
                                         r"split into 3 gates"):
        unpack(packed, "gru:torch", cell="gru")
    with pytest.raises(ValueError, match=r"\['i', 'f', 'f', 'o'\] is not an order of lstm"):
        unpack(packed, ["i", "f", "f", "o"], cell="lstm")
    assert all(source for _, source in GATE_ORDERS.values())


def test_cell_spec_names_its_gates() -> None:
    assert CellSpec("lstm", input_forget=True, peepholes=True).gates == ("i", "g", "o")
    assert CellSpec("lstm", input_forget=True, peepholes=True).peephole_gates == ("i", "o")
    assert CellSpec("gru", reset_after=False).describe() == "gru, reset before"


# -- the canonical file -------------------------------------------------------------------------
def test_canonical_file_round_trip_and_version_two(tmp_path: Any) -> None:
    params = rnn_ref.init(CONFIGS["mixed"], seed=5)
    path = rnn_ref.save(params, tmp_path / "net.npz")
    assert rnn_ref.load(path) == params
    # a version-2 file (the Elman cell, a config without the gated fields) still reads
    from rnn_ref import io

    elman = rnn_ref.init(RNNConfig(3, 4, output_size=2), seed=1)
    members = io.to_members(elman)
    config = elman.config.to_dict()
    for key in ("cell", "recurrent_activation", "cell_activation", "reset_after", "peepholes",
                "input_forget", "proj_size"):
        del config[key]
    import json

    members["__format__"] = np.array("rnn-ref/2")
    members["__config__"] = np.array(json.dumps(config))
    assert io.from_members(members) == elman


def test_a_declared_lstm_is_counted_with_its_four_gates() -> None:
    """Two layers of M = 6000 on D = 6000: 1.4e8 parameters as Elman layers, under the 2**28
    (2.7e8) limit; 5.8e8 as LSTM layers, over it, refused before any array is built."""
    import json

    from rnn_ref import io
    from rnn_ref.errors import LimitError

    config = {"input_size": 6000, "hidden_size": 6000, "num_layers": 2}
    members = {"__format__": np.array(io.FORMAT), "__config__": np.array(json.dumps(config))}
    with pytest.raises(rnn_ref.FileFormatError, match="arrays do not match the config"):
        io.from_members(members)  # the Elman stack passes the limit, then lacks its arrays
    members["__config__"] = np.array(json.dumps({**config, "cell": "lstm"}))
    with pytest.raises(LimitError, match="parameter count"):
        io.from_members(members)


def test_a_per_layer_switch_of_nones_is_the_default() -> None:
    assert RNNConfig(3, 4, cell="gru", peepholes=[None]) == RNNConfig(3, 4, cell="gru")
    with pytest.raises(ValueError, match="peepholes gives 1 values but there are 2 layers"):
        RNNConfig(3, 4, num_layers=2, cell="lstm", peepholes=[None])
