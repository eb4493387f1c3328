"""PyTorch: ``torch.nn.RNN``, ``nn.GRU``, ``nn.LSTM``, converters and oracle (the files:
``files.py``; the backends: ``backend.py``).

How torch differs from the reference (``torch/nn/modules/rnn.py``, classes ``RNN``, ``GRU``,
``LSTM``):

* Weights are (out, in): ``weight_ih_l{k} = w_x.T`` ``(M, D_l)``, ``weight_hh_l{k} = w_h.T``;
  two biases, ``bias_ih_l{k} = b_x`` and ``bias_hh_l{k} = b_h``; the backward direction of a
  bidirectional layer has the suffix ``_reverse``. Converting both ways is bit-exact.
* An ``nn.GRU`` packs its gates on the rows in the order r, z, n (``"gru:torch"``) and is
  reset-after (``n = tanh(a_n + r * (h W_hn + b_hn))``); an ``nn.LSTM`` packs i, f, g, o
  (``"lstm:torch"``); each block is read with :func:`rnn_ref.cells.unpack` and transposed.
  Their activations are fixed (sigmoid gates, tanh candidate and cell); no peepholes, no
  coupled input and forget gates. ``proj_size`` P adds ``weight_hr_l{k}`` ``(P, M)``:
  ``w_proj = weight_hr.T``, the recurrent weights are then ``(4M, P)``.
* ``nonlinearity`` (nn.RNN) is ``"tanh"`` or ``"relu"``, one for every layer and direction;
  there is no clip, no reverse-only direction, one ``hidden_size`` for all layers, and the
  directions are always concatenated.
* Variable lengths come as a ``PackedSequence``; ``pad_packed_sequence`` fills padded steps
  with zeros (``padded_output="zeros"``). A mask with holes or left padding cannot be said.
  ``pack_padded_sequence`` refuses a zero length (a recorded deviation).
* ``h0``/``h_n`` are ``(L*R, N, M)`` whatever ``batch_first`` is (``(L*R, N, P)`` with a
  projection); an nn.LSTM's ``c0``/``c_n`` ``(L*R, N, M)`` come with them as ``(h, c)``.

Writing (``to_torch``): a plain stack of one torch cell is an ``nn.RNN``, ``nn.GRU`` or
``nn.LSTM`` (``proj_size`` too); a GRU or LSTM layer torch's modules cannot compute (a
reset-before GRU, peepholes, ``input_forget``, a clip, other activations) is a
:class:`~rnn_ref.backends.torch.network.GatedCell` of plain torch inside a
:class:`TorchNetwork`, exactly the reference's equations (docs/spec.md 2.7).

A readout is a :class:`RNNWithReadout` module: ``.rnn`` (the ``nn.RNN``, ``nn.GRU`` or
``nn.LSTM``) and ``.readout`` (an ``nn.Linear``), returning ``(y, h_n)`` like the module
returns ``(output, h_n)`` (an nn.LSTM's ``(y, (h_n, c_n))``).

The whole network (embedding, stacks of any directions and widths, dropout, the selection, a
head of ``nn.Linear`` layers with softmax) is a :class:`~rnn_ref.backends.torch.network.
TorchNetwork`; any ``nn.Module`` built of those pieces is read from its ``torch.fx`` graph and
any state dict by its key names (:mod:`rnn_ref.backends.torch.graph`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from rnn_ref.backends._common import adopt_padded_output, raise_if
from rnn_ref.backends.torch.graph import (
    RNN_MODULES,
    TORCH_DTYPES,
    Layout,
    build_network,
    candidate_activation,
    cell_switches,
    module_kind,
    module_weights,
    network_params,
    read_module,
    read_state_dict,
    refuse_unknown_recurrent,
    torch_cell,
    torch_weights,
)
from rnn_ref.backends.torch.network import TorchNetwork
from rnn_ref.backends.torch.record import TORCH_READOUT_ACTIVATIONS, torch_lone_rnn, unsupported
from rnn_ref.backends.torch.trace import unwrap_compiled
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.params import RNNParams
from rnn_ref.reference import forward, returned

__all__ = ["NAME", "READOUT_ACTIVATIONS", "RNNWithReadout", "TorchNetwork", "from_native",
           "oracle", "owns", "to_native", "unsupported"]

NAME = "torch.nn.RNN"
#: RNNWithReadout's activations, as torch functions (names: record.py)
READOUT_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = dict(zip(
    TORCH_READOUT_ACTIVATIONS, (lambda t: t, torch.tanh, torch.relu, torch.sigmoid),
    strict=True))


class RNNWithReadout(nn.Module):
    """An ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM`` followed by an ``nn.Linear`` readout (and its
    activation) at every step.

    ``forward(input, hx=None)`` returns ``(y, h_n)`` (an nn.LSTM's ``(y, (h_n, c_n))``, ``hx``
    its ``(h_0, c_0)``): ``y`` is ``(N, T, K)`` (batch-first) or ``(T, N, K)``; a
    ``PackedSequence`` input gives ``y`` on the zero-padded outputs.
    """

    def __init__(self, rnn: nn.RNNBase, readout: nn.Linear, activation: str = "linear"
                 ) -> None:
        super().__init__()
        if activation not in READOUT_ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(READOUT_ACTIVATIONS)}, "
                             f"got {activation!r}")
        self.rnn = rnn
        self.readout = readout
        self.activation = activation

    def forward(self, input: Any, hx: Any = None) -> tuple[torch.Tensor, Any]:
        output, h_n = self.rnn(input, hx)
        if isinstance(output, nn.utils.rnn.PackedSequence):
            output, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=self.rnn.batch_first)
        return READOUT_ACTIVATIONS[self.activation](self.readout(output)), h_n


# --------------------------------------------------------------------------------------------
# from torch
# --------------------------------------------------------------------------------------------


def owns(model: Any) -> bool:
    """True for the models :func:`oracle` takes: any ``nn.Module`` (a Keras layer on the torch
    backend is one too, and is Keras')."""
    return isinstance(model, nn.Module) and not type(model).__module__.startswith("keras")


def _numpy(t: Any) -> np.ndarray[Any, Any]:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)


