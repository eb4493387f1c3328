"""Reading any ``nn.Module`` built from the network's pieces, and writing the whole network.

**Reading a module** (:func:`read_module`): ``torch.fx.symbolic_trace`` turns the module's
``forward`` into a graph whose ``nn.Embedding``, ``nn.RNN``, ``nn.Linear``, dropout and
activation modules are leaf calls, whatever the attributes are named; the graph is then read
node by node, in order, as one chain::

    input --nn.Embedding--> --nn.RNN--> ... --nn.RNN--> out, h_n
        --selection: out (every step), out[:, -1], h_n[-1], h_n[-2], cat([h_n[-2], h_n[-1]], 1)
        --nn.Linear, activation (relu, tanh, sigmoid, softmax, log_softmax over the last
          dim ...), nn.Linear ...--> result

with ``nn.Dropout``/``nn.AlphaDropout``/``F.dropout`` anywhere (recorded where they sit) and
``nn.RNN(dropout=p)`` recorded between its layers. Every node is part of that chain or the
module is refused naming the node's operation (``torch.mul``, ``operator.add``, a
``torch.nn.Conv1d`` module, a softmax over another dim, a branch, a selection after the head).
A reverse-only layer written by flipping the input (``torch.flip``) is not recognised.

**Reading a state dict** (:func:`read_state_dict`): any prefixes; the ``nn.RNN`` weights
(``<prefix>weight_ih_l<k>[_reverse]`` ...) grouped by module, an ``nn.Embedding`` table (a
weight-only module before the first ``nn.RNN``) and ``nn.Linear`` layers (after the last), in
the state dict's order and chained by their shapes. What a state dict does not record comes as
hints: the nonlinearity always; with ``nn.Linear`` layers, the selection and the head
activations. A state dict that :class:`TorchNetwork` saved records the whole network itself.

**Writing** (:func:`build_network`): a :class:`~rnn_ref.backends.torch_network.TorchNetwork`.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from rnn_ref.activations import Activation
from rnn_ref.backends.torch_network import Activation as TorchActivation
from rnn_ref.backends.torch_network import TorchNetwork
from rnn_ref.config import RNNConfig
from rnn_ref.convert import MissingHintError
from rnn_ref.errors import FileFormatError, UnsupportedError
from rnn_ref.network import Dense, HeadActivation, Identity, Softmax
from rnn_ref.params import CellParams, Readout, RNNParams

__all__ = ["Layout", "build_network", "file_network", "network_params", "read_module",
           "read_state_dict"]

_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
CONFIG_KEY = "rnn_ref_config"


def _numpy(t: Any) -> np.ndarray[Any, Any]:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)


def _refuse(what: str, why: str) -> UnsupportedError:
    return UnsupportedError("rnn-ref", what, why)


# --------------------------------------------------------------------------------------------
# modules -> canonical parameters
# --------------------------------------------------------------------------------------------
def _rnn_cells(rnn: nn.RNN) -> list[list[CellParams]]:
    """The canonical cells of every layer (R_l each) of an ``nn.RNN``."""
    sd = {k: _numpy(v) for k, v in rnn.state_dict().items()}
    layers = []
    for li in range(rnn.num_layers):
        row = []
        for r in range(2 if rnn.bidirectional else 1):
            sfx = f"_l{li}" + ("_reverse" if r else "")
            w_ih, w_hh = sd[f"weight_ih{sfx}"], sd[f"weight_hh{sfx}"]
            zeros = np.zeros(w_ih.shape[0], w_ih.dtype)
            row.append(CellParams(w_ih.T, w_hh.T, sd.get(f"bias_ih{sfx}", zeros),
                                  sd.get(f"bias_hh{sfx}", zeros)))
        layers.append(row)
    return layers


def _readout(linear: nn.Linear) -> Readout:
    w = _numpy(linear.weight)
    b = _numpy(linear.bias) if linear.bias is not None else np.zeros(w.shape[0], w.dtype)
    return Readout(w.T, b)


def network_params(module: TorchNetwork) -> RNNParams:
    """The canonical parameters of a :class:`TorchNetwork` (its config from its own buffer)."""
    config = RNNConfig.from_dict(json.loads(bytes(module.rnn_ref_config.tolist()).decode()))
    embedding, layers, head = None, [], []
    for role, step in zip(module.roles, module.steps, strict=True):
        kind = role.split(":")[0]
        if kind == "embed":
            embedding = _numpy(step.weight)
        elif kind in ("rnn", "rev"):
            layers += _rnn_cells(step)  # type: ignore[arg-type]
        elif kind == "pair":
            layers.append([_rnn_cells(s)[0][0] for s in step])  # type: ignore[attr-defined]
        elif kind == "linear":
            head.append(_readout(step))  # type: ignore[arg-type]
    return RNNParams(config, layers, embedding=embedding, head=head)


# --------------------------------------------------------------------------------------------
# canonical parameters -> TorchNetwork
# --------------------------------------------------------------------------------------------
_WRITTEN = {"dropout": nn.Dropout, "alpha_dropout": nn.AlphaDropout}


def _block_plan(cfg: RNNConfig) -> list[tuple[str, list[int], float]]:
    """The network's recurrent layers as blocks ``(kind, layers, dropout between them)``: one
    ``nn.RNN`` per run of layers that one module can hold (same direction, width and
    nonlinearity, concatenated, the same ``dropout`` or none between them), a flipped
    ``nn.RNN`` per reverse layer, a pair per bidirectional layer of two nonlinearities."""
    blocks: list[tuple[str, list[int], float]] = []
    li = 0
    while li < cfg.num_layers:
        acts = set(cfg.activations[li])
        if cfg.directions[li] == "reverse" or len(acts) > 1:
            blocks.append(("rev" if cfg.directions[li] == "reverse" else "pair", [li], 0.0))
            li += 1
            continue
        run, rate = [li], None
        while run[-1] + 1 < cfg.num_layers and cfg.merge_modes[run[-1]] == "concat":
            nxt = run[-1] + 1
            between = [i for i in cfg.identities if i.after == nxt and i.kind in _WRITTEN]
            p = between[0].rate if len(between) == 1 and between[0].kind == "dropout" else None
            same = (cfg.directions[nxt] == cfg.directions[li]
                    and cfg.hidden_sizes[nxt] == cfg.hidden_sizes[li]
                    and set(cfg.activations[nxt]) == acts)
            if not same or (between and p is None) or (rate is not None and (p or 0.0) != rate):
                break
            rate = p or 0.0
            run.append(nxt)
        blocks.append(("rnn", run, rate or 0.0))
        li = run[-1] + 1
    return blocks


def _rnn_module(cfg: RNNConfig, params: RNNParams, layers: list[int], cells: list[int],
                bidirectional: bool, dropout: float) -> nn.RNN:
    """An ``nn.RNN`` holding ``layers`` (direction ``cells`` of each) of ``params``."""
    first = layers[0]
    rnn = nn.RNN(cfg.layer_input_size(first), cfg.hidden_sizes[first], num_layers=len(layers),
                 nonlinearity=cfg.activation_of(first, cells[0]).name, bias=cfg.bias,
                 batch_first=True, bidirectional=bidirectional, dropout=dropout,
                 dtype=_DTYPES[params.dtype])
    with torch.no_grad():
        for k, li in enumerate(layers):
            for r, c in enumerate(cells):
                cell = params.layers[li][c]
                sfx = f"_l{k}" + ("_reverse" if r else "")
                getattr(rnn, f"weight_ih{sfx}").copy_(torch.from_numpy(cell.w_x.T.copy()))
                getattr(rnn, f"weight_hh{sfx}").copy_(torch.from_numpy(cell.w_h.T.copy()))
                if cfg.bias:
                    getattr(rnn, f"bias_ih{sfx}").copy_(torch.from_numpy(cell.b_x.copy()))
                    getattr(rnn, f"bias_hh{sfx}").copy_(torch.from_numpy(cell.b_h.copy()))
    return rnn


def _identity_steps(cfg: RNNConfig, after: int) -> list[tuple[str, nn.Module]]:
    return [("drop", _WRITTEN[i.kind](i.rate)) for i in cfg.identities
            if i.after == after and i.kind in _WRITTEN]


def _head_activation(act: HeadActivation) -> TorchActivation:
    if isinstance(act, Softmax):
        return TorchActivation(act.name)
    return TorchActivation(act.name, act.alpha, act.beta)


def build_network(params: RNNParams) -> TorchNetwork:
    """A :class:`TorchNetwork` computing ``params`` (in their dtype, eval mode). The caller
    checks first what torch cannot compute (``torch_unsupported``)."""
    cfg = params.config
    dtype = _DTYPES[params.dtype]
    steps: list[tuple[str, nn.Module]] = []
    if params.embedding is not None:
        emb = nn.Embedding(cfg.vocab_size or 0, cfg.input_size, padding_idx=cfg.padding_idx,
                           dtype=dtype)
        with torch.no_grad():
            emb.weight.copy_(torch.from_numpy(params.embedding.copy()))
        steps.append(("embed", emb))
    steps += _identity_steps(cfg, 0)
    for kind, layers, rate in _block_plan(cfg):
        last = layers[-1]
        mode = cfg.merge_modes[last] if cfg.directions[last] == "bidirectional" else "concat"
        suffix = "" if mode == "concat" else f":{mode}"
        if kind == "pair":
            pair = nn.ModuleList([_rnn_module(cfg, params, layers, [r], False, 0.0)
                                  for r in (0, 1)])
            steps.append((f"pair{suffix}", pair))
        else:
            bidir = cfg.directions[last] == "bidirectional"
            cells = [0, 1] if bidir else [0]
            steps.append((f"{kind}{suffix}", _rnn_module(cfg, params, layers, cells, bidir,
                                                         rate)))
        if last + 1 < cfg.num_layers:
            steps += _identity_steps(cfg, last + 1)
    steps.append((f"select:{cfg.select}", nn.Identity()))
    steps += _identity_steps(cfg, cfg.num_layers)
    for j, (dense, weights) in enumerate(zip(cfg.head, params.head, strict=True)):
        linear = nn.Linear(weights.w.shape[0], dense.units, bias=dense.bias, dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weights.w.T.copy()))
            if dense.bias:
                linear.bias.copy_(torch.from_numpy(weights.b.copy()))
        steps += [("linear", linear), ("act", _head_activation(dense.activation))]
        steps += _identity_steps(cfg, cfg.num_layers + 1 + j)
    roles, modules = [r for r, _ in steps], [m for _, m in steps]
    return TorchNetwork(roles, modules, cfg.to_dict()).eval()


# --------------------------------------------------------------------------------------------
# reading a module's graph
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """How the recognised module takes and returns its tensors: ``time_major`` when its
    ``nn.RNN`` s are not ``batch_first`` (input ``(T, N, ...)``, sequence results
    ``(T, N, K)``), and whether it returns every step (``sequence``)."""

    time_major: bool
    sequence: bool


@dataclass
class _Val:
    """What a graph node holds: ``kind`` is ``"x"`` (the input), ``"seq"`` (per-step
    features), ``"rnn"`` (an ``nn.RNN``'s ``(out, h_n)``), ``"hn"`` (its h_n), ``"state"``
    (``h_n[index]``), ``"sel"`` (one vector per sample), ``"other"`` (an unused argument)."""

    kind: str
    ident: int
    index: int = 0


#: torch activation modules -> rnn-ref activation (softmax modules are handled by dim)
_ACT_MODULES: dict[type, Callable[[Any], HeadActivation]] = {
    nn.ReLU: lambda m: Activation("relu"), nn.Tanh: lambda m: Activation("tanh"),
    nn.Sigmoid: lambda m: Activation("sigmoid"), nn.Softsign: lambda m: Activation("softsign"),
    nn.ELU: lambda m: Activation("elu", alpha=float(m.alpha)),
    nn.LeakyReLU: lambda m: Activation("leaky_relu", alpha=float(m.negative_slope)),
    nn.Hardsigmoid: lambda m: Activation("hard_sigmoid", alpha=1 / 6, beta=0.5),
}
_ACT_FUNCS: dict[Any, str] = {
    torch.relu: "relu", F.relu: "relu", torch.tanh: "tanh", F.tanh: "tanh",
    torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.softsign: "softsign",
    "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid",
}
_SOFTMAX_FUNCS: dict[Any, str] = {
    torch.softmax: "softmax", F.softmax: "softmax", "softmax": "softmax",
    torch.log_softmax: "log_softmax", F.log_softmax: "log_softmax",
    "log_softmax": "log_softmax",
}
_DROPOUTS: dict[type, str] = {nn.Dropout: "dropout", nn.AlphaDropout: "alpha_dropout"}
_DROPOUT_FUNCS: dict[Any, str] = {F.dropout: "dropout", F.alpha_dropout: "alpha_dropout"}


def _op_name(node: fx.Node, root: nn.Module) -> str:
    """The operation of a node as a user reads it: ``torch.mul``, ``operator.add``,
    ``Tensor.view``, ``torch.nn.Conv1d (self.conv)``."""
    if node.op == "call_module":
        kind = type(root.get_submodule(str(node.target)))
        where = "torch.nn" if kind.__module__.startswith("torch.nn") else kind.__module__
        return f"{where}.{kind.__name__} (self.{node.target})"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "get_attr":
        return f"the tensor self.{node.target} used directly"
    fn = node.target
    name = getattr(fn, "__name__", str(fn))
    for prefix, space in (("torch", torch), ("torch.nn.functional", F), ("operator", operator)):
        if getattr(space, name, None) is fn:
            return f"{prefix}.{name}"
    return f"{getattr(fn, '__module__', '?')}.{name}"


def _arg(node: fx.Node, pos: int, name: str, default: Any = None) -> Any:
    if len(node.args) > pos:
        return node.args[pos]
    return node.kwargs.get(name, default)


@dataclass
class _Reader:
    """The state of reading one graph (see the module docstring)."""

    root: nn.Module
    env: dict[fx.Node, _Val] = field(default_factory=dict)
    embedding: nn.Embedding | None = None
    rnns: list[nn.RNN] = field(default_factory=list)
    identities: list[Identity] = field(default_factory=list)
    select: str = "sequence"
    head: list[tuple[nn.Linear, HeadActivation | None]] = field(default_factory=list)
    current: int = -1  # the ident of the value at the end of the chain
    counter: int = 0
    selected: bool = False

    # -- values ---------------------------------------------------------------------------
    def new(self, kind: str, index: int = 0, *, chain: bool = True) -> _Val:
        self.counter += 1
        if chain:
            self.current = self.counter
        return _Val(kind, self.counter, index)

    def chain_input(self, node: fx.Node, kinds: Sequence[str]) -> _Val:
        """The value node's first argument holds, which must be the end of the chain and
        one of ``kinds``."""
        src = node.args[0] if node.args else None
        val = self.env.get(src) if isinstance(src, fx.Node) else None
        what = _op_name(node, self.root)
        if val is None or val.kind not in kinds:
            got = "a constant" if val is None else {"x": "the input", "seq": "a sequence",
                                                    "sel": "a selected vector"}.get(
                val.kind, f"an {val.kind!r} value")
            raise _refuse(f"{what} on {got}", "the network has no such step")
        if val.ident != self.current:
            raise _refuse(f"{what} on an earlier value",
                          "the network is one chain of layers (a branch or a skip connection "
                          "is not one of its pieces)")
        return val

    @property
    def num_layers(self) -> int:
        return sum(r.num_layers for r in self.rnns)

    def position(self) -> int:
        """Where an identity layer seen now sits (``Identity.after``)."""
        if self.head:
            return self.num_layers + len(self.head)
        return self.num_layers

    # -- nodes ----------------------------------------------------------------------------
    def read(self, graph: fx.Graph) -> _Val:
        result: _Val | None = None
        for node in graph.nodes:
            if node.op == "placeholder":
                first = not any(v.kind == "x" for v in self.env.values())
                self.env[node] = self.new("x") if first else _Val("other", -1)
            elif node.op == "output":
                result = self.output(node)
            elif node.op == "call_module":
                self.env[node] = self.module(node)
            elif node.op in ("call_function", "call_method"):
                self.env[node] = self.function(node)
            else:
                raise _refuse(_op_name(node, self.root), "the network has no such step")
        if result is None:
            raise _refuse("a module without an output", "nothing to read")
        return result

    def output(self, node: fx.Node) -> _Val:
        out = node.args[0]
        if self.rnns:
            self.promote(node)
        val = self.env.get(out) if isinstance(out, fx.Node) else None
        if val is None or val.kind not in ("seq", "sel") or not self.rnns:
            raise _refuse("the module's result (a tuple, a constant or no nn.RNN output)",
                          "a network returns one tensor computed from its nn.RNN layers")
        if val.ident != self.current:
            raise _refuse("a result that is not the end of the chain",
                          "the network is one chain of layers")
        return val

    def module(self, node: fx.Node) -> _Val:
        mod = self.root.get_submodule(str(node.target))
        if isinstance(mod, nn.Embedding):
            return self.embed(node, mod)
        if isinstance(mod, nn.RNNBase):
            return self.rnn(node, mod)
        if isinstance(mod, nn.Linear):
            return self.linear(node, mod)
        if isinstance(mod, (nn.Dropout, nn.AlphaDropout)):
            return self.dropout(node, _DROPOUTS[type(mod)], float(mod.p))
        if isinstance(mod, nn.Identity):
            return self.chain_input(node, ("x", "seq", "sel"))
        if isinstance(mod, (nn.Softmax, nn.LogSoftmax)):
            name = "softmax" if isinstance(mod, nn.Softmax) else "log_softmax"
            return self.softmax(node, name, mod.dim)
        if type(mod) in _ACT_MODULES:
            return self.activation(node, _ACT_MODULES[type(mod)](mod))
        raise _refuse(_op_name(node, self.root), "it is not one of the network's pieces")

    def function(self, node: fx.Node) -> _Val:
        fn = node.target
        if fn is operator.getitem:
            return self.getitem(node)
        if fn is torch.cat:
            return self.cat(node)
        if fn in _ACT_FUNCS:
            return self.activation(node, Activation(_ACT_FUNCS[fn]))
        if fn in _SOFTMAX_FUNCS:
            return self.softmax(node, _SOFTMAX_FUNCS[fn], _arg(node, 1, "dim"))
        if fn in _DROPOUT_FUNCS:
            return self.dropout(node, _DROPOUT_FUNCS[fn], float(_arg(node, 1, "p", 0.5)))
        if node.op == "call_method" and fn == "squeeze" and _arg(node, 1, "dim") == 0:
            return self.squeeze(node)
        raise _refuse(_op_name(node, self.root), "it is not one of the network's pieces")

    # -- the pieces -----------------------------------------------------------------------
    def embed(self, node: fx.Node, mod: nn.Embedding) -> _Val:
        self.chain_input(node, ("x",))
        if mod.max_norm is not None:
            raise _refuse(f"nn.Embedding(max_norm={mod.max_norm}) (self.{node.target})",
                          "it renormalises rows as it reads them")
        self.embedding = mod
        return self.new("seq")

    def rnn(self, node: fx.Node, mod: nn.RNNBase) -> _Val:
        if not isinstance(mod, nn.RNN):
            raise _refuse(f"torch.nn.{type(mod).__name__} (self.{node.target})",
                          "it is not an Elman RNN (torch.nn.RNN)")
        self.chain_input(node, ("x", "seq") if self.embedding is None else ("seq",))
        if len(node.args) > 1 or node.kwargs:
            raise _refuse(f"an initial state given to self.{node.target}",
                          "the network starts from zero states")
        if self.head or self.selected:
            raise _refuse(f"self.{node.target} after the head or the selection",
                          "the recurrent layers come before them")
        if self.rnns and self.rnns[0].batch_first != mod.batch_first:
            raise _refuse(f"self.{node.target} with batch_first={mod.batch_first}",
                          "every nn.RNN of the module must agree on batch_first")
        first = self.num_layers
        self.identities += [Identity("dropout", mod.dropout, first + k)
                            for k in range(1, mod.num_layers) if mod.dropout > 0]
        self.rnns.append(mod)
        return self.new("rnn")

    def getitem(self, node: fx.Node) -> _Val:
        src, idx = node.args
        val = self.env.get(src) if isinstance(src, fx.Node) else None
        if val is not None and val.kind == "rnn" and idx == 0 and val.ident == self.current:
            return self.new("seq")
        if val is not None and val.kind == "rnn" and idx == 1:
            return _Val("hn", val.ident)
        if val is not None and val.kind == "hn" and isinstance(idx, int):
            return _Val("state", val.ident, idx)
        if val is not None and val.kind == "seq" and self.is_last_step(idx):
            self.chain_input(node, ("seq",))
            return self.choose(node, "last_step")
        raise _refuse(f"indexing [{idx!r}] ({node.name})",
                      "the network selects out[:, -1] (batch-first), out[-1] (time-major), "
                      "h_n[-1] or h_n[-2] of its last nn.RNN")

    def is_last_step(self, idx: Any) -> bool:
        full = slice(None)
        if not self.rnns or self.rnns[0].batch_first:
            return idx in ((full, -1), (full, -1, full), (Ellipsis, -1, full))
        return idx in (-1, (-1,), (-1, full), (-1, full, full))

    def choose(self, node: fx.Node, how: str) -> _Val:
        if self.head or self.selected or not self.rnns:
            raise _refuse(f"a selection ({node.name}) after the head or before the nn.RNN",
                          "the network selects from its last nn.RNN, then applies the head")
        self.select, self.selected = how, True
        return self.new("sel")

    def rnn_ident(self) -> int:
        """The ident of the last nn.RNN's result."""
        return max((v.ident for v in self.env.values() if v.kind == "rnn"), default=-2)

    def state_select(self, node: fx.Node, index: int) -> str:
        """The selection ``h_n[index]`` of the last ``nn.RNN`` is."""
        last = self.rnns[-1]
        if last.bidirectional and index in (-1, -2):
            return "final_backward" if index == -1 else "final_forward"
        if not last.bidirectional and index in (-1, last.num_layers - 1):
            return "final"
        raise _refuse(f"h_n[{index}] ({node.name})", "the network hands on the last layer's "
                      "final states: h_n[-1], and h_n[-2] of a bidirectional layer")

    def select_state(self, node: fx.Node, ident: int, how: str) -> _Val:
        """Select ``how`` from the h_n of the nn.RNN whose result is ``ident``."""
        if ident != self.rnn_ident():
            raise _refuse(f"h_n of an earlier nn.RNN ({node.name})", "the layers are one chain")
        if self.current not in (ident, ident + 1):  # the rnn result or its output
            raise _refuse(f"h_n used after other steps ({node.name})",
                          "the network selects right after its last nn.RNN")
        return self.choose(node, how)

    def promote(self, node: fx.Node) -> None:
        """When node's first argument is ``h_n[i]``, it becomes the selection."""
        src = node.args[0] if node.args else None
        val = self.env.get(src) if isinstance(src, fx.Node) else None
        if val is not None and val.kind == "state":
            chosen = self.select_state(node, val.ident, self.state_select(node, val.index))
            self.env[src] = chosen  # type: ignore[index]

    def squeeze(self, node: fx.Node) -> _Val:
        val = self.env.get(node.args[0])  # type: ignore[arg-type]
        last = self.rnns[-1] if self.rnns else None
        if val is None or val.kind != "hn" or last is None or last.num_layers != 1 \
                or last.bidirectional:
            raise _refuse(f"Tensor.squeeze(0) ({node.name})",
                          "only h_n of a one-layer, one-direction nn.RNN squeezes to a state")
        return self.select_state(node, val.ident, "final")

    def cat(self, node: fx.Node) -> _Val:
        parts = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = _arg(node, 1, "dim", 0)
        vals = [self.env.get(p) for p in parts] if isinstance(parts, (list, tuple)) else []
        states = [v for v in vals if v is not None and v.kind == "state"]
        if len(vals) == 2 and len(states) == 2 and dim in (1, -1) \
                and [v.index for v in states] == [-2, -1] and self.rnns[-1].bidirectional \
                and states[0].ident == states[1].ident:
            return self.select_state(node, states[0].ident, "final")
        raise _refuse(f"torch.cat ({node.name})", "the network concatenates only "
                      "[h_n[-2], h_n[-1]] of a bidirectional nn.RNN on dim 1")

    def linear(self, node: fx.Node, mod: nn.Linear) -> _Val:
        self.promote(node)
        val = self.chain_input(node, ("seq", "sel"))
        if not self.rnns:
            raise _refuse(f"torch.nn.Linear (self.{node.target}) before the recurrent layers",
                          "the head comes after them")
        self.head.append((mod, None))
        return self.new(val.kind)

    def activation(self, node: fx.Node, act: HeadActivation) -> _Val:
        self.promote(node)
        val = self.chain_input(node, ("seq", "sel"))
        if not self.head or self.head[-1][1] is not None:
            raise _refuse(f"{_op_name(node, self.root)} ({node.name}) not right after an "
                          f"nn.Linear", "a head layer is an nn.Linear and one activation")
        self.head[-1] = (self.head[-1][0], act)
        return self.new(val.kind)

    def softmax(self, node: fx.Node, name: str, dim: Any) -> _Val:
        self.promote(node)
        val = self.chain_input(node, ("seq", "sel"))
        last = 2 if val.kind == "seq" else 1
        if dim not in (-1, last):
            raise _refuse(f"{name} over dim={dim} ({node.name})", f"the network's {name} is "
                          f"over the last dim (-1, here {last})")
        return self.activation(node, Softmax(name))

    def dropout(self, node: fx.Node, kind: str, p: float) -> _Val:
        self.promote(node)
        val = self.chain_input(node, ("x", "seq", "sel"))
        self.identities.append(Identity(kind, p, self.position()))
        return self.new(val.kind)


def _trace(module: nn.Module) -> fx.Graph:
    try:
        return fx.symbolic_trace(module).graph
    except Exception as exc:  # fx cannot follow data-dependent control flow
        raise _refuse(f"the forward of {type(module).__name__}",
                      f"torch.fx could not trace it ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0][:200]})") from None


def _config(r: _Reader) -> RNNConfig:
    if len({rnn.bias for rnn in r.rnns}) > 1:
        raise _refuse("nn.RNN modules with and without biases", "the stack has one bias flag")
    layers = [(rnn, li) for rnn in r.rnns for li in range(rnn.num_layers)]
    emb = r.embedding
    return RNNConfig(
        r.rnns[0].input_size, [rnn.hidden_size for rnn, _ in layers],
        direction=["bidirectional" if rnn.bidirectional else "forward" for rnn, _ in layers],
        activation=[[rnn.nonlinearity] * (2 if rnn.bidirectional else 1) for rnn, _ in layers],
        bias=r.rnns[0].bias, vocab_size=None if emb is None else emb.num_embeddings,
        padding_idx=None if emb is None else emb.padding_idx, select=r.select,
        head=[Dense(lin.out_features, act or "linear", lin.bias is not None)
              for lin, act in r.head],
        identities=r.identities)


def read_module(module: nn.Module) -> tuple[RNNParams, Layout]:
    """The canonical parameters of any module built from the network's pieces, and how it
    takes its input (see the module docstring); ``UnsupportedError`` naming the first
    operation that is not one of them."""
    reader = _Reader(module)
    result = reader.read(_trace(module))
    cfg = _config(reader)
    emb = None if reader.embedding is None else _numpy(reader.embedding.weight)
    layers = [row for rnn in reader.rnns for row in _rnn_cells(rnn)]
    params = RNNParams(cfg, layers, embedding=emb,
                       head=[_readout(lin) for lin, _ in reader.head])
    return params, Layout(not reader.rnns[0].batch_first, result.kind == "seq")


# --------------------------------------------------------------------------------------------
# reading a state dict
# --------------------------------------------------------------------------------------------
_RNN_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?)(?P<name>weight_ih|weight_hh|bias_ih|bias_hh)"
                      r"_l(?P<layer>\d+)(?P<rev>_reverse)?$")
