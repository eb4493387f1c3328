"""``keras[tensorflow]``, ``keras[jax]`` and ``keras[torch]``: Keras in a worker process each.

Why a worker: Keras reads ``KERAS_BACKEND`` once, at its first import, and keeps that backend for
the life of the process. To run Keras' layers on all three backends from one program, each
:class:`KerasProcessBackend` starts a child interpreter with ``KERAS_BACKEND`` set, which runs
:func:`serve` (``python -c "from rnn_ref.backends.keras.worker import serve; serve()"``) and
so :class:`~rnn_ref.backends.keras.backend.KerasBackend` there. The parent never imports Keras.

Protocol, over the child's stdin (requests) and stdout (answers), one answer per request, in
order:

* A message is a frame: its length in bytes as an 8-byte big-endian unsigned integer, then an
  uncompressed NumPy ``.npz`` archive of named arrays. Archives are read with
  ``allow_pickle=False`` and object arrays are refused on writing, so a message is data only:
  nothing from the stream is ever executed. End of stream (or a cut-off frame) ends the worker,
  and tells the parent that the worker died.
* Parameters travel as the canonical file's members (:func:`rnn_ref.io.to_members`: format
  marker, config as JSON, the named arrays), each name prefixed with ``params.``, and are read
  back with :func:`rnn_ref.io.from_members`, which checks them as :func:`rnn_ref.load` does.
* An array or a sequence of arrays ``v`` under the name ``n`` is the member ``n`` (an array) or
  the members ``n.0``, ``n.1``, ... (a tuple); an absent ``n`` is ``None``.
* A request holds ``op`` (a 0-d string, ``"forward"`` or ``"round_trip"``) and ``params.*``;
  for ``forward`` also the array ``x`` and, when given, ``h0`` (an array or a sequence), and
  the arrays ``lengths`` and ``mask``. The parent checks them first
  (:func:`rnn_ref.inputs.check_inputs`): bad inputs raise there and are never sent.
* An answer to ``forward`` holds ``outputs``, ``h_n`` and, with a readout, ``y`` (the fields of
  :class:`~rnn_ref.reference.ForwardResult`); an answer to ``round_trip`` holds ``params.*``,
  the parameters read back from the Keras model built from the request's.
* A request that fails is answered with ``error`` alone: a 0-d string, JSON
  ``{"type": ..., "message": ...}``. The parent raises it again with the worker's message, as
  :class:`~rnn_ref.errors.UnsupportedError`, ``ValueError`` or ``TypeError`` when it is of that
  exact type, and as ``RuntimeError`` otherwise. A worker that dies is reported as a
  ``RuntimeError`` that quotes the end of its stderr.

The worker starts on first use, is reused until :meth:`KerasProcessBackend.close` (its stdin
closed, then up to 30 s for it to exit) or the interpreter exits, and is restarted when found
dead.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from typing import IO, Any

import numpy as np

from rnn_ref.backends.keras.backend import KerasBackend, KerasSupport
from rnn_ref.backends.keras.convert import from_native, to_native
from rnn_ref.errors import UnsupportedError
from rnn_ref.inputs import check_inputs
from rnn_ref.io import from_members, to_members
from rnn_ref.params import RNNParams
from rnn_ref.reference import ForwardResult

__all__ = ["KerasProcessBackend", "answer", "get_params", "get_value", "jax_backend",
           "put_params", "put_value", "read_message", "serve", "serve_with",
           "tensorflow_backend", "torch_backend", "write_message"]

Array = np.ndarray[Any, Any]
Message = dict[str, Array]

_HEAD = struct.Struct(">Q")
_PARAMS = "params."
_ERRORS: dict[str, type[Exception]] = {"UnsupportedError": UnsupportedError,
                                       "ValueError": ValueError, "TypeError": TypeError}


# --------------------------------------------------------------------------------------------
# messages
# --------------------------------------------------------------------------------------------
def write_message(stream: IO[bytes], message: Mapping[str, Any]) -> None:
    """Send one framed message."""
    arrays: dict[str, Any] = {k: np.asarray(v) for k, v in message.items()}
    for k, v in arrays.items():
        if v.dtype.hasobject:
            raise TypeError(f"{k} must be an array of numbers, got dtype {v.dtype}")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    stream.write(_HEAD.pack(len(data)) + data)
    stream.flush()


def read_message(stream: IO[bytes]) -> Message | None:
    """Receive one framed message; ``None`` at the end of the stream or on a cut-off frame."""
    head = stream.read(_HEAD.size)
    if len(head) < _HEAD.size:
        return None
    (size,) = _HEAD.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


def put_value(message: dict[str, Any], name: str, value: Any) -> None:
    """Store an array as ``name``, a sequence of arrays as ``name.0``, ``name.1``, ..."""
    if value is None:
        return
    if isinstance(value, (list, tuple)):
        message.update({f"{name}.{i}": np.asarray(v) for i, v in enumerate(value)})
    else:
        message[name] = np.asarray(value)


def get_value(message: Message, name: str) -> Any:
    """Inverse of :func:`put_value`: the array, the tuple of arrays, or ``None``."""
    if name in message:
        return message[name]
    items = sorted((int(k[len(name) + 1:]), v) for k, v in message.items()
                   if k.startswith(f"{name}."))
    return tuple(v for _, v in items) or None


def put_params(message: dict[str, Any], params: RNNParams) -> None:
    message.update({_PARAMS + k: v for k, v in to_members(params).items()})


def get_params(message: Message) -> RNNParams:
    return from_members({k[len(_PARAMS):]: v for k, v in message.items()
                         if k.startswith(_PARAMS)}, source="Keras worker message")


# --------------------------------------------------------------------------------------------
# the worker
# --------------------------------------------------------------------------------------------
Converters = tuple[Callable[[Any], RNNParams], Callable[[RNNParams], Any]]


def answer(backend: Any, request: Message, converters: Converters) -> dict[str, Any]:
    """One request: ``forward`` (the default) on ``backend``, or ``round_trip`` through the
    framework's ``(from_native, to_native)``."""
    params = get_params(request)
    out: dict[str, Any] = {}
    if str(request.get("op", "forward")) == "round_trip":
        from_native_, to_native_ = converters
        put_params(out, from_native_(to_native_(params)))
        return out
    c0 = get_value(request, "c0")  # an LSTM's initial cell states, sent only when given
    res = backend.forward(params, request["x"], h0=get_value(request, "h0"),
                          lengths=request.get("lengths"), mask=request.get("mask"),
                          **({} if c0 is None else {"c0": c0}))
    put_value(out, "outputs", res.outputs)
    put_value(out, "h_n", res.h_n)
    put_value(out, "y", res.y)
    put_value(out, "c_n", getattr(res, "c_n", None))
    if params.config.select != "sequence":
        put_value(out, "selected", res.selected)
    return out


