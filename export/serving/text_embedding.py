"""Sentence embeddings serve raw strings (`text`) as `serving_default` and `embed` (the same signature
under the name a client of an embedding model looks for), and token ids as `serving_tokens`; each
gives `embedding`. They are judged by retrieval (mean average precision) or, on scored pairs, by
the Spearman correlation of cosine with the scores."""

import numpy as np
import tensorflow as tf

from garden.export.serving.text import TextServing
from garden.registry import SERVINGS


@SERVINGS.register("text_embedding")
class TextEmbeddingServing(TextServing):
    raw_signature = "serving_default"
    tensor_signature = "serving_tokens"
    signature_aliases = {"embed": "serving_default"}
    parity_outputs = ("embedding",)

    @property
    def quality(self) -> str:
        return "spearman" if self.held_out().dataset == "scored_text_file" else "map"

    def serving_outputs(self, outputs):
        return {"embedding": tf.cast(outputs["embedding"], tf.float32)}

    def serving_quality(self, labels, outputs):
        return self.task.metrics(labels, outputs)[self.quality]

    def raw_serving(self, model, feature_names):
        task, specs = self.task, {"text": tf.TensorSpec([None], tf.string, name="text")}
        return specs, lambda raw: task.pack_in_serving(*task.serving_segments([raw["text"]]))

    def raw_features(self, examples, names):
        texts = examples.features["text"]
        if "text_pair" in examples.features:
            texts = np.stack([texts, examples.features["text_pair"]], axis=1).reshape(-1)
        return [texts], examples
