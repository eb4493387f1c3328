"""One benchmark process: one framework, one thread count, every shape; JSON lines on stdout.

    python benchmarks/worker.py FRAMEWORK --threads K --shapes N,T,D,M ... --repeats R

The thread count is fixed by pinning the process to that many cores, through the environment
before any framework is imported (the harness sets it; this script checks it) and through each
framework's own setting. Per shape, each variant is warmed up once (that first call,
compilation included, is reported as ``compile_ms``), then all the variants are timed
``repeats`` times, interleaved (see :func:`timed`). The matrix-multiply peak is measured last.
A variant that cannot run here prints a ``skipped`` record with the reason, so the grid is the
same whatever is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

FRAMEWORK_VARIANTS: dict[str, list[str]] = {
    "numpy": ["numpy-loop", "numpy", "numpy-f64"],
    # numpy-beside-torch: the oracle again, timed interleaved with torch in torch's process,
    # so that the torch / oracle ratio does not carry the drift between two processes
    "torch": ["torch", "numpy-beside-torch"],
    "jax": ["jax", "jax-bare"],
    "keras-tensorflow": ["keras[tensorflow]-xla", "keras[tensorflow]-predict"],
    "keras-jax": ["keras[jax]"],
    "onnxruntime": ["onnxruntime"],
}
#: variants whose forward + backward is measured too
TRAINS = {"numpy-f64", "torch", "jax", "jax-bare", "keras[tensorflow]-xla", "keras[jax]"}


def flops(n: int, t: int, d: int, m: int) -> float:
    """Forward FLOPs: 2 N T (D + M) M (the two matrix products; activations not counted)."""
    return 2.0 * n * t * (d + m) * m


def timed(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, Any]]:
    """Time several closures with their repetitions interleaved, round-robin.

    Each closure's first call (warm-up, compilation included) is timed on its own; then every
    round calls each closure once. A drift of the machine over the minutes of a run (seen
    here: 10 to 15 % between two runs) so falls on every variant alike, and the ratio of two
    variants of one shape (``jax`` to ``jax-bare``) is not an artefact of their order. A
    closure that raises is reported as ``{"error": ...}`` and left out of the rounds.
    """
    out: dict[str, dict[str, Any]] = {}
    times: dict[str, list[float]] = {}
    for key, fn in fns.items():
        try:
            start = time.perf_counter()
            fn()
            out[key] = {"compile_ms": (time.perf_counter() - start) * 1e3}
            times[key] = []
        except Exception as exc:
            out[key] = {"error": f"{type(exc).__name__}: {exc}"}
    for _ in range(repeats):
        for key in list(times):
            try:
                start = time.perf_counter()
                fns[key]()
                times[key].append((time.perf_counter() - start) * 1e3)
            except Exception as exc:
                out[key] = {"error": f"{type(exc).__name__}: {exc}"}
                del times[key]
    for key, ts in times.items():
        q = np.percentile(ts, [25, 75])
        out[key].update(median_ms=statistics.median(ts), min_ms=min(ts), max_ms=max(ts),
                        iqr_ms=float(q[1] - q[0]), repeats=repeats)
    return out


def matmul_peak(repeats: int = 5, size: int = 2048) -> float:
    """GFLOP/s of a large float32 matrix product with this process's threads."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    b = a.T.copy()
    res = timed({"peak": lambda: a @ b}, repeats)["peak"]
    return 2.0 * size**3 / (res["median_ms"] / 1e3) / 1e9


def _inputs(shape: tuple[int, int, int, int]) -> tuple[Any, np.ndarray, np.ndarray]:
    import rnn_ref

    n, t, d, m = shape
    params = rnn_ref.init(rnn_ref.RNNConfig(d, m), seed=0, dtype=np.float32)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, t, d)).astype(np.float32)
    g = rng.standard_normal((n, t, m)).astype(np.float32)
    return params, x, g


def bare_scan(tree: Any, x: Any) -> Any:
    """A hand-written one-layer tanh ``lax.scan``: the yardstick for the ``jax`` backend.

    ``tree`` is :func:`rnn_ref.backends.jax_backend.pytree_of`'s, ``x`` ``(N, T, D)``; returns
    the outputs ``(N, T, M)``.
    """
    import jax.numpy as jnp
    from jax import lax

    c = tree["layers"][0][0]
    proj = jnp.swapaxes(x, 0, 1) @ c["w_x"] + (c["b_x"] + c["b_h"])

    def step(h: Any, p_t: Any) -> tuple[Any, Any]:
        h = jnp.tanh(h @ c["w_h"] + p_t)
        return h, h

    _, out = lax.scan(step, jnp.zeros((x.shape[0], c["w_h"].shape[0]), x.dtype), proj)
    return jnp.swapaxes(out, 0, 1)


#: (forward, forward+backward or None): the closures a variant is timed with.
_Closures = tuple[Callable[[], Any], Callable[[], Any] | None]


