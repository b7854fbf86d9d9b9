"""Experiment configs: Model Garden's `ExperimentConfig` (task / trainer / runtime) for Garden.

Configs are `official.modeling.hyperparams` dataclasses, so Model Garden YAML files
(trainer, optimizer_config, runtime) read unchanged. A registered part (backbone,
head, loss) is a `ComponentConfig`: its `type` names the registry entry and its
`params` start from that entry's signature defaults.
"""

import dataclasses
import datetime
import types
import typing
from collections.abc import Sequence

import yaml
from official.core import config_definitions as mg
from official.core import exp_factory
from official.modeling.hyperparams import base_config, oneof

from garden import registry
from garden.errors import GardenError, did_you_mean, shown
from garden.run_folder import RESERVED
from garden.yaml_files import parse_yaml, read_yaml, to_yaml


@dataclasses.dataclass
class ComponentConfig(base_config.Config):
    """A registered part: `type` is its registry name, `params` its keyword arguments."""

    type: str = ""
    params: base_config.Config = dataclasses.field(default_factory=base_config.Config)


@dataclasses.dataclass
class DataConfig(mg.DataConfig):
    """Model Garden's DataConfig plus a catalog dataset, its split, optionally only the examples of
    some `classes` (label names) and at most `examples_per_class` of each, an optional evenly spaced
    subset of `num_examples`, then an optional `fold` of those ("K/N": every N-th from the K-th,
    "~K/N": all the others), for text files the columns to read (names, or numbers when `header`
    is false; multi-label data joins a text's labels with `label_separator`) and, for training
    data under the `distillation` loss, the `teacher_logits` file that `garden distill logits`
    wrote for these examples.

    Streamed data (`tfrecord` shards, an `image_folder`, a prepared `tfds` dataset, chosen from
    `input_path` or `tfds_name` when `dataset` is empty; `text_file`s over `in_memory_limit` bytes)
    reads `image_key` and `label_key` from each image record, leaves out records that do not decode
    when `skip_bad_examples` is set, and for images augments training examples with a random flip
    (`aug_rand_hflip`), a random resized crop (`aug_crop`, area 8-100%), Model Garden's `randaug`
    (`aug_num_layers` ops of `aug_magnitude`) or `autoaug` (`aug_type`) and random erasing with
    probability `random_erasing`, mixes training batches with `mixup_and_cutmix` (Model Garden's
    MixupAndCutmix: alpha 0.8 and 1.0, labels smoothed by 0.1), and crops evaluation images to their central
    `center_crop_fraction`, as Model Garden's image classification does."""

    dataset: str = ""
    split: str = ""
    classes: list = dataclasses.field(default_factory=list)
    examples_per_class: int = -1
    num_examples: int = -1
    fold: str = ""
    text_column: str = "sentence"
    text_pair_column: str = ""
    label_column: str = "label"
    label_separator: str = ","
    header: bool = True
    teacher_logits: str = ""
    image_key: str = "image/encoded"
    label_key: str = "image/class/label"
    skip_bad_examples: bool = False
    in_memory_limit: int = 1 << 30
    aug_rand_hflip: bool = False
    aug_crop: bool = False
    center_crop_fraction: float = 1.0
    aug_type: str = ""
    aug_num_layers: int = 2
    aug_magnitude: float = 10.0
    random_erasing: float = 0.0
    mixup_and_cutmix: bool = False


def check_data(data, where: str) -> None:
    """Refuses in one line values that data (a DataConfig, or a multitask's sub-task's data, which Model
    Garden holds as a ParamsDict) cannot be read with; `where` is its key."""
    if not (data.examples_per_class > 0 or data.examples_per_class == -1):
        raise GardenError(
            f"{where}.examples_per_class must be positive, or -1 for every example (got {data.examples_per_class})"
        )
    if not (data.num_examples > 0 or data.num_examples == -1):
        raise GardenError(f"{where}.num_examples must be positive, or -1 for every example (got {data.num_examples})")
    _positive(data.shuffle_buffer_size, f"{where}.shuffle_buffer_size")
    _not_negative(data.in_memory_limit, f"{where}.in_memory_limit")
    _positive(data.block_length, f"{where}.block_length")
    for key in ("cycle_length", "prefetch_buffer_size"):
        if getattr(data, key) is not None:
            _positive(getattr(data, key), f"{where}.{key}")
    if data.aug_type not in ("", "randaug", "autoaug"):
        raise GardenError(
            f"{where}.aug_type '{shown(data.aug_type)}' is not randaug, autoaug or '' (none)"
            f"{did_you_mean(data.aug_type, ['randaug', 'autoaug'])}"
        )
    if not 0 <= data.random_erasing <= 1:
        raise GardenError(f"{where}.random_erasing is a probability in [0, 1], got {data.random_erasing}")
    if not 0 < data.center_crop_fraction <= 1:
        raise GardenError(f"{where}.center_crop_fraction must be in (0, 1], got {data.center_crop_fraction}")


