"""Image classification: an image tensor [height, width, channels] in [0, 1] -> a class, or any
number of classes (`image_multi_label_classification`, with the `multi_label` head, on
multi_label_tfrecord data)."""

import keras
import numpy as np
import tensorflow as tf

from garden.data.examples import Examples
from garden.data.seeded_random import seeded_random
from garden.errors import GardenError
from garden.registry import TASKS
from garden.tasks.classification import ClassificationTask
from garden.tasks.multi_label import MultiLabelTask
from garden.tasks.warm_start import load_backbone


@TASKS.register("image_classification")
class ImageClassificationTask(ClassificationTask):
    """Serves image tensors as `serving_default` and encoded images (PNG, JPEG, GIF or BMP bytes, any
    size, resized to the model's) as `serving_bytes`, whose `image_bytes` input TF Serving's REST API
    fills from `{"b64": ...}`."""

    raw_signature = "serving_bytes"
    input_ranges = {"image": (0.0, 1.0)}  # pixels / 255

    def load(self, data_config, label_names=None):
        """The examples of `data_config`; an image folder read for training names the classes, and the
        head must have as many (a head with more would keep classes no example teaches)."""
        examples = super().load(data_config, label_names)
        classes = self.config.model.head.params.num_classes
        if data_config.dataset == "image_folder" and not label_names and len(examples.label_names) != classes:
            found = len(examples.label_names)
            raise GardenError(
                f"{data_config.input_path} has {found} class folders ({', '.join(examples.label_names[:5])}"
                f"{', ...' if found > 5 else ''}) and the head {classes} classes; set "
                f"task.model.head.params.num_classes={found}"
            )
        return examples

    def decoder(self, data_config):
        """Streamed images: decode (any size; RGB or grayscale as the model takes), check the label, crop
        (random resized for training with `aug_crop`, else central `center_crop_fraction`), scale to
        [0, 1], resize to the model's size and, for training, flip (`aug_rand_hflip`), RandAugment or
        AutoAugment (`aug_type`) and random erasing (`random_erasing`) as Model Garden's parser does.
        Every random draw is stateless, seeded by the example's position, so a resumed run repeats it."""
        height, width, channels = self._image_shape()
        num_classes = self.config.model.head.params.num_classes
        _augmenters(data_config, channels)  # refuses what cannot apply before any tracing

        def decode(features, label, seed, training):
            check = tf.debugging.assert_equal(
                (label >= 0) & (label < num_classes),
                True,
                message=f"a label is outside 0..{num_classes - 1}; set task.model.head.params.num_classes",
            )
            data = features["image_bytes"]
            crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
            if training and data_config.aug_crop:
                pixels = _random_crop(data, channels, crop_seed)
            else:
                pixels = _decoded_centrally(data, channels, data_config.center_crop_fraction)
            image = _scaled(pixels, height, width)
            if training and data_config.aug_rand_hflip:
                image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
            if training and (data_config.aug_type or data_config.random_erasing):
                with seeded_random(tf.random.experimental.stateless_fold_in(seed, 2)):  # fresh per trace: they
                    image = _augmented(image, *_augmenters(data_config, channels))  # keep tensors of the last one
            with tf.control_dependencies([check]):
                return {"image": tf.identity(image)}

        return decode

    def batch_augmenter(self, data_config):
        """Model Garden's MixupAndCutmix for `mixup_and_cutmix`: mixed images, smoothed one-hot labels
        (which `build_loss` then reads as probabilities)."""
        if not data_config.mixup_and_cutmix:
            return None
        from official.vision.ops import augment

        num_classes = self.config.model.head.params.num_classes

        def mix(features, labels, seed):
            with seeded_random(seed):
                images, mixed = augment.MixupAndCutmix(num_classes).distort(features["image"], labels)
            return {**features, "image": images}, mixed

        return mix

    def initialize(self, model):
        """Backbone weights from `init_checkpoint`: a Garden run folder, a KerasHub preset folder or a
        .weights.h5 file (garden/tasks/warm_start.py)."""
        if self.config.init_checkpoint:
            return load_backbone(model.get_layer("backbone"), self.config.init_checkpoint)
        return None

    def build_loss(self, train=None):
        """Cross-entropy on the smoothed, mixed label distributions when training batches are mixed
        (each example weighed by its classes' mixed weight when the loss has `class_weights`)."""
        if not self.config.train_data.mixup_and_cutmix:
            return super().build_loss(train)
        if self.config.loss.type != "sparse_categorical_crossentropy":
            raise GardenError(
                f"mixup_and_cutmix trains on mixed label distributions with cross-entropy; loss "
                f"'{self.config.loss.type}' cannot read them: set task.loss.type=sparse_categorical_crossentropy"
            )
        weights = self.loss_params(train).get("class_weights")

        def loss(labels, outputs):
            per_example = keras.losses.categorical_crossentropy(
                labels, tf.cast(outputs["logits"], tf.float32), from_logits=True
            )
            return per_example if weights is None else per_example * tf.linalg.matvec(labels, weights)

        return loss

    def default_label_names(self, data_config):
        return [str(i) for i in range(self.config.model.head.params.num_classes)]

    def _image_shape(self):
        shape = getattr(self.config.model.backbone.params, "image_shape", None)
        if shape is None:
            raise GardenError(
                f"backbone '{self.config.model.backbone.type}' has no image_shape, so encoded images cannot be sized"
            )
        return tuple(shape)

    def preprocessing(self) -> dict:
        """What a device does to a photo before the `image` input, as evaluation does it."""
        height, width, channels = self._image_shape()
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
            return {image.name: tf.map_fn(decode, raw["image_bytes"], fn_output_signature=spec)}

        return {"image_bytes": tf.TensorSpec([None], tf.string, name="image_bytes")}, preprocess

    def raw_features(self, examples, names):
        """PNG files of the images, 8 bits per channel, and what `serving_bytes` makes of them (the same
        pixels; centrally cropped and resized back when evaluation crops)."""
        ((name, images),) = examples.features.items()
        pixels = np.round(np.asarray(images) * 255).astype(np.uint8)
        encoded = np.array([tf.io.encode_png(image).numpy() for image in pixels], dtype=object)
        fraction = self.config.validation_data.center_crop_fraction
        if fraction < 1:  # `serving_bytes` crops as evaluation does, then resizes to the model's size
            height, width = pixels.shape[1:3]
            decoded = {name: _scaled(tf.image.central_crop(pixels, fraction), height, width).numpy()}
        else:
            decoded = {name: pixels.astype(np.float32) / 255.0}
        return [encoded], Examples(decoded, examples.labels, examples.label_names)