def _build_numpy(variant: str, params: Any, x: np.ndarray, g: np.ndarray) -> _Closures:
    """The oracle's variants: the clear loop and the fast path in float32 (forward only), the
    fast path and the gradient in float64. ``x (N, T, D)``, ``g (N, T, M)`` the gradient of
    the outputs."""
    import rnn_ref

    if variant == "numpy-loop":
        return lambda: rnn_ref.forward_loop(params, x, compute_dtype=np.float32), None
    if variant in ("numpy", "numpy-beside-torch"):
        return lambda: rnn_ref.forward(params, x, compute_dtype=np.float32), None
    p64, x64, g64 = params.astype(np.float64), x.astype(np.float64), g.astype(np.float64)
    return (lambda: rnn_ref.forward(p64, x64),
            lambda: rnn_ref.backward(p64, x64, grad_outputs=g64))


def _build_torch(params: Any, x: np.ndarray, g: np.ndarray, threads: int) -> _Closures:
    """``nn.RNN`` on ``threads`` threads: forward without gradients, and forward + backward
    of ``sum(out * g)`` for the weight gradients. ``x (N, T, D)``, ``g (N, T, M)``."""
    import torch

    import rnn_ref

    torch.set_num_threads(threads)
    module = rnn_ref.to_torch(params)
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)

    def fwd() -> Any:
        with torch.no_grad():
            return module(xt)

    def fwd_bwd() -> None:
        module.zero_grad()
        out, _ = module(xt)  # weight gradients only, as jax and Keras compute
        (out * gt).sum().backward()

    return fwd, fwd_bwd


def _build_jax(variant: str, params: Any, x: np.ndarray, g: np.ndarray) -> _Closures:
    """The ``jax`` backend's ``lax.scan`` (``"jax"``) or :func:`bare_scan` (``"jax-bare"``),
    jitted: forward, and the gradient of ``sum(out * g)`` with respect to the weights.
    ``x (N, T, D)``, ``g (N, T, M)``."""
    import jax
    import jax.numpy as jnp

    from rnn_ref.backends import jax_backend

    cfg = params.config
    tree = jax_backend.pytree_of(params)
    xj, gj = jnp.asarray(x), jnp.asarray(g)
    if variant == "jax":
        def out_of(tr: Any, xx: Any) -> Any:
            return jax_backend.apply(tr, xx, config=cfg)[0]
    else:
        out_of = bare_scan

    fwd_j = jax.jit(out_of)
    grad_j = jax.jit(jax.grad(lambda tr, xx: jnp.sum(out_of(tr, xx) * gj)))
    return (lambda: fwd_j(tree, xj).block_until_ready(),
            lambda: jax.block_until_ready(grad_j(tree, xj)))


def _build_keras_tensorflow(variant: str, params: Any, x: np.ndarray, g: np.ndarray
                            ) -> _Closures:
    """Keras on TensorFlow: ``-xla``, a jit-compiled call and the weights' gradient of
    ``sum(out * g)``; ``-predict``, ``predict_on_batch`` only. ``x (N, T, D)``,
    ``g (N, T, M)``."""
    import tensorflow as tf

    import rnn_ref

    model = rnn_ref.to_keras(params)
    if not variant.endswith("-xla"):
        return lambda: model.predict_on_batch(x), None
    spec = tf.TensorSpec(x.shape, tf.float32)
    fn = tf.function(lambda v: model(v, training=False), jit_compile=True,
                     input_signature=[spec])
    xt, gt = tf.constant(x), tf.constant(g)

    @tf.function(jit_compile=True, input_signature=[spec])
    def grads(v: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(v, training=True) * gt)
        return tape.gradient(loss, model.trainable_variables)

    return (lambda: fn(xt).numpy(),
            lambda: [w.numpy() for w in grads(xt)])


def _build_keras_jax(params: Any, x: np.ndarray, g: np.ndarray) -> _Closures:
    """Keras on JAX: ``predict_on_batch``, and the jitted gradient of ``sum(out * g)`` through
    ``stateless_call``. ``x (N, T, D)``, ``g (N, T, M)``."""
    import jax
    import jax.numpy as jnp

    import rnn_ref

    model = rnn_ref.to_keras(params)
    # copies: predict_on_batch donates the variables' own buffers
    trainable = [jnp.array(np.asarray(v.value)) for v in model.trainable_variables]
    fixed = [jnp.array(np.asarray(v.value)) for v in model.non_trainable_variables]
    xj, gj = jnp.asarray(x), jnp.asarray(g)

    def loss(tv: Any, xx: Any) -> Any:
        out, _ = model.stateless_call(tv, fixed, xx, training=True)
        return jnp.sum(out * gj)

    grad_j = jax.jit(jax.grad(loss))
    return (lambda: model.predict_on_batch(x),
            lambda: jax.block_until_ready(grad_j(trainable, xj)))


