"""An image file gets one answer from `garden predict` (SavedModel and TFLite), the SavedModel's
`serving_bytes` signature and the REST API: predict decodes it as the model's own graph does. Then
fuzzing (Hypothesis) of image decoding: random valid images and corrupt bytes get that answer or
one line saying what to do, never a traceback, a hang or a decompression bomb's allocation.

`GARDEN_CHAOS_POINTS=N` tries N times the examples that `make test` tries."""

import base64
import functools
import io
import json
import os
import shutil
import struct
import warnings
import zlib

import numpy as np
import pytest
import tensorflow as tf
from conftest import garden, mnist_pixels, trained_once
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from test_serve import call, serving

from garden.export.requests import model_error
from garden.run import Run

EXAMPLES = 12 * int(os.environ.get("GARDEN_CHAOS_POINTS", "1"))
# |Δ probability| from the SavedModel's own decoding of the same bytes: predict prints 6 decimals;
# a float TFLite model runs its graph to the export's parity bound (measured 1e-6)
TOLERANCE = {"saved_model": 1e-6, "model_none.tflite": 1e-4}


@pytest.fixture(scope="module")
def gray(tiny_run, tmp_path_factory):
    """The tiny MNIST ResNet (28x28 grayscale, whole images) as a SavedModel and a float TFLite model."""
    out = tmp_path_factory.mktemp("gray")
    garden("export", tiny_run, "--format", "saved_model", "--format", "tflite", "--out", out)
    return out


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory, mnist_files):
    """A tiny ResNet trained on 400 MNIST PNGs read as 28x28 RGB, evaluated (and served) on their central
    87.5% (image_classifier's center_crop_fraction). (The vision tests' MobileNet answers every image
    alike to 1e-5: it cannot tell decodings apart.)"""
    sets = [
        "task.model.backbone.params.image_shape=[28, 28, 3]",
        "task.model.backbone.params.stem_width=16",
        "task.model.backbone.params.stage_widths=[16, 32]",
        "task.model.backbone.params.blocks_per_stage=1",
        f"task.train_data.input_path={mnist_files[0]}",
        f"task.validation_data.input_path={mnist_files[0]}",
        "task.train_data.aug_crop=false",
        "task.train_data.aug_rand_hflip=false",
        "task.train_data.global_batch_size=32",
        "task.validation_data.global_batch_size=100",
        "trainer.train_steps=80",
        "trainer.steps_per_loop=40",
        "trainer.checkpoint_interval=80",
        "trainer.validation_interval=80",
        "trainer.optimizer_config.warmup.linear.warmup_steps=10",
        "runtime.deterministic=true",
    ]
    return trained_once(tmp_path_factory, "tiny_rgb", "image_classifier", *[a for s in sets for a in ("--set", s)])


@pytest.fixture(scope="module")
def rgb(rgb_run, tmp_path_factory):
    """`rgb_run` exported as a SavedModel and a float TFLite model, under the default --max-quality-drop."""
    out = tmp_path_factory.mktemp("rgb")
    garden("export", rgb_run, "--format", "saved_model", "--format", "tflite", "--out", out)
    return out


@functools.cache
def signatures(export):
    return tf.saved_model.load(str(export / "saved_model")).signatures


def own_decoding(export, data):
    """The probabilities of the SavedModel's `serving_bytes` for `data`, or None when it refuses them."""
    try:
        return signatures(export)["serving_bytes"](image_bytes=tf.constant([data]))["probabilities"].numpy()[0]
    except tf.errors.InvalidArgumentError:
        return None


