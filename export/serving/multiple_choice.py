"""Multiple choice serves its packed token ids and is judged as a classifier of the choices."""

from garden.export.serving.classification import ClassificationServing
from garden.export.serving.text import TextServing
from garden.registry import SERVINGS


@SERVINGS.register("multiple_choice")
class MultipleChoiceServing(TextServing, ClassificationServing):
    """Outputs a probability per choice and the chosen one's index (`class_id`)."""
