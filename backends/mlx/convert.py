"""MLX: ``mlx.nn.RNN``, ``mlx.nn.GRU`` and ``mlx.nn.LSTM``, converters and oracle (the
backend: ``backend.py``).

How MLX differs from the reference (mlx 0.32.4, ``mlx/nn/layers/recurrent.py``, classes
``RNN``, ``GRU``, ``LSTM``; ``RNN``: ``h_t = f(x_t @ Wxh.T + bias + h_{t-1} @ Whh.T)``):

* ``nn.RNN(input_size, hidden_size, bias=True, nonlinearity=None)`` is one forward layer with
  no batch_first switch: it takes ``(N, T, D)`` or ``(T, D)`` (batch-major, or unbatched) and
  ``hidden (N, M)`` (the initial state, default none: step 0 is ``f(x_0 @ Wxh.T + bias)``, the
  same numbers as a zero state), and returns every step's state ``(N, T, M)``; there is no
  separate final state (it is the last step's output), no lengths, no mask, no reverse or
  bidirectional layer, no clip and no stacking argument. A stack is a Python list of layers
  (or an ``nn.Sequential`` of them), which may differ in cell, hidden size and nonlinearity.
* ``nn.GRU(input_size, hidden_size, bias=True)`` is the reset-after GRU (spec 2.7.1) with
  sigmoid gates and a tanh candidate, fixed: ``Wx (3H, I)``, ``Wh (3H, H)`` packed r, z, n
  (``"gru:mlx"``), ``b (3H,)`` on the input side and ``bhn (H,)`` inside ``r *``. Reading,
  ``b_x = b``, ``b_h = (0, 0, bhn)``; writing, ``b = (b_x[r] + b_h[r], b_x[z] + b_h[z],
  b_x[n])``, ``bhn = b_h[n]``: exact. ``gru(x)`` (no hidden) equals ``gru(x, zeros)`` since
  mlx 0.31.2 (ml-explore/mlx #3249, PR #3252: ``bhn`` was skipped at step 0 from v0.7.0 to
  v0.31.1).
* ``nn.LSTM(input_size, hidden_size, bias=True)`` (spec 2.7.2 without peepholes,
  ``input_forget`` or projection) with sigmoid gates and tanh candidate and cell state, fixed:
  ``Wx (4H, I)``, ``Wh (4H, H)`` packed i, f, g, o (``"lstm:mlx"``), one ``bias (4H,)``
  (``b_x`` with ``b_h = 0`` read; ``b_x + b_h`` written). ``lstm(x, hidden, cell)`` returns
  ``(hidden states, cell states)``, each ``(N, T, H)``; the final cell state is the last step's.
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
  ``layout="old"|"new"`` when every ``Wxh`` is square. ``GRU`` and ``LSTM`` changed in the same
  commit (``Wx (I, G*H)``, ``Wh (H, G*H)`` before it): their ``Wh`` is never square, so their
  layout is always read from the shapes.
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
sequence (T = 0) makes every layer raise (a recorded deviation, ``mlx/deviations/mlx.json``),
and in float64 ``mx.sigmoid`` rounds to float32, so every GRU and LSTM is float32-accurate
there (recorded too).
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from rnn_ref.activations import Activation
from rnn_ref.backends._common import raise_if
from rnn_ref.backends.mlx.record import MLX_ACTIVATIONS, target, unsupported
from rnn_ref.cells import pack, unpack
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.params import AnyCellParams, CellParams, GRUParams, LSTMParams, RNNParams
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
_FLAT_KEY = re.compile(r"^(?:layers\.)?(?:(\d+)\.)?(Wxh|Whh|bias|Wx|Wh|b|bhn)$")
_NO_FN = object()  # a parameter dict: no nonlinearity recorded
#: each cell's parameter names: (the weights, the optional biases)
_KEYS = {"elman": (("Wxh", "Whh"), ("bias",)), "gru": (("Wx", "Wh"), ("b", "bhn")),
         "lstm": (("Wx", "Wh"), ("bias",))}
_MODULES = {"elman": "RNN", "gru": "GRU", "lstm": "LSTM"}
#: how many gate blocks each cell packs on its weights' first axis
_GATE_COUNT = {"elman": 1, "gru": 3, "lstm": 4}
_EXPECTED = ("expected Wxh, Whh[, bias] (RNN), Wx, Wh[, b, bhn] (GRU) or Wx, Wh[, bias] "
             "(LSTM)")


@dataclass(frozen=True)
class _Layer:
    """One layer's arrays by mlx's names, its cell, its nonlinearity (an ``nn.RNN``'s) and
    whether it came from a module (``False``: a parameter dict)."""

    kind: str
    arrays: dict[str, np.ndarray[Any, Any]]
    fn: Any
    is_module: bool

    @property
    def has_bias(self) -> bool:
        return any(k in self.arrays for k in _KEYS[self.kind][1])


def _numpy(value: Any) -> np.ndarray[Any, Any]:
    if isinstance(value, mx.array):
        if value.dtype == mx.bfloat16:
            raise TypeError("bfloat16 has no NumPy dtype: cast the parameters with "
                            ".astype(mx.float32) first")
        return np.array(value)
    return np.asarray(value)


def _arrays(kind: str, source: Mapping[str, Any], where: str) -> dict[str, np.ndarray[Any, Any]]:
    """The arrays of one layer (absent or ``None`` biases left out); a GRU's ``b`` and
    ``bhn`` come together or not at all."""
    weights, biases = _KEYS[kind]
    out = {k: _numpy(source[k]) for k in weights}
    out.update({k: _numpy(source[k]) for k in biases if source.get(k) is not None})
    if kind == "gru" and len(out) == 3:
        have = next(k for k in biases if k in out)
        raise ValueError(f"{where}: an mlx.nn.GRU holds both biases b and bhn or neither, "
                         f"got {have} alone")
    return out


def _module_layer(module: Any) -> _Layer:
    for kind, cls in (("elman", nn.RNN), ("gru", nn.GRU), ("lstm", nn.LSTM)):
        if isinstance(module, cls):
            source = {k: getattr(module, k, None) for k in (*_KEYS[kind][0], *_KEYS[kind][1])}
            return _Layer(kind, _arrays(kind, source, f"mlx.nn.{cls.__name__}"),
                          getattr(module, "nonlinearity", None), True)
    raise UnsupportedError("rnn-ref", f"mlx.nn.{type(module).__name__}",
                           "mlx.nn.RNN, mlx.nn.GRU and mlx.nn.LSTM are the recurrent layers "
                           "read")


def _dict_kind(keys: set[str], obj: Mapping[str, Any], where: str) -> str:
    """The cell of a parameter dict: by its names, and for ``Wx``/``Wh`` alone by how many
    blocks ``Wh`` packs (3 a GRU, 4 an LSTM, on whichever axis: both layouts)."""
    for kind in ("elman", "gru", "lstm"):
        weights, biases = _KEYS[kind]
        if set(weights) <= keys and keys <= {*weights, *biases}:
            if kind == "lstm" or (kind == "gru" and keys & {"b", "bhn"}):
                return kind
            if kind == "elman":
                return kind
            shape = np.shape(obj["Wh"])
            if len(shape) == 2 and min(shape) and max(shape) in (3 * min(shape),
                                                                  4 * min(shape)):
                return "gru" if max(shape) == 3 * min(shape) else "lstm"
            raise ValueError(f"{where}: Wh {shape} is neither (3H, H) (GRU) nor (4H, H) "
                             f"(LSTM), nor their old transposes")
    raise ValueError(f"{where}: not mlx.nn.RNN, GRU or LSTM parameters: keys {sorted(keys)}; "
                     f"{_EXPECTED}")


def _dict_layer(obj: Mapping[str, Any], where: str) -> _Layer:
    keys = {k for k, v in obj.items() if not (isinstance(v, Mapping) and not v)}
    keys -= {k for k in keys if obj[k] is None and k in ("bias", "b", "bhn")}
    kind = _dict_kind(keys, obj, where)
    return _Layer(kind, _arrays(kind, obj, where), _NO_FN, False)


def _unflatten(obj: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """Flat keys (``Wxh``, ``0.Wx``, ``layers.0.Wxh``, as ``mx.load`` gives a saved
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
    """One :class:`_Layer` per layer of what :func:`from_native` takes."""
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
        raise TypeError(f"from_mlx takes an mlx.nn.RNN, GRU or LSTM, a list or nn.Sequential "
                        f"of them, or their parameters, got {type(obj).__name__}")
    return [_module_layer(o) if isinstance(o, nn.Module) else
            _dict_layer(o, f"layer {i}") if isinstance(o, Mapping) else _bad_item(o, i)
            for i, o in enumerate(obj)]


def _bad_item(item: Any, i: int) -> _Layer:
    raise TypeError(f"layer {i}: expected an mlx.nn.RNN, GRU or LSTM or its parameters, got "
                    f"{type(item).__name__}")


def _shape_says(layer: _Layer, li: int) -> str | None:
    """"new", "old", or ``None`` (an ``nn.RNN``'s square ``Wxh``) for one layer's shapes.
    A GRU's or LSTM's ``Wh`` is ``(G*H, H)`` in the new layout and ``(H, G*H)`` in the old:
    never square, so it always tells."""
    names = _KEYS[layer.kind][0]
    wx, wh = (layer.arrays[k].shape for k in names)
    g = _GATE_COUNT[layer.kind]
    what = _MODULES[layer.kind]
    if len(wh) != 2 or sorted(wh) != sorted((wh[0] if g == 1 else min(wh), g * min(wh))) or (
            g == 1 and wh[0] != wh[1]):
        want = "(H, H)" if g == 1 else f"({g}H, H) or (H, {g}H)"
        raise ValueError(f"layer {li}: {what} {names[1]} must be {want}, got {wh}")
    h = min(wh)
    if g == 1:
        if len(wx) != 2 or h not in wx:
            raise ValueError(f"layer {li}: Wxh {wx} does not fit Whh {wh}: neither (H, I) nor "
                             f"(I, H) with H = {h}")
        if wx[0] == wx[1]:
            return None
        return "new" if wx[0] == h else "old"
    said = "new" if wh[0] == g * h else "old"
    if len(wx) != 2 or wx[0 if said == "new" else 1] != g * h:
        raise ValueError(f"layer {li}: {what} Wx {wx} does not fit Wh {wh}: "
                         f"{'(' + str(g) + 'H, I)' if said == 'new' else '(I, ' + str(g) + 'H)'}"
                         f" with H = {h} expected")
    return said


def _resolve_layout(layers: list[_Layer], layout: str | None) -> str:
    """The layout of parameter dicts: from the shapes where they tell (a ``Wxh`` that is not
    square, any GRU or LSTM), else ``layout``; ``ValueError`` when they disagree or neither
    says."""
    said = {li: _shape_says(layer, li) for li, layer in enumerate(layers)}
    found = {s for s in said.values() if s is not None}
    if len(found) > 1:
        raise ValueError(f"the layers disagree on the layout: {said}")
    if not found:
        if layout is None:
            wx = layers[0].arrays["Wxh"].shape
            raise ValueError(
                f"the layout is ambiguous: every Wxh is square (I == H, {wx}), so the shapes "
                f"cannot tell mlx's two layouts apart; pass {_LAYOUT_TEXT['new']} or "
                f"{_LAYOUT_TEXT['old']}")
        return layout
    shapes = found.pop()
    li = next(i for i, s in said.items() if s is not None)
    wx_name, wh_name = _KEYS[layers[li].kind][0]
    seen = (f"{wx_name} {layers[li].arrays[wx_name].shape} with {wh_name} "
            f"{layers[li].arrays[wh_name].shape}")
    if layout is not None and layout != shapes:
        raise ValueError(f"layout={layout!r}, but {seen} (layer {li}) is the "
                         f"{_LAYOUT_TEXT[shapes]}")
    if layout is None and shapes == "old":
        warnings.warn(f"{seen} (layer {li}) is the old mlx layout: read as "
                      f"{_LAYOUT_TEXT['old']}; pass layout='old' to say so", UserWarning,
                      stacklevel=3)
    return shapes


def _activations(layers: list[_Layer], activation: Any) -> Any:
    """Each layer's activation: an ``nn.RNN`` module's, else ``activation``, else mlx's
    default tanh; a module's known nonlinearity must agree with ``activation`` when both are
    given. A GRU's or LSTM's is tanh (fixed), and ``activation`` must say so there."""
    spec = activation
    if isinstance(spec, (list, tuple)) and not any(isinstance(a, (list, tuple)) for a in spec):
        spec = [[a] for a in spec]  # one per layer (a layer has one direction)
    wanted = None if spec is None else RNNConfig(
        1, 1, num_layers=len(layers), activation=spec).activations
    out = []
    for li, layer in enumerate(layers):
        given = None if wanted is None else wanted[li][0]
        if layer.kind != "elman":
            if given is not None and given != Activation("tanh"):
                raise ValueError(f"activation={activation!r} but layer {li} is an "
                                 f"mlx.nn.{_MODULES[layer.kind]}, whose candidate activation "
                                 f"is tanh (fixed)")
            out.append([Activation("tanh")])
            continue
        own = _activation_of(layer.fn) if layer.is_module else None
        if layer.is_module and own is None and given is None:
            raise UnsupportedError("rnn-ref", f"the mlx nonlinearity {_describe(layer.fn)} "
                                   f"(layer {li})", "pass activation= to say what it computes")
        if own is not None and given is not None and own != given:
            raise ValueError(f"activation={activation!r} but layer {li}'s nonlinearity "
                             f"computes {own}")
        out.append([own or given or Activation("tanh")])
    return out


def _cell(layer: _Layer, layout: str) -> AnyCellParams:
    """The canonical cell of one layer: transposed from the new layout (out, in), unpacked
    in mlx's gate order; one-bias gates read as ``b_x`` with ``b_h = 0``; a GRU's ``bhn``
    is ``b_h["n"]``."""
    a = layer.arrays
    if layer.kind == "elman":
        wx, wh = a["Wxh"], a["Whh"]
        if layout == "new":
            wx, wh = wx.T, wh.T
        b = a.get("bias", np.zeros(wh.shape[0], wx.dtype))
        return CellParams(wx, wh, b, np.zeros_like(b))
    order = f"{layer.kind}:mlx"
    axis = 0 if layout == "new" else 1
    w_x, w_h = ({g: (blk.T if layout == "new" else blk) for g, blk in
                 unpack(a[k], order, cell=layer.kind, axis=axis).items()}
                for k in ("Wx", "Wh"))
    m = next(iter(w_h.values())).shape[1]
    zero = np.zeros(m, a["Wx"].dtype)
    if layer.kind == "gru":
        b_x = unpack(a["b"], order, cell="gru") if "b" in a else dict.fromkeys("rzn", zero)
        b_h = {"r": zero, "z": zero, "n": a.get("bhn", zero)}
        return GRUParams(w_x, w_h, b_x, b_h)
    b_x = unpack(a["bias"], order, cell="lstm") if "bias" in a else dict.fromkeys("ifgo", zero)
    return LSTMParams(w_x, w_h, b_x, dict.fromkeys("ifgo", zero))


def from_native(obj: Any, *, layout: str | None = None, activation: Any = None) -> RNNParams:
    """Canonical parameters of ``mlx.nn.RNN``, ``mlx.nn.GRU`` and ``mlx.nn.LSTM`` layers.

    Args:
        obj: an ``mlx.nn.RNN``, ``GRU`` or ``LSTM``; a stack of them as a list or an
            ``nn.Sequential``; or their parameters, mx arrays or NumPy: ``{"Wxh", "Whh"[,
            "bias"]}`` (RNN), ``{"Wx", "Wh"[, "b", "bhn"]}`` (GRU), ``{"Wx", "Wh"[,
            "bias"]}`` (LSTM) for one layer, a list of those,
            ``nn.Sequential(...).parameters()`` (``{"layers": [...]}``) or the flat keys of a
            saved file (``layers.0.Wxh`` ...).
        layout: for parameters: ``"new"`` (mlx >= 0.18.0, ``Wxh (H, I)``, ``Wx (G*H, I)``)
            or ``"old"`` (mlx 0.7.0 to 0.17.x, every matrix transposed). Required when the
            shapes cannot tell: every layer an ``nn.RNN`` with a square ``Wxh`` (a GRU's or
            LSTM's ``Wh`` always tells); otherwise read from the shapes, and a
            ``UserWarning`` says when they are the old layout. Modules are the installed
            mlx's, always ``"new"``.
        activation: parameters do not record an ``nn.RNN``'s nonlinearity: mlx's default tanh
            unless given (one, or one per layer); a module's own is read, and must agree. A
            GRU or LSTM layer computes sigmoid gates and tanh, fixed (``activation`` must be
            tanh there).

    Biases (spec 3.3, 3.7): an ``nn.RNN``'s and an ``nn.LSTM``'s one bias is ``b_x`` with
    ``b_h = 0``; an ``nn.GRU``'s ``b`` (input side, r, z, n) is ``b_x`` and its ``bhn``
    (inside ``r *``) is ``b_h["n"]``, with ``b_h["r"] = b_h["z"] = 0``.

    Raises:
        UnsupportedError: another module, a nonlinearity not known here, layers with and
            without biases.
        ValueError: an ambiguous or contradicted layout, bad keys or shapes.
    """
    if layout not in (None, *LAYOUTS):
        raise ValueError(f"layout must be 'old' or 'new', got {layout!r}")
    layers = _layers(obj)
    if all(layer.is_module for layer in layers):
        if layout == "old":
            raise ValueError("layout='old' is for parameter files: a module of the installed "
                             f"mlx {getattr(mx, '__version__', '')} computes with the new layout")
        layout = "new"
    elif any(layer.is_module for layer in layers):
        raise TypeError("give modules or parameter dicts, not both")
    else:
        layout = _resolve_layout(layers, layout)
    biases = {layer.has_bias for layer in layers}
    if len(biases) > 1:
        raise UnsupportedError("rnn-ref", "layers with and without biases",
                               "RNNConfig has one bias flag")
    cells = [[_cell(layer, layout)] for layer in layers]
    config = RNNConfig(cells[0][0].w_x.shape[0] if isinstance(cells[0][0], CellParams)
                       else next(iter(cells[0][0].w_x.values())).shape[0],
                       tuple(c[0].hidden_size for c in cells),
                       activation=_activations(layers, activation), bias=biases.pop(),
                       cell=[layer.kind for layer in layers])
    return RNNParams(config, cells)


# --------------------------------------------------------------------------------------------
# to mlx
# --------------------------------------------------------------------------------------------
def as_mx(a: np.ndarray[Any, Any]) -> mx.array:
    return mx.array(np.ascontiguousarray(a), dtype=MLX_DTYPES[a.dtype])


def _module(params: RNNParams, li: int) -> Any:
    """Layer ``li`` as an ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM`` holding its weights."""
    cfg = params.config
    cell = params.layers[li][0]
    if isinstance(cell, GRUParams):
        gru = nn.GRU(int(cell.w_x["z"].shape[0]), cell.hidden_size, bias=cfg.bias)
        gru.Wx = as_mx(pack({g: w.T for g, w in cell.w_x.items()}, "gru:mlx", cell="gru",
                            axis=0))
        gru.Wh = as_mx(pack({g: w.T for g, w in cell.w_h.items()}, "gru:mlx", cell="gru",
                            axis=0))
        if cfg.bias:
            folded = {g: cell.b_x[g] + cell.b_h[g] for g in ("r", "z")} | {"n": cell.b_x["n"]}
            gru.b = as_mx(pack(folded, "gru:mlx", cell="gru"))
            gru.bhn = as_mx(cell.b_h["n"])
        return gru
    if isinstance(cell, LSTMParams):
        lstm = nn.LSTM(int(cell.w_x["i"].shape[0]), cell.hidden_size, bias=cfg.bias)
        lstm.Wx = as_mx(pack({g: w.T for g, w in cell.w_x.items()}, "lstm:mlx", cell="lstm",
                             axis=0))
        lstm.Wh = as_mx(pack({g: w.T for g, w in cell.w_h.items()}, "lstm:mlx", cell="lstm",
                             axis=0))
        if cfg.bias:
            lstm.bias = as_mx(pack({g: cell.b_x[g] + cell.b_h[g] for g in cell.b_x},
                                   "lstm:mlx", cell="lstm"))
        return lstm
    elman = params.elman_cell(li, 0)
    rnn = nn.RNN(int(elman.w_x.shape[0]), elman.hidden_size, bias=cfg.bias,
                 nonlinearity=_mlx_function(cfg.activation_of(li, 0)))
    rnn.Wxh = as_mx(elman.w_x.T)
    rnn.Whh = as_mx(elman.w_h.T)
    if cfg.bias:
        rnn.bias = as_mx(elman.b_x + elman.b_h)
    return rnn


def to_native(params: RNNParams) -> Any:
    """``mlx.nn.RNN``, ``nn.GRU`` and ``nn.LSTM`` layers holding ``params``, in its dtype:
    one module for one layer, else a list of modules (run each on the previous one's
    outputs; an ``nn.LSTM`` returns ``(hidden, cell)``, the next layer takes ``hidden``).

    Weights are written bit-exactly, transposed to (out, in) and packed in mlx's gate order
    (``"gru:mlx"`` r, z, n; ``"lstm:mlx"`` i, f, g, o); biases summed in the parameters'
    dtype where mlx has one a gate (``nn.RNN``'s and ``nn.LSTM``'s ``bias = b_x + b_h``, a
    GRU's ``b`` = ``b_x + b_h`` for r and z and ``b_x`` for n), a GRU's ``bhn = b_h["n"]``.
    The constructors draw from mlx's global random state before the weights are replaced.

    Raises:
        UnsupportedError: what :func:`unsupported` names; dtypes other than float32 and
            float64.
    """
    cfg = params.config
    raise_if(unsupported(cfg), target(cfg))
    if params.dtype not in MLX_DTYPES:
        raise UnsupportedError(target(cfg), f"dtype {params.dtype}", "use float32 or float64")
    modules = [_module(params, li) for li in range(cfg.num_layers)]
    return modules[0] if len(modules) == 1 else modules


# --------------------------------------------------------------------------------------------
# oracle
# --------------------------------------------------------------------------------------------
_RECURRENT = (nn.RNN, nn.GRU, nn.LSTM)


def owns(model: Any) -> bool:
    """True for an ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM``, and a non-empty list, tuple or
    ``nn.Sequential`` of them."""
    if isinstance(model, nn.Sequential):
        model = model.layers
    elif isinstance(model, nn.Module):
        return isinstance(model, _RECURRENT)
    return (isinstance(model, (list, tuple)) and bool(model)
            and all(isinstance(m, _RECURRENT) for m in model))


def _layer_params(params: RNNParams, li: int) -> RNNParams:
    """Layer ``li`` alone, as a one-layer network."""
    cfg = params.config
    spec = cfg.cell_of(li)
    one = RNNConfig(cfg.layer_input_size(li), cfg.hidden_sizes[li], cell=spec.kind,
                    activation=cfg.activation_of(li, 0), bias=cfg.bias)
    return RNNParams(one, [[params.layers[li][0]]])


def oracle(model: Any, *, activation: Any = None
           ) -> Callable[..., Any]:
    """A NumPy function returning what the layers return, computed in float64.

    For an ``nn.RNN`` or ``nn.GRU``: ``f(x, hidden=None)`` as ``model(x, hidden)``: ``x`` is
    ``(..., T, D)`` (``(N, T, D)``, or ``(T, D)`` unbatched), ``hidden`` ``(..., M)``; it
    returns every step's state ``(..., T, M)``. For an ``nn.LSTM``: ``f(x, hidden=None,
    cell=None)`` returning ``(hidden states, cell states)``, each ``(..., T, M)``, as the module
    does. For a list (or ``nn.Sequential``) of them: what the last layer returns after each
    ran on the previous one's hidden states, ``hidden`` and ``cell`` sequences of per-layer
    states (``None`` entries; ``cell`` only at LSTM layers); an ``nn.Sequential`` itself
    takes no state. ``activation`` names a nonlinearity this module does not know.
    """
    params = from_native(model, activation=activation)
    L = params.config.num_layers
    layers = [_layer_params(params, li) for li in range(L)]

    def call(x: Any, hidden: Any = None, cell: Any = None) -> Any:
        xa = np.asarray(x, np.float64)
        if xa.ndim < 2:
            raise ValueError(f"x must be (..., T, D), got shape {xa.shape}")
        lead, (t, d) = xa.shape[:-2], xa.shape[-2:]
        hs = [hidden] if L == 1 else (list(hidden) if hidden is not None else [None] * L)
        cs = [cell] if L == 1 else (list(cell) if cell is not None else [None] * L)
        if len(hs) != L or len(cs) != L:
            raise ValueError(f"hidden and cell hold one state a layer: {len(hs)} and "
                             f"{len(cs)} for {L} layers")
        out: Any = xa.reshape(-1, t, d)
        result: Any = None
        for li, one in enumerate(layers):
            m = one.config.hidden_sizes[0]
            lstm = one.config.cell_of(0).kind == "lstm"
            if cs[li] is not None and not lstm:
                raise ValueError(f"layer {li} is not an LSTM: it takes no cell state")
            h0 = None if hs[li] is None else np.asarray(hs[li], np.float64).reshape(1, -1, m)
            c0 = None if cs[li] is None else np.asarray(cs[li], np.float64).reshape(1, -1, m)
            if lstm and li == L - 1:
                result = _lstm_steps(one, out, h0, c0)
                out = result[0]
            else:
                out = forward(one, out, h0=h0, c0=c0).outputs
                result = out
        if isinstance(result, tuple):
            return tuple(np.ascontiguousarray(r.reshape(*lead, t, -1)) for r in result)
        return np.ascontiguousarray(result.reshape(*lead, t, -1))

    return call


def _lstm_steps(one: RNNParams, x: np.ndarray[Any, Any], h0: Any, c0: Any
                ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """An LSTM layer step by step, for its cell state at every step (``forward`` gives the
    last one): ``(hidden states, cell states)``, each ``(N, T, M)``."""
    hs, cs = [], []
    for t in range(x.shape[1]):
        res = forward(one, x[:, t:t + 1], h0=h0, c0=c0)
        h0, c0 = res.h_n, res.c_n
        hs.append(res.outputs[:, 0])
        cs.append(res.c_n[0])
    m = one.config.hidden_sizes[0]
    if not hs:
        empty = np.zeros((x.shape[0], 0, m))
        return empty, empty.copy()
    return np.stack(hs, axis=1), np.stack(cs, axis=1)
