"""The ``rnn-ref`` command line.

Every subcommand imports its frameworks only when it runs; ``rnn-ref --help`` and
``rnn-ref info`` import none. Exit status: 0 success, 1 a check or verification failed,
2 bad usage or an unreadable input.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import rnn_ref
from rnn_ref._registry import BACKENDS

__all__ = ["main"]

FRAMEWORKS = ("numpy", "torch", "tensorflow-cpu", "keras", "jax", "jaxlib", "flax", "onnx",
              "onnxruntime", "safetensors", "h5py")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), line, *(fmt.format(*map(str, r)) for r in rows)])


def cmd_info(args: argparse.Namespace) -> int:
    """Versions and which backends can run here, without importing any framework."""
    print(f"rnn-ref {rnn_ref.__version__} on Python {platform.python_version()} "
          f"({platform.machine()}, {platform.system()})")
    print()
    print(_table([(d, _version(d)) for d in FRAMEWORKS], ("package", "version")))
    print()
    rows = []
    for name, spec in BACKENDS.items():
        missing = spec.missing()
        rows.append((name, "yes" if not missing else f"no: {', '.join(missing)} missing"))
    print(_table(rows, ("backend", "can run here")))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The tutorials' model, Input -> SimpleRNN(5) -> Dense(2) on (N, T, D) = (1, 10, 3)."""
    from rnn_ref.conformance.compare import compare, tolerance

    cfg = rnn_ref.RNNConfig(input_size=3, hidden_size=5, output_size=2)
    params = rnn_ref.init(cfg, seed=args.seed, scheme="keras", dtype=np.float32)
    x = np.random.default_rng(args.seed).standard_normal((1, 10, 3)).astype(np.float32)
    print("rnn-ref demo: the tutorials' Elman network, SimpleRNN(5) -> Dense(2) on (1, 10, 3)")
    print(f"parameters: {cfg.num_parameters('keras')} counted as Keras does (one bias), "
          f"{cfg.num_parameters('torch')} as torch does (two biases)")
    oracle = rnn_ref.forward(params, x)
    steps = x.shape[1]
    rows: list[tuple[str, str, str]] = []
    failed = False

    def check(label: str, actual: Any, expected: Any, dtype: str) -> None:
        nonlocal failed
        tol = tolerance(dtype, steps, [cfg.activation_of(0, 0)], scale=np.abs(expected).max())
        rep = compare(actual, expected, tol)
        failed |= not rep.passed
        rows.append((label, f"{rep.max_abs:.2e}", "ok" if rep.passed else "FAIL " + rep.problem))

    # 1. The manual check of the tutorials: h_t = tanh(x_t W_x + h_{t-1} W_h + b), y = h W_y + b_y.
    cell, ro = params.layers[0][0], params.readout
    if ro is None or oracle.y is None:
        raise RuntimeError("the demo's config has a readout; params without one is a bug")
    w_x, w_h, b = (a.astype(np.float64) for a in (cell.w_x, cell.w_h, cell.b_x + cell.b_h))
    h = np.zeros(5)
    for t in range(steps):
        h = np.tanh(x[0, t].astype(np.float64) @ w_x + h @ w_h + b)
    y_last = h @ ro.w.astype(np.float64) + ro.b.astype(np.float64)
    check("manual loop (tutorial), last y", y_last, oracle.y[0, -1], "float64")
    # 2. The clear reference loop against the fast path.
    loop = rnn_ref.forward_loop(params, x)
    check("clear loop vs fast path, y", loop.y, oracle.y, "float64")
    # 3. Every backend that can run here, in float32, against the float64 oracle.
    for name in rnn_ref.available_backends():
        res = rnn_ref.get_backend(name).forward(params, x)
        check(f"backend {name} (float32), outputs", np.asarray(res.outputs), oracle.outputs,
              "float32")
    # 4. The canonical file, round trip.
    with tempfile.TemporaryDirectory() as tmp:
        path = rnn_ref.save(params, Path(tmp) / "tutorial.npz")
        back = rnn_ref.load(path)
        same = back == params
        failed |= not same
        rows.append(("canonical file round trip", "0" if same else "-",
                     "ok (bit-exact)" if same else "FAIL"))
    print()
    print(_table(rows, ("check", "max abs err", "result")))
    print()
    print("y at the last step:", np.array2string(oracle.y[0, -1], precision=6))
    return 1 if failed else 0


