"""Tokens per second of cached greedy generation: Garden's `gpt2` backbone and sampling loop vs
KerasHub's own `GPT2CausalLM.generate`, on the same GPT-2 weights, prompts and lengths, in one run.

The weights are random at GPT-2 small's shape (124M; no checkpoint is reachable offline), copied
from one KerasHub backbone into both. Prompts are token ids of one length (KerasHub starts
generating at the shortest prompt, Garden after each prompt; with one length both do the same
work). Garden compiles its decode step with XLA below 8M weights only (garden/generate/generator.py,
XLA_BELOW), KerasHub as its `compile` defaults say; rounds alternate and the best of each counts.
The share of generated tokens that agree is printed too (random weights give near-ties, where the
two summation orders may pick different tokens). Last, a Garden decode step's time beside its
memory floor: one matmul of the batch's rows over as many float32 weights.

    python benchmarks/decoder_peers.py [--batch 4] [--prompt 16] [--tokens 64] [--quick]
"""

import argparse
import time

import keras_hub
import numpy as np
import tensorflow as tf

from garden import registry
from garden.generate.generator import Generator
from garden.generate.sampler import Rules, Sampling
from garden.registry import BACKBONES

GPT2_SMALL = dict(vocabulary_size=50257, num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072)
TINY = dict(vocabulary_size=512, num_layers=2, num_heads=4, hidden_dim=64, intermediate_dim=128)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=16, help="tokens per prompt")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per prompt")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tiny GPT-2, 8 tokens, one round: proves the script")
    args = parser.parse_args()
    registry.load_all()
    shape, tokens, rounds = (TINY, 8, 1) if args.quick else (GPT2_SMALL, args.tokens, args.rounds)

    ours = BACKBONES.get("gpt2")(**shape, dropout=0.0, max_sequence_length=1024)
    hub_lm = keras_hub.models.GPT2CausalLM(backbone=ours.hub.__class__(**shape, dropout=0.0), preprocessor=None)
    hub_lm.backbone.set_weights(ours.hub.get_weights())
    hub_lm.compile(sampler="greedy")
    token_ids = np.random.default_rng(0).integers(1, shape["vocabulary_size"], (args.batch, args.prompt), np.int32)
    prompt_mask = np.ones_like(token_ids)
    padded = {
        "token_ids": np.pad(token_ids, [[0, 0], [0, tokens]]),
        "padding_mask": np.pad(prompt_mask, [[0, 0], [0, tokens]]),
    }

    vocabulary = {"<|endoftext|>": 0, "a": 1, "aa": 2}
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=["a a"])  # ids go in, not text
    generator = Generator(ours, tokenizer)
    greedy = Rules.of([Sampling(temperature=0)] * args.batch, [0] * args.batch)
    lengths, no_stop = tf.fill([args.batch], tokens), tf.zeros([args.batch, 0], tf.int32)
    garden_loop = tf.function(lambda ids, mask, rules: generator.cached(ids, mask, lengths, rules, no_stop))

    def garden():  # the loop of the SavedModel's `generate`, from ids: the rules are inputs there too
        return garden_loop(token_ids, prompt_mask, greedy).numpy()

    def keras_hub_generate():
        return np.asarray(hub_lm.generate(padded, stop_token_ids=None)["token_ids"])[:, args.prompt :]

    runs = {"garden": garden, "keras_hub": keras_hub_generate}
    outputs = {name: run() for name, run in runs.items()}  # trace and compile
    agree = float(np.mean(outputs["garden"] == outputs["keras_hub"]))
    seconds = {name: float("inf") for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            seconds[name] = min(seconds[name], _timed(run))
    generated = args.batch * tokens
    size = sum(int(np.prod(w.shape)) for w in ours.weights) / 1e6
    print(f"GPT-2 {size:.1f}M weights, {args.batch} prompts x {args.prompt} tokens, {tokens} new tokens, greedy")
    for name in runs:
        print(f"{name:10s} {generated / seconds[name]:10.1f} tokens/s")
    print(f"tokens that agree: {agree:.3f}")
    print(f"ratio garden / keras_hub: {seconds['keras_hub'] / seconds['garden']:6.2f}x")
    # the memory floor of a decode step: one matmul of the batch's rows over as many float32 weights
    weights = tf.Variable(tf.random.normal([shape["hidden_dim"], int(size * 1e6) // shape["hidden_dim"]]))
    rows = tf.random.normal([args.batch, shape["hidden_dim"]])
    floor = tf.function(lambda: tf.matmul(rows, weights))
    floor()
    best = min(_timed(lambda: floor().numpy()) for _ in range(max(rounds, 5)))
    print(
        f"garden ms per decode step: {1000 * seconds['garden'] / tokens:.1f}; one matmul over the same bytes: "
        f"{1000 * best:.1f} ms ({4 * size * 1e6 / best / 1e9:.1f} GB/s)"
    )


def _timed(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
