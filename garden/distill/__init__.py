"""Distillation: a teacher's knowledge in a cheaper model (static.py: model2vec's static embeddings;
logits.py: a fine-tuned teacher's logits for a student's distillation loss)."""
