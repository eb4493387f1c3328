"""Bad inputs to forward raise ValueError/TypeError naming the argument, never NumPy's errors."""

from __future__ import annotations

import numpy as np
import pytest

import rnn_ref
from rnn_ref import RNNConfig

P = rnn_ref.init(RNNConfig(3, 4, num_layers=2, direction="bidirectional"), seed=0)
X = np.zeros((2, 5, 3))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"x": np.zeros((5, 3))}, ValueError, r"x must have 3 dimensions \(N, T, D\), got shape "
                                              r"\(5, 3\); add a batch axis"),
        ({"x": np.zeros((2, 5, 4))}, ValueError,
         r"x has 4 features \(shape \(2, 5, 4\)\) but config.input_size is 3"),
        ({"x": np.zeros((2, 5, 3), complex)}, TypeError, "x must hold real numbers"),
        ({"x": [[["a"]]]}, TypeError, "x must hold real numbers"),
        ({"h0": np.zeros((2, 2, 4))}, ValueError, r"h0 must have shape \(S, N, M\) = "
                                                   r"\(4, 2, 4\), got \(2, 2, 4\)"),
        ({"h0": [np.zeros((2, 4))] * 3}, ValueError, "h0 lists 3 states, expected S = 4"),
        ({"h0": [np.zeros((2, 4))] * 3 + [np.zeros((2, 5))]}, ValueError,
         r"h0\[3\] must have shape \(N, M\) = \(2, 4\), got \(2, 5\)"),
        ({"lengths": [5.0, 2.0]}, TypeError, "lengths must be integers, got dtype float64"),
        ({"lengths": [5, 2, 1]}, ValueError, r"lengths must have shape \(N,\) = \(2,\)"),
        ({"lengths": [6, 2]}, ValueError, r"lengths must lie in \[0, T\] = \[0, 5\], got min 2, "
                                          r"max 6"),
        ({"lengths": [-1, 2]}, ValueError, "got min -1"),
        ({"mask": np.ones((2, 5), int)}, TypeError, "mask must be boolean"),
        ({"mask": np.ones((2, 4), bool)}, ValueError, r"mask must have shape \(N, T\) = \(2, 5\)"),
        ({"mask": np.ones((2, 5), bool), "lengths": [1, 2]}, ValueError,
         "give lengths or mask, not both"),
        ({"compute_dtype": np.int32}, TypeError, "compute_dtype must be a floating dtype"),
        ({"compute_dtype": "nonsense"}, TypeError, "compute_dtype must be a floating dtype"),
        ({"padded_output": "pad"}, ValueError, "padded_output must be one of"),
        ({"output_order": "processing"}, ValueError, "needs a reverse last layer"),
        ({"params": "weights"}, TypeError, "params must be rnn_ref.RNNParams, got str"),
    ],
)
@pytest.mark.parametrize("fn", [rnn_ref.forward, rnn_ref.forward_loop])
def test_bad_inputs(fn, kwargs: dict, error: type, message: str) -> None:
    call = {"params": P, "x": X, **kwargs}
    with pytest.raises(error, match=message):
        fn(call.pop("params"), call.pop("x"), **call)


def test_integer_inputs_and_empty_batch_are_fine() -> None:
    res = rnn_ref.forward(P, np.ones((2, 5, 3), dtype=np.int64))
    assert res.outputs.dtype == np.float64
    empty = rnn_ref.forward(P, np.zeros((0, 5, 3)))
    assert empty.outputs.shape == (0, 5, 8) and empty.h_n.shape == (4, 0, 4)


# ---------------------------------------------------------------------------------------------
# One input boundary (rnn_ref.inputs): every entry point refuses bad inputs the same way, the
# keras[...] backends in the parent process, before anything reaches their worker.
# ---------------------------------------------------------------------------------------------
P32 = rnn_ref.init(RNNConfig(3, 4), seed=0)  # float32, unidirectional: every backend runs it
X32 = np.zeros((2, 5, 3), np.float32)

BAD = {
    "negative-lengths": {"lengths": np.array([-1, 2])},
    "long-lengths": {"lengths": np.array([6, 2])},
    "float-lengths": {"lengths": np.array([5.0, 2.0])},
    "lengths-shape": {"lengths": np.array([5, 2, 1])},
    "mask-dtype": {"mask": np.ones((2, 5), int)},
    "mask-shape": {"mask": np.ones((2, 4), bool)},
    "lengths-and-mask": {"lengths": np.array([5, 2]), "mask": np.ones((2, 5), bool)},
    "x-features": {"x": np.zeros((2, 5, 4), np.float32)},
    "x-2d": {"x": np.zeros((5, 3), np.float32)},
    "h0-shape": {"h0": np.zeros((1, 3, 4), np.float32)},
}


