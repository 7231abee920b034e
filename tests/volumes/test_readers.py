"""The volume reader registry: dispatch by suffix (or predicate), plugins' readers everywhere, NIfTI unchanged."""

from __future__ import annotations

import configparser
import sys
import warnings
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

import napari_latent.volumes as volumes_package
from napari_latent import registry as registry_module
from napari_latent.analysis.result_files import identify
from napari_latent.errors import DataError, UserInputError, VolumeError
from napari_latent.registry import Registry
from napari_latent.volumes import (
    NonFiniteVoxelsWarning,
    Volume,
    load_cohort,
    open_volume,
    read_cohort_table,
    readable,
    reader_suffixes,
    register_reader,
    save_volume,
)
from napari_latent.volumes import readers as readers_module
from napari_latent.volumes.io import open_series, volume_name
from napari_latent.volumes.readers import (
    BUILTIN_READER_MODULES,
    READERS,
    find_reader,
    reader_for,
)

REPOSITORY = Path(__file__).resolve().parents[2]
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


@pytest.fixture
def readers(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """A registry holding only the built-in NIfTI reader, for one test (its registrations vanish
    afterwards): the messages below then list NIfTI and the test's formats."""
    fresh: Registry = Registry(READERS.kind, READERS.group)
    fresh.add("nifti", READERS.get("nifti"), READERS.origin("nifti"))
    monkeypatch.setattr(readers_module, "READERS", fresh)
    return fresh


def read_npy(path: Path, index: int | None = None) -> Volume:
    """A toy format: a ``.npy`` array ``(i, j, k)`` or ``(t, i, j, k)`` with a fixed affine."""
    data = np.load(path)
    if data.ndim == 4:
        frames = data.shape[0]
        if index is None:
            raise VolumeError(f"{path}: {frames} frames; choose one with an index")
        return Volume(data[index], AFFINE, path, {"format": "npy", "frame": index, "frames": frames})
    return Volume(data, AFFINE, path, {"format": "npy"})


def register_npy() -> None:
    register_reader("npy", read_npy, (".npy", ".NPY.GZ"), title="NumPy")


def register_folder_format() -> None:
    """A folder format: a folder holding ``SERIES`` and ``voxels.npy``."""
    register_reader("series-folder", lambda path, index=None: read_npy(path / "voxels.npy", index),
                    accepts=lambda path: (path / "SERIES").is_file(), title="series folder")


def write_npy(path: Path, data: np.ndarray) -> Path:
    with open(path, "wb") as handle:  # np.save would add .npy to other names
        np.save(handle, data)
    return path


def test_the_builtin_nifti_reader_is_registered_and_dispatched_by_suffix() -> None:
    assert "nifti" in READERS
    nifti = READERS.get("nifti")
    assert nifti.suffixes == (".nii", ".nii.gz") and nifti.title == "NIfTI"
    assert READERS.origin("nifti") == "napari_latent.volumes.nifti"
    assert {".nii", ".nii.gz"} <= set(reader_suffixes())
    for name in ("a.nii", "a.nii.gz", "A.NII.GZ", "missing/b.nii"):
        assert find_reader(name) is nifti and readable(name)
    for name in ("a.png", "a.gz", "a.nii.bak", "a"):
        assert find_reader(name) is None and not readable(name)


def test_the_longest_suffix_wins_and_case_does_not_matter(readers: Registry, tmp_path: Path) -> None:
    register_npy()
    register_reader("gz", read_npy, (".gz",))
    assert find_reader("x.npy.gz").name == "npy"  # registered as .NPY.GZ: matched case-insensitively
    assert find_reader("x.gz").name == "gz"
    assert find_reader("x.nii.gz").name == "nifti"
    assert find_reader("X.NPY").name == "npy"


def test_a_registered_reader_is_used_by_open_volume_and_open_series(readers: Registry, tmp_path: Path) -> None:
    register_npy()
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    path = write_npy(tmp_path / "scan.npy", data)
    volume = open_volume(path)
    np.testing.assert_array_equal(volume.data, data)
    np.testing.assert_array_equal(volume.affine, AFFINE)
    assert volume.name == "scan" and volume.path == path  # the reader's suffix is not part of the name
    assert volume.header == {"format": "npy", "nonfinite_voxels": 0}

    series = np.stack([data, data + 1, data + 2])
    series[1, 0, 0, 0] = np.nan
    path4d = write_npy(tmp_path / "series.npy", series)
    with pytest.raises(VolumeError, match="3 frames"):
        open_volume(path4d)
    frames, first = open_series(path4d)  # frame by frame: the toy reader has no read_series
    assert frames.shape == (3, 4, 5, 6) and frames.dtype == np.float32 and frames.flags.c_contiguous
    np.testing.assert_array_equal(first.data, data)
    assert frames[1, 0, 0, 0] == 0.0  # non-finite voxels: the smallest finite value of the series
    np.testing.assert_array_equal(frames[2], data + 2)


def test_the_non_finite_policy_and_the_affine_check_apply_to_every_reader(readers: Registry,
                                                                          tmp_path: Path) -> None:
    register_npy()
    data = np.ones((4, 4, 4), np.float32)
    data[0, 0, 0] = np.inf
    path = write_npy(tmp_path / "holes.npy", data)
    with pytest.warns(NonFiniteVoxelsWarning, match="replaced 1 NaN/Inf voxels"):
        volume = open_volume(path)
    assert volume.header["nonfinite_voxels"] == 1 and np.isfinite(volume.data).all()
    with pytest.raises(VolumeError, match="1 voxels are NaN or infinite"):
        open_volume(path, nonfinite="error")
    register_reader("flat", lambda p, index=None: Volume(np.ones((3, 3, 3)), np.diag([1.0, 1.0, 0.0, 1.0]), p),
                    (".flat",))
    (tmp_path / "x.flat").write_bytes(b"x")
    with pytest.raises(VolumeError, match="affine is degenerate"):
        open_volume(tmp_path / "x.flat")


def test_an_unknown_format_is_one_error_listing_the_accepted_suffixes(readers: Registry, tmp_path: Path) -> None:
    scan = tmp_path / "scan.png"
    scan.write_bytes(b"\x89PNG" + bytes(10))
    with pytest.raises(VolumeError, match=r"scan\.png: not a NIfTI file \(expected a \.nii or \.nii\.gz name\)"):
        open_volume(scan)
    register_npy()
    with pytest.raises(VolumeError) as info:
        open_volume(scan)
    assert str(info.value) == (f"{scan}: not a NIfTI or NumPy file (expected a .nii, .nii.gz, .npy or .npy.gz "
                               "name)")
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(VolumeError, match="is a folder, not a NIfTI or NumPy file"):
        open_volume(folder)
    with pytest.raises(VolumeError, match="no such file"):
        reader_for(tmp_path / "missing.npy")
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(VolumeError, match="the file is empty"):
        open_volume(tmp_path / "empty.npy")


def test_cohort_folders_and_tables_use_the_registered_readers(readers: Registry, tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((6, 6, 6)).astype(np.float32)
    save_volume(data, tmp_path / "sub-001.nii.gz", affine=AFFINE)
    write_npy(tmp_path / "sub-002.npy", data)
    (tmp_path / "notes.txt").write_text("x")
    assert [s.name for s in load_cohort(tmp_path).subjects] == ["sub-001"]
    (tmp_path / "cohort.csv").write_text("path\nsub-002.npy\n")
    with pytest.raises(DataError, match=r"not a NIfTI file \(\.nii or \.nii\.gz\)"):
        read_cohort_table(tmp_path / "cohort.csv")
    (tmp_path / "cohort.csv").unlink()

    register_npy()
    cohort = load_cohort(tmp_path)
    assert [s.name for s in cohort.subjects] == ["sub-001", "sub-002"]
    assert [open_volume(s.path).shape for s in cohort.subjects] == [(6, 6, 6), (6, 6, 6)]
    (tmp_path / "cohort.csv").write_text("path,group\nsub-002.npy,healthy\n")
    assert [s.name for s in read_cohort_table(tmp_path / "cohort.csv").subjects] == ["sub-002"]
    assert [s.path for s in load_cohort(tmp_path / "sub-002.npy").subjects] == [tmp_path / "sub-002.npy"]

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"holds no NIfTI or NumPy files \(\.nii, \.nii\.gz, \.npy or \.npy\.gz\)"):
        load_cohort(empty)


def test_a_folder_format_is_accepted_by_its_predicate(readers: Registry, tmp_path: Path) -> None:
    cohort_folder = tmp_path / "cohort"
    series = cohort_folder / "sub-001"
    series.mkdir(parents=True)
    (cohort_folder / "other").mkdir()
    data = np.full((5, 5, 5), 3.0, np.float32)
    write_npy(series / "voxels.npy", data)
    (series / "SERIES").write_text("")
    assert not readable(series)
    register_folder_format()
    assert readable(series) and not readable(cohort_folder / "other")
    np.testing.assert_array_equal(open_volume(series).data, data)
    assert [s.path for s in load_cohort(cohort_folder).subjects] == [series]
    assert [s.path for s in load_cohort(series).subjects] == [series]  # a folder that is one volume


def test_result_identification_asks_the_registry(readers: Registry, tmp_path: Path) -> None:
    path = write_npy(tmp_path / "scan.npy", np.ones((4, 4, 4), np.float32))
    opens = r"unsupported file; napari-latent opens NIfTI volumes \(\.nii or \.nii\.gz\)"
    with pytest.raises(UserInputError, match=opens):
        identify(path)
    register_npy()
    found = identify(path)
    assert found.kind == "volume" and found.path == path


def test_nifti_reading_is_unchanged(anatomical_path: Path, example4d_path: Path, tmp_path: Path) -> None:
    volume = open_volume(anatomical_path)
    reference = nib.load(anatomical_path)
    np.testing.assert_array_equal(volume.data, reference.get_fdata(dtype=np.float32))
    np.testing.assert_array_equal(volume.affine, reference.affine)
    assert volume.name == "anatomical" and volume.path == anatomical_path
    assert volume.header == {"format": "nifti1", "dtype": ">i2", "xyz_units": "mm", "t_units": "sec",
                             "sform_code": 2, "qform_code": 2, "affine_source": "sform",
                             "description": "spm - 3D normalized", "frame": None, "frames": 1,
                             "nonfinite_voxels": 0}
    frames, first = open_series(example4d_path)
    series = nib.load(example4d_path)
    np.testing.assert_array_equal(frames, np.moveaxis(series.get_fdata(dtype=np.float32), -1, 0))
    assert frames.flags.c_contiguous and first.header["frames"] == 2 and first.header["frame"] == 0
    np.testing.assert_array_equal(open_volume(example4d_path, index=1).data, frames[1])

    data = np.arange(64, dtype=np.float32).reshape(4, 4, 4) + 10
    data[0, 0, 0] = np.nan
    path = tmp_path / "holes.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        open_volume(path)
    assert [Path(w.filename).name for w in caught] == [Path(__file__).name]  # the warning names the caller
    assert volume_name("a.nii.gz") == "a" and volume_name("a.gz") == "a" and volume_name("a.png") == "a.png"


def test_register_reader_rejects_bad_declarations(readers: Registry) -> None:
    with pytest.raises(TypeError, match="must start with a dot"):
        register_reader("bad", read_npy, ("npy",))
    with pytest.raises(TypeError, match="needs suffixes or an accepts"):
        register_reader("bad", read_npy)
    with pytest.raises(TypeError, match="read"):
        register_reader("bad", None, (".bad",))  # type: ignore[arg-type]
    assert "bad" not in readers


def test_setup_cfg_declares_the_builtin_reader_like_a_plugin() -> None:
    config = configparser.ConfigParser()
    config.read(REPOSITORY / "setup.cfg")
    declared = dict(line.split(" = ") for line in config["options.entry_points"]["napari_latent.readers"].split("\n")
                    if line.strip())
    assert declared == {m: f"napari_latent.volumes.{m}" for m in BUILTIN_READER_MODULES}


def _fresh_registry(monkeypatch: pytest.MonkeyPatch, points: list[metadata.EntryPoint]) -> Registry:
    """A new, empty reader registry reading ``points``; the NIfTI module re-imported on demand."""
    fresh: Registry = Registry("volume reader", "napari_latent.readers",
                               tuple(f"napari_latent.volumes.{m}" for m in BUILTIN_READER_MODULES))
    monkeypatch.setattr(readers_module, "READERS", fresh)
    monkeypatch.setattr(volumes_package, "nifti", sys.modules["napari_latent.volumes.nifti"])
    monkeypatch.delitem(sys.modules, "napari_latent.volumes.nifti")
    monkeypatch.setattr(registry_module.metadata, "entry_points",
                        lambda group=None: [p for p in points if p.group == group])
    return fresh


def _plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "fake_reader_plugin.py").write_text(
        "import numpy as np\n"
        "from napari_latent.volumes import Volume\n"
        "from napari_latent.volumes.readers import register_reader\n"
        "def read(path, index=None):\n"
        "    return Volume(np.load(path), np.eye(4), path, {'format': 'fake'})\n"
        "register_reader('fake', read, ('.fake',), title='Fake')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_reader_plugin", raising=False)
    return "fake_reader_plugin"


