"""`garden`: list, show, train, sweep, eval, export, predict and serve experiments; list and pull checkpoints.

The composition root: the only module that imports `experiments` and `export`, so every
registered name exists before a command looks one up.
"""

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF C++ logs; Python errors still surface

from garden import __version__  # noqa: E402
from garden.errors import GardenError, Stopped  # noqa: E402


def _table(header, rows):
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in lines)


def _config(args):
    from garden.resolve import experiment_config

    imports = [{"imports": list(args.imports)}] if args.imports else []  # kept with the run, for eval and export
    return experiment_config(args.experiment, args.config, args.set, overrides=imports, tiny=args.tiny)


def cmd_list(args):
    print(_experiment_table())


def _experiment_table():
    from garden import registry
    from garden.config import subtask_configs
    from garden.resolve import experiment_config

    rows = []
    for name in registry.EXPERIMENTS.names():
        config = experiment_config(name)
        summary = _first_sentence(registry.EXPERIMENTS.get(name).__doc__ or "")
        subtasks = subtask_configs(config.task).values()
        dataset = config.task.train_data.dataset or "+".join(t.train_data.dataset for t in subtasks)
        rows.append([name, config.task.type, config.task.model.backbone.type, dataset, summary])
    return _table(["experiment", "task", "backbone", "dataset", "description"], rows)


def cmd_models(args):
    print(_models_table(args.family))


def _models_table(family=""):
    """The presets of every Garden backbone family (or of `family`) as a table."""
    from garden.errors import did_you_mean
    from garden.models.presets import family_presets, parameter_count

    presets = family_presets()
    if family and family not in presets:
        raise GardenError(f"no KerasHub presets for backbone '{family}'{did_you_mean(family, presets)}")
    rows = [
        [name, p["preset"], parameter_count(p["parameters"]), p["page"], _first_sentence(p["description"])]
        for name, found in presets.items()
        if name == family or not family
        for p in found
    ]
    return _table(["backbone", "preset", "parameters", "terms", "description"], rows)


def _cached_answer(args):
    """What `list`, `models` or a plain `show NAME` prints, from garden/answers.py's cache (no
    TensorFlow import when it is fresh); None for any other command or option."""
    plain_show = args.command == "show" and args.experiment and not (args.config or args.set or args.tiny)
    if args.imports or not (args.command in ("list", "models") or plain_show):
        return None
    from garden import answers

    if args.command == "show":
        return answers.answer(f"show {args.experiment}", _every_answer)
    return answers.answer(f"models {args.family}".strip() if args.command == "models" else "list", _every_answer)


def _every_answer():
    from garden import registry
    from garden.models.presets import family_presets
    from garden.resolve import experiment_config
    from garden.yaml_files import to_yaml

    registry.load_all()
    shown = {f"show {name}": to_yaml(experiment_config(name)) for name in registry.EXPERIMENTS.names()}
    models = {f"models {family}": _models_table(family) + "\n" for family in family_presets()}
    return {"list": _experiment_table() + "\n", "models": _models_table() + "\n", **models, **shown}


def _first_sentence(docstring):
    """The first sentence of a docstring's first paragraph, its lines joined."""
    paragraph = " ".join(docstring.strip().split("\n\n")[0].split())
    return paragraph.split(". ")[0].rstrip(".")


def cmd_show(args):
    from garden.yaml_files import to_yaml

    print(to_yaml(_config(args)), end="")


def cmd_train(args):
    config = _config(args)
    from garden.train.strategy import resolve_strategy
    from garden.train.trainer import Trainer

    run_dir = args.run_dir or os.path.join("runs", config.task.name)
    strategy = resolve_strategy(config.runtime)
    results = Trainer(config, run_dir, strategy).train()
    if results:
        print(json.dumps({"run_dir": run_dir, **results}))


