"""The page of ``charseq serve`` (charseq/serve/page.html and page.js) in a real browser.

The page is driven in a headless Chromium (tests/browser.py; skipped without one), first against
a small stand-in server: a Starlette app that serves the page as ``charseq serve`` does and
answers the API with canned streams, so each test knows exactly what "the model" writes (an
acrostic in CJK split mid-character across network reads, an endless text to stop, a
``<script>`` to show as text, an error). The stand-in records what the page sent and whether the
page hung up. Then against the real app, over a tiny run trained on two short poems: the
acrostic the page shows is the one :meth:`Pipeline.generate` writes, Stop ends the server's
generation, and the score and the neuron report are the library's.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import charseq

pytest.importorskip("starlette", reason='the serve extra: pip install -e ".[serve]"')

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from charseq.serve.app import render_page  # noqa: E402
from tests._serve import live_server  # noqa: E402

ATTACK = '<script>alert(1)</script><img src=x onerror="window.pwned = 1">'
POEM_TAIL = "风吹柳\n"  # what the stand-in writes after each acrostic character
PAGE = Path(charseq.__file__).parent / "serve"  # the page's two files


# -- the stand-in server ---------------------------------------------------------------------


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    return JSONResponse({"error": error}, status_code=status)


class StandIn:
    """A Starlette app that answers like ``charseq serve`` and remembers what it was asked."""

    MODELS = [
        {
            "id": "poems",
            "object": "model",
            "created": 0,
            "owned_by": "charseq",
            "charseq": {
                "cell": "lstm",
                "hidden_size": 128,
                "num_layers": 2,
                "tokenizer": "char",
                "corpus_chars": 123456,
                "val_bpc": 2.0412,
                "steps": 1500,
                "forms": ["wujue", "qijue", "wulv", "qilv"],
            },
        },
        {
            "id": "tiny-gru",
            "object": "model",
            "created": 0,
            "owned_by": "charseq",
            "charseq": {
                "cell": "gru",
                "hidden_size": 32,
                "num_layers": 1,
                "tokenizer": "char",
                "corpus_chars": None,
                "val_bpc": None,
                "steps": 20,
                "forms": [],
            },
        },
    ]

    def __init__(self, key: str | None = None) -> None:
        self.key = key
        self.requests: list[dict] = []
        self.hung_up = threading.Event()
        self.app = Starlette(
            routes=[
                Route("/", self.page),
                Route("/v1/models", self.models),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/score", self.score, methods=["POST"]),
                Route("/v1/inspect", self.inspect, methods=["POST"]),
            ]
        )

    async def page(self, request: Request) -> Response:
        return HTMLResponse(render_page())  # as charseq serve sends it

    async def models(self, request: Request) -> Response:
        if self.key and request.headers.get("authorization") != f"Bearer {self.key}":
            return _error(401, "this server needs an API key: Authorization: Bearer KEY")
        return JSONResponse({"object": "list", "data": self.MODELS})

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        prompt = body.get("prompt", "")
        if "\x00" in prompt or "¤" in prompt:
            return _error(400, "the prime has 1 character outside the vocabulary: '¤'", "prompt")
        return StreamingResponse(self._stream(body), media_type="text/event-stream")

    async def _stream(self, body: dict) -> AsyncIterator[bytes]:
        prompt, acrostic = body["prompt"], body.get("acrostic")
        try:
            if "attack" in prompt:
                pieces = [ATTACK[i : i + 5] for i in range(0, len(ATTACK), 5)]
            elif acrostic and body.get("form"):  # a clause a head, and the end of the form
                pieces = [c + "风吹柳月" + p for c, p in zip(acrostic, "，。，。", strict=False)]
            elif acrostic:
                pieces = [c + POEM_TAIL for c in acrostic] + ["余" * 3 + "\n"] * 200
            else:
                pieces = ["la "] * (10_000 if "long" in prompt else 20)
            for piece in pieces:
                chunk = {"object": "text_completion", "choices": [{"index": 0, "text": piece}]}
                data = f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()
                # Two reads, cut inside a character when it is more than one byte long: the page
                # must not split (or mangle) a character whose bytes arrive apart.
                cut = len(data) - len(POEM_TAIL.encode()) - 8
                for part in (data[:cut], data[cut:]):
                    yield part
                    await asyncio.sleep(0.01 if "long" not in prompt else 0.02)
            reason = "stop" if body.get("form") else "length"
            end = {
                "object": "text_completion",
                "choices": [{"index": 0, "text": "", "finish_reason": reason}],
            }
            yield f"data: {json.dumps(end)}\n\n".encode()
            yield b"data: [DONE]\n\n"
        except asyncio.CancelledError:
            self.hung_up.set()
            raise

    async def score(self, request: Request) -> Response:
        body = await request.json()
        text = body["text"]
        tokens = list(text)
        logprobs = [-0.05 - 0.7 * (i % 9) for i in range(len(tokens))]
        nats = -sum(logprobs) / len(tokens)
        return JSONResponse(
            {
                "model": body["model"],
                "tokens": tokens,
                "logprobs": logprobs,
                "surprise": [-lp / 0.6931471805599453 for lp in logprobs],
                "nats": nats,
                "bpc": nats / 0.6931471805599453,
                "total_nats": -sum(logprobs),
            }
        )

    async def inspect(self, request: Request) -> Response:
        body = await request.json()
        page = "<!DOCTYPE html><title>charseq report: stand-in</title><pre id=t></pre>"
        return HTMLResponse(page + f"<p id=n>{len(body['text'])}</p>")


@pytest.fixture(scope="module")
def stand_in() -> Iterator[tuple[StandIn, str]]:
    server = StandIn()
    with live_server(server.app) as url:
        yield server, url


# -- driving the page --------------------------------------------------------------------------


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.05)


def open_app(browser: Any, url: str) -> None:
    browser.get_log("browser")
    browser.set_window_size(1280, 1400)
    browser.get(url)
    wait_for(lambda: state(browser) == "idle", what="the page to start")
    wait_for(lambda: models_listed(browser), what="the models")


def state(browser: Any) -> str | None:
    return browser.execute_script("return document.body.dataset.state")


def models_listed(browser: Any) -> int:
    return browser.execute_script("return document.getElementById('model').options.length")


def text_of(browser: Any, id_: str) -> str:
    return browser.execute_script(f"return document.getElementById('{id_}').textContent")


def fill(browser: Any, id_: str, value: str) -> None:
    """Set a field as typing would (send_keys cannot type characters outside the BMP or CJK
    reliably in every driver): the value, then an input event."""
    browser.execute_script(
        "const f = document.getElementById(arguments[0]); f.value = arguments[1];"
        "f.dispatchEvent(new Event('input', {bubbles: true}));"
        "f.dispatchEvent(new Event('change', {bubbles: true}));",
        id_,
        value,
    )


def generated(browser: Any) -> str:
    """The output's text after the prime."""
    return browser.execute_script(
        "const o = document.getElementById('output'); const p = o.querySelector('.prime');"
        "return o.textContent.slice(p ? p.textContent.length : 0)"
    )


