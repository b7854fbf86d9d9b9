"""tf.data pipelines over in-memory examples (streams of files: garden/data/streams.py).

Training order is a pure function of (seed, step): epoch `e` visits the examples in
the order of a stateless shuffle seeded with `(seed, e)`, so a run resumed at step `s` skips to
example `s * global_batch_size` and sees exactly the batches an uninterrupted run
would. Each input pipeline (one per worker) takes every n-th example of that stream,
so the workers' batches together form the same global batch. A task's `prepare`
(tokenization and label alignment, for text) runs on each batch inside the pipeline.
"""

import tensorflow as tf

from garden.data.streams import Stream, eval_stream, train_stream

_EPOCHS = 1 << 40


def _gather(examples):
    features = {k: tf.constant(v) for k, v in examples.features.items()}
    labels = tf.constant(examples.labels)
    return lambda index: ({k: tf.gather(v, index) for k, v in features.items()}, tf.gather(labels, index))


def train_dataset(examples, global_batch_size, seed, start_step=0, input_context=None, prepare=None):
    """Batches of `examples` (in memory, or a Stream) from step `start_step` on, mapped by `prepare`."""
    if isinstance(examples, Stream):
        pipelines, pipeline_id, batch_size = 1, 0, global_batch_size
        if input_context is not None:
            pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
            batch_size = input_context.get_per_replica_batch_size(global_batch_size)
        batches = train_stream(examples, batch_size, seed, start_step, pipelines, pipeline_id)
        return _prepared(batches, prepare, examples.options.prefetch_buffer_size)
    size = len(examples)
    epoch, offset = divmod(start_step * global_batch_size, size)
    order = tf.data.Dataset.range(epoch, _EPOCHS).flat_map(
        lambda e: tf.data.Dataset.from_tensor_slices(
            tf.random.experimental.stateless_shuffle(tf.range(size, dtype=tf.int64), seed=tf.stack([seed, e]))
        )
    )
    order = order.skip(offset)
    batch_size = global_batch_size
    if input_context is not None:
        order = order.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(global_batch_size)
    return _batches(order.batch(batch_size, drop_remainder=True), examples, prepare)


def eval_dataset(examples, batch_size, prepare=None):
    if isinstance(examples, Stream):
        return _prepared(eval_stream(examples, batch_size), prepare, examples.options.prefetch_buffer_size)
    return _batches(tf.data.Dataset.range(len(examples)).batch(batch_size), examples, prepare)


def _batches(indices, examples, prepare):
    """Batches of (features, labels) for batches of example indices, mapped by `prepare(features, labels)`."""
    return _prepared(indices.map(_gather(examples)), prepare)


def _prepared(batches, prepare, prefetch=None):
    if prepare is not None:
        batches = batches.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(prefetch or tf.data.AUTOTUNE)
