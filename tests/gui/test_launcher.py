"""Scripted sessions: napari_latent.gui.show() fills a viewer (never blocks when given one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_latent.errors import UserInputError
from napari_latent.gui.session import get_session
from tests.gui._results import assert_on_grid

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from tests.gui._results import make_results

    return make_results(tmp_path_factory.mktemp("launcher"))


def test_show_is_reexported_lazily() -> None:
    import subprocess
    import sys

    code = ("import sys, napari_latent, napari_latent.gui as g; assert 'napari' not in sys.modules; "
            "f = g.show; assert f.__module__ == 'napari_latent.gui.launcher'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_show_with_files_fills_the_viewer_and_the_session(make_napari_viewer, results) -> None:
    from napari_latent.gui import show

    viewer = make_napari_viewer()
    returned = show(volume=results.volume_path, model=results.model_path, traversal=results.traversal_path,
                    eigen=results.eigen_dir, viewer=viewer, codes=results.codes_path,
                    directions=results.directions_path, widgets=["1 Model", "6 Explore"])
    assert returned is viewer
    source = viewer.layers["subject"]
    assert source.data.shape == (32, 32, 32)
    traversal = viewer.layers["traversal"]
    assert traversal.data.shape == (5, *source.data.shape)
    assert_on_grid(traversal, source)
    assert viewer.dims.axis_labels[0] == "alpha"
    components = [layer for layer in viewer.layers if "component" in layer.name]
    assert len(components) == 3
    for layer in components:
        assert_on_grid(layer, source)
        np.testing.assert_allclose(layer.contrast_limits[0], -layer.contrast_limits[1])
    session = get_session(viewer)
    assert session.model.fingerprint == results.model.fingerprint
    assert session.last_codes[0] == "subject"
    assert session.directions.names == results.directions.names
    np.testing.assert_allclose(session.traversal.alphas, results.traversal.alphas)
    assert session.eigen.n_components == 3
    # the docked Explore widget starts from the session: sliders, and a preview on the source grid once used
    explore = viewer.window.dock_widgets["6 Explore (napari-latent)"]
    assert len(explore.sliders) == min(explore.count.value, len(results.directions)) > 0
    assert "subject explore" not in viewer.layers
    explore.set_values({0: 1.0})
    assert_on_grid(viewer.layers["subject explore"], source)


def test_show_with_objects(make_napari_viewer, results) -> None:
    from napari_latent.gui import show

    viewer = make_napari_viewer()
    show(volume=results.volume, model=results.model, traversal=results.traversal, eigen=results.eigen,
         viewer=viewer, widgets=False)
    [(data, kwargs, _)] = __import__("napari_latent.gui.reader", fromlist=["read_nifti"]).read_nifti(
        str(results.volume_path))
    source = viewer.layers["subject"]
    np.testing.assert_allclose(source.scale, kwargs["scale"])
    np.testing.assert_allclose(source.translate, kwargs["translate"])
    np.testing.assert_allclose(source.data, data)
    assert_on_grid(viewer.layers[f"traversal {results.directions.names[0]}"], source)
    assert get_session(viewer).model is results.model


def test_show_refuses_a_file_of_the_wrong_kind_before_adding_anything(make_napari_viewer, results) -> None:
    from napari_latent.gui import show

    viewer = make_napari_viewer()
    with pytest.raises(UserInputError, match="not a traversal"):
        show(volume=results.volume_path, traversal=results.codes_path, viewer=viewer, widgets=False)
    assert len(viewer.layers) == 0


def test_screenshot_of_a_shown_viewer_is_not_black(make_napari_viewer, results) -> None:
    from napari_latent.gui import show

    viewer = make_napari_viewer(show=True)
    show(volume=results.volume_path, eigen=results.eigen_dir, viewer=viewer, widgets=False)
    viewer.dims.current_step = (16, 16, 16)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.ndim == 3 and shot.shape[2] == 4
    gray = shot[..., :3].astype(np.float64)
    assert gray.std() > 10, f"screenshot looks blank (std {gray.std():.2f})"
    assert gray.mean() > 5


@pytest.mark.slow
def test_the_documented_example_session_runs(tmp_path: Path) -> None:
    """docs/scripts/example_session.py, as docs/scripts.md tells users to run it (without the event loop)."""
    import os
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "docs" / "scripts" / "example_session.py"
    done = subprocess.run([sys.executable, str(script), "--no-run", "--size", "48"], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    layers = done.stdout.split("layers:", 1)[1]
    for name in ("disease phantom", "traversal pca 1", "eigen component 2", "disease phantom explore"):
        assert name in layers


def test_show_opens_a_traversal_store_lazily(make_napari_viewer, results, tmp_path: Path, monkeypatch) -> None:
    import dask.array as da

    from napari_latent.gui import show
    from napari_latent.latent.traversal import StoredTraversal
    from napari_latent.latent.traversal.store import write_store

    store = write_store(results.traversal, tmp_path / "trav.zarr")
    monkeypatch.setattr(StoredTraversal, "load", lambda self: pytest.fail("the store was loaded whole"))
    for given in (str(store), StoredTraversal.open(store)):
        viewer = make_napari_viewer()
        show(volume=results.volume_path, traversal=given, viewer=viewer, widgets=False)
        source = viewer.layers["subject"]
        [layer] = [item for item in viewer.layers if item.ndim == 4]
        assert isinstance(layer.data, da.Array) and layer.data.shape == (5, *source.data.shape)
        assert layer.name == ("trav" if isinstance(given, str) else f"traversal {results.directions.names[0]}")
        assert_on_grid(layer, source)
        assert viewer.dims.axis_labels[0] == "alpha"
        traversal = get_session(viewer).traversal
        assert isinstance(traversal, StoredTraversal) and traversal.path == store
        np.testing.assert_allclose(np.asarray(layer.data[4]), traversal.display.to_display(results.traversal.images[4]),
                                   atol=1e-6)