def cmd_sweep(args):
    from garden.run_folder import FolderLock
    from garden.sweep import Sweep

    sweep_dir = args.sweep_dir or os.path.join("sweeps", args.experiment)
    with FolderLock(sweep_dir, "sweep", flag="--sweep-dir"):
        sweep = Sweep(args.experiment, args.space, sweep_dir, args.config, args.set, args.imports, args.seed)
        sweep.run(args.trials, args.parallel, say=lambda line: print(line, flush=True))
        header, rows, best = sweep.summary()
    print(_table(header, rows))
    print(best)


def _watch_timeout(args):
    """--timeout, else the run's trainer.continuous_eval_timeout (Model Garden's 3600 s before it has a config)."""
    from garden.run import run_config
    from garden.run_folder import RunFolder

    if args.timeout is not None:
        return args.timeout
    started = RunFolder(args.run_dir).started()
    return run_config(args.run_dir).trainer.continuous_eval_timeout if started else 3600


def cmd_eval(args):
    from garden.run import Run

    if args.watch:
        from garden.train.continuous_eval import watch

        if args.checkpoint:
            raise GardenError("--watch evaluates every checkpoint as it comes; leave --checkpoint out")
        watch(args.run_dir, args.split, args.head, timeout=_watch_timeout(args))
        return
    heads = [args.head] if args.head else Run.heads(args.run_dir) or [None]
    results = {head: _evaluate(Run(args.run_dir, head, args.checkpoint), args.split) for head in heads}
    results = results[heads[0]] if len(heads) == 1 else {"split": args.split, "heads": results}
    name = f"eval_{args.split}_{args.head}.json" if args.head else f"eval_{args.split}.json"
    with open(os.path.join(args.run_dir, name), "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results))


def _say_weights(run, to_stdout=False):
    """Names the weights a command uses unless they are the newest, as they were before runs kept a best."""
    if not run.weights.startswith("latest"):
        print(f"weights: {run.weights}", file=sys.stdout if to_stdout else sys.stderr)


def _evaluate(run, split):
    from garden.train.evaluate import evaluate_split

    _say_weights(run)
    return evaluate_split(run, split)


def _reading(run_dir, command):
    """A shared lock on the run folder `run_dir` for `command`: no trainer writes it meanwhile."""
    from garden.run_folder import RunFolder

    return RunFolder(run_dir).lock(command, shared=True)


def cmd_export(args):
    from garden.run_folder import FolderLock, RunFolder

    export_dir = args.out or RunFolder(args.run_dir).export_dir(args.head)
    with _reading(args.run_dir, "export"), FolderLock(export_dir, "export", flag="--out"):
        _export(args, export_dir)


def _export(args, export_dir):
    from garden.export.exporting import Export, ExportOptions
    from garden.run import Run

    run = Run(args.run_dir, args.head, args.checkpoint)
    _say_weights(run, to_stdout=True)
    options = ExportOptions(
        formats=args.format or ["saved_model"],
        quantize=args.quantize or ["none"],
        signature=args.signature,
        max_error=args.max_error,
        max_quality_drop=args.max_quality_drop,
        max_length=args.max_length,
        decode_batch=args.decode_batch,
    )
    export = Export(run, export_dir, options)
    if export.replaced:
        print(export.replaced)
    print(export.reference.legend())
    entries, refused, manifest = export.run(progress=lambda line: print(line, flush=True))
    print(_export_table(export.reference.quality, entries))
    if manifest:
        print(f"manifest: {manifest}")
    if refused:
        raise GardenError("; ".join(refused))


def _export_table(quality, entries):
    """The export's table: a row per artifact (the Keras model first; refused ones too) of what it measured:
    size, latency, a task's `quality` (a fraction) and its drop in points, or a language model's loss (nats
    per token) and its increase and whether its decode step's greedy loop gives the Keras model's text,
    and parity (max |Δ| and its bound)."""
    from garden.export.verify import table_cells

    rows = []
    for name, entry in entries:
        size, latency, parity = table_cells(entry)
        if quality is None:  # a backbone's artifacts: parity alone
            rows.append([name, size, latency, parity, entry["path"]])
        elif quality == "loss":
            loss = f"{entry['loss']:.4f}" if "loss" in entry else ""
            loss += f" ({entry['loss_increase']:+.4f})" if "loss_increase" in entry else ""
            greedy = {True: "same", False: "differs"}.get(entry.get("greedy_matches"), "")
            rows.append([name, size, latency, loss, parity, greedy, entry["path"]])
        else:
            figure = f"{100 * entry[quality]:.2f}%" if quality in entry else ""
            drop = f"{entry[f'{quality}_drop']:+.2f}" if f"{quality}_drop" in entry else ""
            rows.append([name, size, latency, figure, drop, parity, entry["path"]])
    figures = {None: ["parity"], "loss": ["loss", "parity", "greedy"]}.get(quality)
    figures = figures or [quality, "drop (points)", "parity"]
    return _table(["artifact", "size", "latency", *figures, "written to"], rows)


def cmd_distill_static(args):
    from garden.distill.static import distill_static

    start = time.perf_counter()
    summary = distill_static(
        args.teacher,
        args.out,
        pca_dims=args.pca_dims,
        sif_coefficient=args.sif_coefficient,
        pooling=args.pooling,
        vocabulary=args.vocabulary,
        added_words=args.added_words,
        table_dtype=args.dtype,
    )
    print(json.dumps({**summary, "out": args.out, "seconds": round(time.perf_counter() - start, 1)}))


def cmd_distill_logits(args):
    from garden.distill.logits import write_teacher_logits

    start = time.perf_counter()
    with _reading(args.run_dir, "distill logits"):
        summary = write_teacher_logits(
            args.run_dir, args.out, split=args.split, cross_fit=args.cross_fit, augment=args.augment, seed=args.seed
        )
    print(json.dumps({**summary, "out": args.out, "seconds": round(time.perf_counter() - start, 1)}))


def cmd_data_convert(args):
    from garden.data.convert import convert

    start = time.perf_counter()
    summary = convert(args.source, args.out, args.shards, split=args.split, labels_from=args.labels_from)
    print(json.dumps({**summary, "seconds": round(time.perf_counter() - start, 1)}))


def cmd_pull(args):
    from garden.data.checkpoints import pull

    name, folder = pull(args.name, args.to)
    print(json.dumps({"init_checkpoint": name, "folder": folder}))


def cmd_quantize(args):
    from garden.run import Run

    with _reading(args.run_dir, "quantize"):
        run = Run(args.run_dir, args.head, args.checkpoint)
        run.check_quantizable(args.mode, args.out)
        float_metrics = _evaluate(run, args.split)
        before, after = run.quantize(args.mode, args.out)
    quantized = _evaluate(Run(args.out, args.head), args.split)  # as written
    print(
        json.dumps(
            {
                "out": args.out,
                "mode": args.mode,
                "weight_bytes": after,
                "float32_weight_bytes": before,
                "size_ratio": round(after / before, 4),
                args.split: {"float32": float_metrics, args.mode: quantized},
            }
        )
    )


def _sampling_flags():
    """{flag name: default} of `garden generate`'s sampling flags: Sampling's fields and the seed."""
    from garden.generate.sampler import Sampling

    return {**{field.name: field.default for field in dataclasses.fields(Sampling)}, "seed": 0}


def _per_prompt(args, rows):
    """{flag: one value per prompt} of the sampling flags, each given once for all prompts or once per prompt."""
    values = {}
    for name, default in _sampling_flags().items():
        given = getattr(args, name) or [default]
        if len(given) not in (1, rows):
            raise GardenError(
                f"--{name.replace('_', '-')} is given {len(given)} times for {rows} prompts; give it once for all "
                "or once per prompt, in the prompts' order"
            )
        values[name] = given * rows if len(given) == 1 else given
    return values


def cmd_generate(args):
    from garden.generate.generator import Generator
    from garden.generate.sampler import Sampling
    from garden.run import Run

    if args.beams is not None and args.beams < 1:  # 0 sampled at temperature 1 before
        raise GardenError(f"--beams is a width of 1 or more (got {args.beams}); leave it out to sample")
    if args.beams and (any(getattr(args, name) for name in _sampling_flags()) or args.no_cache):
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in _sampling_flags())
        raise GardenError(f"beam search does not sample: leave {flags} and --no-cache out with --beams")
    if args.stream and (args.beams or args.no_cache):
        raise GardenError("--stream runs the cached sampling loop: leave --beams and --no-cache out with it")
    values = _per_prompt(args, len(args.prompt))
    seeds = values.pop("seed")
    samplings = [Sampling(**dict(zip(values, row))) for row in zip(*values.values())]
    run = Run(args.run_dir, checkpoint=args.checkpoint)
    _say_weights(run)
    backbone = run.model.get_layer("backbone")
    if not hasattr(backbone, "decode"):
        raise GardenError(
            f"{args.run_dir} is a {run.config.task.type} run; generate needs a decoder language model (task causal_lm)"
        )
    generator = Generator(backbone, run.task.tokenizer)
    prompts = _chat_prompts(run, args.prompt, generator) if args.chat else args.prompt
    shown = [""] * len(prompts) if args.chat else prompts  # a chat prints the replies alone
    if args.stream or (args.stream is None and len(args.prompt) == 1 and not args.no_cache and not args.beams):
        # each prompt's text as it comes: what the batch gives, since each row samples as if alone
        for index, (prompt, sampling, seed) in enumerate(zip(prompts, samplings, seeds)):
            pieces = generator.stream(prompt, args.max_new_tokens, sampling, seed=seed, stop=args.stop)
            print(("\n" if index else "") + shown[index], end="", flush=True)
            for piece in pieces:
                print(piece, end="", flush=True)
            print()
        return
    texts = generator.generate(
        prompts,
        args.max_new_tokens,
        samplings,
        seed=seeds,
        stop=args.stop,
        cache=not args.no_cache,
        beams=args.beams or 0,
        length_penalty=args.length_penalty,
    )
    print("\n\n".join(prompt + text for prompt, text in zip(shown, texts)))


