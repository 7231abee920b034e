"""Recognise and load napari-latent's files: volumes and every saved result.

One place decides what a path on disk is, so that the napari reader, ``napari-latent view``
and :func:`napari_latent.gui.show` agree (and the command line can check its arguments
before it opens a window, without importing napari).

=================  ======================================================================
kind               recognised by
=================  ======================================================================
``"traversal"``    a traversal store (a Zarr v3 folder, ``OUT.zarr``, whose group attributes
                   are a traversal's, see :mod:`napari_latent.latent.traversal.store`), or a
                   ``.nii``/``.nii.gz`` file with a ``.json`` sidecar of format
                   ``napari-latent-traversal`` (see :func:`~napari_latent.latent.traversal.sidecar_path`)
``"eigen"``        a folder holding ``eigen.json``, or that ``eigen.json`` itself
``"eigen_map"``    a NIfTI file listed in the ``eigen.json`` beside it (a component or
                   difference map, or the mask)
``"volume"``       any other file a volume reader accepts (3D volume or 4D series;
                   ``.nii``/``.nii.gz`` built in, see :mod:`napari_latent.volumes.readers`)
``"codes"``        a ``.safetensors`` file whose header format is ``napari-latent-codes``
``"directions"``   a ``.safetensors`` file of format ``napari-latent-directions``
``"model"``        a ``.safetensors`` model checkpoint (``napari-latent-checkpoint``)
=================  ======================================================================
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..container import read_container_header
from ..errors import UserInputError
from ..latent.codes import CODES_FORMAT, LatentCodes
from ..latent.directions import DIRECTIONS_FORMAT, Directions
from ..latent.traversal import TRAVERSAL_FORMAT, open_traversal, sidecar_path
from ..models.checkpoint import FORMAT as CHECKPOINT_FORMAT
from ..models.checkpoint import load_model
from ..volumes.io import is_nifti_path
from ..volumes.readers import formats_phrase, predicate_reader, readable, suffixes_phrase
from .eigen import EIGEN_FORMAT, EigenResult

__all__ = ["KINDS", "ResultFile", "eigen_map_info", "identify", "is_traversal_store", "load_result"]

KINDS = ("volume", "traversal", "eigen", "eigen_map", "codes", "directions", "model")
_SAFETENSORS_KINDS = {CODES_FORMAT: "codes", DIRECTIONS_FORMAT: "directions", CHECKPOINT_FORMAT: "model"}


def _what_we_open() -> str:
    """What napari-latent opens, for messages (the volume formats from the reader registry)."""
    return (f"napari-latent opens {formats_phrase()} volumes ({suffixes_phrase()}), traversals (.zarr stores, or "
            "4D NIfTI + .json sidecar), eigen result folders (eigen.json), and .safetensors codes, directions and "
            "model files")


@dataclass(frozen=True)
class ResultFile:
    """What a path is.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    path : Path
        The file (or the eigen folder for ``"eigen"``).
    folder : Path or None
        The eigen result folder of an ``"eigen_map"``.
    """

    kind: str
    path: Path
    folder: Path | None = None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{path}: not valid JSON ({exc})") from exc


def _json_format(path: Path) -> str | None:
    """The ``format`` field of a JSON file, or None when it is not our JSON."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return meta.get("format") if isinstance(meta, dict) else None


def _safetensors_format(path: Path) -> str:
    header = read_container_header(path)
    return str(header.get("format")) if isinstance(header, dict) else ""


def _store_attributes(folder: Path) -> dict[str, Any] | None:
    """A Zarr v3 group's napari-latent attributes (from its ``zarr.json``), or None when it has none."""
    meta_path = folder / "zarr.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(meta, dict) or meta.get("node_type") != "group":
        return None
    attributes = (meta.get("attributes") or {}).get("napari_latent")
    return attributes if isinstance(attributes, dict) else None


def is_traversal_store(path: str | os.PathLike[str]) -> bool:
    """True for a folder that is a traversal store (reads its ``zarr.json`` only)."""
    folder = Path(path)
    if not folder.is_dir():
        return False
    attributes = _store_attributes(folder)
    return attributes is not None and attributes.get("format") == TRAVERSAL_FORMAT


def _eigen_listing(folder: Path) -> dict[str, dict[str, Any]]:
    """File name -> facts of every map listed in ``folder/eigen.json`` (empty when none)."""
    meta_path = folder / "eigen.json"
    if not meta_path.is_file():
        return {}
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(meta, dict) or meta.get("format") != EIGEN_FORMAT:
        return {}
    listing: dict[str, dict[str, Any]] = {}
    for entry in meta.get("components") or []:
        listing[entry["file"]] = {"role": "component", **entry}
    for entry in meta.get("differences") or []:
        listing[entry["file"]] = {"role": "difference", **entry}
    mask = (meta.get("mask") or {}).get("file")
    if mask:
        listing[mask] = {"role": "mask", "file": mask}
    return listing


