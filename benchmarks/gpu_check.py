"""The prepared GPU check: conformance and benchmark of torch and JAX on a GPU, in bounded time.

    PYTHONPATH=. python benchmarks/gpu_check.py --out DIR [--budget-s 270] [--random 24]

From a checkout's root, on a machine with the frameworks' own CUDA builds (torch, JAX) and
NumPy; nothing else is needed (no pytest, hypothesis, keras, onnx, flax or mpmath; rnn-ref
need not be installed: ``rnn_ref.backends`` and ``rnn_ref.conformance`` are mapped to this
checkout's folders when no installed copy provides them). It runs, within ``--budget-s``:

1. the conformance suite (the quick matrix plus ``--random`` sampled cases; forward, final
   state and refusals, no gradients) on ``torch[cuda]`` (torch's default, TF32 for cuDNN's
   RNN), ``torch[cuda,fp32]``, ``jax[gpu]`` (JAX's default matmul precision) and
   ``jax[gpu,fp32]`` ("highest"), each with its known deviations; a backend's share of the
   budget ends its run early (the report says how many cases were left);
2. the GPU benchmark (``benchmarks/worker.py``'s GPU variants: cuDNN fp32, TF32 and fp16,
   this project's scan at both precisions, a bare scan; forward, CUDA events or
   ``block_until_ready`` after a warm-up) over issue 15's shapes while time is left, and the
   GPU's GEMM peak per precision.

It writes ``conformance.json`` (``rnn-ref check --json``'s form), ``bench.json`` (``rnn-ref
bench``'s form) with ``bench.md`` and ``summary.md``, and ``gpu_check.json`` (what ran, the
devices and precision settings, the summary rows), and prints a short summary. Without a GPU
it writes ``gpu_check.json`` saying so and exits 0; ``--cpu`` then runs the same pipeline on
the CPU backends (``torch``, ``jax``), small and fast, to test the script.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GPU_BACKENDS = ["torch[cuda]", "torch[cuda,fp32]", "jax[gpu]", "jax[gpu,fp32]"]
CPU_BACKENDS = ["torch", "jax"]


class _Checkout(importlib.abc.MetaPathFinder):
    """``rnn_ref.backends`` and ``rnn_ref.conformance`` from this checkout's ``backends/`` and
    ``conformance/`` (what the package's setuptools mapping does when it is installed)."""

    MAP = {"rnn_ref.backends": ROOT / "backends", "rnn_ref.conformance": ROOT / "conformance"}

    def find_spec(self, fullname: str, path: Any, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
        folder = self.MAP.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)])


