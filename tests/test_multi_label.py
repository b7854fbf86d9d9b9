"""Multi-label classification: metrics and thresholds against scikit-learn, and a small BERT trained
on multi-label texts built from real R8 documents (one or two documents, each with its label),
exported to a SavedModel with its per-class thresholds."""

import json

import numpy as np
import pytest
import sklearn.metrics
import tensorflow as tf
from conftest import TINY_TEXT, garden

from garden import metrics
from garden.config import DataConfig
from garden.data.mnist import mnist
from garden.errors import GardenError
from garden.registry import DATASETS
from garden.resolve import experiment_config
from garden.run import Run
from garden.train.evaluate import split_examples
from garden.train.strategy import resolve_strategy
from garden.train.trainer import Trainer


def test_multi_label_metrics_and_thresholds_match_sklearn():
    rng = np.random.default_rng(0)
    labels = (rng.random((200, 5)) < [0.1, 0.3, 0.5, 0.2, 0.05]).astype(np.float32)
    logits = 2.0 * labels + rng.normal(0, 1.5, labels.shape)
    logits[:20, 0] = 0.25  # ties
    decisions = (logits > 0.8).astype(np.int32)
    result = metrics.multi_label_metrics(labels, logits, decisions)
    assert result["f1_micro"] == pytest.approx(sklearn.metrics.f1_score(labels, decisions, average="micro"))
    assert result["f1_macro"] == pytest.approx(sklearn.metrics.f1_score(labels, decisions, average="macro"))
    assert result["map"] == pytest.approx(sklearn.metrics.average_precision_score(labels, logits, average="macro"))
    assert result["exact_match"] == pytest.approx(sklearn.metrics.accuracy_score(labels, decisions))
    probabilities = 1 / (1 + np.exp(-logits))
    expected_loss = sklearn.metrics.log_loss(labels.ravel(), probabilities.ravel())
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-6)

    thresholds = metrics.best_thresholds(labels, probabilities, np.full(5, 0.5))
    for c in range(5):  # no threshold gives the class a higher F1 on these examples
        chosen = sklearn.metrics.f1_score(labels[:, c], probabilities[:, c] >= thresholds[c])
        every = [sklearn.metrics.f1_score(labels[:, c], probabilities[:, c] >= t) for t in probabilities[:, c]]
        assert chosen == pytest.approx(max(every))
    none_positive = np.zeros_like(labels)
    np.testing.assert_array_equal(metrics.best_thresholds(none_positive, probabilities, np.full(5, 0.3)), 0.3)


def write_multi_label_r8(path, split, count, seed):
    """`count` JSON lines of one or two R8 documents (20 words each) labelled with their classes."""
    examples = DATASETS.get("reuters_r8")(DataConfig(dataset="reuters_r8", split=split))
    texts, labels, names = examples.features["text"], examples.labels, examples.label_names
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for _ in range(count):
            chosen = [rng.integers(len(texts))]
            second = rng.integers(len(texts))
            if rng.random() < 0.5 and labels[second] != labels[chosen[0]]:
                chosen.append(second)
            text = " ".join(" ".join(texts[i].split()[:20]) for i in chosen)
            f.write(json.dumps({"sentence": text, "label": [names[labels[i]] for i in chosen]}) + "\n")
    return path


@pytest.fixture(scope="module")
def multi_label_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi_label")
    files = {
        split: write_multi_label_r8(folder / f"{split}.jsonl", source, count, seed)
        for split, source, count, seed in (
            ("train", "train", 1200, 0),
            ("validation", "validation", 300, 1),
            ("test", "test", 300, 2),
        )
    }
    config = experiment_config(
        "multi_label_minilm",
        sets=[
            *TINY_TEXT,
            "task.model.head.params.num_classes=8",
            f"task.train_data.input_path={files['train']}",
            f"task.validation_data.input_path={files['validation']}",
            "task.test_data.dataset=multi_label_text_file",
            f"task.test_data.input_path={files['test']}",
            "trainer.optimizer_config.warmup.linear.warmup_steps=12",
        ],
    )
    Trainer(config, str(folder / "run"), resolve_strategy(config.runtime)).train()
    return folder / "run"


