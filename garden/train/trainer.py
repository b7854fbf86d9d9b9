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
import dataclasses
import os
import re
import signal
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from garden.config import changed_keys
from garden.data.pipeline import train_dataset
from garden.data.streams import Stream, bad_records_named
from garden.errors import GardenError, Stopped
from garden.models.lora import write_adapters
from garden.models.quantization import quantize_backbones
from garden.models.task_model import backbone_variables, seed_states, trainable_variables
from garden.optimizers import build_optimizer, scale_learning_rate
from garden.registry import TASKS
from garden.run_folder import CONFIGS, RunFolder, disk_full
from garden.train import precision
from garden.train.checkpoints import Checkpoints, ema_weights, fingerprint
from garden.train.evaluate import evaluate
from garden.train.recovery import Recovery
from garden.train.strategy import input_pipelines, is_chief
from garden.train.summaries import Reporter
from garden.train.watch import BEST_CHECKPOINT, EARLY_STOPPING, Watch
from garden.yaml_files import read_yaml


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


@dataclasses.dataclass
class Routine:
    """What training one (sub-)task needs: its data, examples, model, compiled loop and iterator."""

    name: str
    task: object
    data: object
    train: object
    prepare: object
    validation: object
    validation_batch: int
    model: keras.Model
    loop: object
    iterator: object = None