def predict(*args):
    """`garden predict *args`, checked to have given no warning that a terminal would show."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = garden("predict", *args, check=False)
    shown = [
        str(w.message) for w in caught if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))
    ]
    assert not shown, shown
    return result


def refusal(result):
    """The one line of a refused `garden predict`, checked to say what to do."""
    assert result.returncode == 2 and result.stdout == "", (result.stdout, result.stderr)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("garden: error: ") and "save it" in line, line
    return line


def predict_as_own_decoding(export, path, data, may_refuse=False):
    """`garden predict` on `path` (holding `data`) from the SavedModel and the TFLite model answers as the
    SavedModel's own decoding of `data` does, or is refused in one line where that refuses (or anywhere
    when `may_refuse`)."""
    expected = own_decoding(export, data)
    for artifact, tolerance in TOLERANCE.items():
        result = predict(export / artifact, path)
        if expected is None or (may_refuse and result.returncode):
            refusal(result)
            continue
        assert result.returncode == 0 and result.stderr == "", f"{artifact}: {result.stderr}"
        (row,) = [json.loads(line) for line in result.stdout.splitlines()]
        np.testing.assert_allclose(row["probabilities"], expected, atol=tolerance, err_msg=artifact)


def encoded(image, kind, **options):
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


@functools.cache
def files_of_every_kind():
    """name -> bytes: one MNIST digit (the high byte of the 16-bit ones) at 30x26 (resized by the model's
    decoding), in color an orange digit (red, 3/4 green, 1/2 blue) on black."""
    digit = np.asarray(Image.fromarray(mnist_pixels(1)[0][0]).resize((26, 30), Image.NEAREST))
    color = np.stack([digit, digit // 4 * 3, digit // 2], axis=-1)
    low = np.random.default_rng(0).integers(0, 256, color.shape, dtype=np.uint16)  # read as the high byte only
    rgb = Image.fromarray(color)
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    return {
        "gray16.png": encoded(Image.fromarray(digit.astype(np.uint16) << 8 | low[..., 0]), "PNG"),
        "rgb16.png": tf.io.encode_png(color.astype(np.uint16) << 8 | low).numpy(),
        "cmyk.jpg": encoded(rgb.convert("CMYK"), "JPEG", quality=95),
        "palette.png": encoded(palette, "PNG"),
        "palette_transparent.png": encoded(palette, "PNG", transparency=0),
        "rgba.png": encoded(Image.fromarray(np.dstack([color, digit])), "PNG"),
        "gray.png": encoded(Image.fromarray(digit), "PNG"),
        "rgb.png": encoded(rgb, "PNG"),
        "rgb.gif": encoded(rgb, "GIF"),
        "rgb.webp": encoded(rgb, "WEBP", lossless=True),
        "rgb.bmp": encoded(rgb, "BMP"),
        "palette.bmp": encoded(palette, "BMP"),  # TensorFlow reads its palette indices as gray levels
        "rgb.tiff": encoded(rgb, "TIFF"),
    }


# what predict refuses: a format the model's decoding does not read, and a BMP whose palette it would read
# as gray levels (the SavedModel answers on those)
REFUSED = {"rgb.tiff", "palette.bmp"}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("model", ["gray", "rgb"])
@pytest.mark.parametrize("name", list(files_of_every_kind()))
def test_an_image_file_gets_the_answer_of_the_saved_models_own_decoding(model, name, request, tmp_path):
    """16-bit PNGs (grayscale, RGB), a CMYK JPEG, palette PNGs with and without transparency, RGBA,
    grayscale into the RGB model and RGB into the grayscale one, GIF, WebP and BMP."""
    export, data = request.getfixturevalue(model), files_of_every_kind()[name]
    (tmp_path / name).write_bytes(data)
    if name in REFUSED:
        misread = name == "palette.bmp"  # the SavedModel answers on gray levels of indices
        assert (own_decoding(export, data) is None) != misread
        for artifact in TOLERANCE:
            refusal(predict(export / artifact, tmp_path / name))
    else:
        assert own_decoding(export, data) is not None
        predict_as_own_decoding(export, tmp_path / name, data)


def luma(colors):
    """8-bit gray levels of 8-bit RGB pixels, as tf.image.rgb_to_grayscale documents them: 0.2989 R +
    0.5870 G + 0.1140 B of the [0, 1] values, times 255.5, truncated."""
    gray = (colors.astype(np.float32) / 255) @ np.array([0.2989, 0.5870, 0.1140], np.float32)
    return np.floor(gray * 255.5).astype(np.uint8)[..., None]


@pytest.mark.timeout(300)
def test_a_grayscale_model_reads_gif_bmp_webp_and_cmyk_jpeg_as_the_luma_of_their_colors(gray):
    """TensorFlow decodes these only in color, and the grayscale model's decoding asked for one channel:
    it refused them. Its answer now is `serving_default`'s on their colors' luma, computed here from
    Pillow's decoding (the CMYK JPEG's from TensorFlow's RGB, as the RGB model reads it: Pillow converts
    CMYK otherwise)."""
    by_tensor = signatures(gray)["serving_default"]
    for name in ("rgb.gif", "rgb.bmp", "rgb.webp", "cmyk.jpg"):
        data = files_of_every_kind()[name]
        if name == "cmyk.jpg":
            colors = tf.io.decode_jpeg(data, channels=3).numpy()
        else:
            colors = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        image = tf.image.resize(luma(colors).astype(np.float32) / 255, (28, 28))
        expected = by_tensor(image=image[None])["probabilities"].numpy()[0]
        answer = own_decoding(gray, data)
        assert answer is not None, f"{name} is refused"
        np.testing.assert_allclose(answer, expected, atol=1e-5, err_msg=name)


@pytest.mark.timeout(300)
def test_a_centre_cropped_model_exports_and_serves_whole_images_as_its_keras_model_reads_their_centre(
    rgb, rgb_run, mnist_files
):
    """The `rgb` fixture exports its centre-cropped model under the default --max-quality-drop (the
    export scored `serving_bytes` on held-out images that evaluation had already cropped, cropping them
    twice, and refused it). The signature's answers for whole image files equal the Keras model's on
    their central 26x26 pixels (TensorFlow's central_crop of 28 at 0.875 drops 28 // 16 rows and
    columns at each side), cut here with numpy and resized to 28x28."""
    files = sorted(mnist_files[0].rglob("*.png"))[::20]
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    centre = tf.image.resize(pixels[:, 1:27, 1:27].astype(np.float32) / 255, (28, 28))
    expected = tf.nn.softmax(Run(str(rgb_run)).model({"image": centre})["logits"]).numpy()
    answers = signatures(rgb)["serving_bytes"](image_bytes=tf.constant([f.read_bytes() for f in files]))
    np.testing.assert_allclose(answers["probabilities"].numpy(), expected, atol=1e-5)


@pytest.mark.timeout(900)
def test_a_16_bit_png_reads_as_its_high_byte_through_predict_the_signature_and_rest(gray, tmp_path):
    """The old predict read a 16-bit PNG with Pillow's "L", which clamps its values to 255: it answered 8
    at 1.0 for the first digit, a 7 at 0.975 to the SavedModel. The reference is computed by hand: the
    high byte / 255 into `serving_default`."""
    pixels = mnist_pixels(8)[0]
    low = np.random.default_rng(1).integers(0, 256, pixels.shape, dtype=np.uint16)
    by_hand = signatures(gray)["serving_default"](image=tf.constant(pixels[..., None] / 255, tf.float32))
    expected = by_hand["probabilities"].numpy()
    files = []
    for i, (image, noise) in enumerate(zip(pixels, low)):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(image.astype(np.uint16) << 8 | noise).save(files[-1])
        assert Image.open(files[-1]).mode == "I;16"
        for artifact, tolerance in TOLERANCE.items():
            result = predict(gray / artifact, files[-1])
            assert result.returncode == 0, result.stderr
            (row,) = [json.loads(line) for line in result.stdout.splitlines()]
            np.testing.assert_allclose(row["probabilities"], expected[i], atol=tolerance, err_msg=artifact)
    instances = [{"b64": base64.b64encode(f.read_bytes()).decode()} for f in files]
    with serving(f"digits={gray / 'saved_model'}") as url:
        status, reply = call(
            url, "/v1/models/digits:predict", {"signature_name": "serving_bytes", "instances": instances}
        )
    assert status == 200
    np.testing.assert_allclose([r["probabilities"] for r in reply["predictions"]], expected, atol=1e-5)


@pytest.mark.timeout(300)
def test_an_artifact_away_from_its_manifest_decodes_in_its_graph_or_refuses(gray, tmp_path):
    """A SavedModel decodes with its own signature anywhere; a TFLite model, whose crop and size only
    manifest.json records, is refused in one line away from it."""
    shutil.copytree(gray / "saved_model", tmp_path / "saved_model")
    shutil.copy(gray / "model_none.tflite", tmp_path)
    data = files_of_every_kind()["gray16.png"]
    (tmp_path / "digit.png").write_bytes(data)
    result = predict(tmp_path / "saved_model", tmp_path / "digit.png")
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    np.testing.assert_allclose(row["probabilities"], own_decoding(gray, data), atol=TOLERANCE["saved_model"])
    result = predict(tmp_path / "model_none.tflite", tmp_path / "digit.png")
    assert result.returncode == 2 and result.stderr == (
        "garden: error: no manifest.json beside the model says how its images are cropped and resized; predict "
        "it from its export folder, or pass a .npy array of image inputs\n"
    )


def png(width, height, rows=None):
    """A grayscale PNG declaring width x height, its data `rows` (bytes) or that many rows of zeros."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    if rows is None:
        compressor, row = zlib.compressobj(), bytes(width + 1)
        rows = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def jpeg_declaring(width, height):
    """A small JPEG whose frame header declares width x height."""
    data = bytearray(encoded(Image.new("L", (8, 8)), "JPEG"))
    start = data.index(b"\xff\xc0") + 5  # SOF0: length (2), precision (1), height, width
    data[start : start + 4] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_of_frames(count, width, height):
    """A GIF of `count` black frames of width x height: Pillow's one frame, repeated."""
    data = encoded(Image.new("L", (width, height)), "GIF")
    start = 13 + (3 << (data[10] & 7) + 1 if data[10] & 0x80 else 0)  # past the header and color table
    assert data[start] == 0x2C and data[-1] == 0x3B  # an image descriptor ... the trailer
    return data[:start] + data[start:-1] * count + data[-1:]


