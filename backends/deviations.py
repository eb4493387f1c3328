"""Known deviations of the frameworks from the spec, kept as data beside each framework's code
(one JSON file a backend, in its package's ``deviations/`` folder: ``torch/deviations/torch.json``).

Each entry says what the framework does, what the spec says, why, where that is seen (a source
file or a test of this project that reproduces it), and which conformance cases it concerns
(``match``: case properties that must all hold, and optionally ``categories``; ``null`` for an
entry no runtime case can show). The conformance suite reads them as known failures;
``tests/test_deviations.py`` checks that each is still real.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["Deviation", "load", "load_file", "parse"]


@dataclass(frozen=True)
class Deviation:
    id: str
    backend: str
    what: str
    spec: str
    source: str
    match: dict[str, Any] | None  # None: not a runtime case (documentation only)
    #: True for a precision deviation that shows on some matching cases and not others
    #: (TF32: the longer and larger ones); a matching case that passes is then no news
    varies: bool = False


def load(backend: str) -> list[Deviation]:
    """The deviations recorded for ``backend`` (a built-in name), ``[]`` when none."""
    name = backend.replace("[", "_").replace("]", "").replace(",", "_") + ".json"
    package = _package(backend)
    if package is None:
        return []
    path = resources.files(package).joinpath("deviations", name)
    if not path.is_file():
        return []
    return parse(json.loads(path.read_text(encoding="utf-8")), backend, name)


def _package(backend: str) -> str | None:
    """The framework package whose ``deviations/`` folder holds ``backend``'s file (a built-in
    backend's name, or a framework's: ``flax`` runs on the jax backend)."""
    from rnn_ref.backends._frameworks import FRAMEWORKS

    for fw in FRAMEWORKS:
        if backend == fw.name or any(b.name == backend for b in fw.backends):
            return fw.module.rpartition(".")[0]
    return None


def load_file(path: str, backend: str) -> list[Deviation]:
    """A third party's known-failure file, in the same JSON form."""
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from None
    return parse(data, backend, path)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


#: conditions an entry's optional ``when`` may name: the deviation exists only where it holds
CONDITIONS: dict[str, Callable[[], bool]] = {
    # OpenVINO's CPU plugin defaults to bf16 where the CPU computes bf16 natively
    "cpu_bf16": lambda: bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"}),
    # JAX computes float64 only with JAX_ENABLE_X64=1 (keras[jax] refuses float64 without it)
    "jax_x64": lambda: os.environ.get("JAX_ENABLE_X64") == "1",
}


def parse(entries: Any, backend: str, where: str) -> list[Deviation]:
    """Validate a list of entries (``id``, ``what``, ``spec``, ``source``, ``match``, an
    optional ``when`` naming one of :data:`CONDITIONS`, and an optional boolean ``varies``: the
    deviation shows on some matching cases only); an entry whose condition does not hold on
    this machine is left out."""
    if not isinstance(entries, list):
        raise ValueError(f"{where}: expected a JSON list of entries")
    required = {"id", "what", "spec", "source", "match"}
    out = []
    for e in entries:
        if not isinstance(e, dict):
            raise ValueError(f"{where}: every entry must be an object, got {e!r}")
        missing = required - set(e)
        if missing:
            raise ValueError(f"{where}: entry {e.get('id', '?')!r} lacks {sorted(missing)}")
        if e["match"] is not None and not isinstance(e["match"], dict):
            raise ValueError(f"{where}: entry {e['id']!r}: match must be an object or null")
        when = e.get("when")
        if when is not None and when not in CONDITIONS:
            raise ValueError(f"{where}: entry {e['id']!r}: when must be one of "
                             f"{sorted(CONDITIONS)}, got {when!r}")
        if when is not None and not CONDITIONS[when]():
            continue
        varies = e.get("varies", False)
        if not isinstance(varies, bool):
            raise ValueError(f"{where}: entry {e['id']!r}: varies must be true or false, "
                             f"got {varies!r}")
        out.append(Deviation(e["id"], backend, e["what"], e["spec"], e["source"], e["match"],
                             varies))
    return out
