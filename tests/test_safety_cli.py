"""The command line under hostile and careless input (issue 14, items 5, 7 and 9): one line
and exit 2 instead of tracebacks, nothing from a file printed raw, what docs/safety.md promises."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import need, need_keras

import rnn_ref
from rnn_ref import RNNConfig, _text, cli, convert

PARAMS = rnn_ref.init(RNNConfig(3, 5, num_layers=2, output_size=2), seed=3)
HOSTILE = ["\x1b[2J", "\r\x1b[Kconversion verified OK", "a\bb", "\u202eevil", "\x9b31m", "\x7f"]
ROOT = Path(__file__).resolve().parent.parent


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def _argparse_error(err: str) -> str:
    """argparse prints its usage, then one error line."""
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def _raw_controls(text: str) -> list[str]:
    return [c for c in text if c not in "\n" and not c.isprintable()]


# --------------------------------------------------------------------------------------------
# item 7: nothing from a file reaches the terminal raw
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, shown", [
    ("\x1b[2J", "\\x1b[2J"), ("\r...ok", "\\r...ok"), ("a\bb", "a\\x08b"),
    ("\u202eevil", "\\u202eevil"), ("\u2066x\u2069", "\\u2066x\\u2069"), ("\x9b31m", "\\x9b31m"),
    ("\x7f", "\\x7f"), ("line\nbreak\ttab", "line\\nbreak\\ttab"), ("\u200b", "\\u200b"),
    ("héllo 中文 naïve", "héllo 中文 naïve"), ("plain", "plain")])
def test_printable_escapes_controls_and_keeps_text(raw: str, shown: str) -> None:
    assert _text.printable(raw) == shown
    assert _raw_controls(_text.printable(raw)) == []


def test_error_lines_are_bounded() -> None:
    line = _text.error_line("x" * 10_000)
    assert line == "x" * 500 + "... (9,500 more characters cut)"
    assert _text.error_line("short") == "short"


def _onnx_with_names(path: Path, names: list[str]) -> Path:
    """``PARAMS`` as ONNX with its first initializers renamed to ``names``."""
    onnx = need("onnx")
    model = rnn_ref.to_onnx(PARAMS)
    renames = {t.name: name for t, name in zip(model.graph.initializer, names, strict=False)}
    for t in model.graph.initializer:
        t.name = renames.get(t.name, t.name)
    for node in model.graph.node:
        node.input[:] = [renames.get(i, i) for i in node.input]
    onnx.save(model, str(path))
    return path


def test_inspect_escapes_names_from_the_file(tmp_path: Path, capsys) -> None:
    """An initializer named ``"\\x1b[2J"`` cleared the screen; one named ``"\\r... ok"``
    rewrote the line."""
    path = _onnx_with_names(tmp_path / "names.onnx", HOSTILE)
    code, out, err = _cli(capsys, "inspect", str(path))
    assert code == 0, err
    assert _raw_controls(out) == [], [c for c in out if not c.isprintable()]
    assert "\\x1b[2J" in out and "\\r\\x1b[Kconversion verified OK" in out
    assert "\\u202eevil" in out


def test_error_lines_escape_and_bound_what_a_file_says(tmp_path: Path, capsys,
                                                       monkeypatch) -> None:
    """Whatever an error quotes from a file is escaped and the line is at most 500
    characters (the 4 KB ``.npz`` of issue 14 printed 955 million)."""
    from rnn_ref.backends.numpy import files as numpy_files

    def read_file(path, fmt, hints):  # type: ignore[no-untyped-def]
        raise rnn_ref.FileFormatError(f"{path}: unexpected array {HOSTILE[1]}" + "y" * 5000)

    monkeypatch.setattr(numpy_files, "read_file", read_file)
    src = rnn_ref.save(PARAMS, tmp_path / "src.npz")
    for argv in (["inspect", str(src)], ["convert", str(src), str(tmp_path / "o.pt")]):
        code, _, err = _cli(capsys, *argv)
        line = _one_line(err)
        assert code == 2 and _raw_controls(line) == []
        assert "\\r\\x1b[Kconversion verified OK" in line
        assert len(line) < 600 and line.endswith("more characters cut)")


def test_an_escape_in_a_path_is_escaped(tmp_path: Path, capsys) -> None:
    code, _, err = _cli(capsys, "convert", str(tmp_path / "\x1b[2Jmissing.npz"),
                        str(tmp_path / "o.pt"))
    assert code == 2 and _raw_controls(err) == [] and "\\x1b[2J" in err


# --------------------------------------------------------------------------------------------
# item 5: one line and exit 2, never a traceback
# --------------------------------------------------------------------------------------------
def _hostile_onnx(folder: Path) -> dict[str, Path]:
    """Files the reader takes but ONNX Runtime refuses: opset 99, a custom-domain op on the
    output (``com.evil:Exec``), a ``PyOp``."""
    onnx = need("onnx")
    need("onnxruntime")
    from onnx import helper

    base = rnn_ref.to_onnx(PARAMS)
    out: dict[str, Path] = {}
    model = copy.deepcopy(base)
    model.opset_import[0].version = 99
    out["opset 99"] = folder / "opset99.onnx"
    onnx.save(model, str(out["opset 99"]))
    for name, (op, domain) in {"com.evil:Exec": ("Exec", "com.evil"),
                               "PyOp": ("PyOp", "ai.onnx.contrib")}.items():
        model = copy.deepcopy(base)
        y = model.graph.output[0].name
        for node in model.graph.node:
            node.output[:] = [o + "_pre" if o == y else o for o in node.output]
        model.graph.node.append(helper.make_node(op, [y + "_pre"], [y], domain=domain))
        model.opset_import.append(helper.make_opsetid(domain, 1))
        out[name] = folder / f"{op}.onnx"
        onnx.save(model, str(out[name]))
    return out


def test_onnxruntime_refusals_during_verify_are_one_line(tmp_path: Path, capsys) -> None:
    """Before: an onnxruntime traceback for each."""
    for what, path in _hostile_onnx(tmp_path).items():
        dst = tmp_path / f"{path.stem}.npz"
        code, _, err = _cli(capsys, "convert", str(path), str(dst), "--verify")
        line = _one_line(err)
        assert code == 2, (what, err)
        # refused by the reader (a node outside the network) or by the runtime, in one line
        assert ("--verify could not run" in line or "not a valid onnx file" in line
                or "cannot express ONNX" in line), line
        assert not dst.exists()


def test_any_runtime_error_during_verify_is_one_line(tmp_path: Path, capsys,
                                                     monkeypatch) -> None:
    from rnn_ref.backends.numpy import files as numpy_files

    class RuntimeFailure(Exception):
        """Like onnxruntime's ``Fail``: none of the usual exceptions."""

    def run_native(model, x, lengths=None):  # type: ignore[no-untyped-def]
        raise RuntimeFailure("[ONNXRuntimeError] : 1 : FAIL : \nsecond line")

    monkeypatch.setattr(numpy_files, "run_native", run_native)
    src = rnn_ref.save(PARAMS, tmp_path / "src.npz")
    code, _, err = _cli(capsys, "convert", str(src), str(tmp_path / "o.npz"), "--verify")
    assert code == 2 and "RuntimeFailure: [ONNXRuntimeError]" in _one_line(err)
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("argv, flag", [
    (["check", "--random", "2", "--seed", "-1"], "--seed"),
    (["check", "--random", "2", "--seed", str(2**32)], "--seed"),
    (["check", "--random", "2", "--seed", "9" * 400], "--seed"),
    (["check", "--random", "-5"], "--random"),
    (["check", "--random", "100000000"], "--random"),
    (["check", "--random", "two"], "--random"),
    (["convert", "a.npz", "b.pt", "--seed", "-1"], "--seed"),
    (["convert", "a.npz", "b.pt", "--seed", str(10**40)], "--seed"),
    (["demo", "--seed", "-1"], "--seed"),
    (["demo", "--seed", str(2**64)], "--seed")])