def cmd_check(args: argparse.Namespace) -> int:
    """Run the conformance suite on backends; exit 1 on any failure."""
    import re

    from rnn_ref.backends import deviations
    from rnn_ref.conformance import cases as case_lib
    from rnn_ref.conformance import report as report_lib
    from rnn_ref.conformance import runner

    names = args.backend or rnn_ref.available_backends()
    mode = "full" if args.full else "quick"
    selected = case_lib.full_cases() if args.full else case_lib.quick_cases()
    if args.case and not args.full:  # a named case may come from the full matrix
        selected = case_lib.full_cases()
    if args.random:
        selected += case_lib.random_cases(args.random, args.seed)
    if args.case:
        try:
            pattern = re.compile(args.case)
        except re.error as exc:
            print(f"rnn-ref check: --case is not a valid regular expression: {exc}",
                  file=sys.stderr)
            return 2
        selected = [c for c in selected if pattern.search(c.name)]
        if not selected:
            print(f"rnn-ref check: no case matches --case {args.case!r}", file=sys.stderr)
            return 2
    reports = []
    for name in names:
        try:
            backend = rnn_ref.get_backend(name)
        except (ImportError, ValueError, TypeError) as exc:
            print(f"rnn-ref check: backend {name!r}: {exc}", file=sys.stderr)
            return 2
        try:
            known = (deviations.load_file(args.known_failures, backend.name)
                     if args.known_failures else deviations.load(backend.name))
        except (OSError, ValueError) as exc:
            print(f"rnn-ref check: --known-failures: {exc}", file=sys.stderr)
            return 2
        progress = None if args.no_progress else report_lib.ProgressBar()
        print(f"{backend.name}: {len(selected)} {mode} cases", file=sys.stderr)
        reports.append(runner.run(backend, selected, deviations=known,
                                  progress=progress))
    print(report_lib.summary_table(reports))
    failed = False
    for rep in reports:
        for r in rep.results:
            if r.status == "fail":
                failed = True
                rerun = f"rnn-ref check --backend {rep.backend!r} --case '^{r.case}$'"
                if args.random and "_s" in r.case:
                    rerun += f" --random {args.random} --seed {args.seed}"
                print(f"FAIL {rep.backend} {r.case} [{r.category}]: {r.detail}\n"
                      f"     rerun: {rerun}")
            elif r.status == "xpass":
                print(f"XPASS {rep.backend} {r.case} [{r.category}]: passes although known "
                      f"failure {r.deviation!r} matches it; update the known failures")
        for d in rep.stale:
            print(f"STALE {rep.backend}: known failure {d.id!r} matched no case of this run")
    if args.json:
        report_lib.write_json(args.json, reports, mode=mode)
        print(f"wrote {args.json}")
    return 1 if failed else 0


def cmd_bench(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """Run benchmarks/harness.py of this checkout (benchmarks/ is not installed)."""
    folder = Path(rnn_ref.__file__).resolve().parent.parent / "benchmarks"
    if not (folder / "harness.py").is_file():
        print("rnn-ref bench: benchmarks/ is not installed with the package; run it from a "
              "checkout (./dev run rnn-ref bench)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(folder))
    import harness  # type: ignore[import-not-found]

    return int(harness.main(list(rest)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnn-ref",
        description="The framework-agnostic reference for the Elman RNN.",
    )
    parser.add_argument("--version", action="version", version=f"rnn-ref {rnn_ref.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("info", help="versions, and which backends can run here")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("check", help="the conformance suite: backends held to the oracle",
                       description="Run every conformance case each backend declares it "
                       "supports, compare with the oracle, and check that what it declares "
                       "unsupported raises. Exit status 1 on any failure.")
    p.add_argument("--backend", action="append", metavar="NAME",
                   help="a built-in name or a third party's module:attribute (repeatable; "
                   "default: every built-in backend that can run here)")
    p.add_argument("--full", action="store_true", help="the full matrix (default: quick)")
    p.add_argument("--random", type=int, default=0, metavar="N",
                   help="add N randomly sampled configurations")
    p.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    p.add_argument("--case", metavar="REGEX", help="only cases whose name matches")
    p.add_argument("--known-failures", metavar="FILE",
                   help="a JSON list of known failures (default: the built-in ones)")
    p.add_argument("--json", metavar="PATH", help="write every result as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("bench", add_help=False,
                       help="benchmarks: every backend side by side (--quick, --json PATH, "
                       "--threads K..., --repeats R, --framework F, --out DIR; --help)")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("demo", help="the tutorials' model through the oracle and every backend")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and inputs (default 0)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "bench":
        return cmd_bench(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
