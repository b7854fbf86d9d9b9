"""The orchestrator: strategy, precision, training loop, checkpoints, summaries, evaluation."""
