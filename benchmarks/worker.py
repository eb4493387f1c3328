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
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

GPU_VARIANTS = ["torch[cuda,fp32]", "torch[cuda]", "torch[cuda,fp16]", "jax[gpu]",
                "jax[gpu,fp32]", "jax-bare[gpu,fp32]"]
#: the precision each GPU variant computes its products in: its peak is that dtype's GEMM's
GPU_PEAK_OF = {"torch[cuda,fp32]": "fp32", "torch[cuda]": "tf32", "torch[cuda,fp16]": "fp16",
               "jax[gpu]": "tf32", "jax[gpu,fp32]": "fp32", "jax-bare[gpu,fp32]": "fp32"}

FRAMEWORK_VARIANTS: dict[str, list[str]] = {
    "numpy": ["numpy-loop", "numpy", "numpy-f64"],
    # numpy-beside-torch: the oracle again, timed interleaved with torch in torch's process,
    # so that the torch / oracle ratio does not carry the drift between two processes
    "torch": ["torch", "numpy-beside-torch"],
    "jax": ["jax", "jax-bare"],
    "keras-tensorflow": ["keras[tensorflow]-xla", "keras[tensorflow]-predict"],
    "keras-jax": ["keras[jax]"],
    "onnxruntime": ["onnxruntime"],
    # on a GPU: cuDNN in strict float32, at torch's default (TF32) and in float16; this
    # project's lax.scan at JAX's default precision and at "highest"; a bare scan at "highest"
    "gpu": GPU_VARIANTS,
}
#: variants whose forward + backward is measured too
TRAINS = {"numpy-f64", "torch", "jax", "jax-bare", "keras[tensorflow]-xla", "keras[jax]"}


def flops(n: int, t: int, d: int, m: int) -> float:
    """Forward FLOPs: 2 N T (D + M) M (the two matrix products; activations not counted)."""
    return 2.0 * n * t * (d + m) * m


def timed(fns: dict[str, Callable[[], Any]], repeats: int,
          self_timed: frozenset[str] = frozenset()) -> dict[str, dict[str, Any]]:
    """Time several closures with their repetitions interleaved, round-robin.

    Each closure's first call (warm-up, compilation included) is timed on its own; then every
    round calls each closure once. A drift of the machine over the minutes of a run (seen
    here: 10 to 15 % between two runs) so falls on every variant alike, and the ratio of two
    variants of one shape (``jax`` to ``jax-bare``) is not an artefact of their order. A
    closure that raises is reported as ``{"error": ...}`` and left out of the rounds. The
    closures named in ``self_timed`` time themselves and return milliseconds (a GPU's
    events, see :func:`cuda_timed`); the others are timed with ``time.perf_counter``.
    """
    out: dict[str, dict[str, Any]] = {}
    times: dict[str, list[float]] = {}

    def once(key: str) -> float:
        start = time.perf_counter()
        got = fns[key]()
        wall = (time.perf_counter() - start) * 1e3
        return float(got) if key in self_timed else wall

    for key in fns:
        try:
            start = time.perf_counter()
            once(key)
            out[key] = {"compile_ms": (time.perf_counter() - start) * 1e3}
            times[key] = []
        except Exception as exc:
            out[key] = {"error": f"{type(exc).__name__}: {exc}"}
    for _ in range(repeats):
        for key in list(times):
            try:
                times[key].append(once(key))
            except Exception as exc:
                out[key] = {"error": f"{type(exc).__name__}: {exc}"}
                del times[key]
    for key, ts in times.items():
        q = np.percentile(ts, [25, 75])
        out[key].update(median_ms=statistics.median(ts), min_ms=min(ts), max_ms=max(ts),
                        iqr_ms=float(q[1] - q[0]), repeats=repeats)
    return out


def cuda_timed(torch: Any, fn: Callable[[], Any]) -> Callable[[], float]:
    """``fn`` timed on the GPU: milliseconds between two CUDA events recorded around it on
    the current stream (the host waits for the second)."""
    def run() -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))

    return run


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

    ``tree`` is :func:`rnn_ref.backends.jax.backend.pytree_of`'s, ``x`` ``(N, T, D)``; returns
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

    from rnn_ref.backends.jax import backend as jax_backend

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


@contextlib.contextmanager
def _matmul_tf32(torch: Any) -> Any:
    """CUDA float32 matrix products in TF32 for the body (torch's default is off), through
    the ``fp32_precision`` attribute where torch has it, else the legacy flag."""
    matmul = torch.backends.cuda.matmul
    attr, value = (("fp32_precision", "tf32") if hasattr(matmul, "fp32_precision")
                   else ("allow_tf32", True))
    saved = getattr(matmul, attr)
    setattr(matmul, attr, value)
    try:
        yield
    finally:
        setattr(matmul, attr, saved)


