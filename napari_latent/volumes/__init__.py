"""Images in and out: volumes (NIfTI built in, more formats through reader plugins), orientation,
slicing to 2D and back, masks, cohorts."""

from .cohort import Cohort, Subject, load_cohort, read_cohort_table
from .grid import Grid
from .io import NonFiniteVoxelsWarning, Volume, open_volume, save_volume
from .masks import bounding_box, foreground_mask
from .orientation import DisplayGeometry, display_geometry, grid_from_display
from .readers import READERS, VolumeReader, readable, reader_suffixes, register_reader
from .slicing import SliceGeometry, SliceSpec, slice_geometry, slice_volume

__all__ = [
    "READERS",
    "Cohort",
    "DisplayGeometry",
    "Grid",
    "NonFiniteVoxelsWarning",
    "SliceGeometry",
    "SliceSpec",
    "Subject",
    "Volume",
    "VolumeReader",
    "bounding_box",
    "display_geometry",
    "foreground_mask",
    "grid_from_display",
    "load_cohort",
    "open_volume",
    "read_cohort_table",
    "readable",
    "reader_suffixes",
    "register_reader",
    "save_volume",
    "slice_geometry",
    "slice_volume",
]
