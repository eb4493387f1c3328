"""``convert --verify`` on files as users save them (issue 21): a state dict of the user's own
module (``self.rnn`` + ``self.fc``, a ``DataParallel`` ``module.`` prefix), weights-only
targets that cannot record a piece (named in the ``wrote`` line, read back only with the hint
that restores it), and a TorchScript archive refused before torch reads it.

Shapes: D=3 features, M=5 hidden, K=2 outputs, T=7 steps, N=4 samples; weights seeded."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import need, need_keras

import rnn_ref
from rnn_ref import RNNConfig, cli, convert
from rnn_ref.conformance.runner import _equivalent

D, M, K, T, N = 3, 5, 2, 7, 4


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _user_module(select: str) -> Any:
    """The tutorial classifier as users write it: ``self.rnn``, ``self.fc``, the head on the
    last step (``out[:, -1, :]``) or on the final state (``h_n[-1]``)."""
    import torch
    from torch import nn

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.RNN(D, M, num_layers=2, batch_first=True)
            self.fc = nn.Linear(M, K)
            self.last_step = select == "last_step"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, h_n = self.rnn(x)
            return self.fc(out[:, -1, :] if self.last_step else h_n[-1])

    torch.manual_seed(21)
    return Classifier().eval()


def _fresh_inputs() -> np.ndarray[Any, Any]:
    return np.random.default_rng(2026).standard_normal((N, T, D)).astype(np.float32)


@pytest.mark.parametrize("wrapped", [False, True], ids=["own-keys", "dataparallel"])
@pytest.mark.parametrize("dst", ["onnx", "keras"])
def test_a_users_state_dict_verifies_by_its_own_keys(tmp_path: Path, capsys, wrapped: bool,
                                                     dst: str) -> None:
    """``--verify`` ran the file in the module rnn-ref rebuilds, whose keys differ, and failed
    ("Error(s) in loading state_dict for TorchNetwork"); it runs the file's own tensors."""
    need("torch")
    import torch
    from torch import nn

    if dst == "onnx":
        need("onnx")
        need("onnxruntime")
    else:
        need_keras()
    select = "last_step" if dst == "onnx" else "final"  # Keras returns the final state
    model = _user_module(select)
    saved = nn.DataParallel(model) if wrapped else model
    src = tmp_path / "model.pt"
    torch.save(saved.state_dict(), src)
    keys = list(torch.load(src, weights_only=True))
    assert ("module.rnn.weight_ih_l0" if wrapped else "rnn.weight_ih_l0") in keys
    target = tmp_path / f"model{convert.FORMATS[dst][0]}"
    code, out, err = _run(capsys, "convert", str(src), str(target), "--verify",
                          "--activation", "tanh", "--select", select,
                          "--head-activation", "linear")
    assert code == 0, err
    assert "verified: ok" in out
    x = _fresh_inputs()
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    if dst == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x})[0]
    else:
        from rnn_ref.backends.keras.convert import import_keras

        keras = import_keras()
        got = np.asarray(keras.saving.load_model(str(target), compile=False,
                                                 safe_mode=True)(x))
    assert got.shape == want.shape == (N, K)
    assert float(np.abs(got - want).max()) < 1e-5


def test_per_layer_activations_write_and_verify(tmp_path: Path, capsys) -> None:
    """tanh then relu: a ``.pt`` records them (a TorchNetwork), a ``.weights.h5`` does not
    and says so; both verify, and the ``.weights.h5`` reads back only with the hint."""
    need("torch")
    need_keras()
    params = rnn_ref.init(RNNConfig(D, M, num_layers=2, activation=[["tanh"], ["relu"]]),
                          seed=5)
    src = rnn_ref.save(params, tmp_path / "net.npz")
    for ext in (".pt", ".weights.h5"):
        target = tmp_path / f"net{ext}"
        code, out, err = _run(capsys, "convert", str(src), str(target), "--verify")
        assert code == 0, err
        assert "verified: ok" in out
    pt_line, h5_line = (_wrote(capsys, tmp_path, ext) for ext in (".pt", ".weights.h5"))
    assert "not recorded" not in pt_line
    assert ("not recorded: per-layer activations tanh/relu: give --activation tanh,relu "
            "when reading it") in h5_line
    assert _equivalent(params, convert.read(tmp_path / "net.pt")) == ""
    code, _, err = _run(capsys, "inspect", str(tmp_path / "net.weights.h5"))
    assert code == 2 and "--activation" in err and len(err.strip().splitlines()) == 1
    back = convert.read(tmp_path / "net.weights.h5", hints=convert.Hints(activation="tanh,relu"))
    assert back.config.activations == params.config.activations
    x = _fresh_inputs().astype(np.float64)
    assert np.allclose(rnn_ref.forward(back, x).outputs, rnn_ref.forward(params, x).outputs,
                       rtol=0, atol=1e-6)  # Keras holds b_x + b_h in one float32 bias


