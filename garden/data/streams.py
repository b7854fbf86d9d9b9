"""Streams: examples read from files while training runs (TFRecord shards, image folders).

A stream holds file names, not examples, so its size is bounded by the disk, not by memory or
the 2 GB graph limit. Its order is a pure function of (seed, epoch), as the in-memory pipeline's
is, so a resumed run sees the batches an uninterrupted run would without saving the iterator:

- Each input pipeline (one per worker) owns a fixed share: every n-th file when there are at least
  as many files as pipelines ("by file"), else every n-th record of the common order ("by record").
- Epoch e reads the share's files in the order of a stateless shuffle seeded (seed, e) (by record: in
  their fixed order, so that each share holds the same records every epoch), interleaves
  them deterministically (`cycle_length` files at a time, `block_length` records from each) and
  shuffles each block of `shuffle_buffer_size` records with a stateless shuffle seeded by (seed, e,
  block) (Model Garden's buffer slides instead; a block's draws depend on the position alone).
- Augmentation draws from stateless ops seeded by (seed, the example's position in the stream).
- A run resumed at step s counts its share's records once (a read, no decoding: the cost of a
  restore), starts at the epoch that holds record s × batch and skips to it.

Records that fail (a corrupt file, an image that does not decode, a label out of range) stop
training with the file and record named, found by re-reading the share eagerly once it failed; with
`skip_bad_examples` a first decoding pass lists them, logs them and leaves them out of every epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from garden.data.examples import Examples
from garden.errors import GardenError

_EPOCHS = 1 << 40
_CYCLE_LENGTH = 8  # files read at once when cycle_length is unset: fixed, so the order is the same on any machine

SKIP_FIX = "fix or remove it, or set skip_bad_examples=true to leave bad examples out"
Parse = Callable[[tf.Tensor, tf.Tensor], tuple[dict, tf.Tensor]]  # (file index, record) -> (raw features, label)
Decode = Callable[[dict, tf.Tensor, tf.Tensor, bool], dict]  # (features, label, seed [2], training) -> features


@dataclasses.dataclass
class Stream:
    """Files of records, how to read and parse them, and the options of Model Garden's DataConfig
    that shape the reading (`shuffle_buffer_size`, `cycle_length`, `block_length`, `deterministic`,
    `sharding`, `prefetch_buffer_size`, `skip_bad_examples`)."""

    files: list[str]
    read: Callable[[tf.Tensor], tf.data.Dataset]  # a file name -> its records
    parse: Parse
    label_names: list[str]
    options: object
    counts: list[int] | None = None  # records per file when known without reading (an image file: 1)
    bad: frozenset = frozenset()  # (file index, record index) of records to leave out
    decode: Decode | None = None  # the task's: raw features -> the model's inputs (set by Task.load)
    batch_parse: bool = False  # `parse` takes a batch of records as well as one (text lines)
    augment_batch: Callable | None = None  # (features, labels, seed [2]) -> both, for training batches (MixUp)
    multi_label: bool = False  # each record holds a list of class ids (multi_label_tfrecord)
    encode_label: Callable | None = None  # the task's: a decoded record's label -> the one trained on (multi-hot)

    @property
    def deterministic(self) -> bool:
        """Whether parallel reads and maps keep their order (unless `deterministic` is set false)."""
        return self.options.deterministic is not False

    @property
    def vectorized(self) -> bool:
        """Whether batches of records parse in one call: a batch-wise parse and nothing to decode."""
        return self.batch_parse and self.decode is None

    def __len__(self) -> int:
        return sum(self.file_counts()) - len(self.bad)

    def file_counts(self) -> list[int]:
        """Records per file; counted by reading every file once (not decoding) when not known."""
        if self.counts is None:
            self.counts = [int(self.read(tf.constant(f)).reduce(np.int64(0), lambda n, _: n + 1)) for f in self.files]
        return self.counts

    def share(self, pipelines: int, pipeline_id: int) -> tuple[list[int], bool]:
        """(indices of the files this pipeline reads, whether it then keeps every n-th record)."""
        if pipelines <= 1 or not self.options.sharding:
            return list(range(len(self.files))), False
        if len(self.files) >= pipelines:
            return list(range(pipeline_id, len(self.files), pipelines)), False
        return list(range(len(self.files))), True

    def describe(self, pipelines: int) -> str:
        """One line: what is streamed and how the input pipelines share it."""
        streaming = f"streaming {len(self.files)} files from {self.options.input_path}"
        if pipelines <= 1:
            return streaming
        files, by_record = self.share(pipelines, 0)
        how = "by record" if by_record else "by file" if len(files) < len(self.files) else "every pipeline reads all"
        return f"{streaming}, shared {how} across {pipelines} input pipelines"

    def share_size(self, pipelines: int, pipeline_id: int) -> int:
        files, by_record = self.share(pipelines, pipeline_id)
        counts = self.file_counts()
        if by_record:  # every n-th of the records that are kept
            return len(range(pipeline_id, sum(counts) - len(self.bad), pipelines))
        return sum(counts[f] for f in files) - sum(1 for f, _ in self.bad if f in files)

    def records_in_order(self) -> tf.data.Dataset:
        """(file index, record index, record) of every file in order, interleaved as in training."""
        return _interleaved(self, tf.range(len(self.files), dtype=tf.int64))

    def parsed(self, seed: tf.Tensor, training: bool):
        """A map fn from (file, record index, record) to decoded (features, label)."""

        def parse(file_id, index, record):
            features, label = self.parse(file_id, record)
            if self.decode is not None:
                features = self.decode(features, label, seed, training)
            return features, label if self.encode_label is None else self.encode_label(label)

        return parse

    def first_bad(self, fix: str = SKIP_FIX) -> GardenError | None:
        """The first record that fails to read, parse or decode, named with its file and index (found by
        re-reading the files eagerly, after the pipeline failed) and `fix`; None if every record is good."""
        parse = self.parsed(tf.constant([0, 0], tf.int64), training=False)
        for file_id, path in enumerate(self.files):
            index = -1
            try:
                for index, record in enumerate(self.read(tf.constant(path))):
                    parse(tf.constant(file_id, tf.int64), tf.constant(index, tf.int64), record)
            except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as failure:
                where = f"record {index}" if index >= 0 else "its first record"
                if isinstance(failure, tf.errors.DataLossError):  # reading failed after the last good record
                    where = f"after record {index}"
                return GardenError(f"{path}, {where}: {_first_line(failure)}; {fix}")
        return None

    def without_bad(self) -> Stream:
        """This stream without the records that fail to decode, each logged (a decoding pass over all)."""
        every = self.records_in_order()
        parse = self.parsed(tf.constant([0, 0], tf.int64), training=False)

        def decoded(f, r, record):  # (f, r) and a sum over every decoded value, so no decoding is pruned
            values = [tf.strings.length(t) if t.dtype == tf.string else t for t in tf.nest.flatten(parse(f, r, record))]
            return f, r, tf.add_n([tf.reduce_sum(tf.cast(v, tf.float64)) for v in values])

        good = every.map(decoded, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
        kept = {(int(f), int(r)) for f, r, _ in good.as_numpy_iterator()}
        counts = self.file_counts()
        bad = {(f, r) for f in range(len(self.files)) for r in range(counts[f])} - kept
        if not kept:  # an epoch of nothing would be read forever
            first = self.first_bad("")
            reason = f" (the first: {str(first).removesuffix('; ')})" if first else ""
            raise GardenError(
                f"every one of the {len(bad)} examples is bad{reason}; skip_bad_examples leaves none to read"
            )
        for f, r in sorted(bad)[:20]:
            logging.warning("skipping bad example: %s, record %d", self.files[f], r)
        if bad:
            logging.warning("skipped %d bad examples of %d", len(bad), sum(counts))
        return dataclasses.replace(self, bad=frozenset(bad))

    def to_examples(self, limit: int) -> Examples:
        """At most `limit` examples evenly spaced through the stream (every k-th record, so a folder
        sorted by class gives every class), decoded for evaluation, in memory: what exports are
        judged and calibrated on."""
        features, labels = {}, []
        for batch, batch_labels in eval_stream(self, 256, every=max(1, len(self) // limit)).take(-(-limit // 256)):
            for name, values in batch.items():
                features.setdefault(name, []).append(values.numpy())
            labels.append(batch_labels.numpy())
        arrays = {name: np.concatenate(values)[:limit] for name, values in features.items()}
        return Examples(arrays, np.concatenate(labels)[:limit], self.label_names)


@contextlib.contextmanager
def bad_records_named(*datasets, fix: str = SKIP_FIX):
    """Turns an input pipeline's failure on one of `datasets` (the streams among them) into one line
    naming the record that caused it, and `fix`."""
    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError):
        for data in datasets:
            found = data.first_bad(fix) if isinstance(data, Stream) else None
            if found is not None:
                raise found from None
        raise


def _first_line(error):
    """TensorFlow's message without its op and function names."""
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", getattr(error, "message", str(error)))
    message = re.sub(r"\s*\[Op:\w+\].*", "", message).strip().splitlines()
    return message[0][:300] if message else type(error).__name__


