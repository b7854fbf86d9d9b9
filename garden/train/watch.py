"""Watching one validation metric through a run: the best checkpoint (Model Garden's
`best_checkpoint_*`) and early stopping (jiant's `no_improvements_for_n_evals`)."""

import math

import tensorflow as tf

from garden.errors import GardenError, did_you_mean

BEST_CHECKPOINT, EARLY_STOPPING = "best_checkpoint", "early_stopping"  # the Watches' names in trainer checkpoints


class Watch(tf.Module):
    """The best value of validation `metric` so far, the step it came from, and how many validations
    in a row have not improved on it by more than `min_delta` (`mode`: 'higher' or 'lower' is
    better). Its variables go into the trainer's checkpoints, so a resumed run counts on from where
    its checkpoint left off. `key` is the config key that set the metric, for messages."""

    def __init__(self, metric: str, mode: str, key: str, min_delta: float = 0.0):
        super().__init__()
        self.metric, self.mode, self.key, self.min_delta = metric, mode, key, min_delta
        self.best = tf.Variable(math.nan, dtype=tf.float64, trainable=False)
        self.best_step = tf.Variable(-1, dtype=tf.int64, trainable=False)
        self.stale = tf.Variable(0, dtype=tf.int64, trainable=False)

    def update(self, step: int, metrics: dict) -> bool:
        """Counts the validation `metrics` of `step`; True when they are the best so far."""
        if self.metric not in metrics:
            raise GardenError(
                f"{self.key} is '{self.metric}', which validation does not report"
                f"{did_you_mean(self.metric, list(metrics))}"
            )
        value, best = float(metrics[self.metric]), float(self.best.numpy())
        if self.mode == "higher":
            improved = value > best + self.min_delta
        else:
            improved = value < best - self.min_delta
        if improved or math.isnan(best):
            self.best.assign(value)
            self.best_step.assign(step)
            self.stale.assign(0)
            return True
        self.stale.assign_add(1)
        return False

    def describe(self) -> str:
        """'accuracy 0.9712 at step 40'."""
        return f"{self.metric} {float(self.best.numpy()):.6g} at step {int(self.best_step.numpy())}"


def stale_validations(checkpoint_path: str) -> int:
    """How many validations in a row had not improved when the trainer wrote `checkpoint_path`, read
    through the checkpoint's object graph (0 where the run had no early stopping)."""
    watch = Watch("", "higher", EARLY_STOPPING)
    tf.train.Checkpoint(**{EARLY_STOPPING: watch}).read(checkpoint_path).expect_partial()
    return int(watch.stale.numpy())
