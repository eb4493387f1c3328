"""Forward plus backward: the oracle's BPTT against torch autograd.

    ./dev run python benchmarks/bench_backward.py [--shape N T D M] [--repeats 5]

Reports median milliseconds of the oracle's forward (float64), its forward + backward
(`rnn_ref.backward` recomputes the forward it needs), the backward-over-forward ratio, and
torch's forward + backward through `nn.RNN` autograd in float64 and float32.
"""

from __future__ import annotations

import numpy as np
from bench_oracle import parse_args, timeit

import rnn_ref


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], repeats=5)
    n, t, d, m = args.shape
    params = rnn_ref.init(rnn_ref.RNNConfig(d, m), seed=0, dtype=np.float64)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, t, d))
    g = rng.standard_normal((n, t, m))
    fwd = timeit(lambda: rnn_ref.forward(params, x), args.repeats)[0]
    both = timeit(lambda: rnn_ref.backward(params, x, grad_outputs=g), args.repeats)[0]
    print(f"(N, T, D, M) = ({n}, {t}, {d}, {m})")
    print(f"oracle forward, float64            {fwd:9.1f} ms")
    print(f"oracle forward + backward, float64 {both:9.1f} ms   "
          f"(forward + backward) / forward = {both / fwd:.2f}")
    try:
        import torch
    except ImportError:
        print("torch: not installed")
        return
    for dtype in (torch.float64, torch.float32):
        module = rnn_ref.to_torch(params.astype(np.float64 if dtype == torch.float64
                                                else np.float32))
        xt = torch.tensor(x, dtype=dtype, requires_grad=True)
        gt = torch.tensor(g, dtype=dtype)

        def step(module: torch.nn.Module = module, xt: torch.Tensor = xt,
                 gt: torch.Tensor = gt) -> None:
            module.zero_grad()
            out, _ = module(xt)
            (out * gt).sum().backward()

        ms = timeit(step, args.repeats)[0]
        print(f"torch forward + backward, {str(dtype)[6:]:8s} {ms:9.1f} ms")


if __name__ == "__main__":
    main()
