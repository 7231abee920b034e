"""Live preview latency of the Explore widget: slider change to updated layer data.

    xvfb-run -a python benchmarks/bench_explore.py

A 128-cube disease phantom is open in napari; the Explore widget has codes and 8 directions.
"Ours" is the time from setting a slider's value until both preview layers hold the new
slice (the widget's SlicePreview decodes one code with its channels-last Decoder copy and
pastes the slice into the preview and difference layers' data in place; the widget
refreshes the layers). The baseline is the plain way:
``model.decode`` of the shifted code, the whole volume rebuilt on the source grid
(``SliceGeometry.to_volume``) and set as the layer's data (``layer.data = ...``).

Image sizes 64 (the bundled demo VAE) and 128 (the same architecture at 128 px, random
weights: only the time matters). Targets on this CPU: under 50 ms at 64 px, under 100 ms at
128 px. Also measured: bfloat16 autocast for one image (speed and error).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import napari
from _common import machine, ratio_line

from napari_latent.gui import explore_widget
from napari_latent.gui.explore_widget import ExploreWidget
from napari_latent.gui.layers import grid_layer_data, volume_layer_data
from napari_latent.gui.session import get_session
from napari_latent.latent.directions import Directions
from napari_latent.latent.inversion import invert
from napari_latent.models.base import build_model, model_fingerprint
from napari_latent.models.checkpoint import load_model
from napari_latent.volumes import Volume
from napari_latent.volumes.phantoms import PhantomFactors, make_phantom

REPEATS = int(os.environ.get("BENCH_REPEATS", "30"))


def model_of_size(size: int):
    demo = load_model("demo", device="cpu")
    if size == demo.image_size:
        return demo
    config = demo.config.to_json()
    config["image_size"] = size
    torch.manual_seed(0)
    model = build_model(demo.name, **config).eval()
    model.slice_spec = type(demo.slice_spec)(**{**demo.slice_spec.to_json(), "size": size})
    model.fingerprint = model_fingerprint(model)
    return model


def run(size: int, volume: Volume) -> dict[str, float]:
    model = model_of_size(size)
    viewer = napari.Viewer(show=False)
    codes = invert(model, volume, method="encoder")
    generator = torch.Generator().manual_seed(0)
    directions = Directions(torch.randn(8, model.latent_dim(), generator=generator), codes.space, model.name,
                            model.fingerprint, "random")
    data, kwargs, _ = volume_layer_data(volume, colormap="gray")
    source = viewer.add_image(data, **kwargs)
    session = get_session(viewer)
    session.set_model(model, "bench")
    session.last_codes = (source.name, codes)
    widget = ExploreWidget(viewer)
    session.directions = directions
    axis, plane_of = widget.plane_axis()
    middle = int(codes.indices[len(codes) // 2])
    step = list(viewer.dims.current_step)
    step[axis] = int(np.nonzero(plane_of == middle)[0][0])
    viewer.dims.current_step = tuple(step)
    app = napari.qt.get_qapp()
    rate = explore_widget.MAX_RATE
    ours = []
    slider = widget.sliders[0]
    explore_widget.MAX_RATE = float("inf")  # measure one update each time, not the drag throttle
    for i in range(REPEATS + 3):
        start = time.perf_counter()
        slider.value = ((i % 10) - 4.5) * 0.5
        ours.append(time.perf_counter() - start)
        app.processEvents()
    ours = ours[3:]
    explore_widget.MAX_RATE = rate
    # the baseline: plain decode, whole volume rebuilt and set as layer data
    geometry = codes.geometry
    row = int(np.searchsorted(codes.indices, middle))
    layer = widget.preview_layer
    base = []
    for i in range(REPEATS + 3):
        start = time.perf_counter()
        code = codes.codes[row:row + 1] + ((i % 10) - 4.5) * 0.5 * directions.vectors[0]
        with torch.no_grad():
            image = model.decode(code, codes.space)
        full = geometry.to_volume(image, indices=np.array([middle]), fill=volume)
        layer.data = grid_layer_data(full, volume.grid, layer.name)[0]
        base.append(time.perf_counter() - start)
        app.processEvents()
    base = base[3:]
    # bfloat16 autocast for one image: speed and error in units of the intensity window range
    code = codes.codes[row:row + 1] + 1.5 * directions.vectors[0]
    with torch.inference_mode():
        fp32 = widget.preview.decoder(code)
        times = []
        for _ in range(10):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                bf16 = widget.preview.decoder.model.decode(code, codes.space).float()
            times.append(time.perf_counter() - start)
    error = float((bf16 - fp32).abs().max()) / 2.0  # images span [-1, 1]
    viewer.close()
    return {"ours_ms": statistics.median(ours) * 1e3, "ours_p90_ms": float(np.percentile(ours, 90)) * 1e3,
            "baseline_ms": statistics.median(base) * 1e3, "bf16_ms": statistics.median(times) * 1e3,
            "bf16_max_error": error}


def main() -> None:
    print(machine(), "| load average", " ".join(f"{v:.1f}" for v in os.getloadavg()))
    phantom = make_phantom(PhantomFactors(ventricle_enlargement=0.8, lesion_load=0.6), size=128, seed=1)
    volume = Volume(phantom.image, phantom.affine, name="disease phantom")
    targets = {64: 50.0, 128: 100.0}
    for size in (64, 128):
        result = run(size, volume)
        print(ratio_line(f"explore preview {size} px (median ms, slider change to updated layers)",
                         result["ours_ms"], result["baseline_ms"], "ms", higher_is_better=False))
        verdict = "meets" if result["ours_ms"] < targets[size] else "misses"
        print(f"  p90 {result['ours_p90_ms']:.1f} ms; {verdict} the {targets[size]:.0f} ms target; bf16 autocast "
              f"{result['bf16_ms']:.1f} ms per image, max error {100 * result['bf16_max_error']:.2f}% of the "
              "intensity window")


if __name__ == "__main__":
    main()
