"""Figures and the report folder of a traversal's eigen analysis."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from napari_latent.analysis import plots
from napari_latent.analysis.eigen import eigencomponents
from napari_latent.analysis.plots import (
    figure_component_maps,
    figure_eigenvectors,
    figure_spectrum,
    figure_traversal_montage,
    save_figure,
    write_report,
)
from napari_latent.errors import MismatchError
from napari_latent.latent import invert
from napari_latent.latent.traversal import LazyTraversal, Traversal
from napari_latent.models.base import build_model
from napari_latent.volumes import Volume
from napari_latent.volumes.grid import Grid
from napari_latent.volumes.phantoms import PhantomFactors, make_phantom

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def traversal() -> Traversal:
    healthy = make_phantom(PhantomFactors(), size=32, seed=3)
    enlarged = make_phantom(PhantomFactors(ventricle_enlargement=1.0), size=32, seed=3)
    alphas = np.linspace(0.0, 50.0, 9)
    images = healthy.image[None] + (alphas / 50.0)[:, None, None, None] * (enlarged.image - healthy.image)[None]
    return Traversal(images.astype(np.float32), alphas, Grid(healthy.image.shape, healthy.affine))


@pytest.fixture(scope="module")
def eigen(traversal):
    return eigencomponents(traversal, n_components=3)


def test_figures_are_agg_figures_without_pyplot(traversal, eigen) -> None:
    source = inspect.getsource(plots)
    assert "import matplotlib.pyplot" not in source and "from matplotlib import pyplot" not in source
    figures = [figure_eigenvectors(eigen), figure_spectrum(eigen), figure_traversal_montage(traversal, n_positions=3),
               figure_component_maps(eigen, traversal, n_positions=3)]
    for figure in figures:
        assert isinstance(figure, Figure) and isinstance(figure.canvas, FigureCanvasAgg)
    assert len(figures[0].axes[0].lines) >= 3  # one curve per component (plus reference lines)
    montage_images = [ax for ax in figures[2].axes if ax.images]
    assert len(montage_images) == 3 * 5  # 3 positions x 5 alphas
    # Components: an eigenvector panel plus 3 maps per component row.
    assert sum(1 for ax in figures[3].axes if ax.lines) == 3
    assert sum(1 for ax in figures[3].axes if ax.images) == 9


def test_difference_overlay_is_symmetric_and_transparent_at_zero() -> None:
    values = np.array([[-2.0, 0.0, 1.0]])
    rgba = plots._overlay(values, 2.0, 0.8)
    assert rgba[0, 1, 3] == 0.0 and rgba[0, 0, 3] == pytest.approx(0.8)
    assert rgba[0, 0, 2] > rgba[0, 0, 0]  # negative: blue
    assert rgba[0, 2, 0] > rgba[0, 2, 2]  # positive: red
    assert plots._symmetric_limit(np.array([-3.0, 1.0]), 100) == 3.0


def test_save_figure_writes_a_png_atomically(eigen, tmp_path: Path) -> None:
    path = save_figure(figure_spectrum(eigen), tmp_path / "figs" / "spectrum.png", dpi=60)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["spectrum.png"]


def test_component_maps_need_anatomy_on_the_same_grid(eigen) -> None:
    with pytest.raises(MismatchError, match="not on the maps' grid"):
        figure_component_maps(eigen, np.zeros((30, 32, 32), dtype=np.float32))


def test_a_lazy_montage_computes_only_the_frames_it_shows(monkeypatch) -> None:
    torch.manual_seed(0)
    model = build_model("vae", image_size=32, latent_dim=8, base_channels=8, max_channels=32).eval()
    phantom = make_phantom(PhantomFactors(), size=32, seed=4)
    volume = Volume(phantom.image, phantom.affine)
    lazy = LazyTraversal(model, invert(model, volume, method="encoder"), torch.ones(8), "-2:2:21", source=volume)
    computed: list[int] = []
    original = LazyTraversal.frame

    def counting(self, index: int) -> np.ndarray:
        computed.append(int(index))
        return original(self, index)

    monkeypatch.setattr(LazyTraversal, "frame", counting)
    figure = figure_traversal_montage(lazy, n_alphas=3, n_positions=2)
    assert isinstance(figure, Figure)
    assert sorted(set(computed)) == [0, 10, 20] and len(computed) == 3  # the baseline (alpha 0) is index 10


def test_write_report_makes_a_readable_folder(traversal, eigen, tmp_path: Path) -> None:
    page = write_report(tmp_path / "report", traversal, eigen, extra={"inversion_mse": 0.01}, dpi=50)
    folder = page.parent
    for name in ("eigenvectors.png", "spectrum.png", "traversal_montage.png", "component_maps.png", "report.json"):
        assert (folder / name).is_file()
    text = page.read_text()
    for name in ("eigenvectors.png", "spectrum.png", "traversal_montage.png", "component_maps.png"):
        assert f'src="{name}"' in text  # relative paths: the folder can be moved
    assert text.count('class="how"') == 4 and "<b>blue</b>" in text  # each figure says how to read it
    assert "inversion_mse" in text and "component 2" in text
    report = json.loads((folder / "report.json").read_text())
    assert report["summary"]["components"][1]["alpha_correlation"] > 0.99
    assert report["eigen"]["eigenvectors"] and report["extra"] == {"inversion_mse": 0.01}


def test_the_report_shows_the_trust_warnings_first(traversal, eigen, tmp_path: Path) -> None:
    from napari_latent.analysis.trust import TrustWarning

    warning = TrustWarning("inversion", "sub-1 is far from what the model reconstructs well: 5.0 times", 5.0, 2.0)
    page = write_report(tmp_path / "warned", traversal, eigen, dpi=40, warnings=[warning, "a plain note"])
    text = page.read_text()
    assert text.index("Warnings: read before trusting") < text.index("source volume")
    assert "<li>sub-1 is far from what the model reconstructs well: 5.0 times</li>" in text
    report = json.loads((page.parent / "report.json").read_text())
    assert report["warnings"] == [warning.to_json(), {"kind": "note", "message": "a plain note"}]
    assert report["checked"] is True
    clean = write_report(tmp_path / "clean", traversal, eigen, dpi=40, warnings=[]).read_text()
    assert "no warning applies" in clean and "Warnings:" not in clean
    unchecked = write_report(tmp_path / "unchecked", traversal, eigen, dpi=40)
    assert "Not checked here" in unchecked.read_text()
    assert json.loads((unchecked.parent / "report.json").read_text())["checked"] is False
