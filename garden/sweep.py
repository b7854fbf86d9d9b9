"""Hyperparameter sweeps: `garden sweep EXPERIMENT --space sweep.yaml --trials N [--parallel K]`.

Optuna proposes each trial's values (TPE, random or grid); each trial is one `garden train` of the
experiment with those `--set` overrides in its own run folder, SWEEP_DIR/trial-NNN. The study lives
in SWEEP_DIR/study.db, so a killed sweep started again resumes its unfinished trials in their folders
(training resumes from their checkpoints) and goes on to N. SIGTERM or SIGINT to a sweep reaches its
trainers, which write a checkpoint and stop; the sweep waits for them. The space file:

    metric: accuracy            # a validation metric of the experiment
    mode: higher                # or lower
    sampler: tpe                # tpe, random or grid
    params:
      trainer.optimizer_config.learning_rate.constant.learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
      task.train_data.global_batch_size: {choices: [32, 64, 128]}
      task.model.backbone.params.stem_width: {low: 8, high: 32, step: 8}    # whole numbers: an int

A trial's value is its best checkpoint's metric when it keeps one, else its last validation's.
"""

import concurrent.futures
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

import numpy as np
import optuna
import yaml

from garden.errors import GardenError, Stopped, did_you_mean
from garden.resolve import experiment_config
from garden.run_folder import METRICS, RunFolder, read_best_info
from garden.yaml_files import read_yaml

SAMPLERS = ("tpe", "random", "grid")


def read_space(path: str) -> dict:
    """The space file, checked: metric, mode, sampler and each parameter's range or choices."""
    if not os.path.isfile(path):
        raise GardenError(f"space file not found: {path}")
    with open(path) as f:
        try:
            space = yaml.safe_load(f) or {}
        except yaml.YAMLError as error:
            raise GardenError(f"{path} is not valid YAML ({str(error).splitlines()[0]})") from None
    unknown = set(space) - {"metric", "mode", "sampler", "params"}
    if unknown:
        key = sorted(unknown)[0]
        raise GardenError(f"{path}: unknown key '{key}'{did_you_mean(key, ['metric', 'mode', 'sampler', 'params'])}")
    space = {"mode": "higher", "sampler": "tpe", **space}
    if not space.get("metric"):
        raise GardenError(f"{path}: set 'metric' to the validation metric to optimize (accuracy, loss, ...)")
    if space["mode"] not in ("higher", "lower"):
        raise GardenError(f"{path}: mode is 'higher' or 'lower' (which is better), got {space['mode']!r}")
    if space["sampler"] not in SAMPLERS:
        raise GardenError(f"{path}: sampler '{space['sampler']}' is not one of {', '.join(SAMPLERS)}")
    if not isinstance(space.get("params"), dict) or not space["params"]:
        raise GardenError(f"{path}: 'params' maps config keys to {{low, high[, log, step]}} or {{choices: [...]}}")
    for key, spec in space["params"].items():
        _check_param(path, key, spec)
    return space


def _check_param(path, key, spec):
    where = f"{path}: params.{key}"
    if not isinstance(spec, dict):
        raise GardenError(f"{where} is {{low, high[, log, step]}} or {{choices: [...]}}, got {spec!r}")
    if "choices" in spec:
        if set(spec) != {"choices"} or not isinstance(spec["choices"], list) or not spec["choices"]:
            raise GardenError(f"{where}: choices is a non-empty list, alone")
        return
    extra = set(spec) - {"low", "high", "log", "step"}
    if extra or not {"low", "high"} <= set(spec):
        raise GardenError(f"{where} needs low and high (and optionally log or step), got {sorted(spec)}")
    if not all(isinstance(spec[k], (int, float)) for k in ("low", "high")) or spec["low"] >= spec["high"]:
        raise GardenError(f"{where}: low must be a number below high, got {spec['low']!r} and {spec['high']!r}")
    if spec.get("log") and spec["low"] <= 0:
        raise GardenError(f"{where}: a log range starts above 0, got low {spec['low']!r}")
    if spec.get("log") and spec.get("step"):
        raise GardenError(f"{where}: take log or step, not both")


