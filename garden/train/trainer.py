"""The training loop (Model Garden's Orbit design, in Keras 3).

`steps_per_loop` steps run inside one `tf.function` under the strategy; each replica
computes its loss averaged over the global batch and the Keras 3 optimizer all-reduces
the gradients. Between loops the host checks the loss, writes summaries, checkpoints
and evaluates. Only the chief writes; a run folder with checkpoints is resumed.
"""

import json
import math
import os
import time

import keras
import tensorflow as tf

from garden.config import save_yaml
from garden.data.pipeline import train_dataset
from garden.errors import GardenError
from garden.optimizers import build_optimizer
from garden.registry import TASKS
from garden.train import precision
from garden.train.checkpoints import Checkpoints, ema_weights, fingerprint
from garden.train.evaluate import evaluate
from garden.train.strategy import is_chief
from garden.train.summaries import Reporter


class Trainer:
    def __init__(self, config, run_dir, strategy):
        self.config = config
        self.run_dir = run_dir
        self.strategy = strategy
        self.chief = is_chief(strategy)
        runtime = config.runtime
        keras.utils.set_random_seed(runtime.seed)
        if runtime.deterministic:
            tf.config.experimental.enable_op_determinism()
        self.policy = precision.set_policy(runtime.mixed_precision_dtype)
        self.task = TASKS.get(config.task.type)(config.task)
        with strategy.scope():
            self.model = self.task.build_model()
            optimizer = build_optimizer(config.trainer.optimizer_config)
            self.optimizer = precision.wrap_optimizer(optimizer, self.policy, runtime.loss_scale)
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.loss_fn = self.task.build_loss()
        checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step)
        self.checkpoints = Checkpoints(
            checkpoint, os.path.join(run_dir, "checkpoints"), self.chief, config.trainer.max_to_keep
        )

    # ---- the compiled step ----------------------------------------------------------------------

    def _make_loop(self, global_batch_size):
        model, optimizer, loss_fn, strategy = self.model, self.optimizer, self.loss_fn, self.strategy

        def gradients(features, labels):
            with tf.GradientTape() as tape:
                outputs = model(features, training=True)
                loss = tf.nn.compute_average_loss(loss_fn(labels, outputs), global_batch_size=global_batch_size)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
                scaled = optimizer.scale_loss(loss)
            return loss, tape.gradient(scaled, model.trainable_variables)

        if self.config.runtime.enable_xla:  # a nested function: no cross-replica sync (e.g. synchronized BN) inside
            gradients = tf.function(gradients, jit_compile=True)

        def replica_step(features, labels):
            loss, grads = gradients(features, labels)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        @tf.function
        def loop(iterator, num_steps):
            total = tf.constant(0.0)
            for _ in tf.range(num_steps):
                features, labels = next(iterator)
                total += strategy.reduce("SUM", strategy.run(replica_step, (features, labels)), axis=None)
                self.step.assign_add(1)
            return total / tf.cast(num_steps, tf.float32)

        return loop

    # ---- the loop ---------------------------------------------------------------------------------

    def train(self):
        """Trains to `trainer.train_steps`, resuming from the newest checkpoint; returns final metrics."""
        trainer = self.config.trainer
        data = self.config.task.train_data
        if data.global_batch_size <= 0 or trainer.train_steps <= 0:
            raise GardenError("set task.train_data.global_batch_size and trainer.train_steps to positive numbers")
        for name in ("checkpoint_interval", "validation_interval"):
            if getattr(trainer, name) % trainer.steps_per_loop:
                raise GardenError(f"trainer.{name} must be a multiple of trainer.steps_per_loop ({trainer.steps_per_loop})")
        train_examples = self.task.load(data)
        validation = self.config.task.validation_data
        validation_examples = self.task.load(validation, train_examples.label_names) if validation.dataset else None
        resumed = self.checkpoints.restore_latest()
        if not resumed:
            self.task.initialize(self.model)
        start = int(self.step.numpy())
        os.makedirs(self.run_dir, exist_ok=True)
        if self.chief:
            save_yaml(self.config, os.path.join(self.run_dir, "config.yaml"))
            with open(os.path.join(self.run_dir, "labels.json"), "w") as f:
                json.dump(train_examples.label_names, f)
        reporter = Reporter(self.run_dir, self.chief, trainer.train_steps)
        if resumed:
            reporter.message(f"resumed from {resumed} at step {start}")
        dataset = self.strategy.distribute_datasets_from_function(
            lambda ctx: train_dataset(
                train_examples, data.global_batch_size, data.seed or self.config.runtime.seed, start, ctx, self.task.preprocess
            )
        )
        iterator = iter(dataset)
        loop = self._make_loop(data.global_batch_size)
        results = {}
        try:
            while start < trainer.train_steps:
                num_steps = min(trainer.steps_per_loop, trainer.train_steps - start)
                began = time.perf_counter()
                loss = float(loop(iterator, tf.constant(num_steps)))
                elapsed = time.perf_counter() - began
                start = int(self.step.numpy())
                if not math.isfinite(loss):
                    raise GardenError(
                        f"loss became {loss} by step {start}; stopped without saving, the last good checkpoint is "
                        f"{self.checkpoints.latest or 'none'}; lower the learning rate or set global_clipnorm"
                    )
                reporter.scalars("train", start, {
                    "loss": loss,
                    "learning_rate": float(self.optimizer.learning_rate),
                    "examples_per_second": num_steps * data.global_batch_size / elapsed,
                })
                done = start >= trainer.train_steps
                if done or start % trainer.checkpoint_interval == 0:
                    self.checkpoints.save(start)
                if validation_examples is not None and (done or start % trainer.validation_interval == 0):
                    results = self.evaluate(validation_examples, validation.global_batch_size or data.global_batch_size)
                    reporter.scalars("validation", start, results)
            reporter.message(f"step {start}: weights fingerprint {fingerprint(self.model.variables)}")
        finally:
            reporter.close()
            self.checkpoints.close()
        return results

    def evaluate(self, examples, batch_size):
        with ema_weights(self.optimizer, self.model.trainable_variables):
            return evaluate(self.task, self.model, examples, batch_size)