def train_stream(
    stream: Stream, batch_size: int, seed: int, start_step: int, pipelines: int, pipeline_id: int
) -> tf.data.Dataset:
    """Batches of `batch_size` from step `start_step` on for pipeline `pipeline_id` of `pipelines`."""
    options = stream.options
    file_ids, by_record = stream.share(pipelines, pipeline_id)
    start = start_step * batch_size
    epoch, offset = divmod(start, stream.share_size(pipelines, pipeline_id)) if start else (0, 0)
    files = tf.constant(file_ids, tf.int64)

    def seed_and(value):  # a stateless seed [2]: the run's seed and an epoch, an example or a step
        return tf.stack([tf.cast(seed, tf.int64), value])

    def epoch_records(e):
        if by_record:  # a fixed order to take every n-th record of, so that each share stays the same
            records = _interleaved(stream, files).shard(pipelines, pipeline_id)
        else:
            order = tf.random.experimental.stateless_shuffle(files, seed=seed_and(e))
            records = tf.data.Dataset.from_tensors(order).flat_map(lambda ids: _interleaved(stream, ids))
        if options.shuffle_buffer_size > 1:
            records = _block_shuffled(records, options.shuffle_buffer_size, seed_and(e))
        return records

    records = tf.data.Dataset.range(epoch, _EPOCHS).flat_map(epoch_records).skip(offset)

    def parse_at(position, element):
        return stream.parsed(seed_and(position * pipelines + pipeline_id), training=True)(*element)

    deterministic = stream.deterministic
    if stream.vectorized:  # a batch of records parses in one call
        parse = stream.parsed(None, training=True)
        batches = records.batch(batch_size, drop_remainder=True)
        batches = batches.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    else:
        examples = records.enumerate(start).map(
            parse_at, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic
        )
        batches = examples.batch(batch_size, drop_remainder=True)
    if stream.augment_batch is None:
        return batches

    def augment_at(step, batch):  # seeded by the step, as examples are by their position
        features, labels = batch
        return stream.augment_batch(features, labels, seed_and(step * pipelines + pipeline_id))

    return batches.enumerate(start_step).map(
        augment_at, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic
    )


