"""charseq serve's API through an HTTP client against the app in process (Starlette's
TestClient, on httpx): every endpoint, streaming, and each refusal with its status and OpenAI's
error shape."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from charseq.errors import CharseqError
from charseq.serve import create_app
from charseq.serve.errors import ApiError
from charseq.serve.limits import Limiter
from charseq.serve.models import load_models, parse_run
from tests._serve import TestClient, events, train_run  # skips without the serve extra


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="module")
def models(run):
    return load_models([str(run)])


@pytest.fixture
def client(models):
    with TestClient(create_app(models)) as client:
        yield client


def complete(client, **body):
    return client.post("/v1/completions", json={"model": "tiny", **body})


def assert_error(response, status, *words, param=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    for word in words:
        assert word in error["message"], error["message"]
    if param is not None:
        assert error["param"] == param
    return error


# -- what each endpoint answers ------------------------------------------------------------------


def test_healthz_and_models(client, models):
    assert client.get("/healthz").json() == {"status": "ok", "models": ["tiny"]}
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list"
    (entry,) = listed["data"]
    assert entry["id"] == "tiny" and entry["object"] == "model" and entry["owned_by"] == "charseq"
    assert isinstance(entry["created"], int)
    info = entry["charseq"]
    assert info == {
        "cell": "lstm",
        "hidden_size": 16,
        "num_layers": 1,
        "tokenizer": "char",
        "corpus_chars": info["corpus_chars"],
        "val_bpc": info["val_bpc"],
        "steps": 15,
        "forms": [],  # no ，。 in its vocabulary: no named verse form
    }
    assert info["corpus_chars"] == len("the cat sat on the mat.\nand the dog ran far.\n" * 30)
    assert info["val_bpc"] > 0


def test_names_come_from_the_command_line(run):
    assert parse_run(str(run)) == ("tiny", str(run))
    assert parse_run(str(run / "best")) == ("tiny", str(run / "best"))  # the run's name
    assert parse_run(f"poems={run}") == ("poems", str(run))
    with pytest.raises(CharseqError, match="two runs are named 'tiny'"):
        load_models([str(run), str(run)])
    with pytest.raises(CharseqError, match="name the runs to serve"):
        load_models([])
    with pytest.raises(CharseqError, match="not a usable model name"):
        parse_run(f"a/b={run}")


def test_completion_is_generate_with_the_same_seed(client, models):
    pipe = models["tiny"].pipe
    body = client.post(
        "/v1/completions",
        json={"model": "tiny", "prompt": "the ", "max_tokens": 40, "seed": 3, "temperature": 0.7},
    ).json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    (choice,) = body["choices"]
    sampler = {**pipe.sampler_section(), "temperature": 0.7}
    assert choice["text"] == pipe.generate("the ", 40, sampler=sampler, seed=3)
    assert choice["finish_reason"] == "length" and choice["logprobs"] is None
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 40, "total_tokens": 44}
    # OpenAI's defaults: 16 tokens; a prompt as a list of one string
    short = complete(client, prompt=["the "], seed=3).json()["choices"][0]["text"]
    assert len(short) == 16


def test_charseq_options_and_constraints(client, models):
    pipe = models["tiny"].pipe
    greedy = complete(client, prompt="the ", max_tokens=20, temperature=0).json()
    assert greedy["choices"][0]["text"] == pipe.generate("the ", 20, sampler="greedy")
    beam = complete(client, prompt="the ", max_tokens=10, num_beams=3).json()
    assert beam["choices"][0]["text"] == pipe.generate(
        "the ", 10, sampler={"name": "beam", "num_beams": 3}
    )
    named = complete(
        client,
        prompt="the ",
        max_tokens=30,
        seed=1,
        sampler={"name": "temperature", "temperature": 0.5, "top_k": 3},
        min_p=0.1,
    ).json()
    sampler = {"name": "temperature", "temperature": 0.5, "top_k": 3, "min_p": 0.1}
    assert named["choices"][0]["text"] == pipe.generate("the ", 30, sampler=sampler, seed=1)
    poem = complete(client, prompt="", max_tokens=60, acrostic="cat", seed=2).json()
    starts = "".join(line[0] for line in poem["choices"][0]["text"].split("\n") if line)
    assert starts[:3] == "cat"[: len(starts)]
    stopped = complete(client, prompt="the ", max_tokens=200, stop=["."], seed=1).json()
    text = stopped["choices"][0]["text"]
    assert text.endswith(".") and text.count(".") == 1
    assert stopped["choices"][0]["finish_reason"] == "stop"
    allowed = complete(client, prompt="the ", max_tokens=30, allowed="at ", seed=1).json()
    assert set(allowed["choices"][0]["text"]) <= set("at ")
    several = complete(client, prompt="the ", max_tokens=10, n=3, seed=1).json()
    assert [c["index"] for c in several["choices"]] == [0, 1, 2]


def test_verse_fields_pass_through(client, models):
    pipe = models["tiny"].pipe
    verse = {"form": "??? ??? ???.", "acrostic": "tac", "acrostic_after": " ", "seed": 1}
    done = complete(client, max_tokens=100, **verse).json()["choices"][0]
    assert done["text"] == pipe.generate("", 100, **verse)
    assert [word[0] for word in done["text"].split(" ")] == list("tac")
    assert len(done["text"]) == len("??? ??? ???.") and done["finish_reason"] == "stop"
    stream = events(complete(client, max_tokens=100, stream=True, **verse).text)
    assert "".join(c["choices"][0]["text"] for c in stream[:-1]) == done["text"]
    assert stream[-2]["choices"][0]["finish_reason"] == "stop"
    table = {"name": "form", "template": "??? ???."}
    plugin = complete(client, max_tokens=100, seed=2, constraints=[table]).json()
    assert plugin["choices"][0]["text"] == pipe.generate("", 100, seed=2, constraints=[table])


def test_verse_fields_are_checked_and_named(client):
    for fields, words, param in [
        ({"form": "wujeu"}, ["unknown form 'wujeu'", "did you mean 'wujue'"], "form"),
        ({"form": 5}, ["form must be a string"], "form"),
        ({"acrostic": "ab", "acrostic_after": [","]}, ["acrostic_after must be a string"], None),
        ({"constraints": "form"}, ["constraints must be a list"], "constraints"),
        ({"constraints": [{"template": "x"}]}, ["constraints[0] must be a name"], "constraints"),
        ({"constraints": ["stop"] * 17}, ["at most 16"], "constraints"),
        ({"constraints": ["rhyme"]}, ["unknown constraint 'rhyme'"], "constraints"),
        (
            {"constraints": [{"name": "form", "templat": "x"}]},
            ["constraints[0].templat", "did you mean 'template'"],
            "constraints",
        ),
    ]:
        param = param or next(iter(k for k in fields if k != "acrostic"))
        assert_error(complete(client, **fields), 400, *words, param=param)
    # what only the model's vocabulary can refuse: the library's own message, before any text
    assert_error(complete(client, form="wujue"), 400, "'，' (U+FF0C)", "cannot write")
    too_many = {"form": "??? ???.", "acrostic": "tac", "acrostic_after": " ", "stream": True}
    assert_error(complete(client, **too_many), 400, "3 heads", "room for 2")


def test_the_forms_a_vocabulary_can_fill_are_listed():
    from charseq import Pipeline
    from charseq.serve.models import fillable_forms
    from tests._helpers import SMALL

    pipe = Pipeline.from_spec({**SMALL, "train": {**SMALL["train"], "steps": 1}}).fit(
        "春夏秋冬山，水花月雲風。\n" * 9
    )
    assert fillable_forms(pipe) == ["wujue", "qijue", "wulv", "qilv"]


def test_logprobs_are_the_models_own(client, models):
    pipe = models["tiny"].pipe
    body = complete(client, prompt="the ", max_tokens=12, seed=4, logprobs=3).json()
    (choice,) = body["choices"]
    logprobs = choice["logprobs"]
    assert "".join(logprobs["tokens"]) == choice["text"]
    assert logprobs["text_offset"] == list(range(12))
    expected = pipe.score(choice["text"], prime="the ").logprobs
    assert logprobs["token_logprobs"] == pytest.approx(expected, abs=1e-5)
    for top, token, lp in zip(
        logprobs["top_logprobs"], logprobs["tokens"], logprobs["token_logprobs"], strict=True
    ):
        assert len(top) == 3
        assert max(top.values()) >= lp - 1e-9  # the likeliest alternatives
        if token in top:
            assert top[token] == pytest.approx(lp)


def test_streaming_joins_to_the_completion(client):
    request = {"prompt": "the ", "max_tokens": 50, "seed": 5, "temperature": 0.9}
    whole = complete(client, **request).json()["choices"][0]["text"]
    response = complete(client, stream=True, logprobs=1, **request)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = events(response.text)
    assert chunks[-1] == "[DONE]"
    body = chunks[:-1]
    assert all(c["object"] == "text_completion" and c["model"] == "tiny" for c in body)
    assert len({c["id"] for c in body}) == 1
    assert "".join(c["choices"][0]["text"] for c in body) == whole
    assert body[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in body[:-1])
    tokens = [t for c in body[:-1] for t in c["choices"][0]["logprobs"]["tokens"]]
    assert "".join(tokens) == whole


def test_score(client, models):
    body = client.post("/v1/score", json={"model": "tiny", "text": "the dog", "prime": "and "})
    score = models["tiny"].pipe.score("the dog", prime="and ")
    data = body.json()
    assert data["model"] == "tiny" and data["tokens"] == list("the dog")
    assert data["logprobs"] == pytest.approx(score.logprobs)
    assert data["surprise"] == pytest.approx([-x for x in score.logprobs])
    assert data["nats"] == pytest.approx(score.nats) and data["bpc"] == pytest.approx(score.bpc)
    assert data["total_nats"] == pytest.approx(score.total_nats)


def test_inspect_is_the_report_page(client):
    response = client.post("/v1/inspect", json={"model": "tiny", "text": "the cat sat."})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "Content-Security-Policy" in response.text and "tiny (step 15)" in response.text


def test_the_page(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


# -- refusals --------------------------------------------------------------------------------------


def test_bad_requests_are_400_with_the_librarys_message(client):
    error = assert_error(complete(client, prompt="THE"), 400, "'T' (U+0054)", param="unknown")
    assert error["type"] == "invalid_request_error"
    assert complete(client, prompt="THE", unknown="skip", max_tokens=3).status_code == 200
    assert_error(complete(client, temprature=1), 400, "did you mean 'temperature'")
    assert_error(complete(client, echo=True), 400, "echo is not supported", param="echo")
    assert_error(complete(client, max_tokens=-1), 400, "max_tokens", param="max_tokens")
    assert_error(complete(client, top_k=1.5), 400, "top_k must be an integer", param="top_k")
    assert_error(complete(client, sampler="nope"), 400, "nope")
    assert_error(complete(client, sampler={"name": "temperature", "top_k": 0}), 400, "top_k")
    assert_error(complete(client, temperature=0, num_beams=2), 400, "greedy")
    assert_error(complete(client, stream=True, n=2), 400, "stream", param="n")
    assert_error(client.post("/v1/completions", content=b"{"), 400, "not JSON")
    assert_error(client.post("/v1/completions", json=[1]), 400, "JSON object")
    assert_error(client.post("/v1/completions", json={}), 400, "model is required")
    assert_error(client.post("/v1/score", json={"model": "tiny", "text": ""}), 400, "text")
    assert_error(client.post("/v1/score", json={"model": "tiny", "text": "X"}), 400, "'X'")
    assert_error(client.get("/v1/nothing"), 404, "Not Found")


def test_streamed_bad_request_is_refused_before_streaming(client):
    error = assert_error(complete(client, prompt="THE", stream=True), 400, "'T' (U+0054)")
    assert error["param"] == "unknown"


def test_unknown_model_is_a_label_never_a_path(client, run):
    assert_error(complete(client, model="other"), 404, "'other' is not served", "tiny")
    assert complete(client, model="other").json()["error"]["code"] == "model_not_found"
    assert_error(complete(client, model=str(run)), 404, "the models are: tiny")
    assert_error(client.post("/v1/score", json={"model": "x", "text": "a"}), 404, "tiny")


def test_api_key(models):
    with TestClient(create_app(models, api_key="s3cret")) as client:
        assert client.get("/healthz").status_code == 200  # open: a load balancer's check
        assert client.get("/").status_code == 200  # the page asks for the key
        error = assert_error(client.get("/v1/models"), 401, "no API key was given")
        assert error["type"] == "authentication_error"
        wrong = {"Authorization": "Bearer nope"}
        assert_error(client.get("/v1/models", headers=wrong), 401, "a wrong API key")
        assert_error(
            client.post("/v1/completions", json={"model": "tiny"}, headers=wrong), 401, "key"
        )
        right = {"Authorization": "Bearer s3cret"}
        assert client.get("/v1/models", headers=right).status_code == 200
        body = {"model": "tiny", "max_tokens": 2}
        assert client.post("/v1/completions", json=body, headers=right).status_code == 200


def test_sizes_are_capped(models):
    app = create_app(models, max_new_tokens=50, max_body_bytes=2000, max_prompt_chars=100)
    with TestClient(app) as client:
        assert_error(complete(client, max_tokens=51), 413, "at most 50", param="max_tokens")
        assert complete(client, max_tokens=50).status_code == 200
        assert_error(complete(client, prompt="a" * 101), 413, "101 characters", param="prompt")
        assert_error(complete(client, prompt="a" * 3000), 413, "request body is larger")
        score = client.post("/v1/score", json={"model": "tiny", "text": "a" * 101})
        assert_error(score, 413, "at most 100")
    with TestClient(create_app(models, max_inspect_chars=10)) as client:
        inspect = client.post("/v1/inspect", json={"model": "tiny", "text": "the cat sat on"})
        assert_error(inspect, 413, "inspects at most 10")


def test_a_model_failure_fails_that_request_only(client, models, monkeypatch):
    pipe = models["tiny"].pipe

    def broken(*args, **kwargs):
        raise RuntimeError("the plugin sampler fell over")

    monkeypatch.setattr(pipe, "generate", broken)
    error = assert_error(complete(client, max_tokens=3), 500, "RuntimeError: the plugin sampler")
    assert error["type"] == "server_error"
    monkeypatch.undo()
    assert complete(client, max_tokens=3).status_code == 200  # and the server goes on


def test_a_failure_mid_stream_is_an_error_event(client, models, monkeypatch):
    pipe = models["tiny"].pipe
    original = pipe.stream

    def failing(*args, **kwargs):
        pieces = original(*args, **kwargs)

        def go():
            yield next(pieces)
            raise RuntimeError("boom")

        return go()

    monkeypatch.setattr(pipe, "stream", failing)
    chunks = events(complete(client, max_tokens=10, stream=True).text)
    assert chunks[-1]["error"]["message"].endswith("RuntimeError: boom")
    assert "[DONE]" not in chunks
    monkeypatch.undo()
    assert complete(client, max_tokens=3).status_code == 200


def test_a_full_queue_is_429_with_retry_after(models, monkeypatch):
    pipe = models["tiny"].pipe
    release, started = threading.Event(), threading.Semaphore(0)
    original = pipe.generate

    def slow(*args, **kwargs):
        started.release()
        release.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(pipe, "generate", slow)
    results = []
    with TestClient(create_app(models, concurrency=1, queue=1)) as client:

        def send():
            results.append(complete(client, max_tokens=2).status_code)

        threads = [threading.Thread(target=send) for _ in range(2)]
        threads[0].start()
        assert started.acquire(timeout=10)  # the first runs, holding the one slot
        threads[1].start()  # the second waits in the queue
        service = client.app.state.service
        deadline = time.monotonic() + 10
        while service.limiter.waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = complete(client, max_tokens=2)  # the third finds both full
        error = assert_error(refused, 429, "busy", "--concurrency 1 and --queue 1")
        assert refused.headers["Retry-After"] == "1" and error["code"] == "queue_full"
        release.set()
        for thread in threads:
            thread.join(10)
        assert results == [200, 200]
        assert service.limiter.running == 0 and service.limiter.waiting == 0


def test_shutting_down_is_503(models):
    with TestClient(create_app(models)) as client:
        client.app.state.service.limiter.close()
        refused = complete(client, max_tokens=2)
        error = assert_error(refused, 503, "shutting down")
        assert refused.headers["Retry-After"] == "1" and error["code"] == "shutting_down"
        assert client.get("/healthz").status_code == 200


def test_limiter_admits_runs_and_refuses():
    async def main():
        limiter = Limiter(concurrency=1, queue=1)
        gate = threading.Event()
        await limiter.acquire()
        first = limiter.start(gate.wait, 10)
        queued = asyncio.ensure_future(limiter.run(lambda: "second"))
        await asyncio.sleep(0.01)
        assert (limiter.running, limiter.waiting) == (1, 1)
        with pytest.raises(ApiError) as refused:
            await limiter.acquire()
        assert refused.value.status == 429
        gate.set()
        assert await first is True and await queued == "second"
        assert (limiter.running, limiter.waiting) == (0, 0)
        limiter.shutdown()

    asyncio.run(main())
