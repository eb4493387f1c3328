"""The runner: any backend, every case it declares it supports, held to the oracle.

A case outside the backend's scope (:func:`rnn_ref._registry.scope_of`: the cells and network
pieces it declares it implements; the Elman layer when it declares nothing; everything for a
built-in backend) is not run: its one result is ``scope`` / ``out_of_scope``, never a
failure, and the run's report counts, per cell and piece, the cases checked, refused and out
of scope (:attr:`RunReport.scopes`).

For each case in scope the runner asks
``backend.supports(config, dtype=..., lengths=..., mask=...)`` (a backend without ``supports``
runs every case, and a ``NotImplementedError`` with a message is reported as ``must_raise``
passed: "unsupported (raised)"):

* supported: it runs ``backend.forward`` and compares with :func:`rnn_ref.forward` (float64),
  shape first, then dtype, then values, with the tolerance policy of
  :mod:`rnn_ref.conformance.compare`; categories ``forward`` (outputs, and the readout when
  the backend returns one) and ``final_state`` (``h_n``, and ``c_n`` for LSTM layers: a
  backend returns it as ``.c_n`` or as ``(outputs, h_n, c_n)``; it is given ``c0`` when the
  case has initial cell states). A backend with ``round_trip(params)``
  (to its native format and back) also gets ``conversion``: the weights must come back
  bit-exact (a one-bias format may merge ``b_x + b_h`` into ``b_x``).
* unsupported: ``must_raise``: asking for it must raise (``NotImplementedError``,
  ``ValueError`` or ``TypeError`` with a message), never return numbers.

Known failures (:mod:`rnn_ref.backends.deviations`) turn a matching failure into ``known``; a
matching case that passes is reported as ``xpass``, and an entry that matches no case of the
run is reported as stale.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from rnn_ref._registry import SCOPE_CELLS, SCOPE_PIECES, Scope, scope_names, scope_of
from rnn_ref.backends.deviations import Deviation
from rnn_ref.backends.devices import describe
from rnn_ref.conformance.cases import Case
from rnn_ref.conformance.compare import (
    ErrorReport,
    F,
    Tolerance,
    compare,
    compare_estimated,
    network_activations,
    tolerance,
)
from rnn_ref.params import AnyCellParams, CellParams, GRUParams, RNNParams
from rnn_ref.precision import ErrorEstimate, estimate

__all__ = ["CATEGORIES", "SCOPE_STATUSES", "CaseResult", "RunReport", "check_case", "run"]

CATEGORIES = ("forward", "final_state", "gradient", "conversion", "must_raise")
#: What became of the cases of one cell or piece in a run (:attr:`RunReport.scopes`).
SCOPE_STATUSES = ("checked", "refused", "out_of_scope")


@dataclass(frozen=True)
class CaseResult:
    backend: str
    case: str
    category: str  # one of CATEGORIES, or "scope" for a case not run (out of scope)
    status: str  # "pass", "fail", "known", "xpass"; "out_of_scope" (category "scope")
    detail: str = ""
    report: ErrorReport | None = None
    deviation: str | None = None
    seconds: float = 0.0

    def worst_ratio(self) -> float:
        """max |error| / tolerance at the worst element (0 when not a value comparison)."""
        r = self.report
        if r is None or not np.isfinite(r.max_abs):
            return 0.0
        if r.ratio is not None:
            return r.ratio / F
        return 0.0 if r.atol == 0 else float(r.max_abs / r.atol)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self.backend, "case": self.case,
                               "category": self.category, "status": self.status,
                               "detail": self.detail, "deviation": self.deviation,
                               "seconds": round(self.seconds, 4)}
        if self.report is not None:
            r = self.report
            out.update({"max_abs_error": r.max_abs, "max_rel_error": r.max_rel,
                        "eps_units": r.eps_units, "where_t_n_m": list(r.where),
                        "atol": r.atol, "rtol": r.rtol, "error_over_estimate": r.ratio,
                        "effective_bits": r.bits, "undetermined": r.undetermined,
                        "undetermined_from_step": r.undetermined_from})
        return out


@dataclass
class RunReport:
    backend: str
    results: list[CaseResult] = field(default_factory=list)
    stale: list[Deviation] = field(default_factory=list)
    cases: int = 0
    seconds: float = 0.0
    #: where and how the backend computed: device, its name, precision mode and settings in
    #: force, the CPU's numeric flags (:func:`rnn_ref.backends.devices.describe`)
    environment: dict[str, Any] = field(default_factory=dict)
    stopped: str = ""  # why the run stopped before its last case ("": it did not)
    #: what the backend is held to (its declared cells and pieces, or everything built in)
    scope: Scope | None = None
    #: per cell and piece (:func:`rnn_ref._registry.scope_names` of each case run), how many
    #: of its cases were checked (run and compared), refused (declared unsupported or raised
    #: a clear NotImplementedError) and out of scope: ``{"lstm": {"checked": 12, ...}}``
    scopes: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if r.status == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def out_of_scope(self) -> list[str]:
        """The cases not run because they lie outside the backend's scope."""
        return [r.case for r in self.results if r.status == "out_of_scope"]

    def scopes_with(self, status: str) -> list[str]:
        """The cells and pieces with at least one case of ``status`` (of
        :data:`SCOPE_STATUSES`), in :func:`rnn_ref._registry.scope_names` order."""
        return [name for name, counts in self.scopes.items() if counts.get(status)]

    def effective_bits(self) -> float | None:
        """The backend's effective precision in this run: the median ``bits`` of its forward
        and final-state comparisons (see :func:`rnn_ref.conformance.compare.effective_bits`;
        23 for a correct float32 computation), ``None`` when none was made. Known deviations
        count (they are what the backend computes: bf16 arithmetic reads as about 7 bits);
        the median keeps a few semantic deviations (a wrong direction) from reading as a
        precision."""
        bits = [r.report.bits for r in self.results
                if r.report is not None and r.report.bits is not None
                and r.category in ("forward", "final_state")]
        return float(np.median(bits)) if bits else None


