"""Registered losses. Each factory returns fn(labels, logits) -> per-example loss [batch].

Labels of -1 mark positions that are not scored (see garden/metrics.py)."""

import keras
from keras import ops

from garden.errors import GardenError
from garden.registry import LOSSES


@LOSSES.register("sparse_categorical_crossentropy")
def sparse_categorical_crossentropy(label_smoothing=0.0, class_weights=None):
    """Cross-entropy of integer labels against logits, with optional label smoothing; with
    `class_weights` (one per class, or 'balanced': examples / (classes x the class's examples) in the
    training data, as scikit-learn's) each example's loss is weighed by its class's weight."""
    weights = None if class_weights is None else ops.convert_to_tensor(class_weights, "float32")

    def loss(labels, logits):
        logits = ops.cast(logits, "float32")
        if not label_smoothing:
            per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        else:
            one_hot = ops.one_hot(ops.cast(labels, "int32"), ops.shape(logits)[-1])
            per_example = keras.losses.categorical_crossentropy(
                one_hot, logits, from_logits=True, label_smoothing=label_smoothing
            )
        return per_example if weights is None else per_example * ops.take(weights, ops.cast(labels, "int32"))

    return loss


@LOSSES.register("sigmoid_crossentropy")
def sigmoid_crossentropy():
    """Multi-label: binary cross-entropy of multi-hot labels [batch, classes] against per-class
    logits, averaged over the classes."""
    return lambda labels, logits: keras.losses.binary_crossentropy(
        ops.cast(labels, "float32"), ops.cast(logits, "float32"), from_logits=True
    )


@LOSSES.register("mean_squared_error")
def mean_squared_error():
    """Squared error of float targets [batch] against scores [batch]."""
    return lambda labels, scores: ops.square(ops.cast(scores, "float32") - ops.cast(labels, "float32"))


def _masked_token_crossentropy(labels, logits):
    """Mean cross-entropy over the scored positions of each example: labels [batch, length],
    logits [batch, length, classes] -> [batch]; an example with no scored position costs 0."""
    labels = ops.cast(labels, "int32")
    scored = ops.cast(labels != -1, "float32")
    per_token = keras.losses.sparse_categorical_crossentropy(
        ops.maximum(labels, 0), ops.cast(logits, "float32"), from_logits=True
    )
    return ops.sum(per_token * scored, axis=-1) / ops.maximum(ops.sum(scored, axis=-1), 1.0)


@LOSSES.register("masked_sparse_categorical_crossentropy")
def masked_sparse_categorical_crossentropy():
    """Per-token cross-entropy (token tagging, masked LM) averaged over positions whose label is not -1."""
    return _masked_token_crossentropy


@LOSSES.register("span_crossentropy")
def span_crossentropy():
    """Extractive QA: the mean of the start and end cross-entropies; labels [batch, 2] (start, end
    token), logits [batch, length, 2] (start and end logits over positions)."""

    def loss(labels, logits):
        positions = ops.swapaxes(ops.cast(logits, "float32"), 1, 2)  # [batch, 2, length]
        return 0.5 * ops.sum(keras.losses.sparse_categorical_crossentropy(labels, positions, from_logits=True), axis=-1)

    return loss


@LOSSES.register("contrastive")
def contrastive(temperature=0.05):
    """In-batch contrastive loss on unit embeddings (InfoNCE; sentence-transformers'
    MultipleNegativesRankingLoss at scale 1 / `temperature`, SupCon for labelled texts). `labels` [batch]
    are group ids and the embeddings [batch * views, width] hold `views` adjacent rows per example:
    - 2 views (anchor, positive pairs): each anchor's softmax over every positive in the batch, whose
      targets are the positives of its group (its own pair, and pairs sharing its label);
    - 1 view (labelled texts): each text's softmax over the other texts, whose targets are the texts of
      its class; a text alone in its class in the batch costs 0.
    Returns the mean negative log-probability of each example's targets [batch]."""
    if temperature <= 0:
        raise GardenError(
            f"the contrastive loss needs temperature > 0 (sentence-transformers uses 0.05), got {temperature}"
        )

    def loss(labels, embeddings):
        embeddings = ops.cast(embeddings, "float32")
        batch = ops.shape(labels)[0]
        views = ops.reshape(embeddings, (batch, -1, ops.shape(embeddings)[-1]))
        anchors, candidates = views[:, 0], views[:, -1]
        similarity = ops.matmul(anchors, ops.transpose(candidates)) / temperature
        same = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
        own = ops.eye(batch, dtype="bool")
        paired = ops.shape(views)[1] > 1
        targets = ops.where(paired, same, ops.logical_and(same, ops.logical_not(own)))
        similarity = ops.where(ops.logical_or(paired, ops.logical_not(own)), similarity, -1e9)
        log_probability = ops.log_softmax(similarity, axis=-1)
        weights = ops.cast(targets, "float32")
        count = ops.sum(weights, axis=-1)
        return -ops.sum(log_probability * weights, axis=-1) / ops.maximum(count, 1.0)

    return loss


@LOSSES.register("distillation")
def distillation(temperature=2.0, alpha=0.5):
    """Hinton et al.'s knowledge distillation: alpha * CE(labels, student) + (1 - alpha) * T² *
    KL(softmax(teacher / T) || softmax(student / T)), T the `temperature`. Targets are
    {"labels", "teacher_logits"}: set task.train_data.teacher_logits to what 'garden distill logits' wrote."""
    if temperature <= 0 or not 0 <= alpha <= 1:
        raise GardenError(f"distillation needs temperature > 0 and 0 <= alpha <= 1 (got {temperature}, {alpha})")

    def loss(targets, logits):
        logits = ops.cast(logits, "float32")
        teacher = ops.log_softmax(ops.cast(targets["teacher_logits"], "float32") / temperature, axis=-1)
        student = ops.log_softmax(logits / temperature, axis=-1)
        soft = ops.sum(ops.exp(teacher) * (teacher - student), axis=-1) * temperature**2
        hard = keras.losses.sparse_categorical_crossentropy(targets["labels"], logits, from_logits=True)
        return alpha * hard + (1 - alpha) * soft

    return loss
