"""Many-to-one through the pipeline: a spec with ``task = "classify"`` trains on labelled texts
with the language model's Trainer (checkpoints, the best by macro-F1, exact resume), predicts,
saves and loads; and each task refuses the other's methods by name."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from charseq import Pipeline, PipelineSpec
from charseq.checkpoint import CheckpointError
from charseq.classify.baseline import NgramBaseline
from charseq.classify.data import Labelled
from charseq.errors import CharseqError, SpecError
from charseq.registry import get_registry
from tests._helpers import SMALL, TEXT


def brackets(n: int = 400, seed: int = 0) -> Labelled:
    """Does the text hold more '(' than ')'? Texts of 4-14 of '(', ')' and 'x'."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        text = "".join(rng.choice("()x") for _ in range(rng.randint(4, 14)))
        texts.append(text)
        labels.append("more (" if text.count("(") > text.count(")") else "not more (")
    return Labelled(tuple(texts), tuple(labels), tuple(f"brackets:{i + 1}" for i in range(n)))


DATA = brackets()


def spec(**train):
    return {
        "task": "classify",
        "cell": {"name": "gru", "hidden_size": 24, "num_layers": 1},
        "model": {"embedding_size": 8},
        "optimizer": {"name": "adam", "lr": 0.02},
        "train": {"steps": 150, "batch_size": 32, "eval_every": 50, "val_fraction": 0.2,
                  "test_fraction": 0.0, **train},
    }  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("classify") / "run"
    return Pipeline.from_spec(spec(), device="cpu").fit(data=DATA, out=out), out


def test_a_classifier_learns_the_task_beside_the_ngram_baseline(run):
    pipe, out = run
    result = pipe.last_run
    assert result.best_metric == "val_macro_f1" and result.best_val_bpc is None
    assert result.best >= 0.9
    val = [i for i in range(len(DATA)) if i % 5 == 0]  # any held-out texts will do
    predictions = pipe.predict([DATA.texts[i] for i in val])
    accuracy = np.mean([p.label == DATA.labels[i] for p, i in zip(predictions, val, strict=True)])
    # a bag of n-grams cannot count: it sees which brackets occur, not how many of each
    ids = DATA.label_ids()
    baseline = NgramBaseline(seed=0).fit(DATA.texts[:300], ids[:300], 2)
    ngram = np.mean(baseline.predict(DATA.texts[300:]) == ids[300:])
    assert accuracy >= 0.9 and accuracy > ngram, (accuracy, ngram)


def test_predictions_rank_the_classes_and_survive_save_and_load(run, tmp_path):
    pipe, out = run
    one = pipe.predict("((((x", top=2)
    assert one.label == "more (" and one.top[0] == (one.label, one.probability)
    assert [c for c, _ in one.top] == ["more (", "not more ("] and one.probability > 0.5
    assert sum(p for _, p in one.top) == pytest.approx(1.0, abs=1e-5)
    loaded = Pipeline.load(out / "best")
    assert loaded.classes == ("more (", "not more (") and loaded.spec.task.name == "classify"
    assert loaded.predict("((((x", top=2) == one
    pipe.save(tmp_path / "saved")
    assert Pipeline.load(tmp_path / "saved").predict(["))x", "(("]) == pipe.predict(["))x", "(("])


def test_the_best_checkpoint_is_the_highest_macro_f1(run):
    pipe, out = run
    import json

    evals = [
        json.loads(line)
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if '"eval"' in line
    ]
    assert [e["step"] for e in evals] == [50, 100, 150]
    best = max(e["val_macro_f1"] for e in evals)
    assert evals[-1]["best_val_macro_f1"] == best == pipe.last_run.best
    manifest = json.loads((out / "best" / "manifest.json").read_text())
    assert manifest["metrics"] == {"best_val_macro_f1": best}


def test_resume_continues_exactly(tmp_path):
    straight = Pipeline.from_spec(spec(steps=60, eval_every=30), device="cpu")
    straight.fit(data=DATA, out=tmp_path / "a")
    half = Pipeline.from_spec(spec(steps=30, eval_every=30), device="cpu")
    half.fit(data=DATA, out=tmp_path / "b")
    resumed = Pipeline.resume(tmp_path / "b", data=DATA, steps=60)
    assert resumed.steps_trained == 60
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    with pytest.raises(CheckpointError, match="not what .* was trained on"):
        Pipeline.resume(tmp_path / "b", data=brackets(seed=1), steps=90)
    with pytest.raises(CharseqError, match="resume it with the labelled data"):
        Pipeline.resume(tmp_path / "b", steps=90)


