"""LiteRT: the ``.tflite`` of the Keras model, written and run (not read back as parameters).

Importing this package imports no framework: its ``record.py`` describes the framework
without it; the other modules import it at their top.
"""
