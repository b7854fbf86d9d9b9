"""Sentences per second: static embeddings distilled from MiniLM vs the MiniLM teacher itself.

Both encode the same R8 test documents in the same batches on this CPU, in one run, alternating
rounds so that neither gets a quieter machine; the teacher is the sentence-transformers setup
(WordPiece, 128 tokens, mean pooling) and the static model is `garden.distill.static.StaticEncoder`.

    python benchmarks/static_encode.py --static runs/static_minilm [--quick]
"""

import argparse
import time

import tensorflow as tf

from garden import registry
from garden.data import text_datasets
from garden.distill.static import StaticEncoder, teacher_encoder
from garden.registry import TASKS
from garden.resolve import experiment_config


def teacher_encoder_fn(config):
    """texts -> MiniLM sentence embeddings (mean pooling over 128 WordPiece tokens)."""
    encoder, _ = teacher_encoder("minilm")
    task = TASKS.get("text_classification")(config.task)
    encode = tf.function(lambda texts: encoder(task.preprocess({"text": texts}))["pooled_output"])
    return lambda texts: encode(tf.constant(texts)).numpy()


def sentences_per_second(encode, batches):
    start = time.perf_counter()
    for batch in batches:
        encode(batch)
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--static", required=True, help="a `garden distill static` folder")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="a few batches, to prove the script works")
    args = parser.parse_args()
    registry.load_all()
    config = experiment_config("r8_minilm")
    texts = list(text_datasets._corpus("reuters_r8")(config.task.test_data).features["text"])
    texts = texts[: 2 * args.batch_size] if args.quick else texts[: 16 * args.batch_size]
    batches = [texts[i : i + args.batch_size] for i in range(0, len(texts), args.batch_size)]
    encoders = {"static": StaticEncoder(args.static).encode, "teacher": teacher_encoder_fn(config)}
    for encode in encoders.values():  # trace and warm up
        encode(batches[0])
    rounds = 1 if args.quick else 3
    rates = dict.fromkeys(encoders, 0.0)
    for _ in range(rounds):
        for name, encode in encoders.items():
            rates[name] = max(rates[name], sentences_per_second(encode, batches))
    static_rate, teacher_rate = rates["static"], rates["teacher"]
    print(f"documents: {len(texts)} R8 test documents, batch {args.batch_size}, best of {rounds} rounds")
    print(f"MiniLM teacher (128 tokens): {teacher_rate:10.1f} sentences/s")
    print(f"static (distilled):          {static_rate:10.1f} sentences/s")
    print(f"ratio static / teacher:      {static_rate / teacher_rate:10.1f}x")


if __name__ == "__main__":
    main()
