"""The resolver: an experiment's config (garden.config, the schema) completed from the files it names,
above data/ and models/, which read them: the dataset kind an input path calls for, and the backbone
sizes and tokenizer settings a checkpoint folder declares."""

import os

from garden import registry
from garden.config import checked_and_locked, configured, subtask_configs
from garden.data import checkpoints
from garden.data.tokenizers import folder_lowercase, folder_tokenizer_type, tokenizer_family
from garden.errors import GardenError
from garden.models import hf_import
from garden.run_folder import RunFolder


def experiment_config(name=None, config_files=(), sets=(), overrides=(), tiny=False):
    """The resolved, locked config of experiment `name` (or of the files' task.name), or of its tiny
    variant where `tiny`: the files, then the `--set` strings `sets`, then the nested dicts
    `overrides` applied in order."""
    config, overrides = configured(name, config_files, sets, overrides, tiny)
    _infer_datasets(config)
    _pin_hub_checkpoint(config.task)
    _sizes_from_checkpoint(config, overrides)
    return checked_and_locked(config)


def _infer_datasets(config):
    """A data config with a `tfds_name` or an `input_path` and no `dataset` streams it: a TFDS dataset
    as `tfds`, a folder as an `image_folder`, files and globs as `tfrecord` shards."""
    for path, task in [
        ("task", config.task),
        *((f"task.tasks.{n}", t) for n, t in subtask_configs(config.task).items()),
    ]:
        for split in ("train_data", "validation_data", "test_data"):
            data = getattr(task, split)
            if data.tfds_name and data.input_path:
                raise GardenError(
                    f"{path}.{split} sets both input_path and tfds_name; keep the one the data comes from"
                )
            if data.tfds_name and not data.dataset:
                data.dataset = "tfds"
            elif data.input_path and not data.dataset:
                data.dataset = "image_folder" if os.path.isdir(data.input_path) else "tfrecord"


def _pin_hub_checkpoint(task):
    """A hub name in task.init_checkpoint fetched (once: the hub's library caches it) and replaced by the
    exact commit or version it names now, with its weights' sha256 recorded beside it. A name already
    pinned and recorded (a run's config) is left as it is: loading it fetches it where needed and checks
    its bytes; eval and export of the run need neither."""
    reference, recorded = getattr(task, "init_checkpoint", ""), getattr(task, "init_checkpoint_sha256", "")
    if recorded and not reference:
        raise GardenError("task.init_checkpoint_sha256 is set and task.init_checkpoint is empty; clear it")
    checkpoints.check_record(recorded)
    if not checkpoints.is_hub_name(reference) or (recorded and checkpoints.is_pinned(reference)):
        return
    folder = checkpoints.checkpoint_dir(reference, recorded)
    task.init_checkpoint = checkpoints.pinned(reference, folder)
    task.init_checkpoint_sha256 = recorded or checkpoints.weights_sha256(folder)


def _sizes_from_checkpoint(config, overrides):
    """The backbone's sizes from the checkpoint folder in task.init_checkpoint (Hugging Face's
    config.json or a KerasHub preset's), where no override sets them: a 24-layer GPT-2 folder trains
    as one without listing its sizes. An override that disagrees stays, and loading refuses it. The
    tokenizer kind too, where the folder's files call for another than the backbone's default (Llama
    3's tokenizer.json), and whether a WordPiece tokenizer lowercases (a cased BERT's folder says no;
    for a static table, the folder it was distilled into)."""
    folder = checkpoints.cached_dir(getattr(config.task, "init_checkpoint", ""))
    model = getattr(config.task, "model", None)
    backbone = getattr(getattr(model, "backbone", None), "type", "")
    if backbone not in registry.BACKBONES.names():
        return
    family, tokenizer_folder = tokenizer_family(model.backbone)
    if model.tokenizer.lowercase is None:
        model.tokenizer.lowercase = folder_lowercase(family, tokenizer_folder or folder, model.tokenizer.type)
    if not os.path.isdir(folder) or RunFolder(folder).started():  # a Garden run's backbone is this config's to size
        return

    def set_here(*keys):
        found = set()
        for node in overrides:
            for key in keys:
                node = node.get(key) if isinstance(node, dict) else None
            found.update(node if isinstance(node, dict) else ())
        return found

    sizes = hf_import.checkpoint_sizes(model.backbone.type, folder)
    given = set_here("task", "model", "backbone", "params")
    model.backbone.params.override({k: v for k, v in sizes.items() if k not in given}, is_strict=True)
    if "type" not in set_here("task", "model", "tokenizer"):
        model.tokenizer.type = folder_tokenizer_type(model.backbone.type, folder) or model.tokenizer.type
