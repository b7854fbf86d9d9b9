"""Base task: builds the model, data, loss and metrics that a `TaskConfig` describes."""

import tensorflow as tf

from garden.errors import GardenError
from garden.models.task_model import build_task_model
from garden.registry import DATASETS, LOSSES


class Task:
    """Model Garden's Task, reduced to what Garden's trainer and exporters call.

    Exports serve the model's tensors as `tensor_signature`; a task that can also take raw
    inputs (text, encoded images) in the graph serves them as `raw_signature`."""

    tensor_signature = "serving_default"
    raw_signature = None
    assets = {}  # files the trainer copies into the run folder: name -> path (a trained tokenizer)

    def __init__(self, config):
        self.config = config

    def build_model(self):
        return build_task_model(self.config.model, name=self.config.name or self.config.type)

    def build_loss(self):
        """fn(labels, outputs) -> per-example loss [batch]."""
        loss = LOSSES.build(self.config.loss.type, self.config.loss.params.as_dict())
        return lambda labels, outputs: loss(labels, outputs["logits"])

    def load(self, data_config, label_names=None):
        """The `Examples` of one data config (dataset and split, optional subset and fold), with
        labels mapped to ids by `label_names` (the training data's) when given."""
        if not data_config.dataset:
            raise GardenError("the data config has no dataset; set task.train_data.dataset (see 'garden show')")
        examples = DATASETS.get(data_config.dataset)(data_config, label_names)
        return examples.take(data_config.num_examples).fold(data_config.fold)

    def preprocess(self, features):
        """Maps a batch of raw features to the model's inputs inside tf.data (identity here)."""
        return features

    def prepare(self, features, labels):
        """(inputs, labels) of a batch inside tf.data; tasks whose labels follow the tokenization
        (tags, answer spans, masked tokens) align them here."""
        return self.preprocess(features), labels

    def eval_outputs(self, outputs, labels):
        """What evaluation gathers on the host from a batch's outputs (all of them here)."""
        return outputs

    def initialize(self, model):
        """Loads `init_checkpoint` into the backbone of a new (not resumed) model."""
        if self.config.init_checkpoint:
            raise GardenError(f"task type '{self.config.type}' cannot load init_checkpoint; leave it empty")

    def held_out(self):
        """The data config used to judge exports: test data when set, else validation data."""
        return self.config.test_data if self.config.test_data.dataset else self.config.validation_data

    def metrics(self, labels, outputs):
        raise NotImplementedError

    def serving_inputs(self, model):
        """Named, typed input specs of the serving signature, from the model's inputs."""
        return {t.name: tf.TensorSpec((None,) + tuple(t.shape[1:]), t.dtype, name=t.name) for t in model.inputs}

    def serving_outputs(self, outputs):
        raise NotImplementedError

    def raw_serving(self, model, feature_names):
        """(named input specs, fn(raw inputs) -> model inputs in the graph) of the raw signature, for
        data with `feature_names`; None when the task serves tensors only."""
        return None

    def raw_features(self, examples, names):
        """(arrays of the raw inputs `names` of `examples`, as a client sends them; the Examples those
        arrays hold, which differ from `examples` where the raw format is lossy)."""
        return [examples.features[name] for name in names], examples