@dataclasses.dataclass
class TokenizerConfig(base_config.Config):
    """For text: `type` is resolved from the backbone when empty, `vocabulary` is a file or checkpoint
    folder and `merges` a byte-level BPE's merges.txt (see garden/data/tokenizers.py);
    `chat_template` a .jinja file or a tokenizer_config.json holding one (empty: the checkpoint
    folder's, when it has one; `garden generate --chat` renders it). `lowercase` applies to WordPiece
    vocabularies and ALBERT's SentencePiece (lowercase and strip accents; unset: as the checkpoint
    folder's tokenizer config says, else true, as uncased BERT and transformers' AlbertTokenizer);
    other tokenizers normalize as their model says, and refuse it."""

    type: str = ""
    vocabulary: str = ""
    merges: str = ""
    chat_template: str = ""
    lowercase: bool | None = None
    sequence_length: int = 128


@dataclasses.dataclass
class LoraConfig(base_config.Config):
    """Low-rank adapters (garden/models/lora.py): with `rank` > 0 the backbone is frozen and each dense
    layer whose name or path a `targets` pattern matches in full learns `alpha / rank · dropout(x) A B`
    (alpha 0: alpha = rank). The defaults adapt the attention's query and value projections (LoRA's
    choice; `key_value` is Garden's decoder's fused projection)."""

    rank: int = 0
    alpha: float = 0.0
    dropout: float = 0.0
    targets: list = dataclasses.field(default_factory=lambda: ["query", "value", "key_value"])


QUANTIZATION_MODES = ("int8", "int4")


def check_quantization(mode: str, where: str = "task.model.quantization") -> None:
    if mode and mode not in QUANTIZATION_MODES:
        raise GardenError(f"{where} '{mode}' is not one of {', '.join(QUANTIZATION_MODES)} (or '' for float weights)")


@dataclasses.dataclass
class ModelConfig(base_config.Config):
    """A backbone, a head and (for text) a tokenizer. For fine-tuning, `trainable_backbone_blocks`
    freezes all of the backbone but its last N blocks (-1: none frozen; 0: the whole backbone; see
    garden/models/freezing.py) and the backbone trains at `backbone_learning_rate_multiplier` times
    the head's learning rate (its weight decay scaled alike). `lora` trains low-rank adapters in place
    of the backbone's weights; `quantization` (int8 or int4) holds the backbone's weights quantized
    (garden/models/quantization.py): `garden quantize` writes such runs, and LoRA trains on such a base."""

    backbone: ComponentConfig = dataclasses.field(default_factory=ComponentConfig)
    head: ComponentConfig = dataclasses.field(default_factory=ComponentConfig)
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)
    trainable_backbone_blocks: int = -1
    backbone_learning_rate_multiplier: float = 1.0
    lora: LoraConfig = dataclasses.field(default_factory=LoraConfig)
    quantization: str = ""


@dataclasses.dataclass
class SamplerConfig(base_config.Config):
    """How a multi-task run picks each step's task (jiant's samplers): `uniform`, `proportional` to
    the training examples, or `temperature` (probability ∝ examples^(1/temperature)); task sizes
    are capped at `examples_cap` when it is positive."""

    type: str = "proportional"
    temperature: float = 2.0
    examples_cap: int = 0