def gpu_matmul_peaks(repeats: int = 5, size: int = 8192) -> dict[str, float]:
    """GFLOP/s of a ``size`` x ``size`` matrix product on the first CUDA device, per
    precision: ``fp32`` (TF32 off), ``tf32``, ``fp16`` and ``bf16``, timed with CUDA events
    after a warm-up (the median of ``repeats``)."""
    import torch

    from rnn_ref.backends import devices

    gen = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(size, size, device="cuda", generator=gen)
    b = torch.randn(size, size, device="cuda", generator=gen)
    peaks = {}
    modes = (("fp32", torch.float32, lambda: devices.torch_precision(torch, "fp32")),
             ("tf32", torch.float32, lambda: _matmul_tf32(torch)),
             ("fp16", torch.float16, contextlib.nullcontext),
             ("bf16", torch.bfloat16, contextlib.nullcontext))
    for name, dtype, ctx in modes:
        aa, bb = a.to(dtype), b.to(dtype)

        def product(aa: Any = aa, bb: Any = bb, ctx: Any = ctx) -> None:
            with ctx():
                torch.matmul(aa, bb)

        res = timed({name: cuda_timed(torch, product)}, repeats, frozenset({name}))[name]
        peaks[name] = 2.0 * size**3 / (res["median_ms"] / 1e3) / 1e9
    return peaks


def _build_gpu_torch(variant: str, params: Any, x: np.ndarray) -> _Closures:
    """``nn.RNN`` on the first CUDA device, forward only, timed with CUDA events: strict
    float32 (``torch[cuda,fp32]``), torch's default, TF32 for cuDNN's RNN (``torch[cuda]``),
    or the module and input in float16 (``torch[cuda,fp16]``). ``x (N, T, D)``."""
    import torch

    import rnn_ref
    from rnn_ref.backends import devices

    devices.torch_device(torch, variant, "cuda")
    module = rnn_ref.to_torch(params).to("cuda")
    xt = torch.from_numpy(x).to("cuda")
    if variant.endswith("fp16]"):
        module, xt = module.half(), xt.half()
    mode = "fp32" if variant.endswith("fp32]") else "default"

    def fwd() -> Any:
        with torch.no_grad(), devices.torch_precision(torch, mode):
            return module(xt)

    return cuda_timed(torch, fwd), None


def _build_gpu_jax(variant: str, params: Any, x: np.ndarray) -> _Closures:
    """This project's scan (``jax[gpu]``: JAX's default precision, ``jax[gpu,fp32]``:
    "highest"; the GPU's unroll, :data:`rnn_ref.backends.jax.backend.UNROLL`) or
    :func:`bare_scan` at "highest", on JAX's first GPU; forward only, timed to
    ``block_until_ready``. ``x (N, T, D)``."""
    import jax

    from rnn_ref.backends import devices
    from rnn_ref.backends.jax import backend as jax_backend

    dev = devices.jax_device(jax, variant, "gpu")
    mode = "default" if variant == "jax[gpu]" else "fp32"
    cfg = params.config
    with jax.default_device(dev):
        tree = jax_backend.pytree_of(params)
    xj = jax.device_put(x, dev)
    if variant.startswith("jax-bare"):
        fn = jax.jit(bare_scan)
    else:
        fn = jax.jit(lambda tr, xx: jax_backend.apply(tr, xx, config=cfg,
                                                      unroll=jax_backend.UNROLL["gpu"])[0])

    def fwd() -> Any:
        with devices.jax_precision(jax, mode):
            return fn(tree, xj).block_until_ready()

    return fwd, None


#: the variants whose closures time themselves (CUDA events) and return milliseconds
SELF_TIMED = frozenset(v for v in GPU_VARIANTS if v.startswith("torch"))


