"""Files in, files out: the conversion workflow, for Python callers and the command line alike.

:func:`convert` detects both formats once, reads the source once, checks that the target can
hold the network, writes the target atomically and, when asked, verifies it before it is put in
place: both files are run in their own frameworks on seeded inputs and compared. The formats,
their extensions and the hints each reads come from the framework records
(:mod:`rnn_ref.backends._frameworks`); each framework's ``files.py`` reads and writes its own
files (``read_file``, ``write_file``, ``load_native``, ``run_native``, ``list_arrays``).

Nothing from a file is ever executed: no pickle, Keras in safe mode, HDF5 and JSON parsed as
data. Output follows the destination rules of :mod:`rnn_ref._dest`: written to a temporary
file and put in place only when it is complete (and verified, when asked), so a failed
conversion leaves nothing behind; a new name is created exclusively; an existing regular file
is replaced only with ``force=True``, never the source itself.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from rnn_ref import _dest
from rnn_ref import limits as limits_
from rnn_ref.backends import _frameworks
from rnn_ref.config import RNNConfig
from rnn_ref.errors import FileFormatError, LimitError, UnsupportedError
from rnn_ref.fileapi import (
    HINT_NAMES,
    Hints,
    MissingHintError,
    NativeFile,
    hint_activation,
    hint_activations,
)
from rnn_ref.limits import Limits
from rnn_ref.params import RNNParams

__all__ = ["FORMATS", "Conversion", "Hints", "MissingHintError", "NativeFile", "Verification",
           "VerificationError", "convert", "convertible", "detect", "external_files",
           "framework_module", "hint_activation", "hint_activations", "hints_read", "loading_needs",
           "not_recorded", "readable", "sha256_of", "hints_for", "read", "unrecorded",
           "verify_files", "write"]

#: format name -> extensions, from the framework records
FORMATS: dict[str, tuple[str, ...]] = {
    name: f.extensions for name, (_, f) in _frameworks.formats().items()}


def detect(path: str | os.PathLike[str], given: str | None = None) -> str:
    """The format of ``path``: ``given`` when set, else from the extension."""
    if given is not None:
        return _frameworks.file_format(given)[1].name
    name = str(path).lower()
    for fmt, exts in sorted(FORMATS.items(), key=lambda kv: -max(len(e) for e in kv[1])):
        if any(name.endswith(e) for e in exts):
            return _frameworks.sniff(path, fmt)
    known = ", ".join(e for exts in FORMATS.values() for e in exts)
    raise ValueError(f"{path}: cannot tell the format from the extension (known: {known}); "
                     f"name the format")


def framework_module(fmt: str) -> ModuleType:
    """The framework's files module that reads and writes ``fmt`` (its ``files.py``,
    ``Framework.files``), imported now."""
    framework, f = _frameworks.file_format(fmt)
    absent = _frameworks.missing((*framework.requires, *f.requires))
    if absent:
        raise ImportError(f"{fmt} files need {', '.join(absent)}, which is not installed "
                          f"(pip install 'rnn-ref[all]' -c constraints.txt)")
    if framework.files is None:
        raise ValueError(f"framework {framework.name!r} has formats but names no files module")
    return importlib.import_module(framework.files)


def readable(fmt: str) -> bool:
    """Whether a ``fmt`` file can be read back as parameters (a ``.tflite`` cannot)."""
    return _frameworks.file_format(fmt)[1].readable


def hints_read(fmt: str) -> frozenset[str]:
    """The hints a ``fmt`` file takes (what it does not record); any other is an error."""
    return _frameworks.file_format(fmt)[1].hints


def read(path: str | os.PathLike[str], fmt: str | None = None, hints: Hints = Hints(), *,
         limits: Limits | None = None, allow_external_data: bool | None = None
         ) -> RNNParams:
    """Canonical parameters of a file. Raises ``FileFormatError`` (a ``ValueError``) for a
    corrupt, truncated or wrong-format file, :class:`MissingHintError` for a hint the file
    needs, ``UnsupportedError`` for a model rnn-ref cannot hold, ``FileNotFoundError`` for a
    missing one, ``ImportError`` when the format's framework is not installed, and
    ``LimitError`` for a file that declares more than ``limits`` allow (default: those in
    force, :mod:`rnn_ref.limits`). ONNX external data is read only with
    ``allow_external_data=True`` (default: as in force, off), from files the model owns."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    fmt = detect(source, fmt)
    reads = hints_read(fmt)
    for name in HINT_NAMES:
        if getattr(hints, name) is not None and name not in reads:
            raise ValueError(f"the {name} hint does not apply to {fmt} files: they record "
                             f"that themselves")
    module = framework_module(fmt)
    with limits_.using(limits, allow_external_data=allow_external_data):
        limits_.check_bytes(source.stat().st_size, "the file's size", str(source))
        try:
            return module.read_file(source, fmt, hints)
        except (FileFormatError, UnsupportedError, FileNotFoundError, MissingHintError,
                LimitError):
            raise
        except RecursionError:
            raise FileFormatError(f"{source}: nested too deeply to read") from None
        except MemoryError:
            raise LimitError(f"{source}: out of memory reading it (a size the limits did not "
                             f"catch; lower --max-bytes or --max-params)", "max_bytes") from None
        except ValueError as exc:
            raise FileFormatError(f"{source}: {limits_.bounded(str(exc))}") from None
        except Exception as exc:  # a library's own complaint about a bad file
            raise FileFormatError(f"{source}: not a valid {fmt} file "
                                  f"({type(exc).__name__}: {limits_.bounded(str(exc), 300)})"
                                  ) from None


