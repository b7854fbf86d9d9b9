"""Base class for backbones: a functional model rebuilt from its constructor arguments."""

import keras


class Backbone(keras.Model):
    """A functional `keras.Model` whose `get_config()` holds every constructor argument."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)
