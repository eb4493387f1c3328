"""Benchmarks: every backend side by side, against the machine's own matrix-multiply peak.

``rnn-ref bench`` (or ``python benchmarks/harness.py``) runs one worker process per framework
and thread count (``benchmarks/worker.py``), pinned to that many cores, with ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``XLA_FLAGS`` set before the framework is
imported and each framework's own thread setting applied. Per shape and variant it records
the median, min, max and interquartile range of the timed repetitions, the first call
(warm-up and compilation) on its own, GFLOP/s with FLOPs per forward = 2 N T (D + M) M (three
times that for forward + backward), and the fraction of the peak of a 2048 x 2048 float32
matrix product measured in the same process with the same threads.

``--device gpu`` runs one worker on the first GPU instead (``worker.py gpu``): cuDNN in strict
float32, at torch's default (TF32) and in float16, this project's scan at JAX's default
precision and at "highest" (unrolled, :data:`rnn_ref.backends.jax.backend.UNROLL`), and a bare
scan, forward only, timed with CUDA events (torch) or to ``block_until_ready`` (JAX) after a
warm-up, each against the GPU's GEMM peak at its precision measured in the same run. Every
record says its device, the device's name, its precision mode and the settings in force.

Outputs, in ``--out`` (default ``benchmarks/results``): ``bench.json`` (one record per
backend, shape, threads and pass, with the machine, versions and thread settings),
``bench.md`` (a markdown table), ``time_vs_T.png``, ``time_vs_M.png`` and
``peak_fraction.png``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from rnn_ref.backends._frameworks import versions

HERE = Path(__file__).resolve().parent
SHAPES = [(1, 10, 3, 5), (32, 100, 64, 64), (64, 200, 128, 128), (16, 1000, 32, 256),
          (128, 50, 256, 512)]
QUICK_SHAPES = [(1, 10, 3, 5), (32, 100, 64, 64), (64, 200, 128, 128)]
#: the GPU grid (issue 15's shapes: small ones where a scan is launch-bound, large ones where
#: the products dominate)
GPU_SHAPES = [(32, 100, 64, 64), (64, 200, 128, 128), (16, 1000, 32, 256), (128, 50, 256, 512),
              (256, 1000, 512, 1024), (1024, 100, 1024, 2048)]
FRAMEWORKS = ["numpy", "torch", "jax", "keras-tensorflow", "keras-jax", "onnxruntime"]
_IMPORTS = {"numpy": "numpy", "torch": "torch", "jax": "jax", "keras-tensorflow": "tensorflow",
            "keras-jax": "keras", "onnxruntime": "onnxruntime", "gpu": "torch"}


def _env(framework: str, threads: int) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "2",
           "XLA_FLAGS": (f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                         f"intra_op_parallelism_threads={threads}"),
           "PYTHONWARNINGS": "ignore"}
    if framework.startswith("keras-"):
        env["KERAS_BACKEND"] = framework.split("-", 1)[1]
    return env


def thread_settings(threads: int) -> dict[str, Any]:
    """What a worker with ``threads`` threads is given: its environment's thread variables,
    the cores it is pinned to, and each framework's own setting (applied in worker.py)."""
    env = _env("numpy", threads)
    cores = sorted(os.sched_getaffinity(0))[:threads] if hasattr(os, "sched_getaffinity") \
        else None
    return {**{k: env[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                   "MKL_NUM_THREADS", "XLA_FLAGS")},
            "pinned_cores": cores,
            "torch.set_num_threads": threads,
            "tf intra_op / inter_op": [threads, 1],
            "onnxruntime intra_op / inter_op": [threads, 1]}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    from rnn_ref.backends.devices import cpu as cpu_info

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "cpu_numeric_flags": cpu_info()["numeric_flags"],
            "versions": versions()}


