"""Latent direction discovery methods."""