_Cells = dict[tuple[int, int], dict[str, np.ndarray[Any, Any]]]


@dataclass
class _Groups:
    """A state dict's arrays by module, in the order the state dict lists them."""

    order: list[tuple[str, str]] = field(default_factory=list)  # ("rnn" | "module", prefix)
    rnns: dict[str, _Cells] = field(default_factory=dict)
    modules: dict[str, dict[str, np.ndarray[Any, Any]]] = field(default_factory=dict)
    config: tuple[str, Any] | None = None  # (prefix, the TorchNetwork config buffer)


def _group(sd: Mapping[str, Any]) -> _Groups:
    g = _Groups()
    for key, value in sd.items():
        if not isinstance(key, str):
            raise ValueError(f"a state dict key must be a string, got {key!r}")
        match = _RNN_KEY.match(key)
        if key.split(".")[-1] == CONFIG_KEY:
            g.config = (key[: -len(CONFIG_KEY)], value)
        elif match is not None:
            prefix = match.group("prefix")
            if prefix not in g.rnns:
                g.rnns[prefix] = {}
                g.order.append(("rnn", prefix))
            cell = (int(match.group("layer")), int(bool(match.group("rev"))))
            g.rnns[prefix].setdefault(cell, {})[match.group("name")] = _numpy(value)
        elif key.rsplit(".", 1)[-1] in ("weight", "bias") and "." in key:
            path, name = key.rsplit(".", 1)
            if path not in g.modules:
                g.modules[path] = {}
                g.order.append(("module", path))
            g.modules[path][name] = _numpy(value)
        else:
            raise ValueError(f"unexpected state dict key {key!r}: not an nn.RNN weight "
                             f"(<prefix>weight_ih_l<k>[_reverse], weight_hh, bias_ih, "
                             f"bias_hh), nor an nn.Embedding or nn.Linear weight or bias")
    return g


