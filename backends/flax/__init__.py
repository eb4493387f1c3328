"""flax: ``SimpleCell`` lists and ``RNN``/``Bidirectional`` modules, read and written (no backend
of its own: the jax one runs them).

Importing this package imports no framework: its ``record.py`` describes the framework
without it; the other modules import it at their top.
"""
