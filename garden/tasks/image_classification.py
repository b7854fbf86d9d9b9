"""Image classification: an image tensor [height, width, channels] in [0, 1] -> a class, or any
number of classes (`image_multi_label_classification`, with the `multi_label` head, on
multi_label_tfrecord data)."""

import keras
import numpy as np
import tensorflow as tf

from garden.data.seeded_random import seeded_random
from garden.errors import GardenError
from garden.registry import TASKS
from garden.tasks.classification import ClassificationTask
from garden.tasks.multi_label import MultiLabelTask
from garden.tasks.warm_start import load_backbone

IMAGE_BYTES = "image_bytes"  # a streamed record's encoded image, and the `serving_bytes` input
MAX_PIXELS = 89_478_485  # Pillow's Image.MAX_IMAGE_PIXELS (its decompression-bomb limit): no more are decoded
MAX_GIF_STEPS = 4096  # to count a GIF's frames: a step reads a block (a frame, an extension) and 1 MB of its data
PNG = b"\x89PNG\r\n\x1a\n"


@TASKS.register("image_classification")
class ImageClassificationTask(ClassificationTask):
    """Feature `image` [height, width, channels] in [0, 1]; streamed records decode theirs from
    `image_bytes` (PNG, JPEG, GIF, BMP or WebP, any size up to MAX_PIXELS)."""

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
        height, width, channels = self.image_shape()
        num_classes = self.config.model.head.params.num_classes
        _augmenters(data_config, channels)  # refuses what cannot apply before any tracing

        def decode(features, label, seed, training):
            check = tf.debugging.assert_equal(
                (label >= 0) & (label < num_classes),
                True,
                message=f"a label is outside 0..{num_classes - 1}; set task.model.head.params.num_classes",
            )
            data = features[IMAGE_BYTES]
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
        """Backbone weights from `init_checkpoint`: a Garden run folder, a KerasHub preset (a folder or
        a hub name) or a .weights.h5 file (garden/tasks/warm_start.py)."""
        if self.config.init_checkpoint:
            return load_backbone(model.get_layer("backbone"), self.init_checkpoint_path())
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

    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the backbone's images."""
        shape = getattr(self.config.model.backbone.params, "image_shape", None)
        if shape is None:
            raise GardenError(
                f"backbone '{self.config.model.backbone.type}' has no image_shape, so encoded images cannot be sized"
            )
        return tuple(shape)