class Trainer:
    """Orbit's shape: `train` sets up (`set_up`), runs loops of `steps_per_loop` steps (`_loop`),
    and after each loop reports, checkpoints and validates (`_after_loop`)."""

    def __init__(self, config, run_dir: str, strategy: tf.distribute.Strategy):
        self.config = config
        self.run_dir, self.folder = run_dir, RunFolder(run_dir)
        self.strategy = strategy
        self.chief = is_chief(strategy)
        self.lock = self.folder.lock("train") if self.chief else None  # the chief alone writes the run folder
        try:
            self._build(config, strategy)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Gives up the run folder (its writer lock); `train` does when it ends."""
        if self.lock:
            self.lock.release()

    def _build(self, config, strategy):
        runtime = config.runtime
        keras.utils.set_random_seed(runtime.seed)
        if runtime.deterministic:
            tf.config.experimental.enable_op_determinism()
        self.policy = precision.set_policy(runtime.mixed_precision_dtype)
        if config.task.model.quantization and not config.task.model.lora.rank:
            raise GardenError(
                f"task.model.quantization={config.task.model.quantization} holds the backbone's weights quantized, "
                "and they cannot train; set task.model.lora.rank to train adapters on them, or leave quantization empty"
            )
        self.task = TASKS.get(config.task.type)(config.task)
        self.tasks = self.task.subtasks()
        with strategy.scope():
            self.models = self.task.build_models()
            for model in self.models.values():
                model.get_layer("backbone").check_training(runtime)
            self.variables = trainable_variables(self.models)
            optimizer = build_optimizer(config.trainer.optimizer_config)
            multiplier = config.task.model.backbone_learning_rate_multiplier
            scale_learning_rate(optimizer, backbone_variables(self.models), multiplier)
            self.optimizer = precision.wrap_optimizer(optimizer, self.policy, runtime.loss_scale)
            self.optimizer.build(self.variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
            self.recovery = Recovery(config.trainer, len(self.tasks))
            self.recovery.scale_learning_rate_of(optimizer)
        self.watches = self._watches(config.trainer)
        self._all_sum = tf.function(
            lambda value: strategy.reduce("SUM", strategy.run(tf.identity, (value,)), axis=None)
        )
        model = self.task.checkpointed(self.models)
        state = {"model": model, "optimizer": self.optimizer, "step": self.step, "seeds": seed_states(self.models)}
        self.checkpoints = Checkpoints(
            {**state, "recovery": self.recovery, **self.watches},
            self.folder.checkpoints_dir,
            self.chief,
            config.trainer.max_to_keep,
            weights=(tf.train.Checkpoint(model=model), self.folder.weights_dir),
            # in checkpoints since December 2026: dropout's seed states, rollbacks, watched metrics
            optional=["seeds", "recovery", *self.watches],
            best_dir=self.folder.best_dir(config.trainer.best_checkpoint_export_subdir),
        )

    @staticmethod
    def _watches(trainer) -> dict:
        """The validation metrics that the run watches: for the best checkpoint, for early stopping."""
        watches = {}
        if trainer.best_checkpoint_eval_metric:
            watches[BEST_CHECKPOINT] = Watch(
                trainer.best_checkpoint_eval_metric,
                trainer.best_checkpoint_metric_comp,
                "trainer.best_checkpoint_eval_metric",
            )
        stopping = trainer.early_stopping
        if stopping.metric:
            watches[EARLY_STOPPING] = Watch(
                stopping.metric, stopping.mode, "trainer.early_stopping.metric", stopping.min_delta
            )
        return watches

    @property
    def model(self) -> keras.Model:
        """The model of a single-task run."""
        (model,) = self.models.values()
        return model

    # ---- the compiled step ----------------------------------------------------------------------

    def _make_loop(self, model, loss_fn, global_batch_size):
        optimizer, strategy = self.optimizer, self.strategy
        micro_batches = self.config.trainer.gradient_accumulation_steps

        l2 = self.config.task.l2_weight_decay
        kernels = [v for v in model.trainable_variables if v.path.endswith("kernel")] if l2 else []

        def gradients(features, labels):
            with tf.GradientTape() as tape:
                outputs = model(features, training=True)
                loss = tf.nn.compute_average_loss(loss_fn(labels, outputs), global_batch_size=global_batch_size)
                penalties = list(model.losses)
                if kernels:  # Model Garden's l2_weight_decay
                    penalties.append(l2 / 2 * tf.add_n([tf.reduce_sum(tf.square(k)) for k in kernels]))
                if penalties:  # once per global batch
                    loss += tf.nn.scale_regularization_loss(tf.add_n(penalties)) / micro_batches
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

    # ---- set up -----------------------------------------------------------------------------------

    def _check_intervals(self):
        trainer = self.config.trainer
        if trainer.train_steps <= 0:
            raise GardenError("set trainer.train_steps to a positive number")
        for name in ("checkpoint_interval", "validation_interval"):
            if getattr(trainer, name) % trainer.steps_per_loop:
                raise GardenError(
                    f"trainer.{name} ({getattr(trainer, name)}) must be a multiple of trainer.steps_per_loop "
                    f"({trainer.steps_per_loop}); set trainer.steps_per_loop to a divisor of it"
                )

    def set_up(self) -> int:
        """Builds each sub-task's routine, restores the newest checkpoint (or warm-starts a new run),
        positions every data iterator at the restored step and writes the run's files; returns that
        step. `train` calls it first; called alone, it shows the weights a run starts from. When it
        fails, it gives up the run folder."""
        try:
            return self._set_up()
        except BaseException:
            self.release()
            raise

    def _set_up(self) -> int:
        self._check_intervals()
        self.routines = [self._routine(name, task) for name, task in self.tasks.items()]
        sizes = [len(r.train) for r in self.routines] if len(self.routines) > 1 else [0]  # a stream counts by reading
        self.schedule = self.task.schedule(sizes, self.config.trainer.train_steps, self.config.runtime.seed)
        changed = self._compare_config()
        if self.watches and not any(r.validation is not None for r in self.routines):
            raise GardenError(
                f"{next(iter(self.watches.values())).key} watches a validation metric, and the run has no "
                "validation data; set task.validation_data (see 'garden show')"
            )
        quantization = self.config.task.model.quantization  # of the base a new run loads, or as checkpoints hold it
        if self.checkpoints.latest:
            quantize_backbones(self.models, quantization)
        resumed = self.checkpoints.restore_latest()
        warm_start = None if resumed else self.task.warm_start(self.models)
        if not resumed:
            quantize_backbones(self.models, quantization)
        start = int(self.step.numpy())
        self._write_run_files(start, resumed and not changed)
        if self.config.trainer.recovery_max_trials and not resumed:  # a state to roll back to
            self.checkpoints.save(start)
        if resumed and not self.checkpoints.has_weights(start):  # a run from before RUN/model/, or a killed save
            self._save_weights(start)
        self.reporter = Reporter(self.run_dir, self.chief, self.config.trainer.train_steps)
        if self.lock and self.lock.left_by:
            self.reporter.message(self.lock.describe_left_by())
        if resumed:
            self.reporter.message(f"resumed from {resumed} at step {start}")
        if resumed and changed:
            self.reporter.message(
                f"changed settings from step {start}: {'; '.join(changed[:8])}{'; ...' if len(changed) > 8 else ''} "
                f"(config revision {self.folder.join(CONFIGS, f'step-{start}.yaml')}; the earlier ones are kept)"
            )
        if warm_start:
            self.reporter.message(f"warm start: backbone weights from {warm_start}")
        if len(self.routines) > 1:
            shares = ", ".join(f"{r.name} {p:.2f}" for r, p in zip(self.routines, self.task.probabilities(sizes)))
            self.reporter.message(f"sampling tasks ({self.config.task.sampler.type}): {shares}")
        read = self.recovery.batches_read(self.schedule, start)
        for index, routine in enumerate(self.routines):
            routine.iterator = iter(self._distributed_dataset(routine, int(read[index])))
            if isinstance(routine.train, Stream):
                self.reporter.message(routine.train.describe(input_pipelines(self.strategy)))
        return start

    def _routine(self, name, task):
        data = task.config.train_data
        if data.global_batch_size <= 0:
            raise GardenError(f"set {task.config_path}.train_data.global_batch_size to a positive number")
        micro_batches, replicas = self.config.trainer.gradient_accumulation_steps, self.strategy.num_replicas_in_sync
        if micro_batches < 1 or data.global_batch_size % (micro_batches * replicas):
            raise GardenError(
                f"{task.config_path}.train_data.global_batch_size ({data.global_batch_size}) must split evenly into "
                f"trainer.gradient_accumulation_steps ({micro_batches}) micro-batches on each of {replicas} replicas; "
                f"make it a multiple of {max(micro_batches, 1) * replicas}"
            )
        train, prepare = task.load_train()
        validation = task.config.validation_data
        model = self.models[name]
        return Routine(
            name=name,
            task=task,
            data=data,
            train=train,
            prepare=prepare,
            validation=task.load(validation, train.label_names) if validation.dataset else None,
            validation_batch=validation.global_batch_size or data.global_batch_size,
            model=model,
            loop=self._make_loop(model, task.build_loss(train), data.global_batch_size),
        )

    def _distributed_dataset(self, routine, start):
        """The (sub-)task's micro-batches from step `start` on, each worker reading its own share."""
        data, micro_batches = routine.data, self.config.trainer.gradient_accumulation_steps
        seed, size = data.seed or self.config.runtime.seed, data.global_batch_size // micro_batches
        return self.strategy.distribute_datasets_from_function(
            lambda ctx: train_dataset(routine.train, size, seed, start * micro_batches, ctx, routine.prepare)
        )

    def _compare_config(self) -> list[str]:
        """The training settings that differ from the config that trained the newest checkpoint (its
        revision in RUN/configs/, or config.yaml for a run from before them). A run folder resumes
        only the model it trained: a config that changes the model's shape is refused key by key (the
        checkpoint is fine; it is the config that differs)."""
        latest = self.checkpoints.latest
        step = int(latest.rsplit("-", 1)[-1]) if latest else 0
        applied = self.folder.config_at(step) if latest else None
        if latest and not applied and self.folder.started():
            applied = self.folder.config_path, read_yaml(self.folder.config_path)
        if not applied:
            return []
        path, saved = applied
        changed = changed_keys(saved, self.config, shaping=True)
        if changed:
            raise GardenError(
                f"{self.run_dir} holds a run of another model ({'; '.join(changed[:4])}"
                f"{'; ...' if len(changed) > 4 else ''}): start a new run folder (--run-dir) for this model, or "
                f"resume with the run's own config ({path}); its checkpoints are kept"
            )
        return changed_keys(saved, self.config, shaping=False)

    def _write_run_files(self, step, unchanged):
        """Writes config.yaml, labels and assets, and records the config as a revision from `step`
        unless the run resumed with the config it had (`unchanged`)."""
        os.makedirs(self.run_dir, exist_ok=True)
        if self.chief:
            if not (unchanged and self.folder.config_at(step)):
                self.folder.record_config(self.config, step)
            self.folder.write_config(self.config)
            labels = {r.name: r.train.label_names for r in self.routines}
            self.folder.write_labels(labels if len(labels) > 1 else next(iter(labels.values())))
            self.folder.write_assets(self.task.assets())

    # ---- the loop ---------------------------------------------------------------------------------

    def train(self) -> dict:
        """Trains to `trainer.train_steps`, resuming from the newest checkpoint; returns the last
        validation metrics (prefixed `NAME/` per sub-task in a multitask); gives up the run folder as it ends."""
        try:
            return self._train()
        except (OSError, tf.errors.ResourceExhaustedError) as error:
            if not disk_full(error):
                raise
            raise self._disk_full() from None
        finally:
            self.release()

    def _disk_full(self) -> GardenError:
        """One line for a write that found the run folder's disk full, after removing what it left."""
        if self.chief:
            self.checkpoints.remove_partial()
        model = sum(w.numpy().nbytes for m in self.models.values() for w in m.weights)
        needed = 2 * model + sum(v.numpy().nbytes for v in self.optimizer.variables)  # the state and the weights
        return GardenError(
            f"no space left on the disk of {self.run_dir} at step {int(self.step.numpy())}: a checkpoint needs about "
            f"{needed / 2**20:.1f} MiB more; free space there, or resume on another disk by copying the run folder; "
            f"the checkpoints before ({self.checkpoints.latest or 'none yet'}) are whole"
        )

    def _train(self) -> dict:
        step = self.set_up()
        results, stopped = {}, self._stopped_early()
        with (
            contextlib.closing(self.reporter),
            contextlib.closing(self.checkpoints),
            lost_workers(self.checkpoints),
            sigterm_received() as preempted,
        ):
            if stopped:
                self.reporter.message(f"nothing to do: {stopped}")
                return results
            while step < self.config.trainer.train_steps and not stopped:
                losses, elapsed = self._loop(step)
                step = int(self.step.numpy())
                loss = sum(sum(v) for v in losses.values()) / sum(len(v) for v in losses.values())
                if self._rolled_back(step, loss):
                    step = int(self.step.numpy())
                    continue
                validated, stopped = self._after_loop(step, loss, losses, elapsed, preempted)
                results = validated or results
            if stopped:
                self.reporter.message(stopped)
            self.reporter.message(f"step {step}: weights fingerprint {fingerprint(self.variables)}")
        return results

    def _loop(self, start):
        """Runs the steps of one loop; consecutive steps of one sub-task run in one compiled call.
        Returns (routine name -> the mean loss of each step, seconds)."""
        order = self.schedule[start : start + min(self.config.trainer.steps_per_loop, len(self.schedule) - start)]
        began, losses, position = time.perf_counter(), {}, 0
        while position < len(order):
            count = 1
            while position + count < len(order) and order[position + count] == order[position]:
                count += 1
            routine = self.routines[order[position]]
            with bad_records_named(routine.train):
                loss = float(routine.loop(routine.iterator, tf.constant(count)))
            losses.setdefault(routine.name, []).extend([loss] * count)
            position += count
        return losses, time.perf_counter() - began

    def _rolled_back(self, step, loss) -> bool:
        """True when the loop's mean `loss` diverged and the run rolled back to its last checkpoint;
        raises when it may not (no rollbacks allowed or left, no checkpoint yet)."""
        reason = self.recovery.divergence(loss, step)
        if reason is None:
            return False
        trainer, latest = self.config.trainer, self.checkpoints.latest
        if self.recovery.trials >= trainer.recovery_max_trials or not latest:
            tried = f" after {self.recovery.trials} rollbacks" if self.recovery.trials else ""
            raise GardenError(
                f"{reason} by step {step}{tried}; stopped without saving, the last good checkpoint is "
                f"{latest or 'none'}; lower the learning rate or set global_clipnorm"
            )

        def restore():
            self.checkpoints.restore_latest()
            return int(self.step.numpy())

        restored = self.recovery.roll_back(restore, self.schedule, step)
        scale = float(self.recovery.learning_rate_scale.numpy())
        self.reporter.message(
            f"step {step}: {reason}; rolled back to step {restored} (rollback {self.recovery.trials} of "
            f"{trainer.recovery_max_trials}), reading on past the {step - restored} steps' batches since"
            + (f", learning rate x{scale:g}" if scale != 1 else "")
        )
        return True

    def _after_loop(self, step, loss, losses, elapsed, preempted):
        """Reports the loop (its mean `loss`, each sub-task's step `losses`), stops on preemption,
        validates and checkpoints; returns (the validation metrics or None, why the run stops early or '')."""
        batch = {r.name: r.data.global_batch_size for r in self.routines}
        scalars = {
            "loss": loss,
            "learning_rate": float(
                tf.convert_to_tensor(self.optimizer.learning_rate)
            ),  # a MirroredVariable under mirrored
            "examples_per_second": sum(batch[n] * len(v) for n, v in losses.items()) / elapsed,
        }
        if len(self.routines) > 1:
            scalars.update({f"loss/{n}": float(np.mean(v)) for n, v in losses.items()})
        self.reporter.scalars("train", step, scalars)
        trainer = self.config.trainer
        done = step >= trainer.train_steps
        self._stop_if_preempted(step, done, preempted)
        results, stopped = None, ""
        if done or step % trainer.validation_interval == 0:
            results = self._validate(step)
            stopped = self._watch(step, results)
            self._stop_if_preempted(step, done or bool(stopped), preempted)  # a notice during validation
        if done or stopped or step % trainer.checkpoint_interval == 0:
            self._save(step)
        return results, stopped

    def _stop_if_preempted(self, step, ending, preempted) -> None:
        """Writes a checkpoint and stops when any worker got SIGTERM and the run is not `ending` anyway
        (all workers call this at the same points, so they agree)."""
        if not ending and self._any_worker(bool(preempted)):
            self._save(step)
            raise Stopped(
                f"stopped at step {step} by SIGTERM (preemption) after writing checkpoint "
                f"ckpt-{step}; run the same command again to resume"
            )

    def _watch(self, step, results) -> str:
        """Keeps the best weights and counts validations without improvement; returns why the run
        stops early, or ''."""
        best = self.watches.get(BEST_CHECKPOINT)
        if best and best.update(step, results):
            with ema_weights(self.optimizer, self.variables):
                self.checkpoints.save_best(step, results)
        stopping = self.watches.get(EARLY_STOPPING)
        if stopping is None:
            return ""
        stopping.update(step, results)
        stopped = self._stopped_early()
        return stopped if self._any_worker(bool(stopped)) else ""

    def _stopped_early(self) -> str:
        """Why early stopping ends the run at its current step, or ''."""
        stopping, config = self.watches.get(EARLY_STOPPING), self.config.trainer.early_stopping
        if stopping is None or int(stopping.stale.numpy()) < config.patience:
            return ""
        return (
            f"stopped early at step {int(self.step.numpy())}: validation {config.metric} has not improved "
            f"by more than {config.min_delta:g} in {config.patience} validations since its best, "
            f"{stopping.describe()}; raise trainer.early_stopping.patience to train on"
        )

    def _save(self, step):
        """Writes the training checkpoint and the inference weights of `step`."""
        self.checkpoints.save(step)
        self._save_weights(step)

    def _save_weights(self, step):
        """Writes the inference weights of `step` (EMA applied) to RUN/model/, and a LoRA run's trained
        weights alone (adapters and head) to RUN/adapters.safetensors."""
        with ema_weights(self.optimizer, self.variables):
            self.checkpoints.save_weights(step)
            if self.chief and self.config.task.model.lora.rank:
                write_adapters(self.folder.adapters_path, self.variables, step)

    def _validate(self, step):
        results, named = {}, len(self.routines) > 1
        for routine in self.routines:
            if routine.validation is not None:
                with ema_weights(self.optimizer, self.variables):
                    metrics = evaluate(
                        routine.task, routine.model, routine.validation, routine.validation_batch, calibrate=True
                    )
                self.reporter.scalars(f"validation/{routine.name}" if named else "validation", step, metrics)
                results.update({f"{routine.name}/{k}" if named else k: v for k, v in metrics.items()})
        return results
