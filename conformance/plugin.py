"""The pytest plugin (entry point ``pytest11: rnn_ref``): inert unless ``--rnn-backend`` is given.

A third party runs the suite against its own kernel in its own CI with one test file::

    # test_rnn_conformance.py
    from rnn_ref.conformance.plugin import test_rnn_conformance  # noqa: F401

and ``pytest --rnn-backend my_package.kernel:MyBackend`` (repeatable; ``--rnn-full`` for the
full matrix, ``--rnn-random N`` for sampled configurations, ``--rnn-known-failures FILE`` for
its own known failures). Each case becomes one test named ``<backend>-<case>``; a known
failure is an xfail with its reason, an unexpected pass an error, and a case outside the
backend's scope (the cells and network pieces it declares it implements: its ``cells`` and
``pieces`` attributes, the Elman layer when it declares none; :func:`rnn_ref._registry.scope_of`)
is skipped as out of scope. The header names the scope each backend is held to.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from rnn_ref._registry import get_backend, scope_of
from rnn_ref.backends import deviations
from rnn_ref.conformance import cases as case_lib
from rnn_ref.conformance.runner import check_case

__all__ = ["test_rnn_conformance"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rnn-ref", "rnn-ref conformance suite")
    group.addoption("--rnn-backend", action="append", default=[], metavar="NAME",
                    help="run the conformance cases against this backend (a built-in name or "
                    "module:attribute; repeatable)")
    group.addoption("--rnn-full", action="store_true", help="the full case matrix")
    group.addoption("--rnn-random", type=int, default=0, metavar="N",
                    help="add N sampled configurations")
    group.addoption("--rnn-seed", type=int, default=0, help="seed of --rnn-random")
    group.addoption("--rnn-known-failures", default=None, metavar="FILE",
                    help="a JSON list of known failures (default: the built-in ones)")


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    backends = config.getoption("rnn_backend")
    if not backends:
        return None
    mode = "full" if config.getoption("rnn_full") else "quick"
    lines = [f"rnn-ref conformance: {', '.join(backends)} ({mode}, random "
             f"{config.getoption('rnn_random')} seed {config.getoption('rnn_seed')})"]
    for name in backends:
        try:
            what = scope_of(_backend(name)).describe()
        except Exception as exc:  # noqa: BLE001 - its test reports the error in full
            what = f"not known ({type(exc).__name__}: {exc})"
        lines.append(f"rnn-ref scope of {name}: {what}; the cases outside it are skipped")
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "rnn_conformance_case" not in metafunc.fixturenames:
        return
    config = metafunc.config
    if config.getoption("rnn_seed") and not config.getoption("rnn_random"):
        raise pytest.UsageError("--rnn-seed applies to the --rnn-random cases; add --rnn-random N")
    selected = case_lib.full_cases() if config.getoption("rnn_full") else case_lib.quick_cases()
    if config.getoption("rnn_random"):
        selected += case_lib.random_cases(config.getoption("rnn_random"),
                                          config.getoption("rnn_seed"))
    params = [(b, c) for b in config.getoption("rnn_backend") for c in selected]
    metafunc.parametrize("rnn_conformance_case", params,
                         ids=[f"{b}-{c.name}" for b, c in params])


@cache
def _backend(name: str) -> Any:
    return get_backend(name)


def test_rnn_conformance(rnn_conformance_case: tuple[str, case_lib.Case],
                         request: pytest.FixtureRequest) -> None:
    """One case on one backend: every category must pass (known failures xfail)."""
    __tracebackhide__ = True
    name, case = rnn_conformance_case
    backend = _backend(name)
    path = request.config.getoption("rnn_known_failures")
    known = deviations.load_file(path, backend.name) if path else deviations.load(backend.name)
    results = check_case(backend, case, known)
    outside = [r for r in results if r.status == "out_of_scope"]
    if outside:
        pytest.skip(f"out of scope: {outside[0].detail}")
    failures = [r for r in results if r.status == "fail"]
    if failures:
        pytest.fail("\n".join(f"[{r.category}] {r.detail}" for r in failures), pytrace=False)
    xpasses = [r for r in results if r.status == "xpass"]
    if xpasses:
        pytest.fail("\n".join(f"[{r.category}] passes although known failure {r.deviation!r} "
                              f"matches it" for r in xpasses), pytrace=False)
    known_hits = [r for r in results if r.status == "known"]
    if known_hits:
        pytest.xfail("; ".join(f"[{r.category}] known failure {r.deviation}"
                               for r in known_hits))
