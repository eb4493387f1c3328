"""Issue 14, items 2-4: files from someone else can neither make rnn-ref read other files
(ONNX external data, HDF5 external storage) nor cost more than the limits allow (layer counts,
declared sizes, decompressed bytes, graphs run by --verify), and models in float64 verify in
float64. Every hostile file is built small in tmp_path; every refusal is one bounded line."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import need

import rnn_ref
from rnn_ref import FileFormatError, RNNConfig, UnsupportedError, convert, limits
from rnn_ref import io as rio
from rnn_ref.cli import main
from rnn_ref.errors import LimitError
from rnn_ref.limits import Limits


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_bounded_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 700, text[:2000]
    return lines[0]


# ------------------------------------------------------------------------------------------
# the canonical .npz
# ------------------------------------------------------------------------------------------
def _npz(path: Path, members: dict[str, Any]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, value in members.items():
            if isinstance(value, bytes):
                zf.writestr(name + ".npy", value)
            else:
                buf = io.BytesIO()
                np.save(buf, value)
                zf.writestr(name + ".npy", buf.getvalue())
    return path


def _declaring(tmp_path: Path, **config_changes: Any) -> Path:
    params = rnn_ref.init(RNNConfig(3, 4, output_size=2), seed=0)
    members: dict[str, Any] = dict(rio.to_members(params))
    cfg = json.loads(str(members["__config__"]))
    cfg.update(config_changes)
    members["__config__"] = np.array(json.dumps(cfg))
    return _npz(tmp_path / "declares.npz", members)


def test_npz_declaring_ten_million_layers_is_refused_at_once(tmp_path: Path, capsys) -> None:
    path = _declaring(tmp_path, num_layers=10_000_000)
    assert path.stat().st_size < 8000
    start = time.perf_counter()
    with pytest.raises(LimitError, match=r"10,000,000, over the limit of 1,024 layers") as exc:
        rnn_ref.load(path)
    assert time.perf_counter() - start < 2 and exc.value.limit == "max_layers"
    code, _, err = _cli(capsys, "inspect", str(path))
    assert code == 2 and "--max-layers" in _one_bounded_line(err)
    # raised, the next limit speaks: the parameters those layers declare
    code, _, err = _cli(capsys, "inspect", str(path), "--max-layers", "2e7")
    assert code == 2 and "parameter count is 400,000,006" in _one_bounded_line(err)


def test_npz_hidden_size_list_and_huge_sizes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LimitError, match="layers"):
        rnn_ref.load(_declaring(tmp_path, hidden_size=[4] * 5000, num_layers=None))
    with pytest.raises(LimitError, match="parameter count"):
        rnn_ref.load(_declaring(tmp_path, hidden_size=100_000))
    with limits.using(Limits(max_parameters=2**40)):  # raised: then it is just inconsistent
        with pytest.raises(FileFormatError, match=r"expected \(3, 100000\)"):
            rnn_ref.load(_declaring(tmp_path, hidden_size=100_000))


def test_npz_array_header_cannot_declare_more_than_its_member(tmp_path: Path) -> None:
    params = rnn_ref.init(RNNConfig(3, 4), seed=0)
    members: dict[str, Any] = dict(rio.to_members(params))
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    lie = buf.getvalue().replace(b"'shape': (3,)", b"'shape': (10000000000,)")
    with pytest.raises(LimitError, match="10,000,000,000"):
        rnn_ref.load(_npz(tmp_path / "a.npz", {**members, "layers.0.0.w_x": lie}))
    small = buf.getvalue().replace(b"'shape': (3,)", b"'shape': (9,)  ")
    with pytest.raises(FileFormatError, match="but its member holds"):
        rnn_ref.load(_npz(tmp_path / "b.npz", {**members, "layers.0.0.w_x": small}))


def test_npz_decompressed_size_is_checked_before_reading(tmp_path: Path) -> None:
    params = rnn_ref.init(RNNConfig(3, 40), seed=0)
    path = rnn_ref.save(params, tmp_path / "m.npz")
    with limits.using(Limits(max_bytes=2000)):
        with pytest.raises(LimitError, match="decompressed size"):
            rnn_ref.load(path)
    assert rnn_ref.load(path) == params  # the defaults read it


def test_error_lines_are_bounded(tmp_path: Path) -> None:
    # 1000 layers pass the limits, and the missing arrays are far more than a line
    path = _declaring(tmp_path, num_layers=1000)
    with pytest.raises(FileFormatError) as exc:
        rnn_ref.load(path)
    assert "arrays do not match" in str(exc.value) and len(str(exc.value)) < 700
    assert limits.bounded("x" * 10_000, 50).endswith("(9,950 more characters cut)")


# ------------------------------------------------------------------------------------------
# Keras files: the config before Keras builds anything, HDF5 datasets before h5py reads them
# ------------------------------------------------------------------------------------------
def _keras_archive(path: Path, units: int) -> Path:
    rnn = {"module": "keras.layers", "class_name": "SimpleRNN",
           "config": {"name": "rnn", "units": units, "activation": "tanh", "use_bias": True,
                      "recurrent_initializer": {"class_name": "Orthogonal", "config": {}}},
           "build_config": {"input_shape": [None, None, 3]}}
    config = {"module": "keras", "class_name": "Sequential", "config": {
        "name": "seq", "layers": [
            {"module": "keras.layers", "class_name": "InputLayer",
             "config": {"batch_shape": [None, None, 3], "name": "in"}}, rnn]}}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        zf.writestr("config.json", json.dumps(config))
    return path


def test_keras_archive_with_20000_units_is_refused_before_building(tmp_path: Path,
                                                                   capsys) -> None:
    need("h5py")
    path = _keras_archive(tmp_path / "big.keras", 20000)
    assert path.stat().st_size < 20_000
    start = time.perf_counter()
    with pytest.raises(LimitError, match="estimated before building"):
        convert.read(path)
    assert time.perf_counter() - start < 5
    code, _, err = _cli(capsys, "convert", str(path), str(tmp_path / "out.npz"))
    assert code == 2 and "--max-params" in _one_bounded_line(err)
    assert not (tmp_path / "out.npz").exists()


def test_keras_archive_layer_count_is_limited(tmp_path: Path) -> None:
    need("h5py")
    path = _keras_archive(tmp_path / "m.keras", 5)
    with limits.using(Limits(max_layers=1)):
        with pytest.raises(LimitError, match="number of layers in config.json is 2"):
            convert.read(path)


def test_hdf5_dataset_never_written_is_refused_by_its_declared_size(tmp_path: Path,
                                                                    capsys) -> None:
    h5py = need("h5py")
    path = tmp_path / "m.weights.h5"
    with h5py.File(path, "w") as f:
        cell = f.create_group("layers/simple_rnn/cell/vars")
        cell.create_dataset("0", shape=(20000, 20000), dtype="f4")  # no data: no storage
        cell.create_dataset("1", data=np.zeros((4, 4), np.float32))
    assert path.stat().st_size < 20_000
    code, _, err = _cli(capsys, "inspect", str(path), "--activation", "tanh")
    line = _one_bounded_line(err)
    assert code == 2 and "400,000,000" in line and "layers/simple_rnn/cell/vars/0" in line
    with pytest.raises(LimitError):
        convert.read(path, hints=convert.Hints(activation="tanh"))


@pytest.mark.parametrize("how", ["external storage", "external link"])
def test_hdf5_that_reads_another_file_is_refused(tmp_path: Path, how: str) -> None:
    h5py = need("h5py")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"PRIVATE KEY " * 8)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("kernel", data=np.ones((3, 4), np.float32))
    path = tmp_path / "m.weights.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("layers/simple_rnn/cell/vars")
        if how == "external storage":
            g.create_dataset("0", shape=(24,), dtype="f4", external=[(str(secret), 0, 96)])
        else:
            g["0"] = h5py.ExternalLink(str(other), "kernel")
    with pytest.raises(FileFormatError, match="other files|another file"):
        convert.read(path, hints=convert.Hints(activation="tanh"))


# ------------------------------------------------------------------------------------------
# PyTorch state dicts
# ------------------------------------------------------------------------------------------
def test_pt_of_zero_stride_views_is_refused_before_copying(tmp_path: Path, capsys) -> None:
    torch = need("torch")
    path = tmp_path / "views.pt"
    one = torch.zeros(1)
    torch.save({"weight_ih_l0": one.expand(50_000, 50_000), "weight_hh_l0": one.expand(4, 4)},
               path)
    assert path.stat().st_size < 5000
    code, _, err = _cli(capsys, "convert", str(path), str(tmp_path / "o.npz"),
                        "--activation", "tanh")
    line = _one_bounded_line(err)
    assert code == 2 and "2,500,000,000" in line and "weight_ih_l0" in line


def test_legacy_torch_format_is_refused(tmp_path: Path) -> None:
    torch = need("torch")
    path = tmp_path / "old.pt"
    torch.save({"w": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(FileFormatError, match="legacy format"):
        convert.read(path, hints=convert.Hints(activation="tanh"))


# ------------------------------------------------------------------------------------------
# ONNX: external data, declared sizes, what --verify runs
# ------------------------------------------------------------------------------------------
@pytest.fixture
def onnx_external(tmp_path: Path) -> tuple[Path, RNNParams]:  # noqa: F821
    onnx = need("onnx")
    from rnn_ref.backends.onnx import convert as onnx_backend

    params = rnn_ref.init(RNNConfig(3, 4, output_size=2), seed=1)
    path = tmp_path / "model.onnx"
    onnx.save(onnx_backend.to_native(params), str(path), save_as_external_data=True,
              location="model.onnx.data", size_threshold=0)
    return path, params


def _relocated(src: Path, name: str, location: str) -> Path:
    import onnx

    model = onnx.load(str(src), load_external_data=False)
    for t in model.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, str(src.parent / name))
    return src.parent / name


def test_external_data_is_read_only_when_asked(onnx_external, tmp_path: Path, capsys) -> None:
    path, params = onnx_external
    with pytest.raises(FileFormatError, match=r"'model.onnx.data'.*only when asked"):
        convert.read(path)
    assert convert.read(path, allow_external_data=True) == params
    assert rnn_ref.from_onnx(path, allow_external_data=True) == params
    code, out, err = _cli(capsys, "convert", str(path), str(tmp_path / "o.npz"))
    assert code == 2 and "--allow-external-data" in _one_bounded_line(err)
    code, out, err = _cli(capsys, "convert", str(path), str(tmp_path / "o.npz"),
                          "--allow-external-data", "--verify")
    assert code == 0 and "verified: ok" in out, err


@pytest.mark.parametrize("location,rule", [
    (".ssh/token", "a path"), ("../x/model.onnx.data", "a path"),
    ("/etc/passwd", "a path"), ("http://host/model.onnx.data", "a path"),
    ("model.onnx.data", "not named after the model"),  # read from other.onnx
    ("other.key", "not named after the model"),
])
def test_external_data_from_files_the_model_does_not_own_is_refused(
        onnx_external, location: str, rule: str) -> None:
    path, _ = onnx_external
    (path.parent / ".ssh").mkdir()
    (path.parent / ".ssh" / "token").write_bytes((path.parent / "model.onnx.data").read_bytes())
    (path.parent / "other.key").write_bytes(b"\0" * 4096)
    evil = _relocated(path, "other.onnx", location)
    with pytest.raises(FileFormatError, match=rule) as exc:
        convert.read(evil, allow_external_data=True)
    assert repr(location) in str(exc.value)


@pytest.mark.parametrize("kind", ["symlink", "fifo", "missing"])
def test_external_data_never_follows_links_or_opens_fifos(onnx_external, kind: str) -> None:
    path, _ = onnx_external
    secret = path.parent / "secret"
    secret.write_bytes((path.parent / "model.onnx.data").read_bytes())
    target = path.parent / "other.onnx.data"
    if kind == "symlink":
        target.symlink_to(secret)
    elif kind == "fifo":
        os.mkfifo(target)
    evil = _relocated(path, "other.onnx", "other.onnx.data")
    with pytest.raises(FileFormatError, match="symbolic link|not a regular file|cannot be found"):
        convert.read(evil, allow_external_data=True)


def test_external_data_in_bytes_or_a_modelproto_is_refused(onnx_external) -> None:
    import onnx

    path, _ = onnx_external
    raw = path.read_bytes()
    for given in (raw, onnx.load(str(path), load_external_data=False)):
        with pytest.raises(FileFormatError, match="from_onnx"):
            rnn_ref.from_onnx(given, allow_external_data=True)


def test_inspect_lists_external_files_without_reading_them(onnx_external, capsys) -> None:
    path, _ = onnx_external
    os.unlink(path.parent / "model.onnx.data")
    os.mkfifo(path.parent / "model.onnx.data")  # reading it would block: listing must not
    code, out, err = _cli(capsys, "inspect", str(path), "--allow-external-data")
    assert "'model.onnx.data'" in out and "refused: it is not a regular file" in out
    assert code == 2 and "not a regular file" in _one_bounded_line(err)
    os.unlink(path.parent / "model.onnx.data")
    (path.parent / "model.onnx.data").write_bytes(b"")
    code, out, err = _cli(capsys, "inspect", str(path))
    assert "'model.onnx.data'" in out and "needs --allow-external-data" in out
    assert code == 2 and "only when asked" in _one_bounded_line(err)


def test_onnx_declared_tensor_sizes_are_checked_before_reading(tmp_path: Path) -> None:
    onnx = need("onnx")
    from onnx import TensorProto

    from rnn_ref.backends.onnx import convert as onnx_backend

    model = onnx_backend.to_native(rnn_ref.init(RNNConfig(3, 4), seed=0))
    model.graph.initializer.append(TensorProto(name="huge", data_type=TensorProto.FLOAT,
                                               dims=[100_000, 100_000]))
    path = tmp_path / "huge.onnx"
    onnx.save(model, str(path))
    with pytest.raises(LimitError, match=r"'huge' is 10,000,000,000"):
        convert.read(path)


def _with_expand(params: Any, shape: list[int]) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    from rnn_ref.backends.onnx import convert as onnx_backend

    model = onnx_backend.to_native(params)
    out = model.graph.output[0]
    shape_t = numpy_helper.from_array(np.array(shape, np.int64), "bomb_shape")
    model.graph.initializer.append(shape_t)
    model.graph.node.append(helper.make_node("Expand", [out.name, "bomb_shape"], ["bomb"]))
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("bomb", TensorProto.FLOAT, None))
    return model


def test_verify_does_not_run_a_graph_whose_tensors_exceed_the_limits() -> None:
    need("onnx")
    need("onnxruntime")
    from rnn_ref.backends.onnx import files as onnx_files

    params = rnn_ref.init(RNNConfig(3, 4), seed=0)
    x = np.zeros((4, 9, 3), np.float32)
    bomb = _with_expand(params, [100_000, 1000, 4, 9, 4])  # 57.6 GB of float32 from 1 KB
    start = time.perf_counter()
    with pytest.raises(LimitError, match=r"'bomb' \(Expand output\) is 57,600,000,000"):
        onnx_files.run_native(bomb, x)
    assert time.perf_counter() - start < 5
    fine = _with_expand(params, [2, 4, 9, 4])
    assert onnx_files.run_native(fine, x).shape == (2, 4, 9, 4)
    with limits.using(Limits(max_nodes=3)):
        with pytest.raises(LimitError, match="number of graph nodes"):
            onnx_files.run_native(fine, x)


def test_verify_refuses_a_graph_whose_sizes_cannot_be_known() -> None:
    need("onnx")
    need("onnxruntime")
    from onnx import TensorProto, helper

    from rnn_ref.backends.onnx import convert as onnx_backend
    from rnn_ref.backends.onnx import files as onnx_files

    params = rnn_ref.init(RNNConfig(3, 4), seed=0)
    model = onnx_backend.to_native(params)
    out = model.graph.output[0].name
    # a shape computed from the data: ConstantOfShape(Cast(ReduceMax(y) * 1e9))
    model.graph.node.extend([
        helper.make_node("ReduceMax", [out], ["m"], keepdims=0),
        helper.make_node("Cast", ["m"], ["mi"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["mi", "ax"], ["shape"]),
        helper.make_node("ConstantOfShape", ["shape"], ["big"])])
    model.graph.initializer.append(helper.make_tensor("ax", TensorProto.INT64, [1], [0]))
    model.graph.output.append(helper.make_tensor_value_info("big", TensorProto.FLOAT, None))
    with pytest.raises(FileFormatError, match="not known before running"):
        onnx_files.run_native(model, np.zeros((4, 9, 3), np.float32))


# ------------------------------------------------------------------------------------------
# float64 (and float16) sources verify in their dtype; targets say what they cannot run
# ------------------------------------------------------------------------------------------
@pytest.fixture
def f64_state_dict(tmp_path: Path) -> Path:
    torch = need("torch")
    torch.manual_seed(0)
    rnn = torch.nn.RNN(3, 5, num_layers=2, batch_first=True).double()
    path = tmp_path / "f64.pt"
    torch.save(rnn.state_dict(), path)
    return path


@pytest.mark.parametrize("dst", ["out.npz", "out.pt"])
def test_float64_state_dict_converts_and_verifies_in_float64(f64_state_dict: Path, dst: str,
                                                             capsys) -> None:
    target = f64_state_dict.parent / dst
    done = convert.convert(f64_state_dict, target, hints=convert.Hints(activation="tanh"),
                           verify=True)
    assert done.params.dtype == np.float64 and done.verification is not None
    assert done.verification.passed and done.verification.atol < 1e-10  # a float64 tolerance
    code, out, err = _cli(capsys, "convert", str(f64_state_dict), str(target) + ".npz",
                          "--activation", "tanh", "--verify")
    assert code == 0 and "verified: ok" in out, err


def test_float64_to_onnx_is_refused_and_inspect_says_why(f64_state_dict: Path, capsys) -> None:
    need("onnx")
    target = f64_state_dict.parent / "out.onnx"
    code, _, err = _cli(capsys, "convert", str(f64_state_dict), str(target), "--activation",
                        "tanh", "--verify")
    line = _one_bounded_line(err)
    assert code == 2 and "float32 only, not float64" in line and not target.exists()
    code, out, _ = _cli(capsys, "inspect", str(f64_state_dict), "--activation", "tanh")
    onnx_row = [r for r in out.splitlines() if r.startswith("onnx ")]
    assert code == 0 and "no: onnxruntime runs onnx files of float32 only" in onnx_row[0]
    p32 = convert.read(f64_state_dict, hints=convert.Hints(activation="tanh")).astype("float32")
    assert convert.convertible(p32)["onnx"] is None


def test_a_float64_onnx_graph_is_refused_by_name_not_a_traceback() -> None:
    need("onnxruntime")
    from rnn_ref.backends.onnx import convert as onnx_backend
    from rnn_ref.backends.onnx import files as onnx_files

    model = onnx_backend.to_native(rnn_ref.init(RNNConfig(3, 4), seed=0, dtype=np.float64))
    with pytest.raises(UnsupportedError, match="float64 RNN graph.*float32 only"):
        onnx_files.run_native(model, np.zeros((2, 5, 3)))


def test_declared_sizes_one_helper() -> None:
    """HDF5 datasets, tensors and ONNX initializers are checked by one running sum
    (limits.DeclaredSizes): each array within max_parameters, all within max_bytes."""
    from rnn_ref import limits

    with limits.using(limits.Limits(max_parameters=10, max_bytes=64)):
        sizes = limits.DeclaredSizes("the declared size of the arrays", "f.h5")
        sizes.add("array 'a'", 10, 4)
        with pytest.raises(limits.LimitError, match="array 'b'"):
            sizes.add("array 'b'", 11, 1)
        with pytest.raises(limits.LimitError, match="the declared size of the arrays"):
            sizes.add("array 'c'", 7, 4)
