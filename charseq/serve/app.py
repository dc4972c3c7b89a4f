"""The web app of ``charseq serve``: an ASGI app (Starlette) with an OpenAI-compatible API and a
page for people.

Routes:

- ``GET /``: the page. The app reads ``charseq/serve/page.html`` (package data) and replaces
  ``<!--script-->`` in it with the text of ``charseq/serve/page.js`` and ``<!--script_hash-->``
  with that script's ``sha256-...`` digest, for a Content-Security-Policy that allows only that
  inline script (as the report page of ``charseq inspect --html`` does), and
  ``<!--report_hash-->`` with the digest of the report's script (the report the page opens from
  a Blob URL inherits the page's policy). Until the page exists a
  placeholder says so.
- ``GET /healthz``: ``{"status": "ok", "models": [names]}``.
- ``GET /v1/models``: OpenAI's model list, each model's ``charseq`` object beside
  (:func:`charseq.serve.models.describe`).
- ``POST /v1/completions``: OpenAI's completions, streamed as server-sent events when asked
  (:mod:`charseq.serve.openai_api`).
- ``POST /v1/score``: ``{"model", "text", "prime"?, "unknown"?}`` -> per-token ``logprobs`` and
  ``surprise`` (``-logprob``, nats), and ``nats``, ``bpc``, ``total_nats``.
- ``POST /v1/inspect``: ``{"model", "text", "unknown"?}`` -> the report page (``text/html``) of
  :func:`charseq.inspect.report.render_report`, with the unit search and gate statistics.

With an API key every ``/v1/`` route needs ``Authorization: Bearer KEY``; ``/`` and
``/healthz`` do not (the page asks for the key and sends it). Work runs in worker threads under
a :class:`~charseq.serve.limits.Limiter`; refusals are OpenAI's error objects
(:mod:`charseq.serve.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from charseq.errors import CharseqError
from charseq.inspect import find_units, gate_saturation
from charseq.inspect.report import csp_hash, render_report
from charseq.pipeline import Pipeline
from charseq.requests import encode_text
from charseq.serve import openai_api
from charseq.serve.errors import ApiError, from_library
from charseq.serve.limits import MAX_BODY_BYTES, Limiter
from charseq.serve.logprobs import LogprobTracker, merge
from charseq.serve.models import ServedModel, serve_pipelines
from charseq.serve.openai_api import CompletionRequest, optional_str, required_str

__all__ = ["Service", "create_app"]

log = logging.getLogger("charseq.serve")

MAX_PROMPT_CHARS = 100_000
"""The longest prompt, or text to score, a request may send (characters)."""
MAX_INSPECT_CHARS = 5_000
"""The longest text ``/v1/inspect`` reads: its page holds every unit's value per character."""
STREAM_AHEAD = 4
"""How many pieces a streamed generation may make before the client has been sent them: what
it runs on after a client goes away, at most."""

HEARTBEAT_SECONDS = 0.25
"""How long a stream waits with nothing to send before it writes an SSE comment: the server
notices that a client has gone away only when a write fails."""


class Service:
    """What the app serves and how much: the models, the key, the limits."""

    def __init__(
        self,
        models: Mapping[str, ServedModel],
        *,
        api_key: str | None = None,
        concurrency: int = 2,
        queue: int = 16,
        max_new_tokens: int = 2000,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_prompt_chars: int = MAX_PROMPT_CHARS,
        max_inspect_chars: int = MAX_INSPECT_CHARS,
    ) -> None:
        self.models = dict(models)
        self.api_key = api_key or None
        self.limiter = Limiter(concurrency, queue)
        self.max_new_tokens = max_new_tokens
        self.max_body_bytes = max_body_bytes
        self.max_prompt_chars = max_prompt_chars
        self.max_inspect_chars = max_inspect_chars

    def model(self, name: str) -> ServedModel:
        """The model served as ``name``, or a 404 listing the names served."""
        served = self.models.get(name)
        if served is None:
            raise ApiError(
                404,
                f"model {name!r} is not served here; the models are: {', '.join(self.models)}",
                param="model",
                code="model_not_found",
            )
        return served

    def check_key(self, request: Request) -> None:
        """401 unless the request carries this server's key (when it has one)."""
        if self.api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.api_key.encode()
        ):
            what = "a wrong API key" if given else "no API key"
            raise ApiError(
                401,
                f"this server needs an API key ({what} was given): send the header "
                "'Authorization: Bearer KEY'",
                type="authentication_error",
                code="invalid_api_key",
            )

    async def read_json(self, request: Request) -> dict[str, Any]:
        """The request's JSON object, read up to :attr:`max_body_bytes` (413 beyond)."""
        too_large = ApiError(
            413,
            f"the request body is larger than this server reads ({self.max_body_bytes} bytes)",
            code="body_too_large",
        )
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            raise too_large
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > self.max_body_bytes:
                raise too_large
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise ApiError(400, f"the body is not JSON: {error}", code="invalid_json") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_json")
        return data


