"""Writing an output file safely: the destination rules every writer of rnn-ref follows.

* **Exclusive.** Without ``force`` the name is created exclusively: the finished temporary
  file is hard-linked to it (``link`` fails if the name exists), so of two runs writing one
  new name the second fails instead of replacing the first. Anything at the name, a dangling
  symbolic link included, counts as existing.
* **Only regular files are replaced.** With ``force`` the name must be a regular file: a
  folder, a symbolic link, a FIFO, a socket or a device node is refused. A source and a
  destination that are the same file (the same path, another path, a hard or symbolic link:
  the same ``st_dev``/``st_ino``) are refused even with ``force``.
* **Modes.** A new file gets ``0o666`` less the umask, whatever the format; a replaced file
  keeps its mode.
* **Atomic and durable.** The writer writes into a temporary folder; its file is copied into
  a temporary folder beside the destination, flushed to disk (``fsync``) and put in place by
  one ``link`` or ``rename``, then the folder is flushed too. A failure or a signal that
  Python sees removes the temporaries; a destination is never half written.
* **Writers never meet a full disk.** Libraries that write in C (HDF5, torch) can crash when
  a write fails (h5py segfaults on a full disk), so a writer writes into a memory-backed
  folder (``/dev/shm``) when it has room, and the copy onto the destination's disk is made
  here, where a full disk is an ``OSError`` like any other.
* **No leftovers.** Temporaries are named ``.rnn-ref-tmp.<host>.<pid>.<random>``; a run
  removes those of this host whose process no longer exists (a run killed with ``kill -9``),
  so they never accumulate.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TEMP_PREFIX", "Destination", "WriteError", "check_destination", "default_mode",
           "remove_stale", "write_file"]

TEMP_PREFIX = ".rnn-ref-tmp"
#: where writers write first when it has room (memory-backed on Linux)
MEMORY_FOLDER = Path("/dev/shm")
#: the room asked of the memory folder beyond the expected size
_MARGIN = 64 << 20


class WriteError(OSError):
    """The output could not be written (a full disk, a writer's own failure); nothing was
    put at the destination. ``reason`` says why, without the path."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot write {path}: {reason}")
        self.reason = reason


def _host_tag() -> str:
    import platform

    return hashlib.sha256(platform.node().encode()).hexdigest()[:8]


def _temp_prefix() -> str:
    return f"{TEMP_PREFIX}.{_host_tag()}.{os.getpid()}."


def default_mode() -> int:
    """``0o666`` less the process's umask: the mode ``open`` gives a new file."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no other way to read it; set it straight back
    os.umask(mask)
    return 0o666 & ~mask


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


@dataclass(frozen=True)
class Destination:
    """A checked output path: ``mode`` is the mode the file will have, ``replaces`` the
    status of the regular file it replaces (``force``), else ``None``."""

    path: Path
    force: bool
    mode: int
    replaces: os.stat_result | None


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def check_destination(path: str | os.PathLike[str], *, force: bool,
                      sources: Sequence[str | os.PathLike[str]] = ()) -> Destination:
    """Check that ``path`` may be written (the rules of the module docstring).

    Raises:
        FileExistsError: something is at ``path`` and ``force`` is False.
        FileNotFoundError: the folder of ``path`` does not exist.
        ValueError: ``path`` is one of ``sources``, or ``force`` and ``path`` is not a
            regular file.
    """
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    for source in sources:
        with contextlib.suppress(OSError):
            if _same_file(os.stat(source), os.stat(target)):
                raise ValueError(f"{target} is the source file {source} itself; writing it "
                                 f"would destroy the source (refused even with --force)")
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return Destination(target, force, default_mode(), None)
    if not force:
        what = "" if stat.S_ISREG(st.st_mode) else f" ({_kind(st.st_mode)})"
        raise FileExistsError(f"{target} exists{what}; pass force=True to replace it")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{target} is {_kind(st.st_mode)}; --force replaces only a regular "
                         f"file")
    return Destination(target, force, stat.S_IMODE(st.st_mode) & 0o777, st)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(folder: Path) -> list[Path]:
    """Remove the temporaries in ``folder`` of this host's processes that no longer exist
    (runs killed before they could clean up); return what was removed."""
    removed: list[Path] = []
    prefix = f"{TEMP_PREFIX}.{_host_tag()}."
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        entry = folder / name
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    return removed


def _fsync_path(path: Path, *, folder: bool = False) -> None:
    if folder and os.name == "nt":  # Windows cannot open a folder to flush it
        return
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if folder else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _memory_room(expected: int) -> bool:
    try:
        st = os.statvfs(MEMORY_FOLDER)
    except OSError:
        return False
    return os.access(MEMORY_FOLDER, os.W_OK) and st.f_bavail * st.f_frsize >= expected + _MARGIN


@contextlib.contextmanager
def _staging(folder: Path, suffix: str) -> Iterator[Path]:
    """A temporary folder named for this process in ``folder``, removed on leaving."""
    remove_stale(folder)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(), dir=folder))
    try:
        yield tmp / ("out" + suffix)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _copy(src: Path, dst: Path, mode: int) -> None:
    """Copy ``src`` to the new file ``dst`` with ``mode``, flushed to disk."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(src, "rb") as fh:
            while chunk := fh.read(1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def _place(tmp: Path, dest: Destination) -> None:
    """Put the finished ``tmp`` at ``dest.path``: created exclusively without ``force``,
    replacing the regular file checked before with it."""
    target = dest.path
    if not dest.force:
        try:
            os.link(tmp, target, follow_symlinks=False)
        except FileExistsError:
            raise FileExistsError(f"{target} appeared while this run was writing it (another "
                                  f"run?); it was left as it is") from None
        except OSError as exc:  # a file system without hard links: rename, checked
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                raise
            if os.path.lexists(target):
                raise FileExistsError(f"{target} appeared while this run was writing "
                                      f"it; it was left as it is") from None
            os.replace(tmp, target)
        return
    st = os.lstat(target) if os.path.lexists(target) else None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{target} became {_kind(st.st_mode)} while this run was writing; "
                         f"--force replaces only a regular file")
    os.replace(tmp, target)


