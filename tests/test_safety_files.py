"""Where outputs go: the destination rules of ``rnn_ref/_dest.py`` (issue 14, item 6) and
writing when the disk is full or a writer fails (item 5).

``RNN_REF_KILL_COUNT=200 ./dev test -k kill_9`` runs the ``kill -9`` test longer.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import need, need_keras

import rnn_ref
from rnn_ref import RNNConfig, _dest, cli, convert

PARAMS = rnn_ref.init(RNNConfig(3, 5, num_layers=2, output_size=2), seed=3)
OTHER = rnn_ref.init(RNNConfig(4, 6, output_size=3), seed=4)
#: formats and how to be sure their frameworks are here
FORMAT_NEEDS = {"rnn-ref": (), "torch": ("torch",), "onnx": ("onnx",),
                "safetensors": ("torch", "safetensors"), "keras": ("keras",),
                "keras-weights": ("keras",)}


def _need(fmt: str) -> None:
    for module in FORMAT_NEEDS[fmt]:
        need_keras() if module == "keras" else need(module)


def _ext(fmt: str) -> str:
    return convert.FORMATS[fmt][0]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _temporaries(*folders: Path) -> list[str]:
    return [p.name for f in folders if f.is_dir() for p in f.iterdir()
            if p.name.startswith(_dest.TEMP_PREFIX)]


def _mine(folder: Path) -> list[str]:
    """This process's temporaries in ``folder``."""
    prefix = f"{_dest.TEMP_PREFIX}.{_dest._host_tag()}.{os.getpid()}."
    return [n for n in _temporaries(folder) if n.startswith(prefix)]


# --------------------------------------------------------------------------------------------
# exclusive creation, what --force may replace, the source
# --------------------------------------------------------------------------------------------
def test_a_name_created_while_writing_is_not_replaced(tmp_path: Path) -> None:
    """Two runs writing one new name: the second to finish fails and the first's file stays
    (before: check-then-rename replaced it and both said "wrote")."""
    dst = tmp_path / "out.npz"

    def other_run_finishes_first(tmp: Path) -> None:
        rnn_ref.save(OTHER, dst)

    with pytest.raises(FileExistsError, match="appeared while this run was writing"):
        convert.write(PARAMS, dst, check=other_run_finishes_first)
    assert rnn_ref.load(dst) == OTHER
    assert _temporaries(tmp_path) == []


def test_two_processes_writing_one_new_name_one_wins(tmp_path: Path) -> None:
    src = rnn_ref.save(PARAMS, tmp_path / "src.npz")
    dst = tmp_path / "same.npz"
    cmd = [sys.executable, "-m", "rnn_ref.cli", "convert", str(src), str(dst)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        results.append((p.returncode, out, err))
    assert sorted(code for code, _, _ in results) == [0, 2], results
    assert sum(out.startswith("wrote") for _, out, _ in results) == 1
    assert rnn_ref.load(dst) == PARAMS


def test_a_dangling_symlink_is_not_replaced_without_force(tmp_path: Path, capsys) -> None:
    src = rnn_ref.save(PARAMS, tmp_path / "src.npz")
    link = tmp_path / "link.npz"
    link.symlink_to(tmp_path / "nowhere.npz")
    code, _, err = _cli(capsys, "convert", str(src), str(link))
    assert code == 2 and "exists (a symbolic link); pass --force" in err
    assert link.is_symlink() and not link.exists()
    with pytest.raises(FileExistsError):
        rnn_ref.save(PARAMS, link)


def _fifo(folder: Path) -> Path:
    path = folder / "fifo.npz"
    os.mkfifo(path)
    return path


def _symlink_to_file(folder: Path) -> Path:
    target = rnn_ref.save(OTHER, folder / "real.npz")
    link = folder / "link.npz"
    link.symlink_to(target)
    return link


def _folder(folder: Path) -> Path:
    path = folder / "folder.npz"
    path.mkdir()
    return path


def _device(folder: Path) -> Path:
    """A character device node like ``/dev/null`` in ``folder`` (never ``/dev/null``
    itself: a regression run as root would replace it); skipped where ``mknod`` is not
    allowed."""
    path = folder / "null.npz"
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, AttributeError) as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    return path


@pytest.mark.parametrize("make, kind", [(_fifo, "a FIFO"), (_symlink_to_file, "a symbolic link"),
                                        (_folder, "a folder"), (_device, "a character device")],
                         ids=["fifo", "symlink", "folder", "device"])
