"""The ``rnn-ref`` command line.

Every subcommand imports its frameworks only when it runs; ``rnn-ref --help`` and
``rnn-ref info`` import none. Exit status: 0 success, 1 a check or verification failed,
2 bad usage or an unreadable input, 128 + N ended by signal N (SIGINT, SIGTERM, SIGHUP), its
temporary files removed. Everything printed that comes from a file, and every error line,
passes through :mod:`rnn_ref._text` (escaped, error lines bounded).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import rnn_ref
from rnn_ref._registry import BACKENDS
from rnn_ref._text import error_line, printable
from rnn_ref.backends import _frameworks
from rnn_ref.network import SELECTS

__all__ = ["main"]


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A plain-text table; every cell passes through :func:`printable` (names from files)."""
    rows = [[printable(c) for c in r] for r in rows]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), line, *(fmt.format(*map(str, r)) for r in rows)])


def cmd_info(args: argparse.Namespace) -> int:
    """Versions, which backends can run here and the CPU's numeric flags, without importing
    any framework; with ``--devices``, the devices and precision settings of the torch and
    jax backends (importing them)."""
    print(f"rnn-ref {rnn_ref.__version__} on Python {platform.python_version()} "
          f"({platform.machine()}, {platform.system()})")
    print()
    print(_table([(d, v or "not installed") for d, v in _frameworks.versions().items()
                  if d != "rnn-ref"], ("package", "version")))
    print()
    rows = []
    for name, spec in BACKENDS.items():
        missing = spec.missing()
        rows.append((name, "yes" if not missing else f"no: {', '.join(missing)} missing"))
    print(_table(rows, ("backend", "can run here")))
    from rnn_ref.backends import devices

    info = devices.cpu()
    flags = info["numeric_flags"]
    print(f"\nCPU: {info['model']}; flags that change numerics: "
          f"{'unknown (no /proc/cpuinfo)' if flags is None else ', '.join(flags) or 'none'}")
    if args.devices:
        print()
        print(_table(_device_rows(), ("backend", "device", "precision", "settings in force")))
    else:
        print("GPU backends run only when named; `rnn-ref info --devices` imports torch and "
              "jax to list devices and precision settings")
    return 0


def _device_rows() -> list[tuple[str, str, str, str]]:
    """One row per backend with a device of its own (torch, jax and their GPU variants):
    the device and its name, or why it cannot run here; the precision mode; the settings in
    force while it runs. Imports torch and jax."""
    from rnn_ref.backends import devices

    rows = []
    for name, spec in BACKENDS.items():
        if not name.startswith(("torch", "jax")):
            continue
        if spec.missing():
            rows.append((name, f"{spec.device}: {', '.join(spec.missing())} missing",
                         spec.precision, "-"))
            continue
        try:
            env = devices.describe(rnn_ref.get_backend(name))
        except ValueError as exc:  # no such device here
            rows.append((name, f"{spec.device}: not here ({str(exc).split('; ')[-1]})",
                         spec.precision, "-"))
            continue
        settings = ", ".join(f"{k.replace('torch.backends.', '')}={v}"
                             for k, v in env["precision_settings"].items())
        rows.append((name, f"{env['device']} ({env['device_name']})", env["precision_mode"],
                     settings))
    return rows


class _DemoRows:
    """The demo's table, one ``(check, max abs err, result)`` row per check, and whether any
    check failed."""

    def __init__(self) -> None:
        from rnn_ref.conformance.compare import compare, tolerance

        self._compare, self._tolerance = compare, tolerance
        self.rows: list[tuple[str, str, str]] = []
        self.failed = False

    def check(self, label: str, actual: Any, expected: Any, dtype: str = "float32") -> None:
        """Compare ``actual`` with ``expected`` (the same shape) within ``dtype``'s tolerance
        for 10 tanh steps, scaled by the largest magnitude of ``expected``."""
        tol = self._tolerance(dtype, 10, ["tanh"], scale=float(np.abs(expected).max()))
        rep = self._compare(np.asarray(actual), np.asarray(expected), tol, time_axis=None)
        self.failed |= not rep.passed
        self.rows.append((label, f"{rep.max_abs:.2e}",
                          "ok" if rep.passed else "FAIL " + rep.problem))

    def skip(self, label: str, why: str) -> None:
        """A row for a check that could not run here."""
        self.rows.append((label, "-", f"skipped: {why}"))


