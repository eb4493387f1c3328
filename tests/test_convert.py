"""rnn-ref convert and inspect: every format, --verify, safety, hostile and fuzzed files."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import need, need_keras

import rnn_ref
from rnn_ref import RNNConfig, cli, convert
from rnn_ref.conformance.runner import _equivalent

pytestmark = pytest.mark.slow

PARAMS = rnn_ref.init(RNNConfig(3, 5, num_layers=2, output_size=2), seed=3)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real file of every format, holding the same network."""
    need("torch")
    need("onnx")
    need("safetensors")
    need_keras()
    folder = tmp_path_factory.mktemp("files")
    out = {}
    for fmt, exts in convert.FORMATS.items():
        out[fmt] = convert.write(PARAMS, folder / f"m-{fmt}{exts[0]}", fmt)
    return out


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


READABLE = [f for f in convert.FORMATS if convert.readable(f)]


def _flags(hints: dict[str, str]) -> list[str]:
    """The command line's flags of ``hints`` (hint name -> value)."""
    return [f"--{name.replace('_', '-')}={value}" for name, value in hints.items()]


@pytest.mark.parametrize("src", READABLE)
@pytest.mark.parametrize("dst", ["torch", "onnx", "keras", "rnn-ref"])
def test_every_route_converts_and_verifies(files: dict[str, Path], src: str, dst: str,
                                           tmp_path: Path, capsys) -> None:
    target = tmp_path / f"out{convert.FORMATS[dst][0]}"
    hint = _flags(convert.unrecorded(PARAMS, src))
    code, out, err = _run(capsys, "convert", str(files[src]), str(target), "--verify", *hint)
    assert code == 0, err
    assert "verified: ok" in out
    back = convert.read(target, dst, convert.hints_for(PARAMS, dst))
    # bit-exact weights; a one-bias format (Keras) holds b_x + b_h in b_x
    assert _equivalent(PARAMS, back) == "", f"{src} -> {dst}"
    # issue 14: a source that records weights only says what the check cannot cover
    weights_only = bool(convert.hints_read(src))
    assert ("records weights, not the whole network" in out) == weights_only, out


@pytest.mark.parametrize("dst", [f for f in convert.FORMATS if not convert.readable(f)])
def test_write_only_formats_are_verified_by_running_them(files: dict[str, Path], dst: str,
                                                        tmp_path: Path, capsys) -> None:
    """A .tflite cannot be read back as parameters, so --verify runs it in its runtime
    against the source; reading it is refused with the reason."""
    target = tmp_path / f"out{convert.FORMATS[dst][0]}"
    code, out, err = _run(capsys, "convert", str(files["rnn-ref"]), str(target), "--verify")
    assert code == 0, err
    assert "verified: ok" in out
    code, _, err = _run(capsys, "convert", str(target), str(tmp_path / "back.npz"))
    assert code == 2 and "cannot" in err and len(err.strip().splitlines()) == 1
    code, out, err = _run(capsys, "inspect", str(target))  # what the graph holds
    assert code == 0, err
    assert "ops: " in out and "WHILE" in out and "tensors in the file" in out


def test_keras_to_torch_and_onnx_and_back(tmp_path: Path, capsys) -> None:
    """The README's walk-through: a saved Keras model to PyTorch and ONNX, and back."""
    keras = need_keras()
    model = keras.Sequential([keras.Input((None, 4)), keras.layers.SimpleRNN(6, activation="relu",
                              return_sequences=True), keras.layers.Dense(3)])
    model.save(tmp_path / "model.keras")
    for a, b, extra in (("model.keras", "model.pt", []), ("model.keras", "model.onnx", []),
                        ("model.pt", "back.keras", ["--activation", "relu",
                                                    "--head-activation", "linear"]),
                        ("model.onnx", "back2.keras", [])):
        code, out, err = _run(capsys, "convert", str(tmp_path / a), str(tmp_path / b),
                              "--verify", *extra)
        assert code == 0, err
    again = keras.saving.load_model(tmp_path / "back2.keras")
    x = np.random.default_rng(0).standard_normal((2, 7, 4)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), atol=2e-6)


def test_outputs_are_never_overwritten_or_left_half_written(files: dict[str, Path],
                                                            tmp_path: Path, capsys,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    target = tmp_path / "out.onnx"
    target.write_bytes(b"precious")
    code, _, err = _run(capsys, "convert", str(files["rnn-ref"]), str(target))
    assert code == 2 and "exists; pass --force" in err
    assert target.read_bytes() == b"precious"
    assert _run(capsys, "convert", str(files["rnn-ref"]), str(target), "--force")[0] == 0
    assert rnn_ref.from_onnx(target) == rnn_ref.from_onnx(convert.write(
        PARAMS, tmp_path / "ref.onnx"))

    failing = convert.Verification(False, "FAIL: planted", 1.0, 0.0)
    monkeypatch.setattr(convert, "verify_files", lambda *a, **k: failing)
    dest = tmp_path / "never.pt"
    code, _, err = _run(capsys, "convert", str(files["rnn-ref"]), str(dest), "--verify")
    assert code == 1 and "verification failed, nothing written" in err
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".rnn-ref-")] == []