def test_force_replaces_only_a_regular_file(tmp_path: Path, capsys, make, kind) -> None:
    src = rnn_ref.save(PARAMS, tmp_path / "src.npz")
    dst = make(tmp_path)
    before = os.lstat(dst)
    code, _, err = _cli(capsys, "convert", str(src), str(dst), "--force", "--to", "rnn-ref")
    assert code == 2, err
    assert f"is {kind}; --force replaces only a regular file" in err
    after = os.lstat(dst)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    if kind == "a symbolic link":
        assert rnn_ref.load(dst) == OTHER
    with pytest.raises(ValueError, match="replaces only a regular file"):
        rnn_ref.save(PARAMS, dst, overwrite=True)


def test_dev_null_is_refused_before_anything_is_written() -> None:
    """Only the check runs here: nothing is written even if it regressed."""
    with pytest.raises(ValueError, match="is a character device; --force replaces only"):
        _dest.check_destination(os.devnull, force=True)
    with pytest.raises(FileExistsError, match=r"exists \(a character device\)"):
        _dest.check_destination(os.devnull, force=False)


def _same_path(src: Path) -> Path:
    return src


def _other_spelling(src: Path) -> Path:
    return src.parent / "sub" / ".." / src.name


def _hard_link(src: Path) -> Path:
    os.link(src, src.parent / "hard.npz")
    return src.parent / "hard.npz"


def _soft_link(src: Path) -> Path:
    (src.parent / "soft.npz").symlink_to(src)
    return src.parent / "soft.npz"


@pytest.mark.parametrize("spell", [_same_path, _other_spelling, _hard_link, _soft_link])
def test_the_source_is_never_the_destination(tmp_path: Path, capsys, spell) -> None:
    """``SRC == DST --force`` destroyed the source; any spelling of the same file is refused,
    with ``--force`` too."""
    (tmp_path / "sub").mkdir()
    src = rnn_ref.save(PARAMS, tmp_path / "src.npz")
    data = src.read_bytes()
    dst = spell(src)
    code, _, err = _cli(capsys, "convert", str(src), str(dst), "--force", "--verify")
    assert code == 2 and "is the source file" in err and "refused even with --force" in err
    assert src.read_bytes() == data


# --------------------------------------------------------------------------------------------
# modes, durability
# --------------------------------------------------------------------------------------------
@pytest.fixture
def umask_027():  # type: ignore[no-untyped-def]
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


@pytest.mark.parametrize("fmt", list(FORMAT_NEEDS))
def test_new_files_get_the_umask_default_mode(tmp_path: Path, fmt: str, umask_027: int) -> None:
    """``.npz`` files were created 0600 (``mkstemp``), safetensors too; others 0644."""
    _need(fmt)
    path = convert.write(PARAMS, tmp_path / f"m{_ext(fmt)}", fmt)
    assert stat.S_IMODE(path.stat().st_mode) == umask_027


