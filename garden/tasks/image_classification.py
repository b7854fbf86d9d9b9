"""Image classification: an image tensor [height, width, channels] in [0, 1] -> a class."""

import numpy as np
import tensorflow as tf

from garden.data.examples import Examples
from garden.registry import TASKS
from garden.tasks.classification import ClassificationTask


@TASKS.register("image_classification")
class ImageClassificationTask(ClassificationTask):
    """Serves image tensors as `serving_default` and encoded images (PNG, JPEG, GIF or BMP bytes, any
    size, resized to the model's) as `serving_bytes`, whose `image_bytes` input TF Serving's REST API
    fills from `{"b64": ...}`."""

    raw_signature = "serving_bytes"
    input_ranges = {"image": (0.0, 1.0)}  # pixels / 255

    def raw_serving(self, model, feature_names):
        (image,) = model.inputs
        height, width, channels = image.shape[1:]

        def decode(data):
            pixels = tf.io.decode_image(data, channels=channels, expand_animations=False)
            return tf.image.resize(tf.cast(pixels, tf.float32) / 255.0, (height, width))

        def preprocess(raw):
            spec = tf.TensorSpec((height, width, channels), tf.float32)
            return {image.name: tf.map_fn(decode, raw["image_bytes"], fn_output_signature=spec)}

        return {"image_bytes": tf.TensorSpec([None], tf.string, name="image_bytes")}, preprocess

    def raw_features(self, examples, names):
        """PNG files of the images, 8 bits per channel (what `serving_bytes` decodes them back to)."""
        ((name, images),) = examples.features.items()
        pixels = np.round(np.asarray(images) * 255).astype(np.uint8)
        encoded = np.array([tf.io.encode_png(image).numpy() for image in pixels], dtype=object)
        decoded = {name: pixels.astype(np.float32) / 255.0}
        return [encoded], Examples(decoded, examples.labels, examples.label_names)
