"""charseq serve on a real socket: uvicorn on 127.0.0.1, the official ``openai`` client (a
client nobody here wrote) streamed and not, ``seed`` giving ``charseq sample``'s text, and a
streaming client that goes away stopping its generation within a few characters."""

from __future__ import annotations

import time

import pytest

from charseq.serve import create_app
from charseq.serve.app import STREAM_AHEAD
from charseq.serve.models import load_models
from tests._cli import run as run_cli
from tests._serve import CountingStream, events, httpx, live_server, train_run

openai = pytest.importorskip("openai", reason="the live tests use the openai client")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("serve-live") / "tiny")


@pytest.fixture(scope="module")
def models(run):
    return load_models([str(run)])


@pytest.fixture(scope="module")
def server(models):
    with live_server(create_app(models, concurrency=1, queue=4)) as url:
        yield url


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)


def test_openai_client_completions_equal_charseq_sample(client, run):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]
    options = {"max_tokens": 60, "seed": 7, "temperature": 0.8, "top_p": 0.9}
    done = client.completions.create(model="tiny", prompt="the ", **options)
    text = done.choices[0].text
    assert len(text) == 60 and done.choices[0].finish_reason == "length"
    sample = run_cli(
        "sample", str(run), "--prime", "the ", "--length", "60", "--seed", "7",
        "--temperature", "0.8", "--top-p", "0.9",
    )  # fmt: skip
    assert sample.exit_code == 0, sample.output
    assert sample.output == "the " + text + ("" if text.endswith("\n") else "\n")
    streamed = client.completions.create(model="tiny", prompt="the ", stream=True, **options)
    pieces = [chunk.choices[0].text for chunk in streamed]
    assert "".join(pieces) == text and len(pieces) > 2  # it came in pieces


def test_openai_client_sees_errors(client):
    with pytest.raises(openai.NotFoundError, match="the models are: tiny"):
        client.completions.create(model="nope", prompt="the ")
    with pytest.raises(openai.BadRequestError, match="U\\+0058"):
        client.completions.create(model="tiny", prompt="X")


def test_a_client_that_goes_away_stops_its_generation(server, models, monkeypatch):
    pipe = models["tiny"].pipe
    counting = CountingStream(pipe)
    monkeypatch.setattr(pipe, "stream", counting)
    body = {"model": "tiny", "prompt": "the ", "max_tokens": 2000, "stream": True}
    url = server + "/v1/completions"
    with httpx.Client(timeout=10) as http, http.stream("POST", url, json=body) as response:
        lines = response.iter_lines()
        received = [line for line, _ in zip(lines, range(6), strict=False) if line]
    # leaving the block closed the connection, after a few characters
    sent = sum(len(events(line + "\n\n")[0]["choices"][0]["text"]) for line in received)
    assert sent >= 1
    assert counting.closed.wait(10), "the generation was not stopped"
    time.sleep(0.2)
    # The server learns that the client has gone only when a write fails: the events it wrote
    # into the socket before then (which the client never read) and STREAM_AHEAD pieces more
    # are made; 10-25 pieces here. Run to its end, the generation makes 2000.
    assert sent <= counting.pulled <= 100 + STREAM_AHEAD, (counting.pulled, sent)
    # its slot is free again (the server runs one generation at a time): the next one runs
    monkeypatch.undo()
    with httpx.Client(timeout=10) as http:
        after = http.post(
            server + "/v1/completions", json={**body, "stream": False, "max_tokens": 5}
        )
    assert after.status_code == 200


def test_a_client_that_leaves_a_beam_search_stops_it(server, models, monkeypatch):
    # a beam search yields its one piece only at its end: nothing reaches the client before it
    # goes away, and the server's cancel must still end the search within a step
    from charseq.generate import Decoder

    steps = []
    advance = Decoder.advance
    monkeypatch.setattr(Decoder, "advance", lambda self, ids: (steps.append(1), advance(self, ids)))
    body = {"model": "tiny", "prompt": "the ", "max_tokens": 2000, "stream": True,
            "sampler": {"name": "beam", "num_beams": 32}}  # fmt: skip
    url = server + "/v1/completions"
    with httpx.Client(timeout=10) as http, http.stream("POST", url, json=body) as response:
        assert response.status_code == 200
        time.sleep(0.1)  # the search is under way; then the client closes the connection
    deadline = time.monotonic() + 10
    while True:  # the steps stop growing once the search has been cancelled
        before = len(steps)
        time.sleep(0.3)
        if len(steps) == before or time.monotonic() > deadline:
            break
    assert 0 < len(steps) < 1500, len(steps)  # run to its end, it takes 1999
    monkeypatch.undo()
    with httpx.Client(timeout=10) as http:  # its slot is free again (one generation at a time)
        after = http.post(url, json={**body, "stream": False, "max_tokens": 5})
    assert after.status_code == 200
