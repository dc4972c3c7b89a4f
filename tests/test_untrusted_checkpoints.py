"""Checkpoints from someone else: nothing in one may make charseq read outside its run, build
a model its weights do not hold, follow a link out of its directory, or fail with anything but a
CheckpointError naming the file and the field."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from click.testing import CliRunner

from charseq import Pipeline
from charseq.checkpoint import CheckpointError, resolve_checkpoint
from charseq.cli import cli
from charseq.evaluate import evaluate_checkpoint

TEXT = "".join(f"line {i}: the quick brown fox {i % 7} jumps. " for i in range(200))
SECRET = "S3CRET-ÆØÅ-§§-password: hunter2\n"  # characters the run's vocabulary lacks
SPEC = {
    "cell": {"name": "lstm", "hidden_size": 16, "num_layers": 2},
    "model": {"embedding_size": 8},
    "train": {"batch_size": 4, "seq_len": 16, "eval_every": 4, "steps": 4},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small run trained from a file, as `charseq train --data corpus.txt --out run` does."""
    root = tmp_path_factory.mktemp("trained")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT, "utf-8")
    Pipeline.from_spec(SPEC, device="cpu").fit(files=corpus, out=root / "run")
    return root


@pytest.fixture
def run(trained, tmp_path):
    """A private copy of the run, recording a private copy of its corpus."""
    shutil.copy(trained / "corpus.txt", tmp_path / "corpus.txt")
    shutil.copytree(trained / "run", tmp_path / "run")
    set_sources(tmp_path / "run", [str(tmp_path / "corpus.txt")])
    return tmp_path / "run"


def latest(run: Path) -> Path:
    return resolve_checkpoint(run)


def edit_manifest(checkpoint: Path, change) -> None:
    path = checkpoint / "manifest.json"
    manifest = json.loads(path.read_text("utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest), "utf-8")


def replace_tensors(checkpoint: Path, name: str, tensors: dict[str, torch.Tensor]) -> None:
    """Write ``<name>.safetensors`` anew, with a manifest entry that matches it."""
    path = checkpoint / f"{name}.safetensors"
    safetensors.torch.save_file(tensors, path)
    data = path.read_bytes()

    def change(manifest):
        for entry in manifest["files"]:
            if entry["name"] == path.name:
                entry["bytes"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()

    edit_manifest(checkpoint, change)


def set_sources(run: Path, sources: list[str]) -> None:
    for checkpoint in [run / "best", *run.glob("step-*")]:
        edit_manifest(checkpoint, lambda m: m["corpus"].__setitem__("sources", sources))


# -- corpus paths recorded in a manifest ----------------------------------------------------------


def test_the_runs_own_cache_is_used_and_its_sources_are_not_read(run, tmp_path):
    (tmp_path / "corpus.txt").unlink()  # the recorded source is gone: the cache is the corpus
    scores = evaluate_checkpoint(run, device="cpu")
    assert scores["tokens"] > 0
    resumed = Pipeline.resume(run, steps=6, device="cpu")
    assert resumed.last_run.step == 6


def test_recorded_sources_outside_the_run_are_never_read(run, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET, "utf-8")
    set_sources(run, [str(secret)])
    shutil.rmtree(run / "cache")
    for attempt in (
        lambda: evaluate_checkpoint(run, device="cpu"),
        lambda: Pipeline.resume(run, steps=6, device="cpu"),
    ):
        with pytest.raises(CheckpointError) as caught:
            attempt()
        message = str(caught.value)
        assert f"files={[str(secret)]!r}" in message and "--data" not in message
        assert "hunter2" not in message and "Æ" not in message and "§" not in message


def test_a_recorded_root_is_not_walked(run):
    set_sources(run, ["/"])
    shutil.rmtree(run / "cache")
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="recorded in its manifest"):
        evaluate_checkpoint(run, device="cpu")
    assert time.perf_counter() - started < 5


def test_a_cache_that_is_a_link_out_of_the_run_is_not_used(run, tmp_path):
    shutil.move(run / "cache", tmp_path / "elsewhere")
    (run / "cache").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CheckpointError, match="files="):
        evaluate_checkpoint(run, device="cpu")


def test_without_a_cache_the_user_passes_the_data(run, tmp_path):
    shutil.rmtree(run / "cache")
    corpus = tmp_path / "corpus.txt"
    with pytest.raises(CheckpointError, match=f"files=\\['{corpus}'\\]"):
        Pipeline.resume(run, steps=6, device="cpu")
    assert Pipeline.resume(run, files=corpus, steps=6, device="cpu").last_run.step == 6
    assert evaluate_checkpoint(run, files=[corpus], split="test", device="cpu")["tokens"] > 0


def test_the_cli_says_which_data_to_pass(run, tmp_path, monkeypatch):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET, "utf-8")
    set_sources(run, [str(secret)])
    shutil.rmtree(run / "cache")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["eval", str(run), "--device", "cpu"])
    assert result.exit_code == 1
    assert f"--data {secret}" in result.output and "hunter2" not in result.output
    result = CliRunner().invoke(cli, ["train", "--resume", str(run), "--no-progress"])
    assert result.exit_code == 1
    assert f"--data {secret}" in result.output and "hunter2" not in result.output


