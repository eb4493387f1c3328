"""The records every framework is described by, and the capability rules they share.

A framework package's ``record.py`` fills a :class:`Framework` (its name, modules, file
formats with the hints a file cannot tell, backends) and a pure ``unsupported(config)``
saying what of the network it cannot hold; :mod:`rnn_ref.backends._frameworks` assembles them.
Nothing here, nor in any ``record.py``, imports a framework.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field

from rnn_ref.activations import Activation
from rnn_ref.config import RNNConfig
from rnn_ref.network import POOLINGS

__all__ = ["CONVERTER_API", "DEVICES", "FILE_API", "GATED", "GRAPH_API", "MODULE_API",
           "NETWORK_PIECES",
           "BackendSpec", "FileFormat", "Framework", "Reason", "Unrecorded", "first_activation",
           "missing", "network_unsupported", "nothing_unsupported", "padded_zeros",
           "records_all"]

Reason = tuple[str, str] | None
"""``(feature, why)`` for the first thing a target cannot express, or ``None``."""

#: What every framework module defines: ``unsupported``, and the converter functions where the
#: framework has converters; its files module (``Framework.files``) defines the file functions
#: where it has file formats.
MODULE_API = ("unsupported",)
CONVERTER_API = ("from_native", "to_native", "oracle", "owns")
FILE_API = ("read_file", "write_file", "load_native", "run_native", "list_arrays")
#: ... and for a format that holds a converted graph rather than parameters (not readable)
GRAPH_API = ("describe",)


def missing(modules: tuple[str, ...]) -> list[str]:
    """The modules of ``modules`` that are not installed (found without importing them)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


Unrecorded = Callable[[RNNConfig], dict[str, str]]
"""What a file of a format, written of a network, does not record: hint name -> the value
of that hint (as the command line takes it) that restores the piece."""


def records_all(config: RNNConfig) -> dict[str, str]:
    """A format that records the whole network it is written of."""
    return {}


@dataclass(frozen=True)
class FileFormat:
    """A file format: its name (``--from``/``--to``), extensions and the hints it reads.

    ``hints`` are what a file of this format may not record (a weights-only file's
    activation): a reader takes exactly these, any other hint is an error.
    ``unrecorded(config)`` is the one declaration of what a file written of ``config`` does
    not record, with the hint values that restore it (keys among ``hints``): the writer's
    ``wrote`` line names them, ``--verify`` reads the written file back with exactly them,
    and the reader asks for each (a ``MissingHintError``) rather than assume it.
    ``requires`` are the modules needed to read or write it besides the framework's own.
    ``refuses(config)`` is what a file of this format cannot hold at all even where its
    framework can (a weights-only file has no place for an embedding): ``convertible`` and
    the writer refuse it, so what is written can always be read back. ``loading(config)``
    says what its framework needs to load such a file (a Keras 3 model holding rnn-ref's
    registered activation needs the module that registers it), for the ``wrote`` line.
    """

    name: str
    extensions: tuple[str, ...]
    holds: str
    hints: frozenset[str] = frozenset()
    requires: tuple[str, ...] = ()
    readable: bool = True  # False: written and run, but the parameters cannot be read back
    #: the parameter dtypes its own runtime runs, with the runtime's name; None: any
    runs: tuple[str, tuple[str, ...]] | None = None
    unrecorded: Unrecorded = records_all
    refuses: Callable[[RNNConfig], Reason] = field(default=lambda config: None)
    #: what loading a file written of the config needs besides its framework (a sentence for
    #: the ``wrote`` line: a module to import first), or None
    loading: Callable[[RNNConfig], str | None] = field(default=lambda config: None)


#: where a backend computes: "cpu", or a GPU as its framework names it (torch "cuda", JAX "gpu")
DEVICES = ("cpu", "cuda", "gpu")


@dataclass(frozen=True)
class BackendSpec:
    """A built-in backend: where it lives, which modules it needs (checked, not imported),
    the device it computes on and its precision mode (``"default"``: the framework's default
    arithmetic for float32, TF32 where the framework enables it; ``"fp32"``: strict float32;
    see :mod:`rnn_ref.backends.devices`). A backend on a GPU runs only when named: finding a
    GPU would mean importing its framework."""

    name: str
    target: str  # "module:attribute", the attribute a zero-argument factory or class
    requires: tuple[str, ...]  # importable top-level module names
    device: str = "cpu"  # one of DEVICES
    precision: str = "default"  # "default" or "fp32"

    def missing(self) -> list[str]:
        """The required modules that are not installed (found without importing them)."""
        return missing(self.requires)


