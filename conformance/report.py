"""Turning runs into a terminal summary, rerun commands and JSON.

Every form names the scope each backend was held to (:func:`rnn_ref._registry.scope_of`) and,
per cell and network piece, how many cases were checked, refused and out of scope
(:func:`scope_lines`, the JSON's ``scope``)."""

from __future__ import annotations

import json
import platform
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from rnn_ref.backends._frameworks import versions
from rnn_ref.backends.devices import cpu
from rnn_ref.conformance.runner import CATEGORIES, SCOPE_STATUSES, CaseResult, RunReport

__all__ = ["ProgressBar", "counted_scopes", "environment_line", "rerun_command", "scope_json",
           "scope_lines", "summary_table", "to_json", "write_json"]


def environment_line(env: dict[str, Any]) -> str:
    """One line: the device and its name, the precision mode and the settings in force."""
    settings = env.get("precision_settings") or {}
    shown = ", ".join(f"{k.rsplit('.', 1)[-1] if k.startswith('torch.backends') else k}="
                      f"{v}" for k, v in settings.items()
                      if k in ("jax_default_matmul_precision", "INFERENCE_PRECISION_HINT",
                               "scan_unroll")
                      or (k == "cudnn_rnn_tf32" and env.get("device") == "cuda"))
    name = env.get("device_name")
    return (f"device {env.get('device', 'not stated')}" + (f" ({name})" if name else "")
            + f", precision {env.get('precision_mode', 'not stated')}"
            + (f" ({shown})" if shown else ""))


class ProgressBar:
    """``[#####.....] 25/50 torch rnn_tanh_...`` on one terminal line (stderr)."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.stream, self.width = stream, width
        self.enabled = stream.isatty()

    def __call__(self, done: int, total: int, label: str) -> None:
        if not self.enabled:
            return
        filled = self.width * done // max(total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {done}/{total} {label[:60]:<60}")
        if done == total:
            self.stream.write("\r" + " " * (self.width + 80) + "\r")
        self.stream.flush()


def _cell(report: RunReport, category: str) -> str:
    rs = [r for r in report.results if r.category == category]
    if not rs:
        return "-"
    counts = {s: sum(r.status == s for r in rs) for s in ("pass", "fail", "known", "xpass")}
    text = f"{counts['pass']} pass"
    for s in ("fail", "known", "xpass"):
        if counts[s]:
            text += f", {counts[s]} {s}"
    ill = sum(r.report is not None and r.report.undetermined > 0 for r in rs)
    if ill:
        text += f" ({ill} ill-conditioned)"
    return text


def summary_table(reports: Sequence[RunReport]) -> str:
    """Backend x category: pass / fail / known failure / unsupported, the cases out of the
    backend's scope, worst error, time; then :func:`scope_lines`."""
    titles = {"forward": "forward", "final_state": "final state", "gradient": "gradient",
              "conversion": "conversion", "must_raise": "unsupported (raised)"}
    header = ["backend", "cases", *(titles[c] for c in CATEGORIES), "out of scope",
              "worst err/tol", "precision", "time"]
    rows = []
    for rep in reports:
        worst = max((r.worst_ratio() for r in rep.results if r.status == "pass"), default=0.0)
        bits = rep.effective_bits()
        rows.append([rep.backend, str(rep.cases)]
                    + [_cell(rep, c) for c in CATEGORIES]
                    + [str(len(rep.out_of_scope)) if rep.out_of_scope else "-",
                       f"{worst:.2g}", "-" if bits is None else f"{bits:.1f} bits",
                       f"{rep.seconds:.1f}s"])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*r).rstrip() for r in rows]
    return "\n".join([*lines, "", *scope_lines(reports)])


def counted_scopes(rep: RunReport, status: str) -> str:
    """``"elman 40, lstm 12"``: the cells and pieces with cases of ``status``, each with
    how many; ``"none"`` when there are none."""
    names = rep.scopes_with(status)
    return ", ".join(f"{n} {rep.scopes[n][status]}" for n in names) or "none"