def test_a_tampered_cache_with_ids_outside_the_vocabulary_is_refused(run):
    [ids] = (run / "cache").glob("*.ids")
    data = bytearray(ids.read_bytes())
    data[0] = 255  # the char tokenizer's vocabulary here is far smaller
    ids.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="outside"):
        evaluate_checkpoint(run, device="cpu")


# -- the model a spec implies against the tensors stored -------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_layers", 20000),
        ("num_layers", 3),
        ("hidden_size", 10**6),
    ],
)
def test_a_spec_that_does_not_match_the_weights_fails_before_building(run, field, value):
    checkpoint = latest(run)
    edit_manifest(checkpoint, lambda m: m["spec"]["cell"].__setitem__(field, value))
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match=f"spec.cell.{field}"):
        Pipeline.load(checkpoint, device="cpu")
    assert time.perf_counter() - started < 2


def test_an_embedding_size_that_does_not_match_is_named(run):
    checkpoint = latest(run)
    edit_manifest(checkpoint, lambda m: m["spec"]["model"].__setitem__("embedding_size", 10**7))
    with pytest.raises(
        CheckpointError, match=r"embedding\.weight.*shape.*spec\.model\.embedding_size"
    ):
        Pipeline.load(checkpoint, device="cpu")


@pytest.mark.parametrize("dtype", [torch.int64, torch.float64, torch.float16])
def test_weights_of_another_dtype_are_refused(run, dtype):
    checkpoint = latest(run)
    weights = safetensors.torch.load_file(checkpoint / "model.safetensors")
    replace_tensors(checkpoint, "model", {k: v.to(dtype) for k, v in weights.items()})
    with pytest.raises(CheckpointError, match=f"model.safetensors.*{str(dtype)[6:]}.*float32"):
        Pipeline.load(checkpoint, device="cpu")


# -- links out of the checkpoint --------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.safetensors", "manifest.json", "rng.safetensors"])
def test_a_file_that_links_out_of_the_checkpoint_is_refused(run, tmp_path, name):
    checkpoint = latest(run)
    outside = tmp_path / f"outside-{name}"
    shutil.move(checkpoint / name, outside)  # the same bytes: only the link is wrong
    (checkpoint / name).symlink_to(outside)
    with pytest.raises(CheckpointError, match=f"{name}.*link.*outside"):
        if name == "rng.safetensors":
            Pipeline.resume(run, steps=6, device="cpu")
        else:
            Pipeline.load(checkpoint, device="cpu")


def test_a_latest_json_that_links_out_of_the_run_is_refused(run, tmp_path):
    shutil.move(run / "latest.json", tmp_path / "latest.json")
    (run / "latest.json").symlink_to(tmp_path / "latest.json")
    with pytest.raises(CheckpointError, match="latest.json.*link.*outside"):
        Pipeline.load(run, device="cpu")


def test_a_link_inside_the_checkpoint_is_followed(run):
    checkpoint = latest(run)
    (checkpoint / "model.safetensors").rename(checkpoint / "weights.bin")
    (checkpoint / "model.safetensors").symlink_to("weights.bin")
    assert Pipeline.load(checkpoint, device="cpu").model is not None


# -- malformed JSON and fields ------------------------------------------------------------------


@pytest.mark.parametrize("text", ["[" * 100_000, '{"format": ' + "9" * 5000 + "}"])
def test_unparsable_manifests_are_checkpoint_errors(run, text):
    checkpoint = latest(run)
    (checkpoint / "manifest.json").write_text(text, "utf-8")
    with pytest.raises(CheckpointError, match="manifest.json"):
        Pipeline.load(checkpoint, device="cpu")


