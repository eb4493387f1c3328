"""The conformance suite (installed as ``rnn_ref.conformance``).

:mod:`rnn_ref.conformance.compare` holds the tolerance policy and the error report that every
comparison in the project uses: the demo, the converters' verification and the suite's runner.
No collected ``test_*.py`` lives here: pytest would import such files a second time under
another name (docs/spec.md section 6); the project's tests are in the uninstalled ``tests/``.
"""