def test_plugin_entry_points_register_readers_beside_the_builtin_fallback(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    module = _plugin_module(tmp_path, monkeypatch)
    fresh = _fresh_registry(monkeypatch, [metadata.EntryPoint("fake", module, "napari_latent.readers")])
    assert fresh.names() == ["fake", "nifti"]  # our metadata not installed: the built-ins module is imported
    assert fresh.origin("fake") == module
    data = np.ones((3, 4, 5), np.float32)
    path = write_npy(tmp_path / "scan.fake", data)
    np.testing.assert_array_equal(open_volume(path).data, data)
    assert readable(tmp_path / "x.nii.gz") and reader_suffixes() == (".fake", ".nii", ".nii.gz")


def test_our_own_entry_point_registers_nifti_when_installed(monkeypatch: pytest.MonkeyPatch,
                                                            anatomical_path: Path) -> None:
    point = metadata.EntryPoint("nifti", "napari_latent.volumes.nifti", "napari_latent.readers")
    vars(point).update(dist=SimpleNamespace(name="napari_latent"))  # what pip install -e . declares
    fresh = _fresh_registry(monkeypatch, [point])
    monkeypatch.setattr(fresh, "builtins", ())  # the entry point alone must register it
    assert fresh.names() == ["nifti"] and not fresh.failures
    assert open_volume(anatomical_path).shape == (33, 41, 25)


def test_a_broken_reader_plugin_is_named_and_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch,
                                                                       anatomical_path: Path) -> None:
    fresh = _fresh_registry(monkeypatch, [metadata.EntryPoint("broken", "no_such_reader_module",
                                                              "napari_latent.readers")])
    with pytest.warns(registry_module.PluginWarning, match="'broken'"):
        assert fresh.names() == ["nifti"]
    assert "broken" in fresh.failures
    assert open_volume(anatomical_path).shape == (33, 41, 25)