def _map_checkout() -> None:
    """Import this checkout's ``rnn_ref`` with its mapped packages."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    sys.meta_path.insert(0, _Checkout())


def _gpus() -> dict[str, Any]:
    """Which frameworks see a GPU here: ``{"torch": name or why not, "jax": ...}`` and
    ``any``."""
    found: dict[str, Any] = {}
    try:
        import torch

        found["torch"] = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                          else f"no CUDA device (torch {torch.__version__})")
        found["torch_ok"] = torch.cuda.is_available()
    except ImportError as exc:
        found["torch"], found["torch_ok"] = f"not installed ({exc})", False
    try:
        import jax

        try:
            found["jax"] = str(jax.devices("gpu")[0].device_kind)
            found["jax_ok"] = True
        except RuntimeError:
            found["jax"], found["jax_ok"] = f"no GPU platform (jax {jax.__version__})", False
    except ImportError as exc:
        found["jax"], found["jax_ok"] = f"not installed ({exc})", False
    found["any"] = found["torch_ok"] or found["jax_ok"]
    return found


class _ForwardOnly:
    """A backend's forward pass, refusals and environment, without its gradient and round
    trip (the GPU check's time goes to values; ``rnn-ref check`` runs those)."""

    def __init__(self, backend: Any) -> None:
        self._b = backend
        self.name = backend.name
        self.supports = backend.supports
        self.forward = backend.forward
        self.environment = backend.environment


def conformance(names: list[str], random: int, budget_s: float) -> list[Any]:
    """Run the quick cases plus ``random`` sampled ones on each backend of ``names``, each
    within its equal share of ``budget_s``; the run reports."""
    from rnn_ref import get_backend
    from rnn_ref.backends import deviations
    from rnn_ref.conformance import cases, runner

    selected = cases.quick_cases() + cases.random_cases(random, 0)
    reports = []
    for i, name in enumerate(names):
        share = budget_s / len(names)
        deadline = time.perf_counter() + share
        try:
            backend = get_backend(name)
        except (ImportError, ValueError) as exc:
            print(f"  {name}: not run: {exc}")
            continue
        rep = runner.run(_ForwardOnly(backend), selected, deviations=deviations.load(name),
                         deadline=deadline)
        reports.append(rep)
        print(f"  {_conformance_line(rep)} ({i + 1}/{len(names)})", flush=True)
    return reports


def _worst(rep: Any, statuses: tuple[str, ...]) -> str:
    """The largest forward or final-state error of ``rep``'s results with ``statuses``, in
    eps of the dtype (``-`` when none)."""
    eps = [r.report.eps_units for r in rep.results if r.status in statuses
           and r.report is not None and r.category in ("forward", "final_state")
           and r.report.eps_units is not None and r.report.eps_units == r.report.eps_units]
    return f"{max(eps):.3g} eps" if eps else "-"


def _conformance_line(rep: Any) -> str:
    """One line: cases, results by status, worst errors, precision, device, time."""
    counts: dict[str, int] = {}
    for r in rep.results:
        counts[r.status] = counts.get(r.status, 0) + 1
    bits = rep.effective_bits()
    env = rep.environment
    return (f"{rep.backend}: {rep.cases} cases, "
            + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
            + f"; worst passing {_worst(rep, ('pass', 'xpass'))}, failing "
            f"{_worst(rep, ('fail', 'known'))}; {'-' if bits is None else f'{bits:.1f}'} bits; "
            f"{env.get('device')} ({env.get('device_name')}), precision "
            f"{env.get('precision_mode')}; {rep.seconds:.0f} s"
            + (f"; {rep.stopped}" if rep.stopped else ""))


def bench(gpu: bool, budget_s: float, repeats: int) -> dict[str, Any]:
    """The benchmark document (``rnn-ref bench``'s form): the GPU variants over
    ``harness.GPU_SHAPES`` while ``budget_s`` lasts, or with ``gpu=False`` the CPU's torch and
    jax at two small shapes."""
    import harness
    import worker

    deadline = time.perf_counter() + budget_s
    shapes = harness.GPU_SHAPES if gpu else [(8, 20, 6, 10), (16, 50, 16, 32)]
    variants = worker.GPU_VARIANTS if gpu else ["torch", "jax", "jax-bare"]
    records: list[dict[str, Any]] = []
    skipped = []
    start = time.perf_counter()
    for shape in shapes:
        if time.perf_counter() > deadline:
            skipped.append(list(shape))
            continue
        records += worker._shape_records(shape, variants, 1, repeats)
        done = records[-1]
        print(f"  {shape}: {time.perf_counter() - start:.0f} s "
              f"({done['backend']} {done.get('median_ms', '-')})", flush=True)
    peaks = worker.gpu_matmul_peaks() if gpu else {"fp32": worker.matmul_peak()}
    worker.with_peaks(records, peaks)
    return {"machine": harness.machine(), "mode": "gpu" if gpu else "cpu (gpu_check --cpu)",
            "device": "gpu" if gpu else "cpu",
            "repeats": repeats, "threads": [1],
            "matmul_peak_gflops": {"1": peaks["fp32"]},
            "gpu_matmul_peak_gflops": peaks if gpu else {},
            "shapes_not_run": skipped, "seconds": round(time.perf_counter() - start, 1),
            "records": records}


def _write(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON files")
    parser.add_argument("--budget-s", type=float, default=270.0,
                        help="seconds for the whole check (default 270)")
    parser.add_argument("--random", type=int, default=24, help="random cases (default 24)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions (default 7)")
    parser.add_argument("--cpu", action="store_true",
                        help="without a GPU, run the pipeline on the CPU backends (a test)")
    args = parser.parse_args(argv)
    if args.budget_s <= 0 or args.random < 0 or args.repeats < 1:
        parser.error(f"--budget-s must be > 0, --random >= 0, --repeats >= 1; got "
                     f"{args.budget_s}, {args.random}, {args.repeats}")
    start = time.perf_counter()
    _map_checkout()
    args.out.mkdir(parents=True, exist_ok=True)
    from rnn_ref.backends import devices

    gpus = _gpus()
    summary: dict[str, Any] = {"gpu": gpus["any"], "gpus": gpus, "cpu": devices.cpu(),
                               "budget_s": args.budget_s}
    if not gpus["any"] and not args.cpu:
        summary["reason"] = (f"no GPU here: torch: {gpus['torch']}; jax: {gpus['jax']}; "
                             f"nothing run (--cpu runs the CPU equivalents)")
        _write(args.out / "gpu_check.json", summary)
        print(f"gpu_check: {summary['reason']}; wrote {args.out / 'gpu_check.json'}")
        return 0
    return _run(args, gpus, summary, start)


def _run(args: argparse.Namespace, gpus: dict[str, Any], summary: dict[str, Any],
         start: float) -> int:
    """Conformance, then the benchmark, in the budget left; write everything; print the
    summary."""
    import harness

    from rnn_ref.conformance import report as report_lib

    gpu = gpus["any"]
    names = ([n for n in GPU_BACKENDS if gpus["torch_ok" if n.startswith("torch") else "jax_ok"]]
             if gpu else CPU_BACKENDS)
    random = args.random if gpu else min(args.random, 2)
    budget = args.budget_s - (time.perf_counter() - start)
    print(f"gpu_check: conformance of {', '.join(names)} (quick + {random} random), "
          f"{0.5 * budget:.0f} s", flush=True)
    reports = conformance(names, random, 0.5 * budget)
    report_lib.write_json(args.out / "conformance.json", reports,
                          mode=f"quick + {random} random (forward, final state, refusals)")
    left = args.budget_s - (time.perf_counter() - start) - 15  # the peaks and the writing
    print(f"gpu_check: benchmark, {max(left, 0):.0f} s", flush=True)
    doc = bench(gpu, max(left, 1.0), args.repeats)
    _write(args.out / "bench.json", doc)
    (args.out / "bench.md").write_text(harness.markdown(doc), encoding="utf-8")
    (args.out / "summary.md").write_text(harness.summary(doc), encoding="utf-8")
    summary["conformance"] = [_conformance_line(r) for r in reports]
    summary["targets"] = harness.ratios(doc)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    _write(args.out / "gpu_check.json", summary)
    print(harness.summary(doc))
    print(f"gpu_check: {summary['seconds']} s; wrote conformance.json, bench.json, bench.md, "
          f"summary.md, gpu_check.json to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
