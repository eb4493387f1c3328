"""What a Keras or PyTorch file declares, checked against :mod:`rnn_ref.limits` before it is
read: the readers call these at their entry, before any layer is built or array allocated.

* Zip archives (``.keras``, ``.pt``): the members' declared decompressed sizes.
* HDF5 (``.weights.h5``, ``.h5``, a ``.keras`` archive's weights): every dataset's declared
  size (a dataset never written takes no room in the file but reads as its full shape of fill
  values), and nothing that reads another file: external links, external storage (raw bytes
  of any file read as a dataset) and virtual datasets are refused.
* A ``.keras`` archive's ``config.json``: the layer count and an estimate of the parameters
  each layer will allocate when Keras builds it (units, input widths, other integer sizes),
  before ``keras.saving.load_model`` builds anything.
* PyTorch state dicts: each tensor's element count (a zero-stride view can declare billions
  of elements over one stored number), checked on the loaded tensors before any is copied.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rnn_ref import limits
from rnn_ref.errors import FileFormatError

__all__ = ["check_h5", "check_keras_archive", "check_tensors", "check_zip"]


def check_zip(path: Path, source: str) -> zipfile.ZipFile:
    """The archive at ``path``, open, once its members' declared sizes are within
    ``max_bytes`` (the caller closes it)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FileFormatError(f"{source}: not a zip archive ({exc})") from None
    try:
        limits.check_bytes(sum(i.file_size for i in zf.infolist()),
                           "the archive's decompressed size", source)
    except BaseException:
        zf.close()
        raise
    return zf


def check_h5(file: Any, source: str) -> None:
    """Refuse an HDF5 file (a path or a file object) with a dataset over ``max_parameters``
    elements, datasets over ``max_bytes`` in all, or anything that reads another file."""
    import h5py

    sizes = limits.DeclaredSizes("the declared size of the HDF5 datasets", source)
    external: list[str] = []  # h5py cannot pass an exception out of a link visitor

    def link(name: str, target: Any) -> None:
        if isinstance(target, h5py.ExternalLink):
            external.append(name)

    def item(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        where = f"HDF5 dataset {limits.bounded(name, 120)!r}"
        if obj.external or obj.is_virtual:
            raise FileFormatError(f"{source}: {where} keeps its data in other files "
                                  f"(external storage or a virtual dataset): not read")
        sizes.add(where, int(obj.size or 0), obj.dtype.itemsize)

    with h5py.File(file, "r") as f:
        f.visititems_links(link)
        if external:
            raise FileFormatError(f"{source}: HDF5 link {limits.bounded(external[0], 120)!r} "
                                  f"points into another file: not followed")
        f.visititems(item)


def _layers(node: Any) -> Iterator[Mapping[str, Any]]:
    """Every Keras layer object in a config: a dict with ``class_name`` and a ``config``
    dict, from a layers module or with a ``build_config``."""
    if isinstance(node, Mapping):
        config = node.get("config")
        if "class_name" in node and isinstance(config, Mapping) and (
                "build_config" in node or str(node.get("module", "")).startswith("keras.layers")):
            yield node
        for value in node.values():
            yield from _layers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _layers(value)


def _ints(values: Any) -> list[int]:
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v > 0]


def _widest(node: Any) -> int:
    """The largest size in any shape or ``units`` of the config: a bound on any layer's input
    width (doubled for a concatenating Bidirectional)."""
    best = 1
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in ("batch_shape", "input_shape", "batch_input_shape", "shape") and \
                    isinstance(value, list):
                best = max(best, *_ints(value), 1)
            elif key == "units" and _ints([value]):
                best = max(best, 2 * value)
            else:
                best = max(best, _widest(value))
    elif isinstance(node, list):
        for value in node:
            best = max(best, _widest(value))
    return best


def _layer_estimate(layer: Mapping[str, Any], widest: int) -> int:
    """Parameters a layer allocates when built, estimated from above: the two largest
    integer sizes of its config (its input width among them) multiplied, plus ``units**2``
    for a recurrent layer."""
    config = layer["config"]
    shape = (layer.get("build_config") or {}).get("input_shape") \
        if isinstance(layer.get("build_config"), Mapping) else None
    width = shape[-1] if isinstance(shape, list) and shape and _ints(shape[-1:]) else widest
    sizes = sorted([*_ints(config.values()), width])
    total = sizes[-1] * sizes[-2] + sizes[-1] if len(sizes) > 1 else sizes[-1]
    units = config.get("units")
    if _ints([units]) and ("recurrent_initializer" in config or "RNN" in str(
            layer.get("class_name"))):
        total += units * units
    return int(total)


def check_keras_archive(path: Path, source: str) -> None:
    """Refuse a ``.keras`` archive whose members, config (layers, estimated parameters) or
    weights (:func:`check_h5`) are over the limits, before Keras reads it."""
    with check_zip(path, source) as zf:
        names = set(zf.namelist())
        if "config.json" not in names:
            raise FileFormatError(f"{source}: no config.json: not a .keras archive")
        try:
            config = json.loads(zf.read("config.json"))
        except RecursionError:
            raise FileFormatError(f"{source}: config.json is nested too deeply") from None
        except ValueError as exc:
            raise FileFormatError(f"{source}: config.json is not JSON ({exc})") from None
        found = list(_layers(config))
        limits.check_count(len(found), "the number of layers in config.json", source)
        widest = _widest(config)
        limits.check_elements(sum(_layer_estimate(la, widest) for la in found),
                              "the parameter count config.json declares (estimated before "
                              "building)", source)
        if "model.weights.h5" in names:
            check_h5(io.BytesIO(zf.read("model.weights.h5")), f"{source} (model.weights.h5)")


def check_tensors(tensors: Mapping[str, Any], source: str) -> None:
    """Refuse tensors (anything with ``numel()`` and ``element_size()``) over
    ``max_parameters`` elements each or ``max_bytes`` in all, before any is copied: a
    zero-stride view declares its full shape over a tiny storage."""
    sizes = limits.DeclaredSizes("the declared size of the tensors", source)
    for name, t in tensors.items():
        sizes.add(f"tensor {limits.bounded(str(name), 120)!r}", int(t.numel()),
                  int(t.element_size()))
