"""torch: ``nn.RNN``, the torch network of any other network, state dicts, traced modules, and the
CPU and CUDA backends.

Importing this package imports no framework: its ``record.py`` describes the framework
without it; the other modules import it at their top.
"""
