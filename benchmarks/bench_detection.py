"""How sharp the conformance verdicts are: the smallest bug each tolerance policy catches.

    ./dev run python benchmarks/bench_detection.py [--quick] [--out DIR]

For every cell of a grid (recurrent gain g, length T, width M, activation; N=8, D=32, one
layer, float32), with recurrent weights ``g * G / sqrt(M)`` (G standard normal, seeded):

* the real error: a correct float32 computation (the oracle's float32 path) against the
  float64 oracle, largest over all elements;
* for the old policy (:func:`rnn_ref.conformance.compare.tolerance`, a formula in T) and the
  new one (:func:`compare_estimated`, F times the oracle's Monte Carlo estimate): whether the
  correct computation passes, the smallest shift of one recurrent-bias element that fails
  (bisection), that shift over the real error, and whether a TF32-sized error (the same network
  computed with TF32 matrix products, 10-bit significands) is caught;
* how many outputs the new policy finds undetermined in float32, and from which step.

Writes ``detection.json`` and ``detection.md`` to ``--out`` (default
``benchmarks/results/``). The full grid takes a few minutes on 2 cores; ``--quick`` is the
12-cell table of the tolerance issue (tanh, M=64).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import rnn_ref
from rnn_ref.conformance.compare import F, compare, compare_estimated, tolerance
from rnn_ref.precision import estimate

HERE = Path(__file__).resolve().parent
N, D = 8, 32


def network(g: float, t: int, m: int, act: str, seed: int = 0
            ) -> tuple[rnn_ref.RNNParams, np.ndarray]:
    """float32 params with recurrent gain ``g`` and inputs ``(N, T, D)``."""
    cfg = rnn_ref.RNNConfig(D, m, activation=act)
    p = rnn_ref.init(cfg, seed=seed, dtype=np.float32)
    rng = np.random.default_rng(seed + 1)
    w_h = (g * rng.standard_normal((m, m)) / np.sqrt(m)).astype(np.float32)
    c = p.layers[0][0]
    x = rng.standard_normal((N, t, D)).astype(np.float32)
    return rnn_ref.RNNParams(cfg, [[rnn_ref.CellParams(c.w_x, w_h, c.b_x, c.b_h)]]), x


def float32_outputs(params: rnn_ref.RNNParams, x: np.ndarray) -> np.ndarray:
    return np.asarray(rnn_ref.forward(params, x, compute_dtype=np.float32).outputs)


def _tf32(a: np.ndarray) -> np.ndarray:
    """Round float32 values to TF32 (10 explicit significand bits), to nearest even."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32)
    lsb = (bits >> 13) & 1
    return ((bits + 0x0FFF + lsb) & 0xFFFFE000).view(np.float32)


def tf32_outputs(params: rnn_ref.RNNParams, x: np.ndarray) -> np.ndarray:
    """A simulated TF32 backend: matrix-product operands rounded to TF32, float32 otherwise
    (what cuDNN and cuBLAS do with TF32 enabled)."""
    c = params.layers[0][0]
    f = params.config.activation_of(0, 0)
    w_x, w_h, b = _tf32(c.w_x), _tf32(c.w_h), c.b_x + c.b_h
    h = np.zeros((x.shape[0], c.hidden_size), np.float32)
    out = np.empty((x.shape[0], x.shape[1], c.hidden_size), np.float32)
    for t in range(x.shape[1]):
        h = f(_tf32(x[:, t]) @ w_x + _tf32(h) @ w_h + b).astype(np.float32)
        out[:, t] = h
    return out


def shifted(params: rnn_ref.RNNParams, delta: float) -> rnn_ref.RNNParams:
    """The planted bug: element 0 of the recurrent bias shifted by ``delta``."""
    c = params.layers[0][0]
    b_h = c.b_h.copy()
    b_h[0] += np.float32(delta)
    return rnn_ref.RNNParams(params.config, [[rnn_ref.CellParams(c.w_x, c.w_h, c.b_x, b_h)]])


def smallest_caught(fails: Callable[[np.ndarray], bool], params: rnn_ref.RNNParams,
                    x: np.ndarray) -> float | None:
    """The smallest bias shift whose outputs ``fails`` flags (bisection in log scale over
    [1e-10, 10]), or ``None`` when even 10 passes."""
    lo, hi = -10.0, 1.0
    if not fails(float32_outputs(shifted(params, 10.0**hi), x)):
        return None
    for _ in range(30):
        mid = (lo + hi) / 2
        if fails(float32_outputs(shifted(params, 10.0**mid), x)):
            hi = mid
        else:
            lo = mid
    return float(10.0**hi)