Handler = Callable[[Service, Request], Awaitable[Response]]


def _endpoint(handler: Handler, *, keyed: bool) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` as a route: the key checked (``keyed``), refusals as OpenAI's errors, and a
    model's own failure a 500 for that request alone."""

    async def endpoint(request: Request) -> Response:
        service: Service = request.app.state.service
        try:
            if keyed:
                service.check_key(request)
            return await handler(service, request)
        except ApiError as error:
            return error_response(error)
        except CharseqError as error:
            return error_response(from_library(error))
        except Exception as error:  # a model's, a plugin's failure: this request's alone
            log.exception("request failed: %s %s", request.method, request.url.path)
            return error_response(model_failure(error))

    return endpoint


async def _http_error(request: Request, error: Exception) -> Response:
    """Starlette's own refusals (no such route, a wrong method) in OpenAI's shape."""
    assert isinstance(error, HTTPException)
    return error_response(
        ApiError(
            error.status_code,
            f"{request.method} {request.url.path}: {error.detail}",
            code="not_found" if error.status_code == 404 else None,
        )
    )


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def model_failure(error: BaseException) -> ApiError:
    """A 500 for an error the library did not raise on purpose (a plugin sampler's bug)."""
    return ApiError(
        500,
        f"the model failed on this request: {type(error).__name__}: {error}",
        type="server_error",
        code="model_error",
    )


# -- the routes ----------------------------------------------------------------------------------


async def healthz(service: Service, request: Request) -> Response:
    return JSONResponse({"status": "ok", "models": list(service.models)})


async def list_models(service: Service, request: Request) -> Response:
    data = [
        {
            "id": name,
            "object": "model",
            "created": served.created,
            "owned_by": "charseq",
            "charseq": served.info,
        }
        for name, served in service.models.items()
    ]
    return JSONResponse({"object": "list", "data": data})


async def completions(service: Service, request: Request) -> Response:
    body = await service.read_json(request)
    req = openai_api.parse_completion(
        body, max_tokens_cap=service.max_new_tokens, max_prompt_chars=service.max_prompt_chars
    )
    served = service.model(req.model)
    if req.stream:
        return await _stream_completion(service, served, req)
    result = await service.limiter.run(_complete, served.pipe, req)
    return JSONResponse(openai_api.completion(openai_api.completion_id(), served.name, **result))


def _complete(pipe: Pipeline, req: CompletionRequest) -> dict[str, Any]:
    """A whole completion (in a worker thread): the choices and the token counts."""
    texts = pipe.generate(
        req.prompt,
        req.max_tokens,
        num_samples=req.n if req.n > 1 else None,
        **req.generate_kwargs(pipe),
    )
    texts = [texts] if isinstance(texts, str) else texts
    choices = []
    for i, text in enumerate(texts):
        logprobs = None
        if req.logprobs is not None:
            logprobs = LogprobTracker(pipe, req.prompt, req.logprobs, req.unknown).add(text)
        reason = openai_api.finish_reason(text, req.stop, req.form)
        choices.append(openai_api.choice(i, text, logprobs, reason))
    return {
        "choices": choices,
        "prompt_tokens": _count(pipe, req.prompt, req.unknown),
        "completion_tokens": sum(_count(pipe, text) for text in texts),
    }


def _count(pipe: Pipeline, text: str, unknown: str | None = None) -> int:
    """How many tokens ``text`` is, for ``usage`` (its length if it does not encode)."""
    try:
        ids = encode_text(
            pipe.tokenizer, text, what="text", unknown=unknown, normalize=pipe.normalize
        )
        return len(ids)
    except CharseqError:
        return len(text)


class _StreamWork:
    """A streamed generation in a worker thread, handing its pieces to the event loop.

    The thread makes at most :data:`STREAM_AHEAD` pieces more than the client has been sent
    (``room``), and ``cancel`` (set when the client goes away) ends the generation at its next
    step, a beam search's included (it yields its one piece only at the end).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.room = threading.Semaphore(STREAM_AHEAD)
        self.cancel = threading.Event()
        self.pulled = 0  # pieces taken from the generation (for tests and logs)

    def put(self, kind: str, value: Any = None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self.loop.call_soon_threadsafe(self.items.put_nowait, (kind, value))

    def stop(self) -> None:
        """Ask the thread to stop at its next piece (from the event loop)."""
        self.cancel.set()
        self.room.release()

    def run(self, pipe: Pipeline, req: CompletionRequest) -> None:
        try:
            kwargs = req.generate_kwargs(pipe)
            pieces = pipe.stream(req.prompt, req.max_tokens, cancel=self.cancel, **kwargs)
            tracker = None
            if req.logprobs is not None:
                tracker = LogprobTracker(pipe, req.prompt, req.logprobs, req.unknown)
        except BaseException as error:  # a bad request: before any piece, a status code
            self.put("error", error)
            return
        self.put("ready")
        try:
            while True:
                self.room.acquire()
                if self.cancel.is_set():
                    break
                piece = next(pieces, None)
                if piece is None:
                    break
                self.pulled += 1
                self.put("piece", (piece, tracker.add(piece) if tracker else None))
            self.put("done")
        except BaseException as error:
            self.put("error", error)
        finally:
            pieces.close()


async def _stream_completion(
    service: Service, served: ServedModel, req: CompletionRequest
) -> Response:
    """Start the generation; once it has checked the request, stream it as server-sent events
    in OpenAI's chunk format, ending with ``data: [DONE]``."""
    await service.limiter.acquire()
    work = _StreamWork(asyncio.get_running_loop())
    service.limiter.start(work.run, served.pipe, req)
    try:
        kind, value = await work.items.get()
    except BaseException:
        work.stop()
        raise
    if kind == "error":
        raise value
    cid = openai_api.completion_id()

    async def events() -> AsyncIterator[str]:
        text = ""
        try:
            while True:
                try:
                    batch = [await asyncio.wait_for(work.items.get(), HEARTBEAT_SECONDS)]
                except TimeoutError:  # nothing new (a beam search yields only at its end):
                    yield ": working\n\n"  # an SSE comment, which clients skip; writing it
                    continue  # is how a client that has gone away is noticed
                while not work.items.empty():  # join what is ready into one chunk
                    batch.append(work.items.get_nowait())
                pieces, logprobs, end = [], [], None
                for kind, value in batch:
                    if kind == "piece":
                        work.room.release()
                        pieces.append(value[0])
                        if value[1] is not None:
                            logprobs.append(value[1])
                    else:
                        end = (kind, value)
                if pieces:
                    new = "".join(pieces)
                    text += new
                    yield _event(openai_api.chunk(cid, served.name, new, logprobs=merge(logprobs)))
                if end is None:
                    continue
                if end[0] == "error":
                    error = end[1]
                    api = from_library(error) if isinstance(error, CharseqError) else None
                    if api is None:
                        log.error("streamed generation failed", exc_info=error)
                        api = model_failure(error)
                    yield _event(api.body())
                    return
                reason = openai_api.finish_reason(text, req.stop, req.form)
                yield _event(openai_api.chunk(cid, served.name, "", finish_reason=reason))
                yield "data: [DONE]\n\n"
                return
        finally:
            work.stop()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _event(data: Mapping[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def score(service: Service, request: Request) -> Response:
    body = await service.read_json(request)
    served = service.model(required_str(body, "model"))
    text = required_str(body, "text")
    prime = optional_str(body, "prime") or ""
    unknown = optional_str(body, "unknown")
    if len(text) + len(prime) > service.max_prompt_chars:
        raise ApiError(
            413,
            f"the text and prime have {len(text) + len(prime)} characters; this server scores "
            f"at most {service.max_prompt_chars}",
            param="text",
            code="text_too_long",
        )
    result = await service.limiter.run(
        lambda: served.pipe.score(text, prime=prime, top=0, unknown=unknown)
    )
    return JSONResponse(
        {
            "model": served.name,
            "tokens": result.tokens,
            "logprobs": result.logprobs,
            "surprise": [-lp for lp in result.logprobs],
            "nats": result.nats,
            "bpc": result.bpc,
            "total_nats": result.total_nats,
        }
    )


async def inspect(service: Service, request: Request) -> Response:
    body = await service.read_json(request)
    served = service.model(required_str(body, "model"))
    text = required_str(body, "text")
    unknown = optional_str(body, "unknown")
    if len(text) > service.max_inspect_chars:
        raise ApiError(
            413,
            f"the text has {len(text)} characters; this server inspects at most "
            f"{service.max_inspect_chars} (the page holds every unit's value per character)",
            param="text",
            code="text_too_long",
        )
    page = await service.limiter.run(_report, served, text, unknown)
    return HTMLResponse(page)


def _report(served: ServedModel, text: str, unknown: str | None) -> str:
    """The report page of ``text``, as ``charseq inspect --find --html`` writes it."""
    acts = served.pipe.activations(text, unknown=unknown)
    about = {"model": f"{served.name} (step {served.pipe.steps_trained})", "text": "the request's"}
    return render_report(
        acts, findings=find_units(acts), saturation=gate_saturation(acts), about=about
    )


async def page(service: Service, request: Request) -> Response:
    return HTMLResponse(render_page(), headers={"X-Content-Type-Options": "nosniff"})


PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>charseq serve</title></head>
<body><h1>charseq serve</h1>
<p>The page is not written yet (charseq/serve/page.html). The API is up: GET /v1/models,
POST /v1/completions, POST /v1/score, POST /v1/inspect, GET /healthz.</p></body></html>
"""


@functools.cache
def render_page() -> str:
    """The page: ``page.html`` with ``page.js`` inlined, or :data:`PLACEHOLDER` until it is
    written. Built once: its files are package data."""
    files = resources.files("charseq.serve")
    template = files.joinpath("page.html")
    if not template.is_file():
        return PLACEHOLDER
    html = template.read_text("utf-8")
    script_file = files.joinpath("page.js")
    script = script_file.read_text("utf-8") if script_file.is_file() else ""
    # The neuron report opens from a Blob URL made by the page, so it runs under the page's
    # Content-Security-Policy as well as its own: the page's allows the report's script too.
    report = resources.files("charseq.inspect").joinpath("report.js").read_text("utf-8")
    return (
        html.replace("<!--script_hash-->", csp_hash(script))
        .replace("<!--report_hash-->", csp_hash(report))
        .replace("<!--script-->", script)
    )


# -- the app -------------------------------------------------------------------------------------


def create_app(
    models: Mapping[str, ServedModel] | Mapping[str, Pipeline],
    *,
    api_key: str | None = None,
    concurrency: int = 2,
    queue: int = 16,
    max_new_tokens: int = 2000,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_prompt_chars: int = MAX_PROMPT_CHARS,
    max_inspect_chars: int = MAX_INSPECT_CHARS,
) -> Starlette:
    """The ASGI app serving ``models`` (by label: :func:`~charseq.serve.models.load_models`'s,
    or pipelines in memory), with the key and limits ``charseq serve`` takes as options.

    ``app.state.service`` is the :class:`Service`; ``service.limiter.close()`` makes new work
    get 503 (``charseq serve`` calls it when asked to stop).
    """
    if models and all(isinstance(m, Pipeline) for m in models.values()):
        models = serve_pipelines(models)  # type: ignore[arg-type]
    service = Service(
        models,  # type: ignore[arg-type]
        api_key=api_key,
        concurrency=concurrency,
        queue=queue,
        max_new_tokens=max_new_tokens,
        max_body_bytes=max_body_bytes,
        max_prompt_chars=max_prompt_chars,
        max_inspect_chars=max_inspect_chars,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        service.limiter.shutdown()

    routes = [
        Route("/", _endpoint(page, keyed=False), methods=["GET"]),
        Route("/healthz", _endpoint(healthz, keyed=False), methods=["GET"]),
        Route("/v1/models", _endpoint(list_models, keyed=True), methods=["GET"]),
        Route("/v1/completions", _endpoint(completions, keyed=True), methods=["POST"]),
        Route("/v1/score", _endpoint(score, keyed=True), methods=["POST"]),
        Route("/v1/inspect", _endpoint(inspect, keyed=True), methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.service = service
    return app
