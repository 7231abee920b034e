"""A tiny autoencoder model family for napari-latent: the example plugin of docs/contributing.md."""
