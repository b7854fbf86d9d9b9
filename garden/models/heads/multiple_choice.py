"""Multiple choice head (SWAG, RACE): one score per packed (context, choice) pair, grouped by example."""

from keras import ops

from garden.models.heads.regression import RegressionHead
from garden.registry import HEADS


@HEADS.register("multiple_choice")
class MultipleChoiceHead(RegressionHead):
    """Features [batch * num_choices, width] (the choices of an example are adjacent rows) ->
    logits [batch, num_choices] in float32."""

    def __init__(self, num_choices: int = 4, dropout: float = 0.1, **kwargs):
        super().__init__(dropout=dropout, **kwargs)
        self.num_choices = num_choices

    def call(self, features, training=False):
        return ops.reshape(super().call(features, training=training), (-1, self.num_choices))

    def get_config(self):
        return {**super().get_config(), "num_choices": self.num_choices}