def test_a_multi_label_model_learns_sets_its_thresholds_on_validation_and_exports_them(multi_label_run):
    run = Run(str(multi_label_run))
    thresholds = run.model.get_layer("head").thresholds.numpy()
    assert not np.allclose(thresholds, 0.5)  # set by the validation
    validation = split_examples(run, "validation")
    probabilities = tf.sigmoid(run.model.predict(run.task.preprocess(validation.features), verbose=0)["logits"])
    truth = validation.labels.astype(bool)
    for c in np.flatnonzero(truth.any(axis=0)):  # each class's F1 on validation is the best any threshold gives
        scores = probabilities.numpy()[:, c]
        chosen = sklearn.metrics.f1_score(truth[:, c], scores >= thresholds[c])
        assert chosen == pytest.approx(max(sklearn.metrics.f1_score(truth[:, c], scores >= t) for t in scores))

    # eval's figures on the test split are scikit-learn's of the Keras model's outputs
    test = json.loads(garden("eval", multi_label_run, "--split", "test").stdout)
    examples = split_examples(run, "test")
    keras_outputs = run.model.predict(run.task.preprocess(examples.features), verbose=0)
    truth, decided = examples.labels.astype(bool), keras_outputs["decisions"].astype(bool)
    shown = np.flatnonzero(truth.any(axis=0))
    average_precision = [
        sklearn.metrics.average_precision_score(truth[:, c], keras_outputs["logits"][:, c]) for c in shown
    ]
    assert test["f1_micro"] == pytest.approx(sklearn.metrics.f1_score(truth, decided, average="micro"), abs=1e-6)
    assert test["map"] == pytest.approx(np.mean(average_precision), abs=1e-6)
    prevalence = np.mean(truth, axis=0)
    print(f"text multi-label: micro F1 {test['f1_micro']:.4f}, mAP {test['map']:.4f}, chance {np.mean(prevalence):.4f}")
    assert test["map"] > np.mean(prevalence) + 0.4 and test["f1_micro"] > 0.7  # chance: the prevalence

    garden("export", multi_label_run)  # checked against the Keras model before it is written
    served = tf.saved_model.load(str(multi_label_run / "export" / "saved_model")).signatures["serving_default"]
    texts = examples.features["text"][:64]
    outputs = served(text=tf.constant(list(texts)))
    keras_outputs = {name: value[:64] for name, value in keras_outputs.items()}
    np.testing.assert_allclose(outputs["probabilities"], tf.sigmoid(keras_outputs["logits"]), atol=1e-5)
    np.testing.assert_array_equal(outputs["labels"], keras_outputs["decisions"])
    np.testing.assert_array_equal(outputs["labels"], (outputs["probabilities"].numpy() >= thresholds).astype(int))


def test_multi_label_data_and_parts_that_do_not_fit_are_one_line(multi_label_run):
    config = multi_label_run / "config.yaml"
    single = [
        "task.type=text_classification",
        "task.model.head.type=classification",
        "task.loss.type=sparse_categorical_crossentropy",
        "task.train_data.dataset=text_file",
        "task.validation_data.dataset=text_file",
        "task.test_data.dataset=text_file",
    ]
    for sets, message in (
        (single, "the label column holds lists: multi-label data; read it with dataset multi_label_text_file"),
        (
            ["task.model.head.type=classification", "task.model.head.params.num_classes=8"],
            "needs the multi_label head and the sigmoid_crossentropy loss",
        ),
        (["task.train_data.classes=[acq]"], "classes and examples_per_class select single-label data"),
    ):
        built = experiment_config(config_files=[config], sets=sets)
        trainer = Trainer(built, str(multi_label_run.parent / "refused"), resolve_strategy(built.runtime))
        with pytest.raises(GardenError, match=message):
            trainer.set_up()


def write_digit_pairs(path, split, count, seed):
    """`count` records of two MNIST digits side by side (28x56 PNG), each half blank one time in four;
    `image/class/label` lists the digits shown, none, one or two (Model Garden's multi-label keys)."""
    digits = mnist(split)
    images, labels = np.round(digits.features["image"] * 255).astype(np.uint8), digits.labels
    rng = np.random.default_rng(seed)
    truth = np.zeros((count, 10), np.float32)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in range(count):
            halves = []
            for _ in range(2):
                index = rng.integers(len(images))
                shown = rng.random() >= 0.25
                halves.append(images[index] if shown else np.zeros_like(images[index]))
                truth[row, labels[index]] = truth[row, labels[index]] or shown
            ids = np.flatnonzero(truth[row])
            feature = {
                "image/encoded": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[tf.io.encode_png(np.concatenate(halves, axis=1)).numpy()])
                ),
                "image/class/label": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=ids[rng.permutation(len(ids))])
                ),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return truth


