"""``charseq serve``: serve trained runs over HTTP, to a browser and to OpenAI's clients.

Each RUN is loaded once (:func:`~charseq.serve.models.load_models`) and served by uvicorn with
the app of :mod:`charseq.serve.app`. The server binds to loopback unless ``--host`` says
otherwise, and then refuses to start without an API key. Needs the ``serve`` extra.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import click

from charseq.cli._errors import clean_exits
from charseq.cli._options import device_option
from charseq.errors import CharseqError

__all__ = ["is_loopback", "serve"]

_SERVE_EPILOG = """\b
Examples:
  charseq serve runs/demo                      # http://127.0.0.1:8000/
  charseq serve poems=runs/poems/best runs/gru # two models, "poems" and "gru"
  CHARSEQ_API_KEY=secret charseq serve runs/demo --host 0.0.0.0

\b
The API is OpenAI's: GET /v1/models, POST /v1/completions (stream: true for server-sent
events); and POST /v1/score, POST /v1/inspect, GET /healthz. docs/how-to/serve.md has the
details (limits, the key, a reverse proxy).
"""


@click.command(epilog=_SERVE_EPILOG)
@click.argument("runs", nargs=-1, metavar="RUN...")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--concurrency",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Generations run at once (each in its own thread).",
)
@click.option(
    "--queue",
    default=16,
    show_default=True,
    type=click.IntRange(min=0),
    help="Requests that may wait for a free generation; beyond that, 429 with Retry-After.",
)
@click.option(
    "--max-new-tokens",
    default=2000,
    show_default=True,
    type=click.IntRange(min=1),
    help="The most characters one completion may ask for (max_tokens); more is refused, 413.",
)
@click.option(
    "--api-key",
    envvar="CHARSEQ_API_KEY",
    default=None,
    help="Key every /v1/ request must send (Authorization: Bearer KEY); env CHARSEQ_API_KEY. "
    "Required when --host is not a loopback address.",
)
@device_option()
@clean_exits
def serve(
    runs: tuple[str, ...],
    host: str,
    port: int,
    concurrency: int,
    queue: int,
    max_new_tokens: int,
    api_key: str | None,
    device: str | None,
) -> None:
    """Serve each RUN (a run directory or checkpoint; NAME=PATH to label it) over HTTP: a page
    at / and an OpenAI-compatible API under /v1/."""
    from charseq.serve import require_extra

    require_extra()
    if not runs:
        raise CharseqError(
            "name the runs to serve: charseq serve RUN [RUN ...], each a run directory or a "
            "checkpoint (e.g. charseq serve runs/demo after ./scripts/demo), or NAME=PATH to "
            "choose its label; nothing is trained here"
        )
    if not api_key and not is_loopback(host):
        raise CharseqError(
            f"--host {host} can be reached from other machines: give an API key (--api-key KEY "
            "or CHARSEQ_API_KEY) that clients send as 'Authorization: Bearer KEY', or serve on "
            "127.0.0.1"
        )
    import uvicorn

    from charseq.serve.app import create_app
    from charseq.serve.models import load_models

    models = load_models(list(runs), device=device)
    app = create_app(
        models,
        api_key=api_key,
        concurrency=concurrency,
        queue=queue,
        max_new_tokens=max_new_tokens,
    )
    for name, served in models.items():
        info = served.info
        click.echo(
            f"{name}: {info['cell']} {info['num_layers']}x{info['hidden_size']}, step "
            f"{info['steps']}, on {served.pipe.device}",
            err=True,
        )
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"serving on http://{shown}:{port}/ (Ctrl-C stops)", err=True)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    service = app.state.service

    class Server(uvicorn.Server):
        """uvicorn's server, which first makes the app refuse new work (503) when asked to
        stop, then stops as uvicorn does: requests in flight finish."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            service.limiter.close()
            super().handle_exit(sig, frame)

    Server(config).run()


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine alone: ``localhost``,
    ``127.x.x.x``, ``::1``. A name that resolves elsewhere, or not at all, is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses
    )
