"""Images in and out: NIfTI volumes, orientation, slicing to 2D and back, masks, cohorts."""

from .cohort import Cohort, Subject, load_cohort, read_cohort_table
from .grid import Grid
from .io import NonFiniteVoxelsWarning, Volume, open_volume, save_volume
from .masks import bounding_box, foreground_mask
from .orientation import DisplayGeometry, display_geometry, grid_from_display
from .slicing import SliceGeometry, SliceSpec, slice_geometry, slice_volume

__all__ = [
    "Cohort",
    "DisplayGeometry",
    "Grid",
    "NonFiniteVoxelsWarning",
    "SliceGeometry",
    "SliceSpec",
    "Subject",
    "Volume",
    "bounding_box",
    "display_geometry",
    "foreground_mask",
    "grid_from_display",
    "load_cohort",
    "open_volume",
    "read_cohort_table",
    "save_volume",
    "slice_geometry",
    "slice_volume",
]