@dataclasses.dataclass
class TaskConfig(mg.TaskConfig):
    """`name` is the experiment; `type` the registered task that builds model, data and loss.
    A `multitask` holds its sub-tasks in `tasks` (name -> TaskConfig); they share `model.backbone`,
    `model.tokenizer` and `init_checkpoint`, and each has its own head, loss and data.
    `l2_weight_decay` adds Model Garden's L2 penalty, l2_weight_decay / 2 x the sum of squared kernels
    (convolution and dense weights; not biases, norms or embeddings), to the training loss.
    `init_checkpoint` takes a folder or file, or a hub name (garden/data/checkpoints.py); a hub name
    resolves to the exact commit or version it loads, and `init_checkpoint_sha256` records its weights'
    bytes (FILE=SHA256,...), which loading it again checks."""

    type: str = ""
    init_checkpoint_sha256: str = ""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: ComponentConfig = dataclasses.field(default_factory=ComponentConfig)
    l2_weight_decay: float = 0.0
    train_data: DataConfig = dataclasses.field(default_factory=DataConfig)
    validation_data: DataConfig = dataclasses.field(default_factory=DataConfig)
    test_data: DataConfig = dataclasses.field(default_factory=DataConfig)
    tasks: base_config.Config = dataclasses.field(default_factory=base_config.Config)
    sampler: SamplerConfig = dataclasses.field(default_factory=SamplerConfig)


@dataclasses.dataclass
class EarlyStoppingConfig(base_config.Config):
    """Stops training once validation `metric` (a key of the validation results; `NAME/metric` for a
    sub-task of a multitask) has not improved by more than `min_delta` (`mode`: 'higher' or 'lower'
    is better) for `patience` validations in a row, as jiant's no_improvements_for_n_evals; an empty
    `metric` never stops."""

    metric: str = ""
    mode: str = "higher"
    patience: int = 3
    min_delta: float = 0.0


@dataclasses.dataclass
class TrainerConfig(mg.TrainerConfig):
    """Model Garden's TrainerConfig; `gradient_accumulation_steps` splits each global batch into that
    many micro-batches whose gradients are summed before one optimizer step (the same update as one
    full batch, in a fraction of the memory).

    With `best_checkpoint_eval_metric` set, the weights of the best validation by that metric
    (`best_checkpoint_metric_comp`: higher or lower) are kept in RUN/`best_checkpoint_export_subdir`/,
    which eval and export read by default. A loss that is NaN or infinite, or above `loss_upper_bound`
    from step `recovery_begin_steps` on, rolls the run back to its last checkpoint at most
    `recovery_max_trials` times (then it stops), reading on past the batches that diverged and
    multiplying the learning rate by `recovery_learning_rate_scale` for the rest of the run."""

    gradient_accumulation_steps: int = 1
    best_checkpoint_export_subdir: str = "best"
    early_stopping: EarlyStoppingConfig = dataclasses.field(default_factory=EarlyStoppingConfig)
    recovery_learning_rate_scale: float = 1.0


@dataclasses.dataclass
class RuntimeConfig(mg.RuntimeConfig):
    """Model Garden's RuntimeConfig; `enable_xla` is the trainer's explicit jit_compile."""

    distribution_strategy: str = "one_device"
    seed: int = 0
    deterministic: bool = False


@dataclasses.dataclass
class ExperimentConfig(mg.ExperimentConfig):
    """Model Garden's ExperimentConfig; `imports` names modules of the user's that register parts the
    config uses (imported before the config is read, also when a run folder is loaded)."""

    imports: list[str] = dataclasses.field(default_factory=list)
    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)


# Data keys that shape a stream (garden/data/streams.py, the tasks' decoding); in-memory data refuses them.
MODEL_GARDEN_STREAM_KEYS = (
    "shuffle_buffer_size",
    "cycle_length",
    "block_length",
    "deterministic",
    "sharding",
    "prefetch_buffer_size",
    "tfds_name",
    "tfds_split",
    "tfds_data_dir",
    "tfds_as_supervised",
)
STREAM_KEYS = MODEL_GARDEN_STREAM_KEYS + (
    "skip_bad_examples",
    "aug_rand_hflip",
    "aug_crop",
    "center_crop_fraction",
    "aug_type",
    "aug_num_layers",
    "aug_magnitude",
    "random_erasing",
    "mixup_and_cutmix",
)

