"""Image classifiers serve image tensors in [0, 1] as `serving_default` and encoded images (PNG,
JPEG, GIF, BMP or WebP bytes, any size up to MAX_PIXELS, decoded, cropped and resized in the graph as
evaluation does) as `serving_bytes`, whose `image_bytes` input TF Serving's REST API fills from
`{"b64": ...}`."""

import dataclasses

import numpy as np
import tensorflow as tf

from garden.data.examples import Examples
from garden.data.streams import Stream
from garden.export.serving.classification import ClassificationServing
from garden.export.serving.multi_label import MultiLabelServing
from garden.registry import SERVINGS
from garden.tasks.image_classification import IMAGE_BYTES, serving_image


@SERVINGS.register("image_classification")
class ImageClassificationServing(ClassificationServing):
    raw_signature = "serving_bytes"
    input_ranges = {"image": (0.0, 1.0)}  # pixels / 255

    def preprocessing(self) -> dict:
        """What a device does to a photo before the `image` input, as evaluation does it."""
        height, width, channels = self.task.image_shape()
        fraction = self.config.validation_data.center_crop_fraction
        return {
            "image": {
                "height": height,
                "width": width,
                "channels": channels,
                "color": "grayscale" if channels == 1 else "RGB",
                "center_crop_fraction": fraction,
                "resize": "bilinear (tf.image.resize) of the whole"
                + (" central crop" if fraction < 1 else " image")
                + ", aspect ratio not kept",
                "values": "pixel / 255, float32 in [0, 1]; any normalization is inside the model",
            }
        }

    def raw_serving(self, model, feature_names):
        (image,) = model.inputs
        height, width, channels = image.shape[1:]
        fraction = self.config.validation_data.center_crop_fraction

        def decode(data):
            return serving_image(data, height, width, channels, fraction)

        def preprocess(raw):
            spec = tf.TensorSpec((height, width, channels), tf.float32)
            return {image.name: tf.map_fn(decode, raw[IMAGE_BYTES], fn_output_signature=spec)}

        return {IMAGE_BYTES: tf.TensorSpec([None], tf.string, name=IMAGE_BYTES)}, preprocess

    def load_examples(self, data_config, label_names=None, limit: int = 10_000) -> Examples:
        """As the task loads them; a stream's examples keep their encoded images (`image_bytes`) beside
        their decoding, for `raw_features` to send whole, as a client does."""
        data = self.task.load(data_config, label_names)
        if not isinstance(data, Stream):
            return data
        decode = data.decode

        def keeping_bytes(features, label, seed, training):
            return {**decode(features, label, seed, training), IMAGE_BYTES: features[IMAGE_BYTES]}

        return dataclasses.replace(data, decode=keeping_bytes).to_examples(limit)

    def raw_features(self, examples, names):
        """The encoded images a client sends (a stream's own files, whole; images held in memory as 8-bit
        PNGs) and what `serving_bytes` makes of them (decoded, cropped and resized as evaluation does)."""
        name = next(n for n in examples.features if n != IMAGE_BYTES)
        height, width, channels = np.shape(examples.features[name])[1:]
        encoded = examples.features.get(IMAGE_BYTES)
        if encoded is None:
            pixels = np.round(np.asarray(examples.features[name]) * 255).astype(np.uint8)
            encoded = np.array([tf.io.encode_png(image).numpy() for image in pixels], dtype=object)
        fraction = self.config.validation_data.center_crop_fraction
        images = tf.data.Dataset.from_tensor_slices(encoded).map(
            lambda data: serving_image(data, height, width, channels, fraction), num_parallel_calls=tf.data.AUTOTUNE
        )
        decoded = np.concatenate(list(images.batch(256).as_numpy_iterator()))
        return [encoded], Examples({name: decoded}, examples.labels, examples.label_names)


@SERVINGS.register("image_multi_label_classification")
class ImageMultiLabelClassificationServing(MultiLabelServing, ImageClassificationServing):
    """Served as image classification is, with multi-label outputs."""