def cell(g: float, t: int, m: int, act: str) -> dict[str, Any]:
    params, x = network(g, t, m, act)
    start = time.perf_counter()
    est = estimate(params, x, dtype="float32")
    estimate_s = time.perf_counter() - start
    want, sigma = np.asarray(est.expected.outputs), np.asarray(est.sigma.outputs)
    real = float32_outputs(params, x)
    finite = np.isfinite(want)
    scale = float(np.abs(want[finite]).max()) if finite.any() else 1.0
    old_tol = tolerance("float32", t, [act], scale=scale)

    def old_fails(out: np.ndarray) -> bool:
        return not compare(out, want, old_tol, time_axis=None).passed

    def new_fails(out: np.ndarray) -> bool:
        return not compare_estimated(out, want, sigma, old_tol, dtype="float32").passed

    with np.errstate(all="ignore"):
        err = float(np.nanmax(np.abs(real - want))) if real.size else 0.0
        new_report = compare_estimated(real, want, sigma, old_tol, dtype="float32")
        tf32 = tf32_outputs(params, x)
        row: dict[str, Any] = {
            "gain": g, "T": t, "M": m, "activation": act, "real_error": err,
            "old_atol": old_tol.atol, "old_correct_passes": not old_fails(real),
            "new_correct_passes": new_report.passed,
            "new_ratio": new_report.ratio, "new_bits": new_report.bits,
            "undetermined": new_report.undetermined,
            "undetermined_from": new_report.undetermined_from,
            "tf32_error": float(np.nanmax(np.abs(tf32 - want))),
            "old_catches_tf32": old_fails(tf32), "new_catches_tf32": new_fails(tf32),
            "tf32_bits": compare_estimated(tf32, want, sigma, old_tol, dtype="float32").bits,
            "estimate_seconds": round(estimate_s, 3),
        }
        for policy, fails in (("old", old_fails), ("new", new_fails)):
            caught = smallest_caught(fails, params, x)
            row[f"{policy}_smallest_bug"] = caught
            row[f"{policy}_caught_over_real"] = (None if caught is None or err == 0
                                                 else caught / err)
    return row


def grid(quick: bool) -> list[tuple[float, int, int, str]]:
    gains, lengths = (0.5, 0.9, 1.5, 2.0), (10, 100, 1000)
    if quick:
        return [(g, t, 64, "tanh") for g in gains for t in lengths]
    return [(g, t, m, a) for a in ("tanh", "sigmoid", "relu") for m in (64, 256)
            for g in gains for t in lengths]


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def markdown(rows: list[dict[str, Any]]) -> str:
    cols = [("activation", "act"), ("gain", "g"), ("T", "T"), ("M", "M"),
            ("real_error", "float32 error (correct)"), ("old_atol", "old tolerance"),
            ("old_correct_passes", "old: correct passes"),
            ("old_caught_over_real", "old: caught / real"),
            ("new_correct_passes", "new: correct passes"),
            ("new_caught_over_real", "new: caught / real"), ("new_bits", "new: bits"),
            ("undetermined_from", "new: undetermined from step"),
            ("old_catches_tf32", "old: TF32 caught"), ("new_catches_tf32", "new: TF32 caught"),
            ("tf32_bits", "new: TF32 bits")]
    lines = ["| " + " | ".join(title for _, title in cols) + " |",
             "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r[key]) for key, _ in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tanh, M=64 only (12 cells)")
    parser.add_argument("--out", type=Path, default=HERE / "results",
                        help="folder for detection.json and detection.md")
    args = parser.parse_args()
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is not a folder")
    rows = []
    for g, t, m, act in grid(args.quick):
        rows.append(cell(g, t, m, act))
        r = rows[-1]
        print(f"{act:8s} g={g:<4} T={t:<5} M={m:<4} error {_fmt(r['real_error']):>8}  "
              f"caught/real old {_fmt(r['old_caught_over_real']):>6} new "
              f"{_fmt(r['new_caught_over_real']):>6}  correct passes old "
              f"{_fmt(r['old_correct_passes'])} new {_fmt(r['new_correct_passes'])}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"F": F, "N": N, "D": D, "numpy": np.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cpu_flags": _cpu_flags()}
    (args.out / "detection.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (args.out / "detection.md").write_text(
        f"# Detection power of the conformance tolerance (F = {F:g})\n\n" + markdown(rows))
    print(f"wrote {args.out / 'detection.json'} and {args.out / 'detection.md'}")


def _cpu_flags() -> list[str]:
    """The CPU flags that change numerics (AVX-512, AMX, FMA), from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                  if ln.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("avx512", "amx", "fma", "avx2")))


if __name__ == "__main__":
    main()
