"""A decoder's key/value cache in one of two forms: one tensor [layers, batch, 2, length, heads,
head_dim], what a SavedModel's or TFLite's decode step takes and returns, or a tuple of the layers'
[batch, 2, length, heads, head_dim] tensors, what a generation loop carries: stacking the layers
again after every token would copy the whole cache once more per token (about a tenth of a GPT-2
small decode step at 80 positions). A decoder's `decode` returns the form it was given."""

from keras import ops


def layer_caches(cache, num_layers: int) -> list:
    """Each layer's cache of `cache` (either form)."""
    return list(cache) if isinstance(cache, tuple) else ops.unstack(cache, num_layers)


def same_form(cache, layers: list):
    """The updated `layers` in the form of `cache`."""
    return tuple(layers) if isinstance(cache, tuple) else ops.stack(layers)


def empty_layers(decoder, batch_size, prompt_length, new_tokens) -> tuple:
    """The zero cache, per layer, of `decoder` for `new_tokens` after prompts of `prompt_length`."""
    stacked = decoder.empty_cache(batch_size, decoder.cache_length(prompt_length, new_tokens))
    return tuple(ops.unstack(stacked, ops.shape(stacked)[0]))


def take_rows(cache, rows):
    """The cache's batch rows `rows` (either form)."""
    if isinstance(cache, tuple):
        return tuple(ops.take(layer, rows, axis=0) for layer in cache)
    return ops.take(cache, rows, axis=1)
