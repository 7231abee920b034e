"""napari integration: reader, sample data, layer conversion, widgets and workers.

This is the only package that may import napari, magicgui or Qt (enforced by an
import-linter contract).
"""
