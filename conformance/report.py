"""Turning runs into a terminal summary, rerun commands and JSON."""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from rnn_ref.backends._frameworks import versions
from rnn_ref.backends.devices import cpu
from rnn_ref.conformance.runner import CATEGORIES, RunReport

__all__ = ["ProgressBar", "environment_line", "summary_table", "to_json", "write_json"]


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
    """Backend x category: pass / fail / known failure / unsupported, worst error, time."""
    titles = {"forward": "forward", "final_state": "final state", "gradient": "gradient",
              "conversion": "conversion", "must_raise": "unsupported (raised)"}
    header = ["backend", "cases", *(titles[c] for c in CATEGORIES), "worst err/tol",
              "precision", "time"]
    rows = []
    for rep in reports:
        worst = max((r.worst_ratio() for r in rep.results if r.status == "pass"), default=0.0)
        bits = rep.effective_bits()
        rows.append([rep.backend, str(rep.cases)]
                    + [_cell(rep, c) for c in CATEGORIES]
                    + [f"{worst:.2g}", "-" if bits is None else f"{bits:.1f} bits",
                       f"{rep.seconds:.1f}s"])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(lines)


def to_json(reports: Sequence[RunReport], *, mode: str) -> dict[str, Any]:
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
             "effective_bits": rep.effective_bits(),
             "ok": rep.ok, "results": [r.as_dict() for r in rep.results],
             "stale_known_failures": [d.id for d in rep.stale]}
            for rep in reports
        ],
    }


def write_json(path: str | Path, reports: Sequence[RunReport], *, mode: str) -> None:
    Path(path).write_text(json.dumps(to_json(reports, mode=mode), indent=1) + "\n",
                          encoding="utf-8")
