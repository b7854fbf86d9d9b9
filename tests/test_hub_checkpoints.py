"""Pretrained checkpoints by hub name (garden/data/checkpoints.py), never touching a network: the tests
lay tiny random checkpoints into a Hugging Face hub cache and a kagglehub cache as those libraries lay
their downloads, with the Hub set offline, and load them by hf://, kaggle:// and a KerasHub preset
name: the weights are the folder's, bit for bit, and the resolved config names the exact commit or
version and the weights' sha256."""

import hashlib
import os
import shutil
import subprocess
import sys

import huggingface_hub.constants
import keras_hub
import numpy as np
import pytest
from conftest import ROOT, garden, tmpfs
from test_pretrained_decoders import _write_llama, _write_qwen

from garden.data import catalog
from garden.data.checkpoints import checkpoint_dir, pull
from garden.distill.static import distill_static
from garden.errors import GardenError
from garden.models import hf_import
from garden.models.lora import base_weights
from garden.models.task_model import build_task_model
from garden.registry import TASKS
from garden.resolve import experiment_config

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LLAMA = "hf://tiny-org/tiny-llama"
BERT = "kaggle://tiny-owner/bert/keras/tiny_bert/2"
MOBILENET = "mobilenet_v3_small_050_imagenet"  # a KerasHub preset: kaggle://keras/mobilenetv3/keras/.../1


def lay_hf(cache, repository, folder, commit=COMMIT):
    """`folder`'s files in a Hugging Face hub cache as a download leaves them: blobs named by their
    hash, linked from snapshots/COMMIT/, and refs/main naming the commit."""
    repo = cache / f"models--{repository.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(exist_ok=True)
            blob.write_bytes(data)
            link = repo / "snapshots" / commit / path.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    return repo / "snapshots" / commit


def lay_kaggle(cache, handle, folder):
    """`folder`'s files in a kagglehub cache as a whole-model download leaves them:
    models/OWNER/MODEL/FRAMEWORK/VARIATION/VERSION/, and VERSION.complete beside it."""
    owner, model, framework, variation, version = handle.removeprefix("kaggle://").split("/")
    base = cache / "models" / owner / model / framework / variation
    shutil.copytree(folder, base / version)
    (base / f"{version}.complete").touch()
    return base / version


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """(the Hugging Face hub cache, the kagglehub cache), empty; the Hub offline."""
    hf, kaggle = tmp_path / "hf", tmp_path / "kaggle"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(kaggle))
    return hf, kaggle


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama")
    _write_llama(folder)
    return folder


def initialized_backbone(experiment, *sets):
    """The backbone of `experiment`'s model with `sets`, after the task loaded task.init_checkpoint; the config."""
    config = experiment_config(experiment, sets=list(sets))
    task = TASKS.get(config.task.type)(config.task)
    model = task.build_model()
    task.initialize(model)
    return model.get_layer("backbone"), config


def assert_same_weights(ours, theirs):
    ours, theirs = base_weights(ours), base_weights(theirs)
    assert len(ours) == len(theirs) > 0
    for mine, reference in zip(ours, theirs):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(reference))


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_a_hugging_face_name_loads_the_cached_commit_bit_for_bit_and_records_what_it_loaded(
    family, caches, llama, tmp_path, monkeypatch
):
    folder = llama if family == "llama" else tmp_path / "qwen3"
    if family == "qwen3":
        folder.mkdir()
        _write_qwen(folder, version=3)
    lay_hf(caches[0], f"tiny-org/tiny-{family}", folder)
    name = f"hf://tiny-org/tiny-{family}"
    hashed, hash_file = [], catalog.sha256
    monkeypatch.setattr(catalog, "sha256", lambda path: hashed.append(os.path.basename(path)) or hash_file(path))
    backbone, config = initialized_backbone(
        "shakespeare_gpt2", f"task.model.backbone.type={family}", f"task.init_checkpoint={name}"
    )
    assert hashed == ["model.safetensors"]  # recorded and checked from one read: a 7B checkpoint hashes in a minute
    assert config.task.init_checkpoint == f"{name}@{COMMIT}"
    assert config.task.init_checkpoint_sha256 == f"model.safetensors={sha256(folder / 'model.safetensors')}"
    assert config.task.model.backbone.params.num_layers == hf_import.encoder_params(str(folder))["num_layers"]
    assert_same_weights(backbone.hub, hf_import.encoder(str(folder)).hub)