def _demo_source(seed: int, x: np.ndarray, rows: _DemoRows) -> tuple[rnn_ref.RNNParams, Any, str]:
    """The demo's parameters (``select="final"``: ``return_sequences=False``), the oracle's
    answer on ``x`` of shape (1, 10, 3) (the readout of the final state, shape (1, 2)) and
    where the weights came from: a seeded Keras model, run
    and checked against the oracle, when keras is installed, else ``rnn_ref.init`` with the
    Keras scheme."""
    import importlib.util

    if importlib.util.find_spec("keras") is not None:
        from rnn_ref.backends.keras.convert import import_keras

        keras = import_keras()
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((None, 3)), keras.layers.SimpleRNN(5),
                                  keras.layers.Dense(2)])
        params = rnn_ref.from_keras(model)
        oracle = rnn_ref.oracle(model)
        want = oracle(x)  # (1, 2): the readout of the final state, what model(x) returns
        rows.check("Keras model (source) vs oracle", keras.ops.convert_to_numpy(model(x)), want)
        return params, want, "Keras"
    params = rnn_ref.init(rnn_ref.RNNConfig(3, 5, output_size=2, select="final"), seed=seed,
                          scheme="keras")
    want = rnn_ref.forward(params, x).y
    rows.skip("Keras model (source)", "keras is not installed; weights from rnn_ref.init")
    return params, want, "rnn_ref.init (Keras scheme)"


def _demo_by_hand(params: rnn_ref.RNNParams, x: np.ndarray, want: Any, rows: _DemoRows) -> None:
    """The tutorials' manual check in float64 on ``x`` of shape (1, 10, 3): h_t = tanh(x_t W_x
    + h_{t-1} W_h + b) with h of shape (5,), y = h_T W_y + b_y against ``want[0]`` of shape
    (2,); then the clear reference loop against the fast path, y of shape (1, 10, 2)."""
    cell, ro = params.elman_cell(0, 0), params.readout
    if ro is None:
        raise RuntimeError("the demo's model has a Dense readout")
    w_x, w_h, b = (a.astype(np.float64) for a in (cell.w_x, cell.w_h, cell.b_x + cell.b_h))
    h = np.zeros(5)
    for t in range(10):
        h = np.tanh(x[0, t].astype(np.float64) @ w_x + h @ w_h + b)
    rows.check("manual loop (tutorial) vs oracle", h @ ro.w.astype(np.float64) + ro.b, want[0],
               "float64")
    rows.check("clear reference loop vs fast path", rnn_ref.forward_loop(params, x).y,
               rnn_ref.forward(params, x).y, "float64")


def _demo_frameworks(params: rnn_ref.RNNParams, x: np.ndarray, want: Any,
                     rows: _DemoRows) -> None:
    """Each installed target framework runs ``params`` on ``x`` of shape (1, 10, 3), its result
    (1, 2) checked against ``want``; then the canonical file's round trip, bit-exact."""
    targets = [("PyTorch nn.RNN + Linear", "torch"), ("ONNX Runtime", "onnxruntime"),
               ("JAX lax.scan", "jax")]
    available = set(rnn_ref.available_backends())
    for label, name in targets:
        if name not in available:
            rows.skip(label, f"{name} is not installed")
            continue
        res = rnn_ref.get_backend(name).forward(params, x)
        rows.check(f"{label} vs oracle", res.y, want)
    with tempfile.TemporaryDirectory() as tmp:
        path = rnn_ref.save(params, Path(tmp) / "tutorial.npz")
        back = rnn_ref.load(path)
        same = back == params
        rows.failed |= not same
        rows.rows.append(("canonical file round trip", "0" if same else "-",
                          "ok (bit-exact)" if same else "FAIL"))


