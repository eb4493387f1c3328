"""Reading any ``nn.Module`` built from the network's pieces, and writing the whole network.

**Reading a module** (:func:`read_module`): ``torch.fx.symbolic_trace`` turns the module's
``forward`` into a graph whose ``nn.Embedding``, ``nn.RNN``, ``nn.GRU``, ``nn.LSTM``,
``nn.Linear``, dropout and activation modules are leaf calls, whatever the attributes are
named; the graph is then read node by node, in order, as one chain (below, ``nn.RNN`` stands
for any of the three; an ``nn.LSTM`` returns ``out, (h_n, c_n)``)::

    input --nn.Embedding--> --nn.RNN--> ... --nn.RNN--> out, h_n
        --selection: out (every step), out[:, -1], h_n[-1], h_n[-2], cat([h_n[-2], h_n[-1]], 1)
        --nn.Linear, activation (relu, tanh, sigmoid, softmax, log_softmax over the last
          dim ...), nn.Linear ...--> result

with ``nn.Dropout``/``nn.AlphaDropout``/``F.dropout`` anywhere (recorded where they sit) and
``nn.RNN(dropout=p)`` recorded between its layers. A subclass of a recurrent module or cell
with a ``forward`` of its own is refused by name before tracing. Every node is part of that
chain or the module is refused naming the node's operation and its line of ``forward``
(``torch.mul``, ``operator.add``, a ``torch.nn.Conv1d`` module, a softmax over another dim, a
branch, a selection after the head). A reverse-only layer written by flipping the input
(``torch.flip``) is not recognised. Also read, as tutorials write them:

* ``forward(x, lengths)`` packing: ``pack_padded_sequence(x, lengths[.cpu()], batch_first,
  enforce_sorted)`` into every ``nn.RNN`` and ``pad_packed_sequence(out, batch_first)`` after
  is the spec's ``lengths`` with ``padded_output="zeros"``. torch's result has
  ``max(lengths)`` steps (``total_length`` left out), ``T`` (``total_length=x.size(1)``) or a
  fixed ``total_length``: :class:`Layout` records which, and the oracle cuts or pads ``x`` to
  that length, which changes no valid step (so ``out[:, -1]`` is what torch gives).
  ``enforce_sorted=True`` is read as ``False``: torch refuses unsorted lengths, the oracle
  computes them.
* An initial state that is provably zeros (``torch.zeros(L, x.size(0), M)``,
  ``x.new_zeros``, ``torch.zeros_like``, moved or cast by ``.to()``, ``.detach()``,
  ``.requires_grad_()`` ...; sizes from ``x.size``/``x.shape``, ``x.device``, ``x.dtype``) is
  the default zero state (torch itself checks its shape), an ``nn.LSTM``'s ``(h0, c0)`` when
  both are; any other state is refused (the network starts from zero states).
* ``h_n[i, :, :]`` as ``h_n[i]``; a ``torch.compile`` d module through its ``_orig_mod``.
* Pooling over time: ``out.mean(dim=1)`` (``select="mean_all"``: padded zeros included, as
  torch computes it after ``pad_packed_sequence``), ``out.max(dim=1)[0]``,
  ``torch.max(out, 1).values``, ``torch.amax(out, 1)`` (``"max_all"``); ``dim=0`` time-major.
* Several outputs (``RNNConfig.returns``): a returned tuple of the end of the chain
  (``"result"``), the last ``nn.RNN``'s outputs (``"sequence"``), its ``h_n`` (of the only
  ``nn.RNN``) or ``h_n[k]``, an ``nn.LSTM``'s ``c_n`` or ``c_n[k]``, e.g. a language
  model's ``(self.fc(out), hidden)``; nested as returned (``out, (h_n, c_n)``:
  :class:`Layout`'s ``structure``). An ``nn.LSTM``'s cell states are outputs only: a head
  on ``c_n[k]`` is refused.
* An ``nn.RNNCell`` or ``nn.GRUCell`` stepped over the input in a Python loop (``h =
  self.cell(x[:, t], h)`` for ``t`` from 0, ``h`` zeros or left out first; an
  ``nn.LSTMCell``'s ``h, c = self.cell(x[:, t], (h, c))``), the last ``h``
  (``select="final"``) or ``torch.stack`` of every step's ``h`` on the time axis (the
  sequence). fx cannot follow a loop over ``x.size(1)``, so it is traced with the example's
  shape known (:mod:`~rnn_ref.backends.torch.trace`) and again one step longer and one sample
  more: both must read as the same network with one step per input step, else it is refused.

**Reading a state dict** (:func:`read_state_dict`): any prefixes; the ``nn.RNN``, ``nn.GRU``
and ``nn.LSTM`` weights (``<prefix>weight_ih_l<k>[_reverse]`` ...) grouped by module, each
module's cell told by its shapes (:func:`_stack_kind`), an ``nn.Embedding`` table (a
weight-only module before the first recurrent module) and ``nn.Linear`` layers (after the
last), in the state dict's order and chained by their shapes. What a state dict does not
record comes as hints: an ``nn.RNN``'s nonlinearity; with ``nn.Linear`` layers, the selection
and the head activations. A state dict that :class:`TorchNetwork` saved records the whole
network itself.

**Writing** (:func:`build_network`): a :class:`~rnn_ref.backends.torch.network.TorchNetwork`.
"""

from __future__ import annotations

import contextlib
import json
import operator
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torch.nn.utils.rnn as rnn_utils
from torch import fx, nn

from rnn_ref.activations import Activation
from rnn_ref.backends.torch.network import Activation as TorchActivation
from rnn_ref.backends.torch.network import GatedCell, TorchNetwork
from rnn_ref.backends.torch.record import torch_native_cell
from rnn_ref.backends.torch.trace import Traced, TraceError, node_line, trace, unwrap_compiled
from rnn_ref.cells import pack, unpack
from rnn_ref.config import RNNConfig
from rnn_ref.errors import FileFormatError, UnsupportedError
from rnn_ref.fileapi import MissingHintError
from rnn_ref.network import Dense, HeadActivation, Identity, Softmax
from rnn_ref.params import (
    AnyCellParams,
    CellParams,
    GRUParams,
    LSTMParams,
    Readout,
    RNNParams,
)

__all__ = ["CELL_MODULES", "GATE_ROWS", "RNN_MODULES", "TORCH_DTYPES", "Layout",
           "build_network", "candidate_activation", "cell_switches", "file_network",
           "gated_params", "module_kind", "module_weights", "network_params", "quiet_onednn",
           "read_module", "read_state_dict", "refuse_unknown_recurrent", "state_dict_cells",
           "torch_cell", "torch_weights"]

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
CONFIG_KEY = "rnn_ref_config"


