"""npe2 sample data: a healthy and a disease (MS-like) brain phantom, and the demo's ready result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..analysis.eigen import EigenResult
from ..latent.codes import LatentCodes
from ..latent.directions import Directions
from ..latent.traversal import Traversal
from ..volumes.io import Volume, open_volume
from ..volumes.phantoms import Phantom, PhantomFactors, make_phantom
from . import quiet_gc
from .layers import LayerDataTuple, grid_layer_data, volume_layer_data
from .reader import attach_to_session, current_viewer
from .result_layers import eigen_layer_data
from .session import get_session
from .traverse_widget import show_traversal, traversal_layers

SAMPLE_SIZE = 128

HEALTHY = PhantomFactors(ventricle_enlargement=0.1, cortical_atrophy=0.1, lesion_load=0.0,
                         rotation_inplane=3.0, rotation_outofplane=-2.0)
DISEASE = PhantomFactors(ventricle_enlargement=0.8, cortical_atrophy=0.6, lesion_load=0.7,
                         rotation_inplane=3.0, rotation_outofplane=-2.0)


def _layers(phantom: Phantom, name: str) -> list[LayerDataTuple]:
    volume = Volume(phantom.image, phantom.affine, name=name)
    image = volume_layer_data(volume, colormap="gray")
    labels = grid_layer_data(phantom.labels, volume.grid, f"{name} tissue labels", layer_type="labels",
                             extra={"kind": "labels",
                                    "label_names": {str(k): v for k, v in phantom.LABEL_NAMES.items()}},
                             visible=False)
    return [image, labels]


def healthy_phantom() -> list[LayerDataTuple]:
    """A healthy brain phantom (128 cubed, 1.5 mm) with its tissue labels."""
    return _layers(make_phantom(HEALTHY, size=SAMPLE_SIZE, seed=1), "healthy phantom")


def disease_phantom() -> list[LayerDataTuple]:
    """An MS-like brain phantom (enlarged ventricles, atrophy, lesions) with its tissue labels."""
    return _layers(make_phantom(DISEASE, size=SAMPLE_SIZE, seed=1), "disease phantom")


#: The bundled result of the README's demo (see docs/scripts/make_demo_sample.py).
DEMO_RESULT = Path(__file__).parent / "data" / "demo_result"


def _demo_files() -> tuple[Volume, LatentCodes, Directions, EigenResult, dict[str, Any]]:
    folder = DEMO_RESULT
    info = json.loads((folder / "sample.json").read_text(encoding="utf-8"))
    volume = open_volume(folder / "subject.nii.gz")
    volume = Volume(volume.data, volume.affine, path=volume.path, name=f"demo {info['subject_name']} (healthy)")
    return (volume, LatentCodes.load(folder / "codes.safetensors"), Directions.load(folder / "directions.safetensors"),
            EigenResult.load(folder / "eigen"), info)


def demo_result() -> list[LayerDataTuple]:
    """The README demo's result, ready: a healthy phantom and the eigencomponents of its healthy-to-disease traversal.

    Opens at once with the subject and the component maps of the bundled eigen analysis (the
    paper's dynamic component shown, the others hidden), and makes the demo model, the
    subject's codes, the supervised direction and the eigen result the session's, so the
    Explore, Traverse, Eigen, Plots and Export widgets can go on from there. The 4D
    traversal itself is recomputed from the codes in a background thread (a few seconds)
    and appears as a layer when it is ready.
    """
    volume, codes, directions, eigen, info = _demo_files()
    layers = [volume_layer_data(volume, colormap="gray"),
              *eigen_layer_data(eigen, prefix="demo eigen", path=str(DEMO_RESULT / "eigen"))]
    viewer = current_viewer()
    if viewer is not None:
        _attach_demo(viewer, volume, codes, directions, eigen, info)
    return layers


def _attach_demo(viewer: Any, volume: Volume, codes: LatentCodes, directions: Directions, eigen: EigenResult,
                 info: dict[str, Any]) -> None:
    """The demo's model, codes, direction and eigen result to the session; the traversal in the background."""
    from napari.qt.threading import create_worker

    from ..latent.traversal import traverse
    from ..models.checkpoint import load_model

    model = load_model("demo", device="cpu")
    attach_to_session(viewer, "model", model, "demo")
    attach_to_session(viewer, "codes", codes, layer_name=volume.name)
    attach_to_session(viewer, "directions", directions)
    attach_to_session(viewer, "eigen", eigen)
    session = get_session(viewer)

    def compute() -> tuple[Traversal, list[LayerDataTuple]]:
        traversal = traverse(model, codes, directions, info["alphas"], index=int(info["direction_index"]),
                             units=info["units"], source=volume)
        return traversal, traversal_layers(traversal, volume.name)  # the layers' data too, off the GUI thread

    worker = create_worker(compute, _start_thread=False)
    worker.returned.connect(lambda done: show_traversal(viewer, done[0], volume.name, done[1]))
    worker.finished.connect(quiet_gc.release)
    session.background_workers.append(worker)
    worker.finished.connect(lambda: session.background_workers.remove(worker))
    quiet_gc.hold()
    worker.start()