def external_files(path: str | os.PathLike[str], fmt: str | None = None
                   ) -> list[tuple[str, str, int, str | None]]:
    """Every file outside ``path`` that reading it would read (ONNX external data), without
    reading them: ``(tensor, file, bytes, None or why it would be refused)``; empty for
    formats that cannot name other files."""
    fmt = detect(path, fmt)
    module = framework_module(fmt)
    lister = getattr(module, "external_files", None)
    return [] if lister is None else list(lister(Path(path)))


def unrecorded(params: RNNParams, fmt: str) -> dict[str, str]:
    """What a ``fmt`` file written of ``params`` does not record, as the hints that restore
    it (hint name -> value): the format's one declaration
    (:attr:`~rnn_ref.backends._frameworks.FileFormat.unrecorded`), which the ``wrote`` line,
    the read-back of ``--verify`` (:func:`hints_for`) and the readers follow."""
    f = _frameworks.file_format(fmt)[1]
    out = f.unrecorded(params.config)
    assert set(out) <= f.hints, f"{fmt} declares hints it does not read: {set(out) - f.hints}"
    return out


def hints_for(params: RNNParams, fmt: str) -> Hints:
    """The hints a ``fmt`` file of ``params`` needs to be read back (and no others)."""
    return Hints(**unrecorded(params, fmt))


def not_recorded(params: RNNParams, fmt: str) -> str:
    """What a ``fmt`` file of ``params`` does not record and the flags that restore it, for
    the ``wrote`` line (``"not recorded: head activation sigmoid: give --head-activation
    sigmoid when reading it"``); empty when the file records the whole network."""
    missing = unrecorded(params, fmt)
    if not missing:
        return ""
    what = {"activation": "activation", "merge_mode": "merge mode", "direction": "direction",
            "select": "selection", "head_activation": "head activation",
            "recurrent_activation": "gate activation"}

    def label(hint: str, value: str) -> str:
        if hint in ("activation", "head_activation", "recurrent_activation") and "," in value:
            return f"per-layer {what[hint]}s {value.replace(',', '/')}"
        return f"{what[hint]} {value}"

    pieces = ", ".join(label(h, v) for h, v in missing.items())
    flags = " ".join(f"--{h.replace('_', '-')} {v}" for h, v in missing.items())
    return f"not recorded: {pieces}: give {flags} when reading it"


def loading_needs(params: RNNParams, fmt: str) -> str:
    """What loading a ``fmt`` file of ``params`` needs besides its framework, for the
    ``wrote`` line (:attr:`~rnn_ref.backends._frameworks.FileFormat.loading`: a Keras 3 model
    holding Keras 2's hard_sigmoid needs rnn-ref's registered function); empty when
    nothing."""
    return _frameworks.file_format(fmt)[1].loading(params.config) or ""