def from_native(obj: Any, *, example: Any = None, nonlinearity: str | None = None,
                select: str | None = None, head_activation: Any = None) -> RNNParams:
    """Canonical parameters of a torch module or a state dict.

    Args:
        obj: an ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM`` (any ``num_layers``, ``bidirectional``,
            ``bias``, ``proj_size``; the gates split in torch's order and transposed; like a
            state dict, it records no ``dropout``, which changes no value), an
            :class:`RNNWithReadout`, a :class:`TorchNetwork`, an ``nn.RNNCell``,
            ``nn.GRUCell`` or ``nn.LSTMCell`` (one step: a one-layer network whose result is
            the new state, ``select="final"``; an nn.LSTMCell's also returns its cell state,
            ``returns=("result", "c_n[0]")``), any ``nn.Module`` built from the network's
            pieces (read from its ``torch.fx`` graph, see :mod:`rnn_ref.backends.torch.
            graph`), any of them ``torch.compile`` d (read through ``_orig_mod``, never run),
            or a state dict (any prefixes), tensors or arrays.
        example: an input of a module read from its fx graph (``(x, lengths)`` for one whose
            forward packs); when given, the module and the network read from it are run on it
            and must agree (float32 tolerance), and a time-major module's layout is checked.
            A forward that loops over the input's length needs it (its shape). Refused for
            the others, which record their network themselves.
        nonlinearity: ``"tanh"`` or ``"relu"``; required for a state dict holding an
            ``nn.RNN`` (it does not record it), and must agree with a module's when given
            (an nn.GRU's and nn.LSTM's candidate is tanh).
        select, head_activation: for a state dict with ``nn.Linear`` layers, what feeds them
            and one activation per layer (see :func:`~rnn_ref.backends.torch.graph.
            read_state_dict`).

    Raises:
        UnsupportedError: a module with an operation that is not one of the network's pieces
            (named), or a subclass of a recurrent module with a ``forward`` of its own.
        ValueError: an incomplete or inconsistent state dict, named key by key, or a missing
            hint.
    """
    obj = unwrap_compiled(obj)
    if example is not None and (isinstance(obj, (TorchNetwork, nn.RNNBase, RNNWithReadout,
                                                 nn.RNNCellBase))
                                or not isinstance(obj, nn.Module)):
        raise ValueError(f"example= checks a module read from its fx graph; a "
                         f"{type(obj).__name__} records its network itself: leave it out")
    if isinstance(obj, (nn.RNNBase, nn.RNNCellBase)):
        refuse_unknown_recurrent(obj)
    if isinstance(obj, nn.RNNCellBase):
        return _agreeing(_one_step_params(obj), nonlinearity, select, head_activation)
    if isinstance(obj, TorchNetwork):
        return _agreeing(network_params(obj), nonlinearity, select, head_activation)
    if isinstance(obj, RNNWithReadout):
        # its state dict (rnn., readout.) through the one reader, told the head's activation
        return read_state_dict(obj.state_dict(), nonlinearity=_nonlinearity(
            obj.rnn, nonlinearity), head_activation=[obj.activation])
    if isinstance(obj, nn.RNNBase):
        return read_state_dict(module_weights(obj), nonlinearity=_nonlinearity(obj, nonlinearity))
    if isinstance(obj, nn.Module):
        params, layout = read_module(obj, _first(example))
        if example is not None:
            _check_example(obj, params, layout, example)
        return _agreeing(params, nonlinearity, select, head_activation)
    if isinstance(obj, Mapping):
        recorded = any(str(k).endswith("rnn_ref_config") for k in obj)
        params = read_state_dict(obj, nonlinearity=nonlinearity, select=select,
                                 head_activation=head_activation)
        return _agreeing(params, nonlinearity, select, head_activation) if recorded else params
    raise TypeError(f"from_torch takes an nn.Module or a state dict, got {type(obj).__name__}")


