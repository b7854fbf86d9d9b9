"""The training loop (Model Garden's Orbit design, in Keras 3).

`steps_per_loop` steps run inside one `tf.function` under the strategy; each replica
computes its loss averaged over the global batch and the Keras 3 optimizer all-reduces
the gradients; with `gradient_accumulation_steps` k, each replica sums the gradients of k
micro-batches of a global batch before one optimizer step. Between loops the host checks the
loss, writes summaries, checkpoints and evaluates. Only the chief writes; a run folder with
checkpoints is resumed. SIGTERM on any worker makes all of them write a checkpoint at the end of
the current loop and stop, so a preempted job resumes with no step lost or repeated.
"""

import contextlib
import json
import math
import os
import re
import shutil
import signal
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from garden.config import save_yaml
from garden.data import soft_targets
from garden.data.pipeline import train_dataset
from garden.errors import GardenError
from garden.optimizers import build_optimizer
from garden.registry import TASKS
from garden.tasks.multitask import build_models, checkpointed, subtasks, trainable_variables
from garden.train import precision
from garden.train.checkpoints import Checkpoints, ema_weights, fingerprint
from garden.train.evaluate import evaluate
from garden.train.strategy import is_chief
from garden.train.summaries import Reporter


@contextlib.contextmanager
def sigterm_received():
    """A list that gains an entry when SIGTERM (a preemption notice) arrives within the block; the
    trainer checks it between loops, so a notice never interrupts a step or a checkpoint write."""
    received = []
    if threading.current_thread() is not threading.main_thread():  # only the main thread may handle signals
        yield received
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def lost_workers(checkpoints):
    """Turns the error that the collectives raise once a worker has died (no heartbeat for about
    10 s) into one line that says how to resume."""
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.AbortedError) as error:
        tasks = sorted(set(re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", str(error))))
        gone = ", ".join(f"{job} {index}" for job, index in tasks) or str(error).strip().splitlines()[0][:200]
        raise GardenError(
            f"training stopped: lost {gone}; restart every worker with the same command to resume from "
            f"{checkpoints.latest or 'the start (no checkpoint yet)'}"
        ) from None


class Trainer:
    def __init__(self, config, run_dir, strategy):
        self.config = config
        self.run_dir = run_dir
        self.strategy = strategy
        self.chief = is_chief(strategy)
        runtime = config.runtime
        if runtime.enable_xla and config.task.model.backbone.params.as_dict().get("padding_free"):
            raise GardenError(
                "task.model.backbone.params.padding_free=true cannot be compiled by XLA (its token count changes "
                "with every batch); set runtime.enable_xla=false or padding_free=false"
            )
        keras.utils.set_random_seed(runtime.seed)
        if runtime.deterministic:
            tf.config.experimental.enable_op_determinism()
        self.policy = precision.set_policy(runtime.mixed_precision_dtype)
        self.task = TASKS.get(config.task.type)(config.task)
        self.tasks = subtasks(self.task)
        with strategy.scope():
            self.models = build_models(self.task)
            self.variables = trainable_variables(self.models)
            optimizer = build_optimizer(config.trainer.optimizer_config)
            self.optimizer = precision.wrap_optimizer(optimizer, self.policy, runtime.loss_scale)
            self.optimizer.build(self.variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self._all_sum = tf.function(
            lambda value: strategy.reduce("SUM", strategy.run(tf.identity, (value,)), axis=None)
        )
        checkpoint = tf.train.Checkpoint(model=checkpointed(self.models), optimizer=self.optimizer, step=self.step)
        self.checkpoints = Checkpoints(
            checkpoint, os.path.join(run_dir, "checkpoints"), self.chief, config.trainer.max_to_keep
        )

    @property
    def model(self):
        """The model of a single-task run."""
        return self.models[""]

    # ---- the compiled step ----------------------------------------------------------------------

    def _make_loop(self, model, loss_fn, global_batch_size):
        optimizer, strategy = self.optimizer, self.strategy
        micro_batches = self.config.trainer.gradient_accumulation_steps

        def gradients(features, labels):
            with tf.GradientTape() as tape:
                outputs = model(features, training=True)
                loss = tf.nn.compute_average_loss(loss_fn(labels, outputs), global_batch_size=global_batch_size)
                if model.losses:  # once per global batch
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses)) / micro_batches
                scaled = optimizer.scale_loss(loss)
            return loss, tape.gradient(scaled, model.trainable_variables)

        if self.config.runtime.enable_xla:  # a nested function: no cross-replica sync (e.g. synchronized BN) inside
            gradients = tf.function(gradients, jit_compile=True)

        def replica_step(batches):
            """One optimizer step on the gradients summed over the micro-batches of one global batch."""
            total, summed = 0.0, None
            for features, labels in batches:
                loss, grads = gradients(features, labels)
                total += loss
                summed = grads if summed is None else [g if s is None else s + g for s, g in zip(summed, grads)]
            # a head may leave backbone parts unused (BERT's pooler under a token head): no gradient there
            optimizer.apply_gradients([(g, v) for g, v in zip(summed, model.trainable_variables) if g is not None])
            return total

        @tf.function
        def loop(iterator, num_steps):
            total = tf.constant(0.0)
            for _ in tf.range(num_steps):
                batches = [next(iterator) for _ in range(micro_batches)]
                total += strategy.reduce("SUM", strategy.run(replica_step, (batches,)), axis=None)
                self.step.assign_add(1)
            return total / tf.cast(num_steps, tf.float32)

        return loop

    def _any_worker(self, flag):
        """True on every worker if `flag` is True on any: an all-reduce, so that all stop at one step."""
        return bool(self._all_sum(tf.constant(int(flag))) > 0)

    # ---- the loop ---------------------------------------------------------------------------------

    def train(self):
        """Trains to `trainer.train_steps`, resuming from the newest checkpoint; returns the last
        validation metrics (prefixed `NAME/` per sub-task in a multitask)."""
        trainer = self.config.trainer
        if trainer.train_steps <= 0:
            raise GardenError("set trainer.train_steps to a positive number")
        for name in ("checkpoint_interval", "validation_interval"):
            if getattr(trainer, name) % trainer.steps_per_loop:
                raise GardenError(
                    f"trainer.{name} must be a multiple of trainer.steps_per_loop ({trainer.steps_per_loop})"
                )
        routines = {name: self._routine(name, task) for name, task in self.tasks.items()}
        sizes = [len(r["train"]) for r in routines.values()]
        schedule = None if "" in routines else self.task.schedule(sizes, trainer.train_steps, self.config.runtime.seed)
        resumed = self.checkpoints.restore_latest()
        if not resumed:
            self.task.initialize(checkpointed(self.models))
        start = int(self.step.numpy())
        self._write_run_files(routines)
        reporter = Reporter(self.run_dir, self.chief, trainer.train_steps)
        if resumed:
            reporter.message(f"resumed from {resumed} at step {start}")
        if schedule is not None:
            shares = ", ".join(f"{n} {p:.2f}" for n, p in zip(routines, self.task.probabilities(sizes)))
            reporter.message(f"sampling tasks ({self.config.task.sampler.type}): {shares}")
        for index, (_name, routine) in enumerate(routines.items()):
            done_before = start if schedule is None else int(np.sum(schedule[:start] == index))
            routine["iterator"] = iter(self._distributed_dataset(routine, done_before))
        results = {}
        with (
            contextlib.closing(reporter),
            contextlib.closing(self.checkpoints),
            lost_workers(self.checkpoints),
            sigterm_received() as preempted,
        ):
            while start < trainer.train_steps:
                num_steps = min(trainer.steps_per_loop, trainer.train_steps - start)
                order = [0] * num_steps if schedule is None else schedule[start : start + num_steps]
                began = time.perf_counter()
                losses = self._run_steps(list(routines.values()), order)
                elapsed = time.perf_counter() - began
                start = int(self.step.numpy())
                loss = sum(sum(v) for v in losses.values()) / num_steps
                if not math.isfinite(loss):
                    raise GardenError(
                        f"loss became {loss} by step {start}; stopped without saving, the last good checkpoint is "
                        f"{self.checkpoints.latest or 'none'}; lower the learning rate or set global_clipnorm"
                    )
                examples = sum(routines[n]["data"].global_batch_size * len(v) for n, v in losses.items())
                scalars = {
                    "loss": loss,
                    "learning_rate": float(self.optimizer.learning_rate),
                    "examples_per_second": examples / elapsed,
                }
                if schedule is not None:
                    scalars.update({f"loss/{n}": float(np.mean(v)) for n, v in losses.items()})
                reporter.scalars("train", start, scalars)
                done = start >= trainer.train_steps
                stop = not done and self._any_worker(bool(preempted))
                if done or stop or start % trainer.checkpoint_interval == 0:
                    self.checkpoints.save(start)
                if stop:
                    raise GardenError(
                        f"stopped at step {start} by SIGTERM (preemption) after writing checkpoint "
                        f"ckpt-{start}; run the same command again to resume"
                    )
                if done or start % trainer.validation_interval == 0:
                    results = self._validate(routines, reporter, start) or results
            reporter.message(f"step {start}: weights fingerprint {fingerprint(self.variables)}")
        return results

    def _routine(self, name, task):
        """What training one (sub-)task needs: its data, examples, model, loss and compiled loop."""
        data = task.config.train_data
        where = f"task.tasks.{name}" if name else "task"
        if data.global_batch_size <= 0:
            raise GardenError(f"set {where}.train_data.global_batch_size to a positive number")
        micro_batches, replicas = self.config.trainer.gradient_accumulation_steps, self.strategy.num_replicas_in_sync
        if micro_batches < 1 or data.global_batch_size % (micro_batches * replicas):
            raise GardenError(
                f"{where}.train_data.global_batch_size ({data.global_batch_size}) must split evenly into "
                f"trainer.gradient_accumulation_steps ({micro_batches}) micro-batches on each of {replicas} replicas; "
                f"make it a multiple of {max(micro_batches, 1) * replicas}"
            )
        if (task.config.loss.type == "distillation") != bool(data.teacher_logits):
            raise GardenError(
                f"the distillation loss and {where}.train_data.teacher_logits go together: set both "
                f"({where}.loss.type=distillation, teacher_logits=FILE from 'garden distill logits') or neither"
            )
        train = task.load(data)
        prepare = task.prepare
        if data.teacher_logits:
            train, prepare = soft_targets.attach(train, data.teacher_logits), soft_targets.with_teacher(prepare)
        validation = task.config.validation_data
        model = self.models[name]
        return {
            "name": name,
            "task": task,
            "data": data,
            "train": train,
            "prepare": prepare,
            "validation": task.load(validation, train.label_names) if validation.dataset else None,
            "validation_batch": validation.global_batch_size or data.global_batch_size,
            "model": model,
            "loop": self._make_loop(model, task.build_loss(), data.global_batch_size),
        }

    def _distributed_dataset(self, routine, start):
        """The (sub-)task's micro-batches from step `start` on, each worker reading its own share."""
        data, micro_batches = routine["data"], self.config.trainer.gradient_accumulation_steps
        seed, size = data.seed or self.config.runtime.seed, data.global_batch_size // micro_batches
        return self.strategy.distribute_datasets_from_function(
            lambda ctx: train_dataset(routine["train"], size, seed, start * micro_batches, ctx, routine["prepare"])
        )

    def _run_steps(self, routines, order):
        """Runs the steps of one loop, `order[i]` naming the routine of step i; consecutive steps of
        one routine run in one compiled call. Returns routine name -> the mean loss of each call."""
        losses = {}
        position = 0
        while position < len(order):
            index = order[position]
            count = 1
            while position + count < len(order) and order[position + count] == index:
                count += 1
            routine = routines[index]
            loss = float(routine["loop"](routine["iterator"], tf.constant(count)))
            losses.setdefault(routine["name"], []).extend([loss] * count)
            position += count
        return losses

    def _write_run_files(self, routines):
        os.makedirs(self.run_dir, exist_ok=True)
        if self.chief:
            save_yaml(self.config, os.path.join(self.run_dir, "config.yaml"))
            labels = {name: r["train"].label_names for name, r in routines.items()}
            with open(os.path.join(self.run_dir, "labels.json"), "w") as f:
                json.dump(labels.get("", labels), f)
            for routine in routines.values():
                for name, path in routine["task"].assets.items():
                    shutil.copyfile(path, os.path.join(self.run_dir, name))

    def _validate(self, routines, reporter, step):
        results = {}
        for name, routine in routines.items():
            if routine["validation"] is not None:
                metrics = self.evaluate(
                    routine["validation"], routine["validation_batch"], routine["task"], routine["model"]
                )
                reporter.scalars(f"validation/{name}" if name else "validation", step, metrics)
                results.update({f"{name}/{k}" if name else k: v for k, v in metrics.items()})
        return results

    def evaluate(self, examples, batch_size, task=None, model=None):
        with ema_weights(self.optimizer, self.variables):
            return evaluate(task or self.task, model or self.model, examples, batch_size)
