"""textvae: text-generation variational autoencoders for sentences and dialogue."""

__version__ = "0.1.0"
