"""A task's serving companion: what its exports serve and how they are judged, as Model Garden's
`export_base.ExportModule` stands beside `base_task.Task`. The task trains (model, inputs, losses,
metrics); its companion, registered in `SERVINGS` under the task's type, gives the serving signatures
(tensors, raw inputs in the graph, serialized tf.train.Examples), the outputs they serve, the quality
and parity an artifact is judged by, and what a client needs to prepare its inputs.

A new task type's companion is one class with one decorator:

    @SERVINGS.register("my_task")
    class MyTaskServing(Serving):
        parity_outputs = ("score",)
        quality = "pearson"

        def serving_outputs(self, outputs): ...
        def serving_quality(self, labels, outputs): ...
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from garden.data.examples import Examples
from garden.data.streams import Stream
from garden.errors import GardenError
from garden.registry import SERVINGS
from garden.tasks.task import Task


class Serving:
    """Exports serve the model's tensors as `tensor_signature`; a task that can also take raw inputs
    (text, encoded images) in the graph serves them as `raw_signature`."""

    tensor_signature = "serving_default"
    raw_signature: str | None = None
    examples_signature: str | None = None  # serialized tf.train.Examples of raw inputs (TF Serving's Classify/Regress)
    export_kind = "outputs"  # which export reference judges its artifacts (a decoder LM: "decoder")
    parity_outputs: tuple[str, ...] = ()  # float serving outputs whose max |Δ| bounds an artifact
    quality = ""  # the serving quality's name, as the export manifest and table show it
    signature_aliases: dict[str, str] = {}  # another name -> a signature it serves under too
    input_ranges: dict[str, tuple[float, float]] = {}  # float inputs' value ranges, which predict and serve check

    def __init__(self, task: Task):
        self.task, self.config = task, task.config

    def held_out(self):
        """The data config used to judge exports: test data when set, else validation data."""
        return self.config.test_data if self.config.test_data.dataset else self.config.validation_data

    def load_examples(self, data_config, label_names=None, limit: int = 10_000) -> Examples:
        """The data in memory (what exports are judged and calibrated on): of a stream, at most `limit`
        examples spread evenly through it, decoded for evaluation."""
        data = self.task.load(data_config, label_names)
        return data.to_examples(limit) if isinstance(data, Stream) else data

    def serving_inputs(self, model) -> dict[str, tf.TensorSpec]:
        """Named, typed input specs of the tensor signature, from the model's inputs."""
        return {t.name: tf.TensorSpec((None,) + tuple(t.shape[1:]), t.dtype, name=t.name) for t in model.inputs}

    def serving_outputs(self, outputs: dict) -> dict:
        """The named outputs a signature serves, from the model's outputs."""
        raise NotImplementedError

    def serving_quality(self, labels: np.ndarray, outputs: dict[str, np.ndarray]) -> float:
        """The number an export judges an artifact by (accuracy, say), from its serving `outputs` on
        held-out examples and their `labels` as the task's `prepare` gives them; higher is better."""
        raise GardenError(
            f"task type '{self.config.type}' does not say how its exports are judged; give its serving companion "
            "`quality`, `parity_outputs` and `serving_quality`"
        )

    def preprocessing(self) -> dict:
        """Input name -> how a client prepares it (recorded in the export manifest; empty: as served)."""
        return {}

    def raw_serving(self, model, feature_names):
        """(named input specs, fn(raw inputs) -> model inputs in the graph) of the raw signature, for
        data with `feature_names`; None when the task serves tensors only."""
        return None

    def serving_resources(self) -> list:
        """Layers that the raw signature calls and the SavedModel must keep (their lookup tables)."""
        return []

    def raw_features(self, examples: Examples, names: list[str]) -> tuple[list, Examples]:
        """(arrays of the raw inputs `names` of `examples`, as a client sends them; the Examples those
        arrays hold, which differ from `examples` where the raw format is lossy)."""
        return [examples.features[name] for name in names], examples


def serving_for(task: Task) -> Serving:
    """The serving companion of `task`, registered under its type."""
    kind = task.config.type
    if kind not in SERVINGS:
        raise GardenError(
            f"task type '{kind}' has no serving companion, so it cannot be exported; register one with "
            f"@SERVINGS.register('{kind}') on a Serving subclass (garden.export.serving.base)"
        )
    return SERVINGS.get(kind)(task)
