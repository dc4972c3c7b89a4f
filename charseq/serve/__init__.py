"""``charseq serve``: a web app and an OpenAI-compatible API over trained runs.

The app needs the ``serve`` extra (Starlette and uvicorn): ``pip install "charseq[serve]"``.
:func:`create_app` is imported from :mod:`charseq.serve.app` on first use, and says which extra
to install when it is missing; the modules that need no web framework (the named runs in
:mod:`~charseq.serve.models`, the limits in :mod:`~charseq.serve.limits`, the request and
response shapes in :mod:`~charseq.serve.openai_api`) import without it.
"""

from __future__ import annotations

from typing import Any

from charseq.errors import CharseqError

__all__ = ["EXTRA_MISSING", "create_app", "require_extra"]

EXTRA_MISSING = (
    "charseq serve needs the serve extra (Starlette and uvicorn), which is not installed: "
    'pip install "charseq[serve]" (from a checkout: pip install -e ".[serve]")'
)


def require_extra() -> None:
    """Raise a :class:`~charseq.errors.CharseqError` naming the extra if it is missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise CharseqError(f"{EXTRA_MISSING} ({error})") from None


def create_app(*args: Any, **kwargs: Any) -> Any:
    """:func:`charseq.serve.app.create_app`, imported on first use."""
    require_extra()
    from charseq.serve.app import create_app as create

    return create(*args, **kwargs)
