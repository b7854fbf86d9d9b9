"""Base task: builds the model, data, loss and metrics that a `TaskConfig` describes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import numpy as np

from garden.config import STREAM_KEYS
from garden.data import soft_targets
from garden.data.checkpoints import checkpoint_dir
from garden.data.examples import Examples
from garden.data.streams import Decode, Stream
from garden.errors import GardenError
from garden.models.task_model import build_task_model
from garden.registry import BACKBONES, DATASETS, LOSSES


class Task:
    """Model Garden's Task, reduced to what Garden's trainer calls: it trains (model, inputs, losses,
    metrics). What its exports serve is its serving companion's (garden.export.serving), as Model
    Garden's export_base stands beside base_task."""

    def __init__(self, config):
        self.config = config
        self.name = config.name or config.type
        self.config_path = "task"  # for messages; a multitask names its sub-tasks task.tasks.NAME

    # ---- what a run trains: one task here, several sub-tasks in a multitask --------------------------

    def subtasks(self) -> dict[str, Task]:
        """name -> the tasks that have a head and data of their own: this task alone."""
        return {self.name: self}

    def build_models(self) -> dict[str, keras.Model]:
        """name -> keras.Model of each sub-task."""
        return {self.name: self.build_model()}

    def checkpointed(self, models: dict[str, keras.Model]) -> keras.Model | dict[str, keras.Model]:
        """What a checkpoint's `model` holds: the one model (a multitask: the dict of models)."""
        return models[self.name]

    def schedule(self, sizes: list[int], steps: int, seed: int) -> np.ndarray:
        """The sub-task index of every training step: this task at every step."""
        return np.zeros(steps, np.int64)

    def warm_start(self, models: dict[str, keras.Model]) -> str | None:
        """Loads `init_checkpoint` into the models of a new (not resumed) run; returns where the
        weights came from when the task says (for the run's log)."""
        return self.initialize(models[self.name])

    def assets(self) -> dict[str, str]:
        """Files (or folders) that inference needs beside the weights, by the config key (under `task.`)
        that names them: key -> path; the backbone's own (its `asset_params`) included. The trainer
        copies them into the run folder, and a loaded run reads its copies."""
        backbone = self.config.model.backbone
        params = backbone.params.as_dict()
        names = getattr(BACKBONES.get(backbone.type), "asset_params", ())  # a plain function declares none
        return {f"model.backbone.params.{name}": params[name] for name in names if params.get(name)}

    def build_model(self) -> keras.Model:
        return build_task_model(self.config.model, name=self.name)

    def build_loss(self, train=None) -> Callable:
        """fn(labels, outputs) -> per-example loss [batch], for the `train` data (Examples or a Stream)."""
        loss = LOSSES.build(self.config.loss.type, self.loss_params(train))
        return lambda labels, outputs: loss(labels, outputs["logits"])

    def loss_params(self, train=None) -> dict:
        """The loss's parameters, with `class_weights: balanced` counted on the `train` data."""
        params = self.config.loss.params.as_dict()
        weights, where = params.get("class_weights"), f"{self.config_path}.loss.params.class_weights"
        if weights is None:
            return params
        names = getattr(train, "label_names", None)
        if weights == "balanced":
            if not isinstance(train, Examples):
                raise GardenError(
                    f"{where}: 'balanced' counts the labels of in-memory training data, and this data is streamed; "
                    "give one weight per class instead"
                )
            counts = np.bincount(train.labels, minlength=len(names))
            present = counts > 0
            params["class_weights"] = np.where(present, len(train) / (present.sum() * np.maximum(counts, 1)), 0.0)
        elif not (isinstance(weights, list) and all(isinstance(w, (int, float)) and w >= 0 for w in weights)):
            raise GardenError(f"{where} is 'balanced' or a list of weights (0 or more), one per class; got {weights!r}")
        elif names is not None and len(weights) != len(names):
            raise GardenError(
                f"{where} has {len(weights)} weights and the data has {len(names)} classes ({', '.join(names[:10])}"
                f"{', ...' if len(names) > 10 else ''}); give one weight per class, in that order"
            )
        params["class_weights"] = [float(w) for w in params["class_weights"]]
        return params

    def load(self, data_config, label_names=None):
        """The `Examples` of one data config (dataset and split, optional subset and fold), with
        labels mapped to ids by `label_names` (the training data's) when given."""
        if not data_config.dataset:
            raise GardenError(
                f"the data config has no dataset; set {self.config_path}.train_data.input_path to TFRecord shards or "
                "an image folder, or .dataset to a catalog set (see 'garden show')"
            )
        examples = DATASETS.get(data_config.dataset)(data_config, label_names)
        if isinstance(examples, Stream):
            return self._stream(examples, data_config)
        _refuse_stream_options(data_config)
        examples = examples.of_classes(data_config.classes, data_config.examples_per_class)
        return examples.take(data_config.num_examples).fold(data_config.fold)

    def _stream(self, stream, data_config):
        """The stream with this task's decoding (and its label names), without bad records when asked."""
        if (
            data_config.num_examples != -1
            or data_config.fold
            or data_config.classes
            or data_config.examples_per_class != -1
        ):
            raise GardenError(
                f"{data_config.dataset} data is streamed: classes, examples_per_class, num_examples and fold apply "
                "to in-memory datasets; "
                "write the subset you want with 'garden data convert' instead"
            )
        stream = dataclasses.replace(
            stream,
            decode=self.decoder(data_config),
            augment_batch=self.batch_augmenter(data_config),
            encode_label=self.label_encoder(),
        )
        if stream.label_names is None:
            stream.label_names = self.default_label_names(data_config)
        return stream.without_bad() if data_config.skip_bad_examples else stream

    def decoder(self, data_config) -> Decode | None:
        """fn(raw features, label, seed [2], training) -> the model's inputs, for one streamed example
        (decoding, augmentation; None: the raw features are the inputs)."""
        return None

    def label_encoder(self) -> Callable | None:
        """fn(a streamed record's label) -> the label trained on (None: as it is)."""
        return None

    def batch_augmenter(self, data_config) -> Callable | None:
        """fn(features, labels, seed [2]) -> (features, labels) for a streamed training batch (None: none)."""
        return None

    def default_label_names(self, data_config) -> list[str]:
        """Label names for data that stores class ids only."""
        raise GardenError(
            f"{data_config.dataset} data holds no label names, and task type '{self.config.type}' has none"
        )

    def load_train(self) -> tuple[Examples, object]:
        """(training Examples, the `prepare` function for them): with the teacher's logits attached
        when the loss is `distillation`."""
        data, where = self.config.train_data, self.config_path
        if (self.config.loss.type == "distillation") != bool(data.teacher_logits):
            raise GardenError(
                f"the distillation loss and {where}.train_data.teacher_logits go together: set both "
                f"({where}.loss.type=distillation, teacher_logits=FILE from 'garden distill logits') or neither"
            )
        examples = self.load(data)
        if data.teacher_logits and isinstance(examples, Stream):
            raise GardenError(
                f"teacher_logits pair logits with in-memory examples, and {data.input_path} is streamed; "
                f"raise {where}.train_data.in_memory_limit above its size, or train without distillation"
            )
        if not data.teacher_logits:
            return examples, self.prepare
        return soft_targets.attach(examples, data.teacher_logits), soft_targets.with_teacher(self.prepare)

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

    def initialize(self, model) -> str | None:
        """Loads `init_checkpoint` into the backbone of a new (not resumed) model."""
        if self.config.init_checkpoint:
            raise GardenError(f"task type '{self.config.type}' cannot load init_checkpoint; leave it empty")

    def init_checkpoint_path(self) -> str:
        """The local folder (or file) of `init_checkpoint`, fetched where it is a hub name not cached, and
        refused unless its weights are the bytes `init_checkpoint_sha256` records."""
        return checkpoint_dir(self.config.init_checkpoint, self.config.init_checkpoint_sha256)

    def metrics(self, labels, outputs):
        raise NotImplementedError

    def calibrate(self, model, labels, outputs) -> None:
        """Fits what the model sets on validation data (its `outputs` and `labels` there) after each
        validation in training: nothing here."""


def _refuse_stream_options(data_config):
    """In-memory data is shuffled whole and holds decoded arrays: the stream options do not apply."""
    default = type(data_config)()
    for key in STREAM_KEYS:
        if getattr(data_config, key) != getattr(default, key):
            raise GardenError(
                f"{key} applies to streamed data (tfrecord, image_folder, tfds); {data_config.dataset} is held in "
                f"memory and shuffled whole: leave {key} at {getattr(default, key)!r}"
            )
