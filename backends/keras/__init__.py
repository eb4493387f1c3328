"""Keras 3: models, ``.keras``/``.weights.h5``/legacy ``.h5`` files, and a backend per Keras
backend (run in a worker process).

Importing this package imports no framework: its ``record.py`` describes the framework
without it; the other modules import it at their top.
"""