@contextlib.contextmanager
def quiet_onednn() -> Iterator[None]:
    """Without torch's notice that a projected ``nn.LSTM`` on the CPU runs outside oneDNN
    ("LSTM with projections is not supported with oneDNN. Using default implementation."): it
    says which kernel computes, not that anything is wrong; the backends and ``--verify``
    run such modules on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported "
                                "with oneDNN", category=UserWarning)
        yield


def _numpy(t: Any) -> np.ndarray[Any, Any]:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)


def _refuse(what: str, why: str) -> UnsupportedError:
    return UnsupportedError("rnn-ref", what, why)


# --------------------------------------------------------------------------------------------
# modules -> canonical parameters
# --------------------------------------------------------------------------------------------
#: torch's recurrent modules and their one-step cells, by rnn-ref cell
RNN_MODULES: dict[str, type[nn.RNN] | type[nn.GRU] | type[nn.LSTM]] = {
    "elman": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
CELL_MODULES: dict[str, type[nn.RNNCellBase]] = {"elman": nn.RNNCell, "gru": nn.GRUCell,
                                                 "lstm": nn.LSTMCell}
#: the blocks torch packs on the rows of weight_ih, weight_hh and the biases
GATE_ROWS = {"elman": 1, "gru": 3, "lstm": 4}


def module_kind(mod: nn.Module) -> str | None:
    """The cell (``"elman"``, ``"gru"``, ``"lstm"``) of an ``nn.RNN``/``nn.GRU``/``nn.LSTM``
    or of its one-step cell (``nn.RNNCell`` ...); ``None`` for any other module, and for a
    subclass with a ``forward`` of its own (it computes something else)."""
    for table in (RNN_MODULES, CELL_MODULES):
        for kind, cls in table.items():
            if isinstance(mod, cls):
                return kind if type(mod).forward is cls.forward else None
    return None


def refuse_unknown_recurrent(model: nn.Module, target: str = "rnn-ref") -> None:
    """``UnsupportedError`` naming a recurrent module or cell in ``model`` (or ``model``
    itself) that is not torch's own: a subclass of ``nn.RNNBase`` or ``nn.RNNCellBase`` with
    a ``forward`` of its own (:func:`module_kind` ``None``)."""
    for where, mod in model.named_modules():
        if isinstance(mod, (nn.RNNBase, nn.RNNCellBase)) and module_kind(mod) is None:
            raise UnsupportedError(
                target, f"{type(mod).__module__}.{type(mod).__name__}"
                + (f" (self.{where})" if where else ""), "it is not torch.nn.RNN, nn.GRU, "
                "nn.LSTM or one of their cells (a subclass with its own forward computes "
                "something else)")


def candidate_activation(mod: nn.Module) -> str:
    """f of an ``nn.RNN``/``nn.RNNCell`` (its nonlinearity); g (tanh, fixed) of the others."""
    return str(mod.nonlinearity) if module_kind(mod) == "elman" else "tanh"


def torch_cell(kind: str, w_ih: np.ndarray[Any, Any], w_hh: np.ndarray[Any, Any],
               b_ih: np.ndarray[Any, Any] | None = None, b_hh: np.ndarray[Any, Any] | None = None,
               w_hr: np.ndarray[Any, Any] | None = None) -> AnyCellParams:
    """One direction of one layer from torch's tensors (out, in), the gates packed on the rows
    in torch's order (``"gru:torch"`` r, z, n; ``"lstm:torch"`` i, f, g, o): ``w_ih``
    ``(G*M, D_l)``, ``w_hh`` ``(G*M, M)`` (``(4M, P)`` projected), ``b_ih``/``b_hh``
    ``(G*M,)`` or ``None`` (``bias=False``: zeros), ``w_hr`` ``(P, M)`` (``proj_size``) or
    ``None``. Each block is transposed to the canonical (in, out); ``w_proj = w_hr.T``."""
    zeros = np.zeros(w_ih.shape[0], w_ih.dtype)
    b_x = zeros if b_ih is None else b_ih
    b_h = zeros if b_hh is None else b_hh
    if kind == "elman":
        return CellParams(w_ih.T, w_hh.T, b_x, b_h)
    order = f"{kind}:torch"

    def split(a: np.ndarray[Any, Any], transpose: bool) -> dict[str, np.ndarray[Any, Any]]:
        blocks = unpack(a, order, cell=kind, axis=0)
        return {g: b.T for g, b in blocks.items()} if transpose else blocks

    if kind == "gru":
        return GRUParams(split(w_ih, True), split(w_hh, True), split(b_x, False),
                         split(b_h, False))
    return LSTMParams(split(w_ih, True), split(w_hh, True), split(b_x, False),
                      split(b_h, False), w_proj=None if w_hr is None else w_hr.T)


def module_weights(rnn: nn.RNNBase) -> dict[str, np.ndarray[Any, Any]]:
    """An ``nn.RNN``'s, ``nn.GRU``'s or ``nn.LSTM``'s weights under their plain names
    (``weight_ih_l0``, ``bias_hh_l1_reverse``, ``weight_hr_l0`` ...), each read as the module
    computes with it: through its attribute, so a parametrized weight
    (``torch.nn.utils.parametrize``, whose state dict holds ``parametrizations.<name>.
    original0`` ...) is its value."""
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if rnn.bias else []) \
        + (["weight_hr"] if rnn.proj_size else [])
    return {f"{name}_l{li}{'_reverse' if r else ''}":
            _numpy(getattr(rnn, f"{name}_l{li}{'_reverse' if r else ''}"))
            for li in range(rnn.num_layers) for r in range(2 if rnn.bidirectional else 1)
            for name in names}


def _rnn_cells(rnn: nn.RNNBase) -> list[list[AnyCellParams]]:
    """The canonical cells of every layer (R_l each) of an ``nn.RNN``, ``nn.GRU`` or
    ``nn.LSTM``."""
    kind = module_kind(rnn)
    if kind is None:
        raise _refuse(f"{type(rnn).__module__}.{type(rnn).__name__}",
                      "it is not torch.nn.RNN, nn.GRU or nn.LSTM")
    sd = module_weights(rnn)
    layers = []
    for li in range(rnn.num_layers):
        row = []
        for r in range(2 if rnn.bidirectional else 1):
            sfx = f"_l{li}" + ("_reverse" if r else "")
            row.append(torch_cell(kind, sd[f"weight_ih{sfx}"], sd[f"weight_hh{sfx}"],
                                  sd.get(f"bias_ih{sfx}"), sd.get(f"bias_hh{sfx}"),
                                  sd.get(f"weight_hr{sfx}")))
        layers.append(row)
    return layers


def _readout(linear: nn.Linear) -> Readout:
    w = _numpy(linear.weight)
    b = _numpy(linear.bias) if linear.bias is not None else np.zeros(w.shape[0], w.dtype)
    return Readout(w.T, b)


def network_params(module: TorchNetwork) -> RNNParams:
    """The canonical parameters of a :class:`TorchNetwork` (its config from its own buffer)."""
    text = bytes(module.get_buffer(CONFIG_KEY).tolist()).decode()
    config = RNNConfig.from_dict(json.loads(text))
    embedding, layers, head = None, [], []
    for role, step in zip(module.roles, module.steps, strict=True):
        kind = role.split(":")[0]
        if kind == "embed":
            embedding = _numpy(step.weight)
        elif kind in ("rnn", "rev"):
            layers += _rnn_cells(step)  # type: ignore[arg-type]
        elif kind == "pair":
            layers.append([_rnn_cells(s)[0][0] for s in step])  # type: ignore[attr-defined]
        elif kind == "gated":
            layers.append([gated_params(c) for c in step])  # type: ignore[attr-defined]
        elif kind == "linear":
            head.append(_readout(step))  # type: ignore[arg-type]
    return RNNParams(config, layers, embedding=embedding, head=head)


# --------------------------------------------------------------------------------------------
# canonical parameters -> TorchNetwork
# --------------------------------------------------------------------------------------------
_WRITTEN = {"dropout": nn.Dropout, "alpha_dropout": nn.AlphaDropout}


def _block_plan(cfg: RNNConfig) -> list[tuple[str, list[int], float]]:
    """The network's recurrent layers as blocks ``(kind, layers, dropout between them)``: one
    ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM`` per run of layers that one module can hold (the same
    cell and switches, direction, width and nonlinearity, concatenated, the same ``dropout``
    or none between them), a flipped module per reverse layer, a pair per bidirectional Elman
    layer of two nonlinearities, and a ``"gated"`` block of :class:`GatedCell` s per GRU or
    LSTM layer that ``nn.GRU``/``nn.LSTM`` cannot compute (:func:`~rnn_ref.backends.torch.
    record.torch_native_cell`)."""
    blocks: list[tuple[str, list[int], float]] = []
    li = 0
    while li < cfg.num_layers:
        if not torch_native_cell(cfg, li):
            blocks.append(("gated", [li], 0.0))
            li += 1
            continue
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
                    and cfg.cell_of(nxt) == cfg.cell_of(li) and torch_native_cell(cfg, nxt)
                    and set(cfg.activations[nxt]) == acts)
            if not same or (between and p is None) or (rate is not None and (p or 0.0) != rate):
                break
            rate = p or 0.0
            run.append(nxt)
        blocks.append(("rnn", run, rate or 0.0))
        li = run[-1] + 1
    return blocks


def torch_weights(cell: AnyCellParams) -> dict[str, np.ndarray[Any, Any]]:
    """One direction of one layer as torch's tensors (out, in), the inverse of
    :func:`torch_cell`: ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` and a
    projected LSTM's ``weight_hr``; a gated cell's blocks packed on the rows in torch's order
    (``"gru:torch"`` r, z, n; ``"lstm:torch"`` i, f, g, o) by :func:`rnn_ref.cells.pack`."""
    if isinstance(cell, CellParams):
        return {"weight_ih": cell.w_x.T, "weight_hh": cell.w_h.T, "bias_ih": cell.b_x,
                "bias_hh": cell.b_h}
    kind = "gru" if isinstance(cell, GRUParams) else "lstm"
    order = f"{kind}:torch"

    def rows(blocks: Mapping[str, np.ndarray[Any, Any]], transpose: bool
             ) -> np.ndarray[Any, Any]:
        return pack({g: b.T if transpose else b for g, b in blocks.items()}, order, cell=kind,
                    axis=0)

    out = {"weight_ih": rows(cell.w_x, True), "weight_hh": rows(cell.w_h, True),
           "bias_ih": rows(cell.b_x, False), "bias_hh": rows(cell.b_h, False)}
    if isinstance(cell, LSTMParams) and cell.w_proj is not None:
        out["weight_hr"] = cell.w_proj.T
    return out


def _rnn_module(cfg: RNNConfig, params: RNNParams, layers: list[int], cells: list[int],
                bidirectional: bool, dropout: float) -> nn.RNNBase:
    """An ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM`` (the layers' cell; ``proj_size`` a projected
    LSTM's) holding ``layers`` (direction ``cells`` of each) of ``params``."""
    first = layers[0]
    spec = cfg.cell_of(first)
    extra: dict[str, Any] = {"nonlinearity": cfg.activation_of(first, cells[0]).name} \
        if spec.kind == "elman" else {"proj_size": spec.proj_size or 0} \
        if spec.kind == "lstm" else {}
    rnn = RNN_MODULES[spec.kind](
        cfg.layer_input_size(first), cfg.hidden_sizes[first], num_layers=len(layers),
        bias=cfg.bias, batch_first=True, bidirectional=bidirectional, dropout=dropout,
        dtype=TORCH_DTYPES[params.dtype], **extra)
    with torch.no_grad():
        for k, li in enumerate(layers):
            for r, c in enumerate(cells):
                sfx = f"_l{k}" + ("_reverse" if r else "")
                for name, value in torch_weights(params.layers[li][c]).items():
                    if cfg.bias or not name.startswith("bias"):
                        getattr(rnn, f"{name}{sfx}").copy_(torch.from_numpy(value.copy()))
    return rnn


def _gated_cells(cfg: RNNConfig, params: RNNParams, li: int) -> nn.ModuleList:
    """Layer ``li`` (a GRU or LSTM) as one :class:`GatedCell` per direction, its weights
    copied."""
    spec = cfg.cell_of(li)
    cells = []
    for r in range(cfg.num_directions_of(li)):
        cell = params.layers[li][r]
        assert isinstance(cell, (GRUParams, LSTMParams))
        mod = GatedCell(spec.kind, cfg.layer_input_size(li), cfg.hidden_sizes[li],
                        activations=[(a.name, a.alpha, a.beta)
                                     for a in cfg.activations_of(li, r)],
                        reset_after=spec.reset_after, peepholes=spec.peepholes,
                        input_forget=spec.input_forget, proj_size=spec.proj_size,
                        clip=cfg.clips[li], bias=cfg.bias, reverse=cfg.is_reverse(li, r),
                        dtype=TORCH_DTYPES[params.dtype])
        arrays: dict[str, Any] = {f"w_x.{g}": cell.w_x[g] for g in cell.gates}
        arrays.update({f"w_h.{g}": cell.w_h[g] for g in cell.gates})
        if cfg.bias:
            arrays.update({f"b_x.{g}": cell.b_x[g] for g in cell.gates})
            arrays.update({f"b_h.{g}": cell.b_h[g] for g in cell.gates})
        if isinstance(cell, LSTMParams) and cell.p is not None:
            arrays.update({f"p.{g}": v for g, v in cell.p.items()})
        if isinstance(cell, LSTMParams) and cell.w_proj is not None:
            arrays["w_proj"] = cell.w_proj
        mod.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
        cells.append(mod)
    return nn.ModuleList(cells)


def gated_params(cell: GatedCell) -> GRUParams | LSTMParams:
    """The canonical parameters of a :class:`GatedCell` (zero biases when it has none)."""
    def blocks(d: nn.ParameterDict | None, like: Mapping[str, Any] | None = None
               ) -> dict[str, np.ndarray[Any, Any]]:
        if d is None:
            assert like is not None
            return {g: np.zeros(v.shape[1], v.dtype) for g, v in like.items()}
        return {g: _numpy(v) for g, v in d.items()}

    w_x, w_h = blocks(cell.w_x), blocks(cell.w_h)
    b_x, b_h = blocks(cell.b_x, w_x), blocks(cell.b_h, w_x)
    if cell.kind == "gru":
        return GRUParams(w_x, w_h, b_x, b_h)
    return LSTMParams(w_x, w_h, b_x, b_h, p=None if cell.p is None else blocks(cell.p),
                      w_proj=None if cell.w_proj is None else _numpy(cell.w_proj))


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
    dtype = TORCH_DTYPES[params.dtype]
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
        elif kind == "gated":
            steps.append((f"gated{suffix}", _gated_cells(cfg, params, last)))
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
    ``(T, N, K)``), and whether it returns every step (``sequence``).

    ``lengths``: the module packs its input (``forward(x, lengths)``, ``pack_padded_sequence``
    around its ``nn.RNN`` s) and ``time`` is how long ``pad_packed_sequence`` makes the
    result: ``"longest"`` (torch's default: ``max(lengths)`` steps, so the network runs on
    ``x`` cut to that length, which changes no valid step), ``"input"``
    (``total_length=x.size(1)``: T) or a fixed ``total_length`` (an int: ``x`` is cut or
    zero-padded to it).

    ``structure``: how a module of several outputs nests them, when it does (``return out,
    (h_n, c_n)``: ``(0, (1, 2))``, indices into ``RNNConfig.returns``); ``None`` for a flat
    tuple or one result."""

    time_major: bool
    sequence: bool
    lengths: bool = False
    time: str | int = "input"
    structure: Any = None


@dataclass
class _Val:
    """What a graph node holds: ``kind`` is ``"x"`` (the input), ``"seq"`` (per-step
    features), ``"rnn"`` (an ``nn.RNN``'s, ``nn.GRU``'s or ``nn.LSTM``'s result: ``info`` its
    cell), ``"hn"`` (its h_n), ``"state"`` (``h_n[index]``), ``"hc"`` (an ``nn.LSTM``'s
    ``(h_n, c_n)``), ``"cn"`` (its c_n), ``"cstate"`` (``c_n[index]``), ``"sel"`` (one vector
    per sample), ``"arg"`` (the module's input number ``index`` after the first),
    ``"packed"`` (``pack_padded_sequence`` of the chain), ``"pout"`` (a packed nn.RNN's
    packed output), ``"padded"`` (``pad_packed_sequence``'s pair), ``"zero"`` (a tensor of
    zeros), ``"meta"`` (a size, device or dtype; ``info`` is ``("size", d)`` for the input's
    size d), ``"step"`` (``x[:, t]``: ``index`` t, ``info`` the time axis), ``"cellh"`` (an
    ``nn.RNNCell``'s or ``nn.GRUCell``'s state after step ``index``, or an ``nn.LSTMCell``'s
    h), ``"cellpair"`` (an ``nn.LSTMCell``'s ``(h, c)``), ``"cellc"`` (its c), ``"other"``
    (a value nothing may use)."""

    kind: str
    ident: int
    index: int = 0
    info: Any = None


#: what a value that cannot go on is, for a refusal
_KIND_NAMES = {"x": "the input", "seq": "a sequence", "sel": "a selected vector",
               "hn": "h_n (every layer's final state)", "hc": "an nn.LSTM's (h_n, c_n)",
               "cn": "an nn.LSTM's c_n", "cstate": "an nn.LSTM's cell state c_n[k]",
               "cellpair": "an nn.LSTMCell's (h, c)", "cellc": "an nn.LSTMCell's cell state"}

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


_PACK, _PAD = rnn_utils.pack_padded_sequence, rnn_utils.pad_packed_sequence
#: functions and methods that make a tensor of zeros, whatever their (size) arguments
_ZEROS: tuple[Any, ...] = (torch.zeros, torch.zeros_like, "new_zeros", "zero_")
#: methods that keep a tensor's values (a zero state moved, detached, cast)
_KEEPS: tuple[str, ...] = ("to", "detach", "requires_grad_", "float", "double", "half",
                           "cuda", "cpu", "contiguous", "clone", "type_as", "long", "int")
#: nodes that compute nothing a network needs when their result is unused
_PURE_METHODS: tuple[str, ...] = ("size", "dim", *_KEEPS)
_PURE_FUNCTIONS: tuple[Any, ...] = (operator.getitem, getattr, _PACK, _PAD)


#: reductions over time -> the pooling selection (torch.max gives (values, indices))
_POOLS: dict[Any, str] = {torch.mean: "mean_all", "mean": "mean_all", torch.max: "max_all",
                          "max": "max_all", torch.amax: "max_all", "amax": "max_all"}


class _NeedsShape(UnsupportedError):
    """The graph reads as a network only for the input's length (a fixed number of
    nn.RNNCell steps): read it again traced with the input's shape known."""


@dataclass
class _Loop:
    """An ``nn.RNNCell`` (``nn.GRUCell``, ``nn.LSTMCell``) stepped over the input: ``source``
    the stepped value's ident, ``axis`` its time axis, ``states`` the idents of the states
    after each step (of the ``(h, c)`` pairs of an ``nn.LSTMCell``)."""

    cell: nn.RNNCellBase
    source: int
    axis: int
    states: list[int]
    done: bool = False


def _dead(graph: fx.Graph) -> set[fx.Node]:
    """The nodes whose results nothing uses, among those that compute nothing else (an
    unused ``out`` of ``out, h = self.rnn(x)``, the lengths ``pad_packed_sequence`` also
    returns, sizes)."""
    dead: set[fx.Node] = set()
    for node in reversed(graph.nodes):
        pure = (node.op == "call_function" and node.target in _PURE_FUNCTIONS) or (
            node.op == "call_method" and node.target in _PURE_METHODS)
        if pure and all(user in dead for user in node.users):
            dead.add(node)
    return dead


def _state_index(idx: Any) -> int | None:
    """i of ``h_n[i]``, ``h_n[i, :, :]``, ``h_n[i, ...]``; else None."""
    full = slice(None)
    if isinstance(idx, tuple) and idx and all(i in (full, Ellipsis) for i in idx[1:]):
        idx = idx[0]
    return idx if isinstance(idx, int) and not isinstance(idx, bool) else None


def _step_index(idx: Any) -> tuple[int, int] | None:
    """``(t, time axis)`` of ``x[:, t]`` (axis 1, also ``x[:, t, :]``) or ``x[t]`` (axis 0),
    ``t >= 0``; else None."""
    full = slice(None)
    parts = idx if isinstance(idx, tuple) else (idx,)
    axis = 1 if parts and parts[0] == full else 0
    t = parts[axis] if len(parts) > axis else None
    if not isinstance(t, int) or isinstance(t, bool) or t < 0 or any(
            p not in (full, Ellipsis) for i, p in enumerate(parts) if i != axis):
        return None
    return t, axis


@dataclass
class _Reader:
    """The state of reading one graph (see the module docstring)."""

    root: nn.Module
    env: dict[fx.Node, _Val] = field(default_factory=dict)
    embedding: nn.Embedding | None = None
    rnns: list[nn.RNNBase] = field(default_factory=list)
    identities: list[Identity] = field(default_factory=list)
    select: str = "sequence"
    head: list[tuple[nn.Linear, HeadActivation | None]] = field(default_factory=list)
    current: int = -1  # the ident of the value at the end of the chain
    counter: int = 0
    selected: bool = False
    constants: Mapping[str, torch.Tensor] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None  # the input's, when traced with it known
    batch_first: bool | None = None  # of the input and results (nn.RNN's or the packing's)
    packed: bool | None = None  # whether the nn.RNN s take packed input
    time: str | int = "input"  # how long pad_packed_sequence makes the result (Layout)
    loop: _Loop | None = None
    sequence: int = -2  # the ident of the last nn.RNN's outputs
    returns: tuple[str, ...] = ("result",)
    structure: Any = None  # how several outputs nest (Layout.structure)

    # -- values ---------------------------------------------------------------------------
    def new(self, kind: str, index: int = 0, *, chain: bool = True, info: Any = None
            ) -> _Val:
        self.counter += 1
        if chain:
            self.current = self.counter
        return _Val(kind, self.counter, index, info)

    def chain_input(self, node: fx.Node, kinds: Sequence[str]) -> _Val:
        """The value node's first argument holds, which must be the end of the chain and
        one of ``kinds``."""
        src = node.args[0] if node.args else None
        val = self.env.get(src) if isinstance(src, fx.Node) else None
        what = _op_name(node, self.root)
        if val is None or val.kind not in kinds:
            got = "a constant" if val is None else _KIND_NAMES.get(val.kind,
                                                                   f"an {val.kind!r} value")
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
        dead = _dead(graph)
        args = 0
        for node in graph.nodes:
            if node in dead:
                continue
            try:
                if node.op == "placeholder":
                    self.env[node] = self.new("x") if args == 0 else _Val("arg", -1, args)
                    args += 1
                elif node.op == "output":
                    result = self.output(node)
                else:
                    self.env[node] = self.step(node)
            except UnsupportedError as exc:
                line = node_line(node)
                if line is None or exc.feature is None or isinstance(exc, _NeedsShape):
                    raise
                raise type(exc)(exc.target, f"{exc.feature} at {line}", exc.why) from None
        if result is None:
            raise _refuse("a module without an output", "nothing to read")
        return result

    def step(self, node: fx.Node) -> _Val:
        if node.op == "call_module":
            return self.module(node)
        if node.op in ("call_function", "call_method"):
            return self.function(node)
        if node.op == "get_attr" and str(node.target) in self.constants:
            if bool((self.constants[str(node.target)] == 0).all()):
                return _Val("zero", -1)
            raise _refuse(f"a constant tensor that is not zeros ({node.name})",
                          "the network's only constant is a zero initial state")
        raise _refuse(_op_name(node, self.root), "the network has no such step")

    def output(self, node: fx.Node) -> _Val:
        out = node.args[0]
        if isinstance(out, (tuple, list)) and self.rnns:
            names: list[str] = []
            items: list[Any] = []
            structure = self.returned_tree(out, names, items)
            if names.count("result") != 1:
                raise _refuse(f"a module returning {names}", "several outputs hold the "
                              "network's result (the end of its chain) once")
            self.returns = tuple(names)
            if structure != tuple(range(len(names))):
                self.structure = structure
            return self.env[items[names.index("result")]]
        if self.rnns:
            self.promote(node)
        val = self.env.get(out) if isinstance(out, fx.Node) else None
        if val is None or val.kind not in ("seq", "sel") or not self.rnns:
            raise _refuse("the module's result (a constant or no nn.RNN output)",
                          "a network returns its result computed from its nn.RNN layers, "
                          "or a tuple of it, its outputs and final states")
        if val.ident != self.current:
            raise _refuse("a result that is not the end of the chain",
                          "the network is one chain of layers")
        return val

    def returned_tree(self, out: Any, names: list[str], items: list[Any]) -> Any:
        """The names (:meth:`returned`) of the returned values, nested tuples and an
        ``nn.LSTM``'s ``(h_n, c_n)`` flattened into ``names`` (their nodes into ``items``),
        and the structure: ``out``'s nesting with each value's index in ``names``."""
        if isinstance(out, (tuple, list)):
            return tuple(self.returned_tree(item, names, items) for item in out)
        val = self.env.get(out) if isinstance(out, fx.Node) else None
        label = getattr(out, "name", repr(out))
        parts = [_Val("hn", val.ident), _Val("cn", val.ident)] \
            if val is not None and val.kind == "hc" else [val]
        for part in parts:
            names.append(self.returned(part, label))
            items.append(out)
        return len(names) - 1 if len(parts) == 1 else (len(names) - 2, len(names) - 1)

    def returned(self, val: _Val | None, label: str) -> str:
        """The name (``RNNConfig.returns``) of one of several returned values (``label``, its
        node's name): the end of the chain ``"result"``, the last nn.RNN's outputs
        ``"sequence"``, its ``h_n`` (the only nn.RNN's) or ``h_n[k]``, an nn.LSTM's ``c_n``
        (the only one's) or ``c_n[k]``."""
        last = self.rnns[-1]
        own = last.num_layers * (2 if last.bidirectional else 1)
        kind = None if val is None else val.kind
        if val is not None and kind in ("seq", "sel") and val.ident == self.current:
            return "result"
        if val is not None and kind == "seq" and val.ident == self.sequence:
            return "sequence"
        mine = val is not None and val.ident == self.rnn_ident()
        if mine and kind in ("hn", "cn") and len(self.rnns) == 1 and self.loop is None:
            return "h_n" if kind == "hn" else "c_n"
        if val is not None and mine and kind in ("state", "cstate") and -own <= val.index < own:
            total = self.num_states if kind == "state" else self.num_cell_states
            k = val.index if val.index < 0 else val.index + total - own
            return f"{'h' if kind == 'state' else 'c'}_n[{k}]"
        raise _refuse(f"a returned {label} (of several)",
                      "a network returns its result, the last recurrent module's outputs, "
                      "h_n or h_n[k], and an nn.LSTM's c_n or c_n[k]")

    @property
    def num_states(self) -> int:
        return sum(r.num_layers * (2 if r.bidirectional else 1) for r in self.rnns)

    @property
    def num_cell_states(self) -> int:
        return sum(r.num_layers * (2 if r.bidirectional else 1) for r in self.rnns
                   if module_kind(r) == "lstm")

    def module(self, node: fx.Node) -> _Val:
        mod = self.root.get_submodule(str(node.target))
        if isinstance(mod, nn.Embedding):
            return self.embed(node, mod)
        if isinstance(mod, nn.RNNBase):
            return self.rnn(node, mod)
        if isinstance(mod, nn.RNNCellBase):
            return self.cell_step(node, mod)
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
        if fn is torch.stack:
            return self.stack(node)
        special = self.special(node)
        if special is not None:
            return special
        if fn in _POOLS:
            return self.pooling(node, _POOLS[fn])
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
        kind = module_kind(mod)
        if kind is None:
            raise _refuse(_op_name(node, self.root), "it is not torch.nn.RNN, nn.GRU or "
                          "nn.LSTM (a subclass with its own forward computes something else)")
        kinds = ("x", "seq", "packed") if self.embedding is None else ("seq", "packed")
        packed = self.chain_input(node, kinds).kind == "packed"
        self.initial_state(node, _arg(node, 1, "hx"))
        if self.head or self.selected or self.loop is not None:
            raise _refuse(f"self.{node.target} after the head, the selection or an "
                          f"nn.RNNCell", "the recurrent layers come before them")
        if self.rnns and self.packed != packed:
            raise _refuse(f"self.{node.target} {'with' if packed else 'without'} packed input "
                          f"after an nn.RNN {'without' if packed else 'with'}",
                          "every layer skips the same padded steps: pack the input of every "
                          "nn.RNN or of none")
        self.packed = packed
        if not packed:
            self.agree(node, mod.batch_first, f"self.{node.target} with batch_first="
                                              f"{mod.batch_first}")
        first = self.num_layers
        self.identities += [Identity("dropout", mod.dropout, first + k)
                            for k in range(1, mod.num_layers) if mod.dropout > 0]
        self.rnns.append(mod)
        return self.new("rnn", info=kind)

    def getitem(self, node: fx.Node) -> _Val:
        src, idx = node.args
        val = self.env.get(src) if isinstance(src, fx.Node) else None
        kind = None if val is None else val.kind
        if val is not None and kind in ("rnn", "padded") and idx == 0 \
                and val.ident == self.current:
            out = self.new("pout" if kind == "rnn" and self.packed else "seq")
            self.sequence = out.ident
            return out
        if val is not None and kind == "rnn" and idx == 1:
            return _Val("hc" if val.info == "lstm" else "hn", val.ident)
        if val is not None and kind == "hc" and idx in (0, 1):
            return _Val("hn" if idx == 0 else "cn", val.ident)
        if val is not None and kind in ("hn", "cn") and _state_index(idx) is not None:
            return _Val("state" if kind == "hn" else "cstate", val.ident,
                        _state_index(idx))  # type: ignore[arg-type]
        if val is not None and kind == "cellpair" and idx in (0, 1):
            return _Val("cellh" if idx == 0 else "cellc", val.ident, val.index)
        if kind == "meta":
            return _Val("meta", -1)
        if kind == "maxpair" and idx == 0 and val is not None and val.ident == self.current:
            return self.choose(node, "max_all")
        if kind == "seq" and self.rnns and self.is_last_step(idx):
            self.chain_input(node, ("seq",))
            return self.choose(node, "last_step")
        step = _step_index(idx)
        looping = self.loop is not None and not self.loop.done
        if val is not None and kind in ("x", "seq") and step is not None and (
                not self.rnns or looping and val.ident == self.loop.source):  # type: ignore
            return _Val("step", val.ident, step[0], step[1])
        raise _refuse(f"indexing [{idx!r}] ({node.name})",
                      "the network selects out[:, -1] (batch-first), out[-1] (time-major), "
                      "h_n[-1] or h_n[-2] of its last nn.RNN (nn.GRU, nn.LSTM), and steps "
                      "x[:, t] into an nn.RNNCell (nn.GRUCell, nn.LSTMCell)")

    def is_last_step(self, idx: Any) -> bool:
        full = slice(None)
        if self.batch_first is not False:
            return idx in ((full, -1), (full, -1, full), (Ellipsis, -1, full))
        return idx in (-1, (-1,), (-1, full), (-1, full, full))

    def agree(self, node: fx.Node, batch_first: bool, what: str) -> None:
        """The module's layout is ``batch_first`` from here on (every nn.RNN, packing and
        padding must agree)."""
        if self.batch_first is not None and self.batch_first != batch_first:
            raise _refuse(what, f"every nn.RNN, pack_padded_sequence and pad_packed_sequence "
                                f"of the module must agree on batch_first (the first said "
                                f"{self.batch_first})")
        self.batch_first = batch_first

    def initial_state(self, node: fx.Node, hx: Any) -> None:
        """An initial state given to an nn.RNN or nn.RNNCell must be zeros (the default); an
        nn.LSTM's or nn.LSTMCell's ``(h0, c0)`` both."""
        if isinstance(hx, (tuple, list)):
            for item in hx:
                self.initial_state(node, item)
            return
        val = self.env.get(hx) if isinstance(hx, fx.Node) else None
        if hx is not None and (val is None or val.kind != "zero"):
            raise _refuse(f"an initial state given to self.{node.target} that is not zeros "
                          f"({getattr(hx, 'name', repr(hx))})",
                          "the network starts from zero states (torch.zeros(...), "
                          "x.new_zeros(...), torch.zeros_like(...), moved with .to(), "
                          ".detach(), .requires_grad_())")

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
        """When node's first argument is ``h_n[i]``, or an nn.RNNCell's state, it becomes
        the selection."""
        src = node.args[0] if node.args else None
        val = self.env.get(src) if isinstance(src, fx.Node) else None
        if val is not None and val.kind == "state":
            chosen = self.select_state(node, val.ident, self.state_select(node, val.index))
            self.env[src] = chosen  # type: ignore[index]
        elif val is not None and val.kind == "cellh":
            self.finish_loop(node, val)
            self.env[src] = self.choose(node, "final")  # type: ignore[index]

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

    # -- packing, zero states, sizes ------------------------------------------------------
    def special(self, node: fx.Node) -> _Val | None:
        """Packing, a zero tensor, a size, or a method that keeps a value; None otherwise."""
        fn = node.target
        if fn is _PACK:
            return self.pack(node)
        if fn is _PAD:
            return self.pad(node)
        if fn in _ZEROS:
            return self.zeros(node)
        src = self.env.get(node.args[0]) if node.args and isinstance(node.args[0], fx.Node) \
            else None
        if node.op == "call_method" and fn in ("size", "dim") or (
                fn is getattr and _arg(node, 1, "name") in ("device", "dtype", "shape")):
            if src is not None and src.kind == "x" and fn == "size":
                return _Val("meta", -1, info=("size", _arg(node, 1, "dim")))
            return _Val("meta", -1)
        if fn is getattr and src is not None and src.kind == "maxpair" \
                and _arg(node, 1, "name") == "values":
            return self.choose(node, "max_all")
        if node.op == "call_method" and fn in _KEEPS and src is not None \
                and src.kind in ("zero", "arg"):
            self.only_sizes(node, node.args[1:])
            return src
        return None

    def only_sizes(self, node: fx.Node, args: Any) -> None:
        """``args`` hold constants and sizes only."""
        nodes: list[fx.Node] = []
        fx.node.map_arg(args, nodes.append)
        if any((v := self.env.get(n)) is None or v.kind not in ("meta", "x", "zero")
               for n in nodes):
            raise _refuse(f"{_op_name(node, self.root)} ({node.name}) of a computed value",
                          "a zero initial state is made from sizes and constants only")

    def zeros(self, node: fx.Node) -> _Val:
        if node.kwargs.get("out") is not None:
            raise _refuse(f"{_op_name(node, self.root)}(out=...) ({node.name})",
                          "the network has no such step")
        self.only_sizes(node, (node.args, node.kwargs))
        return _Val("zero", -1)

    def pack(self, node: fx.Node) -> _Val:
        """``pack_padded_sequence(chain, lengths, batch_first, enforce_sorted)``."""
        what = f"pack_padded_sequence ({node.name})"
        self.chain_input(node, ("x", "seq"))
        lengths = self.env.get(_arg(node, 1, "lengths"))  # type: ignore[arg-type]
        if lengths is None or lengths.kind != "arg" or lengths.index != 1:
            raise _refuse(f"{what} of lengths that are not the module's second input",
                          "the network's lengths are forward(x, lengths)'s")
        if self.rnns:
            raise _refuse(f"{what} after an nn.RNN", "pack the input of every nn.RNN")
        self.agree(node, bool(_arg(node, 2, "batch_first", False)),
                   f"{what} with batch_first={_arg(node, 2, 'batch_first', False)}")
        return self.new("packed")

    def pad(self, node: fx.Node) -> _Val:
        """``pad_packed_sequence(pout, batch_first, padding_value, total_length)``."""
        what = f"pad_packed_sequence ({node.name})"
        self.chain_input(node, ("pout",))
        if float(_arg(node, 2, "padding_value", 0.0)) != 0.0:
            raise _refuse(f"{what} with padding_value={_arg(node, 2, 'padding_value')}",
                          "a padded step outputs zeros")
        self.agree(node, bool(_arg(node, 1, "batch_first", False)),
                   f"{what} with batch_first={_arg(node, 1, 'batch_first', False)}")
        total = _arg(node, 3, "total_length")
        val = self.env.get(total) if isinstance(total, fx.Node) else None
        axis = 1 if self.batch_first else 0
        if total is None:
            self.time = "longest"
        elif isinstance(total, int) and not isinstance(total, bool) and total > 0:
            self.time = total
        elif val is not None and val.info == ("size", axis):
            self.time = "input"
        else:
            raise _refuse(f"{what} with total_length={getattr(total, 'name', total)!r}",
                          f"a total length is the input's (x.size({axis})) or a fixed int")
        return self.new("padded")

    def pooling(self, node: fx.Node, how: str) -> _Val:
        """``out.mean(dim=1)``, ``out.max(dim=1)[0]`` (or ``.values``), ``torch.amax(out, 1)``
        over the time axis of the last nn.RNN's outputs (``dim=0`` time-major)."""
        what = f"{_op_name(node, self.root)} ({node.name})"
        self.chain_input(node, ("seq",))
        dim = _arg(node, 1, "dim")
        axis = 0 if self.batch_first is False else 1
        if not self.rnns or dim not in (axis, axis - 3) or _arg(node, 2, "keepdim", False):
            raise _refuse(f"{what} over dim={dim!r}", f"the network pools its outputs over "
                          f"time (dim={axis}), keepdim=False")
        if how == "max_all" and node.target in (torch.max, "max"):
            return self.new("maxpair")  # (values, indices): values is the selection
        return self.choose(node, how)

    # -- nn.RNNCell stepped over the input ------------------------------------------------
    def cell_step(self, node: fx.Node, mod: nn.RNNCellBase) -> _Val:
        """One step ``h = self.cell(x[:, t], h)`` of a loop over the input (``h, c =
        self.cell(x[:, t], (h, c))`` of an ``nn.LSTMCell``)."""
        where = f"self.{node.target} ({node.name})"
        kind = module_kind(mod)
        if kind is None:
            raise _refuse(_op_name(node, self.root), "it is not torch.nn.RNNCell, nn.GRUCell "
                          "or nn.LSTMCell (a subclass with its own forward computes something "
                          "else)")
        step = self.env.get(node.args[0]) if node.args else None  # type: ignore[arg-type]
        hx = _arg(node, 1, "hx")
        if step is None or step.kind != "step":
            raise _refuse(f"{where} on something other than a step x[:, t] of the input",
                          "an nn.RNNCell takes the input's steps in order")
        loop = self.loop
        if loop is None:
            return self.start_loop(node, mod, step, hx)
        if mod is not loop.cell or loop.done or step.ident != loop.source \
                or step.info != loop.axis:
            raise _refuse(f"{where}: a second loop or cell",
                          "the network reads one nn.RNNCell stepped over its input")
        parts = list(hx) if kind == "lstm" and isinstance(hx, (tuple, list)) else [hx]
        vals = [self.env.get(p) if isinstance(p, fx.Node) else None for p in parts]
        if kind == "lstm" and len(vals) == 1 and vals[0] is not None \
                and vals[0].kind == "cellpair":  # state = self.cell(x[:, t], state)
            vals = [_Val("cellh", vals[0].ident), _Val("cellc", vals[0].ident)]
        want = ["cellh", "cellc"] if kind == "lstm" else ["cellh"]
        if step.index != len(loop.states) or [v.kind if v else None for v in vals] != want \
                or any(v.ident != loop.states[-1] for v in vals if v is not None):
            raise _refuse(f"{where} on step {step.index} with another state",
                          f"the cell takes step {len(loop.states)} and its own last state"
                          + (" (h, c)" if kind == "lstm" else ""))
        new = self.new("cellpair" if kind == "lstm" else "cellh", step.index)
        loop.states.append(new.ident)
        return new

    def start_loop(self, node: fx.Node, mod: nn.RNNCellBase, step: _Val, hx: Any) -> _Val:
        """The first step: the cell becomes a one-layer forward ``nn.RNN`` (``nn.GRU``,
        ``nn.LSTM``)."""
        if self.rnns or self.head or self.selected or step.index != 0:
            raise _refuse(f"self.{node.target} ({node.name}) on step {step.index} or after "
                          f"other layers", "the cell is the network's one recurrent layer, "
                                           "stepped from x[:, 0]")
        self.initial_state(node, hx)
        self.agree(node, step.info == 1, f"self.{node.target} on steps of axis {step.info}")
        self.rnns.append(_cell_as_rnn(mod, step.info == 1))
        self.packed = False
        new = self.new("cellpair" if module_kind(mod) == "lstm" else "cellh", 0)
        self.loop = _Loop(mod, step.ident, step.info, [new.ident])
        return new

    def finish_loop(self, node: fx.Node, val: _Val) -> None:
        """The loop ends at ``val`` (its last state), after one step per input step."""
        loop = self.loop
        assert loop is not None
        if loop.done or val.ident != loop.states[-1]:
            raise _refuse(f"an nn.RNNCell state before the last step ({node.name})",
                          "the network hands on the state after the last step")
        loop.done = True
        if self.shape is None:
            raise _NeedsShape("rnn-ref", f"{len(loop.states)} steps of an nn.RNNCell",
                              "read with the input's length known (an example input)")
        length = self.shape[loop.axis]
        if len(loop.states) != length:
            raise _refuse(f"{len(loop.states)} steps of an nn.RNNCell on an input of {length}",
                          "the network runs over every step of its input")

    def stack(self, node: fx.Node) -> _Val:
        """``torch.stack(states, dim=axis)`` of every step's state: the sequence."""
        parts = node.args[0] if node.args else node.kwargs.get("tensors")
        vals = [self.env.get(p) for p in parts] if isinstance(parts, (list, tuple)) else []
        loop = self.loop
        if loop is None or [v.ident if v else None for v in vals] != loop.states \
                or any(v is None or v.kind != "cellh" for v in vals) \
                or _arg(node, 1, "dim", 0) != loop.axis:
            raise _refuse(f"torch.stack ({node.name})", "the network stacks every state of its "
                          "nn.RNNCell, in order, on the input's time axis")
        self.finish_loop(node, vals[-1])  # type: ignore[arg-type]
        return self.new("seq")

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


def _cell_as_rnn(cell: nn.RNNCellBase, batch_first: bool) -> nn.RNNBase:
    """A one-layer ``nn.RNN`` (``nn.GRU``, ``nn.LSTM``) with the weights of ``cell`` (an
    ``nn.RNNCell``, ``nn.GRUCell``, ``nn.LSTMCell``): its ``_l0`` are the cell's."""
    w = cell.weight_ih
    kind = module_kind(cell)
    assert kind is not None
    extra: dict[str, Any] = {"nonlinearity": cell.nonlinearity} if kind == "elman" else {}
    rnn = RNN_MODULES[kind](cell.input_size, cell.hidden_size, bias=cell.bias,
                            batch_first=batch_first, dtype=w.dtype, device=w.device, **extra)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if cell.bias else ()):
            getattr(rnn, f"{name}_l0").copy_(getattr(cell, name))
    return rnn


def cell_switches(kinds: Sequence[str], proj: Sequence[int | None]) -> dict[str, Any]:
    """``RNNConfig``'s ``cell`` and ``proj_size`` for layers of torch cells ``kinds`` (one per
    layer) with projections ``proj`` (an nn.LSTM's ``proj_size``, ``None`` for none); empty
    for Elman layers only. torch's GRU is reset-after, its gates sigmoid (the defaults)."""
    out: dict[str, Any] = {}
    if any(k != "elman" for k in kinds):
        out["cell"] = list(kinds)
    if any(p is not None for p in proj):
        out["proj_size"] = list(proj)
    return out


def _config(r: _Reader) -> RNNConfig:
    if len({rnn.bias for rnn in r.rnns}) > 1:
        raise _refuse("recurrent modules with and without biases",
                      "the stack has one bias flag")
    layers = [(rnn, li) for rnn in r.rnns for li in range(rnn.num_layers)]
    emb = r.embedding
    return RNNConfig(
        r.rnns[0].input_size, [rnn.hidden_size for rnn, _ in layers],
        direction=["bidirectional" if rnn.bidirectional else "forward" for rnn, _ in layers],
        activation=[[candidate_activation(rnn)] * (2 if rnn.bidirectional else 1)
                    for rnn, _ in layers],
        **cell_switches([str(module_kind(rnn)) for rnn, _ in layers],
                        [rnn.proj_size or None for rnn, _ in layers]),
        bias=r.rnns[0].bias, vocab_size=None if emb is None else emb.num_embeddings,
        padding_idx=None if emb is None else emb.padding_idx, select=r.select,
        head=[Dense(lin.out_features, act or "linear", lin.bias is not None)
              for lin, act in r.head],
        identities=r.identities, returns=r.returns)


def _read(module: nn.Module, traced: Traced, shape: tuple[int, ...] | None
          ) -> tuple[RNNParams, Layout]:
    reader = _Reader(module, constants=traced.constants, shape=shape)
    result = reader.read(traced.graph)
    cfg = _config(reader)
    emb = None if reader.embedding is None else _numpy(reader.embedding.weight)
    layers = [row for rnn in reader.rnns for row in _rnn_cells(rnn)]
    params = RNNParams(cfg, layers, embedding=emb,
                       head=[_readout(lin) for lin, _ in reader.head])
    return params, Layout(reader.batch_first is False, result.kind == "seq",
                          bool(reader.packed), reader.time, reader.structure)


def _other_shape(shape: tuple[int, ...], ids: bool) -> tuple[int, ...]:
    """``shape`` one longer on every axis but the features' (on all of token ids')."""
    keep = 0 if ids or len(shape) < 2 else 1
    return tuple(s + 1 for s in shape[:len(shape) - keep]) + tuple(shape[len(shape) - keep:])


def read_module(module: nn.Module, example: Any = None) -> tuple[RNNParams, Layout]:
    """The canonical parameters of any module built from the network's pieces, and how it
    takes its input (see the module docstring); ``UnsupportedError`` naming the first
    operation that is not one of them (and its line of ``forward``).

    A forward torch.fx cannot trace without the input's sizes (a Python loop over
    ``x.size(1)`` stepping an ``nn.RNNCell``) is traced with the shape of ``example`` (the
    input, a tensor or array) known, and again one step longer and one sample more: both must
    read as the same network, else it is refused (its network would depend on the length).
    """
    module = unwrap_compiled(module)
    refuse_unknown_recurrent(module)
    try:
        return _read(module, trace(module), None)
    except (TraceError, _NeedsShape):
        if example is None:
            raise
    shape = tuple(int(s) for s in np.shape(example))
    ids = np.asarray(example).dtype.kind in "iub" if not isinstance(example, torch.Tensor) \
        else not example.is_floating_point()
    other = _other_shape(shape, ids)
    first = _read(module, trace(module, shape), shape)
    second = _read(module, trace(module, other), other)
    if first != second:
        raise _refuse(f"the forward of {type(module).__name__}",
                      f"it reads as one network on an input of shape {shape} and as another "
                      f"on {other}: what it computes depends on the input's length")
    return first


# --------------------------------------------------------------------------------------------
# reading a state dict
# --------------------------------------------------------------------------------------------
_RNN_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?)(?P<name>weight_ih|weight_hh|bias_ih|bias_hh|"
                      r"weight_hr)_l(?P<layer>\d+)(?P<rev>_reverse)?$")
_Cells = dict[tuple[int, int], dict[str, np.ndarray[Any, Any]]]


@dataclass
class _Groups:
    """A state dict's arrays by module, in the order the state dict lists them."""

    order: list[tuple[str, str]] = field(default_factory=list)  # ("rnn" | "module", prefix)
    rnns: dict[str, _Cells] = field(default_factory=dict)
    modules: dict[str, dict[str, np.ndarray[Any, Any]]] = field(default_factory=dict)
    config: tuple[str, Any] | None = None  # (prefix, the TorchNetwork config buffer)


def _group(sd: Mapping[str, Any]) -> _Groups:
    """A state dict's keys by module; a :class:`TorchNetwork`'s (its config buffer, any
    prefix) is its config: the keys under its prefix are those of the network the config
    describes, which ``load_state_dict`` checks (a :class:`GatedCell`'s ``w_x.z`` ...
    included), and are not grouped."""
    g = _Groups()
    config = next((k[: -len(CONFIG_KEY)] for k in sd
                   if isinstance(k, str) and k.split(".")[-1] == CONFIG_KEY), None)
    for key, value in sd.items():
        if config is not None and isinstance(key, str) and key.startswith(config) \
                and key != config + CONFIG_KEY:
            continue  # the network's own key: load_state_dict checks it
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
            raise ValueError(f"unexpected state dict key {key!r}: not an nn.RNN, nn.GRU or "
                             f"nn.LSTM weight (<prefix>weight_ih_l<k>[_reverse], weight_hh, "
                             f"bias_ih, bias_hh, weight_hr), nor an nn.Embedding or nn.Linear "
                             f"weight or bias")
    return g


@dataclass(frozen=True)
class _Stack:
    """One recurrent module of a state dict: its cell, layers (R_l cells each), whether it is
    bidirectional, has biases, and its projection (an nn.LSTM's ``proj_size``)."""

    kind: str
    layers: list[list[AnyCellParams]]
    bidirectional: bool
    bias: bool
    proj: int | None


def _stack_kind(prefix: str, cells: _Cells) -> str:
    """Which module wrote one group of keys, from its shapes alone: an nn.LSTM when it has
    ``weight_hr`` (a projection: ``weight_hh_l0`` is then ``(4H, P)``); else from
    ``weight_hh_l0``, which is ``(G*H, H)`` with G = 1 (nn.RNN), 3 (nn.GRU), 4 (nn.LSTM):
    its rows over its columns, exact, so no width is ambiguous. Any other ratio is a
    ``ValueError`` naming the key and its shape (an nn.LSTM with a projection whose
    ``weight_hr`` is missing has ``4H/P > 4``, as torch requires ``P < H``)."""
    if any("weight_hr" in c for c in cells.values()):
        return "lstm"
    first = cells.get((0, 0), {})
    key = f"{prefix}weight_hh_l0"
    if "weight_hh" not in first:
        raise ValueError(f"the state dict misses {key}")
    shape = first["weight_hh"].shape
    rows, cols = (shape[0], shape[1]) if len(shape) == 2 else (0, 0)
    ratio = rows // cols if cols and rows % cols == 0 else 0
    kinds = {g: k for k, g in GATE_ROWS.items()}
    if ratio not in kinds:
        raise ValueError(f"{key} has shape {tuple(shape)}: an nn.RNN's is (H, H), an nn.GRU's "
                         f"(3H, H), an nn.LSTM's (4H, H), or (4H, P) with weight_hr_l0 (P, H) "
                         f"for proj_size P")
    return kinds[ratio]


def _rnn_layers(prefix: str, cells: _Cells) -> _Stack:
    """One recurrent module's cells by layer (its cell from :func:`_stack_kind`);
    ``ValueError`` naming a missing key or one of a shape that module cannot have."""
    kind = _stack_kind(prefix, cells)
    gates = GATE_ROWS[kind]
    num_layers = max(li for li, _ in cells) + 1
    r_count = 2 if any(r for _, r in cells) else 1
    bias = any("bias_ih" in c for c in cells.values())
    proj = any("weight_hr" in c for c in cells.values())
    need = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else []) \
        + (["weight_hr"] if proj else [])
    layers = []
    sizes: tuple[int, int] | None = None
    for li in range(num_layers):
        row = []
        for r in range(r_count):
            sfx = f"_l{li}{'_reverse' if r else ''}"
            have = cells.get((li, r), {})
            missing = [f"{prefix}{n}{sfx}" for n in need if n not in have]
            if missing:
                raise ValueError(f"the state dict misses {', '.join(missing)}")
            hidden = have["weight_hr"].shape[-1] if proj else have["weight_hh"].shape[-1]
            out = have["weight_hr"].shape[0] if proj else hidden
            sizes = sizes or (hidden, out)
            want = {"weight_ih": (gates * hidden,), "weight_hh": (gates * hidden, out),
                    "bias_ih": (gates * hidden,), "bias_hh": (gates * hidden,),
                    "weight_hr": (out, hidden)}
            for name in need:
                shape = tuple(have[name].shape)
                ih = name == "weight_ih"
                if (shape[:1] if ih else shape) != want[name] or (ih and len(shape) != 2):
                    expect = f"({gates * hidden}, D_l)" if ih else str(want[name])
                    raise ValueError(f"{prefix}{name}{sfx} has shape {shape}; the "
                                     f"{RNN_MODULES[kind].__name__} its keys describe (hidden "
                                     f"size {hidden}) has {expect}")
            if (hidden, out) != sizes:
                raise ValueError(f"{prefix}weight_hh{sfx} describes hidden size {hidden} "
                                 f"(output {out}), {prefix}weight_hh_l0 {sizes[0]} "
                                 f"(output {sizes[1]}): one module has one width")
            row.append(torch_cell(kind, have["weight_ih"], have["weight_hh"],
                                  have.get("bias_ih"), have.get("bias_hh"),
                                  have.get("weight_hr")))
        layers.append(row)
    assert sizes is not None
    return _Stack(kind, layers, r_count == 2, bias, sizes[1] if proj else None)


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
    odd = sorted(k for k, d in dtypes.items() if d not in TORCH_DTYPES)
    if odd:
        raise FileFormatError(f"the tensor {odd[0]!r} is {dtypes[odd[0]]}: a TorchNetwork's "
                              f"state dict holds float32 or float64 tensors")
    dtype = next(iter(dtypes.values()), np.dtype(np.float32))
    net = build_network(init(config, seed=0).astype(dtype))
    own = {k[len(prefix):]: torch.as_tensor(_numpy(v)) for k, v in sd.items()
           if k.startswith(prefix)}
    net.load_state_dict(own)
    return network_params(net)


def state_dict_cells(sd: Mapping[str, Any]) -> list[str]:
    """The cell of every recurrent module of a state dict, in order (:func:`_stack_kind`):
    ``"elman"`` (an nn.RNN, whose nonlinearity the state dict does not record), ``"gru"``,
    ``"lstm"``; empty for a :class:`TorchNetwork`'s, which records its network."""
    g = _group(sd)
    return [] if g.config is not None else [_stack_kind(p, c) for p, c in g.rnns.items()]


def _input_size(cell: AnyCellParams) -> int:
    """D_l of a cell."""
    w_x = cell.w_x if isinstance(cell, CellParams) else next(iter(cell.w_x.values()))
    return int(w_x.shape[0])


def read_state_dict(sd: Mapping[str, Any], *, nonlinearity: str | None = None,
                    select: str | None = None,
                    head_activation: Sequence[Any] | str | None = None) -> RNNParams:
    """The network of a state dict (see the module docstring), any prefixes.

    Each group of ``weight_ih_l<k>`` ... keys is one ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM``,
    told apart by its shapes (:func:`_stack_kind`): ``weight_hh_l0`` is ``(H, H)``,
    ``(3H, H)`` or ``(4H, H)``, and ``weight_hr_l<k>`` ``(P, H)`` makes an nn.LSTM with
    ``proj_size`` P. torch's gates are split in its order (``"gru:torch"`` r, z, n;
    ``"lstm:torch"`` i, f, g, o) and transposed; an nn.GRU is reset-after, and its and an
    nn.LSTM's activations are torch's fixed sigmoid and tanh.

    Args:
        sd: names to tensors or arrays.
        nonlinearity: ``"tanh"`` or ``"relu"``, every ``nn.RNN``'s (a state dict does not
            record it); required when the state dict holds an nn.RNN. Without one (only
            nn.GRU and nn.LSTM, whose candidate is tanh), ``None`` or ``"tanh"``.
        select: what feeds the head (:data:`rnn_ref.SELECTS`); required with ``nn.Linear``
            layers (default ``"sequence"`` without).
        head_activation: one activation per ``nn.Linear`` (names, or one comma-separated
            string); required with ``nn.Linear`` layers.

    Raises:
        ValueError: a key that is not one of the pieces, a missing key or one of a shape its
            module cannot have, or a missing hint (a :class:`~rnn_ref.fileapi.
            MissingHintError` naming it).
    """
    g = _group(sd)
    if g.config is not None:
        return _from_config_buffer(g, sd)
    if not g.rnns:
        raise ValueError("the state dict holds no nn.RNN, nn.GRU or nn.LSTM weights")
    embedding, linears = _split_modules(g)
    stacks = [_rnn_layers(p, c) for p, c in g.rnns.items()]
    if any(st.kind == "elman" for st in stacks) and nonlinearity is None:
        raise MissingHintError("activation", "a state dict does not record the nonlinearity "
                               "of its nn.RNN: pass nonlinearity='tanh' or 'relu' (the "
                               "activation hint of a file)")
    elman = nonlinearity or "tanh"  # given wherever an nn.RNN is
    if all(st.kind != "elman" for st in stacks) and nonlinearity not in (None, "tanh"):
        raise ValueError(f"nonlinearity={nonlinearity!r}, but the state dict holds only "
                         f"nn.GRU/nn.LSTM weights, whose candidate activation is tanh: "
                         f"leave it out")
    legacy = list(g.rnns) == ["rnn."] and linears == ["readout"]  # an RNNWithReadout
    if linears and select is None and not legacy:
        raise MissingHintError("select", "the state dict does not record what feeds its "
                          "nn.Linear head: give the select hint (one of 'last_step', "
                          "'final', 'final_forward', 'final_backward', 'sequence')")
    acts = _head_hint(head_activation, len(linears)) if linears else []
    if len({st.bias for st in stacks}) > 1:
        raise ValueError("the state dict has recurrent modules with and without biases")
    layers = [row for st in stacks for row in st.layers]
    per_layer = [st for st in stacks for _ in st.layers]
    table = None if embedding is None else g.modules[embedding]["weight"]
    heads = [g.modules[p] for p in linears]
    config = RNNConfig(
        _input_size(layers[0][0]), [row[0].hidden_size for row in layers],
        direction=["bidirectional" if st.bidirectional else "forward" for st in per_layer],
        activation=[[elman if st.kind == "elman" else "tanh"] * len(row)
                    for st, row in zip(per_layer, layers, strict=True)],
        **cell_switches([st.kind for st in per_layer], [st.proj for st in per_layer]),
        bias=stacks[0].bias,
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
    module of its kind built from the tensors' shapes: an ``nn.Embedding``, an ``nn.RNN``
    (the nonlinearity from ``params``), ``nn.GRU`` or ``nn.LSTM`` per group of
    ``weight_ih_l<k>`` ... keys, an ``nn.Linear``
    per head layer (its activation from ``params``). Keys the reader accepts (``rnn.`` +
    ``fc.``, a ``DataParallel`` ``module.`` prefix, several ``nn.RNN`` modules) are never a
    reason to fail; a tensor no group takes is a ``ValueError`` naming it."""
    g = _group(sd)
    cfg = params.config
    dtype = TORCH_DTYPES[params.dtype]
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
        st = _rnn_layers(prefix, cells)
        w_ih = cells[(0, 0)]["weight_ih"]
        extra: dict[str, Any] = {"nonlinearity": cfg.activation_of(first, 0).name} \
            if st.kind == "elman" else {"proj_size": st.proj or 0} if st.kind == "lstm" else {}
        rnn = RNN_MODULES[st.kind](w_ih.shape[1], w_ih.shape[0] // GATE_ROWS[st.kind],
                                   num_layers=len(st.layers), bias=st.bias, batch_first=True,
                                   bidirectional=st.bidirectional, dtype=dtype, **extra)
        rnn.load_state_dict(own(prefix))
        steps.append(("rnn", rnn))
        first += len(st.layers)
    steps.append((f"select:{cfg.select}", nn.Identity()))
    for path, dense in zip(linears, cfg.head, strict=True):
        w = g.modules[path]["weight"]
        linear = nn.Linear(w.shape[1], w.shape[0], bias="bias" in g.modules[path], dtype=dtype)
        linear.load_state_dict(own(f"{path}."))
        steps += [("linear", linear), ("act", _head_activation(dense.activation))]
    return TorchNetwork([r for r, _ in steps], [m for _, m in steps], cfg.to_dict()).eval()