@TASKS.register("image_multi_label_classification")
class ImageMultiLabelClassificationTask(MultiLabelTask, ImageClassificationTask):
    """Multi-label classification of images (garden/tasks/multi_label.py) from multi_label_tfrecord
    data, served as image classification is."""

    def batch_augmenter(self, data_config):
        if data_config.mixup_and_cutmix:
            raise GardenError(
                "mixup_and_cutmix mixes the labels of single-label images; a multi-label task trains without it: "
                "set mixup_and_cutmix=false"
            )
        return None


def serving_image(data: tf.Tensor, height: int, width: int, channels: int, center_crop_fraction: float) -> tf.Tensor:
    """Encoded image bytes (PNG, JPEG, GIF, BMP or WebP, any size; 16-bit PNGs read as their high byte)
    -> float32 [height, width, channels] in [0, 1], as evaluation and the `serving_bytes` signature decode
    them; `garden predict` decodes image files for models without that signature (TFLite) with it."""
    return _scaled(_decoded_centrally(data, channels, center_crop_fraction), height, width)


def _decoded_centrally(data, channels, fraction):
    """The pixels of an encoded image (any format and size, with `channels`), cropped to their central
    `fraction` when it is below 1."""
    pixels = tf.io.decode_image(data, channels=channels, expand_animations=False)
    return tf.image.central_crop(pixels, fraction) if fraction < 1 else pixels


def _scaled(pixels, height, width):
    """uint8 pixels of any size -> float32 [height, width, channels] in [0, 1]."""
    return tf.image.resize(tf.cast(pixels, tf.float32) / 255.0, (height, width))


def _random_crop(data, channels, seed):
    """A random resized crop's pixels (8-100% of the area, aspect 3/4-4/3), as Model Garden draws it; a
    JPEG decodes only its crop window (`decode_and_crop_jpeg`), other formats decode whole."""

    def window(shape):
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape,
            tf.zeros([1, 0, 4]),
            seed=seed,
            min_object_covered=0.1,
            aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(0.08, 1.0),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        return begin, size

    def jpeg():
        begin, size = window(tf.image.extract_jpeg_shape(data))
        return tf.image.decode_and_crop_jpeg(data, tf.stack([begin[0], begin[1], size[0], size[1]]), channels=channels)

    def other():
        pixels = tf.io.decode_image(data, channels=channels, expand_animations=False)
        begin, size = window(tf.shape(pixels))
        return tf.slice(pixels, begin, size)

    return tf.cond(tf.io.is_jpeg(data), jpeg, other)


def _augmenters(data_config, channels):
    """Model Garden's RandAugment or AutoAugment (on 8-bit RGB) and RandomErasing, as the config asks."""
    from official.vision.ops import augment

    if (data_config.aug_type or data_config.random_erasing) and channels != 3:
        raise GardenError("aug_type and random_erasing work on RGB images; the model takes other than 3 channels")
    augmenter = None
    if data_config.aug_type == "randaug":
        augmenter = augment.RandAugment(num_layers=data_config.aug_num_layers, magnitude=data_config.aug_magnitude)
    elif data_config.aug_type == "autoaug":
        augmenter = augment.AutoAugment()
    eraser = augment.RandomErasing(probability=data_config.random_erasing) if data_config.random_erasing else None
    return augmenter, eraser


def _augmented(image, augmenter, eraser):
    """[0, 1] image -> RandAugment/AutoAugment on its 8-bit pixels, then random erasing, as Model Garden
    orders them."""
    if augmenter is not None:
        pixels = tf.cast(tf.clip_by_value(tf.round(image * 255.0), 0, 255), tf.uint8)
        image = tf.cast(augmenter.distort(pixels), tf.float32) / 255.0
    return eraser.distort(image) if eraser is not None else image