def import_seconds(runs: int = 5) -> float:
    """Median wall time of ``import rnn_ref`` in ``runs`` fresh interpreters."""
    code = "import time; t = time.perf_counter(); import rnn_ref; print(time.perf_counter() - t)"
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  check=True).stdout) for _ in range(runs)]
    return sorted(times)[runs // 2]


def gpu_refusal() -> str | None:
    """Why ``--device gpu`` cannot run here (neither torch nor JAX sees a GPU), else
    ``None``; asked in a subprocess, so that this process imports no framework."""
    code = ("import sys\n"
            "why = []\n"
            "try:\n"
            "    import torch\n"
            "    if torch.cuda.is_available(): sys.exit(0)\n"
            "    why.append(f'torch {torch.__version__} finds no CUDA device')\n"
            "except ImportError: why.append('torch is not installed')\n"
            "try:\n"
            "    import jax\n"
            "    try: jax.devices('gpu'); sys.exit(0)\n"
            "    except RuntimeError: why.append(f'jax {jax.__version__} has no GPU platform')\n"
            "except ImportError: why.append('jax is not installed')\n"
            "print('; '.join(why))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if proc.returncode == 0 and not proc.stdout.strip():
        return None
    lines = (proc.stdout.strip() or proc.stderr.strip() or "no answer").splitlines()
    return f"asked for a GPU, but {lines[-1]}; available: cpu"


def check_seconds() -> float | None:
    """Wall time of ``rnn-ref check --backend jax`` (the quick matrix) in a fresh process,
    ``None`` when jax is not installed or the check fails."""
    import importlib.util

    if importlib.util.find_spec("jax") is None:
        return None
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "rnn_ref.cli", "check", "--backend", "jax",
                           "--no-progress"], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return time.perf_counter() - start if proc.returncode == 0 else None


def _not_installed(framework: str, k: int, shapes: Sequence[tuple[int, int, int, int]]
                   ) -> list[dict[str, Any]]:
    """A skipped record per variant of ``framework``, shape and pass: its package is not
    installed."""
    from worker import FRAMEWORK_VARIANTS, flops

    records = []
    for variant in FRAMEWORK_VARIANTS[framework]:
        for shape in shapes:
            for pass_ in ("forward", "forward_backward"):
                records.append({"backend": variant, "shape": list(shape), "threads": k,
                                "pass": pass_, "status": "skipped",
                                "reason": f"{_IMPORTS[framework]} is not installed",
                                "flops": flops(*shape)})
    return records


def _run_worker(framework: str, k: int, shapes: Sequence[tuple[int, int, int, int]],
                repeats: int, peaks: dict[int, float], gpu_peaks: dict[str, float]
                ) -> list[dict[str, Any]]:
    """Run worker.py for ``framework`` on ``k`` threads: its result records, then an error
    record if it failed; the matmul peak it measured goes into ``peaks`` (the first per
    thread count is kept), the GPU's per precision into ``gpu_peaks``."""
    from worker import TRAINS

    records = []
    cmd = [sys.executable, str(HERE / "worker.py"), framework, "--threads", str(k),
           "--repeats", str(repeats), "--shapes", *(",".join(map(str, s)) for s in shapes)]
    proc = subprocess.run(cmd, env=_env(framework, k), capture_output=True, text=True)
    got = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    for rec in got:
        kind = rec.pop("kind")
        if kind == "peak":
            peaks.setdefault(rec["threads"], rec["gflops"])
        elif kind == "gpu_peaks":
            gpu_peaks.update(rec["gflops"])
        else:
            if rec["backend"] not in TRAINS and rec["pass"] == "forward_backward":
                rec["reason"] = "not measured: inference only"
            records.append(rec)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        records.append({"backend": framework, "threads": k, "pass": "forward",
                        "status": "error", "reason": f"the worker failed: {last}"})
    return records


def run(*, quick: bool, threads: Sequence[int], repeats: int, out: Path,
        frameworks: Sequence[str] = FRAMEWORKS, progress: bool = True,
        shapes: Sequence[tuple[int, int, int, int]] | None = None,
        time_check: bool = False) -> dict[str, Any]:
    """Run every framework x thread count; write every output; return the JSON document.

    ``shapes`` replaces the grid (``SHAPES``, or ``QUICK_SHAPES`` with ``quick``; with the
    ``gpu`` framework, ``GPU_SHAPES``, its first three with ``quick``). ``time_check`` also
    times ``rnn-ref check --backend jax`` (:func:`check_seconds`).
    """
    import importlib.util

    if shapes is None and list(frameworks) == ["gpu"]:
        shapes = GPU_SHAPES[:3] if quick else GPU_SHAPES
    elif shapes is None:
        shapes = QUICK_SHAPES if quick else SHAPES
    records: list[dict[str, Any]] = []
    peaks: dict[int, float] = {}
    gpu_peaks: dict[str, float] = {}
    jobs = [(f, t) for t in threads for f in frameworks]
    start = time.perf_counter()
    for i, (framework, k) in enumerate(jobs):
        if progress:
            bar = "#" * (20 * i // len(jobs)) + "." * (20 - 20 * i // len(jobs))
            print(f"\r[{bar}] {framework}, {k} thread(s)            ", end="", file=sys.stderr,
                  flush=True)
        if importlib.util.find_spec(_IMPORTS[framework]) is None:
            records += _not_installed(framework, k, shapes)
        else:
            records += _run_worker(framework, k, shapes, repeats, peaks, gpu_peaks)
    if progress:
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    doc = {"machine": machine(), "mode": "quick" if quick else "full", "repeats": repeats,
           "threads": list(threads), "matmul_peak_gflops": {str(k): v for k, v in peaks.items()},
           "gpu_matmul_peak_gflops": gpu_peaks,
           "device": "gpu" if list(frameworks) == ["gpu"] else "cpu",
           "thread_settings": {str(k): thread_settings(k) for k in threads},
           "import_seconds": import_seconds(),
           "check_seconds": check_seconds() if time_check else None,
           "seconds": round(time.perf_counter() - start, 1), "records": records}
    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / "bench.json", json.dumps(doc, indent=1) + "\n")
    write_outputs(doc, out)
    return doc


def write_outputs(doc: dict[str, Any], out: Path) -> None:
    """bench.md (every row), summary.md (forward, fewest threads), and the plots."""
    _write_text(out / "bench.md", markdown(doc))
    _write_text(out / "summary.md", summary(doc))
    plots(doc, out)


def summary(doc: dict[str, Any]) -> str:
    """Forward, float32 (float64 for numpy-f64), fewest threads: median ms (% of peak)."""
    k = min(doc["threads"])
    recs = [r for r in _ok(doc) if r["pass"] == "forward" and r["threads"] == k]
    shapes = sorted({tuple(r["shape"]) for r in recs}, key=lambda s: s[0] * s[1] * s[3])
    backends = sorted({r["backend"] for r in recs},
                      key=lambda b: min(r["median_ms"] for r in recs if r["backend"] == b
                                        and tuple(r["shape"]) == shapes[-1]) if any(
                          r["backend"] == b and tuple(r["shape"]) == shapes[-1] for r in recs)
                      else 1e9)
    head = ["backend"] + [f"({n}, {t}, {d}, {m})" for n, t, d, m in shapes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in backends:
        cells = []
        for s in shapes:
            r = next((r for r in recs if r["backend"] == b and tuple(r["shape"]) == s), None)
            cells.append("-" if r is None else
                         f"{r['median_ms']:.3g} ms ({100 * r['peak_fraction']:.0f}%)")
        lines.append("| " + " | ".join([b, *cells]) + " |")
    m = doc["machine"]
    peak = doc["matmul_peak_gflops"].get(str(k))
    gpu = doc.get("gpu_matmul_peak_gflops") or {}
    of_peak = (f"percent of the float32 matmul peak, "
               f"{'not measured' if peak is None else f'{peak:.1f} GFLOP/s'}") if not gpu else (
        "percent of the GPU's GEMM peak at the variant's precision, GFLOP/s: "
        + ", ".join(f"{p} {v:.0f}" for p, v in gpu.items()))
    gpu_name = next((r.get("device_name") for r in recs if r.get("device") != "cpu"), None)
    return (f"Forward pass, {k} thread, median of {doc['repeats']} ({of_peak}), on "
            + (f"{gpu_name} with " if gpu_name else "") + f"{m['cpu']}, "
            f"{m['cores']} cores, Python {m['python']}.\n\n" + "\n".join(lines) + "\n\n"
            + _md_table(["target", "shape", "measured", "met"], ratios(doc)))


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


#: the shapes at which issue 6 sets targets for this project's own code
TARGET_SHAPES = {"jax": [(64, 200, 128, 128), (16, 1000, 32, 256)],
                 "larger": [(32, 100, 64, 64), (64, 200, 128, 128), (16, 1000, 32, 256),
                            (128, 50, 256, 512)],
                 # issue 15: the GPU's small shapes, where a scan is bound by kernel launches
                 "gpu": [(32, 100, 64, 64), (64, 200, 128, 128), (16, 1000, 32, 256)]}
#: the other frameworks' forward passes on the CPU: the jax backend's peers
PEERS = ("numpy", "torch", "keras[tensorflow]-xla", "keras[tensorflow]-predict", "keras[jax]",
         "onnxruntime")

_Rows = list[list[str]]


def _by_key(doc: dict[str, Any], pass_: str) -> dict[tuple[str, tuple[int, ...]], Any]:
    """Records of ``pass_`` at the fewest threads, by (backend, shape)."""
    k = min(doc["threads"])
    return {(r["backend"], tuple(r["shape"])): r for r in _ok(doc)
            if r["pass"] == pass_ and r["threads"] == k}


def _ratio_row(rows: _Rows, ms: dict[tuple[str, tuple[int, ...]], Any], target: str,
               shape: tuple[int, ...], a: str, b: str | None, fmt: str,
               ok: Callable[[float], bool]) -> None:
    """A row comparing ``a``'s median to ``b``'s (``b=None``: ``a``'s peak fraction)."""
    ra, rb = ms.get((a, shape)), ms.get((b, shape)) if b else None
    if ra is None or (b is not None and rb is None):
        rows.append([target, str(shape), "-", "not measured"])
        return
    value = ra["peak_fraction"] if b is None else ra["median_ms"] / rb["median_ms"]
    rows.append([target, str(shape), fmt.format(value), "yes" if ok(value) else "no"])


def _peer_rows(doc: dict[str, Any]) -> _Rows:
    """Issue 15's CPU targets for the jax backend: forward at least as fast as the best peer,
    forward plus backward at least as fast as keras[jax]."""
    rows: _Rows = []
    fwd, both = _by_key(doc, "forward"), _by_key(doc, "forward_backward")
    for s in TARGET_SHAPES["jax"]:
        peers = [(fwd[(p, s)]["median_ms"], p) for p in PEERS if (p, s) in fwd]
        if ("jax", s) not in fwd or not peers:
            rows.append(["jax / best peer <= 1 (forward)", str(s), "-", "not measured"])
            continue
        best_ms, best = min(peers)
        v = fwd[("jax", s)]["median_ms"] / best_ms
        rows.append(["jax / best peer <= 1 (forward)", str(s), f"{v:.3f} ({best})",
                     "yes" if v <= 1 else "no"])
    for s in TARGET_SHAPES["larger"][:3]:
        _ratio_row(rows, both, "jax / keras[jax] <= 1 (forward + backward)", s, "jax",
                   "keras[jax]", "{:.3f}", lambda v: v <= 1)
    return rows


def _gpu_rows(doc: dict[str, Any]) -> _Rows:
    """Issue 15's GPU target: the jax backend within 3 times cuDNN at the same precision on
    the small shapes (only when the run has GPU records)."""
    fwd = _by_key(doc, "forward")
    if not any(b.startswith(("torch[cuda", "jax[gpu")) for b, _ in fwd):
        return []
    rows: _Rows = []
    for ours, theirs in (("jax[gpu,fp32]", "torch[cuda,fp32]"), ("jax[gpu]", "torch[cuda]")):
        for s in TARGET_SHAPES["gpu"]:
            _ratio_row(rows, fwd, f"{ours} / {theirs} <= 3", s, ours, theirs, "{:.2f}",
                       lambda v: v <= 3)
    return rows


def ratios(doc: dict[str, Any]) -> list[list[str]]:
    """The speed targets for our own code, from one run: float32 (forward unless a row says
    otherwise), fewest threads.

    Rows of ``[target, shape, measured, met]``, ``met`` being ``yes``, ``no`` or ``not
    measured`` (a missing framework, or a shape outside a quick run).
    """
    if doc.get("device") == "gpu":
        return _gpu_rows(doc)
    ms = _by_key(doc, "forward")
    rows: _Rows = []
    for s in TARGET_SHAPES["jax"]:
        _ratio_row(rows, ms, "jax / jax-bare <= 1.05", s, "jax", "jax-bare", "{:.3f}",
                   lambda v: v <= 1.05)
    for s in TARGET_SHAPES["jax"]:
        _ratio_row(rows, ms, "jax >= 65% of peak", s, "jax", None, "{:.0%}",
                   lambda v: v >= 0.65)
    rows += _peer_rows(doc)
    for s in TARGET_SHAPES["larger"]:
        # the pair timed interleaved in one process when there is one (see worker.py)
        beside = "numpy-beside-torch" if ("numpy-beside-torch", s) in ms else "numpy"
        _ratio_row(rows, ms, f"torch / {beside} > 1 (oracle faster)", s, "torch", beside,
                   "{:.3f}", lambda v: v > 1)
    for s in TARGET_SHAPES["larger"]:
        _ratio_row(rows, ms, "numpy-f64 / numpy <= 2.5", s, "numpy-f64", "numpy", "{:.2f}",
                   lambda v: v <= 2.5)
    rows += _gpu_rows(doc)
    if "import_seconds" in doc:
        v = doc["import_seconds"]
        rows.append(["import rnn_ref < 0.3 s", "-", f"{v:.3f} s", "yes" if v < 0.3 else "no"])
    if doc.get("check_seconds") is not None:
        v = doc["check_seconds"]
        rows.append(["rnn-ref check --backend jax (quick) < 30 s", "-", f"{v:.1f} s",
                     "yes" if v < 30 else "no"])
    return rows


def _ok(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in doc["records"] if r.get("status") == "ok"]


def table(doc: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in sorted(_ok(doc), key=lambda r: (r["threads"], r["pass"], r["shape"][2:],
                                             r["shape"], r["median_ms"])):
        n, t, d, m = r["shape"]
        rows.append([r["backend"], f"({n}, {t}, {d}, {m})", str(r["threads"]), r["pass"],
                     f"{r['median_ms']:.3g}", f"{r['min_ms']:.3g}-{r['max_ms']:.3g}",
                     f"{r['compile_ms']:.3g}", f"{r['gflops']:.3g}",
                     f"{100 * r['peak_fraction']:.0f}%"])
    return rows


HEADER = ["backend", "(N, T, D, M)", "threads", "pass", "median ms", "min-max ms",
          "first call ms", "GFLOP/s", "of peak"]


def _aligned(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header), "  ".join("-" * w for w in widths)] + [fmt.format(*r)
                                                                         for r in rows]


def terminal(doc: dict[str, Any]) -> str:
    lines = _aligned(HEADER, table(doc))
    skipped = sorted({(r["backend"], r.get("reason", "")) for r in doc["records"]
                      if r.get("status") != "ok" and r.get("pass") == "forward"})
    lines += [f"skipped {b}: {why}" for b, why in skipped]
    lines += ["", "Targets for this project's own code (forward, float32, fewest threads):"]
    lines += _aligned(["target", "shape", "measured", "met"], ratios(doc))
    return "\n".join(lines)


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    peaks = ", ".join(f"{k} thread(s) {v:.1f}" for k, v in doc["matmul_peak_gflops"].items())
    head = (f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; "
            f"float32 matmul peak (GFLOP/s): {peaks}; {doc['mode']} run, median of "
            f"{doc['repeats']}.\n\n")
    return head + _md_table(HEADER, table(doc))


def plots(doc: dict[str, Any], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    recs = [r for r in _ok(doc) if r["pass"] == "forward" and r["threads"] == min(doc["threads"])]
    backends = sorted({r["backend"] for r in recs})
    for axis, index, name in (("T", 1, "time_vs_T.png"), ("M", 3, "time_vs_M.png")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for b in backends:
            pts = sorted((r["shape"][index], r["median_ms"]) for r in recs if r["backend"] == b)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=b)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"{axis} (shapes of the grid)")
        ax.set_ylabel("forward, median ms")
        ax.set_title(f"Forward time against {axis}, float32, {min(doc['threads'])} thread(s)")
        if backends:
            ax.legend(fontsize=7)
        fig.tight_layout()
        _replace(out / name, partial(fig.savefig, dpi=90, format="png"))
        plt.close(fig)
    shapes = sorted({tuple(r["shape"]) for r in recs})
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(len(backends), 1)
    for i, b in enumerate(backends):
        vals = [next((100 * r["peak_fraction"] for r in recs
                      if r["backend"] == b and tuple(r["shape"]) == s), 0.0) for s in shapes]
        ax.bar([j + i * width for j in range(len(shapes))], vals, width, label=b)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(shapes))],
                  [str(s) for s in shapes], fontsize=7)
    ax.set_ylabel("% of float32 matmul peak")
    ax.set_title(f"Forward, {min(doc['threads'])} thread(s)")
    if backends:
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    _replace(out / "peak_fraction.png", partial(fig.savefig, dpi=90, format="png"))
    plt.close(fig)


