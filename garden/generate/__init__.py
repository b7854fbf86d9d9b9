"""Generation from decoder language models (gemma_pytorch's sampler): sampling rules and the
key/value-cached decoding loop."""