@pytest.mark.parametrize("fmt", ["rnn-ref", "torch"])
def test_force_keeps_the_existing_mode(tmp_path: Path, fmt: str) -> None:
    _need(fmt)
    path = convert.write(OTHER, tmp_path / f"m{_ext(fmt)}", fmt)
    path.chmod(0o604)
    convert.write(PARAMS, path, fmt, force=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o604
    assert convert.read(path, fmt, convert.hints_for(PARAMS, fmt)) == PARAMS


@pytest.mark.parametrize("fmt", list(FORMAT_NEEDS))
def test_every_format_fsyncs_the_file_and_the_folder(tmp_path: Path, fmt: str,
                                                     monkeypatch) -> None:
    """Before, only ``.npz`` was fsynced."""
    _need(fmt)
    synced: list[tuple[str, str]] = []
    real = os.fsync

    def record(fd: int) -> None:
        st = os.fstat(fd)
        link = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else "?"
        synced.append(("folder" if stat.S_ISDIR(st.st_mode) else "file", link))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    dst = tmp_path / f"m{_ext(fmt)}"
    convert.write(PARAMS, dst, fmt)
    files = [link for kind, link in synced if kind == "file"]
    folders = [link for kind, link in synced if kind == "folder"]
    assert files and any(Path(link).parent.parent == tmp_path for link in files), synced
    assert str(tmp_path) in folders, synced


# --------------------------------------------------------------------------------------------
# temporaries: named, removed on failure, removed after kill -9
# --------------------------------------------------------------------------------------------
def test_a_failure_removes_every_temporary(tmp_path: Path) -> None:
    def fail(tmp: Path) -> None:
        assert tmp.name.startswith("out") and tmp.parent.name.startswith(_dest.TEMP_PREFIX)
        raise ValueError("the check refused it")

    with pytest.raises(ValueError, match="the check refused it"):
        convert.write(PARAMS, tmp_path / "m.npz", check=fail)
    assert os.listdir(tmp_path) == []
    assert _mine(_dest.MEMORY_FOLDER) == []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    host = _dest._host_tag()
    dead = tmp_path / f"{_dest.TEMP_PREFIX}.{host}.{_dead_pid()}.abc123"
    dead.mkdir()
    (dead / "out.npz").write_bytes(b"partial")
    alive = tmp_path / f"{_dest.TEMP_PREFIX}.{host}.{os.getppid()}.def456"
    alive.mkdir()
    other_host = tmp_path / f"{_dest.TEMP_PREFIX}.00000000.{_dead_pid()}.ghi789"
    other_host.mkdir()
    rnn_ref.save(PARAMS, tmp_path / "m.npz")
    assert sorted(_temporaries(tmp_path)) == sorted([alive.name, other_host.name])


def _measure(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


@pytest.mark.slow
def test_kill_9_leaves_the_destination_absent_or_complete(tmp_path: Path) -> None:
    """Conversions killed with SIGKILL at seeded random moments (``RNN_REF_KILL_COUNT``,
    default 20, over ``.npz`` and ``.pt``): each destination is absent or complete and
    valid, and the next run removes what the killed ones left."""
    need("torch")
    count = int(os.environ.get("RNN_REF_KILL_COUNT", "20"))
    rng = np.random.default_rng(14)
    params = rnn_ref.init(RNNConfig(64, 800, output_size=8), seed=5)  # 2.9 MB: a longer write
    src = rnn_ref.save(params, tmp_path / "src.npz")
    out = tmp_path / "out"
    out.mkdir()
    fmts = ["rnn-ref", "torch"]
    base = [sys.executable, "-m", "rnn_ref.cli", "convert", str(src)]
    took = {f: _measure([*base, str(tmp_path / f"first{_ext(f)}")]) for f in fmts}
    left_behind = 0
    for i in range(count):
        fmt = fmts[i % len(fmts)]
        dst = out / f"k{i}{_ext(fmt)}"
        proc = subprocess.Popen([*base, str(dst)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(float(rng.uniform(0.5, 1.05)) * took[fmt])
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        left_behind += any(n.startswith(".") for n in os.listdir(out))
        if dst.exists():
            hints = convert.hints_for(params, fmt)
            assert convert.read(dst, fmt, hints) == params, f"kill {i}: {dst} is not complete"
    subprocess.run([*base, str(out / "after.npz")], check=True, capture_output=True)
    hidden = [n for n in os.listdir(out) if n.startswith(".")]
    assert hidden == [], f"a later run must remove what killed runs left: {hidden}"
    prefix = f"{_dest.TEMP_PREFIX}.{_dest._host_tag()}."
    stale = [n for n in _temporaries(_dest.MEMORY_FOLDER) if n.startswith(prefix)
             and not _dest._alive(int(n[len(prefix):].split(".")[0]))]
    assert stale == [], f"left in {_dest.MEMORY_FOLDER}"
    print(f"{count} kills, {left_behind} left temporaries that the next run removed, "
          f"{sum(1 for p in out.iterdir() if p.name.startswith('k'))} completed")


# --------------------------------------------------------------------------------------------
# a full disk, a failing writer
# --------------------------------------------------------------------------------------------
class _SafetensorLike(Exception):
    """What safetensors raises: an Exception that is none of the usual ones."""


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   MemoryError(), RuntimeError("basic_ios::clear: iostream error"),
                                   _SafetensorLike("Error while serializing: I/O error")],
                         ids=["ENOSPC", "MemoryError", "torch", "safetensors"])
def test_a_failing_writer_is_one_line_and_leaves_nothing(tmp_path: Path, capsys, monkeypatch,
                                                         error: BaseException) -> None:
    """Before, a ``.pt`` on a full disk was a traceback, a ``MemoryError`` too."""
    from rnn_ref.backends.numpy import files as numpy_files

    def write_file(params, path, fmt):  # type: ignore[no-untyped-def]
        Path(path).write_bytes(b"partial")
        raise error

    monkeypatch.setattr(numpy_files, "write_file", write_file)
    src = rnn_ref.save(PARAMS, tmp_path / "src.npz")
    code, out, err = _cli(capsys, "convert", str(src), str(tmp_path / "dst.npz"))
    assert code == 2 and out == "", err
    assert len(err.strip().splitlines()) == 1 and err.startswith("rnn-ref convert: cannot write")
    assert sorted(os.listdir(tmp_path)) == ["src.npz"]
    assert _mine(_dest.MEMORY_FOLDER) == []


def test_a_full_disk_during_the_copy_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    """The copy onto the destination's disk hits ENOSPC (the write itself went to memory)."""
    if not _dest._memory_room(0):
        pytest.skip(f"{_dest.MEMORY_FOLDER} is not usable here: writers write in place")
    real = os.write

    def full(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    src = rnn_ref.save(PARAMS, tmp_path / "src.npz")
    monkeypatch.setattr(os, "write", full)
    code, _, err = _cli(capsys, "convert", str(src), str(tmp_path / "dst.npz"))
    assert code == 2
    assert err.strip().endswith("No space left on device (the disk is full)"), err
    assert sorted(os.listdir(tmp_path)) == ["src.npz"]


_SMALL_FS = """
mount -t tmpfs -o size=4k tmpfs "$1" || exit 99
shift
"$@"
"""


def _in_small_file_system(folder: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``argv`` run where ``folder`` is a 4 KiB tmpfs (a user and mount namespace: no root
    needed where unprivileged namespaces are allowed); skipped where they are not."""
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount -t tmpfs tmpfs "$0"',
                            str(folder)], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a small file system here (unshare -rm: "
                    f"{probe.stderr.decode(errors='replace').strip()[:100]})")
    return subprocess.run(["unshare", "-rm", "sh", "-c", _SMALL_FS, "sh", str(folder), *argv],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["keras-weights", "keras", "torch"])
def test_a_really_full_disk_is_one_line_never_a_crash(tmp_path: Path, fmt: str) -> None:
    """A 4 KiB file system: ``.weights.h5`` printed the right message, then h5py crashed the
    process (exit 139); now the writer writes in memory and the copy fails cleanly."""
    _need(fmt)
    src = rnn_ref.save(rnn_ref.init(RNNConfig(3, 40, output_size=2), seed=1),
                       tmp_path / "src.npz")
    small = tmp_path / "small"
    small.mkdir()
    script = (f"import os, sys; from rnn_ref import cli; code = cli.main(['convert', "
              f"{str(src)!r}, {str(small / ('m' + _ext(fmt)))!r}]); "
              f"print('LEFT', os.listdir({str(small)!r})); sys.exit(code)")
    res = _in_small_file_system(small, [sys.executable, "-c", script])
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert res.stderr.strip().splitlines() == [
        f"rnn-ref convert: cannot write {small / ('m' + _ext(fmt))}: No space left on device "
        f"(the disk is full)"], res.stderr[-2000:]
    assert "LEFT []" in res.stdout


@pytest.mark.parametrize("fmt", ["keras-weights", "torch", "rnn-ref"])
def test_a_small_file_size_limit_is_refused_before_writing(tmp_path: Path, fmt: str) -> None:
    """``ulimit -f`` below what the file may need: refused before any writer runs (a
    ``.weights.h5`` crashed with a segmentation fault)."""
    _need(fmt)
    src = rnn_ref.save(PARAMS, tmp_path / "src.npz")
    dst = tmp_path / f"m{_ext(fmt)}"
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000)); "
            "from rnn_ref import cli; sys.exit(cli.main(sys.argv[1:]))")
    res = subprocess.run([sys.executable, "-c", code, "convert", str(src), str(dst)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    assert len(res.stderr.strip().splitlines()) == 1 and "(ulimit -f) is 2000 bytes" in res.stderr
    assert sorted(os.listdir(tmp_path)) == ["src.npz"]


_PAUSED_WRITER = """
import sys, time
from pathlib import Path
from rnn_ref import cli
from rnn_ref.backends.numpy import files as numpy_files

def write_file(params, path, fmt):
    Path(path).write_bytes(b"partial")
    print("WRITING", flush=True)
    time.sleep(60)

numpy_files.write_file = write_file
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig, code, says", [(signal.SIGTERM, 128 + signal.SIGTERM, ""),
                                             (signal.SIGHUP, 128 + signal.SIGHUP, ""),
                                             (signal.SIGINT, 128 + signal.SIGINT,
                                              "interrupted; nothing was left behind")],
                         ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_while_writing_removes_the_temporaries(tmp_path: Path, sig: int, code: int,
                                                        says: str) -> None:
    """SIGTERM used to end the process with its temporary folder left behind."""
    src = rnn_ref.save(PARAMS, tmp_path / "src.npz")
    proc = subprocess.Popen([sys.executable, "-c", _PAUSED_WRITER, "convert", str(src),
                             str(tmp_path / "dst.npz")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "WRITING"
    assert _temporaries(tmp_path) + _temporaries(_dest.MEMORY_FOLDER)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and says in err
    assert sorted(os.listdir(tmp_path)) == ["src.npz"]
    pid_prefix = f"{_dest.TEMP_PREFIX}.{_dest._host_tag()}.{proc.pid}."
    assert [n for n in _temporaries(_dest.MEMORY_FOLDER) if n.startswith(pid_prefix)] == []
