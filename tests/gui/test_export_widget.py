"""The Export widget in a real napari viewer under Xvfb."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest

from napari_latent.gui.export_widget import ExportWidget

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer_with_volume(make_napari_viewer, tiny_cohort: Path):
    viewer = make_napari_viewer(show=True)
    [layer] = viewer.open(str(tiny_cohort / "sub-001.nii.gz"), plugin="napari-latent")
    return viewer, layer


def test_nifti_export_keeps_the_source_affine(viewer_with_volume, tiny_cohort: Path, tmp_path: Path) -> None:
    viewer, source = viewer_with_volume
    viewer.add_image(source.data * 2.0, name="doubled / map", scale=source.scale, translate=source.translate,
                     metadata=dict(source.metadata))
    widget = ExportWidget(viewer)
    widget.folder.value = tmp_path / "out"
    widget.layers.value = [source.name, "doubled / map"]
    written = widget.export_nifti()
    assert sorted(p.name for p in written) == sorted([f"{source.name}.nii.gz", "doubled___map.nii.gz"])
    original = nib.load(tiny_cohort / "sub-001.nii.gz")
    doubled = nib.load(tmp_path / "out" / "doubled___map.nii.gz")
    np.testing.assert_allclose(doubled.affine, original.affine, atol=1e-5)
    np.testing.assert_allclose(doubled.get_fdata(), 2.0 * original.get_fdata(), rtol=1e-5, atol=1e-4)


def test_png_of_the_view_is_not_black(viewer_with_volume, tmp_path: Path) -> None:
    viewer, _ = viewer_with_volume
    widget = ExportWidget(viewer)
    widget.folder.value = tmp_path
    path = widget.export_png()
    image = iio.imread(path)
    assert image.ndim == 3 and image[..., :3].std() > 5.0


def test_animation_has_one_frame_per_alpha_as_shown(viewer_with_volume, tmp_path: Path, qtbot) -> None:
    viewer, source = viewer_with_volume
    alphas = np.linspace(0.0, 1.0, 4)
    brighter = np.zeros_like(source.data)
    brighter[:, 8:24, 8:24] = float(source.data.max())
    frames4d = source.data[None] + alphas[:, None, None, None] * brighter[None]
    layer = viewer.add_image(frames4d, name="traversal", scale=(1.0, *source.scale),
                             translate=(0.0, *source.translate), metadata={"napari_latent": {"alphas": list(alphas)}})
    source.visible = False
    viewer.dims.set_current_step(1, source.data.shape[0] // 2)
    before = list(viewer.dims.current_step)
    widget = ExportWidget(viewer)
    widget.folder.value = tmp_path
    widget.traversal.value = layer.name
    widget.export_animation()
    qtbot.waitUntil(lambda: len(widget._written) == 1, timeout=60_000)
    frames = iio.imread(widget._written[0], index=None)
    assert frames.shape[0] == 4
    change = [np.abs(frames[i, ..., :3].astype(int) - frames[0, ..., :3].astype(int)).mean() for i in range(4)]
    assert change[0] == 0 and change[1] > 0.5 and change[3] > change[1]
    assert list(viewer.dims.current_step) == before  # the view is put back


def test_missing_choices_say_what_to_do(viewer_with_volume, tmp_path: Path) -> None:
    viewer, _ = viewer_with_volume
    widget = ExportWidget(viewer)
    widget.export_nifti()
    assert "choose an export folder" in widget.status.value
    widget.folder.value = tmp_path
    widget.export_nifti()
    assert "choose one or more image layers" in widget.status.value
    widget.export_animation()
    assert "no 4D traversal layer" in widget.status.value
    assert list(tmp_path.iterdir()) == []