def errors(browser: Any) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


# -- the tests ---------------------------------------------------------------------------------


def test_the_page_files_are_package_data():
    html = (PAGE / "page.html").read_text("utf-8")
    assert html.count("<!--script-->") == 1 and html.count("<!--script_hash-->") == 1
    # Only the page's own script may run, and the neuron report's (its Blob URL inherits this).
    assert "script-src '<!--script_hash-->' '<!--report_hash-->';" in html
    assert "<!--" not in render_page().split("<script>", 1)[0]  # each one filled in
    assert "http://" not in html and "https://" not in html  # no CDN: works offline
    script = (PAGE / "page.js").read_text("utf-8")
    assert "</script" not in script.lower() and "<!--" not in script  # safe to inline
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "document.write" not in script and "eval(" not in script


def test_the_models_are_listed_with_their_facts(browser, stand_in):
    _, url = stand_in
    open_app(browser, url)
    options = "return [...document.getElementById('model').options].map(o => o.textContent)"
    labels = browser.execute_script(options)
    assert labels[0] == "poems \u2014 lstm 2\u00d7128, 123 k chars, 2.041 BPC"
    assert labels[1] == "tiny-gru \u2014 gru 1\u00d732"
    facts = text_of(browser, "model-facts")
    shown = ["cell lstm 2\u00d7128", "corpus 123 k chars", "val 2.041 BPC", "steps 1500"]
    assert facts == " \u00b7 ".join(shown)
    assert text_of(browser, "health") == "2 models served"
    assert errors(browser) == []


