"""Datasets: the catalog of sources, loaders and tf.data pipelines; importing it registers the datasets."""

from garden.data import mnist, shakespeare, text_datasets  # noqa: F401  (registers)
