"""The canonical file and the NumPy backend (the oracle itself is :mod:`rnn_ref.reference`).

Importing this package imports no framework: its ``record.py`` describes the framework
without it; the other modules import it at their top.
"""
