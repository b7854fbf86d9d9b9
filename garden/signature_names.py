"""The names of the SavedModel signatures that Garden's exports write and `garden serve` reads, in a
module of their own so that the server reads them without importing the training side."""

DEFAULT_SIGNATURE = "serving_default"  # what TF Serving calls when a request names no signature
EXAMPLES_SIGNATURE = "serve_examples"  # Model Garden's name; TF Serving's Classify and Regress call it

# a decoder language model's (export/decoder.py)
GENERATE_SIGNATURE = "generate"  # prompts and sampling settings in, continuations out (DEFAULT_SIGNATURE too)
BEAM_SEARCH_SIGNATURE = "beam_search"
DECODE_STEP_SIGNATURE = "decode_step"  # one token and the key/value cache in, the next token's logits out
TOKENIZE_SIGNATURE = "tokenize"  # what a sampling loop of one's own reads a prompt and stop strings with
DETOKENIZE_SIGNATURE = "detokenize"
