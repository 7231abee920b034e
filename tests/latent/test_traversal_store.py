"""The traversal store: streamed writes, lazy reads, partial and failed runs, export, and the eigen analysis on it."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_latent.analysis.eigen import eigencomponents
from napari_latent.analysis.eigen_passes import plan_slabs
from napari_latent.errors import UserInputError
from napari_latent.latent import invert
from napari_latent.latent.directions import Directions
from napari_latent.latent.traversal import (
    LazyTraversal,
    StoredTraversal,
    Traversal,
    open_traversal,
    traverse,
)
from napari_latent.latent.traversal import lazy as lazy_module
from napari_latent.latent.traversal.store import StoreWriter
from napari_latent.progress import StopFlag, run_operation
from napari_latent.volumes import Volume
from napari_latent.volumes.orientation import display_geometry
from tests.conftest import reoriented_copy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def volume(phantom_volume) -> Volume:
    """The phantom stored LAS (not the display order), so the store's reorientation is exercised."""
    image = reoriented_copy(nib.Nifti1Image(phantom_volume.data, phantom_volume.affine), ("L", "A", "S"))
    return Volume(np.asarray(image.dataobj, dtype=np.float32), image.affine, name="phantom-las")


@pytest.fixture(scope="module")
def codes(tiny_vae, volume):
    return invert(tiny_vae, volume, method="encoder")


@pytest.fixture(scope="module")
def directions(tiny_vae):
    vectors = torch.eye(tiny_vae.latent_dim())[:2]
    return Directions(vectors, "z", tiny_vae.name, tiny_vae.fingerprint, "test", code_std=[0.5, 2.0])


@pytest.fixture(scope="module")
def lazy(tiny_vae, codes, directions, volume) -> LazyTraversal:
    return LazyTraversal(tiny_vae, codes, directions, "-2:2:5", index=1, source=volume)


@pytest.fixture(scope="module")
def eager(lazy) -> Traversal:
    return lazy.compute()


@pytest.fixture(scope="module")
def stored(lazy, tmp_path_factory) -> StoredTraversal:
    return run_operation(lazy.iter_store(tmp_path_factory.mktemp("store") / "trav.zarr"))


def test_the_store_holds_the_eager_voxels_in_display_order_with_the_facts(stored, eager, volume) -> None:
    assert isinstance(stored, StoredTraversal) and stored.shape == eager.shape == (5, *volume.shape)
    display = display_geometry(volume.grid)
    assert stored.frames.shape == (5, *display.reorientation.target_shape)
    for index in range(5):  # identical voxels: the same batches as the in-memory path
        np.testing.assert_array_equal(stored.frame(index), eager.frame(index))
        np.testing.assert_array_equal(stored.frames[index], display.to_display(eager.frame(index)))
    np.testing.assert_allclose(stored.grid.affine, volume.affine)
    np.testing.assert_array_equal(stored.alphas, eager.alphas)
    assert stored.baseline_index == eager.baseline_index == 2
    assert stored.direction.name == eager.direction.name and stored.model_fingerprint == eager.model_fingerprint
    np.testing.assert_array_equal(stored.modelled_mask(), eager.modelled_mask())
    # The attributes describe the stored voxels: the stored order's affine puts them where the source's are.
    meta = json.loads((stored.path / "zarr.json").read_text())["attributes"]["napari_latent"]
    storage = meta["storage"]
    assert storage["axes"] == ["alpha", "S", "P", "L"] and storage["chunks"] == list(stored.frames.chunks)
    ijk = np.array([3, 5, 7])
    stored_ijk = np.argwhere(display.to_display(np.arange(np.prod(volume.shape)).reshape(volume.shape))
                             == np.ravel_multi_index(ijk, volume.shape))[0]
    world = volume.affine @ np.r_[ijk, 1.0]
    np.testing.assert_allclose(np.asarray(storage["stored_affine"]) @ np.r_[stored_ijk, 1.0], world, atol=1e-6)
    # napari reads it lazily, in display order, chunk by chunk.
    array = stored.display_array()
    assert type(array).__module__.startswith("dask") and array.shape == stored.frames.shape
    np.testing.assert_array_equal(np.asarray(array[4, 10]), stored.frames[4, 10])