def test_seeds_and_counts_out_of_range_are_refused(capsys, argv: list[str], flag: str) -> None:
    """``--seed -1`` was a NumPy traceback, ``--random -5`` silently 0, ``--random
    100000000`` generated every case before printing anything."""
    code, out, err = _cli(capsys, *argv)
    line = _argparse_error(err)
    assert code == 2 and out == ""
    assert re.search(rf"{flag} must be (an integer )?from 0 to \d+, got", line), line
    assert len(line) < 200


def test_the_largest_seed_is_taken(capsys) -> None:
    code, out, err = _cli(capsys, "check", "--backend", "numpy", "--random", "1", "--seed",
                          str(cli.SEED_MAX), "--case", "random", "--no-progress")
    assert code == 0, err


def test_check_json_into_a_missing_folder_fails_before_the_run(tmp_path: Path, capsys) -> None:
    code, out, err = _cli(capsys, "check", "--backend", "numpy", "--json",
                          str(tmp_path / "missing" / "r.json"), "--no-progress")
    assert code == 2 and out == ""
    assert "does not exist" in _one_line(err)


def _deep(n: int = 100_000) -> str:
    return "[" * n + "]" * n


def test_deeply_nested_json_is_one_line(tmp_path: Path, capsys) -> None:
    """``RecursionError`` tracebacks, from an ``.npz`` config and a known-failures file."""
    npz = tmp_path / "deep.npz"
    np.savez(npz, __format__=np.array("rnn-ref/1"), __config__=np.array(_deep()))
    for argv in (["inspect", str(npz)], ["convert", str(npz), str(tmp_path / "o.npz")]):
        code, _, err = _cli(capsys, *argv)
        assert code == 2 and "nested too deeply" in _one_line(err)
    with pytest.raises(rnn_ref.FileFormatError, match="nested too deeply"):
        rnn_ref.load(npz)
    known = tmp_path / "known.json"
    known.write_text(_deep())
    code, _, err = _cli(capsys, "check", "--backend", "numpy", "--known-failures", str(known),
                        "--no-progress")
    assert code == 2 and "nested too deeply" in _one_line(err)