OUTPUTS = ("bench.json", "bench.md", "summary.md", "time_vs_T.png", "time_vs_M.png",
           "peak_fraction.png")


def _is_bench_json(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and {"machine", "records"} <= doc.keys()


def refusal(out: Path, json_copy: Path | None) -> str | None:
    """Why a run may not write to ``out`` (and copy its JSON to ``json_copy``), or ``None``.

    A run writes only into a new or empty folder or an earlier run's (one with its
    ``bench.json``), where it replaces only :data:`OUTPUTS`: a folder holding anything else
    (hidden files aside) without an earlier run's ``bench.json`` is refused, and
    ``json_copy`` may replace only an earlier run's JSON. Checked before the run, so that
    no minutes are spent first.
    """
    if out.exists() and not out.is_dir():
        return f"--out: {out} exists and is not a folder"
    present = [n for n in OUTPUTS if (out / n).exists()]
    if present and not _is_bench_json(out / "bench.json"):
        return (f"--out: {out} holds {present[0]} but no bench.json of an earlier run; "
                f"refusing to overwrite it (give a new or empty folder)")
    others = sorted(n for n in (os.listdir(out) if out.is_dir() else [])
                    if n not in OUTPUTS and not n.startswith("."))
    if others and not _is_bench_json(out / "bench.json"):
        return (f"--out: {out} holds {others[0]}" + (f" and {len(others) - 1} other files"
                                                      if len(others) > 1 else "")
                + " and no bench.json of an earlier run; refusing to write among other files "
                "(give a new or empty folder)")
    if json_copy is not None:
        if json_copy.is_dir():
            return f"--json: {json_copy} is a folder; give a file path"
        if not json_copy.parent.is_dir():
            return f"--json: the folder {json_copy.parent} does not exist"
        if json_copy.exists() and not _is_bench_json(json_copy):
            return (f"--json: {json_copy} exists and is not an earlier run's JSON; refusing to "
                    f"overwrite it")
    return None


def _replace(path: Path, write: Any) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it onto ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_text(path: Path, text: str) -> None:
    _replace(path, lambda tmp: tmp.write_text(text))


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Benchmark every backend side by side.")
    parser.add_argument("--quick", action="store_true",
                        help=f"shapes {QUICK_SHAPES}, 1 thread (default: every shape, 1 and 2)")
    parser.add_argument("--threads", type=int, nargs="+")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--framework", action="append", choices=FRAMEWORKS)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                        help="gpu: cuDNN (fp32, TF32, fp16), this project's scan (JAX default "
                        "precision and highest) and a bare scan on the first GPU, timed with "
                        "device events, against the GPU's GEMM peak per precision")
    parser.add_argument("--no-check-time", action="store_true",
                        help="do not time `rnn-ref check --backend jax` (a target)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--json", type=Path, help="also copy bench.json here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    for k in args.threads or []:
        if not 1 <= k <= cores:
            parser.error(f"--threads: each count must be from 1 to {cores} (the cores this "
                         f"process may use), got {k}")
    threads = args.threads or ([1] if args.quick else [k for k in (1, 2) if k <= cores])
    why = refusal(args.out, args.json)
    if why:
        parser.error(why)
    if args.device == "gpu" and args.framework:
        parser.error("--framework applies to the CPU; --device gpu runs torch and jax on the GPU")
    if args.device == "gpu" and (why := gpu_refusal()) is not None:
        parser.error(f"--device gpu: {why}")
    gpu = args.device == "gpu"
    doc = run(quick=args.quick, threads=[1] if gpu else threads, repeats=args.repeats,
              out=args.out, frameworks=["gpu"] if gpu else (args.framework or FRAMEWORKS),
              progress=sys.stderr.isatty(), time_check=not (gpu or args.no_check_time))
    print(terminal(doc))
    print(f"\nwrote {args.out}/bench.json, bench.md, summary.md, time_vs_T.png, "
          f"time_vs_M.png, peak_fraction.png ({doc['seconds']} s)")
    if args.json:
        _write_text(args.json, json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
