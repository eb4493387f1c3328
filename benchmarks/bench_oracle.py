"""Time the oracle's fast path against a plain NumPy loop.

    ./dev run python benchmarks/bench_oracle.py [--shape N T D M] [--repeats 7]

The plain loop is what one writes first: ``h = tanh(x[:, t] @ w_x + b + h @ w_h)`` per step,
in the weights' dtype. Prints the median and spread of ``--repeats`` runs after one warm-up.
OpenBLAS is primed first for both (see ``rnn_ref/_blas.py``), so the comparison is of the
loops alone.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

import rnn_ref
from rnn_ref._blas import prime


def plain_loop(params: rnn_ref.RNNParams, x: np.ndarray) -> np.ndarray:
    cell = params.layers[0][0]
    b = cell.b_x + cell.b_h
    h = np.zeros((x.shape[0], cell.hidden_size), x.dtype)
    out = np.empty((x.shape[0], x.shape[1], cell.hidden_size), x.dtype)
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] @ cell.w_x + b + h @ cell.w_h)
        out[:, t] = h
    return out


def timeit(fn: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    """(median, min, max) milliseconds of ``repeats`` calls after one warm-up call."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times), max(times)


def parse_args(description: str, repeats: int) -> argparse.Namespace:
    """``--shape N T D M`` (default 64 200 128 128, each at least 1) and ``--repeats``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--shape", type=int, nargs=4, default=[64, 200, 128, 128],
                        metavar=("N", "T", "D", "M"))
    parser.add_argument("--repeats", type=int, default=repeats)
    args = parser.parse_args()
    if min(args.shape) < 1:
        parser.error(f"--shape: N, T, D and M must each be at least 1, got {args.shape}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    return args


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], repeats=7)
    n, t, d, m = args.shape
    cfg = rnn_ref.RNNConfig(d, m)
    x64 = np.random.default_rng(0).standard_normal((n, t, d))
    p64 = rnn_ref.init(cfg, seed=0, dtype=np.float64)
    p32, x32 = p64.astype(np.float32), x64.astype(np.float32)
    for dtype in (np.float32, np.float64):  # the plain loop gets the oracle's BLAS state too
        prime(dtype, m, m)
    rows = [
        ("plain NumPy loop, float32", lambda: plain_loop(p32, x32)),
        ("oracle fast path, float32", lambda: rnn_ref.forward(p32, x32, compute_dtype=np.float32)),
        ("plain NumPy loop, float64", lambda: plain_loop(p64, x64)),
        ("oracle fast path, float64", lambda: rnn_ref.forward(p64, x64)),
    ]
    flops = 2 * n * t * (d + m) * m
    print(f"(N, T, D, M) = ({n}, {t}, {d}, {m}), {args.repeats} repeats")
    for label, fn in rows:
        med, lo, hi = timeit(fn, args.repeats)
        print(f"{label:28s} median {med:8.2f} ms  (min {lo:.2f}, max {hi:.2f})  "
              f"{flops / med / 1e6:6.2f} GFLOP/s")


if __name__ == "__main__":
    main()
