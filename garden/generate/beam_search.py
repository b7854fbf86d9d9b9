"""Beam search through the key/value cache, in the graph: each row keeps its `beams` best
continuations by summed log-probability, and the best of them by that sum over length **
`length_penalty` wins (the length counts tokens up to a stop token, which ends a beam: a finished
beam keeps its score and is extended by token 0 at no cost, cut off in the text). Width 1 is greedy
decoding; a width of vocabulary ** (steps - 1) searches every continuation. Each row has its own
width, penalty and length: the batch searches at its widest, and a row's beams past its own width
stay dead, so a row finds what it finds alone."""

import tensorflow as tf

from garden.models import kv_cache


def beam_search(backbone, decode_one, token_ids, padding_mask, max_new_tokens, beams, length_penalty, stop_ids):
    """New tokens [batch, longest max_new_tokens] of the left-padded prompts `token_ids` [batch,
    length]: the best beam of each row. `decode_one(token [rows], mask, cache, position) ->
    (logits [rows, vocabulary], cache)` is the generator's cached step; `max_new_tokens`, `beams`
    and `length_penalty` are tensors [batch], `stop_ids` [batch, stops] (-1 pads)."""
    batch, prompt_length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
    steps, width = tf.reduce_max(max_new_tokens), tf.reduce_max(beams)
    mask = tf.repeat(tf.concat([padding_mask, tf.ones([batch, steps], tf.int32)], axis=1), width, axis=0)
    cache = kv_cache.empty_layers(backbone, batch * width, prompt_length, steps)
    logits, cache = backbone.decode(tf.repeat(token_ids, width, axis=0), mask, cache, 0)
    logits = logits[:, -1]
    vocabulary = tf.shape(logits)[-1]
    searched = tf.range(width)[None] < beams[:, None]  # [batch, width]: the beams of each row's own width
    # only the first beam of each row is alive at first: the others would repeat it
    scores = tf.where(tf.range(width)[None] == 0, 0.0, tf.fill([batch, width], float("-inf")))
    frozen = tf.where(tf.range(vocabulary) == 0, 0.0, float("-inf"))
    last_step = max_new_tokens[:, None] - 1

    def step(index, logits, cache, scores, lengths, done, tokens):
        log_probs = tf.reshape(tf.nn.log_softmax(tf.cast(logits, tf.float32)), [batch, width, vocabulary])
        candidates = scores[:, :, None] + tf.where(done[:, :, None], frozen, log_probs)
        scores, best = tf.math.top_k(tf.reshape(candidates, [batch, width * vocabulary]), k=width)
        scores = tf.where(searched, scores, float("-inf"))
        parents, token = best // vocabulary, best % vocabulary
        tokens = tf.gather(tokens, parents, batch_dims=1) + token[:, :, None] * tf.one_hot(index, steps, dtype=tf.int32)
        was_done = tf.gather(done, parents, batch_dims=1)
        lengths = tf.gather(lengths, parents, batch_dims=1) + tf.cast(~was_done, tf.int32)
        stopped = tf.reduce_any(token[:, :, None] == stop_ids[:, None, :], axis=-1)
        done = was_done | stopped | (index >= last_step) | ~searched
        cache = kv_cache.take_rows(cache, tf.reshape(tf.range(batch)[:, None] * width + parents, [-1]))
        logits, cache = decode_one(tf.reshape(token, [-1]), mask, cache, prompt_length + index)
        return index + 1, logits, cache, scores, lengths, done, tokens

    def unfinished(index, logits, cache, scores, lengths, done, tokens):
        return tf.logical_and(index < steps, tf.logical_not(tf.reduce_all(done)))

    state = (
        tf.constant(0),
        logits,
        cache,
        scores,
        tf.zeros([batch, width], tf.int32),
        tf.zeros([batch, width], tf.bool),
        tf.zeros([batch, width, steps], tf.int32),
    )
    _, _, _, scores, lengths, _, tokens = tf.while_loop(unfinished, step, state)
    penalty = length_penalty[:, None]
    ranked = scores / tf.pow(tf.cast(tf.maximum(lengths, 1), tf.float32), penalty)
    return tf.gather(tokens, tf.argmax(ranked, axis=1, output_type=tf.int32), batch_dims=1)
