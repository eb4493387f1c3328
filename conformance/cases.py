"""Conformance cases as data: named, seeded, reproducible.

A :class:`Case` is a config, a shape, a dtype, an input pattern (initial state, padding) and a
seed; everything a backend is given (weights, inputs, lengths, masks) is drawn from the seed,
and the expected values come from the oracle. Names spell the case out, e.g.
``rnn_tanh_2layer_bidir_h0_lengths_readout_n3t7d5m4_f32`` or
``lstm_1layer_bidir_h0c0_peepholes_n3t7d5m4_f32``, and are unique.

* :func:`quick_cases`: one axis at a time around a few bases (50 cases): every
  activation, 1 and 2 layers, the three directions, every merge mode, ``h0``, lengths, masks
  with holes and a leading masked step, a zero length, the three padded-output modes, the
  processing order, clip, readout, narrowing stacks, float64, and the tutorials' shapes;
  :func:`gated_quick_cases`, every switch of the GRU and the LSTM once (reset placement,
  ``b_hn``, peepholes, ``input_forget``, projection, clip, Keras 2's and Keras 3's
  ``hard_sigmoid``, activations with alpha and beta, initial cell states, padding with each
  padded-output mode, a mixed stack, a long sequence, saturated gates); and
  :func:`network_cases`, the pieces around the stack (embedding, mixed stacks, selections,
  heads with softmax, identity layers, masking, an LSTM returning its states).
* :func:`full_cases`: the product of activation x layers x direction x padding x initial
  state (readout on every other case), in float32, the same product over the gated cells'
  variants (:func:`gated_full_cases`), plus the quick cases.
* :func:`random_cases`: ``count`` configurations sampled from ``seed`` (any mix of the above).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnn_ref.activations import Activation
from rnn_ref.backends.keras.record import KERAS_ACTIVATIONS
from rnn_ref.config import RNNConfig
from rnn_ref.params import CellParams, GRUParams, LSTMParams, RNNParams, init

__all__ = ["ACTIVATION_SET", "HARD_SIGMOID_KERAS2", "HARD_SIGMOID_KERAS3", "MATRICES", "Case",
           "CaseInputs", "all_named_cases", "full_cases", "gated_full_cases",
           "gated_quick_cases", "matrix_labels", "network_cases", "quick_cases", "random_cases"]

#: Short names and activations: Keras' set with the parameters Keras fixes, then ONNX's others.
ACTIVATION_SET: dict[str, Activation] = {
    **{name.replace("_", ""): act for name, act in KERAS_ACTIVATIONS.items()},
    "affine": Activation("affine", 0.8, 0.1),
    "thresholdedrelu": Activation("thresholded_relu", 0.1),
    "scaledtanh": Activation("scaled_tanh", 1.5, 0.7),
}
#: Keras 2's (tf.keras) ``hard_sigmoid``, ``0.2 z + 0.5``, and Keras 3's, ``z / 6 + 0.5``
#: (../shared/GATED.md, keras-team/keras PR #19477): the gates of a Keras 2 LSTM rebuilt in
#: Keras 3 with the same weights differ.
HARD_SIGMOID_KERAS2 = Activation("hard_sigmoid", 0.2, 0.5)
HARD_SIGMOID_KERAS3 = Activation("hard_sigmoid", 1 / 6, 0.5)
_DIRS = {"fwd": "forward", "rev": "reverse", "bidir": "bidirectional"}
_DTYPES = {"f32": "float32", "f64": "float64"}


@dataclass(frozen=True)
class CaseInputs:
    """What a backend is given for a case (arrays in the case's dtype): ``x (N, T, D)`` (token
    ids ``(N, T)`` with an embedding), ``h0`` ``(S, N, M)`` (or S arrays ``(N, M_l)``),
    ``lengths (N,)``, ``mask (N, T)``, and for a network with LSTM layers ``c0`` ``(C, N, M)``
    (or C arrays ``(N, M_l)``)."""

    params: RNNParams
    x: np.ndarray[Any, Any]
    h0: np.ndarray[Any, Any] | list[np.ndarray[Any, Any]] | None
    lengths: np.ndarray[Any, Any] | None
    mask: np.ndarray[Any, Any] | None
    c0: np.ndarray[Any, Any] | list[np.ndarray[Any, Any]] | None = None

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``forward``: ``h0``, ``lengths``, ``mask``, and ``c0`` only
        when the case gives one (a backend of Elman cells need not take it)."""
        out = {"h0": self.h0, "lengths": self.lengths, "mask": self.mask}
        if self.c0 is not None:
            out["c0"] = self.c0
        return out