LIMIT = Image.MAX_IMAGE_PIXELS  # Pillow's decompression-bomb limit: the models' decoding takes no more pixels


def webp_declaring(width, height):
    """A small lossless WebP whose VP8L header declares width x height (up to 16384 a side)."""
    data = bytearray(encoded(Image.new("RGB", (8, 8)), "WEBP", lossless=True))
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    (bits,) = struct.unpack("<I", data[21:25])
    data[21:25] = struct.pack("<I", bits & ~0xFFFFFFF | (width - 1) | (height - 1) << 14)
    return bytes(data)


def bmp_declaring(width, height):
    """A 2x2 RGB BMP whose header declares width x height."""
    data = bytearray(encoded(Image.new("RGB", (2, 2)), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


@functools.cache
def bombs():
    """name -> (bytes declaring more pixels than Pillow's limit, the pixels and size they declare): 100 kB of
    PNG that inflates to 10000x10000, headers declaring more over garbage, and 91 GIF frames of 1000x1000,
    all of which TensorFlow decodes (giflib every frame)."""
    return {
        "zeros.png": (png(10000, 10000), 10**8, "10000x10000"),
        "declared.png": (png(60000, 60000, rows=os.urandom(1000)), 36 * 10**8, "60000x60000"),
        "declared.jpg": (jpeg_declaring(60000, 60000), 36 * 10**8, "60000x60000"),
        "frames.gif": (gif_of_frames(91, 1000, 1000), 91 * 10**6, "1000x1000, 91 frames"),
        "declared.webp": (webp_declaring(16384, 16384), 16384**2, "16384x16384"),
        "declared.bmp": (bmp_declaring(20000, -20000), 4 * 10**8, "20000x20000"),  # rows stored top-down
    }


def peak_megabytes_since(reset, pid="self"):
    """The peak resident memory of process `pid` (Linux), in MiB, since the last call with reset=True."""
    if reset:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) // 1024


@pytest.mark.timeout(300)
def test_a_decompression_bomb_is_refused_before_it_is_decoded(gray, tmp_path):
    """Each declares more pixels than Pillow's limit (89 million). Refused by reading the header, in well
    under the memory (100 MB of pixels, 400 MB as floats) that decoding takes."""
    try:
        peak_megabytes_since(reset=True)
    except OSError:
        pytest.skip("needs Linux's /proc/self/clear_refs to measure peak memory")
    for name in ("zeros.png", "declared.png", "declared.jpg", "frames.gif"):
        (tmp_path / name).write_bytes(bombs()[name][0])
        before = peak_megabytes_since(reset=True)
        line = refusal(predict(gray / "saved_model", tmp_path / name))
        assert "pixels" in line and peak_megabytes_since(reset=False) - before < 200, (name, line)


def server_pid():
    """The process id of the `garden serve` that this test process started."""
    children = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            children += [int(p) for p in f.read().split()]
    (pid,) = [p for p in children if b"serve" in open(f"/proc/{p}/cmdline", "rb").read()]
    return pid


@pytest.mark.timeout(300)
def test_the_saved_models_decoding_refuses_a_bomb_from_its_header_called_directly_and_over_rest(gray):
    """The `serving_bytes` signature (which REST, gRPC and TF Serving call) reads the size a PNG, JPEG,
    GIF, BMP or WebP header declares (a GIF's: every frame's) and refuses more than Pillow's limit in one
    line, before decoding: 400 over REST, and the process grows by well under the 477 MB that the PNG of
    10000x10000 took (1.9 GB at 20000x20000)."""
    try:
        peak_megabytes_since(reset=True)
    except OSError:
        pytest.skip("needs Linux's /proc/self/clear_refs to measure peak memory")

    def said(pixels, size):
        return (
            f"the image declares {pixels} pixels ({size}), more than the {LIMIT} this model decodes (the "
            "decompression-bomb limit of Pillow); send a smaller image"
        )

    def body(data):
        return {"signature_name": "serving_bytes", "instances": [{"b64": base64.b64encode(data).decode()}]}

    decode = signatures(gray)["serving_bytes"]
    decode(image_bytes=tf.constant([files_of_every_kind()["gray.png"]]))  # warmed up before memory is measured
    for name, (data, pixels, size) in bombs().items():
        before = peak_megabytes_since(reset=True)
        with pytest.raises(tf.errors.InvalidArgumentError) as refused:
            decode(image_bytes=tf.constant([data]))
        assert model_error(refused.value) == said(pixels, size), name
        assert peak_megabytes_since(reset=False) - before < 300, name
    comments = b"GIF89a\x01\x00\x01\x00\x00\x00\x00" + b"\x21\xfe\x00" * 5000 + b"\x3b"  # 5000 empty extensions
    with pytest.raises(tf.errors.InvalidArgumentError) as refused:  # its frames are counted in at most 4096 steps
        decode(image_bytes=tf.constant([comments]))
    assert model_error(refused.value) == (
        "the GIF has more blocks than this model reads in 4096 steps; send one of fewer frames"
    )
    good = body(files_of_every_kind()["gray.png"])
    with serving(f"digits={gray / 'saved_model'}") as url:
        pid = server_pid()
        assert call(url, "/v1/models/digits:predict", good)[0] == 200
        for name, (data, pixels, size) in bombs().items():
            before = peak_megabytes_since(reset=True, pid=pid)
            assert call(url, "/v1/models/digits:predict", body(data)) == (400, {"error": said(pixels, size)}), name
            assert peak_megabytes_since(reset=False, pid=pid) - before < 300, name
        assert call(url, "/v1/models/digits:predict", good)[0] == 200


FORMATS = {  # Pillow's modes each can write; TIFF is a format the model's decoding does not read
    "PNG": ["1", "L", "LA", "P", "P+transparency", "RGB", "RGBA", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "GIF": ["L", "P", "RGB"],
    "BMP": ["1", "L", "P", "RGB", "RGBA"],
    "WEBP": ["RGB", "RGBA"],
    "TIFF": ["RGB"],
}


@st.composite
def images(draw):
    """Encoded bytes of a random image: any size up to 64x64, mode, format and (GIF, PNG, WebP) frames."""
    kind = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[kind]))
    width, height, frames = draw(st.integers(1, 64)), draw(st.integers(1, 64)), draw(st.integers(1, 3))
    frames = 1 if mode == "P+transparency" else frames  # Pillow writes no animated PNG with a transparent index
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    smooth = draw(st.booleans())  # a gradient (compresses well, as photos do) or noise
    pictures = []
    for _ in range(frames):
        if smooth:
            base = np.linspace(0, 1, width)[None, :, None] * np.linspace(0, 1, height)[:, None, None]
            pixels = base * rng.integers(0, 256, (1, 1, 4)) + rng.integers(0, 4, (height, width, 4))
        else:
            pixels = rng.integers(0, 256, (height, width, 4))
        picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGBA")
        if mode == "I;16":
            picture = Image.fromarray((pixels[..., 0] * 257).clip(0, 65535).astype(np.uint16))
        elif mode.startswith("P"):
            picture = picture.convert("RGB").convert(
                "P", palette=Image.Palette.ADAPTIVE, colors=int(rng.integers(2, 257))
            )
        else:
            picture = picture.convert(mode)
        pictures.append(picture)
    options = {"transparency": 0} if mode == "P+transparency" else {}
    if kind == "JPEG":
        options = {"quality": draw(st.integers(30, 100)), "progressive": draw(st.booleans())}
    if frames > 1 and kind in ("GIF", "PNG", "WEBP"):
        options.update(save_all=True, append_images=pictures[1:])
    return encoded(pictures[0], kind, **options)