def _rnn_layers(prefix: str, cells: _Cells) -> tuple[list[list[CellParams]], bool, bool]:
    """One ``nn.RNN``'s cells by layer, whether it is bidirectional, whether it has biases;
    ``ValueError`` naming a missing key."""
    num_layers = max(li for li, _ in cells) + 1
    r_count = 2 if any(r for _, r in cells) else 1
    bias = any("bias_ih" in c for c in cells.values())
    need = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else [])
    layers = []
    for li in range(num_layers):
        row = []
        for r in range(r_count):
            have = cells.get((li, r), {})
            missing = [f"{prefix}{n}_l{li}{'_reverse' if r else ''}" for n in need
                       if n not in have]
            if missing:
                raise ValueError(f"the state dict misses {', '.join(missing)}")
            zeros = np.zeros(have["weight_ih"].shape[0], have["weight_ih"].dtype)
            row.append(CellParams(have["weight_ih"].T, have["weight_hh"].T,
                                  have.get("bias_ih", zeros), have.get("bias_hh", zeros)))
        layers.append(row)
    return layers, r_count == 2, bias


def _split_modules(g: _Groups) -> tuple[str | None, list[str]]:
    """The embedding's module path (a weight-only module before the first nn.RNN) and the
    Linear layers' paths (after the last), in order; ``ValueError`` for anything else."""
    if list(g.rnns) == ["rnn."] and list(g.modules) == ["readout"]:
        return None, ["readout"]  # an RNNWithReadout (safetensors sorts its keys)
    kinds = [k for k, _ in g.order]
    first, last = kinds.index("rnn"), len(kinds) - 1 - kinds[::-1].index("rnn")
    before = [p for k, p in g.order[:first]]
    between = [p for k, p in g.order[first:last] if k == "module"]
    if between:
        raise ValueError(f"the state dict has {between[0]!r} between its nn.RNN weights; the "
                         f"network has nothing with weights there")
    if len(before) > 1 or (before and set(g.modules[before[0]]) != {"weight"}):
        raise ValueError(f"the state dict has {', '.join(map(repr, before))} before its nn.RNN "
                         f"weights; the network has one nn.Embedding (a weight only) there")
    after = [p for k, p in g.order[last + 1:]]
    for path in after:
        arrays = g.modules[path]
        if "weight" not in arrays or arrays["weight"].ndim != 2:
            raise ValueError(f"{path!r} after the nn.RNN weights is not an nn.Linear "
                             f"(a 2-D weight and a bias or none)")
    return (before[0] if before else None), after


