"""rnn-ref: the framework-agnostic reference for the Elman recurrent network.

``import rnn_ref`` imports NumPy and nothing else; a framework is imported only when one of its
backends or converters is used.

The public names:

* the spec: :class:`RNNConfig`, :class:`RNNParams`, :class:`CellParams`, :class:`Readout`,
  :class:`Activation`, :func:`init`; the network around the layers: :class:`Dense`,
  :class:`Identity`, :class:`Softmax`, :data:`SELECTS`;
* the oracle: :func:`forward` (fast path), :func:`forward_loop` (the clear loop);
* the canonical file: :func:`save`, :func:`load`;
* backends: :func:`get_backend`, :func:`available_backends`.
"""

from typing import Any

from rnn_ref._lazy import oracle as oracle
from rnn_ref._registry import Backend as Backend
from rnn_ref._registry import available_backends as available_backends
from rnn_ref._registry import get_backend as get_backend
from rnn_ref.activations import ACTIVATIONS as ACTIVATIONS
from rnn_ref.activations import Activation as Activation
from rnn_ref.config import RNNConfig as RNNConfig
from rnn_ref.errors import FileFormatError as FileFormatError
from rnn_ref.errors import SemanticsWarning as SemanticsWarning
from rnn_ref.errors import UnsupportedError as UnsupportedError
from rnn_ref.gradient import BackwardResult as BackwardResult
from rnn_ref.gradient import backward as backward
from rnn_ref.io import load as load
from rnn_ref.io import save as save
from rnn_ref.network import IDENTITY_KINDS as IDENTITY_KINDS
from rnn_ref.network import SELECTS as SELECTS
from rnn_ref.network import Dense as Dense
from rnn_ref.network import Identity as Identity
from rnn_ref.network import Softmax as Softmax
from rnn_ref.params import CellParams as CellParams
from rnn_ref.params import GRUParams as GRUParams
from rnn_ref.params import LSTMParams as LSTMParams
from rnn_ref.params import Readout as Readout
from rnn_ref.params import RNNParams as RNNParams
from rnn_ref.params import init as init
from rnn_ref.reference import ForwardResult as ForwardResult
from rnn_ref.reference import forward as forward
from rnn_ref.reference import forward_loop as forward_loop

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import a converter's framework only when the converter is first used."""
    from rnn_ref import _lazy

    if name in _lazy.CONVERTERS:
        value = _lazy.resolve(name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rnn_ref' has no attribute {name!r}")


def __dir__() -> list[str]:
    from rnn_ref import _lazy

    return sorted([*globals(), *_lazy.CONVERTERS])
