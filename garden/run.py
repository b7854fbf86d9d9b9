"""Loading a run folder (garden/run_folder.py) for inference without the trainer: its config, labels
and inference weights, not the optimizer, loss scale or training data."""

import contextlib
import os
import shutil

import keras
import tensorflow as tf

from garden.config import check_quantization
from garden.errors import GardenError, did_you_mean
from garden.models.lora import merged_values, set_base_weights
from garden.models.quantization import quantize_backbones, weight_bytes
from garden.registry import TASKS
from garden.resolve import experiment_config
from garden.run_folder import FolderLock, RunFolder, disk_full, restore


def run_config(run_dir):
    """The experiment config saved in `run_dir`, its assets read from the run folder."""
    folder = RunFolder(run_dir)
    if not folder.started():
        raise GardenError(
            f"{run_dir} is not a run folder (no config.yaml); train one with 'garden train NAME --run-dir {run_dir}'"
        )
    return experiment_config(config_files=[folder.config_path], overrides=[folder.asset_overrides()])


@contextlib.contextmanager
def float32_models():
    """Models built within are float32, whatever the global dtype policy; it is left as it was."""
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(policy)


class Run:
    """A run folder loaded for evaluation and export, in float32, from inference weights (EMA applied
    when the run kept EMA): `checkpoint` 'best' (the best validation's, which a run keeps when
    `trainer.best_checkpoint_eval_metric` is set), 'latest', a step, or None for the best when there
    is one and else the latest; `weights` says which. `head` picks the sub-task of a multitask that
    `task` and `model` stand for; a run with one task needs none. A LoRA run's `model` is built
    without adapters and holds them merged into its kernels, so every artifact is a plain model
    (on a quantized base the adapters stay apart: merged, they would be quantized too)."""

    def __init__(self, run_dir: str, head: str | None = None, checkpoint: str | None = None):
        self.run_dir, self.folder = run_dir, RunFolder(run_dir)
        self.config = run_config(run_dir)
        with float32_models():
            trained = TASKS.get(self.config.task.type)(self.config.task)
            tasks = trained.subtasks()
            self.head = self._pick(head, list(tasks))
            self.task = tasks[self.head]
            picked = self._pick_weights(checkpoint)  # a missing checkpoint is named before the model is built
            labels = self.folder.read_labels()
            self.label_names = labels[self.head] if isinstance(labels, dict) else labels
            self._trained = trained
            models = trained.build_models()
            quantize_backbones(models, self.config.task.model.quantization)
            self._checkpoint = tf.train.Checkpoint(model=trained.checkpointed(models))
            self._adapted = None
            if self.config.task.model.lora.rank and not self.config.task.model.quantization:  # merged into the base
                self._adapted = models
                plain = TASKS.get(self.config.task.type)(self.config.task.replace(model={"lora": {"rank": 0}}))
                models = plain.build_models()
        self._models = models
        self.model = models[self.head]
        self._restore(*picked)

    def load(self, checkpoint: str | int | None = None) -> None:
        """Restores the weights that `checkpoint` names (as the constructor's) into the model."""
        self._restore(*self._pick_weights(checkpoint))

    def _restore(self, path, weights):
        self.checkpoint_path, self.weights = path, weights
        self.step = int(path.rsplit("-", 1)[-1])
        restore(self._checkpoint, path).assert_consumed()
        for name, model in (self._adapted or {}).items():
            set_base_weights(self._models[name], merged_values(model))

    def check_quantizable(self, mode: str, out_dir: str) -> None:
        """Refuses in one line a `quantize` that cannot be done."""
        check_quantization(mode, "--mode")
        if self.config.task.model.quantization:
            raise GardenError(f"{self.run_dir} is quantized already ({self.config.task.model.quantization})")
        if os.path.exists(out_dir):
            raise GardenError(f"--out {out_dir} exists; name a new folder")

    def quantize(self, mode: str, out_dir: str) -> tuple[int, int]:
        """Quantizes the loaded weights to `mode` in place and writes them as the run folder `out_dir`
        (config, labels, assets, model/ckpt-STEP; whole or not at all); returns the bytes of the
        model's weights before and after. The Run is spent: load `out_dir` to use it. It is written in
        OUT.partial/run and renamed into place, under a lock on OUT.partial: a second quantize into the
        same `out_dir` is refused meanwhile, naming the first, instead of clearing its staging."""
        staging = out_dir.rstrip("/") + ".partial"
        try:
            with FolderLock(staging, "quantize", flag="--out"):
                return self._quantize(mode, out_dir, os.path.join(staging, "run"))
        finally:
            with contextlib.suppress(OSError):  # left by a SIGKILLed quantize, now empty
                os.rmdir(staging)

    def _quantize(self, mode, out_dir, written):
        self.check_quantizable(mode, out_dir)
        before = weight_bytes(self.model)
        quantize_backbones(self._models, mode)
        if weight_bytes(self.model) >= before:
            raise GardenError(
                f"backbone {self.config.task.model.backbone.type} has no dense, einsum or embedding layer that Keras "
                "quantizes; nothing was written"
            )
        config = self.config.replace(task={"model": {"quantization": mode, "lora": {"rank": 0}}})
        shutil.rmtree(written, ignore_errors=True)  # a SIGKILLed quantize's
        try:
            os.makedirs(written)
            staged = RunFolder(written)
            staged.write_config(config)
            labels = self.folder.read_labels()
            if labels is not None:
                staged.write_labels(labels)
            staged.write_assets(self._trained.assets())
            checkpoint = tf.train.Checkpoint(model=self._trained.checkpointed(self._models))
            tf.train.CheckpointManager(checkpoint, staged.weights_dir, max_to_keep=1).save(checkpoint_number=self.step)
            os.rename(written, out_dir)
        except BaseException as error:  # a failure, a full disk, SIGTERM: nothing half-written stays
            shutil.rmtree(written, ignore_errors=True)
            if isinstance(error, OSError) and os.path.exists(out_dir):  # made while this one quantized
                raise GardenError(f"--out {out_dir} exists; name a new folder") from None
            if disk_full(error):
                raise GardenError(
                    f"no space left on the disk of {out_dir}: the quantized run needs about "
                    f"{weight_bytes(self.model) / 2**20:.1f} MiB; free space there, or pass --out on another disk"
                ) from None
            raise
        return before, weight_bytes(self.model)

    def _pick_weights(self, checkpoint):
        trainer = self.config.trainer
        return self.folder.pick_weights(
            checkpoint, trainer.best_checkpoint_export_subdir, trainer.best_checkpoint_eval_metric
        )

    @staticmethod
    def heads(run_dir: str) -> list[str]:
        """The sub-task names of a multi-task run folder; empty for a run of one task."""
        labels = RunFolder(run_dir).read_labels()
        return list(labels) if isinstance(labels, dict) else []

    @staticmethod
    def _pick(head, names):
        if len(names) == 1:
            if head and head != names[0]:
                raise GardenError(f"--head {head}: this run trained the single task '{names[0]}'; leave --head out")
            return names[0]
        if not head:
            raise GardenError(f"this multi-task run has heads {', '.join(names)}; pick one with --head NAME")
        if head not in names:
            raise GardenError(f"this multi-task run has no head '{head}'{did_you_mean(head, names)}")
        return head
