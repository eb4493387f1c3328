"""ONNX: graphs of ``RNN`` nodes written, read (from untrusted files too) and run by onnxruntime.

Importing this package imports no framework: its ``record.py`` describes the framework
without it; the other modules import it at their top.
"""