def scope_lines(reports: Sequence[RunReport]) -> list[str]:
    """One line per backend: the scope it was held to, then the cells and network pieces
    whose cases were checked, refused and out of scope (counting each case under every cell
    and piece it uses)::

        scope of tiny-lstm: cells lstm; pieces none (declared)
          checked: lstm 12; refused: none; out of scope: elman 58, gru 6, ...
    """
    lines = []
    for rep in reports:
        what = rep.scope.describe() if rep.scope is not None else "not stated"
        lines.append(f"scope of {rep.backend}: {what}")
        lines.append(f"  checked: {counted_scopes(rep, 'checked')}; refused: "
                     f"{counted_scopes(rep, 'refused')}; out of scope: "
                     f"{counted_scopes(rep, 'out_of_scope')}")
    return lines


def scope_json(rep: RunReport) -> dict[str, Any]:
    """The scope of one run as JSON: ``{"source": "declared", "cells": [...], "pieces":
    [...], "checked": [...], "refused": [...], "out_of_scope": [...], "counts": {name:
    {"checked": n, "refused": n, "out_of_scope": n}}}`` (names in the order of
    :data:`rnn_ref._registry.SCOPE_CELLS` then :data:`~rnn_ref._registry.SCOPE_PIECES`)."""
    from rnn_ref._registry import SCOPE_CELLS, SCOPE_PIECES

    scope = rep.scope
    out: dict[str, Any] = {
        "source": None if scope is None else scope.source,
        "cells": None if scope is None else [c for c in SCOPE_CELLS if c in scope.cells],
        "pieces": None if scope is None else [p for p in SCOPE_PIECES if p in scope.pieces],
    }
    out.update({status: rep.scopes_with(status) for status in SCOPE_STATUSES})
    out["counts"] = rep.scopes
    return out


def rerun_command(backend: str, case: str, *, matrix: str, random: int = 0, seed: int = 0,
                  known_failures: str | None = None) -> str:
    """The ``rnn-ref check`` command that runs exactly the case named ``case`` again on
    ``backend`` as the user named it (a built-in name or ``module:attribute``), for a case of
    ``matrix`` (``"quick"``, ``"full"`` or ``"random"``: a random case is made again from the
    run's ``--random random --seed seed``), with the run's ``--known-failures`` file."""
    if matrix not in ("quick", "full", "random"):
        raise ValueError(f"matrix must be 'quick', 'full' or 'random', got {matrix!r}")
    if matrix == "random" and random < 1:
        raise ValueError(f"the random case {case!r} needs the run's --random count, got "
                         f"{random!r}")
    args = ["rnn-ref", "check", "--backend", backend, "--case", f"^{re.escape(case)}$"]
    if matrix == "random":
        args += ["--random", str(random), "--seed", str(seed)]
    if known_failures is not None:
        args += ["--known-failures", known_failures]
    return shlex.join(args)


def to_json(reports: Sequence[RunReport], *, mode: str,
            matrices: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The run as JSON: ``mode`` names the run; ``matrices`` (``{case name: matrix}``, see
    :func:`rnn_ref.conformance.cases.matrix_labels`) labels each result with its case's
    matrix."""
    found = versions()
    return {
        "rnn_ref": found.pop("rnn-ref"),
        "mode": mode,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "processor": platform.machine(), "cpu": cpu()},
        "versions": found,
        "backends": [
            {"backend": rep.backend, "cases": rep.cases, "seconds": round(rep.seconds, 3),
             "environment": rep.environment, "stopped": rep.stopped,
             "effective_bits": rep.effective_bits(), "scope": scope_json(rep),
             "ok": rep.ok, "results": [_result(r, matrices) for r in rep.results],
             "stale_known_failures": [d.id for d in rep.stale]}
            for rep in reports
        ],
    }


def _result(result: CaseResult, matrices: Mapping[str, str] | None) -> dict[str, Any]:
    out = result.as_dict()
    if matrices is not None:
        out["matrix"] = matrices[result.case]
    return out


def write_json(path: str | Path, reports: Sequence[RunReport], *, mode: str,
               matrices: Mapping[str, str] | None = None) -> None:
    """Write :func:`to_json` to ``path``."""
    Path(path).write_text(json.dumps(to_json(reports, mode=mode, matrices=matrices), indent=1)
                          + "\n", encoding="utf-8")