def test_a_kaggle_name_and_a_preset_name_load_their_cached_versions_bit_for_bit(caches, tmp_path):
    """A KerasHub BERT preset under a Kaggle handle into a text classifier, and a MobileNetV3 preset
    under the Kaggle handle of KerasHub's preset name into an image classifier."""
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "oil", "rose"])
    bert = keras_hub.models.BertBackbone(
        vocabulary_size=7, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=128
    )
    bert.save_to_preset(str(tmp_path / "bert"))
    tokenizer.save_to_preset(str(tmp_path / "bert"))
    cached = lay_kaggle(caches[1], BERT, tmp_path / "bert")
    backbone, config = initialized_backbone(
        "r8_minilm", "task.model.backbone.type=bert", f"task.init_checkpoint={BERT}", "task.model.tokenizer.vocabulary="
    )
    assert config.task.init_checkpoint == BERT
    assert config.task.init_checkpoint_sha256 == f"model.weights.h5={sha256(cached / 'model.weights.h5')}"
    assert config.task.model.backbone.params.hidden_dim == 16
    assert_same_weights(backbone.encoder, bert)
    by_name = distill_static(BERT, str(tmp_path / "static_by_name"), pca_dims=4)  # a teacher by name too
    distill_static(str(tmp_path / "bert"), str(tmp_path / "static_by_folder"), pca_dims=4)
    assert by_name["teacher"] == BERT and by_name["vocabulary_size"] == 7
    np.testing.assert_array_equal(
        np.load(tmp_path / "static_by_name" / "embeddings.npy"),
        np.load(tmp_path / "static_by_folder" / "embeddings.npy"),
    )

    image_sets = [
        "task.model.backbone.params.variant=small_050",
        "task.model.backbone.params.image_shape=[32, 32, 3]",
        "task.validation_data.input_path=''",
    ]
    image_config = experiment_config("mnist_mobilenet_v3", sets=image_sets)
    mobilenet = build_task_model(image_config.task.model, "other").get_layer("backbone")  # random weights
    mobilenet.hub.save_to_preset(str(tmp_path / "mobilenet"))
    lay_kaggle(caches[1], "kaggle://keras/mobilenetv3/keras/mobilenet_v3_small_050_imagenet/1", tmp_path / "mobilenet")
    backbone, config = initialized_backbone("mnist_mobilenet_v3", *image_sets, f"task.init_checkpoint={MOBILENET}")
    assert config.task.init_checkpoint == "kaggle://keras/mobilenetv3/keras/mobilenet_v3_small_050_imagenet/1"
    assert_same_weights(backbone, mobilenet)