def test_an_acrostic_streams_one_line_per_character_and_ends_there(browser, stand_in, tmp_path):
    server, url = stand_in
    open_app(browser, url)
    browser.find_element("css selector", "input[value=top-k]").find_element("xpath", "..").click()
    fill(browser, "prompt", "A poem:")
    fill(browser, "acrostic", "春\n夏\n秋\n冬")
    fill(browser, "seed", "7")
    before = len(server.requests)
    browser.find_element("id", "generate").click()
    wait_for(lambda: state(browser) == "idle" and generated(browser), what="the poem")

    sent = server.requests[before]
    assert sent["prompt"] == "A poem:\n"  # the poem starts on a line of its own
    assert sent["acrostic"] == "春夏秋冬" and sent["seed"] == 7 and sent["stream"] is True
    assert sent["sampler"] == {"name": "temperature", "temperature": 0.8, "top_k": 10}
    lines = generated(browser).split("\n")
    assert lines == [c + POEM_TAIL.rstrip("\n") for c in "春夏秋冬"]  # whole characters, no more
    assert all(line[0] == c for line, c in zip(lines, "春夏秋冬", strict=True))
    assert text_of(browser, "status") == "done: the acrostic's 4 lines, 19 characters"
    assert browser.find_element("id", "score-text").get_attribute("value").startswith("A poem:\n春")
    assert errors(browser) == []
    browser.save_screenshot(str(tmp_path / "acrostic.png"))


def choose(browser: Any, name: str, value: str) -> None:
    """Click the radio button ``name=value`` (its label: the input itself is hidden)."""
    radio = browser.find_element("css selector", f"input[name={name}][value={value}]")
    radio.find_element("xpath", "..").click()


def select(browser: Any, id_: str, value: str) -> None:
    browser.execute_script(
        "const s = document.getElementById(arguments[0]); s.value = arguments[1];"
        "s.dispatchEvent(new Event('change', {bubbles: true}));",
        id_,
        value,
    )


def shown(browser: Any, id_: str) -> bool:
    return browser.find_element("id", id_).is_displayed()


def test_clause_heads_and_a_form_are_sent_as_the_api_takes_them(browser, stand_in):
    server, url = stand_in
    open_app(browser, url)
    assert not shown(browser, "template-field") and shown(browser, "acrostic-end-field")
    fill(browser, "prompt", "春曉:")
    fill(browser, "acrostic", "春夏秋冬")
    choose(browser, "heads", "clause")
    assert text_of(browser, "acrostic-unit") == "clause"
    assert not shown(browser, "acrostic-end-field")  # a clause's end is not a line's
    before = len(server.requests)

    def sent() -> dict:
        browser.find_element("id", "generate").click()
        wait_for(lambda: len(server.requests) > before and state(browser) == "idle", what="it")
        return server.requests[-1]

    clause = sent()  # by clause, no form: after the title's colon and each ，。
    assert clause["prompt"] == "春曉:" and clause["acrostic"] == "春夏秋冬"
    assert clause["acrostic_after"] == "，。:" and "form" not in clause
    select(browser, "form", "wujue")
    assert "the heads open its clauses" in text_of(browser, "form-hint")
    wujue = sent()  # with a form, the server puts the heads at its clauses
    assert wujue["form"] == "wujue" and "acrostic_after" not in wujue
    assert generated(browser) == "春风吹柳月，夏风吹柳月。秋风吹柳月，冬风吹柳月。"
    assert text_of(browser, "status") == "done: the form is filled, 24 characters"
    select(browser, "form", "custom")
    assert shown(browser, "template-field")
    fill(browser, "template", "?????\n?????\n")
    choose(browser, "heads", "line")
    fill(browser, "acrostic", "春夏")
    by_line = sent()  # by line with a form: a head after each newline, not each clause
    assert by_line["form"] == "?????\n?????\n" and by_line["acrostic_after"] == "\n"
    assert by_line["prompt"] == "春曉:\n"
    select(browser, "model", "tiny-gru")  # its vocabulary fills no named form
    disabled = "return [...document.getElementById('form').options].map(o => o.disabled)"
    assert browser.execute_script(disabled) == [False, True, True, True, True, False]
    assert browser.find_element("id", "form").get_attribute("value") == "custom"
    select(browser, "form", "")
    assert "cannot fill the greyed forms" in text_of(browser, "form-hint")
    select(browser, "model", "poems")
    fill(browser, "acrostic", "")
    assert errors(browser) == []


