"""What `garden serve` serves: each model's versions on disk, loaded as servables and swapped as new
versions appear or rolled back as served ones are removed (TF Serving's latest version policy and
version labels), and each servable's signatures behind their batching queues; a language model's
generations within the server's beams, new tokens and memory."""

import asyncio
import dataclasses
import functools
import gc
import os
import sys

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers its ops, which text models' tokenizers run as; TF Serving links them in)
from tensorflow.core.protobuf import saved_model_pb2

from garden.errors import GardenError
from garden.export import manifest
from garden.export.batching import Batcher
from garden.export.monitoring import ServingMetrics
from garden.export.requests import (
    Generation,
    GenerationBudget,
    Limits,
    NotFound,
    RequestError,
    check_generation,
    check_instances,
    check_range,
    model_error,
)
from garden.export.rest_api import tensor_info
from garden.export.stream import SavedModelStream
from garden.generate.sampler import Rules
from garden.signature_names import (
    DECODE_STEP_SIGNATURE,
    DEFAULT_SIGNATURE,
    EXAMPLES_SIGNATURE,
    GENERATE_SIGNATURE,
    TOKENIZE_SIGNATURE,
)


@dataclasses.dataclass
class VersionStatus:
    version: int
    state: str  # TF Serving's ModelVersionStatus.State: AVAILABLE, or END once unloaded or failed
    error: str = ""


