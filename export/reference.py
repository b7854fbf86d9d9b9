"""What every artifact is judged against: the Keras model on held-out examples.

`ExportReference` is what the formats call; `OutputsReference` judges any task by its serving
outputs (classification, regression, tagging, span QA, multiple choice, masked LM): max |Δ| of the
`parity_outputs` of the task's serving companion (garden.export.serving), and its `serving_quality`
against the held-out labels."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from garden.data.pipeline import eval_dataset
from garden.errors import GardenError
from garden.export import manifest
from garden.export.serving import serving_for
from garden.export.signature import serialized_examples, signatures
from garden.export.verify import (
    BATCH,
    Refused,
    batched,
    max_abs_error,
    median_latency_ms,
    numpy_outputs,
    refusal,
)
from garden.registry import REFERENCES
from garden.train.checkpoints import fingerprint

if TYPE_CHECKING:
    import tensorflow as tf

    from garden.data.examples import Examples
    from garden.export.exporting import ExportOptions
    from garden.run import Run

DEFAULT = "serving_default"
SAVED_MODEL_BOUND = 1e-5  # max |Δ| of a SavedModel: the same graph, rerun from disk
TFLITE_BOUNDS = {"none": 1e-4, "float16": 1e-2, "dynamic": None, "int8": None, "16x8": None}  # None: judged by quality


def spec_entry(spec: tf.TensorSpec) -> dict:
    return {"dtype": spec.dtype.name, "shape": list(spec.shape)}


Runner = Callable[[str], Callable[..., dict]]  # signature name -> fn(**named arrays) -> named outputs


class ExportReference:
    """The interface the formats call: the SavedModel every format reads, and `judge`, which measures
    any artifact against the Keras model. A subclass writes the SavedModel and judges artifacts.

    An artifact's kind names its format and mode as a refusal names it: "saved_model", "TFLite none",
    "TFLite int8". `bounds` gives each kind's max |Δ| from the Keras model (None: judged by `quality`
    alone; a kind it does not list, a new format's, too); `--max-error` replaces them all."""

    bounds: dict[str, float | None]
    quality: str | None  # what an artifact is judged by, as the manifest and the export table name it (None: parity)

    def __init__(self, run: Run, options: ExportOptions):
        self.run, self.task, self.options = run, run.task, options
        self.serving = serving_for(run.task)
        self._saved_model = None

    def saved_model(self, workdir: str) -> str:
        """The SavedModel that every format reads, written into `workdir` on first use."""
        if self._saved_model is None:
            self._saved_model = os.path.join(workdir, "saved_model")
            self.write_saved_model(self._saved_model)
        return self._saved_model

    def saved_model_to_convert(self, workdir: str, signature: str) -> str:
        """The SavedModel a converter (TFLite's) converts `signature` from."""
        return self.saved_model(workdir)

    def check_mode(self, mode: str) -> None:
        """Refuses a quantization mode this reference cannot judge, before any conversion."""
        modes = [kind.split()[1] for kind in self.bounds if kind.startswith("TFLite ")]
        if mode not in modes:
            raise GardenError(f"this model exports with --quantize {', '.join(modes)} (got '{mode}')")

    def bound(self, kind: str) -> float | None:
        """The max |Δ| from the Keras model that an artifact of `kind` may show (None: none)."""
        return self.bounds.get(kind) if self.options.max_error is None else self.options.max_error

    def write_saved_model(self, directory: str) -> None:
        raise NotImplementedError

    def judge(self, kind: str, runner: Runner, signature: str | None = None) -> dict:
        """What an artifact of `kind` measures against the Keras model on the held-out examples: the
        artifact's `signature` run by `runner(signature)(**arrays)`; with no `signature`, a SavedModel's
        every signature. Raises Refused when it misses a bound (nothing is written then)."""
        raise NotImplementedError

    def signature_to_convert(self) -> str:
        """The signature a converter (TFLite's) turns into a model of one signature."""
        raise NotImplementedError

    def calibration(self, signature: str) -> dict[str, np.ndarray]:
        raise GardenError(f"this model exports no calibrated TFLite mode; use --quantize {', '.join(TFLITE_BOUNDS)}")

    def legend(self) -> str:
        """A line saying what the figures of the export table are, and what they were measured on."""
        raise NotImplementedError

    def keras_entry(self) -> dict:
        """The Keras model's own figures (its `quality`, latency, run folder): the export table's first row."""
        raise NotImplementedError

    def header(self) -> dict:
        raise NotImplementedError

    def source(self) -> dict:
        """The checkpoint the artifacts come from: path, step and a fingerprint of the weights."""
        if not hasattr(self, "_source"):
            weights = fingerprint(self.run.model.weights)
            self._source = {
                "checkpoint": self.run.checkpoint_path,
                "step": self.run.step,
                "weights_fingerprint": weights,
            }
        return self._source

    def record(self, export_dir: str, name: str, target: str, measured: dict) -> dict:
        entry = {"path": target, "size_bytes": manifest.size_bytes(target), **measured, **self.source()}
        return manifest.record(export_dir, {**self.header(), **self.source()}, name, entry)


