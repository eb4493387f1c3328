"""MLX: ``mlx.nn.RNN``, converters and oracle (the backend: ``backend.py``).

How MLX differs from the reference (mlx 0.32.4, ``mlx/nn/layers/recurrent.py``, class ``RNN``;
``h_t = f(x_t @ Wxh.T + bias + h_{t-1} @ Whh.T)``):

* ``nn.RNN(input_size, hidden_size, bias=True, nonlinearity=None)`` is one forward layer with
  no batch_first switch: it takes ``(N, T, D)`` or ``(T, D)`` (batch-major, or unbatched) and
  ``hidden (N, M)`` (the initial state, default none: step 0 is ``f(x_0 @ Wxh.T + bias)``, the
  same numbers as a zero state), and returns every step's state ``(N, T, M)``; there is no
  separate final state (it is the last step's output), no lengths, no mask, no reverse or
  bidirectional layer, no clip and no stacking argument. A stack is a Python list of layers
  (or an ``nn.Sequential`` of them), which may differ in hidden size and nonlinearity.
* Weights are (out, in), as torch's: ``Wxh (M, D_l) = w_x.T``, ``Whh (M, M) = w_h.T``; one
  bias ``bias (M,) = b_x + b_h`` (read back as ``b_x = bias, b_h = 0``, the bias rule of
  docs/spec.md 3.3), absent with ``bias=False``.
* The layout changed in mlx v0.18.0 (commit c6739ba7f, "Faster RNN layers", PR #1419,
  2024-09-17). From v0.7.0 (where ``RNN`` arrived, PR #268) to v0.17.3 the same names held
  ``Wxh (D, M) = w_x`` and ``Whh = w_h``, used as ``x @ Wxh`` and ``h @ Whh``: both matrices
  are transposed between the two layouts, and ``Whh`` has the same shape in both. Today's
  ``load_weights`` refuses an old file when ``D != M`` (a shape mismatch) but loads a square
  one silently, transposed. :func:`from_native` therefore reads a parameter dict by its
  shapes when ``Wxh`` is not square (and warns when they say "old"), and asks for
  ``layout="old"|"new"`` when every ``Wxh`` is square.
* ``nonlinearity`` is any callable (default ``nn.tanh``). Read and written here: tanh, relu,
  sigmoid, softplus, softsign (``nn.tanh``, ``mx.tanh``, ``nn.relu``...), linear (this
  module's :func:`identity`), elu (``nn.elu``, ``functools.partial(nn.elu, alpha=a)``) and
  leaky_relu with ``0 <= alpha <= 1`` (``functools.partial(nn.leaky_relu,
  negative_slope=a)``; mlx computes ``max(alpha z, z)``). A parameter dict does not record
  it: mlx's default tanh unless ``activation=`` says.
* ``nn.RNN`` keeps ``nonlinearity or tanh``, and an mlx ``Module`` is a dict: an activation
  module without parameters (``nn.ReLU()``, ``nn.Identity()``, ``nn.ELU(0.5)``...) is empty,
  so false, and silently replaced by tanh (a recorded deviation). The module then holds
  ``tanh`` and is read as tanh, which is what it computes.

What MLX cannot hold is :func:`unsupported` (a pure function of the config). The backend
runs the layers on the CPU in float32 or float64 and refuses lengths and masks; an empty
sequence (T = 0) makes ``nn.RNN`` raise (a recorded deviation, ``mlx/deviations/mlx.json``).
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from rnn_ref.activations import Activation
from rnn_ref.backends._common import raise_if
from rnn_ref.backends.mlx.record import MLX_ACTIVATIONS, unsupported
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.params import CellParams, RNNParams
from rnn_ref.reference import forward

__all__ = ["LAYOUTS", "MLX_ACTIVATIONS", "NAME", "from_native", "identity", "oracle", "owns",
           "to_native", "unsupported"]

NAME = "mlx.nn.RNN"
#: parameter layouts: "new" (mlx >= 0.18.0, Wxh (M, D)) and "old" (mlx 0.7.0-0.17.x, (D, M))
LAYOUTS = ("old", "new")
_LAYOUT_TEXT = {
    "new": "layout='new' (mlx >= 0.18.0: Wxh (H, I), used as x @ Wxh.T and h @ Whh.T)",
    "old": "layout='old' (mlx 0.7.0 to 0.17.x: Wxh (I, H), used as x @ Wxh and h @ Whh)",
}
MLX_DTYPES = {np.dtype(np.float32): mx.float32, np.dtype(np.float64): mx.float64}


# --------------------------------------------------------------------------------------------
# activations (what MLX cannot hold is the pure unsupported of backends/mlx/record.py)
# --------------------------------------------------------------------------------------------
def _plain_functions() -> dict[int, str]:
    """id of an mlx function -> rnn-ref name (mlx's compiled functions are not hashable)."""
    pairs = [(nn.tanh, "tanh"), (mx.tanh, "tanh"), (nn.relu, "relu"), (nn.sigmoid, "sigmoid"),
             (mx.sigmoid, "sigmoid"), (nn.softplus, "softplus"), (nn.softsign, "softsign"),
             (nn.elu, "elu"), (nn.leaky_relu, "leaky_relu"), (identity, "linear")]
    return {id(f): name for f, name in pairs}


_CLASSES: dict[type, str] = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.Sigmoid: "sigmoid",
                             nn.Softplus: "softplus", nn.Softsign: "softsign",
                             nn.Identity: "linear"}