def _agreeing(params: RNNParams, nonlinearity: str | None, select: str | None,
              head_activation: Any) -> RNNParams:
    """``params`` read from a source that records the whole network, when every hint given
    says the same; a hint that says otherwise is a ``ValueError`` naming both."""
    cfg = params.config
    acts = {a.name for layer in cfg.activations for a in layer}
    given = {"nonlinearity": nonlinearity, "select": select}
    recorded = {"nonlinearity": acts.pop() if len(acts) == 1 else sorted(acts),
                "select": cfg.select}
    for name, value in given.items():
        if value is not None and value != recorded[name]:
            raise ValueError(f"{name}={value!r} but the module records {recorded[name]!r}; "
                             f"leave the hint out")
    if head_activation is not None:
        hints = [head_activation] if isinstance(head_activation, str) else list(head_activation)
        mine = [str(d.activation) for d in cfg.head]
        if [str(h) for h in hints] != mine:
            raise ValueError(f"head_activation={head_activation!r} but the module records "
                             f"{mine}; leave the hint out")
    return params


def _first(example: Any) -> Any:
    """The input of an example: ``x``, or the first of ``(x, lengths)``."""
    return example[0] if isinstance(example, (tuple, list)) else example


def _one_step_params(cell: nn.RNNCellBase) -> RNNParams:
    """An ``nn.RNNCell``, ``nn.GRUCell`` or ``nn.LSTMCell`` as a one-step network: a forward
    layer whose result is the new state (``select="final"``); an nn.LSTMCell's also returns
    its new cell state (``returns=("result", "c_n[0]")``)."""
    kind = module_kind(cell)
    assert kind is not None
    b_ih = _numpy(cell.bias_ih) if cell.bias else None
    b_hh = _numpy(cell.bias_hh) if cell.bias else None
    config = RNNConfig(cell.input_size, cell.hidden_size, activation=candidate_activation(cell),
                       bias=cell.bias, select="final", **cell_switches([kind], [None]),
                       returns=("result", "c_n[0]") if kind == "lstm" else ("result",))
    return RNNParams(config, [[torch_cell(kind, _numpy(cell.weight_ih), _numpy(cell.weight_hh),
                                          b_ih, b_hh)]])


