"""Conformance cases as data: named, seeded, reproducible.

A :class:`Case` is a config, a shape, a dtype, an input pattern (initial state, padding) and a
seed; everything a backend is given (weights, inputs, lengths, masks) is drawn from the seed,
and the expected values come from the oracle. Names spell the case out, e.g.
``rnn_tanh_2layer_bidir_h0_lengths_readout_n3t7d5m4_f32``, and are unique.

* :func:`quick_cases`: one axis at a time around a few bases (50 cases): every
  activation, 1 and 2 layers, the three directions, every merge mode, ``h0``, lengths, masks
  with holes and a leading masked step, a zero length, the three padded-output modes, the
  processing order, clip, readout, narrowing stacks, float64, and the tutorials' shapes; and
  :func:`network_cases`, the pieces around the stack (embedding, mixed stacks, selections,
  heads with softmax, identity layers, masking).
* :func:`full_cases`: the product of activation x layers x direction x padding x initial
  state (readout on every other case), in float32, plus the quick cases.
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
from rnn_ref.params import CellParams, RNNParams, init

__all__ = ["ACTIVATION_SET", "MATRICES", "Case", "CaseInputs", "all_named_cases", "full_cases",
           "matrix_labels", "network_cases", "quick_cases", "random_cases"]

#: Short names and activations: Keras' set with the parameters Keras fixes, then ONNX's others.
ACTIVATION_SET: dict[str, Activation] = {
    **{name.replace("_", ""): act for name, act in KERAS_ACTIVATIONS.items()},
    "affine": Activation("affine", 0.8, 0.1),
    "thresholdedrelu": Activation("thresholded_relu", 0.1),
    "scaledtanh": Activation("scaled_tanh", 1.5, 0.7),
}
_DIRS = {"fwd": "forward", "rev": "reverse", "bidir": "bidirectional"}
_DTYPES = {"f32": "float32", "f64": "float64"}


@dataclass(frozen=True)
class CaseInputs:
    """What a backend is given for a case (arrays in the case's dtype)."""

    params: RNNParams
    x: np.ndarray[Any, Any]
    h0: np.ndarray[Any, Any] | list[np.ndarray[Any, Any]] | None
    lengths: np.ndarray[Any, Any] | None
    mask: np.ndarray[Any, Any] | None

    def kwargs(self) -> dict[str, Any]:
        return {"h0": self.h0, "lengths": self.lengths, "mask": self.mask}


@dataclass(frozen=True)
class Case:
    """One conformance case.

    Attributes:
        name: unique, spelled out from the fields.
        config: the architecture.
        n, t: batch size and sequence length (D and M come from the config).
        dtype: ``"float32"`` or ``"float64"``, the dtype the backend computes in.
        h0: whether a random initial state is given.
        padding: ``"none"``, ``"lengths"`` (right padding), ``"mask"`` (holes and a leading
            masked step) or ``"zero"`` (lengths with one zero).
        seed: draws every array.
        gain: when set, every recurrent kernel is ``gain * G / sqrt(M)`` with G standard
            normal (seeded): below about 1 the recurrence contracts, above about 1.5 it is
            chaotic and float32 cannot determine late steps (docs/spec.md section 4.6).
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

    def inputs(self) -> CaseInputs:
        rng = np.random.default_rng(self.seed)
        dt = np.dtype(self.dtype)
        params = init(self.config, seed=self.seed, scheme="torch", dtype=dt)
        if self.gain is not None:
            params = _with_gain(params, self.gain, self.seed)
        x = self._x(rng, dt)
        h0 = None
        if self.h0:
            states = [rng.standard_normal((self.n, m)).astype(dt) * 0.5
                      for m in self.config.state_sizes]
            h0 = np.stack(states) if self.config.uniform_hidden else states
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
        return CaseInputs(params, x, h0, lengths, mask)

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
            "network": not self.config.is_plain,
            "tanh": any(a.name == "tanh" for layer in self.config.activations for a in layer),
            "select": self.config.select,
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


def _name(act: str, cfg: RNNConfig, dir_key: str, h0: bool, padding: str, n: int, t: int,
          dtype_key: str, extra: str = "") -> str:
    m = "x".join(str(s) for s in cfg.hidden_sizes) if not cfg.uniform_hidden else str(
        cfg.hidden_sizes[0])
    parts = [f"rnn_{act}", f"{cfg.num_layers}layer", dir_key]
    if h0:
        parts.append("h0")
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
          extra: str = "", gain: float | None = None, **config: Any) -> Case:
    activation = config.pop("activation", None) or ACTIVATION_SET[act]
    direction = [_DIRS[k] for k in dir_key.split("-")] if "-" in dir_key else _DIRS[dir_key]
    cfg = RNNConfig(d, m, num_layers=len(m) if isinstance(m, tuple) else layers,
                    direction=direction, activation=activation,
                    output_size=2 if readout else None, **config)
    name = _name(act, cfg, dir_key, h0, padding, n, t, dtype_key, extra)
    # a stable seed from the name, so adding cases never reseeds others
    stable = seed or int.from_bytes(name.encode()[-8:].rjust(8, b"\0"), "little") % (2**31)
    return Case(name, cfg, n, t, _DTYPES[dtype_key], h0, padding, stable, gain)


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
    cases += network_cases()
    # long and realistic: a contracting network over 1000 steps, and a chaotic one whose late
    # steps float32 cannot determine (reported as ill-conditioned, not compared)
    cases.append(_case("tanh", 1, "fwd", h0=True, padding="lengths", n=4, t=1000, d=32, m=64,
                       gain=0.9, extra="long_g0.9"))
    cases.append(_case("tanh", 1, "fwd", n=4, t=300, d=16, m=64, gain=2.0, extra="chaotic_g2"))
    return _unique(cases)


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
    return _unique(cases)


def random_cases(count: int, seed: int = 0) -> list[Case]:
    """``count`` sampled cases; the same ``(count, seed)`` gives the same cases."""
    rng = np.random.default_rng(seed)
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
        case = _case(
            "random", layers, dir_key, h0=bool(rng.integers(0, 2)), padding=padding,
            readout=readout, dtype_key=str(rng.choice(["f32", "f64"])),
            n=int(rng.integers(1, 5)), t=int(rng.integers(1, 9)), d=int(rng.integers(1, 7)),
            m=hidden, seed=int(rng.integers(1, 2**31)), extra=f"s{seed}i{i}",
            activation=[tuple(ACTIVATION_SET[a] for a in names) for names in act_names],
            merge_mode=merge,
            clip=float(rng.uniform(0.5, 3)) if rng.integers(0, 4) == 0 else None,
            padded_output=str(rng.choice(["zeros", "carry_output", "carry_state"])),
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
