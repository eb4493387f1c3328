"""The whole network as one module of plain torch: :class:`TorchNetwork`.

``rnn_ref.to_torch`` builds it for every network beyond a lone ``nn.RNN`` (or
``RNNWithReadout``)::

    ids (N, T) --nn.Embedding--> (N, T, D) --blocks of nn.RNN--> (N, T, F) --selection-->
        --nn.Linear + activation ...--> y

Nothing here imports rnn-ref: the module runs, saves and exports (``torch.export``) with torch
alone. Its pieces are one ``nn.ModuleList`` ``steps`` and a parallel tuple of ``roles``:

* ``"embed"`` an ``nn.Embedding``; ``"drop"`` an ``nn.Dropout`` / ``nn.AlphaDropout``;
* ``"rnn"`` an ``nn.RNN`` (forward or bidirectional, one or several layers, with its
  ``dropout`` between them), or an ``nn.GRU`` or ``nn.LSTM`` likewise (what a torch file of
  them holds, run as the file; an nn.LSTM's cell states start from zeros); ``"rev"`` a
  one-direction ``nn.RNN`` run over each sequence flipped within its length (a reverse-only
  layer); ``"pair"`` a ``ModuleList`` of two one-direction ``nn.RNN`` s, forward and flipped
  (a bidirectional layer whose directions have different nonlinearities). A block's role may
  end in ``":sum"``, ``":mul"``, ``":ave"`` (how a bidirectional last layer of the block
  merges; concatenation otherwise);
* ``"select:<how>"`` (``sequence``, ``last_step``, ``final``, ``final_forward``,
  ``final_backward``, and the poolings over time ``mean_valid`` (over each sample's valid
  steps), ``mean_all``, ``max_all`` (over all T steps, padded zeros included)) with an
  ``nn.Identity``;
* ``"linear"`` an ``nn.Linear``; ``"act"`` a :class:`Activation` (any head activation,
  softmax and log-softmax over the last axis).

Padded steps: with ``lengths`` (right padding) or ``mask`` (any pattern), the valid steps of
each sample are gathered to its front, run as a ``PackedSequence`` and scattered back; padded
and masked steps output zeros, and the state carries over them (``padded_output="zeros"``).
A sample with no valid step keeps its initial state. ``mask_zero`` (token id 0 is padding)
and ``mask_value`` (Keras ``Masking``) make that mask from the input.

The buffer ``rnn_ref_config`` holds the network's description (UTF-8 JSON of
``RNNConfig.to_dict()``) so that a saved state dict reads back whole; torch never uses it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = ["ACTIVATION_FUNCTIONS", "Activation", "TorchNetwork", "merge"]

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


def _final_h(state: Tensor | tuple[Tensor, Tensor]) -> Tensor:
    """h_n of an ``nn.RNN``/``nn.GRU`` state, or of an ``nn.LSTM``'s ``(h_n, c_n)``."""
    return state[0] if isinstance(state, tuple) else state


def _initial(rnn: nn.RNNBase, h0: Tensor | None) -> Any:
    """What ``rnn`` takes as its initial state: ``h0``, or ``(h0, zeros)`` for an
    ``nn.LSTM`` (this network starts its cell states from zeros)."""
    if h0 is None or not isinstance(rnn, nn.LSTM):
        return h0
    return h0, h0.new_zeros((h0.shape[0], h0.shape[1], rnn.hidden_size))


