"""Backbones, heads and the task model that joins them."""
