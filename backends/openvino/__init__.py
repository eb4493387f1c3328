"""OpenVINO: the ONNX graph run by OpenVINO's CPU plugin.

Importing this package imports no framework: its ``record.py`` describes the framework
without it; the other modules import it at their top.
"""