@dataclass(frozen=True)
class Framework:
    """One framework, as rnn-ref sees it (see the module docstring)."""

    name: str  # short name: "torch", "keras", "onnx", "flax", "jax", "rnn-ref"
    title: str  # what an UnsupportedError names: "torch.nn.RNN"
    module: str  # its module in rnn_ref.backends: unsupported and the converters (MODULE_API ...)
    requires: tuple[str, ...]  # importable modules the module needs
    distributions: tuple[str, ...]  # pip distributions, for `info` and every report
    unsupported: Callable[[RNNConfig], Reason]
    converters: tuple[str, str] | None = None  # ("from_torch", "to_torch")
    recognised_when: str | None = None  # oracle dispatch: this module must be imported already
    formats: tuple[FileFormat, ...] = ()
    #: the module of the file functions (FILE_API), where it has formats: its package's files.py
    files: str | None = None
    backends: tuple[BackendSpec, ...] = field(default=())

    def missing(self) -> list[str]:
        return missing(self.requires)


# --------------------------------------------------------------------------------------------
# rules more than one framework uses: pure functions of the config
# --------------------------------------------------------------------------------------------
#: The pieces of the network beyond the plain Elman stack (docs/spec.md section 2.6), as
#: :func:`network_unsupported` names them.
#: The gated cells, pieces a framework holds once its converters and backends write them.
GATED = ("gru", "lstm")
NETWORK_PIECES = ("gru", "lstm", "embedding", "mask_value", "mixed_directions", "select",
                  "pooling", "head_stack", "softmax", "dense_without_bias", "returns")


def network_unsupported(config: RNNConfig, holds: frozenset[str] | set[str] = frozenset()
                        ) -> Reason:
    """The first piece of the network beyond the plain stack (:data:`NETWORK_PIECES`) that a
    framework's converters and backends do not hold (``holds`` lists those they do), or
    ``None``. Identity layers are not here: every framework runs them (as nothing)."""
    from rnn_ref.network import Softmax

    head = config.head
    kinds = [c.kind for c in config.cells]
    pieces = (
        ("gru", "gru" in kinds, f"a GRU layer (cells {kinds})"),
        ("lstm", "lstm" in kinds, f"an LSTM layer (cells {kinds})"),
        ("embedding", config.vocab_size is not None,
         f"an embedding (vocab_size={config.vocab_size})"),
        ("mask_value", config.mask_value is not None, f"Masking(mask_value={config.mask_value})"),
        ("mixed_directions", len(set(config.directions)) > 1,
         f"layers of different directions {list(config.directions)}"),
        ("select", config.select not in ("sequence", *POOLINGS), f"select={config.select!r}"),
        ("pooling", config.select in POOLINGS, f"a pooling over time (select={config.select!r})"),
        ("head_stack", len(head) > 1, f"a head of {len(head)} dense layers"),
        ("softmax", any(isinstance(d.activation, Softmax) for d in head),
         "a softmax head layer"),
        ("dense_without_bias", any(not d.bias for d in head), "a head layer without a bias"),
        ("returns", config.returns != ("result",),
         f"several outputs (returns={list(config.returns)})"),
    )
    for name, present, what in pieces:
        if present and name not in holds:
            return what, "this framework's converters do not hold it yet"
    return None


def first_activation(config: RNNConfig, allowed: Callable[[Activation], bool], why: str
                      ) -> Reason:
    for li, layer in enumerate(config.activations):
        for r, act in enumerate(layer):
            if not allowed(act):
                return f"activation {act} (layer {li}, direction {r})", why
    return None


def padded_zeros(config: RNNConfig, how: str) -> Reason:
    if config.padded_output != "zeros":
        return (f"padded_output {config.padded_output!r}",
                f"{how}; use params.replace(padded_output='zeros') to accept that")
    return None


def nothing_unsupported(config: RNNConfig) -> Reason:
    """The canonical file, the oracle and the jax scan hold every network."""
    return None
