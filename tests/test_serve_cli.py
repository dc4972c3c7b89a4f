"""``charseq serve`` on the command line: what it refuses before it loads anything."""

from __future__ import annotations

import pytest

from charseq.cli.serve import is_loopback
from tests._cli import assert_error_line, run
from tests._serve import MISSING  # noqa: F401  (skips the module without the serve extra)


def test_no_run_says_what_to_pass():
    result = run("serve")
    assert_error_line(result, "name the runs to serve: charseq serve RUN [RUN ...]")
    assert "nothing is trained here" in result.output


def test_a_reachable_host_needs_an_api_key(tmp_path, monkeypatch):
    monkeypatch.delenv("CHARSEQ_API_KEY", raising=False)
    result = run("serve", str(tmp_path), "--host", "0.0.0.0")
    assert_error_line(result, "--host 0.0.0.0 can be reached from other machines")
    assert "--api-key KEY or CHARSEQ_API_KEY" in result.output


def test_a_missing_run_is_an_error_line(tmp_path):
    assert_error_line(run("serve", str(tmp_path / "nope")), "no such checkpoint or run directory")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.10", False)],
)  # fmt: skip
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_a_classifier_is_not_served(tmp_path):
    from charseq import Pipeline
    from tests.test_classify_training import DATA, spec

    Pipeline.from_spec(spec(steps=2, eval_every=2), device="cpu").fit(data=DATA).save(
        tmp_path / "classifier"
    )
    assert_error_line(
        run("serve", str(tmp_path / "classifier")),
        "is a classifier (task 'classify'): charseq serve serves language models",
    )
