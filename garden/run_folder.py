"""A run folder: its layout, reading and writing its files, and its single writer.

    RUN/config.yaml       the resolved experiment config
    RUN/configs/step-N.yaml  each config the run trained with, from step N on (the first is step-0)
    RUN/labels.json       label names (sub-task name -> label names for a multitask)
    RUN/assets/           files inference needs (tokenizer vocabularies), named in RUN/assets.json by config key
    RUN/model/ckpt-N      the model's weights at step N, EMA applied: all that eval, export, predict and generate read
    RUN/adapters.safetensors  a LoRA run's trained weights alone (adapters, head) at the newest step
    RUN/best/             the best validation's weights and info.json (its metrics, step), when the run keeps them
    RUN/checkpoints/      the trainer's state (weights, optimizer, step), for resuming
    RUN/summaries/        TensorBoard event files; RUN/metrics.jsonl the same scalars, one JSON line each
    RUN/export/           what `garden export` wrote
    RUN/.lock             the writer's lock: who holds it (PID, host, command)

Every other module names these files through this one. One process writes a run folder at a time
(`train`, `export`, `quantize`, `distill logits` take its `lock`); `eval`, `--watch` and `serve` read
without it.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import shutil
import socket
import sys

import tensorflow as tf

from garden.errors import GardenError, first_line
from garden.yaml_files import read_yaml, save_yaml

CONFIG = "config.yaml"
CONFIGS = "configs"
LABELS = "labels.json"
ASSETS = "assets"
ASSET_INDEX = "assets.json"
WEIGHTS = "model"
ADAPTERS = "adapters.safetensors"
CHECKPOINTS = "checkpoints"
SUMMARIES = "summaries"
METRICS = "metrics.jsonl"
EXPORT = "export"
LOCK = ".lock"
BEST = "best"  # trainer.best_checkpoint_export_subdir's default
BEST_INFO = "info.json"  # Model Garden's BestCheckpointExporter name: the best validation and its step
RESERVED = (
    WEIGHTS,
    CHECKPOINTS,
    SUMMARIES,
    ASSETS,
    EXPORT,
    CONFIGS,
)  # folders a best-checkpoint subfolder may not take


class RunFolder:
    """The files of the run folder at `path`."""

    def __init__(self, path: str):
        self.path = str(path)

    def join(self, *names: str) -> str:
        return os.path.join(self.path, *names)

    @property
    def config_path(self) -> str:
        return self.join(CONFIG)

    @property
    def weights_dir(self) -> str:
        return self.join(WEIGHTS)

    @property
    def checkpoints_dir(self) -> str:
        return self.join(CHECKPOINTS)

    @property
    def adapters_path(self) -> str:
        return self.join(ADAPTERS)

    def best_dir(self, subdir: str | None = None) -> str:
        return self.join(subdir or BEST)

    def export_dir(self, head: str | None = None) -> str:
        return self.join(EXPORT, head or "")

    def started(self) -> bool:
        """Whether a run has written its config here (a trainer writes it before the first step)."""
        return os.path.isfile(self.config_path)

    def kept_steps(self) -> list[int]:
        """The steps whose inference weights RUN/model/ holds (as its state file lists them, so each is whole)."""
        state = tf.train.get_checkpoint_state(self.weights_dir)
        return sorted(int(path.rsplit("-", 1)[-1]) for path in (state.all_model_checkpoint_paths if state else []))

    def resume_command(self) -> str:
        return f"garden train --config {self.config_path} --run-dir {self.path}"

    def pick_weights(self, checkpoint=None, best_subdir: str | None = None, metric: str = "") -> tuple[str, str]:
        """(path, a line saying which they are) of the inference weights `checkpoint` names: 'best'
        (the best validation's, kept in `best_subdir` with its `metric`), 'latest', a kept step, or
        None for the best where the run keeps it and else the newest; one line when there are none."""
        best_dir = self.best_dir(best_subdir)
        best = read_best_info(best_dir)
        if checkpoint in (None, "best") and best:
            step = best["best_ckpt_global_step"]
            value = f", validation {metric} {best[metric]:.6g}" if metric in best else ""
            return os.path.join(best_dir, f"ckpt-{step}"), f"best checkpoint (step {step}{value})"
        if checkpoint == "best":
            raise GardenError(
                f"{self.path} kept no best checkpoint; train it with --set trainer.best_checkpoint_eval_metric="
                "METRIC to keep one, or pass --checkpoint latest"
            )
        latest = tf.train.latest_checkpoint(self.weights_dir)
        if not latest:
            raise GardenError(self._no_weights())
        if checkpoint in (None, "latest"):
            return latest, f"latest checkpoint (step {latest.rsplit('-', 1)[-1]})"
        steps = self.kept_steps()
        if not (str(checkpoint).isdigit() and int(checkpoint) in steps):
            raise GardenError(
                f"--checkpoint {checkpoint}: {self.weights_dir}/ holds the weights of steps "
                f"{', '.join(map(str, steps))}; pass one of them, best or latest"
            )
        return os.path.join(self.weights_dir, f"ckpt-{int(checkpoint)}"), f"checkpoint of step {int(checkpoint)}"

    def _no_weights(self) -> str:
        command = self.resume_command()
        if tf.train.latest_checkpoint(self.checkpoints_dir):
            return (
                f"{self.path} has training checkpoints but no inference weights (RUN/{WEIGHTS}/, written by "
                f"Garden since 0.2); run '{command}' once to write them from its newest checkpoint"
            )
        return f"{self.path} has no checkpoint yet; run '{command}'"

    # ---- files --------------------------------------------------------------------------------------

    def write_config(self, config) -> None:
        _replace(self.config_path, lambda path: save_yaml(config, path))

    def config_at(self, step: int) -> tuple[str, dict] | None:
        """(path, config as its YAML reads) of the config revision that trained `step`: the newest
        from `step` or before; None for a run that recorded none (trained before Garden kept them)."""
        steps = [s for s in self._revisions() if s <= step]
        if not steps:
            return None
        path = self.join(CONFIGS, f"step-{max(steps)}.yaml")
        return path, read_yaml(path)

    def record_config(self, config, step: int) -> str:
        """Records `config` as the one the run trains with from `step` on (revisions after `step`
        trained steps that are gone, and go too); returns its path."""
        os.makedirs(self.join(CONFIGS), exist_ok=True)
        for later in (s for s in self._revisions() if s > step):
            os.remove(self.join(CONFIGS, f"step-{later}.yaml"))
        path = self.join(CONFIGS, f"step-{step}.yaml")
        _replace(path, lambda temporary: save_yaml(config, temporary))
        return path

    def _revisions(self) -> list[int]:
        names = os.listdir(self.join(CONFIGS)) if os.path.isdir(self.join(CONFIGS)) else []
        return [int(n[5:-5]) for n in names if n.startswith("step-") and n.endswith(".yaml") and n[5:-5].isdigit()]

    def read_labels(self) -> list | dict | None:
        """labels.json: the label names, or sub-task name -> label names for a multi-task run."""
        if not os.path.isfile(self.join(LABELS)):
            return None
        with open(self.join(LABELS)) as f:
            return json.load(f)

    def write_labels(self, labels: list | dict | None) -> None:
        _replace(self.join(LABELS), lambda path: _write_json(path, labels))

    def write_assets(self, assets: dict[str, str]) -> None:
        """Copies the files and folders inference needs (config key -> path) into RUN/assets/ and names
        them in assets.json."""
        os.makedirs(self.join(ASSETS), exist_ok=True)
        named = {}
        for key, source in assets.items():
            name = os.path.join(ASSETS, f"{key}-{os.path.basename(os.path.normpath(source))}")
            if os.path.isdir(source):
                shutil.copytree(source, self.join(name), dirs_exist_ok=True)
            else:
                shutil.copyfile(source, self.join(name))
            named[f"task.{key}"] = name
        _replace(self.join(ASSET_INDEX), lambda path: _write_json(path, named))

    def asset_overrides(self) -> dict:
        """Config overrides that point each asset key at the run folder's copy."""
        overrides = {}
        if os.path.isfile(self.join(ASSET_INDEX)):
            with open(self.join(ASSET_INDEX)) as f:
                for key, name in json.load(f).items():
                    *parents, last = key.split(".")
                    node = overrides
                    for part in parents:
                        node = node.setdefault(part, {})
                    node[last] = os.path.abspath(self.join(name))
        return overrides

    def lock(self, command: str, shared: bool = False) -> "FolderLock":
        """Takes the folder's lock for `command`: exclusive to write it, `shared` to read a snapshot of it;
        refused in one line while another command holds it otherwise."""
        return FolderLock(self.path, command, shared)


def write_best_info(best_dir: str, step: int, metrics: dict) -> None:
    """Writes info.json (the validation metrics of the best step and that step) atomically."""
    info = {**metrics, "best_ckpt_global_step": step}
    _replace(os.path.join(best_dir, BEST_INFO), lambda path: _write_json(path, info))


def read_best_info(best_dir: str) -> dict | None:
    """The info.json of a best-checkpoint folder, or None when it has none."""
    path = os.path.join(best_dir, BEST_INFO)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def restore(checkpoint: tf.train.Checkpoint, path: str):
    """`checkpoint.restore(path)` with a one-line GardenError when the files are unreadable."""
    return read_checkpoint(checkpoint.restore, path)


def read_checkpoint(function, path: str):
    """`function(path)` with a one-line GardenError when the checkpoint's files are unreadable."""
    try:
        return function(path)
    except (tf.errors.OpError, ValueError, AssertionError, IndexError) as error:
        reason = first_line(error)[:200]
        raise GardenError(
            f"checkpoint {path} is unreadable ({reason}); remove it to resume from an earlier one, or use a new "
            "run folder"
        ) from error


def disk_full(error: BaseException) -> bool:
    """Whether `error` is a write that found its disk full (TensorFlow's, Python's, or shutil's copies,
    which gather theirs in one Error)."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    return isinstance(error, (OSError, tf.errors.ResourceExhaustedError)) and "No space left on device" in str(error)


def _write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=2)


def _replace(path, write):
    """Writes `path` through `write(temporary path)` beside it, then renames it in: a reader sees the
    old file or the new one, never a part."""
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


class FolderLock:
    """A `flock` on FOLDER/.lock, which the kernel releases when its process ends however it ends
    (SIGKILL included), so a lock is never stale. An exclusive holder (a writer) writes its name into
    the file and removes the file on release; one killed first leaves its name behind, and the next
    writer says so (`left_by`) as it takes over. Shared holders (readers of a snapshot: export,
    quantize, distill) exclude writers, not each other. A folder the lock created and nothing else
    wrote into is removed on release, so a refused command leaves no trace. `flag` is the option that
    named the folder, for messages."""

    def __init__(self, folder: str, command: str, shared: bool = False, flag: str = "--run-dir"):
        self.folder, self.path, self.shared, self.left_by = folder, os.path.join(folder, LOCK), shared, None
        self._fd, self.created = None, _first_missing(folder)
        if shared and self.created:
            return  # nothing to read: the command refuses the folder itself
        while self._fd is None:
            try:
                os.makedirs(folder, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                if shared:  # a folder no one may write (read-only) has no writer to exclude
                    return
                raise GardenError(
                    f"cannot write to {folder} ({error.strerror}); pass {flag} a folder you can write"
                ) from None
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except OSError as error:
                holder = _holder(fd)
                os.close(fd)
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise GardenError(f"cannot lock {self.path} ({error.strerror}); use a local folder") from None
                raise GardenError(
                    f"{folder} is in use by {_describe(holder)}; wait for it to end or stop it, or pass {flag} "
                    "another folder"
                ) from None
            if _same_file(fd, self.path):
                self._fd = fd
            else:  # its holder removed the file as it let go: lock the next one
                os.close(fd)
        self.left_by = _holder(self._fd)  # a writer that ended without releasing (killed)
        if not shared:
            now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": now}
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, json.dumps({**holder, "argv": " ".join(sys.argv)[:300]}).encode(), 0)

    def describe_left_by(self) -> str:
        """A line on the writer that was killed holding the lock, or ''."""
        if not self.left_by:
            return ""
        return f"{self.folder}: took over the lock of {_describe(self.left_by)}, which ended without releasing it"

    def release(self) -> None:
        """Lets go; the last holder removes the lock file (and the folder, when the lock made it and it is empty)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a reader's fails while others read on
            os.remove(self.path)
            folder = os.path.abspath(self.folder)
            while self.created and not os.listdir(folder):  # up to the first folder the lock made
                os.rmdir(folder)
                if folder == self.created:
                    break
                folder = os.path.dirname(folder)
        except OSError:
            pass
        finally:
            os.close(fd)

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.release()


def _first_missing(folder: str) -> str | None:
    """The outermost folder of the path `folder` that does not exist yet, or None."""
    missing, path = None, os.path.abspath(folder)
    while not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _holder(fd: int) -> dict | None:
    """The writer that a lock file names, or None."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        holder = json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return {}
    return holder if holder is None or isinstance(holder, dict) else {}


def _describe(holder: dict | None) -> str:
    if holder is None:
        return "another garden command reading it (export, quantize or distill)"
    if "pid" not in holder:
        return "another process (its lock file is unreadable)"
    where = f"PID {holder['pid']} on {holder.get('host')}, since {holder.get('since')}"
    return f"'garden {holder.get('command')}' ({where})"
