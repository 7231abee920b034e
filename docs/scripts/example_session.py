"""A scripted napari session with napari-latent: phantom, demo model, codes, directions, traversal, eigen.

Run it with a display (or under Xvfb):

    python docs/scripts/example_session.py            # opens napari and blocks until it is closed
    python docs/scripts/example_session.py --no-run   # builds the viewer, prints its layers, exits

Every step is the public Python API; the viewer gets the results through
``napari_latent.gui.show``, which puts the layers on the source grid, stores the model and
the results in the viewer's session and docks the plugin's widgets (Explore starts live on
the inverted volume at once).
"""

from __future__ import annotations

import argparse

import napari_latent as nl
from napari_latent.gui import show
from napari_latent.volumes.phantoms import PhantomFactors


def build_session(size: int = 64):
    """Make a disease phantom, invert it with the demo model, discover PCA directions, traverse, decompose."""
    phantom = nl.make_phantom(PhantomFactors(ventricle_enlargement=0.8, lesion_load=0.6), size=size, seed=1)
    volume = nl.Volume(phantom.image, phantom.affine, name="disease phantom")
    model = nl.load_model("demo", device="cpu")
    codes = nl.invert(model, volume, method="encoder")
    directions = nl.discover(model, "pca", count=8)
    traversal = nl.traverse(model, codes, directions, "-3:3:7", index=0, units="direction_std", source=volume)
    eigen = nl.eigencomponents(traversal, n_components=3)
    return volume, model, codes, directions, traversal, eigen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="phantom size in voxels per side")
    parser.add_argument("--no-run", action="store_true", help="build the viewer and exit (no event loop)")
    args = parser.parse_args()
    volume, model, codes, directions, traversal, eigen = build_session(args.size)
    viewer = show(volume=volume, model=model, traversal=traversal, eigen=eigen, codes=codes, directions=directions,
                  return_viewer=True)
    # docked widgets are reachable from the script: move the first Explore slider by +2 std
    _, explore = viewer.window.add_plugin_dock_widget("napari-latent", "6 Explore")
    explore.set_values({0: 2.0})
    print("layers:", ", ".join(layer.name for layer in viewer.layers))
    if not args.no_run:
        import napari

        napari.run()


if __name__ == "__main__":
    main()