@dataclass(frozen=True)
class Case:
    """One conformance case.

    Attributes:
        name: unique, spelled out from the fields.
        config: the architecture.
        n, t: batch size and sequence length (D and M come from the config).
        dtype: ``"float32"`` or ``"float64"``, the dtype the backend computes in.
        h0: whether random initial states are given: ``h0``, and ``c0`` for a network with
            LSTM layers.
        padding: ``"none"``, ``"lengths"`` (right padding), ``"mask"`` (holes and a leading
            masked step) or ``"zero"`` (lengths with one zero).
        seed: draws every array.
        gain: when set, every recurrent kernel is ``gain * G / sqrt(M)`` with G standard
            normal (seeded): below about 1 the recurrence contracts, above about 1.5 it is
            chaotic and float32 cannot determine late steps (docs/spec.md section 4.6).
            Elman layers only.
        weight_scale: when set, every gate's input kernel and both biases in the GRU and
            LSTM layers are multiplied by it: a large one saturates the gates (sigmoid and
            tanh at 0 and 1). The recurrent kernels stay as drawn: scaled too, the recurrence
            turns chaotic and float32 cannot determine it (that is ``gain``'s case).
    """

    name: str
    config: RNNConfig
    n: int
    t: int
    dtype: str
    h0: bool
    padding: str
    seed: int
    gain: float | None = None
    weight_scale: float | None = None

    def inputs(self) -> CaseInputs:
        rng = np.random.default_rng(self.seed)
        dt = np.dtype(self.dtype)
        params = init(self.config, seed=self.seed, scheme="torch", dtype=dt)
        if self.gain is not None:
            params = _with_gain(params, self.gain, self.seed)
        if self.weight_scale is not None:
            params = _scaled_gates(params, self.weight_scale)
        x = self._x(rng, dt)
        h0 = c0 = None
        if self.h0:
            states = [rng.standard_normal((self.n, m)).astype(dt) * 0.5
                      for m in self.config.state_sizes]
            h0 = np.stack(states) if self.config.uniform_hidden else states
            if self.config.num_cell_states:  # drawn after h0: Elman cases draw as before
                cells = [rng.standard_normal((self.n, m)).astype(dt)
                         for m in self.config.cell_state_sizes]
                c0 = np.stack(cells) if self.config.uniform_cell else cells
        lengths = mask = None
        if self.padding in ("lengths", "zero"):
            lengths = rng.integers(1, self.t + 1, size=self.n)
            lengths[0] = self.t  # one full-length sample
            if self.padding == "zero":
                lengths[-1] = 0
        elif self.padding == "mask":
            mask = rng.random((self.n, self.t)) < 0.7
            mask[0, 0] = False  # a leading masked step
            mask[-1, :] = True
            if self.t > 2:
                mask[-1, self.t // 2] = False  # a hole
        return CaseInputs(params, x, h0, lengths, mask, c0)

    def _x(self, rng: np.random.Generator, dt: np.dtype[Any]) -> np.ndarray[Any, Any]:
        """Features ``(N, T, D)``; token ids ``(N, T)`` with an embedding (with ``mask_zero``,
        ids 0 trail every sample but the first: right padding, as tokenizers pad); with a
        ``mask_value``, the last steps of every sample but the first hold it."""
        cfg = self.config
        if cfg.vocab_size is not None:
            low = 1 if cfg.mask_zero else 0
            ids = rng.integers(low, cfg.vocab_size, size=(self.n, self.t))
            if cfg.mask_zero and self.t > 1:
                for i in range(1, self.n):
                    ids[i, self.t - 1 - (i % (self.t - 1)):] = 0
            return ids
        x = rng.standard_normal((self.n, self.t, cfg.input_size)).astype(dt)
        if cfg.mask_value is not None and self.t > 1:
            for i in range(1, self.n):
                x[i, self.t - 1 - (i % (self.t - 1)):] = cfg.mask_value
        return x

    def properties(self) -> dict[str, Any]:
        """What known-failure entries match on."""
        cells = self.config.cells
        kinds = {c.kind for c in cells}
        return {
            "zero_length": self.padding == "zero",
            "empty": self.t == 0,
            "h0": self.h0,
            "padding": self.padding != "none" or self.config.mask_zero
            or self.config.mask_value is not None,
            "padded_output": self.config.padded_output,
            "direction": self.config.direction,
            "reverse_layer": "reverse" in self.config.directions,
            "dtype": self.dtype,
            "layers": self.config.num_layers,
            "readout": self.config.output_size is not None,
            "gain": self.gain,
            "saturated": self.weight_scale is not None,
            "clip": any(c is not None for c in self.config.clips),
            "network": not self.config.is_plain,
            "tanh": any(a.name == "tanh" for layer in self.config.activations for a in layer),
            "select": self.config.select,
            # the gated cells (spec 2.7): "elman", "gru", "lstm" or "mixed"
            "cell": next(iter(kinds)) if len(kinds) == 1 else "mixed",
            "gru": any(c.kind == "gru" for c in cells),
            "lstm": any(c.kind == "lstm" for c in cells),
            "reset_after": any(c.kind == "gru" and c.reset_after for c in cells),
            "reset_before": any(c.kind == "gru" and not c.reset_after for c in cells),
            "peepholes": any(c.peepholes for c in cells),
            "input_forget": any(c.input_forget for c in cells),
            "projection": any(c.proj_size is not None for c in cells),
            "c0": self.h0 and self.config.num_cell_states > 0,
        }


def _with_gain(params: RNNParams, gain: float, seed: int) -> RNNParams:
    """``params`` with every recurrent kernel drawn as ``gain * G / sqrt(M)``."""
    rng = np.random.default_rng(seed + 1)
    layers = []
    for li, layer in enumerate(params.layers):
        row = []
        for r in range(len(layer)):
            c = params.elman_cell(li, r)
            m = c.hidden_size
            w_h = (gain * rng.standard_normal((m, m)) / np.sqrt(m)).astype(c.w_h.dtype)
            row.append(CellParams(c.w_x, w_h, c.b_x, c.b_h))
        layers.append(row)
    return RNNParams(params.config, layers, embedding=params.embedding, head=params.head)


def _scaled_gates(params: RNNParams, scale: float) -> RNNParams:
    """``params`` with every gate's input kernel and biases in its GRU and LSTM cells times
    ``scale``; recurrent kernels, peepholes, projections and Elman cells as they are."""
    layers = []
    for layer in params.layers:
        row: list[Any] = []
        for c in layer:
            if isinstance(c, (GRUParams, LSTMParams)):
                blocks = {k: {g: (a * (1 if k == "w_h" else scale)).astype(a.dtype)
                              for g, a in getattr(c, k).items()}
                          for k in ("w_x", "w_h", "b_x", "b_h")}
                c = (GRUParams(**blocks) if isinstance(c, GRUParams)
                     else LSTMParams(**blocks, p=c.p, w_proj=c.w_proj))
            row.append(c)
        layers.append(row)
    return RNNParams(params.config, layers, embedding=params.embedding, head=params.head)


def _name(act: str, cfg: RNNConfig, dir_key: str, h0: bool, padding: str, n: int, t: int,
          dtype_key: str, extra: str = "", prefix: str | None = None) -> str:
    m = "x".join(str(s) for s in cfg.hidden_sizes) if not cfg.uniform_hidden else str(
        cfg.hidden_sizes[0])
    parts = [prefix or f"rnn_{act}", f"{cfg.num_layers}layer", dir_key]
    if h0:
        parts.append("h0c0" if cfg.num_cell_states else "h0")
    if padding != "none":
        parts.append({"lengths": "lengths", "mask": "mask", "zero": "zerolen"}[padding])
    if cfg.output_size is not None:
        parts.append("readout")
    if extra:
        parts.append(extra)
    parts += [f"n{n}t{t}d{cfg.input_size}m{m}", dtype_key]
    return "_".join(parts)


def _case(act: str = "tanh", layers: int = 2, dir_key: str = "bidir", h0: bool = False,
          padding: str = "none", readout: bool = False, dtype_key: str = "f32",
          n: int = 3, t: int = 7, d: int = 5, m: int | tuple[int, ...] = 4, seed: int = 0,
          extra: str = "", gain: float | None = None, weight_scale: float | None = None,
          prefix: str | None = None, **config: Any) -> Case:
    activation = config.pop("activation", None) or ACTIVATION_SET[act]
    direction = [_DIRS[k] for k in dir_key.split("-")] if "-" in dir_key else _DIRS[dir_key]
    cfg = RNNConfig(d, m, num_layers=len(m) if isinstance(m, tuple) else layers,
                    direction=direction, activation=activation,
                    output_size=2 if readout else None, **config)
    name = _name(act, cfg, dir_key, h0, padding, n, t, dtype_key, extra, prefix)
    # a stable seed from the name, so adding cases never reseeds others
    stable = seed or int.from_bytes(name.encode()[-8:].rjust(8, b"\0"), "little") % (2**31)
    return Case(name, cfg, n, t, _DTYPES[dtype_key], h0, padding, stable, gain, weight_scale)


def _gated(cell: str | tuple[str, ...], layers: int = 1, dir_key: str = "fwd", label: str = "",
           **kw: Any) -> Case:
    """A case of GRU/LSTM layers (``cell`` one kind, or one per layer), named
    ``<cell>[_<label>]_<L>layer_...`` (``gru-lstm-rnn`` for a mixed stack); ``label`` names
    non-default activations. The candidate activation is tanh unless ``activation`` says."""
    kinds = (cell,) if isinstance(cell, str) else cell
    prefix = "-".join("rnn" if k == "elman" else k for k in kinds) + (f"_{label}" if label
                                                                        else "")
    layers = len(kinds) if len(kinds) > 1 else layers
    return _case("tanh", layers, dir_key, prefix=prefix,
                 cell=cell if isinstance(cell, str) else list(cell), **kw)


def quick_cases() -> list[Case]:
    cases = []
    for act, dir_key, layers in itertools.product(["tanh", "relu"], _DIRS, [1, 2]):
        cases.append(_case(act, layers, dir_key))
    for act in ACTIVATION_SET:
        if act not in ("tanh", "relu"):
            cases.append(_case(act, 1, "bidir"))
    cases += [
        _case("tanh", 2, "bidir", h0=True, padding="lengths", readout=True),
        _case("tanh", 2, "bidir", h0=True, padding="mask"),
        _case("relu", 2, "fwd", h0=True, padding="lengths"),
        _case("tanh", 1, "rev", h0=True, padding="lengths"),
        _case("tanh", 1, "rev", padding="mask"),
        _case("tanh", 2, "fwd", padding="mask", padded_output="carry_output", extra="carryout"),
        _case("tanh", 1, "fwd", h0=True, padding="mask", padded_output="carry_state",
              extra="carrystate"),
        _case("tanh", 1, "fwd", h0=True, padding="mask", padded_output="carry_output",
              extra="carryout"),
        _case("tanh", 1, "rev", padding="mask", output_order="processing", extra="processing"),
        _case("tanh", 1, "rev", output_order="processing", extra="processing"),
        _case("tanh", 2, "bidir", h0=True, padding="zero"),
        _case("tanh", 1, "fwd", h0=True, padding="zero"),
        _case("tanh", 2, "fwd", clip=0.5, extra="clip"),
        _case("relu", 1, "bidir", clip=1.0, extra="clip"),
        _case("tanh", 2, "fwd", bias=False, extra="nobias"),
        _case("tanh", 2, "bidir", readout=True, m=(6, 3), extra="narrow"),
        _case("tanh", 2, "bidir", activation=[("relu", "tanh"), ("sigmoid", "relu")],
              extra="mixedacts"),
        _case("tanh", 1, "bidir", activation=("relu", "tanh"), extra="perdir"),
        _case("tanh", 2, "bidir", readout=True, output_activation="sigmoid", extra="sigout"),
        _case("tanh", 2, "bidir", h0=True, padding="lengths", readout=True, dtype_key="f64"),
        _case("relu", 1, "rev", padding="mask", dtype_key="f64"),
        # the tutorials' shapes (N, T, D, M, K) = (1, 10, 3, 5, 2) and (10, 20, 4, 4, 3)
        _case("tanh", 1, "fwd", readout=True, n=1, t=10, d=3, m=5, extra="tutorial"),
        _case("tanh", 1, "fwd", readout=True, n=10, t=20, d=4, m=4, extra="tutorial"),
        _case("tanh", 1, "fwd", n=2, t=0, extra="emptyseq"),
    ]
    for merge in ("sum", "mul", "ave"):
        cases.append(_case("tanh", 2, "bidir", merge_mode=merge, extra=merge))
    cases.append(_case("tanh", 1, "bidir", merge_mode=None, extra="pair"))
    cases += gated_quick_cases()
    cases += network_cases()
    # long and realistic: a contracting network over 1000 steps, and a chaotic one whose late
    # steps float32 cannot determine (reported as ill-conditioned, not compared)
    cases.append(_case("tanh", 1, "fwd", h0=True, padding="lengths", n=4, t=1000, d=32, m=64,
                       gain=0.9, extra="long_g0.9"))
    cases.append(_case("tanh", 1, "fwd", n=4, t=300, d=16, m=64, gain=2.0, extra="chaotic_g2"))
    return _unique(cases)


def gated_quick_cases() -> list[Case]:
    """The GRU and LSTM cases of the quick matrix: every switch once, around the Elman bases'
    shapes (N, T, D, M) = (3, 7, 5, 4). The torch scheme draws every bias non-zero, so every
    GRU case has ``b_h["n"] != 0`` (inside ``r *`` when the reset comes after)."""
    sigmoid = Activation("sigmoid")
    return [
        # GRU: the reset after (torch, Keras 3, ONNX linear_before_reset=1) and before
        _gated("gru", 2, "bidir"),
        _gated("gru", 1, "fwd", reset_after=False, extra="resetbefore"),
        _gated("gru", 1, "fwd", h0=True, padding="mask", padded_output="carry_output",
               extra="carryout"),
        _gated("gru", 1, "bidir", "hardsigmoid3", recurrent_activation=HARD_SIGMOID_KERAS3),
        _gated("gru", 1, "fwd", n=2, t=9, weight_scale=12.0, extra="saturated12"),
        # LSTM: plain, then each switch
        _gated("lstm", 1, "fwd"),
        _gated("lstm", 2, "bidir", h0=True, padding="lengths", readout=True),
        _gated("lstm", 1, "bidir", peepholes=True, extra="peepholes"),
        _gated("lstm", 1, "fwd", h0=True, input_forget=True, extra="inputforget"),
        _gated("lstm", 1, "bidir", h0=True, m=6, proj_size=2, extra="proj2"),
        _gated("lstm", 2, "fwd", clip=0.5, extra="clip"),
        # Keras 2's LSTM default (tf.keras < 2.3): hard_sigmoid 0.2 z + 0.5 on the gates
        _gated("lstm", 1, "fwd", "hardsigmoid2", recurrent_activation=HARD_SIGMOID_KERAS2),
        # ONNX takes any activation with its alpha and beta for f, g and h
        _gated("lstm", 1, "rev", "acts", recurrent_activation=Activation("hard_sigmoid", 0.3, 0.4),
               activation=ACTIVATION_SET["scaledtanh"], cell_activation=ACTIVATION_SET["affine"]),
        _gated("lstm", 1, "rev", h0=True, padding="mask", padded_output="carry_state",
               extra="carrystate"),
        _gated("lstm", 1, "fwd", h0=True, padding="zero"),
        _gated(("lstm", "gru", "elman"), dir_key="bidir", h0=True, padding="lengths",
               recurrent_activation=[(sigmoid,) * 2, (sigmoid,) * 2, None], extra="mixed"),
        # long: T = 256 with lengths; saturated: gates at 0 and 1 (input kernels, biases x 12)
        _gated("lstm", 1, "fwd", h0=True, padding="lengths", n=4, t=256, d=16, m=32,
               extra="long"),
        _gated("lstm", 1, "bidir", n=2, t=9, weight_scale=12.0, extra="saturated12"),
    ]


def gated_full_cases() -> list[Case]:
    """The gated cells in the full matrix: each variant (GRU with the reset after and before,
    LSTM plain, with peepholes and a projection, with ``input_forget``) x layers x direction x
    padding x initial states (readout on every other case), every gate activation of Keras 2,
    Keras 3 and ONNX on both cells, clip, float64, long sequences and saturated gates."""
    variants: dict[str, dict[str, Any]] = {
        "gru": {"cell": "gru"},
        "gru_resetbefore": {"cell": "gru", "reset_after": False},
        "lstm": {"cell": "lstm"},
        "lstm_peepholes_proj2": {"cell": "lstm", "peepholes": True, "m": 6, "proj_size": 2},
        "lstm_inputforget": {"cell": "lstm", "input_forget": True},
    }
    cases = []
    for i, (variant, layers, dir_key, padding, h0) in enumerate(itertools.product(
            variants, [1, 2], _DIRS, ["none", "lengths", "mask", "zero"], [False, True])):
        kw = dict(variants[variant])
        cell = kw.pop("cell")
        extra = variant.partition("_")[2]
        cases.append(_gated(cell, layers, dir_key, h0=h0, padding=padding, readout=i % 2 == 1,
                            extra=extra, **kw))
    gates = {"sigmoid": Activation("sigmoid"), "hardsigmoid2": HARD_SIGMOID_KERAS2,
             "hardsigmoid3": HARD_SIGMOID_KERAS3,
             "affine": ACTIVATION_SET["affine"]}
    for (label, gate), cell, act in itertools.product(gates.items(), ("gru", "lstm"),
                                                      ("tanh", "relu", "softsign")):
        cases.append(_gated(cell, 1, "bidir", f"{label}-{act}", recurrent_activation=gate,
                            activation=ACTIVATION_SET[act], h0=True, padding="lengths"))
    for cell in ("gru", "lstm"):
        cases += [
            _gated(cell, 2, "bidir", h0=True, padding="lengths", clip=1.0, extra="clip"),
            _gated(cell, 2, "bidir", h0=True, padding="mask", readout=True, dtype_key="f64"),
            _gated(cell, 2, "bidir", h0=True, padding="lengths", n=4, t=1000, d=32, m=64,
                   extra="long"),
            _gated(cell, 2, "bidir", h0=True, padding="mask", n=4, t=50, d=16, m=32,
                   weight_scale=12.0, extra="saturated12"),
        ]
    return cases


def network_cases() -> list[Case]:
    """The pieces around the stack (docs/spec.md section 2.6), one or two at a time, as the
    models people train put them together: the IMDB classifier, taggers, bidirectional
    classifiers on final states, mixed stacks, dropout between layers."""
    net = _case
    return [
        net("tanh", 1, "fwd", vocab_size=11, mask_zero=True, select="final",
            head=[(1, "sigmoid")], extra="embed_maskzero_final_sigmoid"),
        net("tanh", 1, "fwd", vocab_size=9, padding_idx=0, extra="embed_paddingidx"),
        net("tanh", 2, "bidir-fwd", m=(4, 3), select="final", head=[(3, "softmax")],
            extra="mixed_final_softmax"),
        net("relu", 2, "fwd-rev", padding="lengths", output_order="processing",
            extra="mixed_processing"),
        net("tanh", 2, "bidir", select="last_step", head=[(2, "linear")], extra="laststep"),
        net("tanh", 2, "bidir", padding="lengths", select="final", extra="final_concat"),
        net("tanh", 2, "bidir", select="final_forward", extra="final_forward"),
        net("tanh", 2, "bidir", h0=True, padding="lengths", select="final_backward",
            head=[(6, "relu"), (2, "linear")], extra="final_backward_mlp"),
        net("tanh", 1, "fwd", head=[(3, "log_softmax", False)], extra="perstep_logsoftmax"),
        net("tanh", 2, "fwd", padding="mask", padded_output="carry_output",
            head=[(4, "tanh"), (3, "softmax")], extra="perstep_mlp_softmax"),
        net("tanh", 2, "fwd", identities=[("dropout", 0.3, 1), ("gaussian_noise", 0.1, 0)],
            readout=True, extra="dropouts"),
        net("tanh", 1, "bidir", mask_value=0.0, select="final", head=[(2, "sigmoid")],
            extra="masking"),
        # pooling over time (issue 21): Keras GlobalAveragePooling1D over a masked sequence,
        # torch out.mean(dim=1) after pad_packed_sequence, GlobalMaxPooling1D
        net("tanh", 1, "bidir", padding="mask", padded_output="carry_output",
            select="mean_valid", head=[(2, "sigmoid")], extra="mean_valid"),
        net("relu", 2, "fwd", padding="lengths", select="mean_all", extra="mean_all"),
        net("tanh", 2, "fwd-rev", select="max_all", head=[(3, "softmax")], extra="max_all"),
        net("tanh", 1, "fwd", vocab_size=11, mask_zero=True, select="final",
            returns=["result", "h_n[-1]"], head=[(1, "sigmoid")], extra="return_state"),
        # the Keras IMDB LSTM classifier returning its states: LSTM(return_state=True)
        _gated("lstm", 1, "fwd", vocab_size=11, mask_zero=True, select="final",
               returns=["result", "h_n[-1]", "c_n[-1]"], head=[(1, "sigmoid")],
               extra="embed_maskzero_final_sigmoid_return_state"),
    ]


def full_cases() -> list[Case]:
    cases = list(quick_cases())
    for i, (act, layers, dir_key, padding, h0) in enumerate(itertools.product(
            ACTIVATION_SET, [1, 2], _DIRS, ["none", "lengths", "mask", "zero"], [False, True])):
        cases.append(_case(act, layers, dir_key, h0=h0, padding=padding, readout=i % 2 == 1))
    for act, gain, t, m in (("tanh", 0.9, 1000, 256), ("relu", 0.5, 1000, 128),
                            ("sigmoid", 1.5, 500, 128), ("tanh", 1.5, 1000, 64)):
        cases.append(_case(act, 2, "bidir", h0=True, padding="lengths", readout=True, n=4,
                           t=t, d=32, m=m, gain=gain, extra=f"long_g{gain}"))
    cases.append(_case("tanh", 2, "bidir", n=4, t=400, d=16, m=64, gain=2.0,
                       extra="chaotic_g2"))
    cases += gated_full_cases()
    return _unique(cases)


def _random_cells(rng: np.random.Generator, layers: int, R: int, hidden: tuple[int, ...]
                  ) -> tuple[str | None, dict[str, Any]]:
    """Each layer's cell (half of them Elman), and the gated cells' switches drawn from
    ``rng``: ``(name prefix or None for an Elman stack, RNNConfig keywords)``."""
    kinds = [str(rng.choice(["elman", "elman", "gru", "lstm"])) for _ in range(layers)]
    if all(k == "elman" for k in kinds):
        return None, {}
    gates = [Activation("sigmoid"), HARD_SIGMOID_KERAS2, HARD_SIGMOID_KERAS3,
             ACTIVATION_SET["softsign"]]
    kw: dict[str, Any] = {"cell": kinds, "recurrent_activation": [
        None if k == "elman" else tuple(gates[int(rng.integers(0, len(gates)))]
                                        for _ in range(R)) for k in kinds]}
    if "gru" in kinds:
        kw["reset_after"] = [bool(rng.integers(0, 2)) if k == "gru" else None for k in kinds]
    if "lstm" in kinds:
        kw["peepholes"] = [bool(rng.integers(0, 2)) if k == "lstm" else None for k in kinds]
        kw["input_forget"] = [bool(rng.integers(0, 4) == 0) if k == "lstm" else None
                              for k in kinds]
        kw["proj_size"] = [int(rng.integers(1, m + 1)) if k == "lstm" and rng.integers(0, 3) == 0
                           else None for k, m in zip(kinds, hidden, strict=True)]
    return "-".join("rnn" if k == "elman" else k for k in kinds) + "_random", kw


def random_cases(count: int, seed: int = 0) -> list[Case]:
    """``count`` sampled cases; the same ``(count, seed)`` gives the same cases. About half
    the layers are GRU or LSTM layers with random switches (drawn from a stream of their own,
    so the rest of each case is drawn as before gated cells existed)."""
    rng = np.random.default_rng(seed)
    cell_rng = np.random.default_rng([seed, 23])
    out = []
    acts = list(ACTIVATION_SET)
    for i in range(count):
        dir_key = str(rng.choice(list(_DIRS)))
        layers = int(rng.integers(1, 4))
        R = 2 if dir_key == "bidir" else 1
        act_names = [[str(rng.choice(acts)) for _ in range(R)] for _ in range(layers)]
        hidden = tuple(int(v) for v in rng.integers(1, 8, size=layers))
        readout = bool(rng.integers(0, 2))
        merge = str(rng.choice(["concat", "sum", "mul", "ave"])) if R == 2 else "concat"
        padding = str(rng.choice(["none", "lengths", "mask", "zero"]))
        prefix, gated = _random_cells(cell_rng, layers, R, hidden)
        case = _case(
            "random", layers, dir_key, h0=bool(rng.integers(0, 2)), padding=padding,
            readout=readout, dtype_key=str(rng.choice(["f32", "f64"])),
            n=int(rng.integers(1, 5)), t=int(rng.integers(1, 9)), d=int(rng.integers(1, 7)),
            m=hidden, seed=int(rng.integers(1, 2**31)), extra=f"s{seed}i{i}",
            activation=[tuple(ACTIVATION_SET[a] for a in names) for names in act_names],
            merge_mode=merge,
            clip=float(rng.uniform(0.5, 3)) if rng.integers(0, 4) == 0 else None,
            padded_output=str(rng.choice(["zeros", "carry_output", "carry_state"])),
            prefix=prefix, **gated,
        )
        out.append(case)
    return out


#: the matrices a case can come from, smallest first: the full matrix holds the quick one
MATRICES = ("quick", "full", "random")


def matrix_labels(random: Sequence[Case] = ()) -> dict[str, str]:
    """``{case name: the smallest matrix that holds it}`` for every named case and the
    ``random`` cases given (from :func:`random_cases`): ``"quick"`` for :func:`quick_cases`,
    ``"full"`` for the rest of :func:`full_cases`, ``"random"`` for ``random``."""
    labels = {c.name: "full" for c in full_cases()}
    labels.update({c.name: "quick" for c in quick_cases()})
    labels.update({c.name: "random" for c in random})
    return labels


def all_named_cases() -> Iterator[Case]:
    """Every case that has a fixed name (quick and full), for ``--case`` lookups."""
    yield from full_cases()


def _unique(cases: list[Case]) -> list[Case]:
    seen: dict[str, Case] = {}
    for c in cases:
        if c.name in seen and seen[c.name] != c:
            raise ValueError(f"two different cases are both named {c.name!r}")
        seen[c.name] = c
    return list(seen.values())
