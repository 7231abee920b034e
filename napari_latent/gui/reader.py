"""npe2 reader: volumes (NIfTI, MGH/MGZ, NRRD, MetaImage, DICOM series folders, and any
reader plugin's format; 4D series) and napari-latent's own result files.

What each file becomes (see :mod:`napari_latent.analysis.result_files` for how it is
recognised):

* a volume: one correctly oriented image layer (a 4D series: one layer, frame axis
  first) with the napari ``scale`` and ``translate`` of its grid. An oblique scan (a
  direction matrix that is not axis-aligned) is shown on its closest axis-aligned grid,
  exactly like every layer napari-latent derives from it, with a warning notification
  saying so (napari's 2D slicing of a rotated layer would resample it);
* a traversal (a ``.zarr`` traversal store, or a 4D NIfTI with its ``.json`` sidecar): one
  4D layer, the alpha axis first and labelled ``"alpha"``; alphas and direction in the layer
  metadata; also stored in the viewer's :class:`~napari_latent.gui.session.Session` as
  ``session.traversal``. A store is shown lazily (napari reads the planes it shows; see
  :func:`~napari_latent.gui.result_layers.traversal_layer_data`), a NIfTI traversal is read
  whole;
* an eigen result folder (or its ``eigen.json``): the component and difference maps as
  diverging overlays (symmetric contrast limits, partial opacity); the result goes to
  ``session.eigen``; a single component or difference NIfTI of such a folder opens as one
  overlay;
* codes, directions and model ``.safetensors`` files make no layer: they attach to the
  session of the current viewer (``session.codes``/``last_codes``,
  ``session.directions``, the session's model), and the reader returns napari's
  null-layer sentinel ``[(None,)]``.

A bad file never raises into napari: the reader shows a notification that says what is
wrong and opens the other files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.eigen import EigenResult
from ..analysis.result_files import ResultFile, eigen_map_info, identify, is_traversal_store, load_result
from ..errors import UserInputError
from ..latent.codes import LatentCodes
from ..latent.traversal import STORE_SUFFIX, StoredTraversal, Traversal, is_store_path
from ..volumes.io import open_series, open_volume, volume_name
from ..volumes.readers import predicate_reader, readable
from .layers import LayerDataTuple, grid_layer_data, volume_layer_data
from .result_layers import eigen_layer_data, map_layer_data, traversal_layer_data

PathOrPaths = str | os.PathLike[str] | list[str | os.PathLike[str]]

#: napari's "read fine, no layers" value (see ``napari.plugins.io._is_null_layer_sentinel``).
NULL_LAYERS: list[Any] = [(None,)]

#: Order in which files of one call are taken: a model first (it resets the session's
#: results), then codes and directions, then layers.
_ORDER = {"model": 0, "codes": 1, "directions": 2}


def _claims(path: str | os.PathLike[str]) -> bool:
    """Whether a path is one of ours, judged cheaply (names; small JSON files; eigen folders)."""
    p = Path(path)
    if p.is_dir():
        # eigen folders, folder volumes (DICOM series) and empty folders (a specific message
        # rather than napari's "no reader")
        try:
            empty = not any(True for _ in p.iterdir())
        except OSError:
            empty = False
        return (p / "eigen.json").is_file() or is_traversal_store(p) or readable(p) or empty
    if not p.exists() and predicate_reader(p) is not None:
        return True  # FOLDER::SERIESUID
    name = p.name.lower()
    if readable(p) or name.endswith(".safetensors"):
        return True
    if name.endswith(".json"):
        try:
            identify(p)
        except UserInputError:
            return False
        return True
    return False


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[Any]] | None:
    """Return :func:`read_files` if every path is one napari-latent opens, else None.

    NIfTI and ``.safetensors`` names are claimed by their extension (so a broken one gets
    our specific notification); a folder when it holds ``eigen.json``, is a traversal store
    (a Zarr folder with a traversal's attributes; other Zarr folders are left to other
    readers) or a folder volume; a ``.json`` file only when it is an ``eigen.json`` or a
    traversal sidecar.
    """
    paths = path if isinstance(path, list) else [path]
    if not paths or not all(_claims(p) for p in paths):
        return None
    return read_files


def _contrast_limits(data: np.ndarray) -> list[float]:
    sample = data[:: max(1, data.shape[0] // 32)] if data.ndim == 4 else data
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if hi <= lo:
        lo, hi = float(data.min()), float(data.max()) + 1e-6
    return [lo, hi]


def read_nifti(path: PathOrPaths) -> list[LayerDataTuple]:
    """Read one or more NIfTI files into napari layer data.

    A 3D file gives one image layer; a 4D series gives one layer with the frame axis first.
    Errors (bad files) propagate as :class:`~napari_latent.errors.VolumeError` with a
    specific message (:func:`read_files`, the function napari calls, turns them into
    notifications).
    """
    paths = path if isinstance(path, list) else [path]
    layers: list[LayerDataTuple] = []
    for item in paths:
        frames, first = open_series(item)
        if first.grid.is_oblique:
            _notify_warning(oblique_message(first.name, float(np.degrees(first.grid.obliquity))))
        kwargs: dict[str, Any] = {"colormap": "gray", "contrast_limits": _contrast_limits(frames)}
        if frames.shape[0] == 1:
            layers.append(volume_layer_data(first, **kwargs))
        else:
            extra = {"kind": "series", "path": str(Path(item)), "header": first.header}
            layers.append(grid_layer_data(frames, first.grid, volume_name(item), leading=1, extra=extra,
                                          axis_labels=("frame", "S", "P", "L"), **kwargs))
    return layers


def eigen_map_layer_data(path: str | os.PathLike[str]) -> LayerDataTuple:
    """One map of an eigen folder (a component, difference or mask NIfTI) as an overlay."""
    info = eigen_map_info(path)
    volume = open_volume(path)
    folder = Path(info["folder"]).name
    if info["role"] == "mask":
        return grid_layer_data((volume.data > 0.5).astype(np.uint8), volume.grid, f"{folder} mask",
                               layer_type="labels", extra={"kind": "eigen_mask", "path": str(path)}, opacity=0.3)
    if info["role"] == "component":
        name = f"{folder} component {info['component']}"
        extra = {"kind": "eigen_component", "path": str(path), **{k: v for k, v in info.items() if k != "file"}}
    else:
        name = f"{folder} difference alpha {float(info['alpha']):g}"
        extra = {"kind": "eigen_difference", "path": str(path), **{k: v for k, v in info.items() if k != "file"}}
    return map_layer_data(volume.data, volume.grid, name, extra)


def traversal_name(path: str | os.PathLike[str]) -> str:
    """The layer name of a saved traversal: its file (or store folder) name without the suffix."""
    name = Path(path).name
    if is_store_path(name):
        return name[: -len(STORE_SUFFIX)]
    return volume_name(path)


def codes_layer_name(codes: LatentCodes, path: str | os.PathLike[str] | None = None) -> str:
    """The name of the layer codes belong to: their source volume's name (else the file's)."""
    if codes.source:
        return volume_name(codes.source)
    return volume_name(path) if path is not None else "volume"


def current_viewer() -> Any:
    """napari's current viewer, or None."""
    import napari

    return napari.current_viewer()