def environment(variant: str) -> dict[str, Any]:
    """Where a variant computes and how: device, its name, precision mode and the settings
    in force while it runs (read inside its precision context), for its records."""
    from rnn_ref.backends import devices

    cpu_name = str(devices.cpu()["model"])
    if variant in GPU_VARIANTS:
        mode = "fp16" if variant.endswith("fp16]") else (
            "fp32" if variant.endswith("fp32]") else "default")
        if variant.startswith("torch"):
            import torch

            with devices.torch_precision(torch, "fp32" if mode == "fp32" else "default"):
                settings = devices.torch_settings(torch)
            return {"device": "cuda", "device_name": torch.cuda.get_device_name(0),
                    "precision_mode": mode, "precision_settings": settings}
        import jax

        with devices.jax_precision(jax, mode):
            settings = devices.jax_settings(jax)
        return {"device": "gpu", "device_name": str(jax.devices("gpu")[0].device_kind),
                "precision_mode": mode, "precision_settings": settings}
    settings: dict[str, Any] = {}
    if variant == "torch":
        settings = devices.torch_settings()
    elif variant.startswith(("jax", "keras[jax]")):
        settings = devices.jax_settings()
    return {"device": "cpu", "device_name": cpu_name, "precision_mode": "default",
            "precision_settings": settings}


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
    if variant.startswith("torch[cuda"):
        return _build_gpu_torch(variant, params, x)
    if variant in GPU_VARIANTS:
        return _build_gpu_jax(variant, params, x)
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
    ``(N, T, D, M)``: timed (see :func:`timed`), or skipped with the reason. Each record
    says where and how the variant computed (:func:`environment`)."""
    records: list[dict[str, Any]] = []
    jobs: dict[str, Callable[[], Any]] = {}
    bases: dict[str, dict[str, Any]] = {}
    for variant in variants:
        dtype = {"numpy-f64": "float64", "torch[cuda,fp16]": "float16"}.get(variant, "float32")
        base = {"kind": "result", "backend": variant, "shape": list(shape),
                "threads": threads, "dtype": dtype, "flops": flops(*shape)}
        try:
            base.update(_environment(variant))
            fwd, fwd_bwd = build(variant, shape, threads)  # type: ignore[arg-type]
        except Exception as exc:
            records += [{**base, "pass": pass_, "status": "skipped",
                         "reason": f"{type(exc).__name__}: {exc}"}
                        for pass_ in ("forward", "forward_backward")]
            continue
        for pass_, fn in (("forward", fwd), ("forward_backward", fwd_bwd)):
            if fn is None:
                records.append({**base, "pass": pass_, "status": "skipped",
                                "reason": "not measured: forward only on the GPU"
                                if variant in GPU_VARIANTS else "not measured: inference only"})
            else:
                jobs[f"{variant}/{pass_}"] = fn
                bases[f"{variant}/{pass_}"] = {**base, "pass": pass_}
    own = frozenset(k for k in jobs if k.split("/")[0] in SELF_TIMED)
    for key, res in timed(jobs, repeats, own).items():
        if "error" in res:
            records.append({**bases[key], "status": "skipped", "reason": res["error"]})
        else:
            records.append({**bases[key], **res, "status": "ok"})
    return records


@cache
def _environment(variant: str) -> dict[str, Any]:
    return environment(variant)


def with_peaks(records: list[dict[str, Any]], peaks: dict[str, float]) -> list[dict[str, Any]]:
    """Each record with its GFLOP/s and fraction of the peak of its precision's product
    (``peaks``: ``{"fp32": ...}`` on the CPU, the GPU's per precision, :data:`GPU_PEAK_OF`)."""
    for rec in records:
        peak = peaks[GPU_PEAK_OF.get(rec["backend"], "fp32")]
        rec["peak_gflops"] = peak
        if rec["status"] == "ok":
            work = rec["flops"] * (3 if rec["pass"] == "forward_backward" else 1)
            rec["gflops"] = work / (rec["median_ms"] / 1e3) / 1e9
            rec["peak_fraction"] = rec["gflops"] / peak
    return records


def gpu_run(shapes: list[tuple[int, int, int, int]], repeats: int,
            variants: list[str] | None = None) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The GPU benchmark in this process: every GPU variant at every shape (forward), then
    the GPU's matrix-product peaks; ``(records, peaks)``."""
    records: list[dict[str, Any]] = []
    for shape in shapes:
        records += _shape_records(shape, variants or GPU_VARIANTS, 1, repeats)
    peaks = gpu_matmul_peaks()
    return with_peaks(records, peaks), peaks


def main() -> None:
    args = _parse_args()
    _fix_threads(args.framework, args.threads)
    shapes = [tuple(int(v) for v in text.split(",")) for text in args.shapes]
    variants = args.variants or FRAMEWORK_VARIANTS[args.framework]
    if args.framework == "gpu":
        records, peaks = gpu_run(shapes, args.repeats, variants)  # type: ignore[arg-type]
        print(json.dumps({"kind": "gpu_peaks", "gflops": peaks}), flush=True)
    else:
        records = []
        for shape in shapes:
            records += _shape_records(shape, variants, args.threads, args.repeats)
        # The peak comes last, so that no variant runs after a large product it did not ask
        # for (OpenBLAS's small products are faster after one: see rnn_ref/_blas.py).
        peak = matmul_peak()
        print(json.dumps({"kind": "peak", "threads": args.threads, "gflops": peak}), flush=True)
        records = with_peaks(records, {"fp32": peak})
    for rec in records:
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    sys.exit(main())
