"""``python -m napari_latent`` runs the command line."""

from .cli import run

run()
