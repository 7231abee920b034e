"""Take the napari screenshots used in README.md and docs/ (run under Xvfb).

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/scripts/make_screenshots.py
"""

from __future__ import annotations

from pathlib import Path

import napari

IMAGES = Path(__file__).resolve().parents[1] / "images"


def sample_data_screenshot() -> Path:
    """The disease phantom from the sample data, in a 2x2 grid of axial/coronal/sagittal/3D."""
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    viewer.open_sample("napari-latent", "disease_phantom")
    labels = viewer.layers["disease phantom tissue labels"]
    labels.visible = True
    labels.opacity = 0.25
    viewer.dims.current_step = (64, 64, 64)
    path = IMAGES / "napari_sample_phantom.png"
    viewer.screenshot(str(path), canvas_only=False)
    viewer.close()
    return path


if __name__ == "__main__":
    print(sample_data_screenshot())