def _check_example(module: nn.Module, params: RNNParams, layout: Layout, example: Any
                   ) -> None:
    """``UnsupportedError`` unless ``module(example)`` (``module(*example)`` for a tuple
    ``(x, lengths)``) is what the network read from it computes."""
    parts = list(example) if isinstance(example, (tuple, list)) else [example]
    ts = [p if isinstance(p, torch.Tensor) else torch.as_tensor(np.asarray(p)) for p in parts]
    with torch.no_grad():
        want = module(*ts)
    got = _module_call(params, layout)(*[_numpy(t) for t in ts])
    wants, gots = _flat(want), _flat(got)
    if len(wants) != len(gots) or not all(isinstance(w, torch.Tensor) for w in wants):
        raise UnsupportedError("rnn-ref", f"a result of type {type(want).__name__}",
                               f"the network read from the module returns {len(gots)} "
                               f"tensor(s)")
    for w, g in zip(wants, gots, strict=True):
        _agree(module, _numpy(w), np.asarray(g))


def _flat(value: Any) -> list[Any]:
    """The values of nested tuples and lists, in order."""
    if isinstance(value, (tuple, list)):
        return [v for item in value for v in _flat(item)]
    return [value]


def _nest(structure: Any, flat: tuple[Any, ...]) -> Any:
    """``flat`` nested as ``structure`` says (:class:`Layout`'s: nested tuples of indices)."""
    if isinstance(structure, tuple):
        return tuple(_nest(item, flat) for item in structure)
    return flat[structure]


def _agree(module: nn.Module, want: np.ndarray[Any, Any], got: np.ndarray[Any, Any]) -> None:
    """``UnsupportedError`` unless ``got`` (the network's, float64) is the module's ``want``
    within its dtype's tolerance."""
    w = want.astype(np.float64)
    if got.shape != w.shape:
        raise UnsupportedError("rnn-ref", f"{type(module).__name__} on the example",
                               f"it returns shape {w.shape}, the network read from it "
                               f"{got.shape}")
    diff = float(np.abs(got - w).max()) if w.size else 0.0
    tol = (1e-4 if want.dtype == np.float32 else 1e-9) * \
        max(1.0, float(np.abs(w).max()) if w.size else 1.0)
    if not diff <= tol:
        raise UnsupportedError("rnn-ref", f"{type(module).__name__} on the example",
                               f"the network read from its graph differs from it by {diff:.3g}"
                               f" (tolerance {tol:.3g}): its forward does something else")


def _module_call(params: RNNParams, layout: Layout) -> Callable[..., Any]:
    """The oracle of a module read from its graph: its input and result in its layout (a
    tuple for a module of several outputs, ``RNNConfig.returns``, nested as the module nests
    them: ``(out, (h_n, c_n))``)."""

    def call(x: Any, lengths: Any = None) -> Any:
        a = np.asarray(x)
        if layout.time_major:
            a = np.swapaxes(a, 0, 1)
        if layout.lengths:
            if lengths is None:
                raise ValueError("the module packs its input: call the oracle with "
                                 "(x, lengths), as its forward takes them")
            lengths = np.asarray(lengths)
            a = _fit_length(a, layout.time, lengths)
        full = forward(params, a, lengths=lengths)
        if params.config.returns != ("result",):
            flat = tuple(_in_layout(item, name, layout) for name, item in zip(
                params.config.returns, returned(params.config, full), strict=True))
            return flat if layout.structure is None else _nest(layout.structure, flat)
        return _in_layout(full.result, "result", layout)

    return call


def _in_layout(a: Any, name: str, layout: Layout) -> Any:
    """One returned array (``RNNConfig.returns`` ``name``) in the module's layout: a sequence
    time-major when the module is."""
    if isinstance(a, tuple):
        return a
    res = np.asarray(a)
    if layout.time_major and (name == "sequence" or name == "result" and layout.sequence):
        res = np.swapaxes(res, 0, 1)
    return np.ascontiguousarray(res)


def _fit_length(x: np.ndarray[Any, Any], time: str | int, lengths: np.ndarray[Any, Any]
                ) -> np.ndarray[Any, Any]:
    """Batch-first ``x`` cut or zero-padded on its time axis to the length
    ``pad_packed_sequence`` gives (:class:`Layout`'s ``time``); the steps cut or added are
    padded steps of every sample."""
    if time == "input":
        return x
    t = int(lengths.max()) if time == "longest" and lengths.size else \
        int(time) if time != "longest" else 0
    if x.shape[1] >= t:
        return x[:, :t]
    pad = np.zeros((x.shape[0], t - x.shape[1], *x.shape[2:]), x.dtype)
    return np.concatenate([x, pad], axis=1)


