"""Evaluation metrics computed on the host from gathered logits and labels (numpy)."""

import numpy as np


def softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def accuracy(labels, logits):
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def cross_entropy(labels, logits):
    probabilities = softmax(logits.astype(np.float64))
    return float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels] + 1e-12)))


def classification_metrics(labels, logits):
    return {"accuracy": accuracy(labels, logits), "loss": cross_entropy(labels, logits)}
