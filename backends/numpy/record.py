"""The canonical file and the NumPy oracle: holds every network."""

from __future__ import annotations

from rnn_ref.backends.records import BackendSpec, FileFormat, Framework, nothing_unsupported

unsupported = nothing_unsupported


FRAMEWORK = Framework(
    name="rnn-ref", title="rnn-ref", module="rnn_ref.backends.numpy.backend",
    requires=("numpy",), distributions=("numpy",), unsupported=unsupported,
    formats=(FileFormat("rnn-ref", (".npz",), "the canonical file (rnn_ref.load)"),),
    files="rnn_ref.backends.numpy.files",
    backends=(BackendSpec("numpy", "rnn_ref.backends.numpy.backend:NumpyBackend",
                          ("numpy",)),),
)