def _build_onnxruntime(params: Any, x: np.ndarray, threads: int) -> _Closures:
    """An onnxruntime CPU session on ``threads`` intra-op threads, forward only.
    ``x (N, T, D)``."""
    import onnxruntime as ort

    import rnn_ref

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    sess = ort.InferenceSession(rnn_ref.to_onnx(params).SerializeToString(), options,
                                providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"x": x}), None


def build(variant: str, shape: tuple[int, int, int, int], threads: int) -> _Closures:
    """(forward, forward+backward or None) closures for one variant at one shape."""
    params, x, g = _inputs(shape)
    if variant in ("numpy-loop", "numpy", "numpy-beside-torch", "numpy-f64"):
        return _build_numpy(variant, params, x, g)
    if variant == "torch":
        return _build_torch(params, x, g, threads)
    if variant in ("jax", "jax-bare"):
        return _build_jax(variant, params, x, g)
    if variant.startswith("keras[tensorflow]"):
        return _build_keras_tensorflow(variant, params, x, g)
    if variant == "keras[jax]":
        return _build_keras_jax(params, x, g)
    if variant == "onnxruntime":
        return _build_onnxruntime(params, x, threads)
    raise ValueError(f"unknown variant {variant!r}")


def _parse_args() -> argparse.Namespace:
    """``FRAMEWORK --threads K --shapes N,T,D,M ... [--repeats R] [--variants V ...]``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("framework", choices=list(FRAMEWORK_VARIANTS))
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--shapes", nargs="+", required=True)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--variants", nargs="*")
    return parser.parse_args()


def _fix_threads(framework: str, threads: int) -> None:
    """Check that the harness set ``OMP_NUM_THREADS``, pin the process to ``threads`` cores,
    and set TensorFlow's thread pools for Keras on TensorFlow."""
    if os.environ.get("OMP_NUM_THREADS") != str(threads):
        raise SystemExit("worker.py: the harness must set OMP_NUM_THREADS to --threads")
    if hasattr(os, "sched_setaffinity"):
        # Pin the process to K cores: thread flags alone do not bind every runtime (XLA's
        # CPU client ran 1-"thread" work on both cores, above the 1-core matmul peak).
        cores = sorted(os.sched_getaffinity(0))[: threads]
        os.sched_setaffinity(0, cores)
    if framework.startswith("keras-tensorflow"):
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def _shape_records(shape: tuple[int, ...], variants: list[str], threads: int,
                   repeats: int) -> list[dict[str, Any]]:
    """One record per variant and pass (forward, forward_backward) at one shape
    ``(N, T, D, M)``: timed (see :func:`timed`), or skipped with the reason."""
    records: list[dict[str, Any]] = []
    jobs: dict[str, Callable[[], Any]] = {}
    bases: dict[str, dict[str, Any]] = {}
    for variant in variants:
        base = {"kind": "result", "backend": variant, "shape": list(shape),
                "threads": threads, "dtype": "float32" if variant != "numpy-f64"
                else "float64", "flops": flops(*shape)}
        try:
            fwd, fwd_bwd = build(variant, shape, threads)  # type: ignore[arg-type]
        except Exception as exc:
            records += [{**base, "pass": pass_, "status": "skipped",
                         "reason": f"{type(exc).__name__}: {exc}"}
                        for pass_ in ("forward", "forward_backward")]
            continue
        for pass_, fn in (("forward", fwd), ("forward_backward", fwd_bwd)):
            if fn is None:
                records.append({**base, "pass": pass_, "status": "skipped",
                                "reason": "not measured: inference only"})
            else:
                jobs[f"{variant}/{pass_}"] = fn
                bases[f"{variant}/{pass_}"] = {**base, "pass": pass_}
    for key, res in timed(jobs, repeats).items():
        if "error" in res:
            records.append({**bases[key], "status": "skipped", "reason": res["error"]})
        else:
            records.append({**bases[key], **res, "status": "ok"})
    return records


def main() -> None:
    args = _parse_args()
    _fix_threads(args.framework, args.threads)
    records: list[dict[str, Any]] = []
    for text in args.shapes:
        shape = tuple(int(v) for v in text.split(","))
        records += _shape_records(shape, args.variants or FRAMEWORK_VARIANTS[args.framework],
                                  args.threads, args.repeats)
    # The peak comes last, so that no variant runs after a large product it did not ask for
    # (OpenBLAS's small products are faster after one: see rnn_ref/_blas.py).
    peak = matmul_peak()
    print(json.dumps({"kind": "peak", "threads": args.threads, "gflops": peak}), flush=True)
    for rec in records:
        rec["peak_gflops"] = peak
        if rec["status"] == "ok":
            work = rec["flops"] * (3 if rec["pass"] == "forward_backward" else 1)
            rec["gflops"] = work / (rec["median_ms"] / 1e3) / 1e9
            rec["peak_fraction"] = rec["gflops"] / peak
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    sys.exit(main())