# The keys of Model Garden's config classes that Garden reads; the others are shown by `garden show`
# but have no effect yet, so setting one to anything but its default is refused.
READ_FROM_MODEL_GARDEN = {
    mg.DataConfig: {"input_path", "global_batch_size", "seed", *MODEL_GARDEN_STREAM_KEYS},
    mg.TaskConfig: {"init_checkpoint", "model", "train_data", "validation_data", "name"},
    mg.TrainerConfig: {
        "optimizer_config",
        "steps_per_loop",
        "checkpoint_interval",
        "max_to_keep",
        "train_steps",
        "validation_interval",
        "best_checkpoint_export_subdir",
        "best_checkpoint_eval_metric",
        "best_checkpoint_metric_comp",
        "loss_upper_bound",
        "recovery_begin_steps",
        "recovery_max_trials",
        "continuous_eval_timeout",  # garden eval --watch's default --timeout
    },
    mg.RuntimeConfig: {
        "distribution_strategy",
        "enable_xla",
        "tpu",
        "num_gpus",
        "worker_hosts",
        "task_index",
        "mixed_precision_dtype",
        "loss_scale",
    },
}


def _refuse_unread(config, key, value, where):
    """Raises GardenError when `value` sets a Model Garden key that Garden does not read."""
    for base, read in READ_FROM_MODEL_GARDEN.items():
        if isinstance(config, base) and key not in read and key in {f.name for f in dataclasses.fields(base)}:
            default = getattr(base(), key)
            default = default.as_dict() if isinstance(default, base_config.Config) else default
            if value != default and not (value in (None, {}) and default in (None, {})):
                raise GardenError(
                    f"{where} is a Model Garden key that Garden does not support yet; remove it "
                    f"(or set it to its default, {default!r})"
                )


def subtask_configs(task_config):
    """name -> TaskConfig of a multitask's sub-tasks (empty for other tasks)."""
    return {
        k: v for k, v in vars(task_config.tasks).items() if k not in base_config.params_dict.ParamsDict.RESERVED_ATTR
    }


_REGISTRIES = {"backbone": registry.BACKBONES, "head": registry.HEADS, "loss": registry.LOSSES}


def component(kind, type_, **params):
    """A ComponentConfig for registry `kind` holding all default params, updated by `params`."""
    config = ComponentConfig(type=type_, params=_REGISTRIES[kind].defaults(type_))
    config.params.override(params, is_strict=True)
    return config


def register_experiment(name: str, tiny: Sequence[str] = ()):
    """Registers an experiment factory with Model Garden's exp_factory and Garden's list, with its
    tiny variant (big_vision's `runlocal`): the `--set` strings `tiny` that make it train in seconds
    on 2 CPU cores, which `--tiny` applies before any file or `--set` of the user's."""

    def decorator(factory):
        def named_factory():
            config = factory()
            config.task.name = name
            return config

        named_factory.__doc__ = factory.__doc__
        named_factory.tiny = tuple(tiny)
        registry.EXPERIMENTS.register(name)(named_factory)
        exp_factory.register_config_factory(name)(named_factory)
        return factory

    return decorator


def tiny_sets(name: str) -> tuple[str, ...]:
    """The `--set` strings of experiment `name`'s tiny variant; GardenError when it declares none."""
    sets = getattr(registry.EXPERIMENTS.get(name), "tiny", ())
    if not sets:
        raise GardenError(
            f"experiment {name} has no tiny variant; drop --tiny, or give it one: "
            "register_experiment(name, tiny=[KEY=VALUE, ...])"
        )
    return sets


