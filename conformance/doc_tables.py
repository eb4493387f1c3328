"""The documents' tables of facts the code knows, made from the code, never by hand.

A document holds each table between two markers, ``<!-- generated: NAME: begin -->`` and
``<!-- generated: NAME: end -->``; :func:`write` replaces the block between them with what
:data:`TABLES` makes today, and :func:`stale` says which blocks differ (the test
``tests/test_doc_tables.py`` fails on any, printing :data:`COMMAND`). The ecosystem table,
made from conformance runs, has its own markers and command (:mod:`.ecosystem`).

Tables:

* ``formats``: every file format (``rnn_ref.backends._frameworks.formats()``): name,
  extensions, framework, what it holds, the hints a reader takes;
* ``frameworks``: what each framework's converters hold, feature by feature: each cell is
  the framework record's own ``unsupported(config)`` on a probe network of that feature;
* ``case-counts``: the conformance matrices' sizes (``conformance.cases``);
* ``gate-orders``: the frameworks' packed gate orders (``rnn_ref.cells.GATE_ORDERS``).
* ``canonical-file``: the canonical file's members (``rnn_ref.io.FORMAT`` and the names
  ``RNNParams.named_arrays()`` gives for an Elman layer and an LSTM layer with every switch).

``python -m rnn_ref.conformance.doc_tables [--check] [FILE ...]`` rewrites (or, with
``--check``, checks) the blocks of the given documents, by default :data:`DOCUMENTS`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

__all__ = ["COMMAND", "DOCUMENTS", "TABLES", "begin", "blocks", "end", "main", "render",
           "stale", "write"]

#: the documents holding generated blocks, relative to the repository root
DOCUMENTS = ("README.md", "docs/spec.md", "docs/conformance.md", "docs/safety.md",
             "docs/development.md", "benchmarks/README.md")
COMMAND = "./dev run python -m rnn_ref.conformance.doc_tables"


def begin(name: str) -> str:
    return f"<!-- generated: {name}: begin -->"


def end(name: str) -> str:
    return f"<!-- generated: {name}: end -->"


def _made_by(name: str) -> str:
    return f"<!-- made by {COMMAND} ({name}); do not edit by hand -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def formats_table() -> str:
    """Every file format: ``--from``/``--to`` name, extensions, framework, contents, hints."""
    from rnn_ref.backends import _frameworks

    lines = ["| format | extensions | framework | what it holds | hints it reads |",
             "|---|---|---|---|---|"]
    for name, (fw, fmt) in _frameworks.formats().items():
        ext = ", ".join(f"`{e}`" for e in fmt.extensions)
        hints = ", ".join(f"`--{h.replace('_', '-')}`" for h in sorted(fmt.hints)) or "none"
        lines.append(f"| `{name}` | {ext} | {fw.name} | {_cell(fmt.holds)} | {hints} |")
    return "\n".join(lines)


def _probes() -> list[tuple[str, tuple[object, ...]]]:
    """(feature, small networks that have it and nothing else unusual): a framework holds
    the feature when it holds any of them (a reverse layer time-aligned, as torch and ONNX
    return it, or in processing order, as Keras' ``go_backwards``)."""
    from rnn_ref.config import RNNConfig

    def c(**kw: object) -> tuple[RNNConfig]:
        return (RNNConfig(**{"input_size": 3, "hidden_size": 4, **kw}),)  # type: ignore[arg-type]

    return [
        ("reverse-only layer", c(direction="reverse")
         + c(direction="reverse", output_order="processing")),
        ("bidirectional", c(direction="bidirectional")),
        ("per-layer sizes", c(hidden_size=[4, 3])),
        ("merge modes (sum)", c(direction="bidirectional", merge_mode="sum")),
        ("mixed stacks", c(hidden_size=[4, 3], direction=["bidirectional", "forward"])),
        ("relu", c(activation="relu")),
        ("sigmoid", c(activation="sigmoid")),
        ("per-direction activations", c(direction="bidirectional", activation=("relu", "tanh"))),
        ("clip", c(clip=1.0)),
        ("embedding", c(vocab_size=10)),
        ("final states", c(select="final")),
        ("pooling over time", c(select="mean_valid")),
        ("dense head, softmax", c(head=[(4, "relu"), (2, "softmax")])),
        ("several outputs", c(select="final", returns=("result", "h_n[-1]"))
         + c(returns=("sequence", "h_n"))),
    ]


def frameworks_table() -> str:
    """Framework x feature: ``yes`` where the framework's converters hold a network of that
    feature (its record's ``unsupported(config)`` is ``None`` for a probe), else ``no``."""
    from rnn_ref.backends import _frameworks

    probes = _probes()
    lines = ["| framework | converters | " + " | ".join(f for f, _ in probes) + " |",
             "|---" * (len(probes) + 2) + "|"]
    for fw in _frameworks.FRAMEWORKS:
        if fw.converters is None:
            continue
        row = ["yes" if any(fw.unsupported(config) is None  # type: ignore[arg-type]
                            for config in configs) else "no"
               for _, configs in probes]
        conv = " / ".join(f"`{n}`" for n in fw.converters)
        lines.append(f"| {fw.title} | {conv} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def case_counts() -> str:
    """The conformance matrices and how many cases each holds."""
    from rnn_ref.conformance import cases

    quick, full, network = cases.quick_cases(), cases.full_cases(), cases.network_cases()
    gated = [sum(not c.config.is_elman for c in m) for m in (quick, full)]
    return "\n".join([
        "| matrix | cases | run by |",
        "|---|---|---|",
        f"| quick | {len(quick)} | `rnn-ref check` (the default) |",
        f"| full | {len(full)} | `rnn-ref check --full` (the quick ones included) |",
        f"| network pieces (section 2.6 of the spec) | {len(network)} | "
        f"in both matrices |",
        f"| GRU and LSTM layers (section 2.7 of the spec) | {gated[0]} quick, {gated[1]} full "
        f"| in both matrices |",
        "| random | N | `rnn-ref check --random N --seed S` |",
    ])


#: what each canonical member holds, by its name pattern
_MEMBERS = {
    "embedding": "`(V, D)`, only with an embedding (`vocab_size`)",
    "layers.{l}.{r}.w_x": "`(D_l, M_l)` input kernel of layer l, direction r",
    "layers.{l}.{r}.w_h": "`(M_l, M_l)` recurrent kernel",
    "layers.{l}.{r}.b_x": "`(M_l,)` input bias (zeros when `bias` is false)",
    "layers.{l}.{r}.b_h": "`(M_l,)` recurrent bias (zeros when `bias` is false)",
    "layers.{l}.{r}.w_x.{k}": "a GRU's or LSTM's `(D_l, M_l)` input kernel of gate k (`z`, "
                              "`r`, `n`; `i`, `f`, `g`, `o`; no `f` with `input_forget`)",
    "layers.{l}.{r}.w_h.{k}": "`(M_l, M_l)` recurrent kernel of gate k (`(P_l, M_l)` when "
                              "projected)",
    "layers.{l}.{r}.b_x.{k}": "`(M_l,)` input bias of gate k",
    "layers.{l}.{r}.b_h.{k}": "`(M_l,)` recurrent bias of gate k",
    "layers.{l}.{r}.p.{k}": "`(M_l,)` an LSTM's peephole of gate k (`i`, `f`, `o`), only with "
                            "`peepholes`",
    "layers.{l}.{r}.w_proj": "`(M_l, P_l)` an LSTM's projection, only with `proj_size`",
    "head.{j}.w": "`(F_j, K_j)` head layer j (the readout is `head.0`)",
    "head.{j}.b": "`(K_j,)`",
}


def canonical_names() -> list[str]:
    """The member name patterns of the canonical file, in the order ``save`` writes them,
    read from ``RNNParams.named_arrays()`` of a network with every piece."""
    import rnn_ref
    from rnn_ref.config import RNNConfig

    config = RNNConfig(input_size=2, hidden_size=3, vocab_size=5, head=[(2, "linear")],
                       num_layers=2, cell=["elman", "lstm"], peepholes=True, proj_size=2)
    names: list[str] = []
    for name, _ in rnn_ref.init(config).named_arrays():
        pattern = re.sub(r"^layers\.[01]\.0\.", "layers.{l}.{r}.", name)
        pattern = re.sub(r"^head\.0\.", "head.{j}.", pattern)
        pattern = re.sub(r"\.(w_x|w_h|b_x|b_h|p)\.[a-z]$", r".\1.{k}", pattern)
        if pattern not in names:
            names.append(pattern)
    return names


def canonical_file() -> str:
    """The canonical file's members: the two markers, then every array."""
    from rnn_ref import io

    lines = ["| member | content |", "|---|---|",
             f'| `__format__` | 0-d unicode array, `"{io.FORMAT}"` |',
             "| `__config__` | 0-d unicode array, the JSON of `RNNConfig.to_dict()` |"]
    for name in canonical_names():
        lines.append(f"| `{name}` | {_MEMBERS[name]} |")
    return "\n".join(lines)


def gate_orders() -> str:
    """Every framework's packed gate order (``rnn_ref.cells.GATE_ORDERS``), with its source."""
    from rnn_ref.cells import GATE_ORDERS

    lines = ["| cell: framework | packed order (canonical names) | source |", "|---|---|---|"]
    for key, (order, source) in GATE_ORDERS.items():
        lines.append(f"| `{key}` | {','.join(order)} | {_cell(source)} |")
    return "\n".join(lines)


#: name -> the function that makes that table
TABLES: dict[str, Callable[[], str]] = {
    "formats": formats_table,
    "frameworks": frameworks_table,
    "case-counts": case_counts,
    "canonical-file": canonical_file,
    "gate-orders": gate_orders,
}


def render(name: str) -> str:
    """The block between ``name``'s markers, as it should read today."""
    return f"{_made_by(name)}\n{TABLES[name]()}\n"


def blocks(text: str) -> dict[str, str]:
    """The generated blocks of a document: name -> the text between its markers (each marker
    a line of its own)."""
    out = {}
    for m in re.finditer(r"^<!-- generated: ([\w-]+): begin -->$", text, re.M):
        name = m.group(1)
        rest = text[m.end():]
        if end(name) not in rest:
            raise ValueError(f"{begin(name)} has no {end(name)}")
        out[name] = rest.split(end(name), 1)[0]
    unknown = set(out) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown generated blocks {sorted(unknown)}; known: {list(TABLES)}")
    return out


def stale(text: str) -> list[str]:
    """The names of the document's blocks that differ from what the code makes today."""
    return [name for name, block in blocks(text).items() if block.strip("\n") !=
            render(name).strip("\n")]


def write(path: str | Path) -> list[str]:
    """Replace every generated block of ``path``; returns the names of those that changed."""
    target = Path(path)
    text = target.read_text(encoding="utf-8")
    changed = stale(text)
    for name in changed:
        head, rest = text.split(begin(name), 1)
        text = f"{head}{begin(name)}\n{render(name)}{end(name)}{rest.split(end(name), 1)[1]}"
    if changed:
        target.write_text(text, encoding="utf-8")
    return changed


def _root() -> Path:
    return Path.cwd()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnn_ref.conformance.doc_tables",
                                     description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("files", nargs="*", help=f"documents (default: {', '.join(DOCUMENTS)})")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when a block differs")
    args = parser.parse_args(argv)
    files: Iterable[str] = args.files or [d for d in DOCUMENTS if (_root() / d).is_file()]
    status = 0
    for file in files:
        if args.check:
            for name in stale(Path(file).read_text(encoding="utf-8")):
                print(f"{file}: the {name} table differs from the code; run {COMMAND}")
                status = 1
        else:
            for name in write(file):
                print(f"{file}: rewrote the {name} table")
    return status


if __name__ == "__main__":
    sys.exit(main())