def _wrote(capsys: pytest.CaptureFixture[str], folder: Path, ext: str) -> str:
    """The ``wrote`` line of converting ``net.npz`` to a fresh ``net2<ext>``."""
    code, out, err = _run(capsys, "convert", str(folder / "net.npz"),
                          str(folder / f"net2{ext}"))
    assert code == 0, err
    return out.splitlines()[0]


def test_a_per_step_sigmoid_classifier_to_pt(tmp_path: Path, capsys) -> None:
    """``SimpleRNN(return_sequences=True) -> Dense(1, sigmoid)`` to ``.pt`` (an
    ``RNNWithReadout``'s state dict, which records no activation): the ``wrote`` line names
    the head's sigmoid, ``--verify`` passes, and reading it back without
    ``--head-activation`` is refused naming it, never read as a linear head."""
    need("torch")
    need_keras()
    from rnn_ref.backends.keras.convert import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((None, D)),
                              keras.layers.SimpleRNN(M, return_sequences=True),
                              keras.layers.Dense(1, activation="sigmoid")])
    src = tmp_path / "clf.keras"
    model.save(src)
    target = tmp_path / "clf.pt"
    code, out, err = _run(capsys, "convert", str(src), str(target), "--verify")
    assert code == 0, err
    assert "verified: ok" in out
    assert ("not recorded: activation tanh, head activation sigmoid: give --activation tanh "
            "--head-activation sigmoid when reading it") in out.splitlines()[0]
    for argv in (["--activation", "tanh"], []):
        code, _, err = _run(capsys, "inspect", str(target), *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--head-activation" in err or "--activation" in err
    code, _, err = _run(capsys, "inspect", str(target), "--activation", "tanh")
    assert "--head-activation" in err
    back = convert.read(target, hints=convert.Hints(activation="tanh", head_activation="sigmoid"))
    assert _equivalent(rnn_ref.from_keras(model), back) == ""
    x = _fresh_inputs()
    want = np.asarray(model(x))
    got = rnn_ref.forward(back, x.astype(np.float64)).y
    assert float(np.abs(got - want).max()) < 1e-5


def test_a_dense_tanh_readout_is_asked_for_not_assumed(tmp_path: Path) -> None:
    """issue 22: a ``Dense(2, tanh)`` readout written to ``.pt`` and ``.safetensors`` is read
    back only with ``head_activation``; ``hints_for`` restores it exactly."""
    need("torch")
    params = rnn_ref.init(RNNConfig(D, M, output_size=K, output_activation="tanh"), seed=9)
    for ext, fmt in ((".pt", "torch"), (".safetensors", "safetensors")):
        if fmt == "safetensors":
            need("safetensors")
        path = convert.write(params, tmp_path / f"r{ext}")
        assert convert.unrecorded(params, fmt) == {"activation": "tanh",
                                                   "head_activation": "tanh"}
        with pytest.raises(convert.MissingHintError) as caught:
            convert.read(path, hints=convert.Hints(activation="tanh"))
        assert caught.value.hint == "head_activation"
        assert convert.read(path, hints=convert.hints_for(params, fmt)) == params


def test_a_torchscript_archive_is_one_line_and_never_loaded(tmp_path: Path, capsys,
                                                            monkeypatch) -> None:
    """``torch.jit.save`` writes code (``<name>/code/``, ``constants.pkl``): refused by its
    member names before ``torch.load`` is called, in one line, exit 2, nothing written."""
    need("torch")
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated
        scripted = torch.jit.script(_user_module("last_step"))
        path = tmp_path / "scripted.pt"
        torch.jit.save(scripted, str(path))
    loads: list[Any] = []
    real_load = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        loads.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    monkeypatch.setattr(torch.jit, "load", spy)
    for argv in (["convert", str(path), str(tmp_path / "out.onnx"), "--activation", "tanh"],
                 ["inspect", str(path)]):
        code, out, err = _run(capsys, *argv)
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert "TorchScript archive" in lines[0] and "never runs" in lines[0]
        assert "torch.save(model.state_dict(), path)" in lines[0]
    assert loads == []
    assert sorted(os.listdir(tmp_path)) == ["scripted.pt"]