def test_the_eigen_analysis_of_the_store_equals_the_in_memory_one(stored, eager) -> None:
    ours = eigencomponents(stored, n_components=3, differences="all")
    reference = eigencomponents(eager, n_components=3, differences="all")
    scale = float(reference.eigenvalues[0])
    np.testing.assert_allclose(ours.eigenvalues, reference.eigenvalues, atol=1e-6 * scale)
    np.testing.assert_allclose(ours.eigenvectors, reference.eigenvectors, atol=1e-6)
    np.testing.assert_array_equal(ours.mask, reference.mask)
    for k in range(3):
        np.testing.assert_allclose(ours.component_map(k), reference.component_map(k), atol=1e-5)
    np.testing.assert_allclose(ours.differences, reference.differences, atol=1e-6)


def test_slabs_of_a_store_hold_whole_chunks(stored) -> None:
    align = stored.block_alignment
    assert align == stored.frames.chunks[1] > 1
    slabs = list(stored.iter_blocks(start=3))
    assert slabs[0][0] == 3 and all(first % align == 0 for first, _, _ in slabs[1:])
    assert slabs[-1][1] == stored.working_shape[0]
    assert all(block.shape[:2] == (5, last - first) for first, last, block in slabs)
    mask = np.zeros(stored.working_shape, dtype=bool)
    mask[align + 3:] = True
    plan = plan_slabs(stored, mask, None, whole_volume=False)
    assert plan.first % align == 0 and plan.chunk % align == 0  # no chunk is decompressed twice