def parse_set(assignment):
    """'a.b=c' -> {'a': {'b': c}} with c parsed as YAML (numbers, lists, booleans)."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise GardenError(
            f"--set expects key=value, got '{shown(assignment)}'; for example --set trainer.train_steps=100"
        )
    nested = parse_yaml(value, f"--set {shown(assignment)}") if value else ""
    if isinstance(nested, str):  # YAML 1.1 reads 2e-4 as a string
        try:
            nested = float(nested)
        except ValueError:
            pass
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return nested


def changed_keys(saved: dict, config, shaping: bool) -> list[str]:
    """The keys whose values differ between a saved config (`saved`, as its YAML reads) and `config`,
    as 'key: old -> new': those that shape a run's variables (its model, task types, optimizer and
    EMA) when `shaping`, the others (training settings) when not."""
    now = yaml.safe_load(to_yaml(config))
    flat_saved, flat_now = _flatten(saved), _flatten(now)
    changed = []
    for key in sorted(set(flat_saved) | set(flat_now)):
        shapes = _shapes_variables(key) and not key.endswith("dropout")
        if shapes == shaping and flat_saved.get(key) != flat_now.get(key):
            changed.append(f"{key}: {flat_saved.get(key)!r} -> {flat_now.get(key)!r}")
    return changed


def _shapes_variables(key):
    """Whether a flattened config key shapes a run's variables: a sub-task's model and type do, its
    data does not (a multitask resumes with other example counts or without validation)."""
    if key.startswith("task.tasks."):
        within = key.split(".", 3)[3] if key.count(".") >= 3 else ""
        return within.startswith("model.") or within == "type"
    shaping = ("task.model.", "task.type", "trainer.optimizer_config.optimizer.", "trainer.optimizer_config.ema")
    return key.startswith(shaping)


def _flatten(tree, prefix=""):
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    return {k: v for key, value in tree.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}


def _declared_type(config, key):
    """The annotation of field `key` of a dataclass config (None for a params dict)."""
    fields = {f.name: f.type for f in dataclasses.fields(config)} if dataclasses.is_dataclass(config) else {}
    return fields.get(key)


_KINDS = {bool: "true or false", int: "a number", float: "a number", str: "text", list: "a list such as [a, b]"}


def _check_kind(config, key, value, where):
    """Refuses a value of another kind than field `key` declares, when it declares one of _KINDS (or
    that or null; null stays where it is the default)."""
    declared = _declared_type(config, key)
    declared = {"int": int, "float": float, "str": str, "bool": bool}.get(declared, declared)
    if typing.get_origin(declared) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(declared) if a is not type(None)]
        optional = len(options) < len(typing.get_args(declared))
    else:
        options, optional = [declared], False
    kind = (typing.get_origin(options[0]) or options[0]) if len(options) == 1 else None
    if kind not in _KINDS or (value is None and (optional or getattr(config, key) is None)):
        return
    if kind in (int, float):
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        fits = isinstance(value, kind)
    if not fits:
        quote = f"; quote it for text: '{value}'" if kind is str and isinstance(value, (int, float)) else ""
        raise GardenError(f"config key '{shown(where)}' expects {_KINDS[kind]}, got {shown(repr(value))}{quote}")


def _refuse_other_types(value, where):
    """Refuses what YAML reads beyond JSON's types (dates, bytes, sets): a config holds none of them."""
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_other_types(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for item in value:
            _refuse_other_types(item, where)
    elif value is not None and not isinstance(value, (str, int, float)):
        kind = "a date" if isinstance(value, datetime.date) else "bytes" if isinstance(value, bytes) else None
        kind = kind or f"a {type(value).__name__}"  # a set, or !!omap's pairs
        raise GardenError(
            f"config key '{shown(where)}' holds {kind} ({shown(value)}) as YAML reads it; quote it for text"
        )


def _check(config, overrides, path=""):
    """Raises GardenError for the first unknown key or mistyped value in `overrides`."""
    keys = [k for k in vars(config) if k not in base_config.params_dict.ParamsDict.RESERVED_ATTR]
    for key, value in overrides.items():
        where = f"{path}{key}"
        if key not in keys:
            raise GardenError(f"unknown config key '{shown(where)}'{did_you_mean(key, keys, path)}")
        _refuse_unread(config, key, value, where)
        if key == "type" and isinstance(config, oneof.OneOfConfig) and value is not None:
            choices = [k for k in keys if k != "type"]
            if value not in choices:
                raise GardenError(f"unknown {where} '{shown(value)}'{did_you_mean(str(value), choices)}")
        current = getattr(config, key)
        if isinstance(current, base_config.Config) and not isinstance(value, dict):
            inside = sorted(k for k in vars(current) if k not in base_config.params_dict.ParamsDict.RESERVED_ATTR)
            example = f"; set one of them, for example --set {where}.{inside[0]}=..." if inside else ""
            raise GardenError(f"config key '{where}' is a group of keys, not {shown(repr(value))}{example}")
        if isinstance(current, ComponentConfig) and isinstance(value, dict):
            new_type = value.get("type", current.type)
            if not isinstance(new_type, str) or not new_type.isprintable():
                raise GardenError(f"config key '{where}.type' names a registered {key}, got {shown(repr(new_type))}")
            if new_type != current.type:  # a new part starts from its own defaults
                current.params = None
                current.params = _REGISTRIES[key].defaults(new_type)
                current.type = new_type
        if isinstance(current, base_config.Config) and isinstance(value, dict):
            _check(current, value, where + ".")
        elif isinstance(current, bool) and not isinstance(value, bool):
            raise GardenError(f"config key '{where}' expects true or false, got {value!r}")
        elif (
            isinstance(current, (int, float))
            and not isinstance(current, bool)
            and (value is None or isinstance(value, (str, bool, list, dict)))
        ):
            raise GardenError(f"config key '{where}' expects a number, got {value!r}")
        elif _declared_type(config, key) in (int, "int") and isinstance(value, float):
            if not value.is_integer():
                raise GardenError(f"config key '{where}' expects a whole number, got {value!r}")
            overrides[key] = int(value)
        elif current is None or isinstance(current, (str, list)):
            _check_kind(config, key, value, where)


def _positive(value, where):
    if not value > 0:
        raise GardenError(f"{where} must be positive, got {value!r}")


def _not_negative(value, where):
    if not value >= 0:
        raise GardenError(f"{where} must be 0 or more, got {value!r}")


def _check_watching(trainer):
    """The best checkpoint, early stopping and divergence recovery settings."""
    for key, mode in (
        ("best_checkpoint_metric_comp", trainer.best_checkpoint_metric_comp),
        ("early_stopping.mode", trainer.early_stopping.mode),
    ):
        if mode not in ("higher", "lower"):
            raise GardenError(f"trainer.{key} is 'higher' or 'lower' (which is better), got {mode!r}")
    _positive(trainer.early_stopping.patience, "trainer.early_stopping.patience")
    _not_negative(trainer.early_stopping.min_delta, "trainer.early_stopping.min_delta")
    _not_negative(trainer.recovery_max_trials, "trainer.recovery_max_trials")
    if not 0 < trainer.recovery_learning_rate_scale <= 1:
        raise GardenError(
            f"trainer.recovery_learning_rate_scale must be in (0, 1] (1: keep the rate), "
            f"got {trainer.recovery_learning_rate_scale}"
        )
    subdir = trainer.best_checkpoint_export_subdir
    taken = RESERVED
    if trainer.best_checkpoint_eval_metric and (not subdir or "/" in subdir or subdir in taken or subdir[0] == "."):
        raise GardenError(
            f"trainer.best_checkpoint_export_subdir must name a new folder of the run (not {', '.join(taken)}), "
            f"got {subdir!r}; the default is 'best'"
        )


def _check_lora(model):
    lora = model.lora
    _not_negative(lora.rank, "task.model.lora.rank")
    _not_negative(lora.alpha, "task.model.lora.alpha")
    if not 0 <= lora.dropout < 1:
        raise GardenError(f"task.model.lora.dropout is a rate in [0, 1); got {lora.dropout}")
    check_quantization(model.quantization)
    if lora.rank and model.trainable_backbone_blocks != -1:
        raise GardenError(
            "task.model.lora freezes the whole backbone and trains adapters; leave "
            "task.model.trainable_backbone_blocks at -1, or set task.model.lora.rank=0"
        )


def check_values(config):
    """Refuses hyperparameters that cannot train: steps, intervals, batch sizes, example counts and
    sequence lengths that are not positive, a warmup of no steps, negative learning rates, and
    moving-average rates (momentum, beta_1, beta_2, rho) outside [0, 1). (A rate of 0 measures a
    loss without moving the weights; a warmup longer than `train_steps`, as a shortened trial run has,
    never reaches the peak rate.)"""
    trainer = config.trainer
    for key in ("train_steps", "steps_per_loop", "checkpoint_interval", "validation_interval"):
        _positive(getattr(trainer, key), f"trainer.{key}")
    _positive(trainer.gradient_accumulation_steps, "trainer.gradient_accumulation_steps")
    _positive(trainer.max_to_keep, "trainer.max_to_keep")
    _check_watching(trainer)
    _positive(config.task.model.tokenizer.sequence_length, "task.model.tokenizer.sequence_length")
    _not_negative(config.task.l2_weight_decay, "task.l2_weight_decay")
    _not_negative(config.task.model.backbone_learning_rate_multiplier, "task.model.backbone_learning_rate_multiplier")
    if config.task.model.trainable_backbone_blocks < -1:
        raise GardenError(
            "task.model.trainable_backbone_blocks is a number of blocks, 0 (freeze the backbone) or -1 (freeze "
            f"nothing); got {config.task.model.trainable_backbone_blocks}"
        )
    _check_lora(config.task.model)
    subtasks = [(f"task.tasks.{n}", t) for n, t in subtask_configs(config.task).items()]
    for path, task in subtasks:
        model = task.model
        if model.lora.rank or model.quantization:
            raise GardenError(
                f"{path}.model.lora and .quantization have no effect: a multitask's sub-tasks share task.model's "
                "backbone; set task.model.lora or task.model.quantization"
            )
    for path, task in [("task", config.task), *subtasks]:
        if task.train_data.dataset:
            _positive(task.train_data.global_batch_size, f"{path}.train_data.global_batch_size")
        for split in ("train_data", "validation_data", "test_data"):
            data = getattr(task, split, None)
            if data is None or not data.dataset:
                continue
            check_data(data, f"{path}.{split}")
    optimization = trainer.optimizer_config
    if optimization.optimizer.type:
        where = f"trainer.optimizer_config.optimizer.{optimization.optimizer.type}"
        for key, value in optimization.optimizer.get().as_dict().items():
            if key in ("momentum", "beta_1", "beta_2", "rho") and value is not None and not 0 <= value < 1:
                raise GardenError(f"{where}.{key} must be at least 0 and below 1, got {value!r}")
    if optimization.learning_rate.type:
        where = f"trainer.optimizer_config.learning_rate.{optimization.learning_rate.type}"
        for key, value in optimization.learning_rate.get().as_dict().items():
            if key in ("learning_rate", "initial_learning_rate"):
                _not_negative(value, f"{where}.{key}")
            if key == "decay_steps":
                _positive(value, f"{where}.{key}")
            if key == "values":
                for index, rate in enumerate(value or ()):
                    _not_negative(rate, f"{where}.values[{index}]")
    if optimization.warmup.type:
        _positive(
            optimization.warmup.get().warmup_steps,
            f"trainer.optimizer_config.warmup.{optimization.warmup.type}.warmup_steps",
        )


def apply_overrides(config, overrides):
    """Applies a nested dict of overrides with strict key and type checks."""
    if not overrides:
        return config
    if getattr(config, "_locked", False):
        raise GardenError("this config is locked; apply overrides before the run starts")
    _refuse_other_types(overrides, "")
    _check(config, overrides)
    config.override(overrides, is_strict=True)
    return config


def configured(name=None, config_files=(), sets=(), overrides=(), tiny=False) -> tuple["ExperimentConfig", list[dict]]:
    """Experiment `name`'s config (or the files' task.name's), its tiny variant's `--set` strings
    first where `tiny`, then the files, then the `--set` strings `sets`, then the nested dicts
    `overrides` applied in order, not yet resolved against the files it names
    (garden.resolve.experiment_config does that); and the overrides, in that order."""
    file_overrides = [read_yaml(path) for path in config_files]
    given = [parse_set(s) for s in sets] + list(overrides)
    overrides = file_overrides + given
    registry.import_modules(module for o in overrides for module in _imports(o))
    if name is None:
        names = [f.get("task", {}).get("name") for f in file_overrides]
        name = next((n for n in reversed(names) if n), None)
    if name is None:
        raise GardenError("name an experiment (see 'garden list') or pass --config with task.name set")
    for override in given:
        task = override.get("task")
        if isinstance(task, dict) and "name" in task and task["name"] != name:
            raise GardenError(
                f"task.name is the experiment's name ({name}), not {shown(repr(task['name']))}; name "
                "another experiment (see 'garden list') rather than setting it"
            )
    config = registry.EXPERIMENTS.get(name)()
    if tiny:
        overrides = [parse_set(s) for s in tiny_sets(name)] + overrides
    for override in overrides:
        apply_overrides(config, override)
    config.task.name = name
    return config, overrides


def checked_and_locked(config):
    """`config` once its values are checked (Model Garden's `validate`, then `check_values`), locked."""
    config.validate()
    check_values(config)
    _lock(config)
    return config


def _imports(override):
    """The module names of an override's `imports`: a list of names."""
    modules = override.get("imports") or []
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise GardenError(f"imports is a list of module names, such as [my_models]; got {shown(repr(modules))}")
    return modules


def _lock(config):
    """Locks `config` and every nested config (Model Garden's `lock()` is shallow)."""
    config.lock()
    for value in vars(config).values():
        if isinstance(value, base_config.params_dict.ParamsDict):
            _lock(value)