def _oracle_error(bad: dict) -> Exception:
    call = {"x": X32, **bad}
    with pytest.raises((TypeError, ValueError)) as info:
        rnn_ref.forward(P32, call.pop("x"), **call)
    return info.value


def _same_error(fn, bad: dict) -> None:  # type: ignore[no-untyped-def]
    want = _oracle_error(bad)
    call = {"x": X32, **bad}
    with pytest.raises(type(want)) as info:
        fn(P32, call.pop("x"), **call)
    assert type(info.value) is type(want)
    assert str(info.value) == str(want)


def test_negative_lengths_name_lengths_and_the_range() -> None:
    err = _oracle_error(BAD["negative-lengths"])
    assert isinstance(err, ValueError)
    assert str(err) == "lengths must lie in [0, T] = [0, 5], got min -1, max 2"


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
def test_backward_refuses_like_forward(bad: dict) -> None:
    _same_error(rnn_ref.backward, bad)


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
@pytest.mark.parametrize(("backend", "framework"), [
    ("numpy", "numpy"), ("torch", "torch"), ("jax", "jax"), ("onnxruntime", "onnxruntime"),
])
def test_backends_refuse_like_the_oracle(backend: str, framework: str, bad: dict) -> None:
    from conftest import need

    need(framework)
    _same_error(rnn_ref.get_backend(backend).forward, bad)


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
@pytest.mark.parametrize("backend", ["keras[jax]", "keras[tensorflow]"])
def test_keras_workers_refuse_in_the_parent(backend: str, bad: dict,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad inputs never reach the worker: one clear error, not the worker's traceback."""
    from conftest import need

    if backend not in rnn_ref.available_backends():  # the parent needs no Keras: don't import it
        need("keras")
        need(backend[len("keras["):-1])
    worker = rnn_ref.get_backend(backend)

    def refuse(request: dict) -> dict:
        pytest.fail(f"bad inputs were sent to the {backend} worker")

    monkeypatch.setattr(worker, "_ask", refuse)
    _same_error(worker.forward, bad)


def test_keras_in_process_backend_refuses_like_the_oracle() -> None:
    from conftest import need_keras

    need_keras()
    from rnn_ref.backends.keras.backend import KerasBackend

    backend = KerasBackend()
    for bad in BAD.values():
        _same_error(backend.forward, bad)


def _package_files() -> list:  # type: ignore[type-arg]
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return sorted([*(root / "rnn_ref").rglob("*.py"), *(root / "backends").rglob("*.py")])


def _is_submodule(package: str, name: str) -> bool:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return False
    from pathlib import Path

    return any((Path(p) / f"{name}.py").exists() or (Path(p) / name / "__init__.py").exists()
               for p in spec.submodule_search_locations)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_uses(path) -> list[str]:  # type: ignore[no-untyped-def]
    """``from rnn_ref... import _name`` and ``module._name`` on an imported package module."""
    import ast

    tree = ast.parse(path.read_text(), str(path))
    found, modules = [], set()  # modules: local names bound to modules of the package
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            module = node.module or ""
            for alias in node.names if module.startswith("rnn_ref") else ():
                if _is_submodule(module, alias.name):
                    modules.add(alias.asname or alias.name)
                elif _private(alias.name):
                    found.append(f"{path.name}:{node.lineno}: from {module} import {alias.name}")
        elif isinstance(node, ast.Import):
            modules.update(a.asname for a in node.names
                           if a.asname and a.name.startswith("rnn_ref"))
    found += [f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}"
              for node in ast.walk(tree)
              if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id in modules and _private(node.attr)]
    return found


def test_no_module_imports_a_private_name_of_another() -> None:
    """A private name of another module (``from rnn_ref.reference import _merge``, or
    ``module._name`` on an imported package module) reaches into its internals. Private
    *modules* of the package (``rnn_ref.backends._common``, ``rnn_ref._blas``, ...) may be
    imported and their public names used."""
    offences = [use for path in _package_files() for use in _private_uses(path)]
    assert not offences, "private names used across modules:\n" + "\n".join(offences)