#: the parameter of each parameterised mlx function: (keyword, mlx's default)
_PARAMETER = {"elu": ("alpha", 1.0), "leaky_relu": ("negative_slope", 0.01)}


def _describe(fn: Any) -> str:
    return str(getattr(fn, "__name__", None) or type(fn).__name__)


def _activation_of(fn: Any) -> Activation | None:
    """The activation an ``nn.RNN``'s ``nonlinearity`` computes, ``None`` if not known.

    Raises:
        UnsupportedError: a leaky relu of slope outside [0, 1]: mlx computes ``max(a z, z)``,
            which is the leaky relu only there.
    """
    act = _named_activation(fn)
    if act is not None and act.name == "leaky_relu" and not 0.0 <= float(act.alpha or 0) <= 1:
        raise UnsupportedError("rnn-ref", f"mlx's leaky_relu with negative_slope {act.alpha}",
                               "mlx computes max(slope * z, z), a leaky relu only for a slope "
                               "in [0, 1]")
    return act


def _named_activation(fn: Any) -> Activation | None:
    plain = _plain_functions()
    kwargs: dict[str, Any] = {}
    if isinstance(fn, functools.partial) and not fn.args:
        fn, kwargs = fn.func, dict(fn.keywords)
    if isinstance(fn, nn.ELU):
        return Activation("elu", alpha=float(fn._alpha))
    if isinstance(fn, nn.LeakyReLU):
        return Activation("leaky_relu", alpha=float(fn._negative_slope))
    if type(fn) in _CLASSES and not kwargs:
        return Activation(_CLASSES[type(fn)])
    name = plain.get(id(fn))
    if name is None:
        return None
    if name in _PARAMETER:
        key, default = _PARAMETER[name]
        if set(kwargs) - {key}:
            return None
        return Activation(name, alpha=float(kwargs.get(key, default)))
    return None if kwargs else Activation(name)


def identity(x: Any) -> Any:
    """The linear activation as an ``nn.RNN`` nonlinearity (``nn.Identity()``, a module, would
    be replaced by tanh: see the module docstring)."""
    return x


def _mlx_function(act: Activation) -> Callable[[Any], Any]:
    """The ``nonlinearity`` to give ``nn.RNN`` for ``act`` (one of :data:`MLX_ACTIVATIONS`)."""
    simple: dict[str, Callable[[Any], Any]] = {
        "tanh": nn.tanh, "relu": nn.relu, "sigmoid": nn.sigmoid, "softplus": nn.softplus,
        "softsign": nn.softsign, "linear": identity}
    if act.name in simple:
        return simple[act.name]
    key = _PARAMETER[act.name][0]
    return functools.partial(nn.elu if act.name == "elu" else nn.leaky_relu,
                             **{key: act.alpha})


# --------------------------------------------------------------------------------------------
# from mlx
# --------------------------------------------------------------------------------------------
_FLAT_KEY = re.compile(r"^(?:layers\.)?(?:(\d+)\.)?(Wxh|Whh|bias)$")
_Layer = tuple[dict[str, np.ndarray[Any, Any]], Any, bool]  # arrays, nonlinearity, from a module
_NO_FN = object()  # a parameter dict: no nonlinearity recorded


def _numpy(value: Any) -> np.ndarray[Any, Any]:
    if isinstance(value, mx.array):
        if value.dtype == mx.bfloat16:
            raise TypeError("bfloat16 has no NumPy dtype: cast the parameters with "
                            ".astype(mx.float32) first")
        return np.array(value)
    return np.asarray(value)


