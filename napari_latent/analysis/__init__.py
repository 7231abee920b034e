"""napari-latent analysis stage."""
