"""MONAI's 2D AutoencoderKL and VQVAE as imported model families (the optional ``monai`` extra).

:mod:`.model` registers the families ``monai-autoencoderkl`` and ``monai-vqvae``;
:mod:`.importer` registers the ``monai`` importer (a state dict plus the network's
constructor arguments). MONAI itself is imported only when a network is built.
"""
