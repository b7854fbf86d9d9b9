"""Logit distillation: the loss by hand, the teacher-logits file and its guard, and a student whose
first training loss is the distillation loss of its own outputs against the teacher's file."""

import json
import shutil

import numpy as np
import pytest
import yaml
from conftest import TINY_TEXT, garden

from garden.data import soft_targets
from garden.data.examples import Examples
from garden.data.pipeline import eval_dataset
from garden.distill.augment import augmented_copies
from garden.distill.logits import write_teacher_logits
from garden.errors import GardenError
from garden.losses import distillation
from garden.run import Run


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def distillation_by_hand(labels, student, teacher, temperature, alpha):
    teacher_p = np.exp(log_softmax(teacher / temperature))
    kl = (teacher_p * (log_softmax(teacher / temperature) - log_softmax(student / temperature))).sum(-1)
    cross_entropy = -log_softmax(student)[np.arange(len(labels)), labels]
    return alpha * cross_entropy + (1 - alpha) * temperature**2 * kl


def test_distillation_loss_matches_a_hand_computation():
    # two examples, three classes: p_t = softmax([2, 0, 0] / 2) = (0.576, 0.212, 0.212); the student is uniform
    student, teacher, labels = (
        np.array([[0.0, 0.0, 0.0], [1.0, -1.0, 0.5]]),
        np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]),
        np.array([0, 2]),
    )
    p = np.exp(1.0) / (np.exp(1.0) + 2)
    first_kl = p * np.log(3 * p) + (1 - p) * np.log(3 * (1 - p) / 2)  # KL(p_t || uniform)
    first = 0.25 * np.log(3) + 0.75 * 4 * first_kl
    loss = np.asarray(distillation(temperature=2.0, alpha=0.25)({"labels": labels, "teacher_logits": teacher}, student))
    assert loss[0] == pytest.approx(first, rel=1e-5)
    np.testing.assert_allclose(loss, distillation_by_hand(labels, student, teacher, 2.0, 0.25), rtol=1e-5)
    labels_only = distillation(alpha=1.0)({"labels": labels, "teacher_logits": teacher}, student)
    np.testing.assert_allclose(labels_only, -log_softmax(student)[[0, 1], labels], rtol=1e-5)
    same = distillation(alpha=0.0)({"labels": labels, "teacher_logits": student}, student)
    np.testing.assert_allclose(same, 0.0, atol=1e-6)  # a student equal to its teacher costs nothing
    with pytest.raises(GardenError, match="temperature > 0"):
        distillation(temperature=0.0)


