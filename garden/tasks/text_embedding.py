"""Sentence embeddings (sentence-transformers, model2vec): a text in, a unit vector out, trained with
an in-batch contrastive loss and judged by retrieval or by similarity correlation.

The data says how it trains and what it measures:
- labelled texts (`text_file`, the R8 corpus): texts of one class are each other's positives (SupCon);
  evaluation ranks the other texts by cosine, same-class ones relevant: mean average precision;
- pairs (`text_pairs`: `text`, `text_pair`): each pair's two sides are positives and every other
  pair's positive a negative (MultipleNegativesRankingLoss); evaluation retrieves each pair's positive;
- scored pairs (`scored_text_file`, STS-B): evaluation only, Spearman of cosine with the scores.
A pair is packed as two adjacent rows, so the model reads [2 * batch] texts for [batch] labels."""

import numpy as np
import tensorflow as tf

from garden import metrics
from garden.errors import GardenError
from garden.registry import LOSSES, TASKS
from garden.tasks.text import TextTask


@TASKS.register("text_embedding")
class TextEmbeddingTask(TextTask):
    """Features `text` (and `text_pair` for pairs); the `embedding` head's unit vectors `embedding`."""

    def __init__(self, config):
        super().__init__(config)
        if config.model.head.type != "embedding":
            raise GardenError(
                f"task type 'text_embedding' needs the embedding head (got '{config.model.head.type}'); set "
                f"{self.config_path}.model.head.type=embedding"
            )

    def prepare(self, features, labels):
        texts = features["text"]
        if "text_pair" in features:  # (anchor, positive) as adjacent rows
            texts = tf.reshape(tf.stack([texts, features["text_pair"]], axis=1), [-1])
        return self.pack(self.tokenizer(texts)), labels

    def build_loss(self, train=None):
        if self.config.loss.type != "contrastive":
            raise GardenError(
                f"task type 'text_embedding' trains with the contrastive loss (got '{self.config.loss.type}'); set "
                f"{self.config_path}.loss.type=contrastive"
            )
        labels = getattr(train, "labels", None)
        if labels is not None and np.asarray(labels).dtype.kind == "f":
            raise GardenError(
                "scored pairs (scored_text_file) evaluate an embedding model and cannot train it; train on labelled "
                "texts (text_file) or pairs (text_pairs)"
            )
        loss = LOSSES.build("contrastive", self.config.loss.params.as_dict())
        return lambda labels, outputs: loss(labels, outputs["embedding"])

    def metrics(self, labels, outputs):
        embeddings = outputs["embedding"]
        if np.asarray(labels).dtype.kind == "f":
            return metrics.pair_similarity_metrics(labels, embeddings)
        return metrics.retrieval_metrics(labels, embeddings, views=len(embeddings) // len(labels))
