"""Continuous evaluation (Model Garden's continuous_eval): `garden eval RUN --watch` evaluates each
inference checkpoint as the trainer writes it, and writes summaries beside the trainer's."""

import time
from collections.abc import Callable

import tensorflow as tf

from garden.errors import GardenError
from garden.run import Run
from garden.run_folder import CHECKPOINTS, RunFolder
from garden.train.evaluate import evaluate_split, split_examples
from garden.train.summaries import Reporter
from garden.train.watch import stale_validations


def _training_ended(run: Run, step: int) -> bool:
    """Whether `step` is the run's last: trainer.train_steps, or where early stopping ended it."""
    trainer = run.config.trainer
    if step >= trainer.train_steps:
        return True
    if not trainer.early_stopping.metric:
        return False
    try:
        stale = stale_validations(run.folder.join(CHECKPOINTS, f"ckpt-{step}"))
    except tf.errors.NotFoundError:  # not kept
        return False
    return stale >= trainer.early_stopping.patience


def watch(
    run_dir: str,
    split: str = "validation",
    head: str | None = None,
    timeout: float = 3600.0,
    poll_seconds: float = 1.0,
    say: Callable[[str], None] = print,
) -> list[dict]:
    """Evaluates each checkpoint in RUN/model/ not yet evaluated, oldest first, until the run's last
    one or until no new one has come for `timeout` seconds (Model Garden's continuous_eval_timeout);
    writes TensorBoard scalars to RUN/summaries/eval_SPLIT/ and lines to RUN/eval_SPLIT.jsonl.
    Returns the results of each checkpoint evaluated."""
    deadline, folder = time.monotonic() + timeout, RunFolder(run_dir)

    def started():
        return folder.started() and folder.kept_steps()

    if not started():
        say(f"waiting up to {timeout:g} s for the first checkpoint in {folder.weights_dir}/")
    while not started():
        if time.monotonic() > deadline:
            raise GardenError(f"no checkpoint appeared in {folder.weights_dir}/ in {timeout:g} s; start the training")
        time.sleep(poll_seconds)
    if not head and Run.heads(run_dir):
        raise GardenError(
            f"--watch evaluates one head of a multi-task run; pick one of {', '.join(Run.heads(run_dir))}"
        )
    run = Run(run_dir, head, checkpoint="latest")
    examples = split_examples(run, split)
    reporter = Reporter(run_dir, True, run.config.trainer.train_steps, jsonl=f"eval_{split}.jsonl")
    evaluated, done = [], set()
    try:
        while True:
            new = [step for step in folder.kept_steps() if step > max(done, default=-1)]
            for step in new:
                done.add(step)
                try:
                    run.load(step)
                except GardenError:  # removed (max_to_keep) between listing and reading
                    say(f"step {step}: removed before it could be read; skipped")
                    continue
                results = evaluate_split(run, split, examples)
                reporter.scalars(f"eval_{split}", step, {k: v for k, v in results.items() if isinstance(v, float)})
                evaluated.append(results)
                if _training_ended(run, step):
                    return evaluated
            if new:
                deadline = time.monotonic() + timeout
            elif time.monotonic() > deadline:
                say(f"no new checkpoint in {timeout:g} s; stopped watching {run_dir}")
                return evaluated
            time.sleep(poll_seconds)
    finally:
        reporter.close()