def test_deep_json_in_onnx_metadata_is_one_line(tmp_path: Path, capsys) -> None:
    onnx = need("onnx")
    model = rnn_ref.to_onnx(PARAMS)
    for prop in model.metadata_props:
        if prop.key == "rnn_ref.config":
            prop.value = _deep()
    if not any(p.key == "rnn_ref.config" for p in model.metadata_props):
        model.metadata_props.add(key="rnn_ref.config", value=_deep())
    onnx.save(model, str(tmp_path / "deep.onnx"))
    code, _, err = _cli(capsys, "inspect", str(tmp_path / "deep.onnx"))
    _one_line(err)
    assert code == 2


def test_a_bench_json_nested_too_deeply_is_not_an_earlier_run(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import harness
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    (tmp_path / "bench.json").write_text(_deep())
    assert not harness._is_bench_json(tmp_path / "bench.json")


def test_safetensors_without_the_package(tmp_path: Path, capsys, monkeypatch) -> None:
    """``inspect`` listed ``.safetensors`` as possible while writing one could not work."""
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None if name.split(".")[0] == "safetensors" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    src = rnn_ref.save(PARAMS, tmp_path / "src.npz")
    code, out, err = _cli(capsys, "inspect", str(src))
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("safetensors"))
    assert "no: needs safetensors, which is not installed here" in row
    code, _, err = _cli(capsys, "convert", str(src), str(tmp_path / "o.safetensors"))
    assert code == 2 and "need safetensors, which is not installed" in _one_line(err)
    assert not (tmp_path / "o.safetensors").exists()


def test_memory_error_anywhere_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    from rnn_ref.backends.numpy import files as numpy_files

    def read_file(path, fmt, hints):  # type: ignore[no-untyped-def]
        raise MemoryError

    monkeypatch.setattr(numpy_files, "read_file", read_file)
    src = rnn_ref.save(PARAMS, tmp_path / "src.npz")
    code, _, err = _cli(capsys, "convert", str(src), str(tmp_path / "o.npz"))
    assert code == 2 and _one_line(err)


# --------------------------------------------------------------------------------------------
# item 9: what docs/safety.md promises
# --------------------------------------------------------------------------------------------
def _keras_refusals(folder: Path) -> list[list[str]]:
    keras = need_keras()
    lstm = keras.Sequential([keras.Input((None, 5, 3)),  # a layer rnn-ref does not read
                             keras.layers.ConvLSTM1D(4, 2)])
    lstm.save(folder / "lstm.keras")
    lstm.save_weights(folder / "lstm.weights.h5")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras calls HDF5 legacy
        lstm.save(folder / "lstm.h5")
    good = convert.write(PARAMS, folder / "good.keras", "keras")
    (folder / "cut.keras").write_bytes(good.read_bytes()[:3000])
    (folder / "text.weights.h5").write_text("hello")
    out = str(folder / "o.pt")
    return [["convert", str(folder / "lstm.keras"), out],
            ["inspect", str(folder / "lstm.keras")],
            ["convert", str(folder / "cut.keras"), out],
            ["convert", str(folder / "lstm.weights.h5"), out, "--activation", "tanh"],
            ["convert", str(folder / "text.weights.h5"), out, "--activation", "tanh"],
            ["convert", str(folder / "lstm.h5"), out]]


