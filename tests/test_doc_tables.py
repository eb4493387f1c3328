"""Documents that cannot drift: the tables of facts the code knows are made from it
(``rnn_ref.conformance.doc_tables``), every call the documents name binds to the real
signature, and the spec's layout names every module there is."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

import rnn_ref
from rnn_ref import _lazy
from rnn_ref.conformance import doc_tables

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / d for d in doc_tables.DOCUMENTS]

#: each table, and the document that must hold it
HOME = {"formats": "README.md", "frameworks": "README.md",
        "case-counts": "docs/conformance.md", "canonical-file": "docs/spec.md",
        "gate-orders": "docs/spec.md"}


def test_every_document_exists_and_the_readme_is_for_a_newcomer() -> None:
    for doc in DOCUMENTS:
        assert doc.is_file(), doc
    assert len((ROOT / "README.md").read_text().splitlines()) < 250


@pytest.mark.parametrize("name", sorted(doc_tables.TABLES))
def test_each_table_is_in_its_home(name: str) -> None:
    assert name in doc_tables.blocks((ROOT / HOME[name]).read_text(encoding="utf-8"))


@pytest.mark.parametrize("doc", DOCUMENTS, ids=[str(d.relative_to(ROOT)) for d in DOCUMENTS])
def test_generated_tables_are_what_the_code_makes_today(doc: Path) -> None:
    stale = doc_tables.stale(doc.read_text(encoding="utf-8"))
    assert not stale, (f"{doc.relative_to(ROOT)}: the tables {stale} differ from the code; "
                       f"run {doc_tables.COMMAND}")


def test_write_replaces_only_the_blocks_and_check_reports_them(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{doc_tables.begin('case-counts')}\nold\n"
                   f"{doc_tables.end('case-counts')}\noutro\n")
    assert doc_tables.main(["--check", str(doc)]) == 1
    assert doc_tables.write(doc) == ["case-counts"]
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert doc_tables.main(["--check", str(doc)]) == 0
    assert doc_tables.write(doc) == []
    doc.write_text(f"{doc_tables.begin('nonesuch')}\n{doc_tables.end('nonesuch')}\n")
    with pytest.raises(ValueError, match="unknown generated blocks"):
        doc_tables.stale(doc.read_text())


def test_the_tables_hold_what_the_code_says() -> None:
    """A few facts read independently of the generator."""
    from rnn_ref import io
    from rnn_ref.backends import _frameworks
    from rnn_ref.conformance import cases

    canonical = doc_tables.canonical_file()
    assert f'"{io.FORMAT}"' in canonical and "readout.w" not in canonical
    for name in ("layers.{l}.{r}.w_x", "layers.{l}.{r}.b_h", "head.{j}.w", "embedding"):
        assert f"`{name}`" in canonical
    counts = doc_tables.case_counts()
    assert f"| quick | {len(cases.quick_cases())} |" in counts
    assert f"| full | {len(cases.full_cases())} |" in counts
    for name in _frameworks.formats():
        assert f"| `{name}` |" in doc_tables.formats_table()
    torch_row = next(line for line in doc_tables.frameworks_table().splitlines()
                     if line.startswith("| torch.nn.RNN |"))
    # torch builds reverse-only layers, per-layer sizes and merge modes (a TorchNetwork)
    assert torch_row.split(" | ")[2:6] == ["yes", "yes", "yes", "yes"], torch_row


# --------------------------------------------------------------------------------------------
# every documented call binds to the real signature
# --------------------------------------------------------------------------------------------
_CALL = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)\((?P<args>.*)\)$", re.S)


def _target(name: str) -> Any:
    """The function a documented name means, or None for names that are not rnn-ref's."""
    parts = name.split(".")
    if parts[0] == "rnn_ref":
        parts = parts[1:]
    if not parts:
        return None
    head, rest = parts[0], parts[1:]
    if head in _lazy.CONVERTERS:
        if rest:
            return None
        try:
            return _lazy.resolve(head)
        except ImportError:  # its framework is not installed here
            return None
    roots = {"params": rnn_ref.RNNParams, "config": rnn_ref.RNNConfig}
    if head in roots:
        obj = roots[head]
    elif not head.startswith("_") and hasattr(rnn_ref, head):
        obj = getattr(rnn_ref, head)
    elif name.startswith("rnn_ref."):
        try:
            obj = importlib.import_module(f"rnn_ref.{head}")
        except ImportError:
            return None
    else:
        return None
    for part in rest:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if callable(obj) else None