def _head_hint(head: Sequence[Any] | str | None, count: int) -> list[Any]:
    if head is None:
        raise MissingHintError("head_activation", f"the state dict holds {count} nn.Linear "
                          f"layer(s) but not their activations: give the head_activation hint "
                          f"(one per layer, comma-separated: linear, relu, tanh, sigmoid, "
                          f"softmax, log_softmax ...)")
    acts = [a.strip() for a in head.split(",")] if isinstance(head, str) else list(head)
    if len(acts) != count:
        raise ValueError(f"the head_activation hint gives {len(acts)} activation(s) for "
                         f"{count} nn.Linear layer(s)")
    return acts


def _from_config_buffer(g: _Groups, sd: Mapping[str, Any]) -> RNNParams:
    """A :class:`TorchNetwork`'s own state dict: its config, then its weights loaded."""
    from rnn_ref.params import init

    assert g.config is not None
    prefix, raw = g.config
    config = RNNConfig.from_dict(json.loads(bytes(_numpy(raw).astype(np.uint8)).decode()))
    dtypes = {k: _numpy(v).dtype for k, v in sd.items() if not k.endswith(CONFIG_KEY)}
    odd = sorted(k for k, d in dtypes.items() if d not in _DTYPES)
    if odd:
        raise FileFormatError(f"the tensor {odd[0]!r} is {dtypes[odd[0]]}: a TorchNetwork's "
                              f"state dict holds float32 or float64 tensors")
    dtype = next(iter(dtypes.values()), np.dtype(np.float32))
    net = build_network(init(config, seed=0).astype(dtype))
    own = {k[len(prefix):]: torch.as_tensor(_numpy(v)) for k, v in sd.items()
           if k.startswith(prefix)}
    net.load_state_dict(own)
    return network_params(net)


