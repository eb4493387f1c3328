"""The canonical file: bit-exact round trips, atomic writes, refusal of bad files."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

import rnn_ref
from rnn_ref import FileFormatError, RNNConfig

CONFIGS = [
    RNNConfig(3, 5, output_size=2),
    RNNConfig(4, (6, 3), direction="bidirectional", activation=[("relu", "tanh"),
              ({"name": "hard_sigmoid", "alpha": 1 / 6, "beta": 0.5}, "elu" and
               {"name": "elu", "alpha": 1.0})], clip=(3.0, None), merge_mode=("sum", None),
              padded_output="carry_state"),
    RNNConfig(2, 3, num_layers=3, direction="reverse", bias=False, output_order="processing"),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["tutorial", "bidir-narrowing", "reverse-nobias"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_round_trip_is_bit_exact(tmp_path: Path, cfg: RNNConfig, dtype: type) -> None:
    p = rnn_ref.init(cfg, seed=4, dtype=dtype)
    path = rnn_ref.save(p, tmp_path / "model.npz")
    back = rnn_ref.load(path)
    assert back == p and back.config == cfg and back.dtype == dtype


def test_existing_file_is_kept_unless_overwrite(tmp_path: Path) -> None:
    p = rnn_ref.init(RNNConfig(3, 4), seed=0)
    target = tmp_path / "m.npz"
    target.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        rnn_ref.save(p, target)
    assert target.read_bytes() == b"precious"
    rnn_ref.save(p, target, overwrite=True)
    assert rnn_ref.load(target) == p
    assert [f.name for f in tmp_path.iterdir()] == ["m.npz"]  # no temporary left behind


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = rnn_ref.init(RNNConfig(3, 4), seed=0)

    def boom(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        rnn_ref.save(p, tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


def _npz(path: Path, **members: object) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **members)
    path.write_bytes(buf.getvalue())
    return path


def test_bad_files_raise_format_errors(tmp_path: Path) -> None:
    good = rnn_ref.save(rnn_ref.init(RNNConfig(3, 4), seed=0), tmp_path / "good.npz")
    data = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.npz").write_text("hello")
    cfg_json = RNNConfig(3, 4).to_json()
    cases = {
        "trunc.npz": "unreadable or truncated",
        "text.npz": "text.npz",
        _npz(tmp_path / "nomarker.npz", a=np.ones(2)).name: "no __format__ member",
        _npz(tmp_path / "future.npz", __format__=np.array("rnn-ref/9"),
             __config__=np.array(cfg_json)).name: "format 'rnn-ref/9'",
        _npz(tmp_path / "missing.npz", __format__=np.array("rnn-ref/1"),
             __config__=np.array(cfg_json)).name: "missing",
        _npz(tmp_path / "badjson.npz", __format__=np.array("rnn-ref/1"),
             __config__=np.array("{not json")).name: "Expecting property name",
        _npz(tmp_path / "pickled.npz", __format__=np.array("rnn-ref/1"),
             __config__=np.array(cfg_json), **{"layers.0.0.w_x": np.array([object()])}).name:
            "pickle",
    }
    for name, message in cases.items():
        with pytest.raises(FileFormatError, match=message):
            rnn_ref.load(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        rnn_ref.load(tmp_path / "absent.npz")


def test_extra_and_wrong_shape_arrays(tmp_path: Path) -> None:
    p = rnn_ref.init(RNNConfig(3, 4), seed=0)
    members = {"__format__": np.array("rnn-ref/1"), "__config__": np.array(p.config.to_json()),
               **dict(p.named_arrays())}
    with pytest.raises(FileFormatError, match=r"unexpected \['extra'\]"):
        rnn_ref.load(_npz(tmp_path / "extra.npz", **members, extra=np.ones(1)))
    members["layers.0.0.w_h"] = np.ones((4, 3), np.float32)
    with pytest.raises(FileFormatError, match=r"w_h has shape \(4, 3\)"):
        rnn_ref.load(_npz(tmp_path / "shape.npz", **members))


def test_file_is_a_plain_zip_of_npy(tmp_path: Path) -> None:
    path = rnn_ref.save(rnn_ref.init(RNNConfig(3, 4, output_size=2), seed=0), tmp_path / "m.npz")
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == sorted(
            ["__format__.npy", "__config__.npy", "head.0.w.npy", "head.0.b.npy"]
            + [f"layers.0.0.{n}.npy" for n in ("w_x", "w_h", "b_x", "b_h")])