@TASKS.register("image_multi_label_classification")
class ImageMultiLabelClassificationTask(MultiLabelTask, ImageClassificationTask):
    """Multi-label classification of images (garden/tasks/multi_label.py) from multi_label_tfrecord
    data."""

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
    them; `garden predict` decodes image files for models without that signature (TFLite) with it. An
    image whose header declares more than MAX_PIXELS pixels is refused in one line before decoding."""
    return _scaled(_decoded_centrally(data, channels, center_crop_fraction), height, width)


def _decoded_centrally(data, channels, fraction):
    """The pixels of an encoded image (any format and size, with `channels`), cropped to their central
    `fraction` when it is below 1."""
    pixels = _decoded(data, channels)
    return tf.image.central_crop(pixels, fraction) if fraction < 1 else pixels


def _decoded(data, channels, header=None):
    """uint8 [height, width, channels] pixels of an encoded image (an animation's first frame), refused
    before decoding when its header declares more than MAX_PIXELS. In one channel, PNG and JPEG as libpng
    and libjpeg turn them gray; GIF, BMP, WebP and CMYK JPEG, which TensorFlow decodes only in color, in
    RGB turned gray by tf.image.rgb_to_grayscale. Alpha is dropped. (Never channels=0: TensorFlow 2.20
    then writes an animated WebP's 4 channels into a buffer of 3 and corrupts its heap.)"""
    header = _header(data) if header is None else header
    data = _within_limit(data, header)

    def decode(channels):
        return tf.io.decode_image(data, channels=channels, expand_animations=False)

    if channels != 1:
        return decode(channels)
    return tf.cond(header["gray"], lambda: decode(1), lambda: tf.image.rgb_to_grayscale(decode(3)))


def _within_limit(data, header):
    """`data`, once its `header` is found to declare at most MAX_PIXELS pixels (else an error naming them)."""
    text = tf.strings.as_string
    frames = tf.where(header["frames"] > 1, tf.strings.join([", ", text(header["frames"]), " frames"]), "")
    said = tf.strings.join(
        [
            "the image declares ",
            text(header["pixels"]),
            " pixels (",
            text(header["width"]),
            "x",
            text(header["height"]),
            frames,
            f"), more than the {MAX_PIXELS} this model decodes (the decompression-bomb limit of Pillow); send a "
            "smaller image",
        ]
    )
    with tf.control_dependencies([tf.debugging.Assert(header["pixels"] <= MAX_PIXELS, [said])]):
        return tf.identity(data)


def _field_weights(fields):
    """Weights that read each (offset, bytes, big-endian) number of `fields` from 32 bytes, in one product."""
    weights = np.zeros([len(fields), 32])
    for row, (start, size, big_endian) in enumerate(fields):
        weights[row, start : start + size] = 256.0 ** np.arange(size)[:: -1 if big_endian else 1]
    return weights


# The sizes that image headers declare: PNG's IHDR, GIF's screen, BMP's (signed), WebP's extended canvas
# (VP8X, less 1 a side), lossless bits (VP8L: 14 a side, less 1) and lossy frame (VP8, 14 bits a side)
SIZE_WEIGHTS = _field_weights(
    [(16, 4, True), (20, 4, True), (6, 2, False), (8, 2, False), (18, 4, False), (22, 4, False)]
    + [(24, 3, False), (27, 3, False), (21, 4, False), (26, 2, False), (28, 2, False)]
)


def _header(data):
    """What encoded image bytes declare: int64 `width`, `height`, `frames` and `pixels` as
    tf.io.decode_image allocates them (a JPEG's frame; a PNG's IHDR; a BMP's or WebP's header; a GIF's
    screen, or all its frames when they hold more, as giflib reads every one), zeros for bytes of no format
    it reads; and `gray`, whether TensorFlow decodes them in one channel (a PNG, a JPEG but CMYK)."""
    head = tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, 32), b"\0" * 32]), 0, 32)
    fields = tf.linalg.matvec(SIZE_WEIGHTS, tf.cast(tf.io.decode_raw(head, tf.uint8), tf.float64))
    png, gif, bmp, vp8x, vp8l, vp8 = tf.split(tf.cast(fields, tf.int64), [2, 2, 2, 2, 1, 2])

    def starts(magic, at=0):
        return tf.strings.substr(head, at, len(magic)) == magic

    jpeg, png_file, gif_file = starts(b"\xff\xd8\xff"), starts(PNG), starts(b"GIF8")
    webp = starts(b"RIFF") & starts(b"WEBP", 8)
    shape = tf.cond(jpeg, lambda: tf.cast(tf.image.extract_jpeg_shape(data), tf.int64), lambda: tf.zeros([3], tf.int64))
    sizes = [
        (jpeg, shape[1::-1]),
        (png_file, png),
        (gif_file, gif),
        (starts(b"BM"), tf.abs(tf.where(bmp >= 2**31, bmp - 2**32, bmp))),
        (webp & starts(b"VP8X", 12), vp8x + 1),
        (webp & starts(b"VP8L", 12), tf.concat([vp8l % 2**14, vp8l // 2**14 % 2**14], 0) + 1),
        (webp & starts(b"VP8 ", 12), vp8 % 2**14),
    ]
    width, height = tf.unstack(tf.add_n([tf.where(found, size, 0) for found, size in sizes]))
    frames, pixels = tf.cond(
        gif_file, lambda: _gif_frames(data), lambda: (tf.constant(1, tf.int64), tf.constant(0, tf.int64))
    )
    gray = png_file | jpeg & (shape[2] < 4)
    return {
        "width": width,
        "height": height,
        "frames": frames,
        "pixels": tf.maximum(width * height, pixels),
        "gray": gray,
    }


def _gif_frames(data):
    """int64 (frames, their pixels) of a GIF, read by walking its blocks after the header and global color
    table: an extension (0x21, a label) or an image (0x2C, a descriptor, a color table, an LZW code size),
    each followed by sub-blocks (a length, that many bytes) up to a zero length. A step reads a block and
    its sub-blocks, full ones (255 bytes, as encoders write them) 4096 at a time; a GIF needing more than
    MAX_GIF_STEPS steps is refused."""
    byte = tf.concat([tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int32), [0]], 0)
    size = tf.size(byte) - 1  # byte[size]: a zero length past the end

    def at(position):
        return tf.gather(byte, tf.minimum(position, size))

    def color_table(flags):
        return tf.where(flags >= 128, 3 * 2 ** (flags % 8 + 1), 0)

    def past_subblocks(p):  # (where this step ends, in or past the sub-blocks from p; whether past them)
        full = at(p + 256 * tf.range(4096)) == 255
        p += 256 * tf.argmax(tf.concat([~full, [True]], 0), output_type=tf.int32)
        p = tf.where(at(p) > 0, p + 1 + at(p), p)
        return tf.where(at(p) == 0, p + 1, p), at(p) == 0

    def step(p, in_subblocks, frames, pixels, steps):
        image, extension = ~in_subblocks & (at(p) == 0x2C), ~in_subblocks & (at(p) == 0x21)
        end, ended = past_subblocks(tf.where(image, p + 11 + color_table(at(p + 9)), tf.where(extension, p + 2, p)))
        area = tf.cast(at(p + 5) + 256 * at(p + 6), tf.int64) * tf.cast(at(p + 7) + 256 * at(p + 8), tf.int64)
        block = in_subblocks | image | extension  # else the trailer, or bytes giflib stops at
        return (
            tf.where(block, end, size),
            ~ended,
            frames + tf.cast(image, tf.int64),
            pixels + tf.where(image, area, 0),
            steps + 1,
        )

    def unread(p, *state):
        return (p < size) & (state[-1] < MAX_GIF_STEPS)

    zero = tf.constant(0, tf.int64)
    start = (tf.minimum(13 + color_table(at(10)), size), tf.constant(False), zero, zero, 0)
    p, _, frames, pixels, _ = tf.while_loop(unread, step, start)
    said = f"the GIF has more blocks than this model reads in {MAX_GIF_STEPS} steps; send one of fewer frames"
    with tf.control_dependencies([tf.debugging.Assert(p >= size, [said])]):
        return tf.identity(frames), tf.identity(pixels)


def _scaled(pixels, height, width):
    """uint8 pixels of any size -> float32 [height, width, channels] in [0, 1]."""
    return tf.image.resize(tf.cast(pixels, tf.float32) / 255.0, (height, width))


def _random_crop(data, channels, seed):
    """A random resized crop's pixels (8-100% of the area, aspect 3/4-4/3), as Model Garden draws it; a
    JPEG decodes only its crop window (`decode_and_crop_jpeg`; a CMYK one into grayscale, whole), other
    formats decode whole (`_decoded`)."""

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

    header = _header(data)

    def jpeg():
        checked = _within_limit(data, header)
        begin, size = window(tf.image.extract_jpeg_shape(checked))
        crop = tf.stack([begin[0], begin[1], size[0], size[1]])
        return tf.image.decode_and_crop_jpeg(checked, crop, channels=channels)

    def other():
        pixels = _decoded(data, channels, header)
        begin, size = window(tf.shape(pixels))
        return tf.slice(pixels, begin, size)

    return tf.cond(tf.io.is_jpeg(data) & (header["gray"] | (channels != 1)), jpeg, other)  # a CMYK one: other


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
