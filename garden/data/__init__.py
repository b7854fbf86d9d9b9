"""Datasets: the catalog of sources, loaders and tf.data pipelines; importing it registers the datasets."""

from garden.data import image_folder, mnist, shakespeare, text_datasets, tfds, tfrecords  # noqa: F401  (registers)
