"""Exporters (SavedModel for TF Serving, TFLite for devices), each verified before it is written, and
`garden serve`. Importing this package registers nothing: formats.py registers the references and
formats (the `exporters` entry point), so the server imports no exporter."""
