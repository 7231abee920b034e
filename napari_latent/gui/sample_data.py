"""npe2 sample data: one healthy and one disease (MS-like) brain phantom."""

from __future__ import annotations

from ..volumes.io import Volume
from ..volumes.phantoms import Phantom, PhantomFactors, make_phantom
from .layers import LayerDataTuple, grid_layer_data, volume_layer_data

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