def write_file(path: str | os.PathLike[str], write: Callable[[Path], None], *,
               force: bool = False, sources: Sequence[str | os.PathLike[str]] = (),
               check: Callable[[Path], None] | None = None, expected_size: int = 0) -> Path:
    """Write a file with ``write(temporary_path)`` and put it at ``path`` by the rules of
    the module docstring; ``check(temporary_path)``, when given, runs on the finished file
    before it is put in place (an exception from it leaves nothing behind).

    ``expected_size`` (bytes) decides whether the writer may use the memory folder.

    Raises:
        FileExistsError, FileNotFoundError, ValueError: as :func:`check_destination`.
        WriteError: ``write`` or the copy failed (a full disk, a writer's own error).
    """
    dest = check_destination(path, force=force, sources=sources)
    folder = dest.path.parent
    _check_size_limit(dest.path, expected_size)
    suffix = "".join(dest.path.suffixes[-2:]) if dest.path.name.endswith(".weights.h5") \
        else dest.path.suffix
    use_memory = _memory_room(2 * expected_size) and not _same_device(folder, MEMORY_FOLDER)
    with contextlib.ExitStack() as stack:
        final = stack.enter_context(_staging(folder, suffix))
        first = stack.enter_context(_staging(MEMORY_FOLDER, suffix)) if use_memory else final
        try:
            write(first)
            if first != final:
                _copy(first, final, dest.mode)
            else:
                os.chmod(final, dest.mode)
                _fsync_path(final)
        except Exception as exc:  # a writer's own failure: h5py, torch, safetensors, onnx
            raise WriteError(dest.path, _reason(exc)) from None
        if check is not None:
            check(final)
        _place(final, dest)
    _fsync_path(folder, folder=True)
    return dest.path


def _check_size_limit(path: Path, expected: int) -> None:
    """Refuse before writing when the process's file size limit (``ulimit -f``) is below
    what the file may need: a library writing in C can crash when a write fails."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    need = 2 * expected + (1 << 20)
    if soft != resource.RLIM_INFINITY and soft < need:
        raise WriteError(path, f"the file size limit of this process (ulimit -f) is {soft} "
                               f"bytes, and the file may need up to {need}")


def _same_device(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


def _reason(exc: BaseException) -> str:
    if isinstance(exc, WriteError):  # a writer that writes through write_file itself
        return exc.reason
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (" (the disk is full)" if exc.errno in (errno.ENOSPC, errno.EFBIG,
                                                                      errno.EDQUOT) else "")
    if isinstance(exc, MemoryError):
        return "out of memory"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
