"""The benchmark scripts run (on tiny inputs); the presets are valid specs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from charseq import Pipeline, PipelineSpec
from charseq.spec import presets
from tests._helpers import quatrains

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", presets())
def test_every_preset_is_a_valid_spec_that_builds(name):
    spec = PipelineSpec.from_preset(name)
    assert PipelineSpec.from_toml(spec.to_toml()) == spec
    pipe = Pipeline.from_spec(spec, device="cpu")
    pipe.tokenizer.fit("abc")
    assert pipe.build_model() is not None


def test_unknown_preset():
    with pytest.raises(Exception, match="unknown preset 'char_rnn'; did you mean 'char-rnn'"):
        PipelineSpec.from_preset("char_rnn")


def test_the_quality_benchmark_runs(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat.\n" * 300, "utf-8")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "quality.py"),
            "--data",
            str(text),
            "--preset",
            "shakespeare-cpu",
            "--seconds",
            "2",
            "--set",
            "cell.hidden_size=16",
            "--set",
            "train.eval_every=5",
            "--set",
            "train.batch_size=4",
            "--dynamic",
            "rms",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["val_chars"] == len(text.read_text()) - int(len(text.read_text()) * 0.9) - 1
    assert result["val_bpc"] == pytest.approx(result["val_nats"] / 0.693147, rel=1e-3)
    dynamic = result["val_nats_dynamic_rms"]  # the same text, read adapting: another number
    assert 0 < dynamic != result["val_nats"] and result["dynamic_rms"].startswith("rms, lr")


def _json_lines(script, *args):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_training_speed_benchmark_runs():
    records = _json_lines("train_speed.py", "--config", "tiny", "--steps", "1", "--rounds", "1")
    assert [(r["cell"], r["contender"]) for r in records] == [
        ("lstm", "torch"),
        ("lstm", "charseq"),
        ("step-lstm", "plugin"),
        ("gru", "torch"),
        ("gru", "charseq"),
        ("rnn", "torch"),
        ("rnn", "charseq"),
    ]
    for record in records:
        assert record["chars_per_s"] > 0
        assert {"vs_torch", "peak_mib", "date", "device", "torch"} <= record.keys()
    assert "vs_builtin" in records[2]


def test_the_generation_speed_benchmark_runs():
    args = ["--layers", "1", "--hidden", "8", "--length", "4", "--batch", "2", "--rounds", "1"]
    records = {r["contender"]: r for r in _json_lines("generate_speed.py", *args)}
    assert set(records) == {
        "torch",
        "charseq",
        "charseq-stream",
        "charseq-greedy",
        "charseq-beam8",
        "torch-batch",
        "charseq-batch",
    }
    assert all(r["chars_per_s"] > 0 for r in records.values())
    assert {"vs_torch", "vs_generate", "vs_greedy"} <= {key for r in records.values() for key in r}
    assert records["charseq-batch"]["batch"] == 2


def test_the_deferred_gradient_probe_runs_and_agrees_with_unroll():
    check, *records = _json_lines("deferred_grad.py", "--config", "tiny", "--rounds", "1")
    assert check["check_max_error"] < 1e-9  # the script raises before printing otherwise
    assert [r["contender"] for r in records] == ["unroll", "deferred"]
    assert all(r["chars_per_s"] > 0 for r in records)
    assert {"vs_unroll", "forward_s", "through_time_s", "batched_s"} <= records[1].keys()


def test_the_scaling_benchmark_runs():
    records = _json_lines("scaling.py", "--sizes", "20000", "40000", "--steps", "1")
    assert [r["corpus_bytes"] for r in records] == [20000, 40000]
    for record in records:
        assert record["tokens"] == record["corpus_bytes"]  # the generated text is ASCII
        assert record["prepare_ns_per_char"] > 0 and record["train_chars_per_s"] > 0
        assert record["peak_mib"] is None or record["peak_mib"] >= 0


def test_the_run_directory_reliability_script_runs(tmp_path):
    args = ["--reads", "20", "--cli-reads", "1", "--kills", "1", "--work", str(tmp_path)]
    readers, kills = _json_lines("run_dir_reliability.py", *args)
    assert readers["api_reads"] == 20 and readers["cli_reads"] == 1
    assert readers["failures"] == 0, readers["errors"]
    assert readers["checkpoints_written_meanwhile"] > 0 and readers["trainer_ran_throughout"]
    assert kills["kills"] == 1 and kills["last_step"] > 0
    failures = ("corrupt", "latest_json_names_missing", "best_unreadable", "run_unreadable")
    assert [kills[key] for key in failures] == [0, 0, 0, 0], kills["errors"]
    assert kills["resume_failures"] == kills["metrics_steps_repeated"] == 0, kills["errors"]


def test_the_poems_benchmark_runs(tmp_path):
    data = tmp_path / "poems.txt"
    data.write_text(quatrains(300), "utf-8")
    settings = ["cell.hidden_size=16", "model.embedding_size=8", "train.batch_size=4"]
    args = ["--data", str(data), "--seconds", "2", "--samples", "6", "--batch", "3"]
    (result,) = _json_lines("poems.py", *args, *(f"--set={s}" for s in settings))
    size = len(data.read_text("utf-8"))
    assert result["val_chars"] == size - int(size * 0.9) - 1
    assert result["samples"] == 6 and result["steps"] > 0
    assert result["form_fit_share"] == result["acrostic_heads_share"] == 1.0
    assert result["acrostic_fit_share"] == 1.0
    assert 0 <= result["free_fit_share"] <= 1
    heads, poem = result["examples"]["acrostic"].split(" ")
    clauses = poem.split(":")[1].replace("。", "，").split("，")
    assert "".join(clause[0] for clause in clauses[:4]) == heads


def test_the_names_benchmark_runs():
    pytest.importorskip("faker")
    settings = ["cell.hidden_size=8", "model.embedding_size=8", "train.eval_every=5"]
    args = ["--seconds", "1.5", "--per-language", "20", "--threads", "1"]
    (result,) = _json_lines("names.py", *args, *(f"--set={s}" for s in settings))
    data = result["data"]
    assert data["names"] == 200 and (data["train"], data["val"], data["test"]) == (160, 20, 20)
    assert sorted(result["cells"]) == ["gru", "mgu"]
    for scores in [result["baseline"], *result["cells"].values()]:
        assert 0 <= scores["macro_f1"] <= 1 and 0 <= scores["accuracy"] <= 1
    assert all(cell["steps"] > 0 for cell in result["cells"].values())


def test_the_cells_table_runs_resumes_and_prints_markdown(tmp_path):
    text, out = tmp_path / "text.txt", tmp_path / "table.jsonl"
    text.write_text("the cat sat on the mat.\n" * 300, "utf-8")
    args = ["--data", str(text), "--cells", "gru", "mgu", "--params", "3k", "--seconds", "2"]
    args += ["--calibrate", "0.5", "--set", "train.batch_size=4", "--out", str(out)]
    rows = _json_lines("cells_table.py", *args)
    assert [(row["cell"], row["size"]) for row in rows] == [("gru", "0.003M"), ("mgu", "0.003M")]
    for row in rows:  # the width nearest 3,000 recurrent parameters, the whole model larger
        assert abs(row["recurrent_params"] - 3000) / 3000 < 0.1 < row["params"] / 3000 - 1
        assert row["steps"] > 0 and row["planned_steps"] > 0
        assert 0 < row["val_nats_dynamic_rms"] != row["val_nats"] > 0
    assert rows[0]["hidden_size"] < rows[1]["hidden_size"]  # an MGU has two gates, a GRU three
    assert len(out.read_text().splitlines()) == 2

    assert _json_lines("cells_table.py", *args) == []  # every row is there: nothing runs again
    table = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "cells_table.py"), "--out", str(out),
         "--markdown"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    best = min(rows, key=lambda row: row["val_nats"])
    assert f"| 0.003M | {best['cell']} | {best['hidden_size']} |" in table
    assert f"**{best['val_nats']:.4f}**" in table


def test_the_cells_table_refuses_a_size_it_cannot_read(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "cells_table.py"), "--params", "lots",
         "--out", str(tmp_path / "t.jsonl")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2 and "not a size: 'lots' (e.g. 0.4M, 250k)" in done.stderr