@pytest.mark.parametrize("cell", get_registry().names("cell"))
@pytest.mark.parametrize(
    "options",
    [{"pooling": "mean"}, {"pooling": "max", "class_weights": "balanced", "metric": "loss"}],
)
def test_every_cell_and_head_option_trains(cell, options):
    data = {
        **spec(steps=4, eval_every=2),
        "cell": {"name": cell, "hidden_size": 8, "num_layers": 2},
    }
    data["task"] = {"name": "classify", **options}
    pipe = Pipeline.from_spec(data, device="cpu").fit(data=DATA)
    assert pipe.last_run.step == 4 and pipe.last_run.best is not None
    assert pipe.last_run.best_metric == ("val_loss" if "metric" in options else "val_macro_f1")
    assert pipe.predict("(x").label in DATA.classes


def test_each_task_refuses_the_others_methods_by_name(run):
    pipe, _ = run
    with pytest.raises(CharseqError, match=r"is a classifier \(task 'classify'\).*predict"):
        pipe.generate("((", 5)
    with pytest.raises(CharseqError, match=r"is a classifier"):
        pipe.score("((x")
    lm = Pipeline.from_spec(SMALL, device="cpu").fit(TEXT)
    refused = r"predict is for a classifier \(task 'classify'\), and this pipeline is a lang"
    with pytest.raises(CharseqError, match=refused):
        lm.predict("the cat")
    with pytest.raises(CharseqError, match=r"fit\(data=...\) is for a classifier"):
        Pipeline.from_spec(SMALL, device="cpu").fit(data=DATA)
    with pytest.raises(CharseqError, match="trains on labelled texts"):
        Pipeline.from_spec(spec(), device="cpu").fit("(x)")
    with pytest.raises(SpecError, match="task.pooling: applies to task 'classify' only"):
        PipelineSpec.from_dict({"task": {"pooling": "max"}})
    with pytest.raises(CharseqError, match="the data's classes .* are not the model's"):
        other = Labelled(("((", "))", "(x", "x)"), ("a", "b", "a", "b"), ("m:1",) * 4)
        pipe.fit(data=other, steps=pipe.steps_trained + 1)
    with pytest.raises(CharseqError, match="non-empty texts"):
        pipe.predict(["(", ""])


@pytest.mark.parametrize("freeze", [True, False])
def test_a_classifier_starts_from_a_language_models_embedding_and_cells(tmp_path, freeze):
    text = "".join(DATA.texts) * 3
    lm_spec = {"cell": {"name": "gru", "hidden_size": 16, "num_layers": 1},
               "model": {"embedding_size": 6}, "train": {"steps": 20, "batch_size": 4}}  # fmt: skip
    lm = Pipeline.from_spec(lm_spec, device="cpu").fit(text, out=tmp_path / "lm")
    data = spec(steps=5, eval_every=5)
    data["task"] = {"name": "classify", "freeze_cells": freeze}
    pipe = Pipeline.from_spec(data, device="cpu").fit(data=DATA, init_from=tmp_path / "lm")
    assert pipe.spec.cell == lm.spec.cell and pipe.spec.model == lm.spec.model
    assert pipe.tokenizer.state_dict() == lm.tokenizer.state_dict()
    cells, trained = lm.model.stack.state_dict(), pipe.model.stack.state_dict()
    same = all(torch.equal(cells[k], trained[k]) for k in cells)
    assert same == freeze  # frozen: as the language model left them; else fine-tuned
    assert all(torch.allclose(cells[k], trained[k], atol=0.2) for k in cells)
    loaded = Pipeline.load(pipe.save(tmp_path / "saved"))
    assert all(not p.requires_grad for p in loaded.model.stack.parameters()) == freeze
    with pytest.raises(CharseqError, match="is a classifier .* starts from a language model"):
        Pipeline.from_spec(spec(steps=2), device="cpu").fit(data=DATA, init_from=tmp_path / "saved")


def test_early_stopping_follows_the_tasks_metric():
    data = spec(steps=100, eval_every=5, patience=2)
    data["optimizer"] = {"name": "adam", "lr": 1e-9}  # nothing improves after the first
    pipe = Pipeline.from_spec(data, device="cpu").fit(data=DATA)
    assert pipe.last_run.reason == "early stopping" and pipe.last_run.step == 15
