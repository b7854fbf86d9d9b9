"""Garden: a Keras 3 model garden for TensorFlow users."""

__version__ = "0.1.0"