@dataclass(frozen=True)
class _Got:
    """What a backend returned; ``None`` for what it did not (a framework's model of a whole
    network returns its result only: the head's output, or the selection)."""

    outputs: Any
    h_n: Any
    y: Any
    selected: Any
    c_n: Any = None


def _as_result(value: Any) -> _Got:
    if isinstance(value, tuple) and len(value) in (2, 3):
        return _Got(value[0], value[1], None, None, value[2] if len(value) == 3 else None)
    names = ("outputs", "h_n", "y", "selected", "c_n")
    if any(hasattr(value, n) for n in names):
        got = _Got(*(getattr(value, n, None) for n in names))
        if got.selected is not None and got.selected is got.outputs:
            got = _Got(got.outputs, got.h_n, got.y, None, got.c_n)
        return got
    raise TypeError(f"forward must return (outputs, h_n), (outputs, h_n, c_n) or an object "
                    f"with .outputs and .h_n (and .y, .selected, .c_n), got "
                    f"{type(value).__name__}")


def _seq(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _tolerance(case: Case, expected: Any) -> Tolerance:
    acts = network_activations(case.config)
    arrays = [np.asarray(a) for a in _seq(expected)]
    scale = max((float(np.abs(a).max()) for a in arrays if a.size), default=1.0)
    return tolerance(case.dtype, max(case.t, 1), acts, layers=case.config.num_layers,
                     scale=scale)


def _compare_all(got: Any, want: Any, sigma: Any, case: Case, label: str) -> ErrorReport:
    """Every array of one result (outputs, h_n or y) within the estimate-based tolerance; the
    worst report, or the first failing one."""
    got_s, want_s, sigma_s = _seq(got), _seq(want), _seq(sigma)
    if len(got_s) != len(want_s):
        return ErrorReport(False, f"{label}: {len(got_s)} arrays, expected {len(want_s)}",
                           max_abs=np.inf)
    worst: ErrorReport | None = None
    for g, w, s in zip(got_s, want_s, sigma_s, strict=True):
        states = label in ("h_n", "c_n")  # (S, N, M): no time axis
        rep = compare_estimated(np.asarray(g), w, s, _tolerance(case, w), dtype=case.dtype,
                                time_axis=1 if np.ndim(w) == 3 and not states else None)
        if not rep.passed:
            return rep
        if worst is None or (rep.ratio or 0.0) > (worst.ratio or 0.0):
            worst = rep
    return worst or ErrorReport(True, "")


def _takes(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes the keyword argument ``name`` (or any, ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature to read: assume it does
        return True
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


@lru_cache(maxsize=1024)
def estimate_for(case: Case) -> ErrorEstimate:
    """The oracle's result and error estimate of a case (once per case, whatever the number
    of backends run on it)."""
    inp = case.inputs()
    return estimate(inp.params, inp.x, dtype=case.dtype, **inp.kwargs())


def _sigma_c_n(est: ErrorEstimate) -> Any:
    """The estimate of the final cell states (``None`` without an LSTM layer)."""
    return est.sigma.c_n


def _matches(dev: Deviation, case: Case, category: str) -> bool:
    if dev.match is None:
        return False
    props = case.properties()
    # a deviation is about computed values unless it says otherwise
    cats = dev.match.get("categories", ("forward", "final_state"))
    if category not in cats:
        return False
    return all(props.get(k) == v for k, v in dev.match.items() if k != "categories")


def _gated_changes(p: AnyCellParams, q: AnyCellParams, reset_after: bool) -> str:
    """:func:`_cell_changes` of two GRU or LSTM cells: every kernel, peephole and projection
    bit-exact; each gate's biases kept, or merged into ``b_x`` (one-bias formats: Keras'
    LSTM, ONNX's B summed), except a reset-after GRU's ``n`` gate, whose ``b_h`` sits inside
    ``r *``."""
    if type(p) is not type(q) or p.arrays().keys() != q.arrays().keys():
        return f": {type(p).__name__} {sorted(p.arrays())} became {type(q).__name__} " \
               f"{sorted(q.arrays())}"
    mine, theirs = p.arrays(), q.arrays()
    changed = [n for n, a in mine.items() if not n.startswith(("b_x.", "b_h."))
               and not np.array_equal(a, theirs[n])]
    for g in (name.partition(".")[2] for name in mine if name.startswith("b_x.")):
        bx, bh = mine[f"b_x.{g}"], mine[f"b_h.{g}"]
        qx, qh = theirs[f"b_x.{g}"], theirs[f"b_h.{g}"]
        if np.array_equal(bx, qx) and np.array_equal(bh, qh):
            continue
        mergeable = not (isinstance(p, GRUParams) and reset_after and g == "n")
        if not (mergeable and not qh.any() and np.array_equal(qx, bx + bh)):
            changed.append(f"b_x.{g}/b_h.{g}")
    return f": {changed} changed" if changed else ""


def _cell_changes(p: AnyCellParams, q: AnyCellParams, reset_after: bool = True) -> str:
    """What of cell ``p`` cell ``q`` does not hold bit-exactly (biases may be merged into
    ``b_x``: one-bias formats; see :func:`_gated_changes` for the gated cells), as the end of
    a message; ``""`` when nothing."""
    if not (isinstance(p, CellParams) and isinstance(q, CellParams)):
        return _gated_changes(p, q, reset_after)
    for n in ("w_x", "w_h"):
        if not np.array_equal(getattr(p, n), getattr(q, n)):
            return f".{n} changed"
    if np.array_equal(p.b_x, q.b_x) and np.array_equal(p.b_h, q.b_h):
        return ""
    if not q.b_h.any() and np.array_equal(q.b_x, p.b_x + p.b_h):
        return ""
    return " biases changed (b_x, b_h not kept, nor merged into b_x)"


def _equivalent(p: RNNParams, q: RNNParams) -> str:
    """"" when q holds p's network and weights bit-exactly (one-bias formats: b_x + b_h in
    b_x)."""
    a, b = p.config, q.config
    for attr in ("directions", "hidden_sizes", "activations", "clips", "merge_modes", "bias",
                 "head", "output_order", "vocab_size", "mask_zero", "mask_value", "select",
                 "identities", "cells"):
        if getattr(a, attr) != getattr(b, attr):
            return f"config.{attr} changed: {getattr(a, attr)!r} -> {getattr(b, attr)!r}"
    for li in range(a.num_layers):
        for r in range(a.num_directions_of(li)):
            if a.activations_of(li, r) != b.activations_of(li, r):
                return (f"layer {li} direction {r}: activations {a.activations_of(li, r)} -> "
                        f"{b.activations_of(li, r)}")
    for li, (lp, lq) in enumerate(zip(p.layers, q.layers, strict=True)):
        for r, (gp, gq) in enumerate(zip(lp, lq, strict=True)):
            changed = _cell_changes(gp, gq, a.cell_of(li).reset_after)
            if changed:
                return f"layers[{li}][{r}]{changed}"
    if (p.embedding is None) != (q.embedding is None) or (
            p.embedding is not None and q.embedding is not None
            and not np.array_equal(p.embedding, q.embedding)):
        return "the embedding changed"
    for j, (hp, hq) in enumerate(zip(p.head, q.head, strict=True)):
        if not (np.array_equal(hp.w, hq.w) and np.array_equal(hp.b, hq.b)):
            return f"head layer {j} changed"
    return ""


def _undetermined(sigma: Any, expected: Any, dtype: str) -> ErrorReport | None:
    """An ill-conditioned report when the forward estimate finds outputs the dtype cannot
    determine, else ``None``: back-propagating through the same steps is no better
    conditioned, so the gradients are not compared either."""
    counts, first = 0, None
    for field_name in ("outputs", "h_n", "y", "selected"):
        want = getattr(expected, field_name)
        if want is None or (field_name == "selected" and want is expected.outputs):
            continue
        for s, w in zip(_seq(getattr(sigma, field_name)), _seq(want), strict=True):
            w = np.asarray(w)
            with np.errstate(over="ignore"):
                own = w.astype(dtype)
            rep = compare_estimated(own, w, s, Tolerance(0.0, 0.0), dtype=dtype)
            counts += rep.undetermined
            if rep.undetermined_from is not None:
                first = min(first if first is not None else rep.undetermined_from,
                            rep.undetermined_from)
    if not counts:
        return None
    return ErrorReport(True, "", ratio=0.0, undetermined=counts, undetermined_from=first,
                       compared=0)


def _oracle_gradients(grad_fn: Any, inp: Any, cot: dict[str, Any]) -> Any:
    """:func:`rnn_ref.backward` of a case for the cotangents ``cot``; ``None`` where there is
    nothing to compare with: initial cell states that the backend's backward cannot take."""
    from rnn_ref.gradient import backward

    if inp.c0 is not None and not _takes(grad_fn, "c0"):
        return None
    return backward(inp.params, inp.x, **inp.kwargs(), **cot)


def _check_gradient(grad_fn: Any, case: Case, inp: Any, want: Any, add: Any) -> None:
    """The backend's gradients against :func:`rnn_ref.backward`, for seeded cotangents (not
    compared where the forward pass is ill-conditioned in the case's dtype)."""
    ill = _undetermined(estimate_for(case).sigma, want, case.dtype)
    if ill is not None:
        add("gradient", True, "not compared: " + ill.summary().split("; ", 1)[1], ill)
        return
    rng = np.random.default_rng(case.seed + 1)

    def like(a: Any) -> Any:
        if isinstance(a, tuple):
            return tuple(rng.standard_normal(np.shape(b)) for b in a)
        return rng.standard_normal(np.shape(a))

    cot = {"grad_outputs": like(want.outputs), "grad_h_n": like(want.h_n)}
    if want.y is not None:
        cot["grad_y"] = like(want.y)
    if case.config.select != "sequence":
        cot["grad_selected"] = like(want.selected)
    expected = _oracle_gradients(grad_fn, inp, cot)
    if expected is None:
        return
    try:
        got = grad_fn(inp.params, inp.x, **inp.kwargs(), **cot)
    except NotImplementedError:
        return
    except Exception as exc:
        add("gradient", False, f"raised {type(exc).__name__}: {exc}")
        return
    worst: ErrorReport | None = None
    pairs = [(f"params.{k}", a, b) for (k, a), (_, b) in zip(
        got.params.named_arrays(), expected.params.named_arrays(), strict=True)]
    pairs += [("x", got.x, expected.x)]
    pairs += [(f"h0[{i}]", a, b) for i, (a, b) in enumerate(zip(_seq(got.h0),
                                                                _seq(expected.h0), strict=True))]
    for label, g, w in pairs:
        w = np.asarray(w)
        scale = float(np.abs(w).max()) if w.size else 1.0
        acts = network_activations(case.config)
        tol = tolerance(case.dtype, max(case.t, 1) * 2, acts, layers=case.config.num_layers,
                        scale=scale)
        rep = compare(np.asarray(g), w, tol, dtype=case.dtype, time_axis=None)
        if not rep.passed:
            add("gradient", False, f"{label}: {rep.summary()}", rep)
            return
        if worst is None or rep.max_abs / max(rep.atol, 1e-300) > worst.max_abs / max(
                worst.atol, 1e-300):
            worst = rep
    add("gradient", True, worst.summary() if worst else "no gradients", worst)


_Add = Callable[..., None]


def check_case(backend: Any, case: Case, deviations: Sequence[Deviation] = (),
               scope: Scope | None = None) -> list[CaseResult]:
    """Run one case on one backend; one result per category that applies. A case outside
    the backend's ``scope`` (default :func:`rnn_ref._registry.scope_of` the backend) is not
    run: one ``scope`` result of status ``out_of_scope`` says what it needs."""
    name = str(getattr(backend, "name", type(backend).__name__))
    scope = scope_of(backend) if scope is None else scope
    beyond = scope.missing(case.config)
    if beyond:
        return [CaseResult(name, case.name, "scope", "out_of_scope",
                           f"needs {', '.join(beyond)}; the backend implements "
                           f"{scope.describe()}")]
    inp = case.inputs()
    supports = getattr(backend, "supports", None)  # optional: without it, every case runs
    reason = None if supports is None else supports(
        case.config, dtype=np.dtype(case.dtype), lengths=inp.lengths is not None,
        mask=inp.mask is not None)
    results: list[CaseResult] = []
    start = time.perf_counter()

    def add(category: str, ok: bool, detail: str, report: ErrorReport | None = None) -> None:
        dev = next((d for d in deviations if _matches(d, case, category)), None)
        if dev is not None and ok and report is not None and report.compared == 0:
            dev = None  # nothing could be compared (ill-conditioned): no evidence either way
        status = "pass" if ok else "fail"
        if dev is not None and ok and dev.varies:
            dev = None  # a precision deviation shows on some of its cases, not all
        if dev is not None:
            status = "xpass" if ok else "known"
        results.append(CaseResult(name, case.name, category, status, detail, report,
                                  None if dev is None else dev.id,
                                  time.perf_counter() - start))

    kwargs = inp.kwargs()
    takes_c0 = "c0" not in kwargs or _takes(backend.forward, "c0")
    if reason is not None:
        # asked without c0 when it takes none: it must refuse the network, not the argument
        _check_refusal(backend, inp, reason, add,
                       kwargs if takes_c0 else {k: v for k, v in kwargs.items() if k != "c0"})
        return results
    if not takes_c0:
        add("forward", False, "forward takes no c0: a backend of LSTM layers takes the "
            "initial cell states as forward(..., c0=...) ((C, N, M), like h0)")
        add("final_state", False, "not computed")
        return results
    try:
        got = _as_result(backend.forward(inp.params, inp.x, **kwargs))
    except Exception as exc:
        _forward_raised(exc, declared=supports is not None, add=add)
        return results
    _check_values(case, got, add)
    grad_fn = getattr(backend, "backward", None)
    if grad_fn is not None:
        _check_gradient(grad_fn, case, inp, estimate_for(case).expected, add)
    round_trip = getattr(backend, "round_trip", None)
    if round_trip is not None:
        _check_round_trip(round_trip, inp.params, add)
    return results


def _check_refusal(backend: Any, inp: Any, reason: str, add: _Add,
                   kwargs: dict[str, Any]) -> None:
    """A case declared unsupported must raise a clear error, never return numbers."""
    try:
        backend.forward(inp.params, inp.x, **kwargs)
    except (NotImplementedError, ValueError, TypeError) as exc:
        add("must_raise", bool(str(exc)), f"declared unsupported ({reason}); raised "
            f"{type(exc).__name__}: {exc}" if str(exc) else "raised with no message")
    except Exception as exc:  # a crash is not a clear refusal
        add("must_raise", False, f"declared unsupported ({reason}) but crashed: "
            f"{type(exc).__name__}: {exc}")
    else:
        add("must_raise", False, f"declared unsupported ({reason}) but returned numbers")


def _forward_raised(exc: Exception, *, declared: bool, add: _Add) -> None:
    """A supported case raised: a failure, except a clear ``NotImplementedError`` from a
    backend without ``supports`` (an undeclared refusal)."""
    if isinstance(exc, NotImplementedError) and not declared and str(exc):
        add("must_raise", True, f"no supports(); raised NotImplementedError: {exc}")
        return
    text = str(exc) or "with no message"
    add("forward", False, f"raised {type(exc).__name__}: {text}")
    add("final_state", False, "not computed")


def _check_values(case: Case, got: _Got, add: _Add) -> None:
    """What the backend returned against the oracle's estimate: the last layer's outputs, the
    selection and the head's output (``forward``), the final states (``final_state``: ``h_n``,
    and ``c_n`` with LSTM layers). The network's result must be returned (the outputs for the
    stack alone, else the head's output, else the selection); the rest is compared where
    returned, and the final states must be for the stack alone (any cell)."""
    est = estimate_for(case)
    want, sigma = est.expected, est.sigma
    cfg = case.config
    # the recurrent stack with at most a readout: the Elman layer's scope, of any cell
    stack = not [n for n in scope_names(cfg) if n not in ("elman", "gru", "lstm")]
    # a backend of the stack may leave its readout out (outputs then carry the check)
    result = ("outputs" if stack or (cfg.select == "sequence" and not cfg.head)
              else "y" if cfg.head else "selected")
    reports, missing = [], []
    for label in ("outputs", "selected", "y"):
        w = getattr(want, label)
        if w is None or (label == "selected" and cfg.select == "sequence"):
            continue
        g = getattr(got, label)
        if g is None:
            missing.append(label)
            continue
        reports.append((label, _compare_all(g, w, getattr(sigma, label), case, label)))
    if result in missing:
        add("forward", False, f"the network's result ({result}) was not returned")
    else:
        label, rep = next(((lb, r) for lb, r in reports if not r.passed), None) or max(
            reports, key=lambda item: item[1].ratio or 0.0)
        detail = ("" if label == "outputs" else f"{label}: ") + rep.summary()
        if missing:
            detail += f"; {', '.join(missing)} not returned, unchecked"
        add("forward", rep.passed, detail, rep)
    if got.h_n is None:
        if stack:
            add("final_state", False, "h_n was not returned")
        return
    rep_h = _compare_all(got.h_n, want.h_n, sigma.h_n, case, "h_n")
    if not rep_h.passed or want.c_n is None:
        add("final_state", rep_h.passed, rep_h.summary(), rep_h)
        return
    if got.c_n is None:  # the final states of an LSTM are h and c
        if stack:
            add("final_state", False, "c_n was not returned (the LSTM layers' final cell "
                "states: .c_n, or (outputs, h_n, c_n))", rep_h)
        else:
            add("final_state", True, rep_h.summary() + "; c_n not returned, unchecked", rep_h)
        return
    rep_c = _compare_all(got.c_n, want.c_n, _sigma_c_n(est), case, "c_n")
    if not rep_c.passed:
        add("final_state", False, "c_n: " + rep_c.summary(), rep_c)
        return
    worst = max((rep_h, rep_c), key=lambda r: r.ratio or 0.0)
    add("final_state", True, ("c_n: " if worst is rep_c else "") + worst.summary(), worst)


def _check_round_trip(round_trip: Callable[[RNNParams], RNNParams], params: RNNParams,
                      add: _Add) -> None:
    """Through the backend's own format and back: the weights must come back bit-exact."""
    try:
        back = round_trip(params)
    except NotImplementedError:
        return  # the format cannot hold this config; forward already covers the backend
    problem = _equivalent(params, back)
    add("conversion", not problem, problem or "weights bit-exact")


def run(backend: Any, cases: Iterable[Case], *, deviations: Sequence[Deviation] = (),
        progress: Callable[[int, int, str], None] | None = None,
        deadline: float | None = None) -> RunReport:
    """Run ``cases`` on ``backend``; ``progress(done, total, case_name)`` after each case.
    With a ``deadline`` (a ``time.perf_counter()`` value), no case starts after it: the
    report's ``cases`` counts those run and ``stopped`` says how many were left."""
    cases = list(cases)
    name = str(getattr(backend, "name", type(backend).__name__))
    scope = scope_of(backend)
    report = RunReport(name, cases=len(cases), environment=describe(backend), scope=scope)
    start = time.perf_counter()
    used: set[str] = set()
    for i, case in enumerate(cases):
        if deadline is not None and time.perf_counter() > deadline:
            report.stopped = f"time budget: {len(cases) - i} of {len(cases)} cases not run"
            report.cases = i
            break
        for d in deviations:
            if d.match is not None and all(case.properties().get(k) == v
                                           for k, v in d.match.items() if k != "categories"):
                used.add(d.id)
        results = check_case(backend, case, deviations, scope)
        report.results.extend(results)
        status = ("out_of_scope" if any(r.status == "out_of_scope" for r in results)
                  else "refused" if results and all(r.category == "must_raise" for r in results)
                  else "checked")
        for scope_name in scope_names(case.config):
            counts = report.scopes.setdefault(scope_name, dict.fromkeys(SCOPE_STATUSES, 0))
            counts[status] += 1
        if progress is not None:
            progress(i + 1, len(cases), case.name)
    order = {n: i for i, n in enumerate((*SCOPE_CELLS, *SCOPE_PIECES))}
    report.scopes = dict(sorted(report.scopes.items(), key=lambda item: order[item[0]]))
    report.stale = [] if report.stopped else [
        d for d in deviations if d.match is not None and d.id not in used]
    report.seconds = time.perf_counter() - start
    return report
