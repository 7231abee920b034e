"""Traversal of a volume along a latent direction: grids, alphas, directions, laziness, files."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_latent.errors import MismatchError, UserInputError
from napari_latent.latent import invert
from napari_latent.latent.directions import Directions
from napari_latent.latent.traversal import (
    LazyTraversal,
    Traversal,
    iter_frames,
    iter_traverse,
    parse_alphas,
    sidecar_path,
    traverse,
)
from napari_latent.progress import ProgressEvent, StopFlag
from napari_latent.volumes import save_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def codes(tiny_vae, phantom_volume):
    return invert(tiny_vae, phantom_volume, method="encoder")


@pytest.fixture(scope="module")
def directions(tiny_vae):
    vectors = torch.eye(tiny_vae.latent_dim())[:3]
    return Directions(vectors, "z", tiny_vae.name, tiny_vae.fingerprint, "test", code_std=[0.5, 2.0, 1.0])


@pytest.fixture(scope="module")
def traversal(tiny_vae, codes, directions, phantom_volume):
    return traverse(tiny_vae, codes, directions, "0:3:4", index=1, source=phantom_volume)


# -- alphas ------------------------------------------------------------------------------------

def test_parse_alphas_accepts_ranges_and_lists() -> None:
    paper = parse_alphas("0:50:15")
    assert len(paper) == 15 and paper[0] == 0.0 and paper[-1] == 50.0
    np.testing.assert_allclose(np.diff(paper), 50 / 14)
    np.testing.assert_array_equal(parse_alphas(" -2 : 2 : 5 "), [-2, -1, 0, 1, 2])
    np.testing.assert_array_equal(parse_alphas("0, 10,2.5e1"), [0, 10, 25])
    np.testing.assert_array_equal(parse_alphas("7"), [7])
    np.testing.assert_array_equal(parse_alphas([1, 2]), [1, 2])


@pytest.mark.parametrize(("text", "message"), [
    ("", "no alphas"), ("a:b:3", "not a number"), ("0:50", "three parts"), ("0:1:2:3", "three parts"),
    ("0:50:1", "at least 2"), ("0:50:2.5", "whole number"), ("0:0:5", "equal"), ("1,,2", "empty item"),
    ("1,1", "distinct"), ("nan", "finite"), ("0:inf:3", "finite"),
])
def test_parse_alphas_rejects_bad_syntax_clearly(text: str, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        parse_alphas(text)


# -- the traversal on the source grid ------------------------------------------------------------

def test_traversal_lies_on_the_source_grid(traversal, phantom_volume, codes, tiny_vae) -> None:
    assert traversal.images.shape == (4, *phantom_volume.shape)
    assert traversal.images.dtype == np.float32
    np.testing.assert_allclose(traversal.grid.affine, phantom_volume.affine)
    assert traversal.baseline_index == 0 and traversal.model_fingerprint == tiny_vae.fingerprint
    assert traversal.direction.name == "test 2" and traversal.direction.index == 1
    assert traversal.direction.method == "test"
    # Outside the modelled voxels every frame holds the source intensities.
    outside = ~traversal.modelled_mask()
    assert outside.any()
    for frame in traversal:
        np.testing.assert_array_equal(frame[outside], phantom_volume.data[outside])
    # Alpha 0 is the reconstruction, mapped back exactly like SliceGeometry.to_volume.
    reconstruction = codes.reconstruct(tiny_vae, fill=phantom_volume)
    np.testing.assert_allclose(traversal.baseline, reconstruction, atol=1e-4)
    # The frames change with alpha inside the modelled voxels only.
    change = np.abs(traversal.images[-1] - traversal.images[0])
    assert change[~outside].max() > 0 and change[outside].max() == 0


def test_frames_are_the_exact_inverse_of_the_slicing(tiny_vae, codes, directions, phantom_volume) -> None:
    lazy = LazyTraversal(tiny_vae, codes, directions, "0,2", index=1, source=phantom_volume)
    images = lazy.decode_alpha(1)
    expected = codes.geometry.to_volume(images, fill=phantom_volume)
    np.testing.assert_array_equal(lazy.frame(1), expected)
    shifted = codes.codes + 2.0 * directions.vectors[1]
    np.testing.assert_allclose(images, codes.decode(tiny_vae, shifted), atol=1e-5)


def test_writing_crops_into_source_frames_equals_painting_planes(tiny_vae, codes, directions,
                                                                phantom_volume) -> None:
    from dataclasses import replace

    from napari_latent.latent.traversal import _Painter

    images = LazyTraversal(tiny_vae, codes, directions, "0,2", index=1).decode_alpha(1)
    geometry = codes.geometry
    r0, r1, c0, c1 = geometry.box
    # the stored box, and one pushed past the top-left edge (crops are then clipped)
    for box in (geometry.box, (r0 - 5, r1 - 5, c0 - 3, c1 - 3)):
        painter = _Painter(replace(geometry, box=box), phantom_volume)
        rows = np.r_[0:3, 5:len(codes)]  # runs of consecutive slices with a gap
        planes = painter.blank(0, painter.plane_shape[0])
        painter.paint(planes, images[rows], rows, 0)
        frame = np.empty(phantom_volume.shape, dtype=np.float32)
        painter.fill_frames(frame)
        painter.write(frame, painter.prepare(images[rows]), rows)
        np.testing.assert_array_equal(frame, painter.reorientation.invert(planes))


def test_a_volume_is_inverted_first(tiny_vae, phantom_volume, directions, traversal) -> None:
    events: list[ProgressEvent] = []
    direct = traverse(tiny_vae, phantom_volume, directions, "0:3:4", index=1, progress=events.append)
    np.testing.assert_allclose(direct.images, traversal.images, atol=1e-5)
    assert direct.fill == "source" and direct.info["inverted"]
    stages = {e.stage for e in events}
    assert "traverse" in stages and events[-1].step == events[-1].total == 4 * len(direct.geometry.indices)


def test_directions_by_name_weights_and_raw_vectors(tiny_vae, codes, directions) -> None:
    by_name = LazyTraversal(tiny_vae, codes, directions, "1", index="test 3")
    assert by_name.direction.index == 2
    combined = LazyTraversal(tiny_vae, codes, directions, "1", index={0: 1.0, "test 2": 1.0})
    np.testing.assert_allclose(combined.direction.vector, (directions.vectors[0] + directions.vectors[1]).numpy()
                               / np.sqrt(2), atol=1e-6)
    assert combined.direction.weights == {"test 1": 1.0, "test 2": 1.0} and combined.direction.index is None
    raw = LazyTraversal(tiny_vae, codes, 3.0 * directions.vectors[2], "1")
    np.testing.assert_allclose(np.linalg.norm(raw.direction.vector), 1.0, atol=1e-6)
    assert raw.direction.method == "vector"


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"index": 7}, UserInputError, "out of range"),
    ({"index": None}, UserInputError, "choose one"),
    ({"index": "nope"}, UserInputError, "no direction named"),
    ({"index": {0: 1.0, 1: -0.0}, "units": "direction_std"}, UserInputError, "single direction"),
    ({"index": 0, "units": "furlongs"}, UserInputError, "unknown alpha units"),
])
def test_bad_direction_arguments_are_clear_errors(tiny_vae, codes, directions, kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        LazyTraversal(tiny_vae, codes, directions, "0:1:3", **kwargs)


def test_a_direction_of_another_dimension_or_model_is_refused(tiny_vae, codes) -> None:
    with pytest.raises(MismatchError, match="dimension"):
        LazyTraversal(tiny_vae, codes, np.ones(codes.codes.shape[1] + 1), "0:1:3")
    other = Directions(torch.ones(1, codes.codes.shape[1]), "z", tiny_vae.name, "0" * 16, "test")
    with pytest.raises(MismatchError, match="another model"):
        LazyTraversal(tiny_vae, codes, other, "0:1:3")


def test_alpha_units_and_the_baseline(tiny_vae, codes, directions) -> None:
    vector = directions.vectors[1].numpy()
    std = float(np.std(codes.codes.numpy() @ vector, ddof=1))
    in_std = LazyTraversal(tiny_vae, codes, directions, "-1:2:4", index=1, units="std")
    np.testing.assert_allclose(in_std.latent_alphas, np.array([-1, 0, 1, 2]) * std, rtol=1e-5)
    assert in_std.baseline_index == 1
    in_code_std = LazyTraversal(tiny_vae, codes, directions, "3,-2,-0.5", index=1, units="direction_std")
    np.testing.assert_array_equal(in_code_std.alphas, [-2, -0.5, 3])  # sorted ascending
    np.testing.assert_allclose(in_code_std.latent_alphas, [-4, -1, 6])
    assert in_code_std.baseline_index == 1  # the alpha nearest to 0


# -- laziness and streaming ----------------------------------------------------------------------

def test_lazy_frames_blocks_and_iter_frames_equal_the_eager_result(tiny_vae, codes, directions, phantom_volume,
                                                                   traversal) -> None:
    lazy = LazyTraversal(tiny_vae, codes, directions, "0:3:4", index=1, source=phantom_volume, batch_size=7)
    np.testing.assert_allclose(lazy.frame(2), traversal.images[2], atol=1e-5)
    assembled = np.zeros((len(lazy), *lazy.working_shape), dtype=np.float32)
    for start, stop, block in lazy.iter_blocks(chunk=5):
        assert block.shape[0] == 4 and block.shape[1] == stop - start
        assembled[:, start:stop] = block
    np.testing.assert_allclose(lazy.from_working(assembled), traversal.images, atol=1e-5)
    streamed = list(iter_frames(tiny_vae, codes, directions, "0:3:4", index=1, source=phantom_volume))
    np.testing.assert_allclose(np.stack(streamed), traversal.images, atol=1e-5)
    np.testing.assert_allclose(lazy.compute().images, traversal.images, atol=1e-5)


def test_batches_across_alphas_give_the_same_frames(tiny_vae, codes, directions, traversal, phantom_volume) -> None:
    for batch_size in (1, 13, 1000):
        other = traverse(tiny_vae, codes, directions, "0:3:4", index=1, source=phantom_volume, batch_size=batch_size)
        np.testing.assert_allclose(other.images, traversal.images, atol=1e-5)
    plain = traverse(tiny_vae, codes, directions, "0:3:4", index=1, source=phantom_volume, channels_last=False)
    np.testing.assert_allclose(plain.images, traversal.images, atol=1e-4)


def test_bf16_stays_close_to_fp32(tiny_vae, codes, directions, traversal, phantom_volume) -> None:
    fast = traverse(tiny_vae, codes, directions, "0:3:4", index=1, source=phantom_volume, bf16=True)
    low, high = codes.geometry.window_values
    assert np.abs(fast.images - traversal.images).max() < 0.05 * (high - low)


def test_stop_returns_the_finished_frames(tiny_vae, codes, directions) -> None:
    stop = StopFlag()
    operation = iter_traverse(tiny_vae, codes, directions, "0:3:4", index=1, batch_size=len(codes) + 1, stop=stop)
    next(operation)  # the start event
    next(operation)  # first batch: alpha 0 complete
    stop.request()
    with pytest.raises(StopIteration) as done:
        next(operation)
    partial = done.value.value
    assert len(partial) == 1 and partial.info["stopped"]
    np.testing.assert_array_equal(partial.alphas, [0.0])


# -- files ---------------------------------------------------------------------------------------

def test_save_and_load_roundtrip_keep_the_source_affine(traversal, phantom_volume, tmp_path: Path) -> None:
    path = traversal.save(tmp_path / "out" / "trav.nii.gz")
    image = nib.load(path)
    assert image.shape == (*phantom_volume.shape, 4)
    np.testing.assert_allclose(image.affine, phantom_volume.affine)
    np.testing.assert_array_equal(np.moveaxis(np.asarray(image.dataobj), -1, 0), traversal.images)
    meta = json.loads(sidecar_path(path).read_text())
    assert sidecar_path(path) == tmp_path / "out" / "trav.json"
    for key in ("alphas", "units", "direction", "model", "model_fingerprint", "baseline_index", "format_version"):
        assert key in meta
    assert meta["direction"]["name"] == "test 2" and len(meta["direction"]["vector"]) == 8
    back = Traversal.load(path)
    np.testing.assert_array_equal(back.images, traversal.images)
    np.testing.assert_array_equal(back.alphas, traversal.alphas)
    np.testing.assert_allclose(back.grid.affine, phantom_volume.affine)
    np.testing.assert_array_equal(back.modelled_mask(), traversal.modelled_mask())
    assert back.direction.index == 1 and back.model_fingerprint == traversal.model_fingerprint
    # The streaming writer gives the same voxels and header as save_volume.
    reference = save_volume(np.moveaxis(traversal.images, 0, -1), tmp_path / "ref.nii.gz", like=phantom_volume.grid)
    np.testing.assert_array_equal(nib.load(reference).get_fdata(), image.get_fdata())
    np.testing.assert_allclose(nib.load(reference).affine, image.affine)


def test_lazy_save_streams_the_same_file(tiny_vae, codes, directions, phantom_volume, traversal,
                                         tmp_path: Path) -> None:
    lazy = LazyTraversal(tiny_vae, codes, directions, "0:3:4", index=1, source=phantom_volume)
    back = Traversal.load(lazy.save(tmp_path / "lazy.nii"))
    np.testing.assert_allclose(back.images, traversal.images, atol=1e-5)
    assert back.direction.name == "test 2"


def test_a_3d_file_or_a_missing_sidecar_is_a_clear_error(traversal, phantom_volume, tmp_path: Path) -> None:
    volume_path = save_volume(phantom_volume, tmp_path / "plain.nii.gz")
    with pytest.raises(UserInputError, match="not a traversal: a 3D volume"):
        Traversal.load(volume_path)
    path = traversal.save(tmp_path / "trav.nii.gz")
    sidecar_path(path).unlink()
    with pytest.raises(UserInputError, match=r"sidecar trav\.json is missing"):
        Traversal.load(path)
    with pytest.raises(UserInputError, match="no such file"):
        Traversal.load(tmp_path / "nothing.nii.gz")


def test_decoding_uses_a_private_copy_of_the_model(tiny_vae, codes, directions, traversal, phantom_volume) -> None:
    tiny_vae.train()
    try:
        again = traverse(tiny_vae, codes, directions, "0:3:4", index=1, source=phantom_volume, device="cpu")
        assert tiny_vae.training  # the model is left as it was (the copy decodes in eval mode)
        assert all(p.is_contiguous() and p.requires_grad for p in tiny_vae.parameters())
    finally:
        tiny_vae.eval()
    np.testing.assert_allclose(again.images, traversal.images, atol=1e-5)
    with pytest.raises(UserInputError, match="batch size"):
        LazyTraversal(tiny_vae, codes, directions, "0:1:2", index=1, batch_size=0)


def test_parallel_decoding_streams_give_the_same_images_and_leave_the_callers_threads(tiny_vae, codes) -> None:
    import threading

    from napari_latent.latent.traversal.decoding import Decoder

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        parallel = Decoder(tiny_vae, "z", 4, False, True, codes.codes)
        serial = Decoder(tiny_vae, "z", 4, False, True, codes.codes, streams=False)
        assert parallel.streams == 2 and parallel.ahead == 4 and serial.streams == 1
        seen = []
        original = parallel._decode_batch
        parallel._decode_batch = lambda *args: (seen.append(threading.get_ident()), original(*args))[1]
        images = parallel(codes.codes)
        torch.testing.assert_close(images, serial(codes.codes), atol=1e-4, rtol=1e-4)
        assert images.shape[0] == len(codes) and threading.get_ident() not in seen
        assert torch.get_num_threads() == 2  # the streams set one thread for themselves only
    finally:
        torch.set_num_threads(threads)