def convertible(params: RNNParams) -> dict[str, str | None]:
    """For every format: ``None`` when ``params`` can be written to it and run by its own
    runtime, else why not. Imports no framework: the records' ``unsupported`` are pure."""
    out: dict[str, str | None] = {}
    for name, (framework, f) in _frameworks.formats().items():
        reason = framework.unsupported(params.config) or f.refuses(params.config)
        out[name] = None if reason is None else (
            f"{framework.title} cannot express {reason[0]}: {reason[1]}")
        if out[name] is None and f.runs is not None and str(params.dtype) not in f.runs[1]:
            out[name] = (f"{f.runs[0]} runs {name} files of {'/'.join(f.runs[1])} only, not "
                         f"{params.dtype} (convert with params.astype('{f.runs[1][0]}') "
                         f"first, accepting its rounding)")
    return out


def write(params: RNNParams, path: str | os.PathLike[str], fmt: str | None = None, *,
          force: bool = False, check: Callable[[Path], None] | None = None,
          sources: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """Write ``params`` to ``path`` by the destination rules of :mod:`rnn_ref._dest`: the
    file appears complete (checked by ``check(temporary_path)`` when given) or not at all.

    Raises:
        FileExistsError: something is at ``path`` and ``force`` is False.
        ValueError: ``path`` is one of ``sources`` (the same file), or ``force`` and ``path``
            is not a regular file.
        UnsupportedError: the format cannot express the network.
        rnn_ref._dest.WriteError: an ``OSError``: the disk is full, or the writer failed.
    """
    target = Path(path)
    fmt = detect(target, fmt)
    _dest.check_destination(target, force=force, sources=sources)
    reason = convertible(params)[fmt]
    if reason is not None:
        raise UnsupportedError(f"cannot write {target} as {fmt}: {reason}")
    module = framework_module(fmt)
    size = sum(a.nbytes for _, a in params.named_arrays())
    return _dest.write_file(target, lambda tmp: module.write_file(params, tmp, fmt),
                            force=force, sources=sources, check=check, expected_size=size)


@dataclass(frozen=True)
class Verification:
    passed: bool
    summary: str
    max_abs: float
    atol: float


def verify_files(src: Path, src_fmt: str, src_params: RNNParams, dst: Path, dst_fmt: str,
                 dst_params: RNNParams, *, seed: int = 0) -> Verification:
    """Run both files in their own frameworks on seeded inputs in the source's dtype (with
    lengths where both take them) and compare within the tolerance of the least precise
    dtype of the two (float64 files are held to float64's)."""
    from rnn_ref.conformance.compare import compare, network_activations, tolerance
    from rnn_ref.reference import forward, returned

    cfg = src_params.config
    n, t = 4, 9
    sides = []
    for path, fmt, params in ((src, src_fmt, src_params), (dst, dst_fmt, dst_params)):
        module = framework_module(fmt)
        sides.append((module, module.load_native(path, fmt, params), params))
    takes_lengths = all(f.takes_lengths for _, f, _ in sides)
    # a network that masks its own inputs (mask_zero, mask_value) is given padding in them,
    # in every pattern its mask allows; lengths are right-padded
    own_mask = cfg.mask_zero or cfg.mask_value is not None
    lengths = np.array([t, 3, 6, 1]) if takes_lengths else np.full(n, t)
    pad = VERIFY_PADDING if own_mask and not takes_lengths else \
        np.arange(t)[None, :] >= lengths[:, None]
    x = verify_inputs(cfg, src_params.dtype, pad, seed)
    given = lengths if takes_lengths else None
    outs = [_arrays(m.run_native(f.model, x, given)) for m, f, _ in sides]
    acts = network_activations(cfg)

    def check(got: np.ndarray[Any, Any], want: np.ndarray[Any, Any]) -> Any:
        valid = ~pad
        if cfg.output_order == "processing":
            valid = valid[:, ::-1]
        if got.ndim == want.ndim == 3 and got.shape[:2] == want.shape[:2] == valid.shape:
            got, want = got[valid], want[valid]
        tol = tolerance(_coarsest(got, want, src_params, dst_params), t, acts,
                        layers=cfg.num_layers,
                        scale=float(np.abs(want).max()) if want.size else 1.0)
        return compare(got, want, tol, time_axis=None)

    def reference(file: NativeFile, p: RNNParams) -> list[np.ndarray[Any, Any]]:
        if file.oracle is not None:
            return _arrays(file.oracle(x))
        return _arrays(returned(p.config, forward(p, x, lengths=given)))

    shapes = [[o.shape for o in out] for out in outs]
    if shapes[0] == shapes[1]:  # every output of the model, in order
        reps = [check(b, a) for a, b in zip(outs[0], outs[1], strict=True)]
        how = "target against source"
    else:  # e.g. a Keras model returning its last output, a target returning sequences
        reps = [check(o, r) for out, (_, f, p) in zip(outs, sides, strict=True)
                for o, r in zip(out, reference(f, p), strict=True)]
        how = (f"each against the oracle (source returns {_shapes(shapes[0])}, target "
               f"{_shapes(shapes[1])})")
    rep = max(reps, key=lambda r: (not r.passed, r.max_abs))
    what = ("with lengths" if takes_lengths else f"padded in the inputs: {VERIFY_PATTERNS}"
            if own_mask else "full length")
    return Verification(rep.passed, f"{rep.summary()}; {how} ({what}, N={n}, T={t}, "
                                    f"seed {seed}){_not_independent(src_fmt)}", rep.max_abs,
                        rep.atol)


def _arrays(value: Any) -> list[np.ndarray[Any, Any]]:
    """A model's outputs as a list of arrays: one, or each of a list or tuple, nested ones
    flattened in order (``h_n`` of layers of different widths is a tuple)."""
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _arrays(v)]
    return [np.asarray(value)]