@pytest.fixture(scope="module")
def models(gray, rgb, tmp_path_factory):
    return {"gray": gray, "rgb": rgb, "scratch": tmp_path_factory.mktemp("fuzz")}


@pytest.mark.timeout(300 + 20 * EXAMPLES)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
@given(data=images(), model=st.sampled_from(["gray", "rgb"]))
def test_any_valid_image_gets_the_saved_models_answer_or_one_line(models, data, model):
    path = models["scratch"] / "image"
    path.write_bytes(data)
    predict_as_own_decoding(models[model], path, data)


@st.composite
def corrupt(draw):
    """Bytes that are not a whole image: a valid one truncated or bit-flipped, nothing, a PNG signature
    or header over garbage, or a PNG header declaring a random size (up to 2^31 - 1 a side)."""
    kind = draw(st.sampled_from(["truncated", "flipped", "empty", "signature", "declared"]))
    data = draw(images())
    garbage = draw(st.binary(max_size=256))
    if kind == "truncated":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "flipped":
        flipped = bytearray(data)
        for bit in draw(st.lists(st.integers(0, 8 * len(data) - 1), min_size=1, max_size=8)):
            flipped[bit // 8] ^= 1 << bit % 8
        return bytes(flipped)
    if kind == "empty":
        return b""
    if kind == "signature":
        return b"\x89PNG\r\n\x1a\n" + garbage
    side = st.integers(1, 2**31 - 1)
    return png(draw(side), draw(side), rows=zlib.compress(garbage))


@pytest.mark.timeout(300 + 20 * EXAMPLES)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
@given(data=corrupt(), model=st.sampled_from(["gray", "rgb"]))
def test_corrupt_bytes_get_one_line_or_the_saved_models_answer(models, data, model):
    path = models["scratch"] / "corrupt"
    path.write_bytes(data)
    if data.startswith(b"\x89PNG") and len(data) >= 24 and np.prod(struct.unpack(">II", data[16:24])) > LIMIT:
        refusal(predict(models[model] / "saved_model", path))  # no decoding to compare
        return
    predict_as_own_decoding(models[model], path, data, may_refuse=True)
