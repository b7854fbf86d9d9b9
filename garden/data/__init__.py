"""Datasets: the catalog of sources, loaders and tf.data pipelines."""
