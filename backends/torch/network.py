"""The whole network as one module of plain torch: :class:`TorchNetwork`.

``rnn_ref.to_torch`` builds it for every network beyond a lone ``nn.RNN`` (or
``RNNWithReadout``)::

    ids (N, T) --nn.Embedding--> (N, T, D) --blocks of nn.RNN--> (N, T, F) --selection-->
        --nn.Linear + activation ...--> y

Nothing here imports rnn-ref: the module runs, saves and exports (``torch.export``) with torch
alone. Its pieces are one ``nn.ModuleList`` ``steps`` and a parallel tuple of ``roles``:

* ``"embed"`` an ``nn.Embedding``; ``"drop"`` an ``nn.Dropout`` / ``nn.AlphaDropout``;
* ``"rnn"`` an ``nn.RNN`` (forward or bidirectional, one or several layers, with its
  ``dropout`` between them), or an ``nn.GRU`` or ``nn.LSTM`` (``proj_size`` too) likewise;
  ``"rev"`` a one-direction ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM`` run over each sequence
  flipped within its length (a reverse-only layer); ``"pair"`` a ``ModuleList`` of two
  one-direction ``nn.RNN`` s, forward and flipped (a bidirectional layer whose directions
  have different nonlinearities); ``"gated"`` a ``ModuleList`` of one or two
  :class:`GatedCell` s (one GRU or LSTM layer that ``nn.GRU``/``nn.LSTM`` cannot compute: a
  reset-before GRU, peepholes, coupled input and forget gates, a clip, other activations;
  each cell reads the sequence forward or from its end, ``GatedCell.reverse``). A block's
  role may end in ``":sum"``, ``":mul"``, ``":ave"`` (how a bidirectional last layer of the
  block merges; concatenation otherwise);
* ``"select:<how>"`` (``sequence``, ``last_step``, ``final``, ``final_forward``,
  ``final_backward``, and the poolings over time ``mean_valid`` (over each sample's valid
  steps), ``mean_all``, ``max_all`` (over all T steps, padded zeros included)) with an
  ``nn.Identity``;
* ``"linear"`` an ``nn.Linear``; ``"act"`` a :class:`Activation` (any head activation,
  softmax and log-softmax over the last axis).

Padded steps: with ``lengths`` (right padding) or ``mask`` (any pattern), the valid steps of
each sample are gathered to its front, run as a ``PackedSequence`` and scattered back (a
:class:`GatedCell` skips them in its loop instead); padded and masked steps output zeros, and
the state carries over them (``padded_output="zeros"``). A sample with no valid step keeps
its initial state. ``mask_zero`` (token id 0 is padding) and ``mask_value`` (Keras
``Masking``) make that mask from the input.

States: ``forward(x, lengths=None, mask=None, h0=None, c0=None)``: ``h0`` the S initial
states (an ``(S, N, M)`` tensor or S tensors ``(N, M_l)``, in ``h_n`` order: layer by layer,
forward then backward), ``c0`` the C initial cell states of the LSTM layers likewise (zeros
when left out). A network of several outputs (its config's ``returns``) returns a tuple of
them: ``"result"``, ``"sequence"`` (the last layer's outputs), ``"h_n"`` (``(S, N, M)``, or a
tuple when the widths differ), ``"h_n[k]"``, ``"c_n"``, ``"c_n[k]"``.

The buffer ``rnn_ref_config`` holds the network's description (UTF-8 JSON of
``RNNConfig.to_dict()``) so that a saved state dict reads back whole; torch never uses it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = ["ACTIVATION_FUNCTIONS", "GATE_NAMES", "Activation", "GatedCell", "TorchNetwork",
           "merge"]

Tensor = torch.Tensor
Plan = tuple[Tensor, Tensor, Tensor] | None  # (order (N, T), counts (N,), valid (N, T))


#: name -> f(z, alpha, beta), every head and cell activation of rnn-ref
ACTIVATION_FUNCTIONS: dict[str, Callable[[Tensor, float, float], Tensor]] = {
    "tanh": lambda z, a, b: torch.tanh(z),
    "relu": lambda z, a, b: torch.relu(z),
    "sigmoid": lambda z, a, b: torch.sigmoid(z),
    "linear": lambda z, a, b: z,
    "affine": lambda z, a, b: a * z + b,
    "leaky_relu": lambda z, a, b: torch.where(z >= 0, z, a * z),
    "thresholded_relu": lambda z, a, b: torch.where(z > a, z, torch.zeros_like(z)),
    "scaled_tanh": lambda z, a, b: a * torch.tanh(b * z),
    "hard_sigmoid": lambda z, a, b: torch.clamp(a * z + b, 0.0, 1.0),
    "elu": lambda z, a, b: torch.where(z >= 0, z, a * torch.expm1(torch.clamp(z, max=0.0))),
    "softsign": lambda z, a, b: z / (1 + torch.abs(z)),
    "softplus": lambda z, a, b: torch.clamp(z, min=0.0) + torch.log1p(torch.exp(-torch.abs(z))),
    "softmax": lambda z, a, b: torch.softmax(z, dim=-1),
    "log_softmax": lambda z, a, b: torch.log_softmax(z, dim=-1),
}


class Activation(nn.Module):
    """A head activation on the last axis: ``name`` one of :data:`ACTIVATION_FUNCTIONS`, with
    ``alpha``/``beta`` where the activation has them."""

    def __init__(self, name: str, alpha: float | None = None, beta: float | None = None
                 ) -> None:
        super().__init__()
        if name not in ACTIVATION_FUNCTIONS:
            raise ValueError(f"activation must be one of {list(ACTIVATION_FUNCTIONS)}, "
                             f"got {name!r}")
        self.name = name
        self.alpha = 0.0 if alpha is None else float(alpha)
        self.beta = 0.0 if beta is None else float(beta)

    def forward(self, z: Tensor) -> Tensor:
        return ACTIVATION_FUNCTIONS[self.name](z, self.alpha, self.beta)

    def extra_repr(self) -> str:
        return self.name


def merge(fwd: Tensor, bwd: Tensor, mode: str) -> Tensor:
    """Two directions' ``(..., M)`` outputs joined: ``concat`` (``2M``), ``sum``, ``mul``,
    ``ave``."""
    if mode == "sum":
        return fwd + bwd
    if mode == "mul":
        return fwd * bwd
    if mode == "ave":
        return (fwd + bwd) / 2
    return torch.cat([fwd, bwd], dim=-1)


def _flip_index(counts: Tensor, t: int) -> Tensor:
    """``(N, T)`` positions that reverse the first ``counts[n]`` steps of each row."""
    steps = torch.arange(t, device=counts.device)[None, :]
    c = counts[:, None]
    return torch.where(steps < c, c - 1 - steps, steps)


def _plan(valid: Tensor | None) -> Plan:
    """How to run the valid steps ``(N, T)`` as a packed sequence: the order that puts them
    first (stable), their counts, and the mask itself."""
    if valid is None:
        return None
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)
    return order, valid.sum(dim=1), valid


#: the gate blocks of each cell, in the order a :class:`GatedCell` packs them (rnn-ref's
#: canonical order, ``rnn_ref.cells.GATES``)
GATE_NAMES: dict[str, tuple[str, ...]] = {"gru": ("z", "r", "n"), "lstm": ("i", "f", "g", "o")}


class GatedCell(nn.Module):
    """One direction of one GRU or LSTM layer in plain torch, every switch of rnn-ref's
    cells (docs/spec.md 2.7), for what ``nn.GRU``/``nn.LSTM`` cannot compute. With
    ``a_k = x_t @ w_x[k] + b_x[k]`` and ``u_k = h_{t-1} @ w_h[k] + b_h[k]``::

        GRU   z = f(clip(a_z + u_z))   r = f(clip(a_r + u_r))
              n = g(clip(a_n + r * u_n))                          reset_after
              n = g(clip(a_n + (r * h_{t-1}) @ w_h[n] + b_h[n]))  reset before
              h_t = (1 - z) * n + z * h_{t-1}
        LSTM  i = f(clip(a_i + u_i + p_i * c_{t-1}))   f_t = f(clip(a_f + u_f + p_f * c_{t-1}))
              (f_t = 1 - i with input_forget)
              c_t = f_t * c_{t-1} + i * g(clip(a_g + u_g))
              o = f(clip(a_o + u_o + p_o * c_t))       h_t = (o * h(clip(c_t))) [@ w_proj]

    Parameters, by gate name in (in, out) orientation: ``w_x[k] (D, M)``, ``w_h[k] (M, M)``
    (``(P, M)`` with a projection), ``b_x[k]``, ``b_h[k] (M,)`` (none with ``bias=False``),
    an LSTM's ``p[k] (M,)`` (peepholes: i, f, o) and ``w_proj (M, P)``; with ``input_forget``
    there is no forget gate (nor ``p["f"]``). ``activations`` are ``(f, g)`` (GRU) or
    ``(f, g, h)`` (LSTM), each ``(name, alpha, beta)`` of :data:`ACTIVATION_FUNCTIONS`.
    ``reverse`` reads each sequence from its last valid step to its first.
    """

    def __init__(self, kind: str, input_size: int, hidden_size: int, *,
                 activations: Sequence[tuple[str, float | None, float | None]],
                 reset_after: bool = True, peepholes: bool = False, input_forget: bool = False,
                 proj_size: int | None = None, clip: float | None = None, bias: bool = True,
                 reverse: bool = False, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if kind not in GATE_NAMES:
            raise ValueError(f"kind must be one of {list(GATE_NAMES)}, got {kind!r}")
        want = 2 if kind == "gru" else 3
        if len(activations) != want:
            raise ValueError(f"a {kind} cell takes {want} activations, got {len(activations)}")
        if kind == "gru" and (peepholes or input_forget or proj_size):
            raise ValueError("peepholes, input_forget and proj_size are an LSTM's switches")
        self.kind = kind
        self.reset_after = bool(reset_after)
        self.input_forget = bool(input_forget)
        self.clip = None if clip is None else float(clip)
        self.reverse = bool(reverse)
        self.hidden_size = int(hidden_size)
        self.proj_size = None if not proj_size else int(proj_size)
        self.gates = tuple(g for g in GATE_NAMES[kind] if not (input_forget and g == "f"))
        self.acts = nn.ModuleList([Activation(n, a, b) for n, a, b in activations])
        m, out = self.hidden_size, self.proj_size or self.hidden_size

        def blocks(shape: tuple[int, ...], gates: Sequence[str]) -> nn.ParameterDict:
            return nn.ParameterDict({g: nn.Parameter(torch.zeros(shape, dtype=dtype))
                                     for g in gates})

        self.w_x = blocks((input_size, m), self.gates)
        self.w_h = blocks((out, m), self.gates)
        self.b_x = blocks((m,), self.gates) if bias else None
        self.b_h = blocks((m,), self.gates) if bias else None
        self.p = blocks((m,), [g for g in ("i", "f", "o") if g in self.gates]) \
            if peepholes else None
        self.w_proj = nn.Parameter(torch.zeros((m, out), dtype=dtype)) if self.proj_size \
            else None

    @property
    def output_size(self) -> int:
        """The width of ``h``: P with a projection, else M."""
        return self.proj_size or self.hidden_size

    def _clip(self, z: Tensor) -> Tensor:
        return z if self.clip is None else torch.clamp(z, -self.clip, self.clip)

    @staticmethod
    def _cat(blocks: nn.ParameterDict, gates: Sequence[str]) -> Tensor:
        return torch.cat([blocks[g] for g in gates], dim=-1)

    def forward(self, x: Tensor, h0: Tensor | None = None, c0: Tensor | None = None,
                valid: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """``x (N, T, D)``, ``h0 (N, P)`` and an LSTM's ``c0 (N, M)`` (zeros when ``None``),
        ``valid (N, T)`` (``None``: every step) -> ``(outputs (N, T, P), h_n (N, P), c_n
        (N, M) or None)``: a padded step outputs zeros and carries the states."""
        n, t, m = x.shape[0], x.shape[1], self.hidden_size
        h = x.new_zeros((n, self.output_size)) if h0 is None else h0
        c = (x.new_zeros((n, m)) if c0 is None else c0) if self.kind == "lstm" else None
        a = x @ self._cat(self.w_x, self.gates)
        if self.b_x is not None:
            a = a + self._cat(self.b_x, self.gates)
        # the recurrent product of every gate (a reset-before GRU's n takes r * h instead)
        rec = self.gates if self.kind == "lstm" or self.reset_after else ("z", "r")
        w_h = self._cat(self.w_h, rec)
        b_h = None if self.b_h is None else self._cat(self.b_h, rec)
        outs: list[Tensor] = [x.new_zeros(())] * t
        for s in (range(t - 1, -1, -1) if self.reverse else range(t)):
            u = h @ w_h
            if b_h is not None:
                u = u + b_h
            new_h, new_c = self._step(a[:, s], u, h, c)
            if valid is None:
                outs[s], h, c = new_h, new_h, new_c
            else:
                v = valid[:, s, None]
                outs[s] = torch.where(v, new_h, torch.zeros_like(new_h))
                h = torch.where(v, new_h, h)
                c = None if c is None or new_c is None else torch.where(v, new_c, c)
        out = torch.stack(outs, dim=1) if t else x.new_zeros((n, 0, self.output_size))
        return out, h, c

    def _step(self, a: Tensor, u: Tensor, h: Tensor, c: Tensor | None
              ) -> tuple[Tensor, Tensor | None]:
        """One step: ``a (N, G*M)`` the input sides, ``u`` the recurrent sides (a
        reset-before GRU's: z and r only) -> ``(h_t, c_t)``."""
        m = self.hidden_size
        col = {g: a[:, k * m:(k + 1) * m] for k, g in enumerate(self.gates)}
        rec = {g: u[:, k * m:(k + 1) * m] for k, g in enumerate(self.gates[:u.shape[1] // m])}
        f = self.acts[0]
        if self.kind == "gru":
            g = self.acts[1]
            z = f(self._clip(col["z"] + rec["z"]))
            r = f(self._clip(col["r"] + rec["r"]))
            if self.reset_after:
                n = g(self._clip(col["n"] + r * rec["n"]))
            else:
                un = (r * h) @ self.w_h["n"]
                if self.b_h is not None:
                    un = un + self.b_h["n"]
                n = g(self._clip(col["n"] + un))
            return (1 - z) * n + z * h, None
        assert c is not None
        g, h_act = self.acts[1], self.acts[2]
        p = self.p
        i_in = col["i"] + rec["i"]
        i = f(self._clip(i_in if p is None else i_in + p["i"] * c))
        if self.input_forget:
            forget = 1 - i
        else:
            f_in = col["f"] + rec["f"]
            forget = f(self._clip(f_in if p is None else f_in + p["f"] * c))
        c_t = forget * c + i * g(self._clip(col["g"] + rec["g"]))
        o_in = col["o"] + rec["o"]
        o = f(self._clip(o_in if p is None else o_in + p["o"] * c_t))
        h_t = o * h_act(self._clip(c_t))
        if self.w_proj is not None:
            h_t = h_t @ self.w_proj
        return h_t, c_t

    def extra_repr(self) -> str:
        switches = [f"reset_after={self.reset_after}"] if self.kind == "gru" else \
            [f"peepholes={self.p is not None}", f"input_forget={self.input_forget}",
             f"proj_size={self.proj_size}"]
        return ", ".join([self.kind, f"hidden_size={self.hidden_size}", *switches,
                          f"clip={self.clip}", f"reverse={self.reverse}"])


def _final_h(state: Tensor | tuple[Tensor, Tensor]) -> Tensor:
    """h_n of an ``nn.RNN``/``nn.GRU`` state, or of an ``nn.LSTM``'s ``(h_n, c_n)``."""
    return state[0] if isinstance(state, tuple) else state


def _initial(rnn: nn.RNNBase, h0: Tensor | None, c0: Tensor | None, n: int, like: Tensor
             ) -> Any:
    """What ``rnn`` takes as its initial state: ``h0`` (``(L*R, N, H_out)`` or ``None``), or
    an ``nn.LSTM``'s ``(h0, c0)`` (``c0`` ``(L*R, N, M)``; whichever is ``None`` is zeros,
    both ``None`` is ``None``)."""
    if not isinstance(rnn, nn.LSTM):
        return h0
    if h0 is None and c0 is None:
        return None
    s = rnn.num_layers * (2 if rnn.bidirectional else 1)
    h = like.new_zeros((s, n, rnn.proj_size or rnn.hidden_size)) if h0 is None else h0
    c = like.new_zeros((s, n, rnn.hidden_size)) if c0 is None else c0
    return h, c


def _run_rnn(rnn: nn.RNNBase, x: Tensor, h0: Tensor | None, c0: Tensor | None, plan: Plan,
             reverse: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """``rnn`` (an ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM``, batch-first) on ``x (N, T, D)``:
    outputs ``(N, T, F)`` aligned with ``x``, ``h_n`` and an nn.LSTM's ``c_n`` (else
    ``None``); ``reverse`` runs it over each sequence flipped within its valid steps."""
    init = _initial(rnn, h0, c0, x.shape[0], x)
    if plan is None:
        out, state = rnn(x.flip(1) if reverse else x, init)
        cn = state[1] if isinstance(state, tuple) else None
        return (out.flip(1) if reverse else out), _final_h(state), cn
    order, counts, valid = plan
    t = x.shape[1]
    idx = order.gather(1, _flip_index(counts, t)) if reverse else order
    xs = x.gather(1, idx[..., None].expand(-1, -1, x.shape[2]))
    packed = pack_padded_sequence(xs, counts.clamp(min=1).cpu(), batch_first=True,
                                  enforce_sorted=False)
    out_p, state = rnn(packed, init)
    h = _final_h(state)
    out, _ = pad_packed_sequence(out_p, batch_first=True, total_length=t)
    full = torch.zeros_like(out).scatter(1, idx[..., None].expand(-1, -1, out.shape[2]), out)
    empty = (counts == 0)[None, :, None]
    first = init[0] if isinstance(init, tuple) else init
    h = torch.where(empty, torch.zeros_like(h) if first is None else first, h)
    cn = None
    if isinstance(state, tuple):
        cn = torch.where(empty, torch.zeros_like(state[1]) if init is None else init[1],
                         state[1])
    return full * valid[..., None].to(full.dtype), h, cn


_STATE_ITEM = re.compile(r"([hc])_n\[(-?\d+)\]")


def _states(value: Tensor | Sequence[Tensor] | None, what: str) -> list[Tensor] | None:
    """Initial states given as one stacked tensor ``(S, N, M)`` or a sequence of ``(N, M_l)``
    tensors, as a list."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        if value.dim() != 3:
            raise ValueError(f"{what} must be (S, N, M) or a sequence of (N, M_l) tensors, got "
                             f"shape {tuple(value.shape)}")
        return list(value.unbind(0))
    return list(value)


def _stacked(states: list[Tensor]) -> Tensor | tuple[Tensor, ...]:
    """States as one ``(S, N, M)`` tensor when their widths agree, else a tuple."""
    if states and len({tuple(s.shape) for s in states}) == 1:
        return torch.stack(states)
    return tuple(states)


class TorchNetwork(nn.Module):
    """The whole network (see the module docstring); ``forward(x, lengths=None, mask=None,
    h0=None, c0=None)`` takes batch-first ``x`` (``(N, T, D)`` features or ``(N, T)`` token
    ids) and returns what the network returns: the head's output, else the selection (a
    tuple of the outputs its config's ``returns`` names, for several)."""

    def __init__(self, roles: list[str], steps: list[nn.Module], config: dict[str, Any]
                 ) -> None:
        super().__init__()
        if len(roles) != len(steps):
            raise ValueError(f"{len(roles)} roles for {len(steps)} steps")
        self.roles = tuple(roles)
        self.steps = nn.ModuleList(steps)
        self.mask_zero = bool(config.get("mask_zero", False))
        mv = config.get("mask_value")
        self.mask_value = None if mv is None else float(mv)
        self.output_order = str(config.get("output_order", "aligned"))
        self.returns = tuple(str(r) for r in config.get("returns", ("result",)))
        text = json.dumps(config, sort_keys=True).encode()
        self.register_buffer("rnn_ref_config", torch.tensor(list(text), dtype=torch.uint8))

    def _valid(self, x: Tensor, lengths: Tensor | None, mask: Tensor | None) -> Tensor | None:
        valid = None if mask is None else mask.to(torch.bool)
        if lengths is not None:
            steps = torch.arange(x.shape[1], device=x.device)[None, :]
            by_length = steps < torch.as_tensor(lengths, device=x.device)[:, None]
            valid = by_length if valid is None else valid & by_length
        if self.mask_zero:
            valid = (x != 0) if valid is None else valid & (x != 0)
        if self.mask_value is not None:
            features = (x != self.mask_value).any(dim=-1)
            valid = features if valid is None else valid & features
        return valid

    def forward(self, x: Tensor, lengths: Tensor | None = None, mask: Tensor | None = None,
                h0: Tensor | Sequence[Tensor] | None = None,
                c0: Tensor | Sequence[Tensor] | None = None) -> Any:
        outputs, states, _, value, cells = self.run(x, lengths, mask, _states(h0, "h0"),
                                                    _states(c0, "c0"))
        if self.returns == ("result",):
            return value
        named: dict[str, Any] = {"result": value, "sequence": outputs,
                                 "h_n": _stacked(states), "c_n": _stacked(cells)}
        out = []
        for name in self.returns:
            item = _STATE_ITEM.fullmatch(name)
            if item is None:
                out.append(named[name])
            else:
                out.append((states if item.group(1) == "h" else cells)[int(item.group(2))])
        return tuple(out)

    def run(self, x: Tensor, lengths: Tensor | None = None, mask: Tensor | None = None,
            h0: list[Tensor] | None = None, c0: list[Tensor] | None = None
            ) -> tuple[Tensor, list[Tensor], Tensor, Tensor, list[Tensor]]:
        """``(outputs (N, T, F) of the last layer, the S final states (N, M_l) in h_n order,
        the selection, the result, the C final cell states (N, M_l) of the LSTM layers in
        c_n order)``; ``h0`` is S initial states ``(N, M_l)`` or ``None`` (zeros), ``c0`` C
        initial cell states or ``None`` (zeros)."""
        plan = _plan(self._valid(x, lengths, mask))
        value, outputs, selected = x, x, x
        states: list[Tensor] = []
        cells: list[Tensor] = []
        finals: list[Tensor] = []
        mode = "concat"
        for role, step in zip(self.roles, self.steps, strict=True):
            kind, _, how = role.partition(":")
            if kind in ("rnn", "rev", "pair", "gated"):
                value, block_states, finals, block_cells = _block(
                    kind, how or "concat", step, value, plan, h0, c0, len(states), len(cells))
                states += block_states
                cells += block_cells
                mode, outputs = how or "concat", value
            elif kind == "select":
                if self.output_order == "processing":
                    outputs = value = value.flip(1)
                value = selected = _select(how, value, finals, mode,
                                           None if plan is None else plan[2])
            else:
                value = step(value)
        return outputs, states, selected, value, cells


def _block(kind: str, mode: str, step: nn.Module, x: Tensor, plan: Plan,
           h0: list[Tensor] | None, c0: list[Tensor] | None, first: int, cfirst: int
           ) -> tuple[Tensor, list[Tensor], list[Tensor], list[Tensor]]:
    """One block of recurrent layers on ``x``: its merged outputs, the final states of all
    its layers in h_n order, those of its last layer (1 or 2), and the final cell states of
    its LSTM layers in c_n order (``first``, ``cfirst``: where its states start in ``h0``
    and ``c0``)."""
    if kind == "gated":
        valid = None if plan is None else plan[2]
        outs: list[Tensor] = []
        hs: list[Tensor] = []
        cs: list[Tensor] = []
        for r, cell in enumerate(step.children()):
            assert isinstance(cell, GatedCell)
            lstm = cell.kind == "lstm"
            h = None if h0 is None else h0[first + r]
            c = None if c0 is None or not lstm else c0[cfirst + len(cs)]
            o, hn, cn = cell(x, h, c, valid)
            outs.append(o)
            hs.append(hn)
            if cn is not None:
                cs.append(cn)
        return (outs[0] if len(outs) == 1 else merge(outs[0], outs[1], mode)), hs, hs, cs
    if kind == "pair":
        fwd_rnn, bwd_rnn = step[0], step[1]  # type: ignore[index]
        init = [None, None] if h0 is None else [h0[first][None], h0[first + 1][None]]
        of, hf, _ = _run_rnn(fwd_rnn, x, init[0], None, plan, False)
        ob, hb, _ = _run_rnn(bwd_rnn, x, init[1], None, plan, True)
        return merge(of, ob, mode), [hf[0], hb[0]], [hf[0], hb[0]], []
    if not isinstance(step, (nn.RNN, nn.GRU, nn.LSTM)):
        raise TypeError(f"a {kind} block must be an nn.RNN, nn.GRU or nn.LSTM, got "
                        f"{type(step).__name__}")
    r = 2 if step.bidirectional else 1
    count = step.num_layers * r
    stacked = None if h0 is None else torch.stack(h0[first:first + count])
    cstacked = None if c0 is None or not isinstance(step, nn.LSTM) else \
        torch.stack(c0[cfirst:cfirst + count])
    out, h, cn = _run_rnn(step, x, stacked, cstacked, plan, kind == "rev")
    if r == 2 and mode != "concat":
        m = step.proj_size or step.hidden_size
        out = merge(out[..., :m], out[..., m:], mode)
    states = list(h.unbind(0))
    return out, states, states[-r:], [] if cn is None else list(cn.unbind(0))


def _select(how: str, out: Tensor, finals: list[Tensor], mode: str, valid: Tensor | None
            ) -> Tensor:
    """What the stack hands on: ``out (N, T, F)`` itself, its last step, its mean or maximum
    over time (``valid (N, T)``: the steps a ``mean_valid`` takes; None: all), or the last
    layer's final states ``finals`` (merged by ``mode``)."""
    if how == "mean_all" or (how == "mean_valid" and valid is None):
        return out.sum(dim=1) / max(out.shape[1], 1)
    if how == "mean_valid" and valid is not None:
        count = valid.sum(dim=1, keepdim=True).clamp(min=1).to(out.dtype)
        return (out * valid[..., None].to(out.dtype)).sum(dim=1) / count
    if how == "max_all":
        return out.max(dim=1).values
    if how == "last_step":
        return out[:, -1]
    if how == "final_forward":
        return finals[0]
    if how == "final_backward":
        return finals[1]
    if how == "final":
        return finals[0] if len(finals) == 1 else merge(finals[0], finals[1], mode)
    return out