def serve_with(backend: Any, converters: Converters) -> None:
    """The worker loop: read requests on stdin, answer on stdout, until stdin closes; every
    error goes back to the caller, typed."""
    import warnings

    warnings.simplefilter("ignore")  # Keras' and JAX's notices would only clutter the log
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the answers
    while (request := read_message(stdin)) is not None:
        try:
            reply = answer(backend, request, converters)
        except Exception as exc:
            reply = {"error": np.array(json.dumps({"type": type(exc).__name__,
                                                   "message": str(exc)}))}
        write_message(stdout, reply)


def serve() -> None:
    """The worker loop of ``keras[...]`` (Keras 3, whatever ``KERAS_BACKEND`` says)."""
    serve_with(KerasBackend(), (from_native, to_native))


# --------------------------------------------------------------------------------------------
# the parent's side
# --------------------------------------------------------------------------------------------
class KerasProcessBackend(KerasSupport):
    """``keras[<backend>]``: a worker process with ``KERAS_BACKEND`` set runs Keras' layers.

    The worker starts on first use (TensorFlow's import takes a few seconds) and is reused
    until :meth:`close` or the interpreter exits.
    """

    def __init__(self, backend: str) -> None:
        if backend not in ("tensorflow", "jax", "torch"):
            raise ValueError(f"Keras backend must be 'tensorflow', 'jax' or 'torch', "
                             f"got {backend!r}")
        self.backend = backend
        self.name = f"keras[{backend}]"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None  # the worker's stderr, quoted when it dies
        self._lock = threading.Lock()
        self._closes_at_exit = False

    #: what the worker process runs (``python -c``)
    worker_code = "from rnn_ref.backends.keras.worker import serve; serve()"

    def worker_env(self) -> dict[str, str]:
        """The worker's environment: this process's, with its Keras backend."""
        return {**os.environ, "KERAS_BACKEND": self.backend, "TF_CPP_MIN_LOG_LEVEL": "2"}

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self.close()  # a dead worker's pipes and log
            env, code = self.worker_env(), self.worker_code
            self._log = tempfile.TemporaryFile()
            self._proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=self._log, env=env)
            if not self._closes_at_exit:
                atexit.register(self.close)
                self._closes_at_exit = True
        return self._proc

    def close(self) -> None:
        """End the worker: close its stdin, wait (up to 30 s) for it to exit, free its pipes."""
        proc, self._proc = self._proc, None
        log, self._log = self._log, None
        if log is not None:
            log.close()
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except BrokenPipeError:  # a dead worker, and a request still buffered
                pass
        if proc.poll() is None:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # a worker that does not end is ended
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def _ask(self, request: Mapping[str, Any]) -> Message:
        with self._lock:
            proc = self._start()
            if proc.stdin is None or proc.stdout is None:
                raise RuntimeError(f"the {self.name} worker has no pipes")
            try:
                write_message(proc.stdin, request)
                answer = read_message(proc.stdout)
            except BrokenPipeError:  # it died before reading the request
                answer = None
        if answer is None:
            tail = ""
            if self._log is not None:
                self._log.seek(0)
                tail = self._log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"the {self.name} worker died (exit code {proc.wait()}); its "
                               f"last words:\n{tail}")
        if "error" in answer:
            err = json.loads(str(answer["error"]))
            raise _ERRORS.get(err["type"], RuntimeError)(err["message"])
        return answer

    def round_trip(self, params: RNNParams) -> RNNParams:
        """Through a Keras model built by the worker (``to_keras`` then ``from_keras``)."""
        request: dict[str, Any] = {"op": np.array("round_trip")}
        put_params(request, params)
        return get_params(self._ask(request))

    def forward(self, params: RNNParams, x: Array, *, h0: Any = None, lengths: Any = None,
                mask: Any = None) -> ForwardResult:
        """Keras' layers in the worker on ``x (N, T, D)``, ``h0 (L*R, N, M)`` (or L*R
        ``(N, M_l)``), ``lengths (N,)`` or ``mask (N, T)``: ``outputs (N, T, F)`` (a pair of
        ``(N, T, M)`` for ``merge_mode=None``), ``h_n (L*R, N, M)`` (or L*R ``(N, M_l)``) and
        ``y (N, T, K)`` or ``None``. The inputs are checked here, in the parent
        (:func:`rnn_ref.inputs.check_inputs`), so a bad one raises the oracle's error and is
        never sent."""
        inputs = check_inputs(params.config, x, h0=h0, lengths=lengths, mask=mask,
                              where=self.name)
        request: dict[str, Any] = {"op": np.array("forward"), "x": inputs.x}
        put_params(request, params)
        put_value(request, "h0", inputs.h0)  # L*R arrays (N, M_l), one per layer and direction
        if inputs.lengths is not None:  # (N,) int64
            request["lengths"] = inputs.lengths
        elif inputs.padding == "mask":  # (N, T) bool
            request["mask"] = inputs.valid
        answer = self._ask(request)
        outputs = get_value(answer, "outputs")
        selected = (get_value(answer, "selected") if params.config.select != "sequence"
                    else outputs)
        return ForwardResult(outputs, get_value(answer, "h_n"), get_value(answer, "y"),
                             selected)


def tensorflow_backend() -> KerasProcessBackend:
    """``keras[tensorflow]``."""
    return KerasProcessBackend("tensorflow")


def jax_backend() -> KerasProcessBackend:
    """``keras[jax]``."""
    return KerasProcessBackend("jax")


def torch_backend() -> KerasProcessBackend:
    """``keras[torch]``."""
    return KerasProcessBackend("torch")
