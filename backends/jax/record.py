"""JAX: the reference as a lax.scan; holds every network (Elman, GRU and LSTM layers)."""

from __future__ import annotations

from rnn_ref.backends.records import BackendSpec, Framework, nothing_unsupported

unsupported = nothing_unsupported


FRAMEWORK = Framework(
    name="jax", title="jax lax.scan", module="rnn_ref.backends.jax.backend",
    requires=("jax", "jaxlib"), distributions=("jax", "jaxlib"),
    unsupported=unsupported,
    backends=(BackendSpec("jax", "rnn_ref.backends.jax.backend:JaxBackend",
                          ("jax", "jaxlib")),
              # JAX's default matmul precision on a GPU, and "highest"
              BackendSpec("jax[gpu]", "rnn_ref.backends.jax.backend:JaxGpuBackend",
                          ("jax", "jaxlib"), device="gpu"),
              BackendSpec("jax[gpu,fp32]", "rnn_ref.backends.jax.backend:JaxGpuFp32Backend",
                          ("jax", "jaxlib"), device="gpu", precision="fp32")),
)
