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


# ---- multi-label: labels and decisions are multi-hot [examples, classes] -------------------------


def micro_f1(labels, decisions):
    """F1 over every (example, class) decision."""
    truth, said = np.asarray(labels) > 0.5, np.asarray(decisions) > 0.5
    denominator = truth.sum() + said.sum()
    return float(2 * np.sum(truth & said) / denominator) if denominator else 0.0


def _ranked(truth, scores):
    """Taking each distinct score as the threshold, highest first (an example counts when its score
    reaches it): (true positives, predictions, the distinct scores)."""
    order = np.argsort(-scores, kind="mergesort")
    ranked = scores[order]
    ends = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # the last example of each distinct score
    return np.cumsum(truth[order])[ends], ends + 1, ranked[ends]


def average_precision(truth, scores):
    """One class's average precision, as scikit-learn's: the precision at each distinct score,
    weighted by the recall it adds."""
    true_positives, predicted, _ = _ranked(np.asarray(truth) > 0.5, np.asarray(scores, np.float64))
    recall = true_positives / max(np.sum(np.asarray(truth) > 0.5), 1)
    return float(np.sum(np.diff(recall, prepend=0.0) * true_positives / predicted))


def multi_label_metrics(labels, logits, decisions):
    """F1 over all decisions (micro) and per class (macro), mean average precision, the share of
    examples whose every class is right, and the mean binary cross-entropy; per-class figures over the
    classes that the labels show."""
    truth, said = np.asarray(labels) > 0.5, np.asarray(decisions) > 0.5
    shown = np.flatnonzero(truth.any(axis=0))
    z, y = np.asarray(logits, np.float64), truth.astype(np.float64)
    per_class = [2 * np.sum(truth[:, c] & said[:, c]) / (truth[:, c].sum() + said[:, c].sum()) for c in shown]
    return {
        "f1_micro": micro_f1(truth, said),
        "f1_macro": float(np.mean(per_class)) if len(shown) else 0.0,
        "map": float(np.mean([average_precision(truth[:, c], z[:, c]) for c in shown])) if len(shown) else 0.0,
        "exact_match": float(np.mean(np.all(truth == said, axis=1))),
        "loss": float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))),
    }


def best_thresholds(labels, probabilities, current):
    """Per class, the probability threshold that maximizes the class's F1 on these examples: halfway
    between the lowest score it takes in and the next lower one, and of equally good ones the closest
    to 0.5; classes without a positive example keep their `current` threshold."""
    thresholds = np.array(current, np.float64)
    truth = np.asarray(labels) > 0.5
    for c in np.flatnonzero(truth.any(axis=0)):
        true_positives, predicted, scores = _ranked(truth[:, c], np.asarray(probabilities[:, c], np.float64))
        f1 = 2 * true_positives / (predicted + truth[:, c].sum())
        cuts = (scores + np.r_[scores[1:], 0.0]) / 2
        best = np.flatnonzero(f1 == f1.max())
        thresholds[c] = cuts[best[np.argmin(np.abs(cuts[best] - 0.5))]]
    return thresholds


# ---- embeddings: unit vectors, compared by their dot product (cosine) ---------------------------


def retrieval_metrics(labels, embeddings, views=1, chunk=1024):
    """Same-group retrieval by cosine: each query ranks the corpus, and corpus items of its group are
    the relevant ones. With 1 view the texts are both (leave one out: a text never retrieves itself,
    and a text alone in its group is not a query); with 2 views (adjacent anchor, positive rows) the
    anchors query the positives. Returns the mean average precision (`map`, as scikit-learn's
    average_precision_score per query) and `precision_at_1`, over the queries."""
    labels = np.asarray(labels)
    grouped = np.asarray(embeddings, np.float32).reshape(len(labels), views, -1)
    queries, corpus = grouped[:, 0], grouped[:, -1]
    precisions, firsts = [], []
    for start in range(0, len(labels), chunk):
        rows = np.arange(start, min(start + chunk, len(labels)))
        similarity = queries[rows] @ corpus.T
        relevant = labels[rows, None] == labels[None, :]
        if views == 1:
            similarity[np.arange(len(rows)), rows] = -np.inf
            relevant[np.arange(len(rows)), rows] = False
        order = np.argsort(-similarity, axis=1, kind="stable")
        hits = np.take_along_axis(relevant, order, axis=1)
        found = hits.sum(axis=1)
        ranks = np.arange(1, hits.shape[1] + 1)
        average = (hits * np.cumsum(hits, axis=1) / ranks).sum(axis=1) / np.maximum(found, 1)
        precisions.append(average[found > 0])
        firsts.append(hits[found > 0, 0])
    return {"map": float(np.mean(np.concatenate(precisions))), "precision_at_1": float(np.mean(np.concatenate(firsts)))}


def pair_similarity_metrics(scores, embeddings):
    """Pearson and Spearman correlations of gold `scores` [pairs] with the cosine of each pair's two
    adjacent embedding rows [2 * pairs, width] (STS-B's evaluation of sentence embeddings)."""
    pairs = np.asarray(embeddings, np.float64).reshape(len(scores), 2, -1)
    cosine = np.sum(pairs[:, 0] * pairs[:, 1], axis=-1) / np.maximum(
        np.linalg.norm(pairs[:, 0], axis=-1) * np.linalg.norm(pairs[:, 1], axis=-1), 1e-12
    )
    return {"spearman": spearman(scores, cosine), "pearson": pearson(scores, cosine)}
