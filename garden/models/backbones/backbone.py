"""Base class for backbones: a functional model rebuilt from its constructor arguments."""

import keras


class Backbone(keras.Model):
    """A functional `keras.Model` with dict inputs and outputs, whose `get_config()` holds every
    constructor argument. Outputs include `pooled_output` [batch, width] and, for sequences,
    `sequence_output` [batch, length, width]."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)