def _nonlinearity(rnn: nn.RNNBase, given: str | None) -> str | None:
    """An ``nn.RNN``'s nonlinearity (``given`` must agree); ``None`` for an ``nn.GRU`` or
    ``nn.LSTM`` (tanh, fixed: ``given`` may only say so)."""
    own = candidate_activation(rnn)
    if given is not None and given != own:
        raise ValueError(f"nonlinearity={given!r} but the module's is {own!r}")
    return own if module_kind(rnn) == "elman" else None


# --------------------------------------------------------------------------------------------
# to torch
# --------------------------------------------------------------------------------------------
def _tensor(a: np.ndarray[Any, Any]) -> torch.Tensor:
    return torch.tensor(np.ascontiguousarray(a))


def is_lone_rnn(config: RNNConfig) -> bool:
    """Whether one ``nn.RNN`` (with an :class:`RNNWithReadout` readout) holds the network
    (:func:`~rnn_ref.backends.torch.record.torch_lone_rnn`, which also decides what a torch
    file records)."""
    return torch_lone_rnn(config)


def to_native(params: RNNParams, *, batch_first: bool = True, strict: bool = False
              ) -> nn.Module:
    """A ready torch module in eval mode, in the params' dtype: an ``nn.RNN``, ``nn.GRU`` or
    ``nn.LSTM`` (``proj_size`` for a projected LSTM; an :class:`RNNWithReadout` with a
    readout) when one holds the network (:func:`is_lone_rnn`), else a :class:`TorchNetwork`
    running the whole network on batch-first input (``forward(x, lengths=None, mask=None,
    h0=None, c0=None)``; a tuple of outputs for several ``returns``), with the GRU and LSTM
    layers torch's modules cannot compute as :class:`~rnn_ref.backends.torch.network.
    GatedCell` s of plain torch.

    A network whose padded steps output something other than zeros converts with a
    ``SemanticsWarning`` (torch zero-pads packed sequences); ``strict=True`` refuses it.
    ``batch_first=False`` applies to a lone module; it is refused for a
    :class:`TorchNetwork`, which takes batch-first input.

    Raises:
        UnsupportedError: what torch cannot compute (see :func:`unsupported`), the padded
            steps with ``strict``, or ``batch_first=False`` for a :class:`TorchNetwork`.
    """
    raise_if(unsupported(params.config), NAME)
    params = adopt_padded_output(params, "zeros", NAME, strict=strict)
    cfg = params.config
    if params.dtype not in TORCH_DTYPES:
        raise UnsupportedError(NAME, f"dtype {params.dtype}", "use float32 or float64")
    if not is_lone_rnn(cfg):
        if not batch_first:
            raise UnsupportedError(NAME, "batch_first=False for this network",
                                   "its module (TorchNetwork) takes batch-first input; only a "
                                   "lone nn.RNN, nn.GRU or nn.LSTM (with a per-step readout) "
                                   "is written time-major")
        return build_network(params)
    return _lone_rnn(params, batch_first)


def _lone_rnn(params: RNNParams, batch_first: bool) -> nn.Module:
    """The ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM`` (or :class:`RNNWithReadout`) of a network
    :func:`is_lone_rnn` holds; a gated cell's blocks packed in torch's order
    (:func:`~rnn_ref.backends.torch.graph.torch_weights`)."""
    cfg = params.config
    dtype = TORCH_DTYPES[params.dtype]
    spec = cfg.cell_of(0)
    extra: dict[str, Any] = {"nonlinearity": cfg.activation_of(0, 0).name} \
        if spec.kind == "elman" else {"proj_size": spec.proj_size or 0} \
        if spec.kind == "lstm" else {}
    rnn = RNN_MODULES[spec.kind](cfg.input_size, cfg.hidden_sizes[0],
                                 num_layers=cfg.num_layers, bias=cfg.bias,
                                 batch_first=batch_first,
                                 bidirectional=cfg.num_directions == 2, dtype=dtype, **extra)
    with torch.no_grad():
        for li, layer in enumerate(params.layers):
            for r, cell in enumerate(layer):
                sfx = f"_l{li}" + ("_reverse" if r else "")
                for name, value in torch_weights(cell).items():
                    if cfg.bias or not name.startswith("bias"):
                        getattr(rnn, f"{name}{sfx}").copy_(_tensor(value))
    rnn.eval()
    if params.readout is None:
        return rnn
    w, b = params.readout.w, params.readout.b
    linear = nn.Linear(w.shape[0], w.shape[1], dtype=dtype)
    with torch.no_grad():
        linear.weight.copy_(_tensor(w.T))
        linear.bias.copy_(_tensor(b))
    return RNNWithReadout(rnn, linear, cfg.output_activation.name).eval()


