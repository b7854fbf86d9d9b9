"""A tied output layer's logits (KerasHub's and Keras's `ReversibleEmbedding(x, reverse=True)`),
computed the way TensorFlow's CPU kernels read the [vocabulary, width] table fastest.

The layer multiplies by the transposed table, which TensorFlow runs as MatMul with a transposed
operand; on oneDNN CPUs that kernel's time grows with the rows, while a batched matmul (einsum)
reads the table once for a few rows: for GPT-2 small's 50257 x 768 table on the 2-core Zen 5,
4.2 vs 5.7 ms for one row, 8.1 vs 5.7 ms for 4 rows and 11.6 vs 6.6 ms for 8. So one row takes the
layer's own matmul and more rows the einsum; the function is the same to float rounding."""

from keras import ops


def output_logits(embedding, x):
    """`embedding(x, reverse=True)` for `x` [batch, length, width] (its soft cap included); a
    quantized, untied or recast table runs through the layer itself."""
    own = getattr(embedding, "quantization_mode", None) or not embedding.tie_weights or embedding.reverse_dtype
    if own:
        return embedding(x, reverse=True)

    def batched():
        logits = ops.einsum("btd,vd->btv", x, ops.cast(embedding.embeddings, x.dtype))
        cap = embedding.logit_soft_cap
        return logits if cap is None else ops.multiply(ops.tanh(ops.divide(logits, cap)), cap)

    batch, length = x.shape[0], x.shape[1]
    if batch is not None and length is not None:  # known when traced: choose now
        return batched() if batch * length > 1 else embedding(x, reverse=True)
    rows = ops.shape(x)[0] * ops.shape(x)[1]
    return ops.cond(rows > 1, batched, lambda: embedding(x, reverse=True))
