"""`garden export`: a run's artifacts in each asked-for format, each verified before it is written.

The serving companion of the run's task names its reference (`Serving.export_kind`, looked up in
`REFERENCES`): what judges an artifact against the Keras model (a task's serving outputs on held-out
examples, or a decoder's decode step and generation). Each format in `EXPORTERS` turns the one
SavedModel written per export into its artifacts, and judges each through the reference's one call,
`judge(kind, runner, signature)`. A new format is one file with one registered function:

    @EXPORTERS.register("my_format")
    def my_format(reference: ExportReference, export_dir: str, workdir: str) -> list[Job]:
        def export():
            signature = reference.signature_to_convert()
            path = my_convert(reference.saved_model_to_convert(workdir, signature), export_dir)
            measured = reference.judge("my_format", my_runner(path), signature)  # raises Refused past a bound
            return reference.record(export_dir, "model.my", path, measured)

        return [("model.my", export)]

plus its import line in `export/formats.py`. `my_runner(path)(signature)` runs the artifact's
signature: fn(**named arrays) -> named outputs. The CLI prints the measured figures as a table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import shutil
import tempfile
from collections.abc import Callable

from garden.errors import GardenError
from garden.export import manifest
from garden.export.reference import TFLITE_BOUNDS
from garden.export.serving import serving_for
from garden.export.verify import Refused
from garden.registry import EXPORTERS, REFERENCES
from garden.run_folder import disk_full


@contextlib.contextmanager
def staged(export_dir: str, name: str):
    """A staging folder in `export_dir` (`.NAME-*`, which the next export clears if this one is killed)
    that becomes `export_dir/NAME` if the block ends without an error; removed either way, so a refused
    artifact leaves nothing behind."""
    target = os.path.join(export_dir, name)
    staging = tempfile.mkdtemp(dir=export_dir, prefix=f".{name}-")
    try:
        yield staging
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would hide the artifact from a server's user
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


Job = tuple[str, Callable[[], dict]]  # (artifact name, fn() -> the manifest after writing it)
Entry = tuple[str, dict]  # (artifact name, what it measured: its manifest entry, or a refused one's figures)
PREVIOUS = ".previous"  # another checkpoint's export, set aside until this one is written
STAGING = (".export-*", "*.tmp")  # what an export writes before it renames it in, beside each format's staged()


@dataclasses.dataclass
class ExportOptions:
    formats: list[str] = dataclasses.field(default_factory=lambda: ["saved_model"])
    quantize: list[str] = dataclasses.field(default_factory=lambda: ["none"])  # TFLite modes
    signature: str = "serving_default"  # the signature TFLite converts
    max_error: float | None = None  # parity bound on max |Δ| (None: each format's and mode's own)
    max_quality_drop: float = 1.0  # points of the task's quality (accuracy, say) an artifact may lose
    max_length: int | None = None  # decoders: tokens the decode step's cache holds (None: 256 or the positions)
    decode_batch: int = 1  # decoders: rows the decode step takes at once


class Export:
    """One `garden export`: the run's reference, built once, and a work folder in `export_dir` (for
    the SavedModel that every format reads) removed when the export ends. An export of another
    checkpoint is set aside, not removed, until this one is written: a failed, full-disk or killed
    export leaves the older one as it was (the next export restores a killed one's)."""

    def __init__(self, run, export_dir: str, options: ExportOptions):
        for name in options.formats:  # refused before the reference's work
            if name not in EXPORTERS:
                raise GardenError(f"unknown --format '{name}'; choose from: {', '.join(EXPORTERS.names())}")
        for mode in options.quantize:
            if mode not in TFLITE_BOUNDS:
                raise GardenError(f"unknown --quantize '{mode}'; choose from: {', '.join(TFLITE_BOUNDS)}")
        default = ExportOptions()
        decoder_options = {
            "--max-length": options.max_length is not None,
            "--decode-batch": options.decode_batch != default.decode_batch,
        }
        kind = serving_for(run.task).export_kind
        if kind != "decoder" and any(decoder_options.values()):
            given = " and ".join(flag for flag, set_ in decoder_options.items() if set_)
            raise GardenError(
                f"{given} shape a language model's decode step; leave them out for a {run.config.task.type} run"
            )
        if all(getattr(EXPORTERS.get(name), "backbone_only", False) for name in options.formats):
            kind = "backbone"  # formats that judge the backbone themselves: no held-out outputs to compute
        if options.max_error is not None and not options.max_error >= 0:  # NaN too
            raise GardenError(f"--max-error must be a number of 0 or more (got {options.max_error})")
        self.created = not os.path.exists(export_dir)
        try:
            os.makedirs(export_dir, exist_ok=True)
            tempfile.TemporaryDirectory(dir=export_dir).cleanup()
        except OSError as error:
            raise GardenError(
                f"cannot write to {export_dir} ({error.strerror}); pass --out a folder you can write"
            ) from error
        self.export_dir, self.options = export_dir, options
        self._clear_staging()
        try:
            self.reference = REFERENCES.get(kind)(run, options)
        except BaseException:
            self._remove_if_empty()
            raise
        self.replaced = self._set_aside_other_checkpoint()

    def _remove_if_empty(self):
        """A folder this export created and wrote nothing into is removed: a refusal leaves no trace."""
        if self.created and not os.listdir(self.export_dir):
            os.rmdir(self.export_dir)

    def _clear_staging(self) -> None:
        """Removes what a killed export left in the folder, and restores the export it had set aside."""
        for pattern in (*STAGING, *(f".{name}-*" for name in EXPORTERS.names())):  # staged()'s folders too
            for path in glob.glob(os.path.join(glob.escape(self.export_dir), pattern)):
                _remove(path)
        self._restore_set_aside()

    def _set_aside_other_checkpoint(self) -> str:
        """Moves the artifacts (and manifest) that `export_dir` holds from another checkpoint into
        `.previous/`, so a folder never mixes checkpoints; returns a line saying so, or ''."""
        found = manifest.read(self.export_dir)
        ours = self.reference.source()["weights_fingerprint"]
        if not found["artifacts"] or found.get("weights_fingerprint") == ours:
            return ""
        previous = os.path.join(self.export_dir, PREVIOUS)
        os.makedirs(previous)
        for path in [*_artifact_paths(self.export_dir, found), manifest.path(self.export_dir)]:
            os.replace(path, os.path.join(previous, os.path.basename(path)))
        return (
            f"replacing {', '.join(found['artifacts'])} of {found.get('checkpoint') or 'an older checkpoint'} in "
            f"{self.export_dir} with this export of {self.reference.source()['checkpoint']} once it is written"
        )

    def _restore_set_aside(self) -> None:
        """Puts back the export set aside in `.previous/`, removing what an unfinished export wrote."""
        previous = os.path.join(self.export_dir, PREVIOUS)
        if not os.path.isdir(previous):
            return
        unfinished = manifest.read(self.export_dir)
        for path in [*_artifact_paths(self.export_dir, unfinished), manifest.path(self.export_dir)]:
            _remove(path)
        for name in os.listdir(previous):
            os.replace(os.path.join(previous, name), os.path.join(self.export_dir, name))
        os.rmdir(previous)

    def run(self, progress: Callable[[str], None] = lambda line: None) -> tuple[list[Entry], list[str], str | None]:
        """((name, what it measured) of the Keras model, then of each artifact, refused ones too; the
        refusals; the manifest's path or None). `progress` is told of each artifact before its (tens of
        seconds of) work."""
        entries, refused, manifest = [("keras model", self.reference.keras_entry())], [], None
        artifact = "the SavedModel"
        try:
            with tempfile.TemporaryDirectory(dir=self.export_dir, prefix=".export-") as workdir:
                for name in self.options.formats:
                    for artifact, job in EXPORTERS.get(name)(self.reference, self.export_dir, workdir):
                        progress(f"{artifact}: writing it and checking it against the Keras model ...")
                        try:
                            entry = job()["artifacts"][artifact]
                            manifest = os.path.join(self.export_dir, "manifest.json")
                        except Refused as error:
                            entry = {**error.measured, "path": "refused"}
                            refused.append(str(error))
                        entries.append((artifact, entry))
        except BaseException as error:
            self._clear_staging()  # nothing of the export set aside is lost to one that did not finish
            if disk_full(error):
                kept = "the export before is kept" if self.replaced else "the artifacts written before are kept"
                raise GardenError(
                    f"no space left on the disk of {self.export_dir} writing {artifact}; free space there or pass "
                    f"--out a folder on another disk ({kept})"
                ) from None
            raise
        else:
            if manifest is None:  # every artifact refused: the export set aside stays the folder's
                self._restore_set_aside()
            shutil.rmtree(os.path.join(self.export_dir, PREVIOUS), ignore_errors=True)
        finally:
            self._remove_if_empty()
        return entries, refused, manifest


def _artifact_paths(export_dir: str, found: dict) -> list[str]:
    """The files and folders of the artifacts a manifest lists, as far as they exist."""
    paths = [os.path.join(export_dir, os.path.basename(entry["path"])) for entry in found["artifacts"].values()]
    return [path for path in paths if os.path.exists(path)]


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)