# --------------------------------------------------------------------------------------------
# oracle and backend
# --------------------------------------------------------------------------------------------
def oracle(model: nn.Module) -> Callable[..., Any]:
    """A NumPy function returning what ``model(input, hx)`` returns, computed in float64.

    For a :class:`TorchNetwork` it takes ``(x, lengths=None, mask=None, h0=None, c0=None)``
    (a tuple of results for several ``returns``), for any other
    module of the network's pieces ``(x, lengths=None)`` in the module's own layout (read from
    its graph at the first call, with that ``x``'s shape), and returns the module's result
    (nested as it nests them: ``(out, (h_n, c_n))``); a module whose forward packs its input
    takes ``(x, lengths)`` and returns what ``pad_packed_sequence`` makes (``max(lengths)``
    steps unless it gives ``total_length``). For an ``nn.RNNCell`` or ``nn.GRUCell`` it takes
    ``(input, hx=None)`` and returns the new state, for an ``nn.LSTMCell`` ``(input,
    hx=None)`` with ``hx = (h, c)`` and returns ``(h', c')``. A ``torch.compile`` d module is
    read through its ``_orig_mod``. For an ``nn.RNN``, ``nn.GRU``, ``nn.LSTM`` or
    :class:`RNNWithReadout`:

    The function takes ``(input, hx=None, *, lengths=None)``: ``input`` is ``(N, T, D)`` with
    ``batch_first`` or ``(T, N, D)`` without (``(T, D)`` unbatched), ``hx`` is
    ``(L*R, N, M)`` (an nn.LSTM's ``(h_0, c_0)``, ``h_0`` ``(L*R, N, P)`` with ``proj_size``
    P, ``c_0`` ``(L*R, N, M)``). For what a ``PackedSequence`` gives, pass the padded input
    and ``lengths``: the result is what ``pad_packed_sequence`` returns (zeros at padded
    steps, ``T`` = the longest length). It returns ``(output, h_n)`` (an nn.LSTM's
    ``(output, (h_n, c_n))``), or ``(y, h_n)`` for a :class:`RNNWithReadout`.

    Raises:
        UnsupportedError: ``model`` is or holds a subclass of a recurrent module or cell with
            a ``forward`` of its own (named), at once rather than at the first call.
    """
    model = unwrap_compiled(model)
    refuse_unknown_recurrent(model, "rnn_ref.oracle")  # now, not at the first call's trace
    if isinstance(model, TorchNetwork):
        return _network_oracle(from_native(model))
    if isinstance(model, nn.RNNCellBase):
        return _cell_oracle(model)
    if not isinstance(model, (nn.RNNBase, RNNWithReadout)):
        return _lazy_oracle(model)
    return _module_oracle(model)


def _split_hx(hx: Any, lstm: bool, name: str) -> tuple[Any, Any]:
    """``(h0, c0)`` of what a torch module or cell takes as ``hx``: one tensor, or an
    nn.LSTM's (nn.LSTMCell's) pair; ``ValueError`` for the other form."""
    pair = isinstance(hx, (tuple, list))
    if lstm and hx is not None and not (pair and len(hx) == 2):
        raise ValueError(f"an nn.{name} takes hx=(h_0, c_0), got {type(hx).__name__}")
    if not lstm and pair:
        raise ValueError(f"an nn.{name} takes hx, one tensor, got a {type(hx).__name__}")
    return (hx[0], hx[1]) if lstm and hx is not None else (hx, None)


