"""mypy over the code as it is installed, so that it sees every call between ``rnn_ref``,
``backends`` and ``conformance``.

``backends/`` and ``conformance/`` are installed as ``rnn_ref.backends`` and
``rnn_ref.conformance`` (``[tool.setuptools.package-dir]`` in pyproject.toml). Run on the
folders as they lie, mypy resolves none of the imports across that boundary (and
``ignore_missing_imports`` would hide it). This lays the packages out in a temporary folder as
they are installed (copies, never links), runs mypy there with the project's configuration, and
reports the errors at the real files' paths.

    ./dev run python tests/typecheck.py [ROOT]

exits with mypy's status. ``tests/test_lint.py`` runs it, and plants an error across the
boundary in a copy of the tree to show that it is seen.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the package the others are mapped into
TOP = "rnn_ref"
#: mypy's cache for the installed layout, under the tree's ``.mypy_cache`` (apart from the one a
#: plain ``mypy`` run keeps)
CACHE = Path(".mypy_cache") / "installed-layout"


def package_dirs(root: Path) -> dict[str, str]:
    """``{folder in the installed layout: folder in the tree}`` from pyproject.toml's
    ``[tool.setuptools.package-dir]``, e.g. ``{"rnn_ref/backends": "backends"}``, with the
    top package mapped to itself."""
    with open(root / "pyproject.toml", "rb") as fh:
        mapping = tomllib.load(fh)["tool"]["setuptools"].get("package-dir", {})
    dirs = {TOP: TOP}
    for package, folder in mapping.items():
        if not package.startswith(f"{TOP}."):
            raise ValueError(f"pyproject.toml maps the package {package!r} outside {TOP!r}; "
                             f"tests/typecheck.py lays out only packages inside {TOP!r}")
        dirs[package.replace(".", "/")] = folder.strip("/")
    return dirs


def lay_out(root: Path, dest: Path) -> dict[str, str]:
    """Copy the packages of ``root`` into ``dest`` as they are installed (file times kept, so
    mypy's cache stays valid), with pyproject.toml beside them; the mapping used."""
    dirs = package_dirs(root)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for installed, folder in sorted(dirs.items()):  # a package before the ones inside it
        target = dest / installed
        if target.exists():
            raise FileExistsError(f"{root / TOP} already has {installed!r}, where the folder "
                                  f"{folder!r} is installed")
        shutil.copytree(root / folder, target, ignore=ignore)
    shutil.copy2(root / "pyproject.toml", dest / "pyproject.toml")
    return dirs


def real_paths(output: str, dirs: dict[str, str]) -> str:
    """mypy's ``output`` with each path of the installed layout at the start of a line
    replaced by the real file's path (``rnn_ref/backends/x.py`` -> ``backends/x.py``)."""
    nested = sorted((k for k in dirs if k != dirs[k]), key=len, reverse=True)
    if not nested:
        return output
    pattern = re.compile(r"^(" + "|".join(re.escape(k) for k in nested) + r")/", re.M)
    return pattern.sub(lambda m: dirs[m.group(1)] + "/", output)


def typecheck(root: Path = ROOT, *, cache_dir: Path | None = None) -> tuple[int, str]:
    """``(mypy's exit status, its output at the real paths)`` for the tree at ``root`` laid
    out as installed; ``cache_dir`` is mypy's cache (default: :data:`CACHE` under ``root``)."""
    cache = Path(root) / CACHE if cache_dir is None else Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rnn-ref-typecheck-") as tmp:
        work = Path(tmp)
        dirs = lay_out(Path(root), work)
        res = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "pyproject.toml",
                              "--cache-dir", str(cache), TOP],
                             cwd=work, capture_output=True, text=True)
    return res.returncode, real_paths(res.stdout + res.stderr, dirs)


def main(argv: list[str]) -> int:
    """``typecheck.py [ROOT]``: print mypy's report and return its status."""
    if len(argv) > 1:
        print(f"usage: typecheck.py [ROOT]; got {argv!r}", file=sys.stderr)
        return 2
    status, output = typecheck(Path(argv[0]) if argv else ROOT)
    print(output, end="")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