@REFERENCES.register("backbone")
class BackboneReference(ExportReference):
    """The reference of an export whose every format writes the backbone alone (`--format keras_hub`,
    `hf`): each judges its artifact against the run's backbone itself, so no held-out outputs are
    computed; the export table shows parity alone."""

    bounds = {}
    quality = None

    def legend(self):
        return "parity = max |Δ outputs| of the artifact, reloaded, vs the run's backbone"

    def keras_entry(self):
        return {"path": self.run.run_dir}

    def header(self):
        run = self.run
        return {"experiment": run.config.task.name, "run_dir": run.run_dir, "checkpoint": run.checkpoint_path}


@REFERENCES.register("outputs")
class OutputsReference(ExportReference):
    """The held-out split, each serving signature's inputs for it, and the Keras model's outputs
    (through the tensor signature, fed by the training input pipeline), with the labels that
    pipeline gives (aligned to tokens for tagging and span QA)."""

    bounds = {"saved_model": SAVED_MODEL_BOUND, **{f"TFLite {mode}": bound for mode, bound in TFLITE_BOUNDS.items()}}

    def __init__(self, run, options):
        super().__init__(run, options)
        if not self.serving.quality:
            self.serving.serving_quality(None, None)  # says what the task lacks
        self.quality = self.serving.quality
        self.examples = self.serving.load_examples(self.serving.held_out(), run.label_names)
        self.signatures = signatures(self.serving, run.model, self.examples.label_names, list(self.examples.features))
        tensors = self.serving.tensor_signature
        features, self.labels = self._prepared(self.examples)  # one pass: a masked LM masks at random
        self.inputs = {tensors: [features[n] for n in self.signatures[tensors].specs]}
        self.expected = {tensors: self._keras_run(self.inputs[tensors])}
        for name in self.signatures:
            if name != tensors:
                self.inputs[name], held = self.signature_inputs(name, self.examples)
                # the raw form may hold other examples (say, images rounded to 8 bits)
                same = held is self.examples
                self.expected[name] = (
                    self.expected[tensors] if same else self._keras_run(self.signature_inputs(tensors, held)[0])
                )
        self.keras_quality = self.serving.serving_quality(self.labels, self.expected[tensors])

    def signature_inputs(self, name: str, examples: Examples) -> tuple[list, Examples]:
        """(arrays of `examples` in the input order of signature `name`, the Examples they hold): the
        prepared tensors for the tensor signature, what a client sends (strings, encoded images) otherwise."""
        names = list(self.signatures[name].specs)
        if name == self.serving.examples_signature:
            wrapped = self.serving.raw_signature if self.serving.raw_signature in self.signatures else None
            wrapped = wrapped or self.serving.tensor_signature
            arrays, held = self.signature_inputs(wrapped, examples)
            return [serialized_examples(dict(zip(self.signatures[wrapped].specs, arrays)))], held
        if name != self.serving.tensor_signature:
            return self.serving.raw_features(examples, names)
        features, _ = self._prepared(examples)
        return [features[n] for n in names], examples

    def _prepared(self, examples):
        """(model inputs by name, labels) of `examples` through the training input pipeline."""
        batches = list(eval_dataset(examples, BATCH, self.task.prepare))
        features = {n: np.concatenate([f[n].numpy() for f, _ in batches]) for n in batches[0][0]}
        return features, np.concatenate([labels.numpy() for _, labels in batches])

    def _keras_run(self, tensors):
        """The Keras model's serving outputs on prepared `tensors` (from the training input pipeline)."""
        return batched(numpy_outputs(self.signatures[self.serving.tensor_signature].function), tensors)

    def _judged(self, name: str, outputs: dict) -> tuple[float, float, float]:
        """(max abs error of the parity outputs, quality, its drop in points: all on the held-out examples)
        of an artifact's outputs for signature `name`, against the Keras model on the same examples."""
        expected = self.expected[name]
        error = max(max_abs_error(expected[key], outputs[key]) for key in self.serving.parity_outputs)
        if "label" in outputs:
            names = np.asarray(self.examples.label_names, dtype=object)[np.asarray(outputs["class_id"]).reshape(-1)]
            given = [x.decode() if isinstance(x, bytes) else str(x) for x in np.asarray(outputs["label"]).reshape(-1)]
            if list(names) != given:
                raise GardenError("the artifact's `label` output disagrees with its `class_id`; nothing was written")
        quality = self.serving.serving_quality(self.labels, outputs)
        return error, quality, 100.0 * (self.keras_quality - quality)

    def _measured(self, kind, name, run, bound):
        """Runs `run(*arrays)` over signature `name`'s held-out inputs; raises Refused past a bound."""
        error, quality, drop = self._judged(name, batched(run, self.inputs[name]))
        measured = {"max_abs_error": error, "error_bound": bound, self.quality: quality, f"{self.quality}_drop": drop}
        reason = refusal(kind, error, bound, drop, self.options.max_quality_drop, self.quality)
        if reason:
            raise Refused(reason, kind, measured)
        return measured

    def write_saved_model(self, directory: str, names=None) -> None:
        """Writes the signatures `names` (default: all), with the layers that the raw one calls
        (`serving_resources`) where it is among them."""
        import keras

        names = names or list(self.signatures)
        # The model is not tracked: its endpoints capture its variables, and tracking it too saves each
        # weight twice (Keras keeps its Variables beside the tf.Variables they wrap, so a SavedModel
        # weighed twice its weights). Layers holding lookup tables are tracked (`serving_resources`).
        archive = keras.export.ExportArchive()
        if self.serving.raw_signature in names:
            for resource in self.serving.serving_resources():
                archive.track(resource)
        for name in names:
            archive.add_endpoint(name, self.signatures[name].function)
        archive.write_out(directory, verbose=False)

    def saved_model_to_convert(self, workdir: str, signature: str) -> str:
        """A tensor signature of a task whose raw one keeps lookup tables converts from a SavedModel
        of its own: TFLite's converter keeps every table's initializer, which it cannot convert."""
        if signature == self.serving.raw_signature or not self.serving.serving_resources():
            return self.saved_model(workdir)
        directory = os.path.join(workdir, f"saved_model_{signature}")
        if not os.path.isdir(directory):
            self.write_saved_model(directory, [signature])
        return directory

    def judge(self, kind, runner, signature=None):
        bound = self.bound(kind)
        if signature is not None:
            run = self._named(runner(signature), signature)
            measured = self._measured(kind, signature, run, bound)
            return {**measured, "signature": signature, "latency_ms": median_latency_ms(run, self.inputs[signature])}
        judged = {
            name: self._measured(f"{kind} signature {name}", name, self._named(runner(name), name), bound)
            for name in self.signatures
        }
        worst = max(judged.values(), key=lambda entry: entry["max_abs_error"])
        lowest = min(entry[self.quality] for entry in judged.values())
        return {**worst, self.quality: lowest, "signatures": judged}

    def _named(self, function, signature):
        """fn(*arrays in the input order of `signature`) of `function(**named arrays)`."""
        names = list(self.signatures[signature].specs)
        return lambda *arrays: function(**dict(zip(names, arrays)))

    def signature_to_convert(self) -> str:
        if self.options.signature not in self.signatures:
            raise GardenError(
                f"this model has no signature '{self.options.signature}'; choose from: {', '.join(self.signatures)}"
            )
        return self.options.signature

    def calibration(self, signature: str, examples: int = 256) -> dict[str, np.ndarray]:
        """Input name -> arrays of `examples` training examples, for int8 and 16x8 calibration."""
        train = self.serving.load_examples(self.task.config.train_data, self.examples.label_names, limit=examples)
        arrays, _ = self.signature_inputs(signature, train.take(examples))
        return dict(zip(self.signatures[signature].specs, arrays))

    def legend(self) -> str:
        held_out = f"{len(self.examples)} {self.serving.held_out().split}"
        return (
            f"{self.quality} and parity (max |Δ {', '.join(self.serving.parity_outputs)}| vs Keras) on {held_out} "
            f"examples; latency = median of one example on {os.cpu_count()} CPU threads"
        )

    def keras_entry(self) -> dict:
        latency = median_latency_ms(self.signatures[DEFAULT].function, self.inputs[DEFAULT])
        return {self.quality: self.keras_quality, "latency_ms": latency, "path": self.run.run_dir}

    def header(self) -> dict:
        return {
            "experiment": self.run.config.task.name,
            "run_dir": self.run.run_dir,
            "checkpoint": self.run.checkpoint_path,
            "signatures": {
                name: {
                    "inputs": {n: spec_entry(s) for n, s in signature.specs.items()},
                    **(
                        {"features": {n: spec_entry(s) for n, s in signature.features.items()}}
                        if signature.features
                        else {}
                    ),
                }
                for name, signature in self.signatures.items()
            },
            "outputs": list(self.expected[self.serving.tensor_signature]),
            "labels": self.examples.label_names,
            "input_ranges": {name: list(bounds) for name, bounds in self.serving.input_ranges.items()},
            "preprocessing": self.serving.preprocessing(),
            "held_out": {"split": self.serving.held_out().split, "examples": len(self.examples)},
            "quality": self.quality,
            f"keras_{self.quality}": self.keras_quality,
        }