def test_stop_ends_a_long_generation_and_the_server_sees_it(browser, stand_in):
    server, url = stand_in
    open_app(browser, url)
    server.hung_up.clear()
    fill(browser, "prompt", "a long one")
    browser.find_element("id", "generate").click()
    wait_for(lambda: len(generated(browser)) > 30, what="some text")
    assert state(browser) == "generating"
    assert browser.find_element("id", "generate").get_attribute("disabled") == "true"
    browser.find_element("id", "stop").click()
    wait_for(lambda: state(browser) == "idle", what="the page to be idle")
    stopped = generated(browser)
    assert server.hung_up.wait(5)  # the fetch was aborted: the server's stream was cancelled
    time.sleep(0.3)
    assert generated(browser) == stopped  # and nothing more arrives
    assert text_of(browser, "status").startswith("stopped after ")
    assert browser.find_element("id", "stop").get_attribute("disabled") == "true"
    assert errors(browser) == []


def test_a_script_the_model_writes_is_shown_as_text_and_never_runs(browser, stand_in, tmp_path):
    _, url = stand_in
    open_app(browser, url)
    fill(browser, "prompt", "attack")
    browser.find_element("id", "generate").click()
    wait_for(lambda: state(browser) == "idle" and generated(browser), what="the text")
    assert generated(browser) == ATTACK
    made = "return document.querySelectorAll('#output script, #output img').length"
    assert browser.execute_script(made) == 0
    assert browser.execute_script("return window.pwned") is None
    browser.find_element("id", "score").click()  # the scored view shows it as text too
    wait_for(lambda: text_of(browser, "score-summary").endswith("on average"), what="the score")
    assert text_of(browser, "surprise") == "attack" + ATTACK
    assert browser.execute_script(made.replace("#output", "#surprise")) == 0
    assert browser.execute_script("return window.pwned") is None
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018  (an alert would be open: the script ran)
    browser.save_screenshot(str(tmp_path / "attack.png"))


def test_an_api_error_is_shown_with_the_servers_message(browser, stand_in):
    _, url = stand_in
    open_app(browser, url)
    fill(browser, "prompt", "price: ¤")
    browser.find_element("id", "generate").click()
    wait_for(lambda: browser.find_element("id", "error").is_displayed(), what="the error")
    assert text_of(browser, "error") == "the prime has 1 character outside the vocabulary: '¤'"
    assert text_of(browser, "status") == "failed after 0 characters"
    assert state(browser) == "idle"


def test_the_api_key_is_asked_for_and_sent(browser):
    server = StandIn(key="sesame")
    with live_server(server.app) as url:
        browser.get(url)
        wait_for(lambda: browser.find_element("id", "error").is_displayed(), what="the error")
        assert text_of(browser, "error") == (
            "could not list the models: this server needs an API key: Authorization: Bearer KEY"
            " (enter the server's API key below)"
        )
        assert browser.find_element("id", "settings").get_attribute("open") == "true"
        fill(browser, "api-key", "sesame")
        wait_for(lambda: models_listed(browser), what="the models")
        assert not browser.find_element("id", "error").is_displayed()
        browser.execute_script("sessionStorage.clear()")


