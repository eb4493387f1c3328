"""Backends: one module per framework, each with the same names (installed as ``rnn_ref.backends``).

Importing this package imports no framework; each module imports its framework at its top, and
:func:`rnn_ref.get_backend` is the lazy boundary. A module documents only how its framework
differs from the reference; the contract is documented once, in :mod:`rnn_ref._registry`.
"""
