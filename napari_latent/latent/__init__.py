"""Latent space: inversion of volumes, directions and their discovery, traversal."""

from .codes import LatentCodes
from .inversion import InversionSettings, invert, iter_invert

__all__ = ["InversionSettings", "LatentCodes", "invert", "iter_invert"]