class Servable:
    """One loaded version of a model: its signatures and one batcher per (signature, input shapes);
    its generations hold their memory of `budget` while they run."""

    def __init__(self, name: str, version: int, folder: str, metrics: ServingMetrics, budget: GenerationBudget):
        path = saved_model_folder(folder)
        if path is None:
            raise GardenError(
                f"{folder} is not a SavedModel folder (no saved_model.pb); export one with 'garden export RUN_DIR'"
            )
        self.name, self.version, self.path, self.metrics, self.budget = name, version, path, metrics, budget
        self.model = tf.saved_model.load(path)
        self.signatures = dict(self.model.signatures)
        self.position_bytes, self.vocabulary = self._cache_sizes()
        self.batchers = {}
        found = manifest.read(os.path.dirname(os.path.abspath(path)))
        self.input_ranges, self.label_names = found.get("input_ranges", {}), found.get("labels")
        features = found.get("signatures", {}).get(EXAMPLES_SIGNATURE, {}).get("features", {})
        self.example_dtypes = {name: entry["dtype"] for name, entry in features.items()}

    def specs(self, signature_name: str) -> dict[str, tf.TensorSpec]:
        if signature_name not in self.signatures:
            raise RequestError(f"no signature '{signature_name}'; this model has {', '.join(self.signatures)}")
        return self.signatures[signature_name].structured_input_signature[1]

    def _cache_sizes(self) -> tuple[int, int]:
        """(key/value cache bytes per position and row, logits per row) of the `decode_step` signature's
        cache [layers, rows, 2, length, ...] and logits [rows, vocabulary]. Without one, a bound for
        any model of hidden size 32 or more: a layer's key and value projections hold hidden x its
        cached values per position, the embedding hidden x vocabulary, so neither passes the weights
        / 32 (the variables' bytes)."""
        step = self.signatures.get(DECODE_STEP_SIGNATURE)
        if step is None:
            variables = os.path.join(self.path, "variables")
            weights = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(variables) for f in files)
            return weights // 32, weights // 32
        cache = step.structured_input_signature[1]["cache"]
        layers, _, pair, _, *heads = cache.shape
        return layers * pair * int(np.prod(heads)) * cache.dtype.size, step.structured_outputs["logits"].shape[-1]

    def _generation(self, rows: int, beams: int, prompt: int, new: int) -> Generation:
        return Generation(rows, beams, prompt, new, self.position_bytes, self.vocabulary)

    def _prompt_tokens(self, prompts: np.ndarray) -> int:
        """The longest of `prompts` in tokens as the model's `tokenize` reads them (start token included);
        without one, a bound: its UTF-8 bytes and a start token."""
        if TOKENIZE_SIGNATURE not in self.signatures:
            return 1 + max(len(prompt) for prompt in prompts)
        try:
            read = self.signatures[TOKENIZE_SIGNATURE](prompt=tf.constant(prompts), stop=tf.fill([len(prompts), 1], ""))
        except tf.errors.InvalidArgumentError as error:
            raise RequestError(model_error(error)) from error
        return int(read["token_ids"].shape[1])

    async def generation(self, inputs: dict[str, np.ndarray], limits: Limits) -> Generation | None:
        """What a call of a generation signature (one taking `prompt` and `max_new_tokens`) holds, once
        its beams and new tokens are within `limits`; None for other signatures."""
        if not {"prompt", "max_new_tokens"} <= set(inputs):
            return None
        beams = int(inputs["beams"].max()) if "beams" in inputs else 1
        new = int(inputs["max_new_tokens"].max())
        check_generation(beams, new, limits)
        prompt = await asyncio.get_running_loop().run_in_executor(None, self._prompt_tokens, inputs["prompt"])
        return self._generation(len(inputs["prompt"]), max(beams, 1), prompt, max(new, 0))

    async def predict(self, signature_name: str, inputs: dict[str, np.ndarray], limits: Limits) -> dict:
        """The signature's outputs for `inputs`, batched with other requests; a generation waits and
        runs holding its memory of the budget (RequestError when it can never fit, Busy when it does
        not fit beside those running)."""
        for name, array in inputs.items():
            if name in self.input_ranges:
                check_range(name, array, self.input_ranges[name])
        generation = await self.generation(inputs, limits)
        key = (signature_name, tuple((n, a.shape[1:]) for n, a in sorted(inputs.items())))
        if key not in self.batchers:
            signature = self.signatures[signature_name]

            def run(arrays, signature=signature):
                return {k: v.numpy() for k, v in signature(**{n: tf.constant(a) for n, a in arrays.items()}).items()}

            def on_call(requests, rows):
                self.metrics.batch(self.name, str(self.version), requests, rows)

            self.batchers[key] = Batcher(run, limits, on_call, self.budget)
        if generation is None:
            return await self.batchers[key].predict(inputs)
        held = self.budget.reserve(generation)
        try:
            return await self.batchers[key].predict(inputs, generation)
        finally:
            self.budget.give(held)

    def stream(self, signature_name: str, inputs: dict[str, np.ndarray], limits: Limits) -> tuple:
        """(a SavedModelStream of the one instance `inputs` holds for a `generate` signature, the bytes
        of the budget it holds: the decode step's whole cache, to give back once it ends)."""
        if signature_name not in (GENERATE_SIGNATURE, DEFAULT_SIGNATURE) or "repetition_penalty" not in inputs:
            raise RequestError('only a language model\'s "generate" signature streams; leave "stream" out')
        if len(inputs["prompt"]) != 1:
            raise RequestError(f"a streamed request holds one instance, not {len(inputs['prompt'])}")
        check_generation(1, int(inputs["max_new_tokens"][0]), limits)
        rules = Rules.of_inputs(inputs)
        stop = [s.decode() for s in inputs["stop"][0] if s]
        try:
            stream = SavedModelStream(
                self.signatures, inputs["prompt"][0].decode(), int(inputs["max_new_tokens"][0]), rules, stop
            )
        except (ValueError, tf.errors.InvalidArgumentError) as error:
            raise RequestError(model_error(error)) from error
        return stream, self.budget.reserve(self._generation(stream.rows, 1, stream.cache_spec.shape[3], 0))

    async def examples(self, signature_name: str, serialized: list[bytes], limits: Limits) -> dict:
        """The outputs of signature `signature_name` (serve_examples when empty) for serialized
        tf.train.Examples, batched with the signature's other requests."""
        signature_name = signature_name or EXAMPLES_SIGNATURE
        specs = self.specs(signature_name)
        if list(specs) != ["examples"] or specs["examples"].dtype != tf.string:
            raise RequestError(f"signature '{signature_name}' does not take tf.train.Examples; name one that does")
        if not serialized:
            raise RequestError("the request holds no examples; send at least one")
        check_instances({"examples": serialized}, limits.max_instances)
        return await self.predict(signature_name, {"examples": np.array(serialized, dtype=object)}, limits)

    def classes(self, outputs):
        """(probabilities [examples, classes], the class names) of a classifier's outputs."""
        if "probabilities" not in outputs:
            raise RequestError("this model is no classifier (no probabilities output); call predict or regress")
        count = outputs["probabilities"].shape[-1]
        names = self.label_names if self.label_names and len(self.label_names) == count else None
        return outputs["probabilities"], names or [str(i) for i in range(count)]

    def scores(self, outputs):
        """A regression's scores [examples]."""
        if "score" not in outputs:
            raise RequestError("this model is no regression (no score output); call predict or classify")
        return outputs["score"]

    def close(self):
        for batcher in self.batchers.values():
            batcher.close()

    @functools.cached_property
    def signature_defs(self):
        """name -> SignatureDef proto, as saved_model.pb holds them (TF Serving's gRPC metadata); read once."""
        saved_model = saved_model_pb2.SavedModel()
        with open(os.path.join(self.path, "saved_model.pb"), "rb") as file:
            saved_model.ParseFromString(file.read())
        found = saved_model.meta_graphs[0].signature_def
        return {name: found[name] for name in self.signatures}

    def metadata(self):
        signature_def = {
            name: {
                "inputs": {n: tensor_info(s) for n, s in signature.structured_input_signature[1].items()},
                "outputs": {n: tensor_info(s) for n, s in signature.structured_outputs.items()},
                "method_name": "tensorflow/serving/predict",
            }
            for name, signature in self.signatures.items()
        }
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
            "metadata": {"signature_def": {"signature_def": signature_def}},
        }


