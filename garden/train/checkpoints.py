"""Checkpoints: where each worker writes, restoring with clear errors, EMA weights, fingerprints."""

import contextlib
import glob
import hashlib
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from garden.run_folder import read_checkpoint, restore, write_best_info


class Checkpoints:
    """A `tf.train.CheckpointManager` in `directory` on the chief, in a removed temp folder elsewhere.
    Every worker restores from `directory` (the run folder all workers see, as in Model Garden), so
    restarted workers all resume from the chief's newest checkpoint.

    A write is atomic: TensorFlow writes into `ckpt-N_temp/`, renames the finished files, then
    renames the `checkpoint` state file, so a killed write leaves the previous checkpoint as the
    latest, and the chief removes what the killed write left behind when it starts again."""

    def __init__(
        self, objects: dict, directory: str, chief: bool, max_to_keep: int, weights=None, optional=(), best_dir=None
    ):
        """`objects` are what each checkpoint holds (a `tf.train.Checkpoint`'s keyword arguments);
        `optional` names those that checkpoints of an older Garden lack (they keep their fresh values
        when such a checkpoint resumes). `weights` is (a checkpoint of the model alone, its folder):
        the inference weights that `save_weights` writes beside each training checkpoint (None: none),
        and that `save_best` writes to `best_dir`."""
        self._folders = [directory] + ([weights[1]] if weights else []) + ([best_dir] if best_dir else [])
        if chief:
            self.remove_partial()
        self._temp = None if chief else tempfile.mkdtemp(prefix="garden-worker-")
        self.objects, self.optional = objects, set(optional)
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self._temp or directory, max_to_keep=max_to_keep)
        self.weights, self.best_dir = None, best_dir
        self._weights_checkpoint = weights[0] if weights else None
        if weights:
            weights_directory = os.path.join(self._temp, "model") if self._temp else weights[1]
            self.weights = tf.train.CheckpointManager(weights[0], weights_directory, max_to_keep=max_to_keep)
        self.directory = directory

    def remove_partial(self) -> None:
        """Removes what a killed or failed write left (`ckpt-N_temp/` folders)."""
        for folder in self._folders:
            for partial in glob.glob(os.path.join(glob.escape(folder), "ckpt-*_temp")):
                shutil.rmtree(partial, ignore_errors=True)

    @property
    def latest(self):
        """The chief's newest checkpoint, or None."""
        return tf.train.latest_checkpoint(self.directory)

    def restore_latest(self):
        """Restores the newest checkpoint if there is one; returns its path or None."""
        path = self.latest
        if path:
            checkpoint = self.checkpoint
            if self.optional:
                saved = {name.split("/")[0] for name, _ in read_checkpoint(tf.train.list_variables, path)}
                held = {
                    name: value for name, value in self.objects.items() if name in saved or name not in self.optional
                }
                checkpoint = tf.train.Checkpoint(**held)
            restore(checkpoint, path).assert_existing_objects_matched()
        return path

    def save(self, step):
        return self.manager.save(checkpoint_number=step)

    def save_weights(self, step):
        return self.weights.save(checkpoint_number=step)

    def save_best(self, step, metrics):
        """Writes the inference weights of `step` to the best folder with its validation `metrics` in
        info.json, then removes the best checkpoint it replaces; a killed write leaves the previous one."""
        folder = os.path.join(self._temp, "best") if self._temp else self.best_dir
        os.makedirs(folder, exist_ok=True)
        _ = self._weights_checkpoint.save_counter  # created, so the file holds what RUN/model/'s checkpoints hold
        self._weights_checkpoint.write(os.path.join(folder, f"ckpt-{step}"))
        if self._temp:
            return
        write_best_info(folder, step, metrics)
        for path in glob.glob(os.path.join(glob.escape(folder), "ckpt-*")):
            if os.path.isfile(path) and not os.path.basename(path).startswith(f"ckpt-{step}."):
                os.remove(path)

    def has_weights(self, step):
        return self.weights.latest_checkpoint == os.path.join(self.weights.directory, f"ckpt-{step}")

    def close(self):
        if self._temp:
            shutil.rmtree(self._temp, ignore_errors=True)


def ema_optimizer(optimizer):
    """The optimizer keeping EMA weights (inside a LossScaleOptimizer), or None when EMA is off."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return inner if inner.use_ema else None


@contextlib.contextmanager
def ema_weights(optimizer, variables):
    """Within the block, `variables` hold their exponential moving averages (when EMA is on)."""
    ema = ema_optimizer(optimizer)
    if ema is None:
        yield
        return
    saved = [v.numpy() for v in variables]
    ema.finalize_variable_values(variables)
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)


def fingerprint(variables):
    """A short sha256 of the variables' values: equal on two workers iff their weights are equal."""
    digest = hashlib.sha256()
    for variable in variables:
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()[:16]