@pytest.mark.parametrize("text", ["[" * 100_000, '{"latest": ' + "9" * 5000 + "}"])
def test_unparsable_latest_json_is_a_checkpoint_error(run, text):
    (run / "latest.json").write_text(text, "utf-8")
    with pytest.raises(CheckpointError, match="latest.json"):
        Pipeline.load(run, device="cpu")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lr_scale", "fast"),
        ("lr_scale", -1.0),
        ("step", "12"),
        ("has_hidden", "yes"),
        ("best_val_bpc", [1]),
        ("divergences", 1.5),
        ("batches", 7),
        ("optimizer", {"state": 3, "param_groups": "x"}),
        ("rng", "none"),
    ],
)
def test_trainer_state_fields_of_the_wrong_type_are_named(run, field, value):
    checkpoint = latest(run)
    edit_manifest(checkpoint, lambda m: m["trainer"].__setitem__(field, value))
    with pytest.raises(CheckpointError, match=f"trainer.{field}"):
        Pipeline.resume(run, steps=6, device="cpu")


@pytest.mark.parametrize(("setting", "value"), [("lr", "fast"), ("betas", [0.9]), ("foreach", 3)])
def test_optimizer_settings_of_the_wrong_kind_are_named(run, setting, value):
    checkpoint = latest(run)
    edit_manifest(
        checkpoint,
        lambda m: m["trainer"]["optimizer"]["param_groups"][0].__setitem__(setting, value),
    )
    with pytest.raises(CheckpointError, match=rf"trainer.optimizer.*param_groups\[0\].{setting}"):
        Pipeline.resume(run, steps=6, device="cpu")


def test_a_deeply_nested_optimizer_state_is_a_checkpoint_error(run):
    checkpoint = latest(run)
    deep: list = []
    for _ in range(900):  # parses, but is too deep to rebuild recursively
        deep = [deep]
    edit_manifest(checkpoint, lambda m: m["trainer"]["optimizer"]["param_groups"].append(deep))
    with pytest.raises(CheckpointError, match="trainer.optimizer"):
        Pipeline.resume(run, steps=6, device="cpu")


def test_a_step_of_the_wrong_type_in_the_runs_latest_checkpoint_is_named(run):
    checkpoint = latest(run)
    older = run / "step-00000002"
    shutil.copytree(checkpoint, older)
    edit_manifest(older, lambda m: m.__setitem__("step", 2))
    edit_manifest(checkpoint, lambda m: m.__setitem__("step", "4"))
    with pytest.raises(CheckpointError, match=f"{checkpoint.name}/manifest.json: step is '4'"):
        Pipeline.resume(older, steps=6, device="cpu")


@pytest.mark.parametrize(
    ("field", "value"),
    [("sources", "/"), ("include", 5), ("encoding", ["utf-8"]), ("hash", None)],
)
def test_corpus_fields_of_the_wrong_type_are_named(run, field, value):
    edit_manifest(latest(run), lambda m: m["corpus"].__setitem__(field, value))
    with pytest.raises(CheckpointError, match=f"corpus.{field}"):
        Pipeline.resume(run, steps=6, device="cpu")


def test_a_hidden_state_with_other_tensor_names_is_named(run):
    checkpoint = latest(run)
    replace_tensors(checkpoint, "hidden", {"other": torch.zeros(4, 16)})
    with pytest.raises(CheckpointError, match=r"hidden.safetensors.*layer0\.0"):
        Pipeline.resume(run, steps=6, device="cpu")


@pytest.mark.parametrize("change", ["dtype", "shape"])
def test_a_hidden_state_of_another_dtype_or_shape_is_named(run, change):
    checkpoint = latest(run)
    hidden = safetensors.torch.load_file(checkpoint / "hidden.safetensors")
    if change == "dtype":
        hidden = {k: v.to(torch.float64) for k, v in hidden.items()}
    else:
        hidden = {k: torch.zeros(v.shape[0] + 1, *v.shape[1:]) for k, v in hidden.items()}
    replace_tensors(checkpoint, "hidden", hidden)
    with pytest.raises(CheckpointError, match=f"hidden.safetensors.*{change}"):
        Pipeline.resume(run, steps=6, device="cpu")


@pytest.mark.parametrize(
    ("field", "value"),
    [("plugins", []), ("plugins", {"cell": "lstm"}), ("plugins", {"bogus": {}}), ("corpus", [])],
)
def test_pipeline_fields_of_the_wrong_type_are_named(run, field, value):
    edit_manifest(latest(run), lambda m: m.__setitem__(field, value))
    for attempt in (
        lambda: Pipeline.load(run, device="cpu"),
        lambda: Pipeline.resume(run, steps=6, device="cpu"),
    ):
        with pytest.raises(CheckpointError, match=f"manifest is not a charseq pipeline's.*{field}"):
            attempt()