def cmd_demo(args: argparse.Namespace) -> int:
    """The tutorials' model, Input -> SimpleRNN(5) -> Dense(2) on (N, T, D) = (1, 10, 3), built
    in Keras, converted to PyTorch, ONNX, JAX and the canonical file, each run by its own
    framework and checked against the oracle."""
    import warnings

    rows = _DemoRows()
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((1, 10, 3)).astype(np.float32)

    print("rnn-ref demo: the tutorials' Elman network, SimpleRNN(5) -> Dense(2) on (1, 10, 3)")
    params, want, source = _demo_source(args.seed, x, rows)
    cfg = params.config
    print(f"source: {source}; parameters: {cfg.num_parameters('keras')} counted as Keras does "
          f"(one bias), {cfg.num_parameters('torch')} as torch does (two biases)")
    _demo_by_hand(params, x, want, rows)
    _demo_frameworks(params, x, want, rows)
    print()
    print(_table(rows.rows, ("check", "max abs err", "result")))
    print()
    print("y, the readout of the final state:", np.array2string(np.asarray(want)[0], precision=6))
    return 1 if rows.failed else 0


def _check_cases(args: argparse.Namespace) -> tuple[list[Any], dict[str, str], str]:
    """The cases ``--full``, ``--random`` and ``--case`` select, each case's matrix
    (``{name: "quick" | "full" | "random"}``, the smallest that holds it) and the run's mode:
    the smallest matrix that holds every selected named case ("quick" or "full"; "random" when
    only random cases are selected). A named case may come from the full matrix.

    Raises:
        _Fail: ``--seed`` without ``--random``, an invalid ``--case`` pattern, or one that
            matches no case.
    """
    import re

    from rnn_ref.conformance import cases as case_lib

    if args.seed and not args.random:
        raise _Fail("--seed applies to the --random cases; add --random N")
    # a named case may come from the full matrix
    selected = case_lib.full_cases() if args.full or args.case else case_lib.quick_cases()
    random = case_lib.random_cases(args.random, args.seed) if args.random else []
    selected += random
    if args.case:
        try:
            pattern = re.compile(args.case)
        except re.error as exc:
            raise _Fail(f"--case is not a valid regular expression: {exc}") from None
        selected = [c for c in selected if pattern.search(c.name)]
        if not selected:
            raise _Fail(f"no case matches --case {args.case!r}")
    labels = case_lib.matrix_labels(random)
    held = {labels[c.name] for c in selected}
    mode = next((m for m in ("full", "quick") if m in held), "random")
    return selected, labels, mode


def _cases_line(selected: Sequence[Any], labels: dict[str, str], mode: str) -> str:
    """``"68 quick cases"``, or with random cases ``"71 cases: quick + 3 random"``."""
    random = sum(labels[c.name] == "random" for c in selected)
    if random in (0, len(selected)):
        return f"{len(selected)} {mode} cases"
    return f"{len(selected)} cases: {mode} + {random} random"


def _check_backend(name: str, args: argparse.Namespace) -> tuple[Any, Any]:
    """The backend called ``name`` and its known failures (``--known-failures`` or the
    built-in ones).

    Raises:
        _Fail: the backend cannot be loaded, or the known failures cannot be read.
    """
    from rnn_ref.backends import deviations

    try:
        backend = rnn_ref.get_backend(name)
    except (ImportError, ValueError, TypeError) as exc:
        text = str(exc)  # a device error names the backend itself
        raise _Fail(text if text.startswith(f"backend {name!r}") else f"backend {name!r}: {text}"
                    ) from None
    try:
        known = (deviations.load_file(args.known_failures, backend.name)
                 if args.known_failures else deviations.load(backend.name))
    except RecursionError:
        raise _Fail(f"--known-failures: {args.known_failures}: JSON nested too deeply") from None
    except (OSError, ValueError) as exc:
        raise _Fail(f"--known-failures: {exc}") from None
    return backend, known


