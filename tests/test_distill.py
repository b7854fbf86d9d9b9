"""Static distillation (model2vec): PCA and SIF by hand, MiniLM distilled for real, a classifier on
the distilled table trained on R8 and exported to TFLite with raw strings."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, garden

from garden.distill.static import StaticEncoder, pca, sif_weights
from garden.errors import GardenError
from garden.models.backbones.static import StaticEmbedding
from garden.models.pretrained import checkpoint_dir

PARAPHRASES = [
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("The stock market fell sharply today.", "Shares dropped steeply on the exchange."),
    ("The cat sleeps on the sofa.", "A kitten is napping on the couch."),
]


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    out = tmp_path_factory.mktemp("static") / "minilm"
    garden("distill", "static", "--teacher", "minilm", "--pca-dims", "64", "--out", out)
    return out


def test_pca_keeps_a_plane_exactly_and_orders_its_axes():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 2)) @ np.array([[1.0, 2.0, 0.5], [0.0, 1.0, -1.0]]) + 3.0  # a plane in 3-D
    projected, explained = pca(points, 2)
    assert explained == pytest.approx(1.0)
    distances = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(distances(projected), distances(points), atol=1e-9)
    assert projected[:, 0].var() >= projected[:, 1].var()
    assert pca(points, 1)[1] < 1.0
    with pytest.raises(GardenError, match="--pca-dims 4"):
        pca(points, 4)


def test_sif_weights_follow_zipf_by_hand():
    # ranks 1..3 have Zipf mass 1/2, 1/3, 1/4 -> p = 6/13, 4/13, 3/13; weight = a / (a + p) with a = 1/2
    np.testing.assert_allclose(sif_weights(3, 0.5), [13 / 25, 13 / 21, 13 / 19])
    with pytest.raises(GardenError, match="between 0 and 1"):
        sif_weights(3, 1.5)


def test_distill_writes_the_table_the_teacher_vocabulary_and_a_summary(distilled):
    summary = json.loads((distilled / "static.json").read_text())
    assert summary["teacher"] == "minilm" and summary["pca_dims"] == 64 and 0.3 < summary["explained_variance"] < 1
    assert np.load(distilled / "embeddings.npy").shape == (30522, 64)
    teacher_vocabulary = checkpoint_dir("all_minilm_l6_v2") + "/vocab.txt"
    assert (distilled / "vocab.txt").read_text() == open(teacher_vocabulary, encoding="utf-8").read()


def test_encode_puts_paraphrases_closer_than_unrelated_sentences(distilled):
    vectors = StaticEncoder(str(distilled)).encode([s for pair in PARAPHRASES for s in pair])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    cosine = vectors @ vectors.T
    for i in range(len(PARAPHRASES)):
        paraphrase = cosine[2 * i, 2 * i + 1]
        unrelated = [cosine[2 * i, 2 * j + k] for j in range(len(PARAPHRASES)) if j != i for k in (0, 1)]
        assert paraphrase > max(unrelated), PARAPHRASES[i]


def test_static_backbone_pools_the_distilled_rows_and_rebuilds_from_config(distilled):
    backbone = StaticEmbedding(distilled_path=str(distilled))
    table = np.load(distilled / "embeddings.npy")
    token_ids = np.array([[101, 2054, 2003, 102, 0, 0]], dtype=np.int32)
    padding_mask = (token_ids != 0).astype(np.int32)
    pooled = backbone({"token_ids": token_ids, "padding_mask": padding_mask})["pooled_output"]
    np.testing.assert_allclose(pooled[0], table[[101, 2054, 2003, 102]].mean(axis=0), rtol=1e-5, atol=1e-7)
    rebuilt = StaticEmbedding.from_config(backbone.get_config())
    assert rebuilt.get_config() == backbone.get_config() and rebuilt.hidden_dim == 64
    with pytest.raises(GardenError, match="no embeddings.npy in /no/such"):
        StaticEmbedding(distilled_path="/no/such")


def test_classifier_on_static_embeddings_learns_r8_and_exports_raw_strings_to_tflite(distilled, tmp_path):
    """Trained from a distilled table, the run folder keeps its own copy: eval and export work after
    the distilled folder is gone."""
    run_dir, table = tmp_path / "r8_static", tmp_path / "table"
    shutil.copytree(distilled, table)
    sets = [
        f"task.model.backbone.params.distilled_path={table}",
        "task.train_data.num_examples=2048",
        "task.test_data.num_examples=500",
        "task.model.tokenizer.sequence_length=128",
        "trainer.train_steps=300",
        "trainer.steps_per_loop=100",
        "trainer.checkpoint_interval=300",
        "trainer.validation_interval=300",
        "trainer.optimizer_config.learning_rate.polynomial.decay_steps=300",
        "trainer.optimizer_config.learning_rate.polynomial.initial_learning_rate=0.01",
        "trainer.optimizer_config.warmup.linear.warmup_steps=30",
    ]
    garden("train", "r8_static", *[a for s in sets for a in ("--set", s)], "--run-dir", run_dir)
    shutil.rmtree(table)
    result = json.loads(garden("eval", run_dir, "--split", "test").stdout.splitlines()[-1])
    assert result["examples"] == 500 and result["accuracy"] > 0.88  # 93% validation in 300 steps
    garden("export", run_dir, "--format", "tflite", "--quantize", "int8")
    entry = json.loads((run_dir / "export" / "manifest.json").read_text())["artifacts"]["model_int8.tflite"]
    assert entry["accuracy_drop"] <= 1.0 and "FastWordpieceTokenizeWithOffsets" in entry["custom_ops"]
    assert entry["size_bytes"] < 0.3 * 30522 * 64 * 4 + 2e6  # int8 table plus the tokenizer's vocabulary


def test_encode_benchmark_runs_in_quick_mode(distilled):
    result = subprocess.run(
        [sys.executable, "benchmarks/static_encode.py", "--static", str(distilled), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=True,
    )
    ratio = re.search(r"ratio static / teacher:\s+([\d.]+)x", result.stdout)
    assert ratio and float(ratio.group(1)) > 0, result.stdout
