"""The float64 oracle against arbitrary precision (mpmath, 60 digits): its error per activation.

    ./dev run python benchmarks/bench_oracle_accuracy.py [--seeds 8] [--out DIR]

For every activation of the conformance set, ``--seeds`` one-layer networks (N=3, T=8, D=4,
M=5) are computed by the oracle's fast path and by :mod:`rnn_ref.conformance.accuracy`, and
the errors of all outputs are binned: in ULPs of each exact value (0, 1, 2, 3, more), and in
units of ``eps * max(1, |exact|)``. Writes ``oracle_accuracy.json`` and ``oracle_accuracy.md``
to ``--out`` (default ``benchmarks/results/``). About a second per seed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rnn_ref.conformance.accuracy import BINS, histogram, oracle_errors
from rnn_ref.conformance.cases import ACTIVATION_SET

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="networks per activation")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    rows = []
    for act in ACTIVATION_SET.values():
        pairs = [oracle_errors(act, n=3, t=8, d=4, m=5, seed=s) for s in range(args.seeds)]
        ulps = np.concatenate([p[0].ravel() for p in pairs])
        units = np.concatenate([p[1].ravel() for p in pairs])
        rows.append({"activation": str(act), "elements": int(ulps.size),
                     "ulps": histogram(ulps), "max_ulps": float(ulps.max()),
                     "eps_units": histogram(units), "max_eps_units": float(units.max())})
        print(f"{str(act):28s} ULPs {rows[-1]['ulps']}  max {ulps.max():.0f};  eps units "
              f"{rows[-1]['eps_units']}  max {units.max():.2f}", flush=True)
    lines = ["| activation | outputs | " + " | ".join(f"{b} ULP" for b in BINS)
             + " | max ULPs | max eps units |", "|" + "---|" * (len(BINS) + 4)]
    for r in rows:
        lines.append(f"| {r['activation']} | {r['elements']} | "
                     + " | ".join(str(r["ulps"][b]) for b in BINS)
                     + f" | {r['max_ulps']:.0f} | {r['max_eps_units']:.2f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "oracle_accuracy.json").write_text(json.dumps(rows, indent=1))
    (args.out / "oracle_accuracy.md").write_text(
        "# The float64 oracle against mpmath (60 digits)\n\n" + "\n".join(lines) + "\n")
    print(f"wrote {args.out / 'oracle_accuracy.json'} and {args.out / 'oracle_accuracy.md'}")


if __name__ == "__main__":
    main()
