"""The file API's vocabulary: what a framework's file functions take and give.

Each framework's ``files`` module (``read_file``, ``write_file``, ``load_native``,
``run_native``, ``list_arrays``) speaks these names, and the conversion workflow
(:mod:`rnn_ref.convert`, which re-exports them) calls those functions with them; a backend never
imports the workflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rnn_ref.activations import Activation

__all__ = ["HINT_NAMES", "Hints", "MissingHintError", "NativeFile", "hint_activation",
           "hint_activations"]

HINT_NAMES = ("activation", "merge_mode", "direction", "select", "head_activation",
              "recurrent_activation")


@dataclass(frozen=True)
class Hints:
    """What a weights-only file cannot tell: the activation (and a Keras bidirectional merge,
    a Keras reverse direction; for a state dict with ``nn.Linear`` layers, what feeds them
    (``select``) and their activations, comma-separated (``head_activation``); the gates'
    activation of Keras GRU and LSTM layers (``recurrent_activation``, ``activation`` being
    their candidate's))."""

    activation: str | None = None
    merge_mode: str | None = None
    direction: str | None = None
    select: str | None = None
    head_activation: str | None = None
    recurrent_activation: str | None = None


class MissingHintError(ValueError):
    """A file does not record something the reader needs; ``hint`` names the :class:`Hints`
    field to give (``"activation"``, ``"merge_mode"``)."""

    def __init__(self, hint: str, message: str) -> None:
        super().__init__(message)
        self.hint = hint


def hint_activation(hints: Hints, fmt: str, allowed: dict[str, Activation]) -> Activation:
    """The activation a ``fmt`` file needs from ``hints``, one of ``allowed`` (by name)."""
    if hints.activation is None:
        raise MissingHintError("activation", f"a {fmt} file does not record the activation: "
                               f"give it as a hint (one of {', '.join(allowed)})")
    if hints.activation not in allowed:
        raise ValueError(f"activation hint {hints.activation!r} is not one of "
                         f"{', '.join(allowed)}")
    return allowed[hints.activation]


def hint_activations(hints: Hints, fmt: str, allowed: dict[str, Activation], layers: int
                     ) -> list[Activation]:
    """The activation of each of ``layers`` layers from ``hints``: one name for all, or one
    per layer comma-separated (``"tanh,relu"``), each one of ``allowed``."""
    if hints.activation is None:
        return [hint_activation(hints, fmt, allowed)] * layers
    names = [a.strip() for a in hints.activation.split(",")]
    if len(names) not in (1, layers):
        raise ValueError(f"the activation hint {hints.activation!r} gives {len(names)} "
                         f"activations for {layers} layers: give one, or one per layer")
    acts = [hint_activation(Hints(activation=n), fmt, allowed) for n in names]
    return acts * layers if len(acts) == 1 else acts


@dataclass(frozen=True)
class NativeFile:
    """A file opened in its own framework (``load_native``) to be run (``run_native``).

    ``model`` is the native model the file holds, or for a weights-only file the model built
    around its weights; ``takes_lengths`` whether ``run_native`` can give it lengths;
    ``oracle`` the oracle of the same call where the model returns something other than full
    sequences (a Keras model returning its last output), else ``None``.
    """

    model: Any
    takes_lengths: bool
    oracle: Callable[..., Any] | None = None
