"""MLX: a list of ``mlx.nn.RNN`` layers, read, written and run.

Importing this package imports no framework: its ``record.py`` describes the framework
without it; the other modules import it at their top.
"""
