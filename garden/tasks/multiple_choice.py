"""Multiple choice (SWAG, RACE): a context and `num_choices` endings; each (context, choice) pair is
packed and scored, and the best-scoring choice is the answer."""

import tensorflow as tf

from garden.registry import TASKS
from garden.tasks.classification import ClassificationTask
from garden.tasks.text import TextTask


@TASKS.register("multiple_choice")
class MultipleChoiceTask(TextTask, ClassificationTask):
    """Features `text` [batch] and `choices` [batch, num_choices]; labels the index of the right choice.
    The model reads batch * num_choices packed rows; the head groups them back per example."""

    def preprocess(self, features):
        choices = features["choices"]
        contexts = tf.repeat(features["text"], tf.shape(choices)[1])
        return self.pack(self.tokenizer(contexts), self.tokenizer(tf.reshape(choices, [-1])))