def _print_problems(reports: Sequence[Any], names: Sequence[str], labels: dict[str, str],
                    args: argparse.Namespace) -> bool:
    """Print each failure (with the command that reruns it, naming the backend as ``names``,
    the user's ``--backend`` values, do), each unexpected pass and each stale known failure of
    ``reports``; return whether any case failed."""
    from rnn_ref.conformance.report import rerun_command

    failed = False
    for rep, name in zip(reports, names, strict=True):
        for r in rep.results:
            if r.status == "fail":
                failed = True
                rerun = rerun_command(name, r.case, matrix=labels[r.case], random=args.random,
                                      seed=args.seed, known_failures=args.known_failures)
                print(printable(f"FAIL {rep.backend} {r.case} [{r.category}]: {r.detail}")
                      + f"\n     rerun: {printable(rerun)}")
            elif r.status == "xpass":
                print(printable(f"XPASS {rep.backend} {r.case} [{r.category}]: passes although "
                                f"known failure {r.deviation!r} matches it; update the known "
                                f"failures"))
        for d in rep.stale:
            print(printable(f"STALE {rep.backend}: known failure {d.id!r} matched no case of "
                            f"this run"))
    return failed


def cmd_check(args: argparse.Namespace) -> int:
    """Run the conformance suite on backends; exit 1 on any failure."""
    from rnn_ref.backends.devices import describe
    from rnn_ref.conformance import report as report_lib
    from rnn_ref.conformance import runner

    names = args.backend or rnn_ref.available_backends()
    for option in ("json", "markdown", "heatmap"):  # before the run, not after it
        target = getattr(args, option)
        if target is not None and not Path(target).resolve().parent.is_dir():
            raise _Fail(f"--{option} {target}: the folder {Path(target).parent} does not exist")
    if args.markdown:
        from rnn_ref.conformance import ecosystem

        try:
            ecosystem.check_target(args.markdown)
        except ValueError as exc:
            raise _Fail(f"--markdown: {exc}") from None
    selected, labels, mode = _check_cases(args)
    reports = []
    for name in names:
        backend, known = _check_backend(name, args)
        progress = None if args.no_progress else report_lib.ProgressBar()
        print(f"{backend.name}: {_cases_line(selected, labels, mode)}, "
              f"{report_lib.environment_line(describe(backend))}", file=sys.stderr)
        reports.append(runner.run(backend, selected, deviations=known,
                                  progress=progress))
    print(report_lib.summary_table(reports))
    failed = _print_problems(reports, names, labels, args)
    if args.json:
        report_lib.write_json(args.json, reports, mode=mode, matrices=labels)
        print(f"wrote {args.json}")
    if args.markdown or args.heatmap:
        from rnn_ref.conformance import ecosystem

        if args.markdown:
            ecosystem.write_markdown(args.markdown,
                                     ecosystem.markdown(reports, selected, mode=mode))
            print(f"wrote {args.markdown}")
        if args.heatmap:
            print(f"wrote {ecosystem.heatmap(reports, selected, args.heatmap)}")
    return 1 if failed else 0


