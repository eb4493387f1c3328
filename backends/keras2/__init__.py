"""Keras 2 (tf-keras): models and legacy ``.h5`` files, run in a worker process.

Importing this package imports no framework: its ``record.py`` describes the framework
without it; the other modules import it at their top.
"""
