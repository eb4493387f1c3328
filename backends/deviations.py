"""Known deviations of the frameworks from the spec, kept as data (one JSON file a backend).

Each entry says what the framework does, what the spec says, why, where that is seen (a source
file or a test of this project that reproduces it), and which conformance cases it concerns
(``match``: case properties that must all hold). The conformance suite reads them as known
failures; ``tests/test_deviations.py`` checks that each is still real.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["Deviation", "load"]


@dataclass(frozen=True)
class Deviation:
    id: str
    backend: str
    what: str
    spec: str
    source: str
    match: dict[str, Any]


def load(backend: str) -> list[Deviation]:
    """The deviations recorded for ``backend`` (a built-in name), ``[]`` when none."""
    name = backend.replace("[", "_").replace("]", "") + ".json"
    folder = resources.files("rnn_ref.backends").joinpath("known_deviations")
    path = folder.joinpath(name)
    if not path.is_file():
        return []
    entries = json.loads(path.read_text(encoding="utf-8"))
    required = {"id", "what", "spec", "source", "match"}
    out = []
    for e in entries:
        missing = required - set(e)
        if missing:
            raise ValueError(f"{name}: entry {e.get('id', '?')!r} lacks {sorted(missing)}")
        out.append(Deviation(e["id"], backend, e["what"], e["spec"], e["source"], e["match"]))
    return out