def test_teacher_logits_only_attach_to_the_examples_they_were_written_for(tmp_path):
    examples = Examples({"text": np.array(["a b", "c", "d e f"], object)}, np.array([0, 1, 1]), ["x", "y"])
    logits = np.arange(6, dtype=np.float32).reshape(3, 2)
    path = str(tmp_path / "teacher.npz")
    soft_targets.save(path, logits, examples)
    attached = soft_targets.attach(examples, path)
    np.testing.assert_array_equal(attached.features["teacher_logits"], logits)
    np.testing.assert_array_equal(attached.take(2).features["teacher_logits"], logits[[0, 1]])
    reordered = Examples({"text": examples.features["text"][[1, 0, 2]]}, examples.labels[[1, 0, 2]], ["x", "y"])
    with pytest.raises(GardenError, match="logits of other examples"):
        soft_targets.attach(reordered, path)
    with pytest.raises(GardenError, match="differ from the training data"):
        soft_targets.attach(Examples(examples.features, examples.labels, ["y", "x"]), path)
    with pytest.raises(GardenError, match="garden distill logits"):
        soft_targets.attach(examples, str(tmp_path / "missing.npz"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher.npz"]  # written in one rename


def test_a_student_trains_on_the_teacher_logits_in_the_order_of_its_batches(text_run, tmp_path):
    logits_path = tmp_path / "teacher.npz"
    summary = json.loads(garden("distill", "logits", text_run, "--out", logits_path).stdout.splitlines()[-1])
    teacher = Run(str(text_run))
    examples = teacher.task.load(teacher.config.task.train_data, teacher.label_names)
    expected = np.concatenate(
        [
            teacher.model(f, training=False)["logits"].numpy()
            for f, _ in eval_dataset(examples, 256, teacher.task.prepare)
        ]
    )
    with np.load(logits_path) as stored:
        np.testing.assert_allclose(stored["logits"], expected, atol=1e-4)
    assert summary["examples"] == len(examples) == 1024
    assert summary["teacher_accuracy"] == pytest.approx(np.mean(expected.argmax(-1) == examples.labels), abs=1e-4)

    assert_first_student_loss_is_the_mean_over(examples, expected, logits_path, tmp_path / "student")


def assert_first_student_loss_is_the_mean_over(examples, teacher_logits, logits_path, student):
    """One full-batch step at learning rate 0, no dropout: the reported loss is the mean distillation
    loss of the initial student over all `examples`, whatever order the shuffle gave them."""
    overrides = [s for s in TINY_TEXT if not s.startswith("trainer")] + [
        f"task.train_data.global_batch_size={len(examples)}",
        "trainer.train_steps=1",
        "trainer.steps_per_loop=1",
        "trainer.checkpoint_interval=1",
        "trainer.validation_interval=1",
        "trainer.optimizer_config.learning_rate.polynomial.initial_learning_rate=0.0",
        "task.model.backbone.params.dropout=0.0",
        "task.model.head.params.dropout=0.0",
        f"task.train_data.teacher_logits={logits_path}",
        "task.loss.params.temperature=3.0",
    ]
    garden("train", "r8_student_kd", *[a for s in overrides for a in ("--set", s)], "--run-dir", student)
    first_loss = next(json.loads(line)["loss"] for line in open(student / "metrics.jsonl") if '"train"' in line)
    initial = Run(str(student))
    outputs = np.concatenate(
        [
            initial.model(f, training=False)["logits"].numpy()
            for f, _ in eval_dataset(examples, 256, initial.task.prepare)
        ]
    )
    assert first_loss == pytest.approx(
        distillation_by_hand(examples.labels, outputs, teacher_logits, 3.0, 0.5).mean(), rel=1e-3
    )


def test_a_student_stops_before_training_on_mismatched_or_missing_teacher_logits(text_run, tmp_path):
    logits_path = tmp_path / "teacher.npz"
    garden("distill", "logits", text_run, "--out", logits_path, "--split", "validation")
    run_dir = tmp_path / "student"
    base = ["task.model.backbone.params.num_layers=1", "task.train_data.num_examples=1024"]
    wrong = garden(
        "train",
        "r8_student_kd",
        *[a for s in base + [f"task.train_data.teacher_logits={logits_path}"] for a in ("--set", s)],
        "--run-dir",
        run_dir,
        check=False,
    )
    assert wrong.returncode != 0 and "logits of other examples" in wrong.stderr and "Traceback" not in wrong.stderr
    missing = garden(
        "train", "r8_student_kd", "--set", "task.train_data.teacher_logits=", "--run-dir", run_dir, check=False
    )
    assert missing.returncode != 0 and "go together" in missing.stderr.splitlines()[-1]
    assert not (run_dir / "checkpoints").exists()


def test_examples_split_into_folds_and_their_complements():
    examples = Examples({"text": np.array(list("abcdefg"), object)}, np.arange(7), ["x"])
    assert list(examples.fold("1/3").features["text"]) == ["b", "e"]
    assert list(examples.fold("~1/3").features["text"]) == ["a", "c", "d", "f", "g"]
    assert examples.fold("") is examples
    with pytest.raises(GardenError, match="fold '3/3' is not K/N or ~K/N"):
        examples.fold("3/3")


def test_cross_fitted_logits_come_from_teachers_that_did_not_see_the_examples(text_run, tmp_path):
    run_dir = tmp_path / "teacher"
    shutil.copytree(text_run, run_dir)  # the fold teachers train inside the run folder
    in_sample, cross_fitted = tmp_path / "in_sample.npz", tmp_path / "cross_fitted.npz"
    garden("distill", "logits", run_dir, "--out", in_sample)
    shutil.rmtree(run_dir / "checkpoints")  # cross-fitting needs only the config
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["trainer"]["train_steps"] = 40  # the fold teachers train shorter than the run
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    summary = json.loads(
        garden("distill", "logits", run_dir, "--out", cross_fitted, "--cross-fit", "2").stdout.splitlines()[-1]
    )
    assert summary["cross_fit"] == 2 and summary["examples"] == 1024
    teacher = Run(str(text_run))
    examples = teacher.task.load(teacher.config.task.train_data, teacher.label_names)
    stored = np.load(cross_fitted)["logits"]
    for k in range(2):
        fold_teacher = Run(str(run_dir / "cross_fit" / f"{k}-of-2"))
        assert fold_teacher.config.task.train_data.fold == f"~{k}/2" and fold_teacher.step == 40
        held_out = examples.fold(f"{k}/2")
        expected = np.concatenate(
            [
                fold_teacher.model(f, training=False)["logits"].numpy()
                for f, _ in eval_dataset(held_out, 256, fold_teacher.task.prepare)
            ]
        )
        np.testing.assert_allclose(stored[k::2], expected, atol=1e-4)
    soft_targets.attach(examples, str(cross_fitted))  # the file serves the student's full training split
    top = [np.mean(np.max(np.exp(log_softmax(np.load(path)["logits"])), axis=-1)) for path in (in_sample, cross_fitted)]
    assert top[1] < top[0]  # the teachers are less sure of text they never saw: the point of cross-fitting


def test_augmented_copies_are_ordered_subsets_of_their_source_words_with_its_label():
    words = [f"w{i}" for i in range(100)]
    examples = Examples({"text": np.array([" ".join(words), "lone"], object)}, np.array([3, 1]), ["a", "b", "c", "d"])
    copies = augmented_copies(examples, 200, seed=7)
    assert len(copies) == 400 and list(copies.labels[:4]) == [3, 1, 3, 1]
    kept = []
    for text in copies.features["text"][0::2]:
        positions = [words.index(word) for word in text.split()]
        assert positions == sorted(set(positions))  # words keep their order, none repeated or invented
        kept.append(len(positions) / 100)
    assert set(copies.features["text"][1::2]) == {"lone"}  # a one-word text keeps its word
    # each word survives with 0.9; a quarter of the copies keep a run of 1/4 to all of those (5/8 on average)
    assert 0.78 < np.mean(kept) < 0.86 and 0.15 < np.mean(np.array(kept) < 0.8) < 0.3
    assert list(augmented_copies(examples, 3, seed=7).features["text"]) == list(copies.features["text"][:6])
    assert list(augmented_copies(examples, 3, seed=8).features["text"]) != list(copies.features["text"][:6])
    with pytest.raises(GardenError, match="--augment perturbs text"):
        augmented_copies(Examples({"image": np.zeros((2, 3))}, np.array([0, 1]), ["a", "b"]), 1)


def test_an_augmented_transfer_set_travels_in_the_logits_file_and_trains_the_student(text_run, tmp_path):
    logits_path = tmp_path / "teacher.npz"
    summary = json.loads(
        garden("distill", "logits", text_run, "--out", logits_path, "--augment", "2").stdout.splitlines()[-1]
    )
    assert (
        summary["examples"] == 1024
        and summary["transfer_examples"] == 2048
        and 0.3 < summary["transfer_agreement"] <= 1
    )
    teacher = Run(str(text_run))
    examples = teacher.task.load(teacher.config.task.train_data, teacher.label_names)
    attached = soft_targets.attach(examples, str(logits_path))
    assert len(attached) == 3072 and list(attached.features["text"][:1024]) == list(examples.features["text"])
    copies = attached._select(np.arange(1024, 3072))
    np.testing.assert_array_equal(copies.labels, np.tile(examples.labels, 2))
    assert np.mean(copies.features["text"] != np.tile(examples.features["text"], 2)) > 0.9  # perturbed, not repeated
    transfer = Examples({"text": copies.features["text"]}, copies.labels, examples.label_names)
    expected = np.concatenate(
        [
            teacher.model(f, training=False)["logits"].numpy()
            for f, _ in eval_dataset(transfer, 256, teacher.task.prepare)
        ]
    )
    np.testing.assert_allclose(
        copies.features["teacher_logits"], expected, atol=1e-4
    )  # the teacher's logits of the stored copies
    every = Examples({"text": attached.features["text"]}, attached.labels, examples.label_names)
    assert_first_student_loss_is_the_mean_over(
        every, attached.features["teacher_logits"], logits_path, tmp_path / "student"
    )
    with pytest.raises(GardenError, match="without --cross-fit"):
        write_teacher_logits(str(text_run), str(tmp_path / "both.npz"), cross_fit=2, augment=1)
    assert not (tmp_path / "both.npz").exists()
