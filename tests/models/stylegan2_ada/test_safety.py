"""Reading StyleGAN2-ADA snapshots never executes anything from the file; hostile files are refused in one line."""

from __future__ import annotations

import builtins
import collections
import io
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_latent.errors import CheckpointError
from napari_latent.models.checkpoint import load_model
from napari_latent.models.importers import import_model
from napari_latent.models.stylegan2_ada.storage import parse_legacy_storage
from napari_latent.models.stylegan2_ada.unpickler import check_module_source, read_snapshot_pickle

from .snapshots import BENIGN_SOURCE, Reduce, fake_modules, snapshot_bytes, tensor_record

MARKER_TEXT = b"torch_utils.persistence"  # makes the importer's sniff accept the file


def write(path: Path, raw: bytes) -> Path:
    path.write_bytes(raw)
    return path


def assert_refused(path: Path, marker: Path, *match: str) -> str:
    """Both entry points refuse ``path`` with one line naming ``match``; the payload's ``marker`` is absent."""
    messages = []
    for load in (lambda: import_model(path, "stylegan2-ada"), lambda: load_model(path, device="cpu")):
        with pytest.raises(CheckpointError) as info:
            load()
        message = str(info.value)
        assert "\n" not in message
        for text in match:
            assert text in message
        messages.append(message)
    assert not marker.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # nothing written
    return messages[0]


def _short(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    assert len(data) < 256
    return bytes([len(data)]) + data


def call_pickle(module: str, name: str, argument: str) -> bytes:
    """Hand-written protocol-4 opcodes of ``{"note": MARKER_TEXT, "G": module.name(argument)}``."""
    return (b"\x80\x04}(\x8c" + _short("note") + b"C" + _short(MARKER_TEXT) + b"\x8c" + _short("G")
            + b"\x8c" + _short(module) + b"\x8c" + _short(name) + b"\x93\x8c" + _short(argument) + b"\x85Ru.")


def persistent(meta: dict) -> Reduce:
    import sys

    return Reduce(sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (meta,))


def record_meta(source: str = BENIGN_SOURCE, class_name: str = "Generator") -> dict:
    return {"type": "class", "version": 6, "module_src": source, "class_name": class_name,
            "state": {"_parameters": {}, "_buffers": {}, "_modules": {}, "_init_kwargs": {}, "_init_args": ()}}


# -- globals outside the allow-list -------------------------------------------------------------

@pytest.mark.parametrize(("module", "name"), [("posix", "system"), ("os", "system"), ("builtins", "eval"),
                                              ("subprocess", "call"), ("torch", "load")])
def test_a_call_outside_the_allow_list_is_refused_before_it_runs(tmp_path, module, name) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    marker = tmp_path / "pwned"
    payload = (f"__import__('os').system('touch {marker}')",) if name == "eval" else (f"touch {marker}",)
    raw = call_pickle(module, name, payload[0])
    message = assert_refused(write(folder / "network-snapshot-000000.pkl", raw), marker, f"{module}.{name}")
    assert "nothing was executed" in message


def test_a_real_os_system_reduce_is_refused(tmp_path) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "in"
    folder.mkdir()

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    raw = pickle.dumps({"note": MARKER_TEXT, "G": Evil()})
    assert_refused(write(folder / "evil.pkl", raw), marker, "system")


def test_persistent_ids_are_refused(tmp_path) -> None:
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage-0" if isinstance(obj, bytes) else None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=4).dump({"G": b"x", "note": MARKER_TEXT.decode()})
    with pytest.raises(CheckpointError, match="persistent ids"):
        read_snapshot_pickle(buffer.getvalue())


# -- persistent records ------------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "what"), [
    ("import os\nos.system('touch {marker}')\n", "a top-level call at line 2"),
    ("import torch\n\nwith open('{marker}', 'w') as f:\n    f.write('x')\n", "with statement at line 3"),
    ("class Generator:\n    open('{marker}', 'w')\n", "a top-level call at line 2"),
    ("@register('{marker}')\nclass Generator:\n    pass\n", "decorator call"),
    ("X = open('{marker}', 'w')\n", "assign statement at line 1"),
])
def test_records_whose_source_would_run_code_are_refused(tmp_path, source, what) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "in"
    folder.mkdir()
    with fake_modules():
        raw = pickle.dumps({"G": persistent(record_meta(source.format(marker=marker)))}, protocol=4)
    assert_refused(write(folder / "network-snapshot-000001.pkl", raw), marker, what, "nothing was executed")


def test_an_unknown_class_name_is_refused(tmp_path) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "in"
    folder.mkdir()
    with fake_modules():
        raw = pickle.dumps({"G": persistent(record_meta(class_name="Backdoor"))}, protocol=4)
    assert_refused(write(folder / "snapshot.pkl", raw), marker, "unknown network class 'Backdoor'")


