"""Text classification: a sentence (`text`) or a sentence pair (`text`, `text_pair`) -> a class.

Tokenization runs in the tf.data pipeline with the tokenizer the backbone resolves to; a
pair is packed as `[CLS] text [SEP] text_pair [SEP]` with segment ids 0 and 1.
"""

import keras_hub
import tensorflow as tf

from garden.data.tokenizers import build_tokenizer
from garden.models import hf_import
from garden.models.pretrained import checkpoint_dir
from garden.registry import TASKS
from garden.tasks.classification import ClassificationTask

SEGMENTS = ("text", "text_pair")


@TASKS.register("text_classification")
class TextClassificationTask(ClassificationTask):
    def __init__(self, config):
        super().__init__(config)
        tokenizer = build_tokenizer(config.model.backbone.type, config.model.tokenizer, config.init_checkpoint)
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.token_to_id("[PAD]")
        self.packer = keras_hub.layers.MultiSegmentPacker(
            start_value=tokenizer.token_to_id("[CLS]"),
            end_value=tokenizer.token_to_id("[SEP]"),
            pad_value=self.pad_id,
            sequence_length=config.model.tokenizer.sequence_length,
        )

    def preprocess(self, features):
        segments = tuple(self.tokenizer(features[name]) for name in SEGMENTS if name in features)
        token_ids, segment_ids = self.packer(segments)
        return {
            "token_ids": token_ids,
            "segment_ids": segment_ids,
            "padding_mask": tf.cast(token_ids != self.pad_id, tf.int32),
        }

    def initialize(self, model):
        if self.config.init_checkpoint:
            hf_import.load_into(model.get_layer("backbone"), checkpoint_dir(self.config.init_checkpoint))