def test_a_multi_label_image_model_learns_digit_pairs_and_serves_what_sklearn_scores(tmp_path):
    """image_multi_label on real MNIST digits, two per image: multi-hot labels from the records' id
    lists, micro F1 well above chance, and the exported SavedModel, fed the PNG bytes, decides as
    the run's evaluation reports (its F1 recomputed by scikit-learn). The bound 0.75 rests on three
    trainings of 500 steps on 2048 images, the data drawn and runtime.seed set anew each time (seeds
    0-2): micro F1 0.908, 0.887 and 0.848 (mean 0.881, standard deviation 0.030), chance 0.25-0.26.
    (800 steps on 4096 images gave 0.950 +- 0.010 over five seeds, in twice the time.)"""
    truth = {
        split: write_digit_pairs(tmp_path / f"{split}.tfrecord", source, count, seed)
        for split, source, count, seed in (("train", "train", 2048, 0), ("validation", "validation", 500, 1))
    }
    sets = [
        f"task.train_data.input_path={tmp_path / 'train.tfrecord'}",
        f"task.validation_data.input_path={tmp_path / 'validation.tfrecord'}",
        "task.model.backbone.params.image_shape=[28, 56, 1]",
        "task.model.backbone.params.stage_widths=[16, 32]",
        "task.model.backbone.params.blocks_per_stage=1",
        "task.model.backbone.params.stem_width=16",
        "task.train_data.aug_crop=false",
        "task.train_data.aug_rand_hflip=false",
        "task.validation_data.center_crop_fraction=1.0",
        "task.validation_data.global_batch_size=250",
        "trainer.train_steps=500",
        "trainer.steps_per_loop=100",
        "trainer.checkpoint_interval=500",
        "trainer.validation_interval=500",
        "trainer.optimizer_config.learning_rate.cosine.decay_steps=500",
        "trainer.optimizer_config.warmup.linear.warmup_steps=30",
    ]
    run = tmp_path / "run"
    garden("train", "image_multi_label", *[a for s in sets for a in ("--set", s)], "--run-dir", run)
    result = json.loads(garden("eval", run).stdout)
    chance = sklearn.metrics.f1_score(truth["validation"], np.ones_like(truth["validation"]), average="micro")
    print(f"image multi-label: micro F1 {result['f1_micro']:.4f}, mAP {result['map']:.4f}, chance F1 {chance:.4f}")
    assert result["f1_micro"] > 0.75 > chance + 0.45, result  # 4 standard deviations under the seeds' mean

    garden("export", run, "--format", "saved_model")  # judged against Keras before it is written
    served = tf.saved_model.load(str(run / "export" / "saved_model")).signatures["serving_bytes"]
    records = tf.data.TFRecordDataset(str(tmp_path / "validation.tfrecord"))
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string)}
    pngs = [tf.io.parse_single_example(r, spec)["image/encoded"] for r in records]
    decided = np.concatenate([served(image_bytes=tf.stack(pngs[i : i + 100]))["labels"] for i in range(0, 500, 100)])
    assert sklearn.metrics.f1_score(truth["validation"], decided, average="micro") == pytest.approx(
        result["f1_micro"], abs=1e-6
    )

    for sets_more, message in (
        (["task.type=image_classification", "task.model.head.type=classification"], "holds several labels per example"),
        (["task.train_data.dataset=tfrecord"], "trains on multi-label data: set task.*_data.dataset"),
        (["task.model.head.params.num_classes=5"], "a label is outside 0..4"),
        (["task.train_data.mixup_and_cutmix=true"], "a multi-label task trains without it"),
    ):
        refused = garden(
            "train", "image_multi_label", *[a for s in (*sets, *sets_more) for a in ("--set", s)],
            "--run-dir", tmp_path / "refused", check=False,
        )  # fmt: skip
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr[-800:]
        assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "refused" / "checkpoints").exists()
    shards = tmp_path / "shards"
    refused = garden("data", "convert", tmp_path / "validation.tfrecord", "--out", shards / "v-*.tfrecord", check=False)
    first = int(np.argmax(truth["validation"].sum(axis=1) != 1))  # the first record of no label or of two
    named = refused.stderr.splitlines()[-1]
    assert refused.returncode == 2 and f"record {first}: " in named and "image/class/label" in named, named
    assert "convert copies records of one label each" in refused.stderr and not list(shards.glob("*.tfrecord"))