def _block_shuffled(records, size, seed):
    """`records` in blocks of `size`, each block permuted by a stateless shuffle seeded by (seed, block):
    a shuffle buffer whose draws depend on nothing but the seed and the position."""

    def permuted(block_index, block):
        count = tf.shape(block[0], out_type=tf.int64)[0]
        # block 0 draws with the epoch's seed itself: a file whose epoch fits in one block is visited
        # in the order the in-memory pipeline gives the same examples
        block_seed = tf.where(block_index > 0, tf.random.experimental.stateless_fold_in(seed, block_index), seed)
        order = tf.random.experimental.stateless_shuffle(tf.range(count), seed=block_seed)
        return tuple(tf.gather(t, order) for t in block)

    return records.batch(size).enumerate().map(permuted).unbatch()


def _interleaved(stream, file_ids):
    """The records of `file_ids` (a tensor, in that order), interleaved as the stream's options say."""
    paths = tf.constant(stream.files)
    options = stream.options

    def read(file_id):  # zipped, not mapped: a map here would cost more than reading a text line
        ids, indices = tf.data.Dataset.from_tensors(file_id).repeat(), tf.data.Dataset.range(_EPOCHS)
        return tf.data.Dataset.zip((ids, indices, stream.read(tf.gather(paths, file_id))))

    parallel = {"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": stream.deterministic}
    records = tf.data.Dataset.from_tensor_slices(file_ids).interleave(
        read,
        cycle_length=options.cycle_length or _CYCLE_LENGTH,
        block_length=options.block_length,
        **(parallel if len(stream.files) > 1 else {}),  # one file gains nothing from parallel reads, which cost
    )
    if stream.bad:
        bad = tf.constant(sorted(f << 32 | r for f, r in stream.bad), tf.int64)
        records = records.filter(lambda f, r, _: ~tf.reduce_any(tf.equal(bad, f * (1 << 32) + r)))
    return records


def raw_examples(stream: Stream):
    """(raw features, label id) of every example in file order, not decoded: what `garden data convert`
    copies."""
    records = stream.records_in_order()
    parse = lambda file_id, index, record: stream.parse(file_id, record)  # noqa: E731
    for features, label in records.map(parse).as_numpy_iterator():
        yield features, int(label)


def eval_stream(stream: Stream, batch_size: int, every: int = 1) -> tf.data.Dataset:
    """Every example (or every `every`-th) once, in file order, decoded without augmentation, in
    batches of `batch_size`."""
    records = stream.records_in_order().shard(every, 0)
    parse = stream.parsed(tf.constant([0, 0], tf.int64), training=False)
    if stream.vectorized:
        return records.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