def test_other_bytes_under_a_recorded_name_and_a_name_not_cached_are_refused_in_one_line(caches, llama):
    snapshot = lay_hf(caches[0], "tiny-org/tiny-llama", llama)
    config = experiment_config(
        "shakespeare_gpt2", sets=["task.model.backbone.type=llama", f"task.init_checkpoint={LLAMA}"]
    )
    recorded = [f"task.init_checkpoint={config.task.init_checkpoint}"]
    recorded += [f"task.init_checkpoint_sha256={config.task.init_checkpoint_sha256}", "task.model.backbone.type=llama"]
    blob = (snapshot / "model.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[:-4] + b"\0\0\0\0")  # the cached bytes changed under the recorded commit
    again = experiment_config("shakespeare_gpt2", sets=recorded)  # a recorded run's config reads without loading
    task = TASKS.get(again.task.type)(again.task)
    with pytest.raises(GardenError) as refused:
        task.initialize(task.build_model())
    message = str(refused.value)
    assert "\n" not in message and "model.safetensors" in message and f"garden pull {LLAMA}@{COMMIT}" in message

    for name, cache in [("hf://tiny-org/not-here", caches[0]), ("kaggle://tiny-owner/bert/keras/not_here/1", None)]:
        with pytest.raises(GardenError) as refused:
            experiment_config("r8_minilm", sets=[f"task.init_checkpoint={name}"])
        message = str(refused.value)
        assert "\n" not in message and message.startswith(name) and f"garden pull {name}" in message
        assert cache is None or str(cache) in message
    with pytest.raises(GardenError, match="did you mean 'mobilenet_v3_small_050_imagenet'"):
        checkpoint_dir("mobilenet_v3_small_050_imagenett")  # not a name: loading it says so (a run's may be gone)


def test_garden_pull_honours_the_hubs_environment_and_a_failed_train_leaves_no_run_folder(tmp_path, llama):
    """In a process of its own, the caches and offline mode set by environment variables only."""
    hf, target, run = tmp_path / "hf", tmp_path / "copied", tmp_path / "run"
    lay_hf(hf, "tiny-org/tiny-llama", llama)
    environment = {**os.environ, "HF_HUB_CACHE": str(hf), "HF_HUB_OFFLINE": "1", "KAGGLEHUB_CACHE": str(tmp_path)}
    script = (
        "import sys; from garden import cli\n"
        f"cli.main(['pull', '{LLAMA}', '--to', {str(target)!r}])\n"
        "sys.exit(cli.main(['train', 'shakespeare_gpt2', '--set', 'task.model.backbone.type=llama', '--set', "
        f"'task.init_checkpoint=hf://tiny-org/missing', '--run-dir', {str(run)!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert f'"init_checkpoint": "{LLAMA}@{COMMIT}"' in result.stdout
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in llama.iterdir())
    assert all(not p.is_symlink() and p.read_bytes() == (llama / p.name).read_bytes() for p in target.iterdir())
    errors = [line for line in result.stderr.splitlines() if line.startswith("garden")]
    assert errors == [line for line in result.stderr.splitlines() if line.strip()], result.stderr  # no traceback
    assert len(errors) == 1 and "HF_HUB_OFFLINE is set" in errors[0] and str(hf) in errors[0]
    assert not run.exists()

    copied = garden(
        "show", "shakespeare_gpt2", "--set", "task.model.backbone.type=llama", "--set", f"task.init_checkpoint={target}"
    ).stdout  # a folder is taken as it is
    assert f"init_checkpoint: {target}" in copied and "init_checkpoint_sha256: ''" in copied


def test_names_outside_the_hubs_rules_a_bad_record_and_a_full_disk_are_one_line_and_leave_nothing(
    caches, llama, tmp_path
):
    for name in ["hf://tiny-org/..", "hf://../etc", "hf://a/b/c", "kaggle://o/../../..", "kaggle://o/m/f/v/latest"]:
        with pytest.raises(GardenError) as refused:
            checkpoint_dir(name)  # never a path outside the caches
        assert "\n" not in str(refused.value) and str(refused.value).startswith(name)
    record = "task.init_checkpoint_sha256=model.safetensors"
    with pytest.raises(GardenError, match="FILE=SHA256"):
        experiment_config("r8_minilm", sets=[f"task.init_checkpoint={LLAMA}", record])

    lay_hf(caches[0], "tiny-org/tiny-llama", llama)
    finished = subprocess.Popen(["true"])
    finished.wait()  # its PID is no process's now
    killed, running = tmp_path / f"copy.partial-{finished.pid}", tmp_path / f"copy.partial-{os.getppid()}"
    killed.mkdir(), running.mkdir()
    pull(LLAMA, str(tmp_path / "copy"))  # a killed pull's staging is removed, a running one's kept
    assert (
        not killed.exists() and running.exists() and sorted(os.listdir(tmp_path / "copy")) == sorted(os.listdir(llama))
    )
    with pytest.raises(GardenError, match="exists; name a new folder"):
        pull(LLAMA, str(tmp_path / "copy"))
    size = sum(p.stat().st_size for p in llama.iterdir())
    with tmpfs(tmp_path / "disk", size // 2048) as disk:  # half the checkpoint
        with pytest.raises(GardenError) as refused:
            pull(LLAMA, str(disk / "copy"))
        assert str(refused.value).startswith(f"cannot copy {LLAMA} into {disk / 'copy'}: ")
        assert os.listdir(disk) == []