def saved_model_folder(folder: str) -> str | None:
    """`folder` when it holds saved_model.pb, its `saved_model/` when that does (Garden's export folder,
    with the manifest beside it), else None."""
    for path in (folder, os.path.join(folder, "saved_model")):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return path
    return None


def versions_on_disk(path: str) -> list[tuple[int, str]]:
    """[(version, folder)] of the numbered version folders in base path `path`, oldest first."""
    if not os.path.isdir(path):
        return []
    found = sorted(int(d) for d in os.listdir(path) if d.isdigit() and os.path.isdir(os.path.join(path, d)))
    return [(version, os.path.join(path, str(version))) for version in found]


def _stamp(folder):
    """When anything in `folder` last changed: a failed version is tried again once it changes."""
    return max((os.stat(os.path.join(d, f)).st_mtime for d, _, files in os.walk(folder) for f in files), default=0.0)


class Model:
    """One served name: a SavedModel or export folder (version 1), or a base path of numbered version
    folders whose newest `keep` are served (TF Serving's latest policy), `labels` naming versions."""

    def __init__(
        self,
        name: str,
        path: str,
        metrics: ServingMetrics,
        budget: GenerationBudget,
        keep: int = 1,
        labels: dict | None = None,
    ):
        self.name, self.path, self.metrics, self.budget, self.keep = name, os.path.abspath(path), metrics, budget, keep
        self.labels = labels or {}  # label -> version
        self.versioned = os.path.isdir(self.path) and saved_model_folder(self.path) is None
        self.loaded = {}  # version -> Servable
        self.ended = {}  # version -> why it is not served ('' once unloaded for newer ones or removed)
        self.failed_at = {}  # version -> _stamp of its folder when it failed to load
        self.emptied = False  # whether the log says that the base path holds no version
        found = self.on_disk()
        if not found:
            raise GardenError(
                f"{path} holds no SavedModel (saved_model.pb) and no numbered version folders; "
                "export one with 'garden export RUN_DIR' and serve RUN_DIR/export, or copy it to PATH/1"
            )
        for version, folder in found[-keep:]:
            try:
                self.loaded[version] = Servable(name, version, folder, metrics, budget)
            except GardenError:
                raise
            except Exception as error:
                raise GardenError(
                    f"{name} version {version} ({folder}) failed to load: {model_error(error)}"
                ) from error

    @property
    def serving(self):
        """The newest loaded version: what a request that names none gets."""
        return self.loaded[max(self.loaded)]

    def on_disk(self):
        """[(version, folder)] of the versions on disk, oldest first."""
        return versions_on_disk(self.path) if self.versioned else [(1, self.path)]

    async def refresh(self):
        """Loads the newest `keep` versions on disk that are not loaded (on a worker thread), then
        unloads the loaded versions whose folders are gone and what is older than the `keep` newest
        loaded, keeping one version served: a version that fails to load unloads none. With no
        version left on disk, what is loaded stays served (the log says so once)."""
        if not self.versioned:
            return
        on_disk = dict(self.on_disk())
        if not on_disk:
            if not self.emptied:
                kept = ", ".join(map(str, sorted(self.loaded)))
                print(
                    f"{self.name}: no version is left in {self.path}; serving version {kept} from memory until one "
                    "appears",
                    file=sys.stderr,
                    flush=True,
                )
            self.emptied = True
            return
        self.emptied, loop, changed = False, asyncio.get_running_loop(), False
        for version, folder in list(on_disk.items())[-self.keep :]:
            stamp = _stamp(folder)
            if version in self.loaded or self.failed_at.get(version) == stamp:
                continue
            try:
                servable = await loop.run_in_executor(
                    None, Servable, self.name, version, folder, self.metrics, self.budget
                )
            except Exception as error:  # a broken or half-written version: the serving ones stay
                self.failed_at[version], self.ended[version] = stamp, model_error(error)
                print(
                    f"{self.name} version {version} failed to load: {self.ended[version]}", file=sys.stderr, flush=True
                )
                continue
            self.loaded[version] = servable
            self.ended.pop(version, None)
            changed = True
            print(f"{self.name}: serving version {version} ({folder})", flush=True)
        for version in sorted(self.loaded, key=lambda v: (v in on_disk, v)):  # the removed first, oldest first
            if len(self.loaded) > 1 and (version not in on_disk or version not in sorted(self.loaded)[-self.keep :]):
                if version not in on_disk:
                    print(f"{self.name}: version {version} was removed from {self.path}; unloaded it", flush=True)
                self.loaded.pop(version).close()
                self.ended[version], changed = "", True
        if changed:
            _freeze(unfreeze=True)  # let the collector free unloaded versions, then keep it off the new ones

    def find(self, version=None, label=None):
        """The loaded version that `version` or `label` names; the newest when neither is given."""
        if label is not None:
            if label not in self.labels:
                raise NotFound(
                    f"Servable not found for request: Label({self.name}, {label}); name a version with "
                    f"--version-label {self.name}:{label}=N"
                )
            version = self.labels[label]
        if version is None:
            return self.serving
        if version not in self.loaded:
            kind = f"Label({self.name}, {label}): version {version}" if label else f"Specific({self.name}, {version})"
            raise NotFound(f"Servable not found for request: {kind} is not loaded")
        return self.loaded[version]

    def statuses(self):
        found = [VersionStatus(v, "END", error) for v, error in self.ended.items()]
        return sorted([*found, *(VersionStatus(v, "AVAILABLE") for v in self.loaded)], key=lambda s: s.version)


