"""digitlab: train, test and serve convolutional networks that read handwritten digits."""

__version__ = "0.1.0"
