"""keras_graph: Keras model configs (JSON) read without Keras."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rnn_ref import UnsupportedError
from rnn_ref.backends.keras.graph import KERAS2, Source, assemble, parse_model


def _layer(cls: str, name: str, module: str = "keras.layers", **config: Any) -> dict[str, Any]:
    return {"module": module, "class_name": cls, "config": {"name": name, **config}}


def _rnn(name: str, units: int, **kw: Any) -> dict[str, Any]:
    return _layer("SimpleRNN", name, units=units, activation=kw.pop("activation", "tanh"),
                  use_bias=True, return_sequences=kw.pop("rs", False), **kw)


def _seq(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"class_name": "Sequential", "config": {"name": "s", "layers": [
        _layer("InputLayer", "in", batch_shape=[None, None, 3]), *layers]}}


def _functional(*layers: dict[str, Any]) -> dict[str, Any]:
    """A chain, each layer fed by the one before (Keras 3 node format)."""
    chain = [_layer("InputLayer", "in", batch_shape=[None, None, 3]), *layers]
    for prev, layer in zip(chain, chain[1:], strict=False):
        tensor = {"class_name": "__keras_tensor__",
                  "config": {"keras_history": [prev["config"]["name"], 0, 0]}}
        layer["inbound_nodes"] = [{"args": [tensor], "kwargs": {"mask": None}}]
    for layer in chain:
        layer["name"] = layer["config"]["name"]
    return {"class_name": "Functional", "config": {
        "layers": chain, "input_layers": ["in", 0, 0],
        "output_layers": [chain[-1]["name"], 0, 0]}}


def test_sequential_stack_head_and_identities() -> None:
    net = parse_model(_seq(_rnn("a", 5, rs=True, dropout=0.1), _layer("Dropout", "d", rate=0.2),
                           _layer("Bidirectional", "b", merge_mode="sum",
                                  layer={"class_name": "SimpleRNN", "config": {
                                      "units": 4, "activation": "relu",
                                      "return_sequences": False}}),
                           _layer("Dense", "h", units=2, activation="linear", use_bias=False),
                           _layer("Activation", "act", activation="softmax")))
    cfg = net.config
    assert cfg.directions == ("forward", "bidirectional") and cfg.select == "final"
    assert cfg.merge_modes == ("concat", "sum") and str(cfg.head[0]) == "Dense(2, softmax, " \
        "no bias)"
    assert [(i.kind, i.rate, i.after) for i in cfg.identities] == [
        ("input_dropout", 0.1, 0), ("dropout", 0.2, 1)]
    assert net.sources["layers.1.1.w_h"] == Source("b", 4)
    assert net.sources["head.0.b"] is None


def test_functional_chain_and_assemble() -> None:
    net = parse_model(_functional(_rnn("r", 4, rs=True, go_backwards=True),
                                  _layer("TimeDistributed", "td", layer=_layer(
                                      "Dense", "dense", units=2, activation="sigmoid"))))
    assert net.config.output_order == "processing" and net.config.select == "sequence"
    rng = np.random.default_rng(0)
    shapes = {("r", 0): (3, 4), ("r", 1): (4, 4), ("r", 2): (4,), ("td", 0): (4, 2),
              ("td", 1): (2,)}
    arrays = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    params = assemble(net, lambda name, i: arrays[(name, i)])
    np.testing.assert_array_equal(params.layers[0][0].w_h, arrays[("r", 1)])
    assert not params.layers[0][0].b_h.any()


@pytest.mark.parametrize(("layers", "words"), [
    ((_layer("Multiply", "multiply", "keras.src.ops.numpy"), _rnn("r", 4)), "multiply"),
    ((_layer("Rescaling", "scale", scale=2.0), _rnn("r", 4)), "Rescaling"),
    ((_rnn("r", 4, rs=True), _layer("Activation", "act", activation="relu"),
      _layer("Dense", "d", units=1)), "act"),
    ((_rnn("r", 4, rs=True, go_backwards=True), _rnn("s", 3)), "flipped"),
    ((_rnn("r", 4, activation="gelu"),), "gelu"),
])
def test_refusals_name_what_they_met(layers: tuple[dict[str, Any], ...], words: str) -> None:
    for model in (_seq(*layers), _functional(*layers)):
        with pytest.raises(UnsupportedError, match=words):
            parse_model(model)


def test_keras2_flavour_and_its_hard_sigmoid() -> None:
    cfg = parse_model(_seq(_rnn("r", 4, activation="hard_sigmoid")), flavour=KERAS2).config
    assert cfg.activation_of(0, 0).alpha == pytest.approx(0.2)