def test_flags_a_format_does_not_read_are_refused(files: dict[str, Path], tmp_path: Path,
                                                  capsys) -> None:
    code, _, err = _run(capsys, "convert", str(files["torch"]), str(tmp_path / "x.npz"),
                        "--activation", "tanh", "--direction", "reverse")
    assert code == 2 and "--direction does not apply to torch files" in err
    code, _, err = _run(capsys, "inspect", str(files["onnx"]), "--activation", "relu")
    assert code == 2 and "--activation does not apply to onnx files" in err


def test_missing_information_names_the_flag(files: dict[str, Path], tmp_path: Path,
                                            capsys) -> None:
    code, _, err = _run(capsys, "convert", str(files["torch"]), str(tmp_path / "x.npz"))
    assert code == 2 and "pass --activation" in err
    code, _, err = _run(capsys, "convert", str(files["rnn-ref"]), str(tmp_path / "x.bin"))
    assert code == 2 and "name it with --from/--to" in err
    sig = rnn_ref.init(RNNConfig(3, 4, activation="sigmoid"), seed=0)
    src = rnn_ref.save(sig, tmp_path / "sig.npz")
    code, _, err = _run(capsys, "convert", str(src), str(tmp_path / "sig.pt"))
    assert code == 2 and "torch.nn.RNN cannot express activation sigmoid" in err
    code, out, _ = _run(capsys, "inspect", str(src))
    assert code == 0 and "no: torch.nn.RNN cannot express activation sigmoid" in out
    assert "parameters: 32 counted as Keras does" in out


def test_hostile_files_are_refused_in_one_line(tmp_path: Path, capsys) -> None:
    torch = need("torch")
    keras = need_keras()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"weight_ih_l0": Evil()}))
    torch_evil = tmp_path / "evil2.pt"
    torch.save({"weight_ih_l0": Evil()}, torch_evil)
    lstm = tmp_path / "conv_lstm.keras"  # a layer rnn-ref does not read
    keras.Sequential([keras.Input((None, 5, 3)), keras.layers.ConvLSTM1D(4, 2)]).save(lstm)
    lam = tmp_path / "lambda.keras"
    keras.Sequential([keras.Input((None, 3)), keras.layers.Lambda(lambda v: v * 2),
                      keras.layers.SimpleRNN(4)]).save(lam)
    import h5py

    w = convert.write(PARAMS, tmp_path / "w.weights.h5")
    with h5py.File(w, "a") as f:
        del f["layers/simple_rnn/cell/vars/1"]
    extra = convert.write(PARAMS, tmp_path / "x.weights.h5")
    with h5py.File(extra, "a") as f:
        f["layers/simple_rnn/cell/vars/3"] = np.zeros(3)
    for bad, needle in ((evil, ""), (torch_evil, ""), (lstm, "LSTM"), (lam, ""),
                        (w, ""), (extra, "holds 4 arrays")):
        hint = [] if bad.suffix == ".keras" else ["--activation", "tanh",
                                                  "--head-activation", "linear"]
        code, out, err = _run(capsys, "convert", str(bad), str(tmp_path / "out.npz"), *hint)
        assert code == 2, (bad.name, out, err)
        assert len(err.strip().splitlines()) == 1 and needle in err, (bad.name, err)
        assert not (tmp_path / "out.npz").exists()
    assert not marker.exists()


@pytest.mark.parametrize("fmt", READABLE)
def test_fuzzed_files_never_crash(files: dict[str, Path], fmt: str, tmp_path: Path,
                                  capsys) -> None:
    """Truncated and bit-flipped versions of real files: exit 0 (a valid file after all)
    or 2 with one line; never a traceback, never a half-written output."""
    data = files[fmt].read_bytes()
    rng = np.random.default_rng(7)
    variants = [data[:k] for k in (0, 10, len(data) // 3, len(data) - 1)]
    for _ in range(6):
        flipped = bytearray(data)
        i = int(rng.integers(0, len(data)))
        flipped[i] ^= 1 << int(rng.integers(0, 8))
        variants.append(bytes(flipped))
    for i, blob in enumerate(variants):
        bad = tmp_path / f"bad{i}{convert.FORMATS[fmt][0]}"
        bad.write_bytes(blob)
        out = tmp_path / f"out{i}.npz"
        hint = _flags(convert.unrecorded(PARAMS, fmt))
        code, _, err = _run(capsys, "convert", str(bad), str(out), *hint)
        assert code in (0, 2), err
        assert out.exists() == (code == 0)
        if code == 2:
            assert len(err.strip().splitlines()) == 1, err


def test_cli_errors_are_one_line_in_a_real_process(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    res = subprocess.run([sys.executable, "-m", "rnn_ref.cli", "convert", str(bad),
                          str(tmp_path / "o.npz")], capture_output=True, text=True)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
