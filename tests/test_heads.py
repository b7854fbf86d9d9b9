"""Task heads, their losses and metrics on hand-made batches whose answers are known."""

import math
import re

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics
import sklearn.utils.class_weight
import tensorflow as tf

from garden import metrics
from garden.errors import GardenError
from garden.registry import HEADS, LOSSES, TASKS
from garden.resolve import experiment_config

FEATURES = np.random.default_rng(0).normal(size=(6, 5, 16)).astype("float32")


@pytest.mark.parametrize(
    "name, params, features, shape",
    [
        ("classification", {"num_classes": 3}, FEATURES[:, 0], (6, 3)),
        ("pair_classification", {"num_classes": 3, "inner_dim": 8}, FEATURES[:, 0], (6, 3)),
        ("regression", {}, FEATURES[:, 0], (6,)),
        ("token_tagging", {"num_classes": 4}, FEATURES, (6, 5, 4)),
        ("span_qa", {}, FEATURES, (6, 5, 2)),
        ("masked_lm", {"vocabulary_size": 50}, FEATURES, (6, 5, 50)),
        ("multiple_choice", {"num_choices": 3}, FEATURES[:, 0], (2, 3)),
    ],
)
def test_every_head_gives_float32_logits_of_its_shape_under_mixed_precision(name, params, features, shape):
    head = HEADS.build(name, params, dtype="mixed_bfloat16")
    logits = head(tf.constant(features))
    assert tuple(logits.shape) == shape
    assert logits.dtype == tf.float32
    rebuilt = type(head).from_config(head.get_config())
    assert rebuilt.get_config() == head.get_config()


def test_multiple_choice_groups_adjacent_rows_of_one_example():
    head = HEADS.build("multiple_choice", {"num_choices": 2, "dropout": 0.0})
    rows = tf.constant(FEATURES[:4, 0])
    grouped = head(rows).numpy()
    scores = head.score_layer(rows).numpy()[:, 0]  # one score per (example, choice) row
    np.testing.assert_allclose(grouped, [[scores[0], scores[1]], [scores[2], scores[3]]], rtol=1e-6)


def test_classification_metrics_match_hand_counts_and_sklearn():
    labels = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    logits = np.eye(2)[[1, 1, 0, 0, 0, 1, 1, 0]]
    result = metrics.classification_metrics(labels, logits)
    # tp=3 fp=1 fn=1 tn=3: accuracy 6/8, F1 = 2*3 / (2*3 + 1 + 1), MCC = (9 - 1) / sqrt(4*4*4*4)
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["f1"] == pytest.approx(0.75)
    assert result["matthews_correlation"] == pytest.approx(0.5)
    predictions = np.array([0, 2, 1, 2, 0, 1, 1, 2, 0])
    labels = np.array([0, 1, 1, 2, 0, 2, 1, 2, 1])
    assert metrics.f1(labels, predictions, 3) == pytest.approx(
        sklearn.metrics.f1_score(labels, predictions, average="macro")
    )
    assert metrics.matthews_correlation(labels, predictions, 3) == pytest.approx(
        sklearn.metrics.matthews_corrcoef(labels, predictions)
    )
    assert metrics.matthews_correlation(labels, np.zeros(9, int), 3) == 0.0


def test_regression_metrics_and_loss():
    labels = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    scores = np.array([0.0, 1.0, 4.0, 9.0, 16.0])  # monotone, not linear
    result = metrics.regression_metrics(labels, scores)
    assert result["spearman"] == pytest.approx(1.0)
    assert result["pearson"] == pytest.approx(scipy.stats.pearsonr(labels, scores)[0])
    assert metrics.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(
        scipy.stats.spearmanr([1, 2, 2, 3], [1, 3, 2, 4])[0]
    )
    loss = LOSSES.build("mean_squared_error")(tf.constant([1.0, 2.0]), tf.constant([1.5, 0.0]))
    np.testing.assert_allclose(loss, [0.25, 4.0])


def test_masked_token_loss_scores_only_labelled_positions():
    loss = LOSSES.build("masked_sparse_categorical_crossentropy")
    logits = np.zeros((2, 3, 4), "float32")  # uniform: each scored token costs log 4
    logits[0, 1, 2] = 100.0  # a confident right answer costs ~0
    labels = np.array([[-1, 2, 1], [-1, -1, -1]])
    per_example = loss(tf.constant(labels), tf.constant(logits)).numpy()
    np.testing.assert_allclose(per_example, [math.log(4) / 2, 0.0], rtol=1e-5)


