"""The ecosystem table: runtime x feature, each cell ok / deviates (how) / refuses / fails.

Made from conformance runs (``rnn-ref check --markdown PATH``, ``--heatmap PNG``; given a
file with the begin/end markers, such as docs/conformance.md, only the block between them is
replaced), never by hand: a feature's cell sums up every result of the cases that exercise
it (the features are predicates on :class:`~rnn_ref.conformance.cases.Case`). The worst
outcome names the cell:

* ``fails``: a result the suite does not expect (a bug, or an unrecorded deviation);
* ``deviates``: a recorded deviation (its ids say how; ``backends/<framework>/deviations/``);
* ``refuses``: the backend declares the feature unsupported and raises when asked;
* ``ok, refuses some``: the cases it runs pass, and it refuses some others of the feature;
* ``ok``: every result passes;
* ``out of scope``: the backend does not implement it (it declares its scope,
  :func:`rnn_ref._registry.scope_of`), so its cases were not run;
* ``-``: no case of the run exercises it.

The last column is the backend's effective precision (the median of the run, in bits). When a
backend of the run declares its scope (a third party's kernel), a second table names the
scope each backend was held to and the cells and pieces checked, refused and out of scope.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from rnn_ref.backends import deviations
from rnn_ref.backends.deviations import Deviation
from rnn_ref.conformance.cases import Case
from rnn_ref.conformance.runner import CaseResult, RunReport

__all__ = ["BEGIN", "END", "FEATURES", "cells", "check_target", "heatmap", "markdown",
           "write_markdown"]

BEGIN = "<!-- ecosystem table: begin -->"
END = "<!-- ecosystem table: end -->"
_MADE_BY = "<!-- made by rnn-ref check --markdown"


def _per_direction(case: Case) -> bool:
    return any(len(set(layer)) > 1 for layer in case.config.activations)


#: feature -> which cases exercise it
FEATURES: dict[str, Callable[[Case], bool]] = {
    "forward": lambda c: "forward" in c.config.directions,
    "reverse": lambda c: "reverse" in c.config.directions,
    "bidirectional": lambda c: "bidirectional" in c.config.directions,
    "activations per direction": _per_direction,
    "non-tanh activations": lambda c: any(a.name != "tanh" for layer in c.config.activations
                                          for a in layer),
    "clip": lambda c: any(x is not None for x in c.config.clips),
    "lengths": lambda c: c.padding == "lengths",
    "masks with holes": lambda c: c.padding == "mask",
    "length 0": lambda c: c.padding == "zero" or c.t == 0,
    "initial state": lambda c: c.h0,
    "readout": lambda c: c.config.output_size is not None,
    "embedding": lambda c: c.config.vocab_size is not None,
    "mixed stacks": lambda c: len(set(c.config.directions)) > 1,
    "final states, last step": lambda c: c.config.select != "sequence",
    "dense heads, softmax": lambda c: len(c.config.head) > 1 or any(
        d.activation.name in ("softmax", "log_softmax") for d in c.config.head),
    "float64": lambda c: c.dtype == "float64",
    "long (T >= 300)": lambda c: c.t >= 300,
}
_RANK = {"-": 0, "out of scope": 0, "ok": 1, "refuses": 2, "deviates": 3, "fails": 4}


#: what a deviation's ``match`` keys say it is about (``direction`` by its value)
_ABOUT: dict[str, tuple[str, ...]] = {
    "zero_length": ("length 0",), "empty": ("length 0",), "h0": ("initial state",),
    "padding": ("lengths", "masks with holes"), "padded_output": ("lengths", "masks with holes"),
    "dtype": ("float64",), "readout": ("readout",), "gain": ("long (T >= 300)",),
    "reverse_layer": ("reverse",), "clip": ("clip",),
}
_DIRECTIONS = {"forward": "forward", "reverse": "reverse", "bidirectional": "bidirectional"}


def _features_of(deviation: Deviation | None) -> set[str]:
    """The features a recorded deviation is about (all of them when its match says none)."""
    if deviation is None or deviation.match is None:
        return set(FEATURES)
    about: set[str] = set()
    for key, value in deviation.match.items():
        if key == "dtype" and value != "float64":
            return set(FEATURES)  # the precision of everything in that dtype
        if key == "direction" and value in _DIRECTIONS:
            about.add(_DIRECTIONS[value])
        about.update(_ABOUT.get(key, ()))
    return about or set(FEATURES)


def _outcome(feature: str, results: list[CaseResult], known: dict[str, Deviation]) -> str:
    if not results:
        return "-"
    run = [r for r in results if r.status != "out_of_scope"]
    if not run:
        return "out of scope"
    results = run
    if any(r.status == "fail" for r in results):
        return "fails"
    ids = sorted({r.deviation for r in results if r.status == "known" and r.deviation
                  and feature in _features_of(known.get(r.deviation))})
    if ids:
        return "deviates (" + ", ".join(ids) + ")"
    results = [r for r in results if r.status != "known"]  # another feature's deviation
    if not results:
        return "-"
    if any(r.category == "must_raise" for r in results):
        return "refuses" if all(r.category == "must_raise" for r in results) else "ok, refuses some"
    return "ok"


def cells(report: RunReport, cases: Sequence[Case]) -> dict[str, str]:
    """Feature -> outcome for one backend's run over ``cases`` (its recorded deviations are
    read to tell which feature each is about)."""
    by_case: dict[str, list[CaseResult]] = {}
    for r in report.results:
        by_case.setdefault(r.case, []).append(r)
    known = {d.id: d for d in deviations.load(report.backend)}
    out = {}
    for feature, exercises in FEATURES.items():
        results = [r for c in cases if exercises(c) for r in by_case.get(c.name, [])]
        out[feature] = _outcome(feature, results, known)
    bits = report.effective_bits()
    out["precision"] = "-" if bits is None else f"{bits:.1f} bits"
    return out


def markdown(reports: Sequence[RunReport], cases: Sequence[Case], *, mode: str) -> str:
    """The table as Markdown, one row per backend."""
    columns = [*FEATURES, "precision"]
    lines = [f"{_MADE_BY} ({mode} matrix, {len(cases)} cases); do not edit by hand -->",
             "| backend | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for rep in reports:
        row = cells(rep, cases)
        lines.append(f"| {rep.backend} | " + " | ".join(row[c] for c in columns) + " |")
    return "\n".join([*lines, *_scope_table(reports)]) + "\n"


def _scope_table(reports: Sequence[RunReport]) -> list[str]:
    """The scopes the backends were held to, as a second table after a blank line: one row
    per backend, with the cells and pieces checked, refused and out of scope. Only when a
    backend declares its scope (a third party's): the built-in ones are held to every cell
    and piece, and the feature table above already says what each refuses."""
    if all(rep.scope is None or rep.scope.source == "built in" for rep in reports):
        return []
    from rnn_ref.conformance.report import counted_scopes

    lines = ["", "| backend | held to | checked | refused | out of scope |",
             "|---|---|---|---|---|"]
    for rep in reports:
        what = "not stated" if rep.scope is None else rep.scope.describe()
        lines.append(f"| {rep.backend} | {what} | {counted_scopes(rep, 'checked')} | "
                     f"{counted_scopes(rep, 'refused')} | {counted_scopes(rep, 'out_of_scope')} |")
    return lines


def heatmap(reports: Sequence[RunReport], cases: Sequence[Case], path: str | Path) -> Path:
    """The table as a picture (matplotlib, from the ``bench`` extra): green ok, grey refuses,
    orange deviates, red fails."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    features = list(FEATURES)
    grid: list[list[int]] = []
    for rep in reports:
        row = cells(rep, cases)
        grid.append([_RANK[row[f].split(" (")[0].split(",")[0]] for f in features])
    colors = ListedColormap(["#ffffff", "#4caf50", "#9e9e9e", "#ff9800", "#e53935"])
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(features), 1.2 + 0.45 * len(reports)))
    ax.imshow(grid, cmap=colors, vmin=0, vmax=4, aspect="auto")
    ax.set_xticks(range(len(features)), features, rotation=45, ha="right")
    ax.set_yticks(range(len(reports)), [r.backend for r in reports])
    labels = {0: "", 1: "ok", 2: "refuses", 3: "deviates", 4: "FAILS"}
    for i, row_values in enumerate(grid):
        for j, v in enumerate(row_values):
            ax.text(j, i, labels[v], ha="center", va="center", fontsize=7)
    ax.set_title("rnn-ref conformance: runtime x feature")
    target = Path(path)
    fig.savefig(target, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return target


def _has_markers(target: Path) -> bool:
    if not target.is_file():
        return False
    text = target.read_text(encoding="utf-8")
    return BEGIN in text and END in text.split(BEGIN, 1)[1]


def check_target(path: str | Path) -> Path:
    """``path`` if the table may be written there (a new file, a table written before, or a
    file with the markers), else ``ValueError`` saying why: checked before a run."""
    target = Path(path)
    if not target.parent.resolve().is_dir():
        raise ValueError(f"{target}: the folder {target.parent} does not exist")
    if target.exists() and not _has_markers(target):
        old = target.read_text(encoding="utf-8") if target.is_file() else "?"
        if old.strip() and not old.startswith(_MADE_BY):
            raise ValueError(f"{target} exists and has no table markers ({BEGIN} ... {END}); "
                             f"add them where the table goes, or name a new file")
    return target


def write_markdown(path: str | Path, table: str) -> Path:
    """Write ``table`` to ``path``; a file that already holds the :data:`BEGIN` and
    :data:`END` markers (docs/conformance.md) gets only the block between them replaced.
    Written to a temporary file beside it and renamed into place."""
    import os
    import tempfile

    target = Path(path)
    text = table
    if _has_markers(check_target(target)):
        head, rest = target.read_text(encoding="utf-8").split(BEGIN, 1)
        text = f"{head}{BEGIN}\n{table}{END}{rest.split(END, 1)[1]}"
    fd, tmp = tempfile.mkstemp(prefix=".rnn-ref-", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
