"""The structural fuzzer (``tests/fuzz.py``, issue 14) with a fixed seed and a bounded count,
and the reader bugs it found, each reproduced.

``python -m tests.fuzz --seed 1 --count 2000`` runs it longer (docs/development.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import need, need_keras

from rnn_ref import convert
from rnn_ref.errors import FileFormatError, UnsupportedError
from rnn_ref.params import RNNParams

need("torch")
need("onnx")
need("onnxruntime")
need("safetensors")

import fuzz  # noqa: E402  (after the frameworks: torch before TensorFlow)

SEED = 20240614
QUICK = frozenset({"rnn-ref", "torch", "safetensors", "onnx"})
KERAS = frozenset({"keras", "keras-h5", "keras2-h5", "keras-weights"})


def _assert_clean(report: fuzz.Report, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + report.table())
    assert not report.failures, "\n".join(report.failures)
    outcomes = {o for c in report.counts.values() for o in c}
    assert {"refused", "correct"} <= outcomes  # both kinds of mutant were met


def test_fuzz_npz_state_dicts_and_onnx(capsys: pytest.CaptureFixture[str]) -> None:
    """Structural mutants, truncations and bit flips of .npz, .pt, .safetensors and .onnx
    files: refused cleanly, or read and computing what the file computes."""
    report = fuzz.run(SEED, 120, formats=QUICK, cli_every=6)
    assert {c.split("/")[0] for c in report.counts} >= {"npz", "state-dict", "onnx"}
    _assert_clean(report, capsys)


@pytest.mark.slow
def test_fuzz_keras_formats(capsys: pytest.CaptureFixture[str]) -> None:
    """The same for .keras, legacy .h5 (Keras 3 and tf-keras) and .weights.h5."""
    need_keras()
    report = fuzz.run(SEED, 96, formats=KERAS, cli_every=8)
    assert {c.split("/")[0] for c in report.counts} >= KERAS
    _assert_clean(report, capsys)


def test_a_crash_in_a_reader_is_a_failure_not_a_refusal(tmp_path: Path, monkeypatch) -> None:
    """The classifier cannot pass by accident: a reader's own KeyError that ``read`` wrapped
    is a failure, a silent change a failure too."""
    monkeypatch.setattr(fuzz, "PROJECT_DIRS", (str(Path(__file__).parent),))
    try:
        try:
            {}["x"]  # noqa: B018
        except KeyError:
            raise FileFormatError("wrapped") from None
    except FileFormatError as exc:
        assert fuzz._project_crash(exc) is not None
    src = fuzz.sources(tmp_path, 0, frozenset({"rnn-ref"}))[0]
    other = fuzz.networks()["stack"]
    changed = RNNParams.from_arrays(other.config, {
        k: v * 2 if k.endswith("w_h") else v for k, v in other.named_arrays()})
    path = convert.write(changed, tmp_path / "changed.npz")
    assert fuzz.classify(path, src)[0] == "correct"  # the .npz says what it holds
    onnx_src = fuzz.sources(tmp_path, 0, frozenset({"onnx"}))[0]
    wrong = convert.write(changed, tmp_path / "changed.onnx")
    with fuzz._scratch(wrong.read_bytes(), ".onnx") as p:
        assert fuzz.check_read(p, onnx_src, onnx_src.params).startswith("silent wrong")


# --------------------------------------------------------------------------------------------
# the bugs it found, reproduced
# --------------------------------------------------------------------------------------------
def _keras_files(tmp_path: Path, fmt: str) -> fuzz.Source:
    need_keras()
    if fmt == "keras2-h5":
        need("tf_keras")
    return next(s for s in fuzz.sources(tmp_path, 0, frozenset({fmt})) if s.name == "embed")


def _edit_h5(src: fuzz.Source, tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    import h5py

    path = tmp_path / "edited.h5"
    path.write_bytes(src.data)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("field, value", [("units", 4), ("output_dim", 5)])
def test_keras2_config_sizes_must_fit_the_weights(tmp_path: Path, field: str, value: int
                                                  ) -> None:
    """A Keras 2 .h5 whose config says Dense(units=4) over a (6, 3) kernel (or an Embedding
    of output_dim 5 over (11, 4) embeddings) was read from the weights' shapes; tf-keras
    cannot load it."""
    src = _keras_files(tmp_path, "keras2-h5")

    def edit(f) -> None:  # type: ignore[no-untyped-def]
        cfg = json.loads(f.attrs["model_config"])
        for la in cfg["config"]["layers"]:
            if field in la["config"]:
                la["config"][field] = value
        f.attrs["model_config"] = json.dumps(cfg)

    with pytest.raises(FileFormatError, match=f"declares {field}={value} but its weights hold"):
        convert.read(_edit_h5(src, tmp_path, edit), "keras2-h5")


@pytest.mark.slow
def test_keras2_dense_without_its_weights_is_refused_not_a_crash(tmp_path: Path) -> None:
    """A Dense in the config without weights in the file was an IndexError in the reader."""
    src = _keras_files(tmp_path, "keras2-h5")

    def edit(f) -> None:  # type: ignore[no-untyped-def]
        text = f.attrs["model_config"]
        dense = next(la for la in json.loads(text)["config"]["layers"]
                     if la["class_name"] == "Dense")["config"]["name"]
        f.attrs["model_config"] = text.replace(f'"{dense}"', '"ghost"')

    with pytest.raises(FileFormatError, match="holds 0 arrays, its config takes 2") as info:
        convert.read(_edit_h5(src, tmp_path, edit), "keras2-h5")
    assert fuzz._project_crash(info.value) is None


def _extra_weights(f) -> None:  # type: ignore[no-untyped-def]
    import h5py

    root = f["model_weights"]
    g = root.create_group("ghost").create_group("ghost")
    g["kernel:0"] = np.ones((6, 2), np.float32)
    text = h5py.string_dtype()
    root["ghost"].attrs["weight_names"] = np.array(["ghost/kernel:0"], dtype=text)
    names = [n.decode() if isinstance(n, bytes) else n for n in root.attrs["layer_names"]]
    root.attrs["layer_names"] = np.array([*names, "ghost"], dtype=text)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["keras-h5", "keras2-h5"])
def test_legacy_h5_weights_no_config_layer_reads_are_refused(tmp_path: Path, fmt: str) -> None:
    """Weights of a layer the model config does not have (added, or the layer dropped from
    the config) were skipped without a word; Keras refuses such a file."""
    src = _keras_files(tmp_path, fmt)
    with pytest.raises(UnsupportedError, match=r"the weights \['ghost/ghost/kernel:0'\]"):
        convert.read(_edit_h5(src, tmp_path, _extra_weights), fmt)


@pytest.mark.slow
def test_weights_h5_groups_keras_does_not_name_are_refused(tmp_path: Path) -> None:
    """A .weights.h5 group named other than Keras names its layers (``fuzz_dense``) was read
    as the readout; Keras' ``load_weights`` cannot load it into that network."""
    need_keras()
    src = fuzz.sources(tmp_path, 0, frozenset({"keras-weights"}))[0]

    def edit(f) -> None:  # type: ignore[no-untyped-def]
        v = f["layers"].create_group("fuzz_dense").create_group("vars")
        v["0"] = np.ones((4, 2), np.float32)
        v["1"] = np.zeros(2, np.float32)

    path = tmp_path / "m.weights.h5"
    path.write_bytes(src.data)
    import h5py

    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(UnsupportedError, match=r"layers \['fuzz_dense'\]"):
        convert.read(path, "keras-weights", src.hints)


