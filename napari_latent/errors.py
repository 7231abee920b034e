"""Exceptions raised for bad user input.

Every error a user can cause (a bad file, a bad option, a mismatch between a model and
its codes) is a subclass of :class:`UserInputError`, itself a :class:`ValueError`. The
command line prints such errors as one line and exits with code 2; the napari widgets
show them as notifications. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserInputError(ValueError):
    """Base class of every error caused by user input rather than by a bug."""


class VolumeError(UserInputError):
    """A volume file cannot be read, is malformed, or does not fit the request."""


class CheckpointError(UserInputError):
    """A model checkpoint is missing, malformed, not ours, or does not fit the request."""


class DataError(UserInputError):
    """A training or analysis data set (folder, cohort table) is unusable."""


class MismatchError(UserInputError):
    """Two results that must belong together (model and codes, grids, spaces) do not."""