def _module_oracle(model: nn.RNNBase | RNNWithReadout) -> Callable[..., Any]:
    """The oracle of an ``nn.RNN``, ``nn.GRU``, ``nn.LSTM`` or :class:`RNNWithReadout`
    (see :func:`oracle`)."""
    params = from_native(model)
    rnn = model.rnn if isinstance(model, RNNWithReadout) else model
    batch_first = bool(rnn.batch_first)
    lstm = module_kind(rnn) == "lstm"

    def call(input: Any, hx: Any = None, *, lengths: Any = None) -> tuple[Any, Any]:
        x = np.asarray(input)
        h0, c0 = _split_hx(hx, lstm, type(rnn).__name__)
        unbatched = x.ndim == 2
        if unbatched:
            x = x[None] if batch_first else x[:, None]
            h0 = None if h0 is None else np.asarray(h0)[:, None]
            c0 = None if c0 is None else np.asarray(c0)[:, None]
        if x.ndim != 3:
            raise ValueError(f"input must be (N, T, D) or (T, D), got shape {x.shape}")
        if not batch_first:
            x = x.transpose(1, 0, 2)
        if lengths is not None:
            la = np.asarray(lengths)
            if la.ndim == 1 and la.size and la.min() == 0:
                raise ValueError("torch cannot pack a zero length (pack_padded_sequence)")
            x = x[:, : int(la.max())] if la.size else x
        res = forward(params, x, h0=h0, c0=c0, lengths=lengths, padded_output="zeros")
        main = res.y if res.y is not None else res.outputs
        if not batch_first:
            main = main.transpose(1, 0, 2)
        h_n, c_n = res.h_n, res.c_n
        if unbatched:
            main = main[0] if batch_first else main[:, 0]
            h_n = h_n[:, 0]
            c_n = None if c_n is None else c_n[:, 0]
        return np.ascontiguousarray(main), ((h_n, c_n) if lstm else h_n)

    return call


def _cell_oracle(cell: nn.RNNCellBase) -> Callable[..., Any]:
    """``f(input, hx=None)``: what ``cell(input, hx)`` returns (the new state ``(N, M)``, or
    ``(M,)`` for an unbatched ``(D,)`` input; ``hx`` zeros when left out), in float64; for an
    ``nn.LSTMCell`` ``hx`` is ``(h, c)`` and it returns ``(h', c')``."""
    params = _one_step_params(cell)
    kind = module_kind(cell)
    name = type(cell).__name__

    def call(input: Any, hx: Any = None) -> Any:
        x = np.asarray(input)
        if x.ndim not in (1, 2):
            raise ValueError(f"an nn.{name} takes input (N, D) or (D,), got shape {x.shape}")
        h, c = _split_hx(hx, kind == "lstm", name)
        h0 = None if h is None else np.asarray(h).reshape(1, -1, cell.hidden_size)
        c0 = None if c is None else np.asarray(c).reshape(1, -1, cell.hidden_size)
        res = forward(params, x.reshape(-1, 1, x.shape[-1]), h0=h0, c0=c0)
        shape = (-1,) if x.ndim == 1 else (x.shape[0], -1)
        new_h = np.asarray(res.result).reshape(shape)
        return (new_h, np.asarray(res.c_n[0]).reshape(shape)) if kind == "lstm" else new_h

    return call


def _network_oracle(params: RNNParams) -> Callable[..., Any]:
    """What a :class:`TorchNetwork` returns for ``(x, lengths=None, mask=None, h0=None,
    c0=None)``: its result, or the tuple its config's ``returns`` names."""
    def call(x: Any, lengths: Any = None, mask: Any = None, h0: Any = None, c0: Any = None
             ) -> Any:
        res = forward(params, x, lengths=lengths, mask=mask, h0=h0, c0=c0)
        if params.config.returns == ("result",):
            return np.asarray(res.result)
        return returned(params.config, res)

    return call


def _lazy_oracle(model: nn.Module) -> Callable[..., Any]:
    """The oracle of any module of the network's pieces, read from its graph at the first
    call: it takes what ``model`` takes (``(N, T, ...)`` or, time-major, ``(T, N, ...)``) and
    returns what it returns, computed in float64."""
    done: list[Callable[..., Any]] = []

    def call(x: Any, lengths: Any = None) -> Any:
        if not done:
            done.append(_module_call(*read_module(model, x)))
        return done[0](x, lengths)

    return call