@pytest.mark.slow
def test_keras_refusals_print_only_their_line(tmp_path: Path) -> None:
    """Four TensorFlow banner lines came before the one line; run in a fresh process with
    no ``TF_CPP_MIN_LOG_LEVEL`` of our own, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    for argv in _keras_refusals(tmp_path):
        res = subprocess.run([sys.executable, "-m", "rnn_ref.cli", *argv], capture_output=True,
                             text=True, env=env, timeout=300)
        assert res.returncode == 2, (argv, res.stderr)
        assert _one_line(res.stderr).startswith(f"rnn-ref {argv[0]}: "), res.stderr


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_expect_sha256(tmp_path: Path, capsys) -> None:
    """``.onnx``, ``.pt`` and ``.weights.h5`` carry no checksum: a flipped bit converted as
    other weights; ``--expect-sha256`` refuses any byte that is not the expected one."""
    need("torch")
    src = convert.write(PARAMS, tmp_path / "m.pt", "torch")
    good = _sha(src)
    hints = [f"--{h.replace('_', '-')}={v}" for h, v in convert.unrecorded(PARAMS, "torch").items()]
    code, out, err = _cli(capsys, "convert", str(src), str(tmp_path / "a.npz"), *hints,
                          "--expect-sha256", good.upper())
    assert code == 0, err
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0x01
    src.write_bytes(bytes(data))
    code, _, err = _cli(capsys, "convert", str(src), str(tmp_path / "b.npz"), *hints,
                        "--expect-sha256", good)
    assert code == 2 and f"not the expected {good}; nothing written" in _one_line(err)
    assert not (tmp_path / "b.npz").exists()
    for bad in ("abc", "g" * 64, good + "0"):
        code, _, err = _cli(capsys, "convert", str(src), str(tmp_path / "c.npz"),
                            "--activation", "tanh", "--expect-sha256", bad)
        assert code == 2 and "must be 64 hexadecimal digits" in _one_line(err)


def test_bench_out_into_a_folder_of_other_files_is_refused(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import harness
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    (home / ".bashrc").write_text("")
    why = harness.refusal(home, None)
    assert why is not None and "holds thesis.tex" in why and "refusing to write" in why
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "bench.json").write_text(json.dumps({"machine": {}, "records": []}))
    (earlier / "detection.md").write_text("another benchmark's output")
    assert harness.refusal(earlier, None) is None
    assert harness.refusal(tmp_path / "new", None) is None
    (tmp_path / "empty").mkdir()
    assert harness.refusal(tmp_path / "empty", None) is None


@pytest.mark.parametrize("target", ["builtins:exit", "builtins:quit", "builtins:print",
                                    "builtins:object", "os:getcwd"])
def test_a_backend_target_that_is_not_a_backend_is_an_error(capsys, target: str) -> None:
    """``--backend builtins:exit`` exited 0 having checked nothing."""
    code, out, err = _cli(capsys, "check", "--backend", target, "--no-progress")
    line = _one_line(err)
    assert code == 2, err
    assert f"{target!r}" in line
    assert "backend object, a class or a zero-argument factory" in line or \
        "needs .name and .forward" in line, line


@pytest.mark.slow
def test_keras_backend_decides_a_masked_models_padded_steps(tmp_path: Path) -> None:
    """``KERAS_BACKEND`` changed how one ``.keras`` converted: Keras itself computes masked
    steps differently by backend (previous output on TensorFlow and torch, carried state on
    JAX), and the reader records what Keras computes where it runs. The conversion says so."""
    keras = need_keras()
    need("jax")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.Masking(0.0),
                              keras.layers.SimpleRNN(4, return_sequences=True),
                              keras.layers.Dense(2)])
    src = tmp_path / "masked.keras"
    model.save(src)
    seen = {}
    for backend, mode in (("tensorflow", "carry_output"), ("jax", "carry_state")):
        dst = tmp_path / f"{backend}.npz"
        res = subprocess.run([sys.executable, "-m", "rnn_ref.cli", "convert", str(src),
                              str(dst)], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "KERAS_BACKEND": backend})
        assert res.returncode == 0, res.stderr
        assert f"padded steps output {mode}" in res.stdout
        assert (f"(padded steps as Keras on {backend} computes them; "
                f"KERAS_BACKEND chooses)") in res.stdout
        seen[backend] = rnn_ref.load(dst)
        assert seen[backend].config.padded_output == mode
    assert seen["jax"] == seen["tensorflow"].replace(padded_output="carry_state")


def test_the_safety_promises_name_tests_that_exist() -> None:
    """Each promise of docs/safety.md names its test; every named test is defined in the
    file named."""
    text = (ROOT / "docs" / "safety.md").read_text()
    section = text.split("## Safety", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`(tests/test_\w+\.py)::(test_\w+)`", section)
    assert len(named) >= 15, named
    for file, test in named:
        source = (ROOT / file).read_text()
        assert re.search(rf"^def {test}\(", source, re.M), f"{file}::{test} does not exist"