def test_surprise_colours_each_character_and_neurons_open_the_report(browser, stand_in, tmp_path):
    _, url = stand_in
    open_app(browser, url)
    fill(browser, "score-text", "Spring 春\nrain")
    browser.find_element("id", "score").click()
    wait_for(lambda: text_of(browser, "score-summary").endswith("on average"), what="the score")
    spans = browser.find_elements("css selector", "#surprise span")
    assert len(spans) == len("Spring 春\nrain")
    assert spans[7].text == "春" and spans[8].text == "\u21b5"  # a newline made visible
    assert spans[1].get_attribute("title") == "\u201cp\u201d: 1.08 bits (p = 0.472)"
    backgrounds = {s.value_of_css_property("background-color") for s in spans}
    assert len(backgrounds) > 5  # coloured by surprise, not one colour
    assert browser.find_element("id", "scale").is_displayed()
    assert text_of(browser, "scale-high") == "\u2265 9 bits"
    browser.save_screenshot(str(tmp_path / "surprise.png"))

    page = browser.current_window_handle
    browser.find_element("id", "neurons").click()
    wait_for(lambda: len(browser.window_handles) == 2, what="the report's tab")
    report = next(h for h in browser.window_handles if h != page)
    browser.switch_to.window(report)
    try:
        wait_for(lambda: browser.title == "charseq report: stand-in", what="the report")
        assert browser.current_url.startswith("blob:")
        assert browser.find_element("id", "n").text == str(len("Spring 春\nrain"))
    finally:
        browser.close()
        browser.switch_to.window(page)


def test_the_page_fits_a_phone(browser, stand_in, tmp_path):
    _, url = stand_in
    open_app(browser, url)
    browser.set_window_size(390, 1400)
    try:
        wide = browser.execute_script(
            "return document.documentElement.scrollWidth > document.documentElement.clientWidth"
        )
        assert not wide  # nothing sticks out sideways
        browser.save_screenshot(str(tmp_path / "phone.png"))
    finally:
        browser.set_window_size(1280, 1400)


# -- against the real server -------------------------------------------------------------------

POEMS = (  # two public-domain poems by Li Bai and Meng Haoran: short lines, a small vocabulary
    "床前明月光\n疑是地上霜\n举头望明月\n低头思故乡\n\n春眠不觉晓\n处处闻啼鸟\n夜来风雨声\n花落知多少\n\n"
)


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Iterator[tuple[Any, Any, str]]:
    """``charseq serve`` (the app of charseq.serve) over a tiny run trained on :data:`POEMS`,
    live on a free port; yields the app's service, the run's pipeline and the URL."""
    from charseq import Pipeline
    from charseq.serve.app import create_app
    from charseq.serve.models import load_models

    run = tmp_path_factory.mktemp("runs") / "poems"
    spec = {
        "cell": {"name": "lstm", "hidden_size": 24, "num_layers": 1},
        "train": {"steps": 30, "batch_size": 4, "seq_len": 16, "eval_every": 30},
    }
    Pipeline.from_spec(spec, device="cpu").fit(POEMS * 20, out=run)
    models = load_models([f"poems={run}"])
    app = create_app(models, max_new_tokens=100_000)
    with live_server(app) as url:
        yield app.state.service, models["poems"].pipe, url


def test_the_real_server_writes_the_acrostic_the_library_writes(browser, real, tmp_path):
    _, pipe, url = real
    open_app(browser, url)
    assert text_of(browser, "model-facts").startswith("cell lstm 1\u00d724 \u00b7 corpus ")
    fill(browser, "acrostic", "春\n夜\n花\n月")
    fill(browser, "seed", "3")
    browser.find_element("id", "generate").click()
    wait_for(lambda: state(browser) == "idle" and generated(browser), what="the poem")
    assert errors(browser) == []
    lines = generated(browser).split("\n")
    assert [line[:1] for line in lines] == list("春夜花月")
    sampler = {"name": "temperature", "temperature": 0.8}
    same = pipe.generate("", max_new_tokens=300, sampler=sampler, seed=3, acrostic="春夜花月")
    assert same.startswith(generated(browser) + "\n")  # character for character, CJK whole
    browser.save_screenshot(str(tmp_path / "poem.png"))


def test_stop_ends_the_real_servers_generation(browser, real):
    service, _, url = real
    open_app(browser, url)
    fill(browser, "prompt", "春")
    fill(browser, "length", "100000")
    browser.find_element("id", "generate").click()
    wait_for(lambda: len(generated(browser)) > 40, what="some text")
    browser.find_element("id", "stop").click()
    wait_for(lambda: state(browser) == "idle", what="the page to be idle")
    wait_for(lambda: service.limiter.running == 0, timeout=5, what="the generation to end")
    stopped = generated(browser)
    assert len(stopped) < 100_000
    time.sleep(0.3)
    assert generated(browser) == stopped
    assert text_of(browser, "status") == f"stopped after {len(stopped)} characters"


