"""Divergence recovery (Model Garden's `loss_upper_bound`, `recovery_begin_steps` and
`recovery_max_trials`): a loop whose loss diverged is undone by restoring the last checkpoint, and
training reads on past the batches that diverged, at a lower learning rate if asked."""

import math

import numpy as np
import tensorflow as tf
from keras import ops


class Recovery(tf.Module):
    """What rollbacks change, kept in the trainer's checkpoints so that a resumed run reads the same
    batches at the same rate as the run that rolled back: the training batches (steps) that rollbacks
    skipped, per sub-task, and the factor on the learning rate. `trials` counts this process's
    rollbacks, as Model Garden does."""

    def __init__(self, trainer_config, num_tasks: int):
        super().__init__()
        self.config = trainer_config
        self.skipped = tf.Variable(tf.zeros([num_tasks], tf.int64), trainable=False)
        self.learning_rate_scale = tf.Variable(1.0, trainable=False)
        self.trials = 0

    def scale_learning_rate_of(self, optimizer) -> None:
        """Makes `optimizer`'s learning rate its schedule's times `learning_rate_scale` (weight
        decay, which Keras scales by the rate, follows)."""
        if self.config.recovery_learning_rate_scale == 1:
            return
        inner = getattr(optimizer, "inner_optimizer", optimizer)  # inside a LossScaleOptimizer
        scheduled = inner._get_current_learning_rate
        inner._get_current_learning_rate = lambda: ops.multiply(scheduled(), self.learning_rate_scale)

    def divergence(self, loss: float, step: int) -> str | None:
        """Why the loss of the loop that ended at `step` counts as diverged, or None."""
        if not math.isfinite(loss):
            return f"loss became {loss}"
        bound = self.config.loss_upper_bound
        if step >= self.config.recovery_begin_steps and loss > bound:
            return f"loss {loss:.4g} rose above trainer.loss_upper_bound ({bound:g})"
        return None

    def batches_read(self, schedule: np.ndarray, step: int) -> np.ndarray:
        """Per sub-task, the training batches read by `step`: those the schedule gave it, and those skipped."""
        return np.bincount(schedule[:step], minlength=len(self.skipped.numpy())) + self.skipped.numpy()

    def roll_back(self, restore, schedule: np.ndarray, step: int) -> int:
        """Calls `restore` (which restores the last checkpoint and returns its step), then counts the
        batches read since that step as skipped and scales the rate once more; returns that step."""
        read, scale = self.batches_read(schedule, step), float(self.learning_rate_scale.numpy())
        restored = restore()
        self.skipped.assign(read - np.bincount(schedule[:restored], minlength=len(read)))
        self.learning_rate_scale.assign(scale * self.config.recovery_learning_rate_scale)
        self.trials += 1
        return restored
