"""How the server says no: OpenAI's error shape, with the library's own message.

Every refusal is an :class:`ApiError`: an HTTP status and the body OpenAI's clients read,
``{"error": {"message", "type", "param", "code"}}``. :func:`from_library` turns what the
library raised on purpose (a :class:`~charseq.errors.CharseqError`: an unknown character in the
prompt, a bad sampler option) into a 400 with the library's message, which names the character,
the option or the argument, as ``charseq sample`` shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ApiError", "from_library"]

PARAM_OF_ARGUMENT = {
    "prime": "prompt",
    "max_new_tokens": "max_tokens",
    "num_samples": "n",
    "text": "text",
}
"""The library's argument names whose request field is named otherwise (OpenAI's names)."""


class ApiError(Exception):
    """A request refused: ``status``, and the fields of OpenAI's error object.

    Attributes:
        status: the HTTP status (400, 401, 404, 413, 429, 500, 503).
        message: what went wrong and what to do, for a person.
        type: OpenAI's error type (``"invalid_request_error"``, ``"authentication_error"``,
            ``"rate_limit_error"``, ``"server_error"``).
        param: the request field at fault, or None.
        code: a short machine-readable reason (``"model_not_found"``), or None.
        headers: extra response headers (``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def from_library(error: Exception) -> ApiError:
    """A 400 for an error the library raised about the request (a ``CharseqError``, or the
    ``ValueError``/``TypeError`` a sampler's options raise), with its message and notes."""
    message = " ".join([str(error), *getattr(error, "__notes__", ())])
    argument = getattr(error, "argument", None)
    param = argument if isinstance(argument, str) else None
    if param is None:
        param = getattr(error, "path", None) or None  # a SpecError: sampler.top_k
        if param is not None:
            param = str(param)
    return ApiError(
        400,
        message,
        param=PARAM_OF_ARGUMENT.get(param, param) if param else None,
        code=type(error).__name__,
    )