def read_state_dict(sd: Mapping[str, Any], *, nonlinearity: str, select: str | None = None,
                    head_activation: Sequence[Any] | str | None = None) -> RNNParams:
    """The network of a state dict (see the module docstring), any prefixes.

    Args:
        sd: names to tensors or arrays.
        nonlinearity: ``"tanh"`` or ``"relu"``, every ``nn.RNN``'s (a state dict does not
            record it).
        select: what feeds the head (:data:`rnn_ref.SELECTS`); required with ``nn.Linear``
            layers (default ``"sequence"`` without).
        head_activation: one activation per ``nn.Linear`` (names, or one comma-separated
            string); required with ``nn.Linear`` layers.

    Raises:
        ValueError: a key that is not one of the pieces, a missing key, or a missing hint
            (a :class:`~rnn_ref.convert.MissingHintError` naming it).
    """
    g = _group(sd)
    if g.config is not None:
        return _from_config_buffer(g, sd)
    if not g.rnns:
        raise ValueError("the state dict holds no nn.RNN weights")
    embedding, linears = _split_modules(g)
    stacks = [_rnn_layers(p, c) for p, c in g.rnns.items()]
    legacy = list(g.rnns) == ["rnn."] and linears == ["readout"]  # an RNNWithReadout
    if linears and select is None and not legacy:
        raise MissingHintError("select", "the state dict does not record what feeds its "
                          "nn.Linear head: give the select hint (one of 'last_step', "
                          "'final', 'final_forward', 'final_backward', 'sequence')")
    acts = _head_hint(head_activation, len(linears)) if linears else []
    if len({bias for _, _, bias in stacks}) > 1:
        raise ValueError("the state dict has nn.RNN modules with and without biases")
    layers = [row for rows, _, _ in stacks for row in rows]
    directions = [("bidirectional" if bidir else "forward") for rows, bidir, _ in stacks
                  for _ in rows]
    table = None if embedding is None else g.modules[embedding]["weight"]
    heads = [g.modules[p] for p in linears]
    config = RNNConfig(
        layers[0][0].w_x.shape[0], [row[0].hidden_size for row in layers],
        direction=directions, activation=nonlinearity, bias=stacks[0][2],
        vocab_size=None if table is None else table.shape[0], select=select or "sequence",
        head=[Dense(h["weight"].shape[0], a, "bias" in h) for h, a in
              zip(heads, acts, strict=True)])
    head = [Readout(h["weight"].T, h.get("bias", np.zeros(h["weight"].shape[0],
                                                          h["weight"].dtype))) for h in heads]
    return RNNParams(config, layers, embedding=table, head=head)


