"""napari-latent latent stage."""