def _shapes(shapes: list[tuple[int, ...]]) -> str:
    return str(shapes[0]) if len(shapes) == 1 else ", ".join(str(s) for s in shapes)


def _not_independent(fmt: str) -> str:
    """What a verification cannot check when the source records weights only: the file was
    run in the network read from it and the hints, so its architecture is not checked."""
    hints = hints_read(fmt)
    if not hints:
        return ""
    return (f"; note: a {fmt} file records weights, not the whole network: it ran in the "
            f"network read from it and the hints ({', '.join(sorted(hints))}), so this checks "
            f"the weights' layout, not that architecture")


#: The padding ``--verify`` gives a network that masks its own inputs (``mask_zero``,
#: ``mask_value``), True at a padded step: every pattern a Keras mask allows, (N, T) = (4, 9).
VERIFY_PADDING = np.array([[False] * 9,                    # none
                           [True] * 6 + [False] * 3,       # at the front (pad_sequences' default)
                           [False] * 4 + [True] * 5,       # at the end
                           [True, False, False, True, False, True, True, False, True]])  # holes
VERIFY_PATTERNS = "none, at the front, at the end, holes"


def verify_inputs(cfg: RNNConfig, dtype: Any, pad: np.ndarray[Any, Any], seed: int
                  ) -> np.ndarray[Any, Any]:
    """``--verify``'s seeded inputs of ``pad``'s shape ``(N, T)``: features ``(N, T, D)`` in
    ``dtype``, or token ids ``(N, T)`` in ``[0, V)`` for a network with an embedding. A network
    that masks its own inputs gets its padding there: ids 0 (``mask_zero``) or ``mask_value``
    at the steps ``pad`` marks, and no other step masked."""
    rng = np.random.default_rng(seed)
    n, t = pad.shape
    if cfg.vocab_size is not None:
        ids = rng.integers(1 if cfg.mask_zero else 0, cfg.vocab_size, size=(n, t))
        return np.where(pad, 0, ids) if cfg.mask_zero else ids
    x = rng.standard_normal((n, t, cfg.input_size)).astype(dtype)
    if cfg.mask_value is not None:
        x[pad] = cfg.mask_value
        x[~pad & np.all(x == cfg.mask_value, axis=-1)] += 1  # no accidental masked step
    return x


