"""A fine-tuned teacher's logits on a training split, for a student's `distillation` loss.

    garden distill logits runs/r8_minilm --out runs/r8_minilm/teacher_logits.npz
    garden train r8_student_kd --set task.train_data.teacher_logits=runs/r8_minilm/teacher_logits.npz

The teacher runs once over the examples, in their order; the file records which examples they were
(garden/data/soft_targets.py), so a student whose training data differs is stopped before its first step.
"""

import numpy as np
import tensorflow as tf

from garden.data import soft_targets
from garden.data.pipeline import eval_dataset
from garden.run import Run


def write_teacher_logits(run_dir, out_path, split=None, batch_size=128):
    """Runs the teacher of `run_dir` over its training data (or `split` of that dataset) and writes
    the logits to `out_path`; returns a summary with the teacher's accuracy on those examples."""
    run = Run(run_dir)
    data = run.config.task.train_data
    if split:
        data = data.replace(split=split)
    examples = run.task.load(data, run.label_names)
    step = tf.function(lambda features: run.model(features, training=False)["logits"])
    logits = np.concatenate([step(features).numpy() for features, _ in eval_dataset(examples, batch_size, run.task.prepare)])
    soft_targets.save(out_path, logits, examples)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == examples.labels))
    return {"teacher": run_dir, "step": run.step, "dataset": data.dataset, "split": data.split, "examples": len(examples),
            "classes": logits.shape[-1], "teacher_accuracy": round(accuracy, 4)}