def attach_to_session(viewer: Any, kind: str, obj: Any, path: str | os.PathLike[str] | None = None,
                      layer_name: str | None = None) -> str:
    """Store a loaded result in a viewer's session; returns a one-line description.

    Parameters
    ----------
    viewer : napari.Viewer
    kind : {"model", "codes", "directions", "traversal", "eigen"}
    obj : object
        The loaded model or result.
    path : path-like, optional
        Where it came from (for messages and the model's source).
    layer_name : str, optional
        For codes: the layer they belong to (default: their source volume's name).
    """
    from .session import get_session

    session = get_session(viewer)
    where = f" from {Path(path).name}" if path is not None else ""
    if kind == "model":
        session.set_model(obj, str(path) if path is not None else "script")
        return f"model {obj.name} ({obj.image_size} px){where} is the session's model"
    if kind == "codes":
        name = layer_name or codes_layer_name(obj, path)
        session.codes = {**session.codes, name: obj}
        session.last_codes = (name, obj)
        return f"codes of {name} ({len(obj)} slices, space {obj.space}){where} attached to the session"
    if kind == "directions":
        session.directions = obj
        return f"{len(obj)} {obj.method} directions{where} attached to the session"
    if kind in ("traversal", "eigen"):
        setattr(session, kind, obj)
        return f"{kind}{where} attached to the session"
    raise ValueError(f"unknown result kind {kind!r}")


def layers_for(found: ResultFile, obj: Any) -> list[LayerDataTuple]:
    """Layer data for an identified, loaded file (empty for session-only kinds)."""
    if found.kind == "volume":
        return read_nifti(str(found.path))
    if found.kind == "traversal":
        assert isinstance(obj, Traversal | StoredTraversal)
        return [traversal_layer_data(obj, name=traversal_name(found.path), path=str(found.path))]
    if found.kind == "eigen":
        assert isinstance(obj, EigenResult)
        return eigen_layer_data(obj, prefix=found.path.name, path=str(found.path))
    if found.kind == "eigen_map":
        return [eigen_map_layer_data(found.path)]
    return []


def _notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def oblique_message(name: str, degrees: float) -> str:
    """The warning for an oblique scan (napari shows it on its closest axis-aligned grid)."""
    return (f"{name} is oblique ({degrees:.1f} degrees from the nearest axis-aligned grid): napari shows it on that "
            "grid, so napari's world coordinates are not the scanner's; napari-latent's layers for it overlay it "
            "voxel for voxel, and files it writes keep the true affine")


def _notify_warning(message: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(message)


def _notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def read_files(path: PathOrPaths) -> list[Any]:
    """The reader napari calls: layers for volumes and results; codes, directions, models to the session.

    Returns
    -------
    list
        Layer data tuples, or ``[(None,)]`` (napari's "no layers" sentinel) when every file
        attached to the session or failed. A file that fails gives an error notification
        naming the file and the problem; the others are still opened.
    """
    paths = [Path(p) for p in (path if isinstance(path, list) else [path])]
    found: list[ResultFile] = []
    for item in paths:
        try:
            found.append(identify(item))
        except UserInputError as exc:
            _notify_error(f"napari-latent could not open {item.name}: {exc}")
    found.sort(key=lambda f: _ORDER.get(f.kind, 9))
    layers: list[Any] = []
    viewer = None
    for item in found:
        try:
            _, obj = load_result(item)
            new_layers = layers_for(item, obj)
        except (UserInputError, OSError, EOFError) as exc:
            _notify_error(f"napari-latent could not open {item.path.name}: {exc}")
            continue
        layers.extend(new_layers)
        if item.kind in ("model", "codes", "directions", "traversal", "eigen"):
            viewer = viewer or current_viewer()
            if viewer is None:
                if not new_layers:
                    _notify_error(f"napari-latent: no viewer to attach {item.path.name} to")
                continue
            message = attach_to_session(viewer, item.kind, obj, item.path)
            if not new_layers:
                _notify_info(message)
    return layers or NULL_LAYERS


__all__ = ["NULL_LAYERS", "attach_to_session", "codes_layer_name", "current_viewer", "eigen_map_layer_data",
           "get_reader", "layers_for", "read_files", "read_nifti", "traversal_name"]
