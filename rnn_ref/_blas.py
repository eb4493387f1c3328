"""Priming the BLAS for the oracle's small per-step products.

The fast path's time loop multiplies an ``(N, M)`` state by the ``(M, M)`` recurrent weights
once per step: many small products. On this project's CI machine (a 2-core AMD EPYC virtual
machine, NumPy 2.4.6 with its bundled OpenBLAS, Haswell kernels) such a product runs at 13 to 20
GFLOP/s in a fresh process, and at 28 to 40 GFLOP/s once any product with an inner dimension
about twice as large has run in the process. Measured, one core, float32:

=====================  ==========  ===============================
product                fresh       after a (64, 2M) @ (2M, 2M) one
=====================  ==========  ===============================
(32, 64) @ (64, 64)    19 GFLOP/s  28 GFLOP/s
(64, 128) @ (128, 128) 18 GFLOP/s  40 GFLOP/s
(16, 256) @ (256, 256) 13 GFLOP/s  34 GFLOP/s
=====================  ==========  ===============================

callgrind counts the same instructions in both states and no page faults occur per call, so
the time goes to the memory system. Our guess, which this virtual machine's missing hardware
counters did not let us confirm: OpenBLAS reads ahead into pages of its work buffer that no
product has written yet, and each such read costs a page walk. The oracle's own input
projection does not help: its inner dimension is D. So before a time loop the oracle runs one
product of :func:`prime`'s size, once per process and size class: 0.2 to 7 ms, which made
``forward`` 1.1x to 1.9x faster at the four larger benchmark shapes in a fresh process (1.53x
at (64, 200, 128, 128), 1.87x at (16, 1000, 32, 256)). On a machine without the effect it
costs that once. It never touches a result: the product is discarded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: largest (k, n) primed so far, per dtype
_PRIMED: dict[np.dtype[Any], tuple[int, int]] = {}
#: k or n above this is not primed: the priming product would cost more (about 13 ms for the
#: 1024 class already), and (64, 1024) @ (1024, 1024) ran at 33 GFLOP/s fresh here
LARGEST = 1024


def _size_class(v: int) -> int:
    return 1 << max(v - 1, 0).bit_length()


def prime(dtype: np.dtype[Any], k: int, n: int) -> bool:
    """Make ``(., k) @ (k, n)`` products in ``dtype`` fast; return whether a product ran.

    Runs ``(64, 2k') @ (2k', 2n')`` once per process, with ``k'`` and ``n'`` the powers of two
    at or above ``k`` and ``n``, unless a product at least that large already ran in this
    dtype, or the dtype is not one the BLAS computes (float32, float64), or ``k`` or ``n``
    exceeds :data:`LARGEST`.
    """
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64) or max(k, n) > LARGEST:
        return False
    k, n = _size_class(k), _size_class(n)
    done_k, done_n = _PRIMED.get(dt, (0, 0))
    if k <= done_k and n <= done_n:
        return False
    k, n = max(k, done_k), max(n, done_n)
    np.matmul(np.ones((64, 2 * k), dt), np.ones((2 * k, 2 * n), dt))
    _PRIMED[dt] = (k, n)
    return True