def _is_int(spec):
    return all(isinstance(spec[k], int) for k in ("low", "high")) and isinstance(spec.get("step", 1), int)


def _flow(value):
    """A choice as Optuna stores it: scalars as they are, lists and mappings as their YAML text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def _grid(space) -> dict:
    """Optuna's GridSampler space: each parameter's choices, or its range at its step."""
    grid = {}
    for key, spec in space["params"].items():
        if "choices" in spec:
            grid[key] = [_flow(c) for c in spec["choices"]]
        elif spec.get("step"):
            values = np.arange(spec["low"], spec["high"] + spec["step"] / 2, spec["step"])
            grid[key] = [int(v) for v in values] if _is_int(spec) else [float(v) for v in values]
        else:
            raise GardenError(f"sampler grid needs choices or a step for params.{key}")
    return grid


def _suggest(trial, space) -> dict:
    values = {}
    for key, spec in space["params"].items():
        if "choices" in spec:
            values[key] = trial.suggest_categorical(key, [_flow(c) for c in spec["choices"]])
        elif _is_int(spec):
            values[key] = trial.suggest_int(
                key, spec["low"], spec["high"], step=spec.get("step", 1), log=bool(spec.get("log"))
            )
        else:
            values[key] = trial.suggest_float(
                key, spec["low"], spec["high"], step=spec.get("step"), log=bool(spec.get("log"))
            )
    return values


class Sweep:
    """A sweep of `experiment` (with `config_files` and `sets` under every trial) over `space_file` in `sweep_dir`."""

    def __init__(self, experiment, space_file, sweep_dir, config_files=(), sets=(), imports=(), seed=0):
        self.space, self.space_file = read_space(space_file), space_file
        self.experiment, self.sweep_dir = experiment, sweep_dir
        self.base = [
            *(a for f in config_files for a in ("--config", os.path.abspath(f))),
            *(a for s in sets for a in ("--set", s)),
        ]
        self.imports = [a for m in imports for a in ("--import", m)]
        self._check_keys(config_files, sets)
        os.makedirs(sweep_dir, exist_ok=True)
        self._keep_definition({"experiment": experiment, "base": self.base, "space": self.space, "seed": seed})
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        tpe = self.space["sampler"] == "tpe"
        self.study = optuna.create_study(
            storage=f"sqlite:///{os.path.abspath(os.path.join(sweep_dir, 'study.db'))}",
            study_name="garden",
            sampler=optuna.samplers.TPESampler(seed=seed) if tpe else optuna.samplers.RandomSampler(seed=seed),
            direction="maximize" if self.space["mode"] == "higher" else "minimize",
            load_if_exists=True,
        )
        self.grid_size, self._trainers, self._stopped_by, self._refusal = None, set(), None, ""
        if self.space["sampler"] == "grid":  # each point queued once (GridSampler stops only inside optimize())
            points = list(itertools.product(*_grid(self.space).values()))
            self.grid_size = len(points)
            if not self.study.get_trials():
                for point in points:
                    self.study.enqueue_trial(dict(zip(self.space["params"], point)))

    def _check_keys(self, config_files, sets):
        """Every parameter names a config key that takes its values (misspellings are named now, not per trial)."""
        for key, spec in self.space["params"].items():
            for value in spec.get("choices", [spec.get("low"), spec.get("high")]):
                experiment_config(self.experiment, list(config_files), [*sets, f"{key}={_flow(value)}"])

    def _keep_definition(self, definition):
        path = os.path.join(self.sweep_dir, "sweep.json")
        if os.path.isfile(path):
            with open(path) as f:
                if json.load(f) != json.loads(json.dumps(definition)):
                    raise GardenError(
                        f"{self.sweep_dir} holds a sweep of another experiment, space or base config "
                        f"({path}); resume it with the same arguments, or pass a new --sweep-dir"
                    )
            return
        with open(path, "w") as f:
            json.dump(definition, f, indent=2)

    def trial_dir(self, number: int) -> str:
        return os.path.join(self.sweep_dir, f"trial-{number:03d}")

    def _train(self, number: int, values: dict) -> tuple[float | None, str]:
        """Trains trial `number` (resuming its folder); returns (its value, '') or (None, why it failed)."""
        run_dir = self.trial_dir(number)
        sets = [a for key, value in values.items() for a in ("--set", f"{key}={value}")]
        command = [sys.executable, "-m", "garden.cli", *self.imports, "train", self.experiment, *self.base, *sets]
        with open(run_dir + ".log", "a") as log:
            trainer = subprocess.Popen([*command, "--run-dir", run_dir], stdout=log, stderr=subprocess.STDOUT)
            self._trainers.add(trainer)
            if self._stopped_by:  # the signal came as it started
                trainer.send_signal(signal.SIGTERM)
            try:
                code = trainer.wait()
            finally:
                self._trainers.discard(trainer)
        if self._stopped_by:
            return None, "stopped"
        if code:
            with open(run_dir + ".log") as log:
                lines = [line.strip() for line in log if line.strip()]
            return None, (lines[-1] if lines else f"exit status {code}")[:300]
        return self._value(run_dir)

    def _value(self, run_dir):
        metric = self.space["metric"]
        folder = RunFolder(run_dir)
        subdir = read_yaml(folder.config_path)["trainer"]["best_checkpoint_export_subdir"]
        best = read_best_info(folder.best_dir(subdir))
        if best and metric in best:
            return float(best[metric]), ""
        validated = _validations(run_dir)
        if not validated:
            return None, "no validation ran; set task.validation_data"
        missing = self._unreported(validated[-1])
        return (None, missing) if missing else (float(validated[-1][metric]), "")

    def _unreported(self, validation: dict) -> str:
        """Why the sweep's metric is not among a `validation` row's, or ''."""
        metric = self.space["metric"]
        if metric in validation:
            return ""
        reported = [k for k in validation if k not in ("step", "split", "time")]
        return f"validation does not report '{metric}'{did_you_mean(metric, reported)}"

    def _check_metric(self, numbers) -> None:
        """At the first validation of any running trial, stops the sweep when it lacks the metric."""
        for number in numbers:
            validated = _validations(self.trial_dir(number), first=True)
            if validated:
                self._metric_seen = True
                self._refuse(self._unreported(validated[0]), number)
                return

    def _refuse(self, missing: str, number: int) -> None:
        if missing and not self._refusal:
            self._refusal = (
                f"{missing} (trial {number}'s validation); fix 'metric' in {self.space_file} and start again with a "
                "new --sweep-dir"
            )
            self._stop(signal.SIGTERM)

    def run(self, trials: int, parallel: int = 1, say: Callable[[str], None] = print) -> list:
        """Runs trials until the study holds `trials` finished ones; returns the study's trials."""
        if trials < 1 or parallel < 1:
            raise GardenError("--trials and --parallel must be positive")
        if self.grid_size is not None and trials > self.grid_size:
            say(f"the grid has {self.grid_size} points: {self.grid_size} trials")
            trials = self.grid_size
        states = optuna.trial.TrialState
        unfinished = [(t.number, t.params) for t in self.study.get_trials() if t.state == states.RUNNING]
        finished = sum(t.state in (states.COMPLETE, states.FAIL) for t in self.study.get_trials())
        if unfinished:
            say(f"resuming trials {', '.join(str(n) for n, _ in unfinished)} in their folders")
        stopped, self._metric_seen = [], False
        with forwarded_signals(self._stop), concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            running = {}
            while finished < trials and not (self._stopped_by and not running):
                while not self._stopped_by and len(running) < parallel and finished + len(running) < trials:
                    if unfinished:
                        number, values = unfinished.pop(0)
                    else:
                        trial = self.study.ask()
                        number, values = trial.number, _suggest(trial, self.space)
                    running[pool.submit(self._train, number, values)] = (number, values)
                done, _ = concurrent.futures.wait(running, timeout=1.0, return_when=concurrent.futures.FIRST_COMPLETED)
                if not (self._metric_seen or self._stopped_by):
                    self._check_metric([number for number, _ in running.values()])
                for future in done:
                    number, values = running.pop(future)
                    value, failure = future.result()
                    self._refuse(failure if failure.startswith("validation does not report") else "", number)
                    if self._stopped_by:  # left running in the study: the next sweep resumes it
                        stopped.append(number)
                    elif value is None:
                        self.study.tell(number, state=states.FAIL)
                        say(f"trial {number} failed: {failure}")
                    else:
                        self.study.tell(number, value)
                        say(f"trial {number}: {self.space['metric']} {value:.6g}  ({_describe(values)})")
                    finished += 1
        if self._refusal:
            raise GardenError(self._refusal)
        if self._stopped_by:
            raise Stopped(
                f"stopped by {signal.Signals(self._stopped_by).name}: trials {', '.join(map(str, sorted(stopped)))} "
                "wrote a checkpoint and stopped; run the same command to resume them",
                self._stopped_by,
            )
        return self.study.get_trials()

    def _stop(self, signum):
        """Passes SIGTERM on to every running trainer (which checkpoints and stops) and starts no more."""
        self._stopped_by = signum
        for trainer in list(self._trainers):
            trainer.send_signal(signal.SIGTERM)

    def summary(self) -> tuple[list[str], list[list], str]:
        """(table header, rows best first and failed last, a line on the best trial), and writes the
        best trial's config to SWEEP_DIR/best.yaml."""
        states = optuna.trial.TrialState
        done = [t for t in self.study.get_trials() if t.state in (states.COMPLETE, states.FAIL)]
        higher = self.space["mode"] == "higher"
        done.sort(key=lambda t: (t.state != states.COMPLETE, -(t.value or 0) if higher else (t.value or 0)))
        keys = list(self.space["params"])
        short = [key.rsplit(".", 1)[-1] for key in keys]
        header = ["trial", self.space["metric"], *(short if len(set(short)) == len(short) else keys), "run"]
        rows = [
            [
                t.number,
                f"{t.value:.6g}" if t.value is not None else "failed",
                *(t.params.get(k, "") for k in keys),
                self.trial_dir(t.number),
            ]
            for t in done
        ]
        completed = [t for t in done if t.state == states.COMPLETE]
        if not completed:
            return header, rows, "no trial finished; see the trial-NNN.log files"
        best = completed[0]
        path = os.path.join(self.sweep_dir, "best.yaml")
        shutil.copyfile(RunFolder(self.trial_dir(best.number)).config_path, path)
        return (
            header,
            rows,
            (
                f"best: trial {best.number}, {self.space['metric']} {best.value:.6g}; reproduce it with "
                f"'garden train --config {path} --run-dir RUN_DIR'"
            ),
        )


@contextlib.contextmanager
def forwarded_signals(handle: Callable[[int], None]):
    """Within the block, SIGTERM and SIGINT call `handle(signal number)` instead of ending the process."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may handle signals
        yield
        return
    previous = {s: signal.signal(s, lambda signum, frame: handle(signum)) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _validations(run_dir: str, first: bool = False) -> list[dict]:
    """The validation rows of a run's metrics.jsonl (only the first with `first`)."""
    rows = []
    path = RunFolder(run_dir).join(METRICS)
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                row = json.loads(line) if line.endswith("\n") else {}  # a line being written is not whole yet
                if row.get("split") == "validation":
                    rows.append(row)
                    if first:
                        break
    return rows


def _describe(values):
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in values.items())
