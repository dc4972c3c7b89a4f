"""charseq plot: training curves of runs, read from metrics.jsonl, as a valid PNG or SVG."""

from __future__ import annotations

import json
import struct
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from charseq.errors import CharseqError
from charseq.inspect.curves import draw_curves, read_curves
from tests._cli import SMALL, assert_error_line, run

pytest.importorskip("matplotlib", reason='charseq plot needs matplotlib: pip install -e ".[plot]"')


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs trained by charseq train: 12 steps evaluated every 4, and 8 steps."""
    root = tmp_path_factory.mktemp("plot")
    corpus = root / "corpus.txt"
    corpus.write_text("to be or not to be, that is the question. " * 40, "utf-8")
    for name, steps in (("first", 12), ("second", 8)):
        out = root / name
        result = run("train", "--data", str(corpus), *SMALL, "--steps", str(steps),
                     "--set", "train.eval_every=4", "--out", str(out))  # fmt: skip
        assert result.exit_code == 0, result.output
    return root / "first", root / "second"


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])  # width, height


def svg_root(path):
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def test_the_log_becomes_steps_losses_rates_times_and_evaluations(runs):
    curves = read_curves(runs[0])
    assert curves.name == str(runs[0]) and curves.unit == "characters"
    np.testing.assert_array_equal(curves.steps, np.arange(1, 13))
    np.testing.assert_array_equal(curves.eval_steps, [4, 8, 12])
    assert (curves.loss > 0).all() and (curves.lr > 0).all() and (curves.val_nats > 0).all()
    assert curves.timed and (np.diff(curves.seconds) > 0).all()  # training time only grows
    assert (curves.eval_seconds > 0).all()


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_one_run_and_several_make_a_valid_figure(runs, tmp_path, suffix):
    for chosen in (runs[:1], runs):
        out = tmp_path / f"curves-{len(chosen)}{suffix}"
        result = run("plot", *map(str, chosen), "-o", str(out))
        assert result.exit_code == 0, result.output
        assert f"wrote {out}" in result.output
        if suffix == ".png":
            width, height = png_size(out)
            assert width > 800 and height > 400
        else:
            assert len(svg_root(out)) > 0


def test_the_runs_are_overlaid_with_their_names_and_the_rate_has_its_own_panels(runs):
    fig = draw_curves([read_curves(path) for path in runs])
    by_step, by_time, lr_step, lr_time = fig.axes[:4]
    labels = [text.get_text() for text in by_step.get_legend().get_texts()]
    assert labels[:2] == [str(runs[0]), str(runs[1])] and "validation" in labels
    assert by_step.get_ylabel() == "loss (nats per char)"
    assert lr_step.get_ylabel() == lr_time.get_ylabel() == "learning rate"
    assert lr_time.get_xlabel() == "seconds of training"
    assert len(lr_step.get_lines()) == 2  # one rate per run


def test_a_log_from_before_training_times_still_draws(runs, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    lines = (runs[1] / "metrics.jsonl").read_text("utf-8").splitlines()
    records = [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]
    (old / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")
    assert not read_curves(old).timed and read_curves(old).unit == "tokens"  # no checkpoint
    assert run("plot", str(old), "-o", str(tmp_path / "old.svg")).exit_code == 0


def test_the_end_of_training_says_how_to_draw_the_curves(corpus):
    result = run("train", "--data", str(corpus), *SMALL, "--steps", "2", "--out", "runs/x")
    assert "training curves: charseq plot runs/x -o x-curves.png" in result.output
    assert run("plot", "runs/x", "-o", "x-curves.png").exit_code == 0


def test_a_run_directory_without_metrics_is_a_clear_error(runs, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs[1], copy)
    (copy / "metrics.jsonl").unlink()
    result = run("plot", str(copy), "-o", str(tmp_path / "c.png"))
    assert_error_line(result, f"{copy} is a run directory without metrics.jsonl: nothing to plot")
    assert not (tmp_path / "c.png").exists()


def test_what_is_not_a_run_is_a_clear_error(runs, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("hello")
    (tmp_path / "no-steps").mkdir()
    (tmp_path / "no-steps" / "metrics.jsonl").write_text('{"event": "checkpoint"}\n')
    out = str(tmp_path / "c.png")
    for path, message in [
        (tmp_path / "empty", "is not a run directory (no metrics.jsonl, no latest.json)"),
        (tmp_path / "file.txt", "is a file; give a run directory"),
        (tmp_path / "missing", "no such run directory"),
        (tmp_path / "no-steps", "has no training step logged yet"),
    ]:
        assert_error_line(run("plot", str(runs[0]), str(path), "-o", out), f"{path}")
        assert_error_line(run("plot", str(path), "-o", out), message)


@pytest.mark.parametrize(
    ("name", "message"),
    [("c.pdf", "c.pdf: a figure is written as .png or .svg, not .pdf"), ("c", "no extension")],
)
def test_an_output_that_is_neither_png_nor_svg_is_refused(runs, tmp_path, name, message):
    assert_error_line(run("plot", str(runs[0]), "-o", str(tmp_path / name)), message)


def test_without_matplotlib_the_error_names_the_extra(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if missing
    with pytest.raises(CharseqError, match=r'pip install "charseq\[plot\]"'):
        draw_curves([read_curves(runs[0])])


def test_a_classifiers_curves_are_per_text_and_apart_from_a_language_models(runs, tmp_path):
    from charseq import Pipeline
    from tests.test_classify_training import DATA, spec

    out = tmp_path / "classifier"
    Pipeline.from_spec(spec(steps=6, eval_every=3), device="cpu").fit(data=DATA, out=out)
    curves = read_curves(out)
    assert curves.unit == "texts" and list(curves.eval_steps) == [3, 6]
    assert np.isfinite(curves.val_nats).all()  # the validation loss, per text
    figure = draw_curves([curves])
    assert "loss (nats per text)" in [ax.get_ylabel() for ax in figure.axes]
    with pytest.raises(CharseqError, match="do not share an axis"):
        draw_curves([curves, read_curves(runs[0])])