def _coarsest(*values: Any) -> np.dtype[Any]:
    """The least precise floating dtype of arrays and parameters: the one a comparison of
    them is held to."""
    dts = [np.dtype(v.dtype) for v in values if np.dtype(v.dtype).kind == "f"]
    return min(dts, key=lambda d: d.itemsize) if dts else np.dtype(np.float32)


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert` did: the network, both formats, the verification if asked."""

    params: RNNParams
    src_format: str
    dst_format: str
    verification: Verification | None


class VerificationError(ValueError):
    """``verify=True`` and the written file does not compute what the source does; nothing
    was written."""

    def __init__(self, verification: Verification) -> None:
        super().__init__(f"verification failed, nothing written: {verification.summary}")
        self.verification = verification


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of the file's bytes, as 64 lowercase hexadecimal digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(src: str | os.PathLike[str], expected: str) -> os.stat_result:
    """Compare the SHA-256 of ``src`` with ``expected``; return the file's status when they
    agree, so that a change while it is read can be seen."""
    want = expected.strip().lower()
    if len(want) != 64 or any(c not in "0123456789abcdef" for c in want):
        raise ValueError(f"expect_sha256 must be 64 hexadecimal digits, got {expected!r}")
    before = os.stat(src)
    got = sha256_of(src)
    if got != want:
        raise FileFormatError(f"{src}: its SHA-256 is {got}, not the expected {want}; "
                              f"nothing written")
    return before


def convert(src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
            src_format: str | None = None, dst_format: str | None = None,
            hints: Hints = Hints(), verify: bool = False, force: bool = False,
            seed: int = 0, limits: Limits | None = None, allow_external_data: bool = False,
            expect_sha256: str | None = None) -> Conversion:
    """Convert the file ``src`` into ``dst``; formats from the extensions unless named.

    Each format is detected once and the source read once. With ``verify`` the written file
    is read back and both are run in their own frameworks before it is renamed into place.
    ``limits`` and ``allow_external_data`` apply to reading and to running the files, as
    :func:`read` says. With ``expect_sha256`` (64 hexadecimal digits) the source's bytes
    must have that SHA-256, and must not change while they are read: ``.onnx``, ``.pt`` and
    ``.weights.h5`` carry no checksum of their own, so a flipped bit would otherwise convert
    as different weights.

    Raises:
        FileNotFoundError, FileExistsError, FileFormatError, MissingHintError,
        UnsupportedError, ImportError, LimitError: as :func:`read` and :func:`write`.
        VerificationError: the check failed; nothing was written.
        FileFormatError: the source's SHA-256 is not ``expect_sha256``.
    """
    with limits_.using(limits, allow_external_data=allow_external_data):
        return _convert(src, dst, src_format, dst_format, hints, verify, force, seed,
                        expect_sha256)


def _convert(src: str | os.PathLike[str], dst: str | os.PathLike[str], src_format: str | None,
             dst_format: str | None, hints: Hints, verify: bool, force: bool, seed: int,
             expect_sha256: str | None) -> Conversion:
    src_fmt = detect(src, src_format)
    dst_fmt = detect(dst, dst_format)
    hashed = None if expect_sha256 is None else _check_sha256(src, expect_sha256)
    params = read(src, src_fmt, hints)
    if hashed is not None:
        now = os.stat(src)
        if (now.st_ino, now.st_size, now.st_mtime_ns) != (
                hashed.st_ino, hashed.st_size, hashed.st_mtime_ns):
            raise FileFormatError(f"{src}: the file changed while it was read; nothing written")
    results: list[Verification] = []

    def check(tmp: Path) -> None:
        # a format that cannot be read back (.tflite) is still run by its own runtime
        back = read(tmp, dst_fmt, hints_for(params, dst_fmt)) if readable(dst_fmt) else params
        try:
            result = verify_files(Path(src), src_fmt, params, tmp, dst_fmt, back, seed=seed)
        except ImportError:
            raise
        except Exception as exc:  # a runtime's refusal of a file: ONNX Runtime, Keras, torch
            raise FileFormatError(f"--verify could not run {src} and {dst} in their own "
                                  f"frameworks, nothing written: {type(exc).__name__}: "
                                  f"{str(exc)[:300]}") from None
        results.append(result)
        if not result.passed:
            raise VerificationError(result)

    write(params, dst, dst_fmt, force=force, check=check if verify else None, sources=[src])
    return Conversion(params, src_fmt, dst_fmt, results[0] if results else None)