def _module_layer(module: Any) -> _Layer:
    if not isinstance(module, nn.RNN):
        raise UnsupportedError("rnn-ref", f"mlx.nn.{type(module).__name__}",
                               "only mlx.nn.RNN is an Elman RNN")
    arrays = {"Wxh": _numpy(module.Wxh), "Whh": _numpy(module.Whh)}
    if module.bias is not None:
        arrays["bias"] = _numpy(module.bias)
    return arrays, module.nonlinearity, True


def _dict_layer(obj: Mapping[str, Any], where: str) -> _Layer:
    keys = {k for k, v in obj.items() if not (isinstance(v, Mapping) and not v)}
    unknown = sorted(keys - {"Wxh", "Whh", "bias"})
    if unknown or not {"Wxh", "Whh"} <= keys:
        raise ValueError(f"{where}: not mlx.nn.RNN parameters: keys {sorted(keys)}; expected "
                         f"Wxh, Whh and optionally bias")
    arrays = {k: _numpy(obj[k]) for k in ("Wxh", "Whh", "bias") if obj.get(k) is not None}
    return arrays, _NO_FN, False


def _unflatten(obj: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """Flat keys (``Wxh``, ``0.Wxh``, ``layers.0.Wxh``, as ``mx.load`` gives a saved
    ``tree_flatten``) as one dict per layer; ``None`` when the keys are not flat."""
    matches = {k: _FLAT_KEY.match(k) for k in obj if isinstance(k, str)}
    if not any(m is not None and m.group(1) is not None for m in matches.values()):
        return None
    bad = [k for k, m in matches.items() if m is None or m.group(1) is None]
    if bad:
        raise ValueError(f"unexpected keys {bad} among layer keys like 'layers.0.Wxh'")
    layers: dict[int, dict[str, Any]] = {}
    for k, m in matches.items():
        assert m is not None
        layers.setdefault(int(m.group(1)), {})[m.group(2)] = obj[k]
    if sorted(layers) != list(range(len(layers))):
        raise ValueError(f"layer indices {sorted(layers)} are not 0..{len(layers) - 1}")
    return [layers[i] for i in range(len(layers))]


def _layers(obj: Any) -> list[_Layer]:
    """One ``(arrays, nonlinearity, from a module)`` per layer of what :func:`from_native`
    takes."""
    if isinstance(obj, nn.Sequential):
        obj = list(obj.layers)
    elif isinstance(obj, nn.Module):  # before Mapping: an mlx Module is a dict
        return [_module_layer(obj)]
    if isinstance(obj, Mapping):
        flat = _unflatten(obj)
        if flat is not None:
            obj = flat
        elif "layers" in obj and len(obj) == 1:  # nn.Sequential(...).parameters()
            obj = list(obj["layers"])
        else:
            return [_dict_layer(obj, "the parameters")]
    if not isinstance(obj, (list, tuple)) or not obj:
        raise TypeError(f"from_mlx takes an mlx.nn.RNN, a list or nn.Sequential of them, or "
                        f"their parameters, got {type(obj).__name__}")
    return [_module_layer(o) if isinstance(o, nn.Module) else
            _dict_layer(o, f"layer {i}") if isinstance(o, Mapping) else _bad_item(o, i)
            for i, o in enumerate(obj)]


def _bad_item(item: Any, i: int) -> _Layer:
    raise TypeError(f"layer {i}: expected an mlx.nn.RNN or its parameters, got "
                    f"{type(item).__name__}")


def _shape_says(wx: tuple[int, ...], wh: tuple[int, ...], li: int) -> str | None:
    """"new", "old", or ``None`` (square ``Wxh``) for one layer's shapes."""
    if len(wh) != 2 or wh[0] != wh[1]:
        raise ValueError(f"layer {li}: Whh must be (H, H), got {wh}")
    h = wh[0]
    if len(wx) != 2 or h not in wx:
        raise ValueError(f"layer {li}: Wxh {wx} does not fit Whh {wh}: neither (H, I) nor "
                         f"(I, H) with H = {h}")
    if wx[0] == wx[1]:
        return None
    return "new" if wx[0] == h else "old"


def _resolve_layout(layers: list[_Layer], layout: str | None) -> str:
    """The layout of parameter dicts: from the shapes where a ``Wxh`` is not square, else
    ``layout``; ``ValueError`` when they disagree or neither says."""
    said = {li: _shape_says(a["Wxh"].shape, a["Whh"].shape, li)
            for li, (a, _, _) in enumerate(layers)}
    found = {s for s in said.values() if s is not None}
    if len(found) > 1:
        raise ValueError(f"the layers disagree on the layout: {said}")
    if not found:
        if layout is None:
            wx = layers[0][0]["Wxh"].shape
            raise ValueError(
                f"the layout is ambiguous: every Wxh is square (I == H, {wx}), so the shapes "
                f"cannot tell mlx's two layouts apart; pass {_LAYOUT_TEXT['new']} or "
                f"{_LAYOUT_TEXT['old']}")
        return layout
    shapes = found.pop()
    li = next(i for i, s in said.items() if s is not None)
    seen = f"Wxh {layers[li][0]['Wxh'].shape} with Whh {layers[li][0]['Whh'].shape}"
    if layout is not None and layout != shapes:
        raise ValueError(f"layout={layout!r}, but {seen} (layer {li}) is the "
                         f"{_LAYOUT_TEXT[shapes]}")
    if layout is None and shapes == "old":
        warnings.warn(f"{seen} (layer {li}) is the old mlx layout: read as "
                      f"{_LAYOUT_TEXT['old']}; pass layout='old' to say so", UserWarning,
                      stacklevel=3)
    return shapes


def _activations(layers: list[_Layer], activation: Any) -> Any:
    """Each layer's activation: its module's, else ``activation``, else mlx's default tanh;
    a module's known nonlinearity must agree with ``activation`` when both are given."""
    if isinstance(activation, (list, tuple)) and not any(
            isinstance(a, (list, tuple)) for a in activation):
        activation = [[a] for a in activation]  # one per layer (a layer has one direction)
    wanted = None if activation is None else RNNConfig(
        1, 1, num_layers=len(layers), activation=activation).activations
    out = []
    for li, (_, fn, is_module) in enumerate(layers):
        given = None if wanted is None else wanted[li][0]
        own = _activation_of(fn) if is_module else None
        if is_module and own is None and given is None:
            raise UnsupportedError("rnn-ref", f"the mlx nonlinearity {_describe(fn)} (layer "
                                   f"{li})", "pass activation= to say what it computes")
        if own is not None and given is not None and own != given:
            raise ValueError(f"activation={activation!r} but layer {li}'s nonlinearity "
                             f"computes {own}")
        out.append([own or given or Activation("tanh")])
    return out


def from_native(obj: Any, *, layout: str | None = None, activation: Any = None) -> RNNParams:
    """Canonical parameters of ``mlx.nn.RNN`` layers.

    Args:
        obj: an ``mlx.nn.RNN``; a stack of them as a list or an ``nn.Sequential``; or their
            parameters, mx arrays or NumPy: ``{"Wxh", "Whh"[, "bias"]}`` for one layer, a
            list of those, ``nn.Sequential(...).parameters()`` (``{"layers": [...]}``) or the
            flat keys of a saved file (``layers.0.Wxh`` ...).
        layout: for parameters: ``"new"`` (mlx >= 0.18.0, ``Wxh (H, I)``) or ``"old"`` (mlx
            0.7.0 to 0.17.x, ``Wxh (I, H)``, both matrices transposed). Required when every
            ``Wxh`` is square (the shapes cannot tell); otherwise read from the shapes, and a
            ``UserWarning`` says when they are the old layout. Modules are the installed
            mlx's, always ``"new"``.
        activation: parameters do not record the nonlinearity: mlx's default tanh unless
            given (one, or one per layer); a module's own is read, and must agree.

    Raises:
        UnsupportedError: a GRU, LSTM or other module, a nonlinearity not known here, layers
            with and without biases.
        ValueError: an ambiguous or contradicted layout, bad keys or shapes.
    """
    if layout not in (None, *LAYOUTS):
        raise ValueError(f"layout must be 'old' or 'new', got {layout!r}")
    layers = _layers(obj)
    if all(is_module for _, _, is_module in layers):
        if layout == "old":
            raise ValueError("layout='old' is for parameter files: a module of the installed "
                             f"mlx {getattr(mx, '__version__', '')} computes with the new layout")
        layout = "new"
    elif any(is_module for _, _, is_module in layers):
        raise TypeError("give modules or parameter dicts, not both")
    else:
        layout = _resolve_layout(layers, layout)
    biases = {"bias" in arrays for arrays, _, _ in layers}
    if len(biases) > 1:
        raise UnsupportedError("rnn-ref", "layers with and without biases",
                               "RNNConfig has one bias flag")
    cells, sizes = [], []
    for arrays, _, _ in layers:
        wx, wh = arrays["Wxh"], arrays["Whh"]
        if layout == "new":
            wx, wh = wx.T, wh.T
        b = arrays.get("bias", np.zeros(wh.shape[0], wx.dtype))
        cells.append([CellParams(wx, wh, b, np.zeros_like(b))])
        sizes.append(int(wh.shape[0]))
    config = RNNConfig(int(cells[0][0].w_x.shape[0]), tuple(sizes),
                       activation=_activations(layers, activation), bias=biases.pop())
    return RNNParams(config, cells)


# --------------------------------------------------------------------------------------------
# to mlx
# --------------------------------------------------------------------------------------------
def as_mx(a: np.ndarray[Any, Any]) -> mx.array:
    return mx.array(np.ascontiguousarray(a), dtype=MLX_DTYPES[a.dtype])


def to_native(params: RNNParams) -> Any:
    """``mlx.nn.RNN`` layers holding ``params``, in its dtype: one module for one layer,
    else a list of modules (run each on the previous one's outputs).

    Weights are written bit-exactly (``Wxh = w_x.T``, ``Whh = w_h.T``, ``bias = b_x + b_h``
    summed in the parameters' dtype). ``nn.RNN``'s constructor draws from mlx's global
    random state before the weights are replaced.

    Raises:
        UnsupportedError: what :func:`unsupported` names; dtypes other than float32 and
            float64.
    """
    cfg = params.config
    raise_if(unsupported(cfg), NAME)
    if params.dtype not in MLX_DTYPES:
        raise UnsupportedError(NAME, f"dtype {params.dtype}", "use float32 or float64")
    modules = []
    for li in range(cfg.num_layers):
        cell = params.elman_cell(li, 0)
        rnn = nn.RNN(int(cell.w_x.shape[0]), cell.hidden_size, bias=cfg.bias,
                     nonlinearity=_mlx_function(cfg.activation_of(li, 0)))
        rnn.Wxh = as_mx(cell.w_x.T)
        rnn.Whh = as_mx(cell.w_h.T)
        if cfg.bias:
            rnn.bias = as_mx(cell.b_x + cell.b_h)
        modules.append(rnn)
    return modules[0] if len(modules) == 1 else modules


# --------------------------------------------------------------------------------------------
# oracle
# --------------------------------------------------------------------------------------------
def owns(model: Any) -> bool:
    """True for an ``nn.RNN``, and a non-empty list, tuple or ``nn.Sequential`` of them."""
    if isinstance(model, nn.Sequential):
        model = model.layers
    elif isinstance(model, nn.Module):
        return isinstance(model, nn.RNN)
    return (isinstance(model, (list, tuple)) and bool(model)
            and all(isinstance(m, nn.RNN) for m in model))


def oracle(model: Any, *, activation: Any = None
           ) -> Callable[..., np.ndarray[Any, Any]]:
    """A NumPy function returning what the layers return, computed in float64.

    For an ``nn.RNN``: ``f(x, hidden=None)`` as ``model(x, hidden)``: ``x`` is ``(..., T,
    D)`` (``(N, T, D)``, or ``(T, D)`` unbatched), ``hidden`` ``(..., M)``; it returns every
    step's state ``(..., T, M)``. For a list (or ``nn.Sequential``) of them: the last layer's
    outputs after running each on the previous one's, ``hidden`` a sequence of per-layer
    states (or ``None`` entries); an ``nn.Sequential`` itself takes no ``hidden``.
    ``activation`` names a nonlinearity this module does not know.
    """
    params = from_native(model, activation=activation)
    L = params.config.num_layers

    def call(x: Any, hidden: Any = None) -> np.ndarray[Any, Any]:
        xa = np.asarray(x, np.float64)
        if xa.ndim < 2:
            raise ValueError(f"x must be (..., T, D), got shape {xa.shape}")
        lead, (t, d) = xa.shape[:-2], xa.shape[-2:]
        states = [hidden] if L == 1 else (list(hidden) if hidden is not None else [None] * L)
        if len(states) != L:
            raise ValueError(f"hidden holds {len(states)} states for {L} layers")
        h0 = None
        if any(s is not None for s in states):
            h0 = [np.zeros((int(np.prod(lead)), m)) if s is None else
                  np.asarray(s, np.float64).reshape(-1, m)
                  for s, m in zip(states, params.config.hidden_sizes, strict=True)]
        res = forward(params, xa.reshape(-1, t, d), h0=h0)
        return np.ascontiguousarray(res.outputs.reshape(*lead, t, -1))

    return call