def _chat_prompts(run, prompts, generator):
    """Each prompt as one user message rendered by the run's chat template, its leading start token
    left to the generator (which reads a pretrained family's start token itself)."""
    from garden.generate.chat import chat_prompt, read_chat_template

    path = getattr(run.task, "tokenizer_files", {}).get("chat_template")
    if not path:
        raise GardenError(
            f"{run.run_dir} has no chat template (its checkpoint folder had none); set "
            "task.model.tokenizer.chat_template to a .jinja file when training, or leave --chat out"
        )
    tokenizer, template = run.task.tokenizer, read_chat_template(path)
    start, end = (
        tokenizer.id_to_token(getattr(tokenizer, name)) if getattr(tokenizer, name, None) is not None else ""
        for name in ("start_token_id", "end_token_id")
    )
    rendered = [chat_prompt(template, [{"role": "user", "content": prompt}], start, end) for prompt in prompts]
    return [text.removeprefix(start) if generator.start_id is not None else text for text in rendered]


def cmd_predict(args):
    from garden.export.predict import format_rows, predict

    print(format_rows(predict(args.artifact, args.input)))


def cmd_serve(args):
    from garden.export.model_config import read_model_config
    from garden.export.serve import Limits, model_name, serve

    names = (
        "max_request_bytes",
        "max_instances",
        "max_batch_size",
        "batch_timeout_ms",
        "max_beams",
        "max_new_tokens",
        "max_generation_bytes",
    )
    limits = Limits(**{n: getattr(args, n) for n in names if getattr(args, n) is not None})
    if args.model_config_file:
        if args.saved_models or args.version_label or args.versions != 1:
            raise GardenError(
                "--model-config-file names the models, their versions and labels; leave [NAME=]PATH, --versions "
                "and --version-label out"
            )
        config = read_model_config(args.model_config_file)
        serve(config.paths, args.host, args.port, limits, args.grpc_port, args.poll_seconds, config.keep, config.labels)
        return
    if not args.saved_models:
        raise GardenError("name the SavedModels to serve ([NAME=]PATH ...) or pass --model-config-file")
    models = {}
    for given in args.saved_models:
        name, _, path = given.rpartition("=") if "=" in given else (model_name(given), "", given)
        if name in models:
            raise GardenError(f"two models are named '{name}'; name them with NAME=PATH")
        models[name] = path
    labels = {}
    for given in args.version_label:
        name, _, label_version = given.partition(":")
        label, _, version = label_version.partition("=")
        if not (name and label and version.isdigit()):
            raise GardenError(f"--version-label takes NAME:LABEL=VERSION, as in digits:stable=1 (got '{given}')")
        labels.setdefault(name, {})[label] = int(version)
    serve(models, args.host, args.port, limits, args.grpc_port, args.poll_seconds, args.versions, labels)