def test_the_real_score_and_neuron_report(browser, real, tmp_path):
    _, pipe, url = real
    open_app(browser, url)
    text = "床前明月光\n疑是地上霜\n"
    fill(browser, "score-text", text)
    browser.find_element("id", "score").click()
    wait_for(lambda: text_of(browser, "score-summary").endswith("on average"), what="the score")
    assert len(browser.find_elements("css selector", "#surprise span")) == len(text)
    bpc = pipe.score(text).bpc
    assert (
        text_of(browser, "score-summary")
        == f"{len(text)} characters, {bpc:.3f} bits each on average"
    )

    page = browser.current_window_handle
    browser.find_element("id", "neurons").click()
    wait_for(lambda: len(browser.window_handles) == 2, what="the report's tab")
    browser.switch_to.window(next(h for h in browser.window_handles if h != page))
    try:
        wait_for(lambda: browser.title.startswith("charseq report"), what="the report")
        spans = "return document.querySelectorAll('#text span.t').length"
        wait_for(lambda: browser.execute_script(spans) == len(text), what="the report's text")
        assert errors(browser) == []  # its own script ran, under its own policy
        browser.save_screenshot(str(tmp_path / "report.png"))
    finally:
        browser.close()
        browser.switch_to.window(page)


def test_beam_search_from_the_page_is_the_librarys(browser, real):
    _, pipe, url = real
    open_app(browser, url)
    browser.find_element("css selector", "input[value=beam]").find_element("xpath", "..").click()
    assert browser.find_element("id", "beams").is_displayed()
    assert not browser.find_element("id", "temperature").is_displayed()
    fill(browser, "beams", "3")
    fill(browser, "prompt", "床前")
    fill(browser, "length", "40")
    browser.find_element("id", "generate").click()
    wait_for(lambda: state(browser) == "idle" and generated(browser), what="the beams' text")
    sampler = {"name": "beam", "num_beams": 3}
    assert generated(browser) == pipe.generate("床前", max_new_tokens=40, sampler=sampler)
    assert errors(browser) == []


@pytest.fixture(scope="module")
def verse_server(tmp_path_factory) -> Iterator[tuple[Any, str]]:
    """``charseq serve`` over a tiny run trained on made-up quatrains in tensorflow_poems'
    format (``題{i}:`` and four clauses ended by ，。，。); yields its pipeline and the URL."""
    from charseq import Pipeline
    from charseq.serve.app import create_app
    from charseq.serve.models import load_models
    from tests._helpers import quatrains

    run = tmp_path_factory.mktemp("runs") / "verse"
    spec = {
        "cell": {"name": "lstm", "hidden_size": 24, "num_layers": 1},
        "train": {"steps": 30, "batch_size": 4, "seq_len": 16, "eval_every": 30},
    }
    Pipeline.from_spec(spec, device="cpu").fit(quatrains(), out=run)
    models = load_models([f"verse={run}"])
    with live_server(create_app(models)) as url:
        yield models["verse"].pipe, url


def test_the_page_writes_a_cangtoushi_in_a_form(browser, verse_server, tmp_path):
    from charseq.constraints import FORMS, fits

    pipe, url = verse_server
    open_app(browser, url)
    fill(browser, "prompt", "題1:")
    fill(browser, "acrostic", "春\n夏\n秋\n冬")
    choose(browser, "heads", "clause")
    select(browser, "form", "wujue")
    fill(browser, "seed", "3")
    browser.find_element("id", "generate").click()
    wait_for(lambda: state(browser) == "idle" and generated(browser), what="the poem")
    assert errors(browser) == []
    poem = generated(browser)
    assert fits(poem, FORMS["wujue"])  # four clauses of five, punctuated ，。，。, then the end
    assert [clause[0] for clause in poem.replace("。", "，").split("，")[:4]] == list("春夏秋冬")
    sampler = {"name": "temperature", "temperature": 0.8}
    same = pipe.generate("題1:", 300, sampler=sampler, seed=3, acrostic="春夏秋冬", form="wujue")
    assert poem == same
    assert text_of(browser, "status") == "done: the form is filled, 24 characters"
    browser.save_screenshot(str(tmp_path / "cangtoushi.png"))