def test_the_source_check_allows_definitions() -> None:
    check_module_source('"""Doc."""\nimport os\nfrom a import b\nX = 3\nY: int = -1\nZ = (1, "a")\n\n'
                        "@persistence.persistent_class\nclass A(torch.nn.Module):\n    '''Doc.'''\n"
                        "    def f(self):\n        return os.system('x')\n")
    with pytest.raises(CheckpointError, match="not valid Python"):
        check_module_source("def (:")


# -- tensors and storages ------------------------------------------------------------------------

def storage_blob(values: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(values.storage(), buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def test_legacy_storages_are_parsed_without_torch_load() -> None:
    values = torch.randn(7)
    for dtype in (torch.float32, torch.float16, torch.float64, torch.bfloat16, torch.int64):
        parsed = parse_legacy_storage(storage_blob(values.to(dtype))).data
        assert parsed.dtype == dtype and torch.equal(parsed, values.to(dtype))


def test_truncated_or_padded_storages_are_refused() -> None:
    blob = storage_blob(torch.randn(5))
    for bad in (blob[:-1], blob + b"\0\0\0\0", blob[:10]):
        with pytest.raises(CheckpointError):
            parse_legacy_storage(bad)


def test_a_tensor_reaching_past_its_storage_is_refused() -> None:
    storage = Reduce(torch.storage._load_from_bytes, (storage_blob(torch.randn(6)),))
    for size, stride, offset in [((7,), (1,), 0), ((2, 3), (3, 1), 1), ((3, 3), (1, 3), 0), ((2,), (-1,), 0)]:
        raw = pickle.dumps(Reduce(torch._utils._rebuild_tensor_v2,
                                  (storage, offset, size, stride, False, collections.OrderedDict())))
        with pytest.raises(CheckpointError, match=r"storage|malformed"):
            read_snapshot_pickle(raw)
    raw = pickle.dumps(Reduce(torch._utils._rebuild_tensor_v2,
                              (storage, 1, (2, 2), (1, 2), False, collections.OrderedDict())))
    tensor = read_snapshot_pickle(raw)
    assert tensor.shape == (2, 2) and tensor.is_contiguous()


def test_a_storage_blob_naming_another_global_is_refused() -> None:
    blob = storage_blob(torch.randn(3)).replace(b"FloatStorage", b"Xloatsystem")
    with pytest.raises(CheckpointError, match="Xloatsystem"):
        parse_legacy_storage(blob)


def test_older_snapshots_with_ordered_dicts_and_numpy_core_names_are_read() -> None:
    from napari_latent.models.base import build_model

    model = build_model("stylegan2-ada", image_size=32, base_channels=8, max_channels=32, latent_dim=8, w_dim=8,
                        mapping_layers=2, discriminator=False)
    raw = snapshot_bytes(model.generator, {"z_dim": 8}, legacy=True)
    assert b"numpy.core.multiarray\nscalar" in raw and b"numpy._core" not in raw
    data = read_snapshot_pickle(raw)
    record = data["G_ema"]
    assert record.state["weight_gain"] == 0.5 and type(record.state["weight_gain"]) is float
    assert record.state["_init_kwargs"] == {"z_dim": 8}
    weight = record.state["_modules"]["mapping"].state["_modules"]["fc0"].state["_parameters"]["weight"]
    assert torch.equal(weight, model.generator.mapping.fc0.weight)


def test_numpy_scalars_only_of_plain_types() -> None:
    raw = pickle.dumps(np.float64(2.5), protocol=4)
    assert read_snapshot_pickle(raw) == 2.5
    raw = pickle.dumps(np.array(["a"]).dtype, protocol=4)
    with pytest.raises(CheckpointError):
        read_snapshot_pickle(raw)


def test_tensor_stand_ins_cannot_be_altered_by_build(tmp_path) -> None:
    """A BUILD on one of our stand-ins fails; the next read is unaffected."""
    # hand-written opcodes: push our _rebuild_parameter stand-in, BUILD it with {'__defaults__': ...}
    raw = (b"\x80\x04\x8c\x0ctorch._utils\x8c\x12_rebuild_parameter\x93"
           b"}\x8c\x0c__defaults__K\x01\x85sb.")
    with pytest.raises(CheckpointError):
        read_snapshot_pickle(raw)
    assert builtins.eval is eval  # nothing was replaced
    assert read_snapshot_pickle(pickle.dumps(np.float64(1.0))) == 1.0


def test_garbage_is_refused_in_one_line(tmp_path) -> None:
    path = write(tmp_path / "network-snapshot-000002.pkl", b"\x80\x04" + MARKER_TEXT + b"\xff" * 100)
    with pytest.raises(CheckpointError) as info:
        import_model(path, "stylegan2-ada")
    assert "\n" not in str(info.value) and path.name in str(info.value)


def test_tensor_records_in_snapshots_round_trip() -> None:
    values = torch.randn(3, 4)
    assert torch.equal(read_snapshot_pickle(pickle.dumps(tensor_record(values))), values)