def _positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number above 0 (got '{text}')")
    return int(text)


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0 (got '{text}')")
    return value


def _checkpoint_argument(parser):
    parser.add_argument(
        "--checkpoint",
        metavar="best|latest|STEP",
        help="which weights of the run: the best validation's (the default when the run kept it), the newest, "
        "or those of a step",
    )


def _parser():
    parser = argparse.ArgumentParser(prog="garden", description="A Keras 3 model garden for TensorFlow.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module of yours that registers backbones, heads, datasets or experiments; repeatable",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="also show TensorFlow's and LiteRT's own log lines (hidden by default)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list registered experiments").set_defaults(run=cmd_list)
    for name, function, help_text in (
        ("show", cmd_show, "print an experiment's resolved config as YAML"),
        ("train", cmd_train, "train an experiment (resumes a run folder)"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("experiment", nargs="?", help="experiment name (see 'garden list')")
        sub.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML overrides, repeatable")
        sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, repeatable")
        sub.add_argument(
            "--tiny", action="store_true", help="the experiment's tiny variant: trains in seconds on a CPU (smoke runs)"
        )
        sub.set_defaults(run=function)
        if name == "train":
            sub.add_argument("--run-dir", help="run folder (default runs/EXPERIMENT)")
    sub = commands.add_parser("sweep", help="search hyperparameters with Optuna, one training run per trial")
    sub.add_argument("experiment", help="experiment name (see 'garden list')")
    sub.add_argument("--space", required=True, help="YAML: metric, mode, sampler (tpe|random|grid), params")
    sub.add_argument(
        "--trials", type=int, required=True, help="finished trials to reach (a resumed sweep counts its own)"
    )
    sub.add_argument("--parallel", type=int, default=1, help="trials trained at once")
    sub.add_argument("--sweep-dir", help="the study and the trials' run folders (default sweeps/EXPERIMENT)")
    sub.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML overrides for every trial")
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override for every trial")
    sub.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    sub.set_defaults(run=cmd_sweep)
    sub = commands.add_parser("eval", help="evaluate a run's best or newest checkpoint")
    sub.add_argument("run_dir")
    _checkpoint_argument(sub)
    sub.add_argument("--split", default="validation", choices=["train", "validation", "test"])
    sub.add_argument("--head", help="the sub-task of a multi-task run (default: every head)")
    sub.add_argument(
        "--watch",
        action="store_true",
        help="evaluate each checkpoint as training writes it, until the last (summaries in RUN/summaries/eval_SPLIT)",
    )
    sub.add_argument(
        "--timeout",
        type=float,
        help="--watch: stop after this long without a new checkpoint (s; default trainer.continuous_eval_timeout)",
    )
    sub.set_defaults(run=cmd_eval)
    sub = commands.add_parser("export", help="export a run as SavedModel and/or TFLite, verified against Keras")
    sub.add_argument("run_dir")
    sub.add_argument(
        "--format",
        action="append",
        help="a registered export format (saved_model, tflite, ...); repeatable; default saved_model",
    )
    sub.add_argument(
        "--quantize", action="append", help="TFLite mode: none, dynamic, float16, int8, 16x8; repeatable (default none)"
    )
    sub.add_argument(
        "--signature", default="serving_default", help="the signature TFLite converts (default serving_default)"
    )
    sub.add_argument("--max-error", type=float, help="parity bound on max |Δ| (default per format and mode)")
    sub.add_argument(
        "--max-quality-drop",
        "--max-accuracy-drop",
        type=float,
        default=1.0,
        help="refuse an artifact losing more points of the task's quality (accuracy, Pearson r, ...)",
    )
    sub.add_argument("--out", help="export folder (default RUN_DIR/export, RUN_DIR/export/HEAD for a head)")
    sub.add_argument("--head", help="the sub-task whose head to export, for a multi-task run")
    _checkpoint_argument(sub)
    sub.add_argument(
        "--max-length",
        type=int,
        help="language models: tokens (prompt and new) that the decode step's cache holds "
        "(default 256, or the model's positions when it has fewer, as GPT-2's 1024)",
    )
    sub.add_argument(
        "--decode-batch",
        type=int,
        default=1,
        help="language models: rows the decode step takes at once (more than 1 adds a padding_mask input)",
    )
    sub.set_defaults(run=cmd_export)
    methods = commands.add_parser(
        "distill", help="distill a teacher: static embeddings, or logits for a student"
    ).add_subparsers(dest="method", required=True)
    sub = methods.add_parser("static", help="a teacher encoder's static token embeddings (model2vec)")
    sub.add_argument(
        "--teacher",
        default="minilm",
        help="minilm, or any text encoder's checkpoint: a folder, hf://ORG/NAME, kaggle://..., a KerasHub preset name",
    )
    sub.add_argument("--pca-dims", type=int, default=256)
    sub.add_argument("--sif-coefficient", type=float, default=1e-4)
    sub.add_argument("--pooling", default="mean", help="mean (model2vec's), first or last of the teacher's outputs")
    sub.add_argument("--vocabulary", help="a text file whose words the vocabulary lacks are added as tokens")
    sub.add_argument("--added-words", type=int, default=10_000, help="at most this many words added (most frequent)")
    sub.add_argument("--dtype", default="float32", help="the table's storage: float32, float16 or int8 (row scales)")
    sub.add_argument("--out", required=True, help="folder for embeddings.npy, vocab.txt and static.json")
    sub.set_defaults(run=cmd_distill_static)
    sub = methods.add_parser("logits", help="a trained run's logits on its training data, for the distillation loss")
    sub.add_argument("run_dir", help="the teacher's run folder")
    sub.add_argument("--out", required=True, help=".npz file to set as task.train_data.teacher_logits")
    sub.add_argument("--split", help="another split of the teacher's training dataset (default its train_data split)")
    sub.add_argument(
        "--cross-fit",
        type=int,
        default=0,
        metavar="N",
        help="train N teachers of the run's config, each without one N-th of the examples, and give each "
        "example the logits of the teacher that did not see it (runs in RUN_DIR/cross_fit)",
    )
    sub.add_argument(
        "--augment",
        type=int,
        default=0,
        metavar="N",
        help="text: also label N perturbed copies of every example (words dropped, runs cropped), a transfer "
        "set stored in the file that the student trains on with the originals",
    )
    sub.add_argument("--seed", type=int, default=0, help="seed of the --augment perturbations")
    sub.set_defaults(run=cmd_distill_logits)
    data = commands.add_parser("data", help="prepare data: convert to sharded TFRecord files").add_subparsers(
        dest="action", required=True
    )
    sub = data.add_parser("convert", help="a catalog set, an image folder, text or image files -> TFRecord shards")
    sub.add_argument(
        "source",
        help="a catalog dataset (mnist, reuters_r8), a folder of class subfolders, .tsv/.csv/.jsonl text files "
        "(columns sentence, label, optional sentence2), or image TFRecord files; globs and comma lists work",
    )
    sub.add_argument("--out", required=True, help="shard names with one '*' for the number: 'out/train-*.tfrecord'")
    sub.add_argument("--shards", type=int, default=1)
    sub.add_argument("--split", default="", help="a catalog dataset's split (default train)")
    sub.add_argument(
        "--labels-from",
        default="",
        metavar="TRAINING_DATA",
        help="convert a split with the class ids of its training data (a folder or shards), so a class it lacks "
        "shifts no id",
    )
    sub.set_defaults(run=cmd_data_convert)
    sub = commands.add_parser("models", help="the KerasHub presets each backbone family can start from")
    sub.add_argument("family", nargs="?", default="", help="one backbone family (bert, llama, resnet_v1, ...)")
    sub.set_defaults(run=cmd_models)
    sub = commands.add_parser("pull", help="fetch a hub checkpoint into its cache (or a folder) ahead of training")
    sub.add_argument("name", help="hf://ORG/NAME[@REV], kaggle://OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION], a preset")
    sub.add_argument("--to", default="", help="a new folder to copy it into, for a machine with no network")
    sub.set_defaults(run=cmd_pull)
    sub = commands.add_parser(
        "quantize", help="write a run's weights quantized (weight-only int8 or int4) as a new run folder"
    )
    sub.add_argument("run_dir")
    _checkpoint_argument(sub)
    sub.add_argument("--mode", required=True, choices=["int8", "int4"])
    sub.add_argument("--out", required=True, help="the new run folder (eval, generate, export and serve read it)")
    sub.add_argument("--split", default="validation", choices=["train", "validation", "test"], help="judged on")
    sub.add_argument("--head", help="the sub-task of a multi-task run")
    sub.set_defaults(run=cmd_quantize)
    sub = commands.add_parser("generate", help="continue prompts with a trained decoder language model")
    sub.add_argument("run_dir")
    _checkpoint_argument(sub)
    sub.add_argument(
        "--prompt", action="append", required=True, help="repeatable: prompts of any lengths run as one batch"
    )
    sub.add_argument("--max-new-tokens", type=int, default=200)
    each = "; once for all prompts or once per prompt"
    sub.add_argument("--temperature", type=float, action="append", help="0 is greedy decoding (default 1)" + each)
    sub.add_argument("--top-k", type=int, action="append", help="sample from the k likeliest tokens (0: all)" + each)
    sub.add_argument(
        "--top-p", type=float, action="append", help="sample from the fewest tokens holding this probability" + each
    )
    sub.add_argument(
        "--repetition-penalty",
        type=float,
        action="append",
        help="divide the logits of tokens already seen by this (1: off; 1.2 is common)" + each,
    )
    sub.add_argument("--seed", type=int, action="append", help="the same seed gives the same text" + each)
    sub.add_argument(
        "--stop", action="append", default=[], help="repeatable: a one-token string that ends a continuation"
    )
    sub.add_argument(
        "--no-cache", action="store_true", help="recompute the whole prefix each step (the key/value cache's reference)"
    )
    sub.add_argument(
        "--chat",
        action="store_true",
        help="each prompt is a user message, rendered by the checkpoint's chat template; print the replies",
    )
    sub.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        help="print each prompt's text as its tokens come (the default for one prompt)",
    )
    sub.add_argument("--beams", type=int, help="beam search of this width in place of sampling (1: greedy)")
    sub.add_argument(
        "--length-penalty",
        type=float,
        default=1.0,
        help="beam search ranks its beams by log-probability / length ** this (0: by log-probability alone)",
    )
    sub.set_defaults(run=cmd_generate)
    sub = commands.add_parser("predict", help="run a SavedModel or TFLite artifact on a .npy array or an image")
    sub.add_argument("artifact")
    sub.add_argument("input")
    sub.set_defaults(run=cmd_predict)
    sub = commands.add_parser("serve", help="serve SavedModels with TF Serving's REST and gRPC APIs")
    sub.add_argument(
        "saved_models",
        nargs="*",
        metavar="[NAME=]PATH",
        help="a SavedModel or export folder, or a base path of numbered versions (PATH/1, PATH/2: the newest is "
        "served, new ones are loaded as they appear); NAME defaults to the manifest's experiment",
    )
    sub.add_argument(
        "--model-config-file",
        help="TF Serving's model config file (a ModelServerConfig text proto) in place of [NAME=]PATH ...",
    )
    sub.add_argument("--host", default="127.0.0.1")
    sub.add_argument("--port", type=int, default=8501, help="REST port (TF Serving's default, 8501)")
    sub.add_argument("--grpc-port", type=int, help="also serve TF Serving's gRPC API here (its default is 8500)")
    sub.add_argument(
        "--poll-seconds", type=_positive_float, default=1.0, help="how often base paths are polled for new versions"
    )
    sub.add_argument(
        "--versions", type=_positive_int, default=1, help="how many of a base path's newest versions to serve (1)"
    )
    sub.add_argument(
        "--version-label",
        action="append",
        default=[],
        metavar="NAME:LABEL=VERSION",
        help="name a version, as TF Serving's version_labels (/labels/LABEL, gRPC version_label)",
    )
    sub.add_argument("--max-batch-size", type=int, help="rows per batched model call (default 64)")
    sub.add_argument("--batch-timeout-ms", type=float, help="how long a batch waits for more requests (default 5)")
    sub.add_argument("--max-instances", type=int, help="instances per request (default 1024)")
    sub.add_argument("--max-request-bytes", type=int, help="request body size (default 10 MiB)")
    sub.add_argument("--max-beams", type=_positive_int, help="a language model's beam_search width (default 16)")
    sub.add_argument(
        "--max-new-tokens",
        type=_positive_int,
        help="a language model's max_new_tokens per request, sampled, searched or streamed (default 1024)",
    )
    sub.add_argument(
        "--max-generation-bytes",
        type=_positive_int,
        help="memory that the generations running at once may hold (default 1 GiB), each estimated as 5 x its "
        "key/value cache (rows x beams x (prompt + new tokens) x the decode step's bytes per position) and logits; "
        "one that can never fit gets 400, one that must wait 429",
    )
    sub.set_defaults(run=cmd_serve)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, so its `with` blocks and `finally`s clean up (staging
    folders, locks) as for Ctrl-C; the trainer and a sweep handle SIGTERM themselves while they run.
    `received` stays set: where TensorFlow ran the Python code the signal came in (a py_function),
    it turns the exception into its own error, which then still reads as the stop it is."""

    received = False


def _terminate(signum, frame):
    Terminated.received = True
    raise Terminated()


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.verbose:
        os.environ["GARDEN_VERBOSE"] = "1"
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main_thread else None
    Terminated.received = False
    from garden.native_output import filtered_stderr

    try:
        with filtered_stderr():
            return _main(args)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _main(args):
    try:
        cached = _cached_answer(args)
        if cached is not None:
            print(cached, end="")
            return 0
        if args.command != "serve" or args.imports:  # the server reads SavedModels: no registry to fill
            from garden import registry

            registry.load_all(args.imports)
        args.run(args)
    except Stopped as stopped:
        print(f"garden: {stopped}", file=sys.stderr)
        return stopped.exit_code
    except KeyboardInterrupt as interrupt:
        return _interrupted(args, interrupt)
    except Exception as error:
        if Terminated.received:  # an error the signal caused, in whatever form it came
            return _interrupted(args, Terminated())
        if not isinstance(error, GardenError):
            raise
        print(f"garden: error: {error}", file=sys.stderr)
        return 2
    return 0


def _interrupted(args, interrupt: KeyboardInterrupt) -> int:
    """One line for a command stopped by Ctrl-C or SIGTERM (with how to resume a run); its exit code."""
    hint = ""
    if args.command == "train":
        from garden.run_folder import RunFolder

        folder = RunFolder(args.run_dir or os.path.join("runs", args.experiment or "EXPERIMENT"))
        if folder.started():
            hint = f"; resume from the newest checkpoint with '{folder.resume_command()}'"
    stopped = "stopped by SIGTERM" if isinstance(interrupt, Terminated) else "interrupted"
    print(f"garden: {stopped}{hint}", file=sys.stderr)
    return 143 if isinstance(interrupt, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