def test_tagging_metrics_ignore_unscored_tokens():
    labels = np.array([[-1, 0, 1, -1], [-1, 2, 2, -1]])
    logits = np.eye(3)[[[1, 0, 1, 2], [0, 2, 0, 1]]]  # scored predictions: 0, 1, 2, 0
    result = metrics.tagging_metrics(labels, logits)
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["f1"] == pytest.approx(sklearn.metrics.f1_score([0, 1, 2, 2], [0, 1, 2, 0], average="macro"))


def test_span_loss_and_exact_match_and_f1():
    logits = np.full((2, 6, 2), -10.0, "float32")
    logits[0, 2, 0] = logits[0, 3, 1] = 10.0  # predicts tokens 2..3
    logits[1, 1, 0] = logits[1, 4, 1] = 10.0  # predicts tokens 1..4
    labels = np.array([[2, 3], [3, 5]])
    result = metrics.span_metrics(labels, logits)
    # second: predicted 1..4 vs gold 3..5 overlap 2 tokens: precision 2/4, recall 2/3, F1 4/7
    assert result["exact_match"] == pytest.approx(50.0)
    assert result["f1"] == pytest.approx(100 * (1.0 + 4 / 7) / 2)
    loss = LOSSES.build("span_crossentropy")(tf.constant(labels), tf.constant(logits)).numpy()
    assert loss[0] == pytest.approx(0.0, abs=1e-6)
    # the gold start and end each sit 20 below the one confident position: 20 + log(1 + 5 e^-20) each
    assert loss[1] == pytest.approx(20.0 + math.log(1 + 5 * math.exp(-20)), rel=1e-6)


def test_best_span_never_ends_before_it_starts():
    start = np.array([[0.0, 0.0, 5.0, 0.0]])
    end = np.array([[4.0, 0.0, 0.0, 1.0]])  # the best end alone (0) precedes the best start (2)
    assert metrics.best_spans(start, end).tolist() == [[2, 3]]


def test_class_weights_weigh_each_example_and_balanced_matches_sklearn():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [0.5, 0.5, 3.0]], "float32")
    labels = np.array([0, 2, 2])
    plain = LOSSES.build("sparse_categorical_crossentropy")(tf.constant(labels), tf.constant(logits)).numpy()
    weighted = LOSSES.build("sparse_categorical_crossentropy", {"class_weights": [0.5, 7.0, 2.0]})
    np.testing.assert_allclose(weighted(tf.constant(labels), tf.constant(logits)), plain * [0.5, 2.0, 2.0], rtol=1e-6)
    smoothed = LOSSES.build("sparse_categorical_crossentropy", {"label_smoothing": 0.1, "class_weights": [0, 1, 1]})
    assert smoothed(tf.constant(labels), tf.constant(logits)).numpy()[0] == 0.0

    # 'balanced' on real data (an imbalanced MNIST slice): scikit-learn's weights, unused classes 0
    config = experiment_config(
        "mnist_resnet",
        sets=[
            "task.loss.params.class_weights=balanced",
            "task.train_data.num_examples=500",
            "task.train_data.classes=[1, 3, 8]",
        ],
    )
    task = TASKS.get(config.task.type)(config.task)
    train, _ = task.load_train()
    train.labels[:40] = train.labels[0]  # more of one class
    expected = sklearn.utils.class_weight.compute_class_weight(
        "balanced", classes=np.unique(train.labels), y=train.labels
    )
    resolved = np.array(task.loss_params(train)["class_weights"])
    np.testing.assert_allclose(resolved[np.unique(train.labels)], expected, rtol=1e-12)
    assert np.count_nonzero(resolved) == 3 and len(resolved) == len(train.label_names)


@pytest.mark.parametrize(
    "weights, message",
    [
        ("[1, 2]", "has 2 weights and the data has 10 classes (0, 1, 2"),
        ("[1, -2, 1, 1, 1, 1, 1, 1, 1, 1]", "is 'balanced' or a list of weights (0 or more)"),
        ("heavy", "is 'balanced' or a list of weights (0 or more)"),
    ],
)
def test_class_weights_that_do_not_fit_the_data_are_one_line(weights, message):
    config = experiment_config(
        "mnist_resnet", sets=[f"task.loss.params.class_weights={weights}", "task.train_data.num_examples=100"]
    )
    task = TASKS.get(config.task.type)(config.task)
    with pytest.raises(GardenError, match=re.escape(f"task.loss.params.class_weights {message}")):
        task.build_loss(task.load_train()[0])