def identify(path: str | os.PathLike[str]) -> ResultFile:
    """Tell what a path is (reads headers only, never the voxels or weights).

    Parameters
    ----------
    path : path-like
        A file or folder.

    Returns
    -------
    ResultFile

    Raises
    ------
    UserInputError
        The path is missing, or is none of the kinds in :data:`KINDS` (the message says why).
    """
    path = Path(path)
    if not path.exists():
        if predicate_reader(path) is not None:  # a part of a container: a DICOM folder's FOLDER::SERIESUID
            return ResultFile("volume", path)
        raise UserInputError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / "zarr.json").is_file():
            if is_traversal_store(path):
                return ResultFile("traversal", path)
            raise UserInputError(f"{path}: a Zarr store, but not a napari-latent traversal; {_what_we_open()}")
        if (path / "eigen.json").is_file():
            if _json_format(path / "eigen.json") != EIGEN_FORMAT:
                raise UserInputError(f"{path / 'eigen.json'}: not an eigen analysis file")
            return ResultFile("eigen", path)
        if readable(path):  # a folder format (a DICOM series)
            return ResultFile("volume", path)
        if not any(True for _ in path.iterdir()):
            raise UserInputError(f"{path}: the folder is empty")
        raise UserInputError(f"{path}: a folder without eigen.json (not an eigen result folder); {_what_we_open()}")
    name = path.name.lower()
    if name.endswith(".json"):
        fmt = _json_format(path)
        if fmt == EIGEN_FORMAT:
            return ResultFile("eigen", path.parent)
        if fmt == TRAVERSAL_FORMAT:
            for suffix in (".nii.gz", ".nii"):
                image = path.with_name(path.name[: -len(".json")] + suffix)
                if image.is_file():
                    return ResultFile("traversal", image)
            raise UserInputError(f"{path}: a traversal sidecar without its NIfTI file beside it")
        raise UserInputError(f"{path}: not a napari-latent JSON file (eigen.json or a traversal sidecar)")
    if is_nifti_path(path):  # our results are NIfTI
        sidecar = sidecar_path(path)
        if sidecar.is_file() and _json_format(sidecar) == TRAVERSAL_FORMAT:
            return ResultFile("traversal", path)
        if path.name in _eigen_listing(path.parent):
            return ResultFile("eigen_map", path, path.parent)
    if readable(path):
        return ResultFile("volume", path)
    if name.endswith(".safetensors"):
        fmt = _safetensors_format(path)
        kind = _SAFETENSORS_KINDS.get(fmt)
        if kind is None:
            raise UserInputError(f"{path}: a napari-latent file of unknown format {fmt!r}")
        return ResultFile(kind, path)
    raise UserInputError(f"{path}: unsupported file; {_what_we_open()}")


def eigen_map_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Facts about one map of an eigen folder: its role and ``eigen.json`` entry, plus the analysis.

    Returns ``{"role": "component"|"difference"|"mask", ...entry, "alphas", "units",
    "eigenvector" (components), "center", "source"}``.
    """
    path = Path(path)
    listing = _eigen_listing(path.parent)
    if path.name not in listing:
        raise UserInputError(f"{path}: not listed in {path.parent / 'eigen.json'}")
    info = dict(listing[path.name])
    meta = _read_json(path.parent / "eigen.json")
    info.update({"alphas": meta.get("alphas"), "units": meta.get("units"), "center": meta.get("center"),
                 "baseline_index": meta.get("baseline_index"), "source": meta.get("source") or {},
                 "folder": str(path.parent)})
    if info["role"] == "component":
        k = int(info["component"]) - 1
        info["eigenvector"] = [float(row[k]) for row in meta.get("eigenvectors") or []]
    return info


def load_result(path: str | os.PathLike[str] | ResultFile, device: str = "auto") -> tuple[ResultFile, Any]:
    """Identify a path and load what it holds.

    Parameters
    ----------
    path : path-like or ResultFile
    device : str
        Device for a model file.

    Returns
    -------
    (ResultFile, object)
        The object is a :class:`~napari_latent.latent.traversal.StoredTraversal` (a store,
        read lazily), a :class:`~napari_latent.latent.traversal.Traversal` (a NIfTI
        traversal, read whole),
        :class:`~napari_latent.analysis.eigen.EigenResult`,
        :class:`~napari_latent.latent.codes.LatentCodes`,
        :class:`~napari_latent.latent.directions.Directions` or a model; for ``"volume"``
        and ``"eigen_map"`` it is the path (read it with the napari reader or
        :func:`~napari_latent.volumes.io.open_series`), after checking that a NIfTI file's
        header reads (other formats are checked by their reader when read).

    Raises
    ------
    UserInputError
        Anything wrong with the file, with a specific message.
    """
    found = path if isinstance(path, ResultFile) else identify(path)
    if found.kind == "traversal":  # a store is opened lazily (nothing but its facts is read)
        return found, open_traversal(found.path)
    if found.kind == "eigen":
        return found, EigenResult.load(found.path)
    if found.kind == "codes":
        return found, LatentCodes.load(found.path)
    if found.kind == "directions":
        return found, Directions.load(found.path)
    if found.kind == "model":
        return found, load_model(found.path, device=device)
    if is_nifti_path(found.path):
        _check_nifti_header(found.path)
    return found, found.path


def _check_nifti_header(path: Path) -> None:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        shape = tuple(image.shape)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError) as exc:
        raise UserInputError(f"{path}: not a valid NIfTI file ({exc})") from exc
    if len(shape) not in (3, 4):
        raise UserInputError(f"{path}: a {len(shape)}D image; napari-latent opens 3D volumes and 4D series")
