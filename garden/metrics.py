"""Evaluation metrics computed on the host from gathered outputs and labels (numpy).

Labels of -1 mark positions that are not scored (padding, non-first word pieces, unmasked tokens).
"""

import numpy as np

IGNORE = -1


def softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def accuracy(labels, logits):
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def cross_entropy(labels, logits):
    probabilities = softmax(logits.astype(np.float64))
    return float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels] + 1e-12)))


def f1(labels, predictions, num_classes):
    """F1 of class 1 for two classes (GLUE's convention), else the macro average over classes."""
    scores = []
    for c in [1] if num_classes == 2 else range(num_classes):
        true_positives = np.sum((predictions == c) & (labels == c))
        denominator = np.sum(predictions == c) + np.sum(labels == c)
        if num_classes == 2 or np.any(labels == c):
            scores.append(2.0 * true_positives / denominator if denominator else 0.0)
    return float(np.mean(scores))


def matthews_correlation(labels, predictions, num_classes):
    """Matthews correlation (multi-class form, Gorodkin 2004); 0 when either side is constant."""
    confusion = np.zeros((num_classes, num_classes), np.float64)
    np.add.at(confusion, (labels, predictions), 1)
    samples, correct = confusion.sum(), np.trace(confusion)
    true, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    covariance = correct * samples - true @ predicted
    denominator = np.sqrt((samples**2 - predicted @ predicted) * (samples**2 - true @ true))
    return float(covariance / denominator) if denominator else 0.0


def pearson(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / denominator) if denominator else 0.0


def _ranks(x):
    """Ranks starting at 1, ties sharing their average rank."""
    x = np.asarray(x)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x, y):
    return pearson(_ranks(x), _ranks(y))


def classification_metrics(labels, logits):
    predictions = np.argmax(logits, axis=-1)
    num_classes = logits.shape[-1]
    return {
        "accuracy": float(np.mean(predictions == labels)),
        "loss": cross_entropy(labels, logits),
        "f1": f1(labels, predictions, num_classes),
        "matthews_correlation": matthews_correlation(labels, predictions, num_classes),
    }


def regression_metrics(labels, scores):
    return {
        "pearson": pearson(labels, scores),
        "spearman": spearman(labels, scores),
        "mean_squared_error": float(np.mean((np.asarray(scores, np.float64) - labels) ** 2)),
    }


def tagging_metrics(labels, logits):
    """Accuracy, macro F1 over tags and cross-entropy on the scored tokens (labels != -1)."""
    scored = labels != IGNORE
    labels, logits = labels[scored], logits[scored]
    predictions = np.argmax(logits, axis=-1)
    return {
        "accuracy": float(np.mean(predictions == labels)),
        "f1": f1(labels, predictions, logits.shape[-1]),
        "loss": cross_entropy(labels, logits),
    }


def best_spans(start_logits, end_logits, max_length=30):
    """The (start, end) with end >= start, end - start < max_length and the highest summed logit."""
    length = start_logits.shape[-1]
    allowed = np.triu(np.ones((length, length), bool)) & ~np.triu(np.ones((length, length), bool), k=max_length)
    scores = np.where(allowed, start_logits[:, :, None] + end_logits[:, None, :], -np.inf)
    flat = scores.reshape(len(scores), -1).argmax(axis=-1)
    return np.stack([flat // length, flat % length], axis=-1)


def span_metrics(labels, logits):
    """SQuAD's exact match and F1 in points, over token positions: `labels` [n, 2] (start, end),
    `logits` [n, length, 2] (start and end logits)."""
    predicted = best_spans(logits[..., 0], logits[..., 1])
    exact, overlap_f1 = [], []
    for (gold_start, gold_end), (start, end) in zip(labels, predicted):
        exact.append(gold_start == start and gold_end == end)
        overlap = max(0, min(end, gold_end) - max(start, gold_start) + 1)
        precision, recall = overlap / (end - start + 1), overlap / (gold_end - gold_start + 1)
        overlap_f1.append(2 * precision * recall / (precision + recall) if overlap else 0.0)
    return {"exact_match": 100.0 * float(np.mean(exact)), "f1": 100.0 * float(np.mean(overlap_f1))}