def test_memory_holds_two_frames_never_all_alphas(tiny_vae, codes, directions, volume, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    live, peak, buffers = [0], [0], set()
    original_buffer, original_write = lazy_module._WriterSink.buffer, lazy_module._WriterSink._write

    def buffer(self, alpha):
        frame = original_buffer(self, alpha)
        live[0] += 1
        peak[0] = max(peak[0], live[0])
        buffers.add(np.lib.array_utils.byte_bounds(frame)[0])  # the memory behind the (perhaps reoriented) frame
        return frame

    def write(self, alpha, frame):
        original_write(self, alpha, frame)
        live[0] -= 1

    monkeypatch.setattr(lazy_module._WriterSink, "buffer", buffer)
    monkeypatch.setattr(lazy_module._WriterSink, "_write", write)
    many = LazyTraversal(tiny_vae, codes, directions, "0:3:12", index=0, source=volume, batch_size=8)
    stored = run_operation(many.iter_store(tmp_path / "many.zarr"))
    assert len(codes) > 16  # more slices than a batch: an alpha spans several batches
    assert peak[0] <= 2 and len(buffers) <= 2  # the one being decoded and the one being written, reused
    np.testing.assert_array_equal(stored.frame(11), many.frame(11))


def test_stopping_keeps_the_finished_alphas_and_before_the_first_writes_nothing(lazy, eager, tmp_path: Path) -> None:
    stop = StopFlag()
    for event in lazy.iter_store(tmp_path / "partial.zarr", stop):
        if event.step >= len(lazy.codes):  # the first alpha is complete
            stop.request()
    partial = StoredTraversal.open(tmp_path / "partial.zarr")
    assert 1 <= len(partial) < 5 and partial.info["stopped"]
    np.testing.assert_array_equal(partial.alphas, eager.alphas[:len(partial)])
    np.testing.assert_array_equal(partial.frame(0), eager.frame(0))
    stop = StopFlag()
    stop.request()
    assert run_operation(lazy.iter_store(tmp_path / "none.zarr", stop)) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["partial.zarr"]  # no temporary folder left


def test_a_failed_write_leaves_the_previous_store_and_no_temporary_folder(lazy, stored, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "trav.zarr"
    first = run_operation(lazy.iter_store(target))
    before = first.frame(4).copy()
    calls = [0]
    original = StoreWriter.write

    def failing(self, index, frame):
        calls[0] += 1
        if calls[0] == 3:
            raise OSError("disk full")
        original(self, index, frame)

    monkeypatch.setattr(StoreWriter, "write", failing)
    with pytest.raises(OSError, match="disk full"):
        run_operation(lazy.iter_store(target))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trav.zarr"]
    np.testing.assert_array_equal(StoredTraversal.open(target).frame(4), before)


def test_nifti_streaming_export_and_conversion_round_trip(lazy, stored, eager, volume, tmp_path: Path) -> None:
    streamed = run_operation(lazy.iter_save(tmp_path / "streamed.nii.gz"))
    image = nib.load(streamed)
    assert image.shape == (*volume.shape, 5)
    np.testing.assert_allclose(image.affine, volume.affine)
    np.testing.assert_array_equal(Traversal.load(streamed).images, eager.images)
    exported = Traversal.load(stored.export(tmp_path / "exported.nii.gz"))
    np.testing.assert_array_equal(exported.images, eager.images)
    assert exported.direction.name == eager.direction.name
    back = open_traversal(exported.save(tmp_path / "again.zarr"))  # a NIfTI traversal converted to a store
    assert isinstance(back, StoredTraversal)
    np.testing.assert_array_equal(back.load().images, eager.images)
    copied = open_traversal(stored.save(tmp_path / "copy.zarr"))
    np.testing.assert_array_equal(copied.frame(3), stored.frame(3))
    # A NIfTI cannot keep a partial run: stopping is an error and nothing is written.
    stop = StopFlag()

    def stop_after_the_first_alpha(event):
        if event.step >= len(lazy.codes):
            stop.request()

    with pytest.raises(UserInputError, match="nothing was written"):
        run_operation(lazy.iter_save(tmp_path / "stopped.nii.gz", stop), stop_after_the_first_alpha)
    assert not (tmp_path / "stopped.nii.gz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_traverse_out_returns_the_store(tiny_vae, codes, directions, volume, eager, tmp_path: Path) -> None:
    result = traverse(tiny_vae, codes, directions, "-2:2:5", index=1, source=volume, out=tmp_path / "t.zarr")
    assert isinstance(result, StoredTraversal) and result.path == tmp_path / "t.zarr"
    np.testing.assert_array_equal(result.frame(0), eager.frame(0))
    with pytest.raises(UserInputError, match=r"must end in \.zarr"):
        traverse(tiny_vae, codes, directions, "0:1:2", index=1, out=tmp_path / "t.nii.gz")


def test_opening_what_is_not_a_traversal_store_is_a_clear_error(stored, tmp_path: Path) -> None:
    import zarr

    with pytest.raises(UserInputError, match="no such file"):
        open_traversal(tmp_path / "missing.zarr")
    (tmp_path / "plain.zarr").mkdir()
    with pytest.raises(UserInputError, match="not a traversal store"):
        open_traversal(tmp_path / "plain.zarr")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").create_array("x", shape=(2,), dtype="f4")
    with pytest.raises(UserInputError, match="not a napari-latent traversal"):
        open_traversal(tmp_path / "other.zarr")
    newer = stored.save(tmp_path / "newer.zarr")
    group = zarr.open_group(str(newer), mode="r+")
    meta = dict(group.attrs["napari_latent"])
    meta["storage"] = {**meta["storage"], "version": 99}
    group.attrs["napari_latent"] = meta
    with pytest.raises(UserInputError, match="newer napari-latent"):
        open_traversal(newer)
    with pytest.raises(UserInputError, match="not a Zarr store"):
        StoreWriter(tmp_path / "plain.zarr", stored.grid, 2)


def test_ranks_without_a_working_reorientation_agree(stored, eager) -> None:
    """A traversal that does not say how it reorients gets the source ranks from one int32 volume instead."""

    class Opaque:
        def __init__(self, inner):
            self._inner = inner

        def __len__(self):
            return len(self._inner)

        def __getattr__(self, name):
            if name == "working_reorientation":
                raise AttributeError(name)
            return getattr(self._inner, name)

    hidden = eigencomponents(Opaque(stored), n_components=2)
    shown = eigencomponents(stored, n_components=2)
    np.testing.assert_array_equal(hidden.projections, shown.projections)
    np.testing.assert_allclose(shown.projections, eigencomponents(eager, n_components=2).projections, atol=1e-5)
