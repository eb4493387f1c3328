"""Seeded torch models the way users write them, for tests and the cross-framework zoo.

Each builder returns ``(module, x)``: a module in eval mode (float32) with its own attribute
names and forward code, and a seeded example input it takes (token ids or features, batch-first
unless the module is time-major). ``ZOO`` lists them by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

V, D, M, K, N, T = 11, 5, 4, 3, 3, 7  # all different, so a transpose cannot hide


def _ids(seed: int, n: int = N, t: int = T) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(1, V, (n, t)))


def _features(seed: int, shape: tuple[int, ...] = (N, T, D)) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


class LastStepClassifier(nn.Module):
    """``Embedding -> RNN -> Linear`` on ``out[:, -1]``."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, D, padding_idx=0)
        self.rnn = nn.RNN(D, M, batch_first=True)
        self.fc = nn.Linear(M, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, h = self.rnn(self.emb(x))
        return self.fc(out[:, -1])


class SoftmaxOnFinal(nn.Module):
    """Two relu layers with dropout between them; ``softmax(head(h[-1]))``."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.RNN(D, M, num_layers=2, nonlinearity="relu", batch_first=True,
                              dropout=0.3)
        self.head = nn.Linear(M, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.encoder(x)
        return torch.softmax(self.head(h[-1]), dim=-1)


class BidirectionalFinal(nn.Module):
    """A 2-layer bidirectional classifier on ``cat([h[-2], h[-1]], dim=1)``, dropout before
    the head."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.rnn = nn.RNN(D, M, num_layers=2, bidirectional=True, batch_first=True)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(2 * M, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, h = self.rnn(self.emb(x))
        return self.fc(self.drop(torch.cat([h[-2], h[-1]], dim=1)))


class Tagger(nn.Module):
    """A sequence tagger: an ``nn.Sequential`` MLP on every step, ``log_softmax``."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, batch_first=True, bidirectional=True)
        self.mlp = nn.Sequential(nn.Linear(2 * M, 6), nn.ReLU(), nn.Linear(6, K))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return F.log_softmax(self.mlp(out), dim=-1)


class TimeMajor(nn.Module):
    """``batch_first=False``: input ``(T, N, D)``, ``sigmoid(fc(out[-1]))``."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, num_layers=2)
        self.fc = nn.Linear(M, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return torch.sigmoid(self.fc(out[-1]))


class MixedStack(nn.Module):
    """A bidirectional relu layer, dropout, a forward tanh layer of another width;
    ``fc(h[-1])``."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.RNN(D, M, batch_first=True, bidirectional=True, nonlinearity="relu")
        self.dropout = nn.Dropout(0.2)
        self.second = nn.RNN(2 * M, 6, batch_first=True)
        self.fc = nn.Linear(6, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.first(x)
        _, h = self.second(self.dropout(out))
        return self.fc(h[-1])


class ForwardHalf(nn.Module):
    """``tanh(fc(h[-2]))``: the forward direction's final state of a bidirectional layer."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(D, M, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(M, K, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.rnn(x)
        return torch.tanh(self.fc(h[-2]))


class PerStepHead(nn.Module):
    """An embedding, alpha dropout, the head on every step (``self.head(out)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(V, D, padding_idx=2)
        self.noise = nn.AlphaDropout(0.1)
        self.rnn = nn.RNN(D, M, batch_first=True, num_layers=3)
        self.head = nn.Linear(M, K)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.noise(self.embed(ids)))
        return self.head(out).softmax(-1)


class ZeroStateClassifier(nn.Module):
    """The most copied torch classifier: a zero ``h0`` built from the batch size, moved to the
    input's device, and ``fc(out[:, -1, :])``."""

    def __init__(self, input_size: int = D, hidden_size: int = M, num_layers: int = 2,
                 num_classes: int = K) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.rnn = nn.RNN(input_size, hidden_size, num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size).to(x.device)
        out, _ = self.rnn(x, h0)
        out = self.fc(out[:, -1, :])
        return out


def _build(cls: type[nn.Module], seed: int, x: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    return cls().eval(), x


ZOO: dict[str, Callable[[], tuple[nn.Module, torch.Tensor]]] = {
    "last_step_classifier": lambda: _build(LastStepClassifier, 1, _ids(101)),
    "softmax_on_final": lambda: _build(SoftmaxOnFinal, 2, _features(102)),
    "bidirectional_final": lambda: _build(BidirectionalFinal, 3, _ids(103)),
    "tagger": lambda: _build(Tagger, 4, _features(104)),
    "time_major": lambda: _build(TimeMajor, 5, _features(105, (T, N, D))),
    "mixed_stack": lambda: _build(MixedStack, 6, _features(106)),
    "forward_half": lambda: _build(ForwardHalf, 7, _features(107)),
    "per_step_head": lambda: _build(PerStepHead, 8, _ids(108)),
    "zero_state_classifier": lambda: _build(ZeroStateClassifier, 9, _features(109)),
}

#: the hints a state dict of each model needs: (nonlinearity, select, head activations)
STATE_DICT_HINTS: dict[str, tuple[str, str, tuple[Any, ...]]] = {
    "last_step_classifier": ("tanh", "last_step", ("linear",)),
    "softmax_on_final": ("relu", "final", ("softmax",)),
    "bidirectional_final": ("tanh", "final", ("linear",)),
    "tagger": ("tanh", "sequence", ("relu", "log_softmax")),
    "forward_half": ("tanh", "final_forward", ("tanh",)),
    "per_step_head": ("tanh", "sequence", ("softmax",)),
    "zero_state_classifier": ("tanh", "last_step", ("linear",)),
}
