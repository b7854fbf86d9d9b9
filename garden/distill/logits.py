"""A fine-tuned teacher's logits on a training split, for a student's `distillation` loss.

    garden distill logits runs/r8_minilm --out runs/r8_minilm/teacher_logits.npz
    garden train r8_student_kd --set task.train_data.teacher_logits=runs/r8_minilm/teacher_logits.npz

The teacher runs once over the examples, in their order; the file records which examples they were
(garden/data/soft_targets.py), so a student whose training data differs is stopped before its first step.

A teacher is nearly one-hot on the examples it was trained on, so its logits there say little
beyond the labels. `cross_fit=N` trains N teachers of the run's config instead, each on all but
one N-th of the examples (`fold` ~K/N), and takes each example's logits from the teacher that did
not see it: the teacher's doubts on unseen text, for every training example.

`augment=N` adds N perturbed copies of every training text (garden/distill/augment.py), labeled by
the teacher and stored in the file: a transfer set the student trains on with the originals.
"""

import os

import numpy as np
import tensorflow as tf

from garden.data import soft_targets
from garden.data.pipeline import eval_dataset
from garden.distill.augment import augmented_copies
from garden.errors import GardenError
from garden.registry import TASKS
from garden.run import Run, run_config
from garden.train.checkpoints import ema_weights
from garden.train.strategy import resolve_strategy
from garden.train.trainer import Trainer


def predict_logits(task, model, examples, batch_size):
    step = tf.function(lambda features: model(features, training=False)["logits"])
    return np.concatenate([step(features).numpy() for features, _ in eval_dataset(examples, batch_size, task.prepare)])


def cross_fitted_logits(run_dir, config, data, folds, batch_size):
    """Logits of `data`'s examples, each from a teacher of `config` trained (in RUN/cross_fit/K-of-N,
    resumed if there) on the other folds."""
    strategy = resolve_strategy(config.runtime)
    parts, label_names = [], None
    for k in range(folds):
        fold_config = config.replace(task={"train_data": {"fold": f"~{k}/{folds}", "split": data.split}})
        trainer = Trainer(fold_config, os.path.join(run_dir, "cross_fit", f"{k}-of-{folds}"), strategy)
        trainer.train()
        names = trainer.folder.read_labels()
        if label_names not in (None, names):
            raise GardenError(f"the fold teachers saw different classes ({label_names} and {names}); use fewer folds")
        label_names = names
        held_out = trainer.task.load(data.replace(fold=f"{k}/{folds}"), label_names)
        with ema_weights(trainer.optimizer, trainer.variables):
            parts.append(predict_logits(trainer.task, trainer.model, held_out, batch_size))
    logits = np.zeros((sum(map(len, parts)), parts[0].shape[-1]), np.float32)
    for k, part in enumerate(parts):
        logits[k::folds] = part
    return logits, label_names


def write_teacher_logits(run_dir, out_path, split=None, batch_size=128, cross_fit=0, augment=0, seed=0):
    """Writes the logits of the teacher of `run_dir` (or, with `cross_fit` N, of N teachers of its
    config, trained on the other folds; then the run needs no checkpoint) on its training data (or
    `split` of that dataset), and on `augment` perturbed copies of it, to `out_path`; returns a
    summary with the accuracy of those logits."""
    if cross_fit and augment:
        raise GardenError("--augment labels the copies with the run's own teacher; use it without --cross-fit")
    transfer = None
    if cross_fit:
        config = run_config(run_dir)
        task = TASKS.get(config.task.type)(config.task)
        data = config.task.train_data.replace(split=split or config.task.train_data.split)
        logits, label_names = cross_fitted_logits(run_dir, config, data, cross_fit, batch_size)
        examples = task.load(data, label_names)
        step = config.trainer.train_steps
    else:
        run = Run(run_dir)
        data = run.config.task.train_data.replace(split=split or run.config.task.train_data.split)
        examples = run.task.load(data, run.label_names)
        if augment:
            transfer = augmented_copies(examples, augment, seed)
        logits = predict_logits(
            run.task, run.model, examples.concatenate(transfer) if transfer else examples, batch_size
        )
        step = run.step
    soft_targets.save(out_path, logits, examples, transfer)
    accuracy = float(np.mean(np.argmax(logits[: len(examples)], axis=-1) == examples.labels))
    summary = {
        "teacher": run_dir,
        "step": step,
        "dataset": data.dataset,
        "split": data.split,
        "examples": len(examples),
        "classes": logits.shape[-1],
        "cross_fit": cross_fit,
        "teacher_accuracy": round(accuracy, 4),
    }
    if transfer:
        copies = logits[len(examples) :]
        summary.update(
            transfer_examples=len(transfer),
            transfer_agreement=round(float(np.mean(np.argmax(copies, axis=-1) == transfer.labels)), 4),
        )
    return summary