def _split(args: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in args:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def documented_calls(text: str) -> list[tuple[str, str]]:
    """``(name, argument text)`` of every inline-code span that is one call."""
    calls = []
    for span in re.findall(r"`([^`]+)`", text):
        m = _CALL.match(" ".join(span.split()))
        if m:
            calls.append((m.group("name"), m.group("args")))
    return calls


def _bind(func: Any, args: str) -> None:
    """Bind a documented argument list: ``name=...`` and any name after a bare ``*`` as
    keywords, the rest as positions (unless ``...`` stands for some of them)."""
    sig = inspect.signature(func)
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    keyword_only = False
    for arg in _split(args):
        if arg == "*":
            keyword_only = True
            continue
        if arg in ("...", "") or arg.startswith("*"):
            continue
        key = re.match(r"^([A-Za-z_]\w*)\s*=(?!=)", arg)
        if key:
            keywords[key.group(1)] = None
        elif keyword_only and re.fullmatch(r"[A-Za-z_]\w*", arg):
            keywords[arg] = None
        else:
            positional.append(None)
    if "..." in args:
        positional = []
    sig.bind_partial(*positional, **keywords)


def _all_calls() -> list[tuple[str, str, str]]:
    out = []
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
                ROOT / "benchmarks" / "README.md"]:
        for name, args in documented_calls(doc.read_text(encoding="utf-8")):
            out.append((str(doc.relative_to(ROOT)), name, args))
    return out


def test_the_spec_documents_the_calls_it_should() -> None:
    names = {name for doc, name, _ in _all_calls() if doc == "docs/spec.md"}
    for expected in ("forward", "backward", "to_keras", "to_torch", "to_onnx", "from_torch",
                     "init", "save"):
        assert expected in names, expected
    assert ("to_keras", "..., return_sequences=...") not in {
        (n, a) for _, n, a in _all_calls()}


def test_every_documented_call_binds_to_the_real_signature() -> None:
    failures, checked = [], 0
    for doc, name, args in _all_calls():
        func = _target(name)
        if func is None:
            continue
        try:
            inspect.signature(func)
        except (TypeError, ValueError):
            continue
        checked += 1
        try:
            _bind(func, args)
        except TypeError as exc:
            failures.append(f"{doc}: `{name}({args})`: {exc}")
    assert checked >= 30, checked
    assert not failures, "\n".join(failures)


def test_a_wrong_keyword_is_caught() -> None:
    pytest.importorskip("keras")
    with pytest.raises(TypeError):
        _bind(_lazy.resolve("to_keras"), "..., return_sequences=...")
    _bind(rnn_ref.forward, "params, x, *, h0=None, lengths=None, compute_dtype=None")


# --------------------------------------------------------------------------------------------
# the spec's layout (section 6) is the tree
# --------------------------------------------------------------------------------------------
def test_the_spec_layout_names_every_module() -> None:
    spec = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    layout = spec.split("## 6. Repository layout", 1)[1]
    roles = {"__init__.py", "record.py", "convert.py", "files.py", "backend.py"}
    missing = []
    for path in sorted((ROOT / "backends").rglob("*.py")):
        rel = path.relative_to(ROOT / "backends")
        if len(rel.parts) == 1:
            if path.name != "__init__.py" and path.name not in layout:
                missing.append(f"backends/{rel}")
        else:
            if f"{rel.parts[0]}/" not in layout:
                missing.append(f"backends/{rel.parts[0]}/")
            if path.name not in roles and path.name not in layout:
                missing.append(f"backends/{rel}")
    for folder in ("rnn_ref", "conformance"):
        for path in sorted((ROOT / folder).glob("*.py")):
            if path.name != "__init__.py" and path.name not in layout \
                    and path.stem not in layout:
                missing.append(f"{folder}/{path.name}")
    assert not missing, f"docs/spec.md section 6 does not name {missing}"
