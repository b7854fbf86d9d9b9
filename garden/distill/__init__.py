"""Distillation: a teacher's knowledge in a cheaper model (static.py: model2vec's static embeddings)."""