@pytest.mark.slow
def test_keras2_final_state_of_a_masked_model_is_written_and_read_right(tmp_path: Path) -> None:
    """``to_keras2`` wrote ``zero_output_for_mask=True`` on a last layer with
    ``return_sequences=False``: tf-keras then returns zeros (not the final state) for a sample
    padded at the end (0.13 off after the softmax head). It is written False now, and a file
    with True there is refused, as ``keras_graph`` refuses it for Keras 3."""
    src = _keras_files(tmp_path, "keras2-h5")
    with fuzz._scratch(src.data, src.ext) as path:
        assert fuzz.check_read(path, src, src.params) == ""

    def edit(f) -> None:  # type: ignore[no-untyped-def]
        cfg = json.loads(f.attrs["model_config"])
        for la in cfg["config"]["layers"]:
            if la["class_name"] == "SimpleRNN":
                la["config"]["zero_output_for_mask"] = True
        f.attrs["model_config"] = json.dumps(cfg)

    with pytest.raises(UnsupportedError, match="zero_output_for_mask=True and return_sequences"):
        convert.read(_edit_h5(src, tmp_path, edit), "keras2-h5")


def test_a_torch_network_state_dict_of_float16_is_refused_not_a_crash(tmp_path: Path) -> None:
    """A TorchNetwork state dict (with its config) whose first tensor is float16 was a
    KeyError in the reader."""
    src = next(s for s in fuzz.sources(tmp_path, 0, frozenset({"torch"})) if s.name == "stack")
    sd = fuzz._load_state_dict(src.data, "torch")
    first = next(k for k in sd if k != "rnn_ref_config")
    sd[first] = sd[first].astype(np.float16)
    path = tmp_path / "half.pt"
    fuzz._save_state_dict(sd, path, "torch")
    with pytest.raises(FileFormatError, match=f"the tensor '{first}' is float16") as info:
        convert.read(path, "torch")
    assert fuzz._project_crash(info.value) is None


def test_a_pt_whose_weights_fail_their_crc_is_refused(tmp_path: Path) -> None:
    """A bit flipped in a weight of a .pt: torch.load checks the zip's CRC-32 and refuses the
    file, but read with ``mmap=True`` it was converted as a different weight."""
    src = next(s for s in fuzz.sources(tmp_path, 0, frozenset({"torch"})) if s.name == "stack")
    weight = fuzz._load_state_dict(src.data, "torch")["steps.0.weight_hh_l0"]
    data = bytearray(src.data)
    at = bytes(data).index(weight.tobytes())
    data[at + 5] ^= 0x10
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="fails its CRC-32 check"):
        convert.read(path, "torch")
