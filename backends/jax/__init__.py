"""JAX: the reference as a ``lax.scan``, forward and gradients, on the CPU or a GPU.

Importing this package imports no framework: its ``record.py`` describes the framework
without it; the other modules import it at their top.
"""
