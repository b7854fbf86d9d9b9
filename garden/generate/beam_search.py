"""Beam search through the key/value cache, in the graph: each row keeps its `beams` best
continuations by summed log-probability, and the best of them by that sum over length **
`length_penalty` wins (the length counts tokens up to a stop token, which ends a beam: a finished
beam keeps its score and is extended by a stop token at no cost). Width 1 is greedy decoding; a
width of vocabulary ** (steps - 1) searches every continuation."""

import tensorflow as tf


def beam_search(backbone, decode_one, token_ids, padding_mask, steps, beams, length_penalty, stop_ids):
    """New tokens [batch, steps] of the left-padded prompts `token_ids` [batch, length]: the best beam
    of each row. `decode_one(token [rows], mask, cache, position) -> (logits [rows, vocabulary], cache)`
    is the generator's cached step; `beams` and `length_penalty` are scalar tensors."""
    batch, prompt_length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
    rows = batch * beams
    mask = tf.repeat(tf.concat([padding_mask, tf.ones([batch, steps], tf.int32)], axis=1), beams, axis=0)
    cache = backbone.empty_cache(rows, backbone.cache_length(prompt_length, steps))
    logits, cache = backbone.decode(tf.repeat(token_ids, beams, axis=0), mask, cache, 0)
    logits = logits[:, -1]
    vocabulary = tf.shape(logits)[-1]
    # only the first beam of each row is alive at first: the others would repeat it
    first = tf.concat([[0.0], tf.fill([beams - 1], float("-inf"))], axis=0)
    scores = tf.tile(first[None], [batch, 1])
    filler = tf.concat([stop_ids, [0]], axis=0)[0]  # what a finished beam is extended by
    frozen = tf.where(tf.range(vocabulary) == filler, 0.0, float("-inf"))

    def step(index, logits, cache, scores, lengths, done, tokens):
        log_probs = tf.reshape(tf.nn.log_softmax(tf.cast(logits, tf.float32)), [batch, beams, vocabulary])
        candidates = scores[:, :, None] + tf.where(done[:, :, None], frozen, log_probs)
        scores, best = tf.math.top_k(tf.reshape(candidates, [batch, beams * vocabulary]), k=beams)
        parents, token = best // vocabulary, best % vocabulary
        tokens = tf.gather(tokens, parents, batch_dims=1) + token[:, :, None] * tf.one_hot(index, steps, dtype=tf.int32)
        was_done = tf.gather(done, parents, batch_dims=1)
        lengths = tf.gather(lengths, parents, batch_dims=1) + tf.cast(~was_done, tf.int32)
        done = was_done | tf.reduce_any(token[:, :, None] == stop_ids, axis=-1)
        cache = tf.gather(cache, tf.reshape(tf.range(batch)[:, None] * beams + parents, [-1]), axis=1)
        logits, cache = decode_one(tf.reshape(token, [-1]), mask, cache, prompt_length + index)
        return index + 1, logits, cache, scores, lengths, done, tokens

    def unfinished(index, logits, cache, scores, lengths, done, tokens):
        return tf.logical_and(index < steps, tf.logical_not(tf.reduce_all(done)))

    state = (
        tf.constant(0),
        logits,
        cache,
        scores,
        tf.zeros([batch, beams], tf.int32),
        tf.zeros([batch, beams], tf.bool),
        tf.zeros([batch, beams, steps], tf.int32),
    )
    _, _, _, scores, lengths, _, tokens = tf.while_loop(unfinished, step, state)
    ranked = scores / tf.pow(tf.cast(tf.maximum(lengths, 1), tf.float32), length_penalty)
    return tf.gather(tokens, tf.argmax(ranked, axis=1, output_type=tf.int32), batch_dims=1)
