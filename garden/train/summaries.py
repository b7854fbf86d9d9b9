"""What a run reports: TensorBoard scalars, `metrics.jsonl`, and the console (progress bar or log lines)."""

import json
import os
import sys
import time

import tensorflow as tf

from garden.run_folder import METRICS, SUMMARIES


class Reporter:
    """Writes scalars for the chief; other workers only print."""

    def __init__(self, run_dir, chief, total_steps, stream=None, jsonl=METRICS):
        self.chief = chief
        self.total_steps = total_steps
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        self._writers = {}
        self._run_dir = run_dir
        self._jsonl = open(os.path.join(run_dir, jsonl), "a") if chief else None

    def _writer(self, split):
        if split not in self._writers:
            path = os.path.join(self._run_dir, SUMMARIES, split)
            self._writers[split] = (
                tf.summary.create_file_writer(path) if self.chief else tf.summary.create_noop_writer()
            )
        return self._writers[split]

    def scalars(self, split, step, values):
        """Records `values` (name -> float) for `split` ('train', 'validation', ...) at `step`."""
        with self._writer(split).as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)
        if self._jsonl:
            self._jsonl.write(json.dumps({"step": step, "split": split, "time": time.time(), **values}) + "\n")
            self._jsonl.flush()
        self._print(split, step, values)

    def _print(self, split, step, values):
        text = "  ".join(f"{k} {v:.4g}" for k, v in values.items())
        if self.interactive and split == "train":
            done = int(30 * step / max(self.total_steps, 1))
            self.stream.write(f"\r[{'=' * done}{'.' * (30 - done)}] step {step}/{self.total_steps}  {text}")
        else:
            prefix = "\n" if self.interactive else ""
            self.stream.write(f"{prefix}{split} step {step}/{self.total_steps}  {text}\n")
        self.stream.flush()

    def message(self, text):
        self.stream.write(("\n" if self.interactive else "") + text + "\n")
        self.stream.flush()

    def close(self):
        for writer in self._writers.values():
            writer.flush()
        if self._jsonl:
            self._jsonl.close()