def _run_rnn(rnn: nn.RNNBase, x: Tensor, h0: Tensor | None, plan: Plan, reverse: bool
             ) -> tuple[Tensor, Tensor]:
    """``rnn`` (an ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM``, batch-first) on ``x (N, T, D)``:
    outputs ``(N, T, F)`` aligned with ``x`` and ``h_n``; ``reverse`` runs it over each
    sequence flipped within its valid steps."""
    if plan is None:
        out, state = rnn(x.flip(1) if reverse else x, _initial(rnn, h0))
        return (out.flip(1) if reverse else out), _final_h(state)
    order, counts, valid = plan
    t = x.shape[1]
    idx = order.gather(1, _flip_index(counts, t)) if reverse else order
    xs = x.gather(1, idx[..., None].expand(-1, -1, x.shape[2]))
    packed = pack_padded_sequence(xs, counts.clamp(min=1).cpu(), batch_first=True,
                                  enforce_sorted=False)
    out_p, state = rnn(packed, _initial(rnn, h0))
    h = _final_h(state)
    out, _ = pad_packed_sequence(out_p, batch_first=True, total_length=t)
    full = torch.zeros_like(out).scatter(1, idx[..., None].expand(-1, -1, out.shape[2]), out)
    empty = (counts == 0)[None, :, None]
    h = torch.where(empty, torch.zeros_like(h) if h0 is None else h0, h)
    return full * valid[..., None].to(full.dtype), h


class TorchNetwork(nn.Module):
    """The whole network (see the module docstring); ``forward(x, lengths=None, mask=None)``
    takes batch-first ``x`` (``(N, T, D)`` features or ``(N, T)`` token ids) and returns what
    the network returns: the head's output, else the selection."""

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

    def forward(self, x: Tensor, lengths: Tensor | None = None, mask: Tensor | None = None
                ) -> Tensor:
        return self.run(x, lengths, mask)[3]

    def run(self, x: Tensor, lengths: Tensor | None = None, mask: Tensor | None = None,
            h0: list[Tensor] | None = None
            ) -> tuple[Tensor, list[Tensor], Tensor, Tensor]:
        """``(outputs (N, T, F) of the last layer, the S final states (N, M_l) in h_n order,
        the selection, the result)``; ``h0`` is S initial states ``(N, M_l)`` or ``None``
        (zeros)."""
        plan = _plan(self._valid(x, lengths, mask))
        value, outputs, selected = x, x, x
        states: list[Tensor] = []
        finals: list[Tensor] = []
        mode = "concat"
        for role, step in zip(self.roles, self.steps, strict=True):
            kind, _, how = role.partition(":")
            if kind in ("rnn", "rev", "pair"):
                value, block_states, finals = _block(kind, how or "concat", step, value,
                                                     plan, h0, len(states))
                states += block_states
                mode, outputs = how or "concat", value
            elif kind == "select":
                if self.output_order == "processing":
                    outputs = value = value.flip(1)
                value = selected = _select(how, value, finals, mode,
                                           None if plan is None else plan[2])
            else:
                value = step(value)
        return outputs, states, selected, value


def _block(kind: str, mode: str, step: nn.Module, x: Tensor, plan: Plan,
           h0: list[Tensor] | None, first: int) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """One block of recurrent layers on ``x``: its merged outputs, the final states of all
    its layers in h_n order, and those of its last layer (1 or 2)."""
    if kind == "pair":
        fwd_rnn, bwd_rnn = step[0], step[1]  # type: ignore[index]
        init = [None, None] if h0 is None else [h0[first][None], h0[first + 1][None]]
        of, hf = _run_rnn(fwd_rnn, x, init[0], plan, False)
        ob, hb = _run_rnn(bwd_rnn, x, init[1], plan, True)
        return merge(of, ob, mode), [hf[0], hb[0]], [hf[0], hb[0]]
    if not isinstance(step, (nn.RNN, nn.GRU, nn.LSTM)):
        raise TypeError(f"a {kind} block must be an nn.RNN, nn.GRU or nn.LSTM, got "
                        f"{type(step).__name__}")
    r = 2 if step.bidirectional else 1
    stacked = None if h0 is None else torch.stack(h0[first:first + step.num_layers * r])
    out, h = _run_rnn(step, x, stacked, plan, kind == "rev")
    if r == 2 and mode != "concat":
        m = step.proj_size or step.hidden_size
        out = merge(out[..., :m], out[..., m:], mode)
    states = list(h.unbind(0))
    return out, states, states[-r:]


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