def cmd_bench(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """Run benchmarks/harness.py of this checkout (benchmarks/ is not installed)."""
    folder = Path(rnn_ref.__file__).resolve().parent.parent / "benchmarks"
    if not (folder / "harness.py").is_file():
        print("rnn-ref bench: benchmarks/ is not installed with the package; run it from a "
              "checkout (./dev run rnn-ref bench)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(folder))
    import harness

    return int(harness.main(list(rest)))


#: seeds the command line takes: what NumPy, torch and Keras all accept
SEED_MAX = 2**32 - 1
#: the most --random cases one run generates (each is generated before the run starts)
RANDOM_MAX = 10_000


def _bounded_int(name: str, low: int, high: int) -> Any:
    """An argparse type: an integer from ``low`` to ``high``, else an error naming ``name``,
    the value and the range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer from {low} to {high}, "
                                             f"got {printable(text)[:60]!r}") from None
        if not low <= value <= high:
            shown = text if len(text) <= 40 else f"{text[:20]}...({len(text)} digits)"
            raise argparse.ArgumentTypeError(f"{name} must be from {low} to {high}, got "
                                             f"{shown}")
        return value

    return parse


class _Fail(Exception):
    """A one-line error for the user, with an exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def _hints(args: argparse.Namespace) -> Any:
    from rnn_ref.convert import Hints

    return Hints(activation=args.activation, merge_mode=args.merge_mode,
                 direction=args.direction, select=args.select,
                 head_activation=args.head_activation,
                 recurrent_activation=args.recurrent_activation)


def _one_line(exc: BaseException) -> str:
    """The first line of an error, hints named as this command line's flags."""
    from rnn_ref.convert import HINT_NAMES, MissingHintError

    # the first line only at "\n": splitlines would also cut at a "\r" from a file
    text = str(exc).strip("\n").split("\n", 1)[0] if str(exc) else type(exc).__name__
    text = text.replace("pass force=True", "pass --force")
    if isinstance(exc, MissingHintError):
        text += f" (pass --{exc.hint.replace('_', '-')})"
    for name in HINT_NAMES:
        text = text.replace(f"the {name} hint", f"--{name.replace('_', '-')}")
    return text.replace("; name the format", "; name it with --from/--to")


def _limits(args: argparse.Namespace) -> Any:
    """The :class:`~rnn_ref.limits.Limits` of ``--max-params`` and friends (defaults else)."""
    from rnn_ref.limits import Limits

    return Limits().with_(max_parameters=args.max_params, max_layers=args.max_layers,
                          max_bytes=args.max_bytes, max_nodes=args.max_nodes)


def _read_input(path: str, fmt: str | None, args: argparse.Namespace) -> tuple[Any, str]:
    from rnn_ref import convert

    try:
        fmt = convert.detect(path, fmt)
        return convert.read(path, fmt, _hints(args), limits=_limits(args),
                            allow_external_data=args.allow_external_data), fmt
    except (ValueError, NotImplementedError, ImportError, OSError) as exc:
        raise _Fail(_one_line(exc)) from None


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a file between formats; --verify runs both in their own frameworks."""
    from rnn_ref import convert

    try:
        done = convert.convert(args.src, args.dst, src_format=args.from_format,
                               dst_format=args.to_format, hints=_hints(args),
                               verify=args.verify, force=args.force, seed=args.seed,
                               limits=_limits(args),
                               allow_external_data=args.allow_external_data,
                               expect_sha256=args.expect_sha256)
    except convert.VerificationError as exc:
        raise _Fail(str(exc), status=1) from None
    except (ValueError, NotImplementedError, ImportError, OSError, RecursionError) as exc:
        raise _Fail(_one_line(exc)) from None
    notes = [convert.not_recorded(done.params, done.dst_format),
             convert.loading_needs(done.params, done.dst_format)]
    fmt = "; ".join([done.dst_format, *(n for n in notes if n)])
    print(printable(f"wrote {args.dst} ({fmt}) from {args.src} "
                    f"({done.src_format}): {_describe(done.params.config, done.src_format)}"))
    if done.verification is not None:
        print(f"verified: {printable(done.verification.summary)}")
    return 0


def _describe(cfg: Any, fmt: str = "") -> str:
    """The network on one line (its pieces from :meth:`RNNConfig.describe`); ``fmt`` the
    format it was read from (a ``.keras`` file's padded steps follow the Keras backend it is
    read under: the one Keras runs on when it is imported, else ``KERAS_BACKEND``)."""
    text = "; ".join(line.strip() for line in cfg.describe())
    if fmt == "keras" and cfg.padded_output != "zeros":
        keras = sys.modules.get("keras")
        backend = (keras.backend.backend() if keras is not None
                   else os.environ.get("KERAS_BACKEND", "tensorflow"))
        text += f" (padded steps as Keras on {backend} computes them; KERAS_BACKEND chooses)"
    return text


def cmd_inspect(args: argparse.Namespace) -> int:
    """Architecture, arrays, parameter counts, and which formats it converts to; the limits
    and the external-data permission hold for everything it reads."""
    from rnn_ref import limits

    with limits.using(_limits(args), allow_external_data=args.allow_external_data):
        return _inspect(args)


def _inspect(args: argparse.Namespace) -> int:
    from rnn_ref import convert

    try:
        fmt = convert.detect(args.file, args.from_format)
    except ValueError as exc:
        raise _Fail(_one_line(exc)) from None
    if not convert.readable(fmt):
        return _inspect_graph(Path(args.file), fmt)
    _print_external(args.file, fmt, args.allow_external_data)
    params, fmt = _read_input(args.file, fmt, args)
    cfg = params.config
    print(f"{printable(args.file)}: {fmt}, dtype {params.dtype}")
    print("network:")
    for line in _describe(cfg, fmt).split("; "):
        print(f"  {printable(line)}")
    keras_biases = ("one bias per gate, two in a reset-after GRU" if not cfg.is_elman
                    else "one bias per cell")
    print(f"parameters: {cfg.num_parameters('keras')} counted as Keras does ({keras_biases}), "
          f"{cfg.num_parameters('torch')} as torch does (two)")
    print("\narrays in the file:")
    try:
        native = convert.framework_module(fmt).list_arrays(Path(args.file), fmt)
    except Exception as exc:  # listing is a courtesy: the file already read as parameters
        native = []
        print(f"  (cannot list them: {type(exc).__name__}: {error_line(exc, 200)})")
    print(_table([(n, str(tuple(s)), d) for n, s, d in native], ("name", "shape", "dtype")))
    print("\ncanonical arrays:")
    print(_table([(n, str(a.shape), str(a.dtype)) for n, a in params.named_arrays()],
                 ("name", "shape", "dtype")))
    print("\nconverts to:")
    rows = [(f, ", ".join(convert.FORMATS[f]), "yes" if why is None else f"no: {why}")
            for f, why in _convertible_here(params).items()]
    print(_table(rows, ("format", "extensions", "")))
    return 0


def _print_external(path: str, fmt: str, allowed: bool) -> None:
    """The files besides ``path`` that reading it would read (ONNX external data), none of
    them read, each with whether it would be; nothing when there are none."""
    from rnn_ref import convert

    try:
        files = convert.external_files(path, fmt)
    except (ValueError, NotImplementedError, ImportError, OSError) as exc:
        raise _Fail(_one_line(exc)) from None
    except Exception as exc:  # the reader says what is wrong with the file itself
        raise _Fail(f"{path}: not a valid {fmt} file ({type(exc).__name__})") from None
    if not files:
        return
    print(f"{path}: reads external data from {len({f for _, f, _, _ in files})} file(s), "
          f"not read yet:")
    rows = [(repr(t), repr(f), str(n), ("refused: " + why) if why else
             "allowed" if allowed else "needs --allow-external-data")
            for t, f, n, why in files]
    print(_table(rows, ("tensor", "file", "bytes", "")))
    print()


def _convertible_here(params: Any) -> dict[str, str | None]:
    """:func:`rnn_ref.convert.convertible`, and a format whose packages are not installed
    here is not possible either (the message names them)."""
    from rnn_ref import convert

    out = convert.convertible(params)
    for name, (framework, f) in _frameworks.formats().items():
        absent = _frameworks.missing((*framework.requires, *f.requires))
        if out.get(name) is None and absent:
            out[name] = f"needs {', '.join(absent)}, which is not installed here"
    return out


def _inspect_graph(path: Path, fmt: str) -> int:
    """A file that holds a converted graph rather than parameters (``.tflite``): its ops,
    subgraph by subgraph, and its tensors."""
    from rnn_ref import convert

    if not path.is_file():
        raise _Fail(f"{path}: no such file")
    try:
        module = convert.framework_module(fmt)
        ops = module.describe(path)
        arrays = module.list_arrays(path, fmt)
    except (ValueError, NotImplementedError, ImportError, OSError) as exc:
        raise _Fail(_one_line(exc)) from None
    print(f"{printable(path)}: {fmt} (a converted graph; its parameters cannot be read back)")
    counts: dict[str, int] = {}
    for op in ops:
        counts[op] = counts.get(op, 0) + 1
    print("ops: " + printable(", ".join(f"{op} x{n}" if n > 1 else op
                                        for op, n in counts.items())))
    if hasattr(module, "lowering"):  # what the recurrent layers became
        print("recurrent layers: " + printable(module.lowering(ops)))
    print("\ntensors in the file:")
    print(_table([(n, str(tuple(s)), d) for n, s, d in arrays], ("name", "shape", "dtype")))
    return 0


def _add_check(sub: Any) -> None:
    """The ``check`` subcommand and its options."""
    p = sub.add_parser("check", help="the conformance suite: backends held to the oracle",
                       description="Run every conformance case each backend declares it "
                       "supports, compare with the oracle, and check that what it declares "
                       "unsupported raises. Exit status 1 on any failure.")
    p.add_argument("--backend", action="append", metavar="NAME",
                   help="a built-in name or a third party's module:attribute (repeatable; "
                   "default: every built-in backend that can run here)")
    p.add_argument("--full", action="store_true", help="the full matrix (default: quick)")
    p.add_argument("--random", type=_bounded_int("--random", 0, RANDOM_MAX), default=0,
                   metavar="N", help=f"add N randomly sampled configurations (0 to {RANDOM_MAX})")
    p.add_argument("--seed", type=_bounded_int("--seed", 0, SEED_MAX), default=0,
                   help=f"seed of --random (0 to {SEED_MAX}; default 0)")
    p.add_argument("--case", metavar="REGEX", help="only cases whose name matches")
    p.add_argument("--known-failures", metavar="FILE",
                   help="a JSON list of known failures (default: the built-in ones)")
    p.add_argument("--json", metavar="PATH", help="write every result as JSON")
    p.add_argument("--markdown", metavar="PATH",
                   help="write the backend x feature table (ok / deviates / refuses / fails); "
                   "into a file with the table's markers (docs/conformance.md) only between them")
    p.add_argument("--heatmap", metavar="PNG", help="draw that table as a picture")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_check)


def _add_hint_args(q: argparse.ArgumentParser) -> None:
    """The options that say what a file does not record: ``--from`` and the hints."""
    fmts = ", ".join(__import__("rnn_ref.convert", fromlist=["FORMATS"]).FORMATS)
    q.add_argument("--from", dest="from_format", metavar="FORMAT",
                   help=f"the input's format when its extension does not say ({fmts})")
    q.add_argument("--activation", help="for files that do not record it (torch state "
                   "dicts, safetensors, Keras weights): tanh, relu, sigmoid, ...")
    q.add_argument("--merge-mode", choices=["concat", "sum", "mul", "ave"],
                   help="for Keras weights of Bidirectional layers that do not concatenate")
    q.add_argument("--direction", choices=["forward", "reverse"],
                   help="for Keras weights of a go_backwards layer: reverse")
    q.add_argument("--select", choices=list(SELECTS),
                   help="for torch state dicts with nn.Linear layers: what feeds them")
    q.add_argument("--head-activation", metavar="ACTS",
                   help="for torch state dicts with nn.Linear layers: their activations, "
                   "comma-separated (relu,softmax)")
    q.add_argument("--recurrent-activation", metavar="ACTS",
                   help="for Keras weights of GRU or LSTM layers: their gates' activation "
                   "(sigmoid, hard_sigmoid, ...; one per layer comma-separated)")


def _positive(text: str) -> int:
    """An argparse type: a positive integer (``2**30`` and ``1e9`` forms too)."""
    try:
        value = int(float(text)) if "e" in text.lower() else (
            2 ** int(text[3:]) if text.startswith("2**") else int(text))
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _add_safety_args(q: argparse.ArgumentParser) -> None:
    """What reading an untrusted file may cost and reach (:mod:`rnn_ref.limits`)."""
    from rnn_ref.limits import Limits

    d = Limits()
    q.add_argument("--allow-external-data", action="store_true",
                   help="read ONNX tensors kept in other files, only from regular files in the "
                   "model's folder named after it (model.onnx.data, model_0.bin), never links")
    q.add_argument("--max-params", type=_positive, metavar="N", help="most elements of the "
                   f"network or of one array a file may declare (default {d.max_parameters})")
    q.add_argument("--max-layers", type=_positive, metavar="N",
                   help=f"most layers a file may declare (default {d.max_layers})")
    q.add_argument("--max-bytes", type=_positive, metavar="N", help="most bytes a file may "
                   f"expand to, or a verified graph compute in one tensor (default {d.max_bytes})")
    q.add_argument("--max-nodes", type=_positive, metavar="N",
                   help=f"most nodes of an ONNX graph --verify runs (default {d.max_nodes})")


def _add_convert(sub: Any) -> None:
    """The ``convert`` subcommand and its options."""
    p = sub.add_parser("convert", help="convert a file between frameworks (--verify)",
                       description="Convert between Keras (.keras, .weights.h5, legacy .h5), "
                       "PyTorch (.pt/.pth state dicts, .safetensors), ONNX (.onnx) and the "
                       "canonical .npz. Nothing from a file is executed; the output appears "
                       "only when complete (and verified). Exit status: 0 ok, 1 verification "
                       "failed, 2 bad input.")
    p.add_argument("src")
    p.add_argument("dst")
    _add_hint_args(p)
    p.add_argument("--to", dest="to_format", metavar="FORMAT", help="the output's format")
    p.add_argument("--verify", action="store_true",
                   help="run source and target in their own frameworks on seeded inputs (in the "
                   "source's dtype) and compare within the tolerance of the less precise "
                   "dtype; on failure write nothing")
    p.add_argument("--seed", type=_bounded_int("--seed", 0, SEED_MAX), default=0,
                   help=f"seed of the --verify inputs (0 to {SEED_MAX})")
    p.add_argument("--force", action="store_true",
                   help="replace an existing regular file (never the source itself; its mode "
                   "is kept)")
    p.add_argument("--expect-sha256", metavar="HEX",
                   help="refuse the source unless its bytes have this SHA-256 (.onnx, .pt and "
                   ".weights.h5 carry no checksum of their own)")
    _add_safety_args(p)
    p.set_defaults(func=cmd_convert)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnn-ref",
        description="The framework-agnostic reference for the Elman RNN.",
    )
    parser.add_argument("--version", action="version", version=f"rnn-ref {rnn_ref.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("info", help="versions, and which backends can run here")
    p.add_argument("--devices", action="store_true",
                   help="also each torch and jax backend's device and precision settings "
                   "(imports torch and jax)")
    p.set_defaults(func=cmd_info)
    _add_check(sub)
    _add_convert(sub)
    p = sub.add_parser("inspect", help="architecture, arrays, counts, convertible formats")
    p.add_argument("file")
    _add_hint_args(p)
    _add_safety_args(p)
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("bench", add_help=False,
                       help="benchmarks: every backend side by side (--quick, --json PATH, "
                       "--threads K..., --repeats R, --framework F, --out DIR; --help)")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("demo", help="the tutorials' model through the oracle and every backend")
    p.add_argument("--seed", type=_bounded_int("--seed", 0, SEED_MAX), default=0,
                   help=f"seed of weights and inputs (0 to {SEED_MAX}; default 0)")
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
    restore = _exit_on_signals()
    try:
        return int(args.func(args))
    except _Fail as exc:
        print(f"rnn-ref {args.command}: {error_line(exc)}", file=sys.stderr)
        return exc.status
    except MemoryError:
        print(f"rnn-ref {args.command}: out of memory; nothing was written", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rnn-ref {args.command}: interrupted; nothing was left behind", file=sys.stderr)
        return 128 + signal.SIGINT
    finally:
        restore()


def _exit_on_signals() -> Any:
    """Make SIGTERM and SIGHUP end the command through ``SystemExit`` (status 128 + the
    signal), so that every ``finally`` runs and temporary files are removed; returns the
    function that puts the previous handlers back. Only in the main thread."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def leave(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    wanted = [s for s in ("SIGTERM", "SIGHUP") if hasattr(signal, s)]
    previous = {sig: signal.signal(getattr(signal, sig), leave) for sig in wanted}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(getattr(signal, sig), handler)

    return restore


if __name__ == "__main__":
    sys.exit(main())
