"""napari-latent models stage."""
