import numpy as np
import tensorflow as tf

from garden.data.examples import Examples
from garden.data.pipeline import eval_dataset, train_dataset

EXAMPLES = Examples({"x": np.arange(10, dtype=np.float32)}, np.arange(10), [])


def labels(dataset, count):
    return [batch[1].numpy().tolist() for batch in dataset.take(count)]


def test_each_epoch_visits_every_example_once():
    batches = labels(train_dataset(EXAMPLES, 5, seed=3), 4)
    assert sorted(batches[0] + batches[1]) == list(range(10))
    assert sorted(batches[2] + batches[3]) == list(range(10))
    assert batches[:2] != batches[2:]  # reshuffled


def test_resuming_at_a_step_continues_the_same_stream():
    full = labels(train_dataset(EXAMPLES, 3, seed=1), 9)
    assert labels(train_dataset(EXAMPLES, 3, seed=1, start_step=5), 4) == full[5:]


def test_input_pipelines_split_each_global_batch():
    full = labels(train_dataset(EXAMPLES, 4, seed=2), 3)
    shards = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        shards.append(labels(train_dataset(EXAMPLES, 4, seed=2, input_context=context), 3))
    for step in range(3):
        assert sorted(shards[0][step] + shards[1][step]) == sorted(full[step])


def test_eval_dataset_keeps_order_and_the_last_partial_batch():
    assert labels(eval_dataset(EXAMPLES, 4), 10) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