def file_network(sd: Mapping[str, torch.Tensor], params: RNNParams) -> TorchNetwork:
    """A module that computes with a state dict's tensors as stored, under the file's own
    keys: what ``--verify`` runs as the file. ``params`` is the network read from ``sd``
    (:func:`read_state_dict`, with the hints), for what the keys do not say.

    A :class:`TorchNetwork`'s state dict (any prefix) is loaded into the network its config
    describes. Any other is grouped as :func:`read_state_dict` groups it, and each group is
    loaded, by torch's ``load_state_dict`` under its own names less the group's prefix, into a
    module of its kind built from the tensors' shapes: an ``nn.Embedding``, an ``nn.RNN`` per
    group of ``weight_ih_l<k>`` ... keys (the nonlinearity from ``params``), an ``nn.Linear``
    per head layer (its activation from ``params``). Keys the reader accepts (``rnn.`` +
    ``fc.``, a ``DataParallel`` ``module.`` prefix, several ``nn.RNN`` modules) are never a
    reason to fail; a tensor no group takes is a ``ValueError`` naming it."""
    g = _group(sd)
    cfg = params.config
    dtype = _DTYPES[params.dtype]
    if g.config is not None:
        prefix = g.config[0]
        net = build_network(params)
        net.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})
        return net

    def own(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in sd.items()
                if k.startswith(prefix) and "." not in k[len(prefix):]}

    embedding, linears = _split_modules(g)
    steps: list[tuple[str, nn.Module]] = []
    if embedding is not None:
        table = g.modules[embedding]["weight"]
        emb = nn.Embedding(table.shape[0], table.shape[1], dtype=dtype)
        emb.load_state_dict(own(f"{embedding}."))
        steps.append(("embed", emb))
    first = 0
    for prefix, cells in g.rnns.items():
        layers, bidirectional, bias = _rnn_layers(prefix, cells)
        w_ih = cells[(0, 0)]["weight_ih"]
        rnn = nn.RNN(w_ih.shape[1], w_ih.shape[0], num_layers=len(layers), bias=bias,
                     nonlinearity=cfg.activation_of(first, 0).name, batch_first=True,
                     bidirectional=bidirectional, dtype=dtype)
        rnn.load_state_dict(own(prefix))
        steps.append(("rnn", rnn))
        first += len(layers)
    steps.append((f"select:{cfg.select}", nn.Identity()))
    for path, dense in zip(linears, cfg.head, strict=True):
        w = g.modules[path]["weight"]
        linear = nn.Linear(w.shape[1], w.shape[0], bias="bias" in g.modules[path], dtype=dtype)
        linear.load_state_dict(own(f"{path}."))
        steps += [("linear", linear), ("act", _head_activation(dense.activation))]
    return TorchNetwork([r for r, _ in steps], [m for _, m in steps], cfg.to_dict()).eval()
