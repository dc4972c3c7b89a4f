"""The benchmark scripts run (on tiny inputs); the presets are valid specs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from charseq import Pipeline, PipelineSpec
from charseq.spec import presets

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
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["val_chars"] == len(text.read_text()) - int(len(text.read_text()) * 0.9) - 1
    assert result["val_bpc"] == pytest.approx(result["val_nats"] / 0.693147, rel=1e-3)