def _freeze(unfreeze=False):
    """The loaded models are hundreds of thousands of long-lived Python objects; left to the collector,
    each full collection walks them all (pauses of 0.5 s under load). Frozen, it skips them."""
    if unfreeze:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


class Models:
    """The served models by name: what REST and gRPC look requests up in."""

    def __init__(
        self,
        paths: dict[str, str],
        metrics: ServingMetrics,
        keep: int | dict[str, int] = 1,
        labels: dict | None = None,
        generation_bytes: int = Limits.max_generation_bytes,
    ):
        """`keep`: how many of each base path's newest versions are served, for all models or by name;
        `generation_bytes`: the memory all their generations may hold at once."""
        labels = labels or {}
        keep = keep if isinstance(keep, dict) else dict.fromkeys(paths, keep)
        unknown = sorted(set(labels) - set(paths))
        if unknown:
            raise GardenError(
                f"--version-label names {', '.join(unknown)}, which is not served; serve it or drop the label"
            )
        self.budget = GenerationBudget(generation_bytes)
        self.models = {
            name: Model(name, path, metrics, self.budget, keep.get(name, 1), labels.get(name))
            for name, path in paths.items()
        }
        _freeze()

    def _model(self, name):
        if name not in self.models:
            raise NotFound(f"Servable not found for request: Latest({name})")
        return self.models[name]

    def find(self, name, version=None, label=None) -> Servable:
        """The servable a request names: the newest loaded version, or the one `version` or `label` names."""
        return self._model(name).find(version, label)

    def metric_labels(self, name: str, version: int | str | None) -> tuple[str, str]:
        """The (model, version) labels of a request for `name` and `version`: "" for a model that is
        not served and for a version never loaded, so the names clients send make no new series."""
        model = self.models.get(name)
        if model is None:
            return "", ""
        known = str(version).isdigit() and int(version) in {*model.loaded, *model.ended}
        return name, str(version) if known else ""

    def statuses(self, name, version=None, label=None) -> list[VersionStatus]:
        model = self._model(name)
        if label is not None:
            version = model.find(None, label).version
        found = [s for s in model.statuses() if version is None or s.version == version]
        if not found:
            raise NotFound(f"Servable not found for request: Specific({name}, {version})")
        return found

    async def poll(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            for model in self.models.values():
                await model.refresh()
