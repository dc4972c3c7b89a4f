"""OpenAI's completions API in charseq's terms: a request body read into the arguments of
:meth:`Pipeline.generate <charseq.Pipeline.generate>` / :meth:`~charseq.Pipeline.stream`,
and the response and stream-chunk shapes OpenAI's clients read back.

OpenAI's fields map to charseq's: ``prompt`` is the prime, ``max_tokens`` is
``max_new_tokens``, ``n`` is ``num_samples``, and ``temperature``, ``top_p`` with charseq's own
``top_k``, ``min_p``, ``repetition_penalty`` and ``num_beams`` become one sampler table exactly
as ``charseq sample``'s flags do (the model's own sampler with those options changed, or the
``sampler`` named), so a request with a ``seed`` gives the text ``charseq sample`` gives with
the same seed and options. ``temperature: 0`` means greedy decoding, as OpenAI's clients
expect. ``stop``, ``seed``, ``acrostic``, ``acrostic_after``, ``form``, ``allowed`` and
``unknown`` pass through, and ``constraints`` (a list of constraint plugins, each a name or an
object with a ``name`` and options) is built by the model's registry, as ``charseq sample
--constraint`` builds it; a completion a form ends, as a stop string does, finishes with
``"stop"``.

Fields this server cannot honour (``echo``, ``suffix``, ``best_of`` above 1, presence and
frequency penalties, ``logit_bias``) are refused when set to anything but their defaults, and
unknown fields are refused by name, so a client never gets a completion that quietly ignored
what it asked for.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

import attrs

from charseq.checks import is_int, is_number
from charseq.constraints import Constraint, build_constraint, template_of
from charseq.errors import CharseqError, did_you_mean
from charseq.interfaces import UNKNOWN_POLICIES
from charseq.pipeline import Pipeline
from charseq.serve.errors import ApiError
from charseq.serve.logprobs import MAX_TOP_LOGPROBS

__all__ = [
    "MAX_CONSTRAINTS",
    "MAX_N",
    "CompletionRequest",
    "chunk",
    "completion",
    "completion_id",
    "optional_str",
    "parse_completion",
    "required_str",
]

MAX_N = 16
"""The most completions one request may ask for (``n``)."""
MAX_CONSTRAINTS = 16
"""The most constraint plugins one request may name (``constraints``)."""

SAMPLER_FLAGS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty", "num_beams")
"""The request fields that become options of the sampler table, as ``charseq sample``'s flags."""

_PASSED = (
    "stop",
    "seed",
    "acrostic",
    "acrostic_after",
    "form",
    "constraints",
    "allowed",
    "unknown",
)
_OWN = ("model", "prompt", "max_tokens", "n", "stream", "logprobs", "sampler")
_IGNORED = ("user", "stream_options")  # nothing to do with them
_DEFAULTS: dict[str, tuple[Any, ...]] = {  # honoured only at their default
    "echo": (False, None),
    "suffix": (None, ""),
    "best_of": (None, 1),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
}
KNOWN_FIELDS = (*_OWN, *SAMPLER_FLAGS, *_PASSED, *_IGNORED, *_DEFAULTS)


@attrs.frozen(kw_only=True)
class CompletionRequest:
    """A ``POST /v1/completions`` body, checked: each field as OpenAI or charseq names it."""

    model: str
    prompt: str = ""
    max_tokens: int = 16
    n: int = 1
    stream: bool = False
    logprobs: int | None = None
    sampler: str | dict[str, Any] | None = None
    flags: dict[str, Any] = attrs.field(factory=dict)  # SAMPLER_FLAGS that were given
    stop: str | list[str] | None = None
    seed: int | None = None
    acrostic: str | None = None
    acrostic_after: str | None = None
    form: str | None = None
    constraints: tuple[str | dict[str, Any], ...] = ()
    allowed: str | None = None
    unknown: str | None = None

    def sampler_table(self, pipe: Pipeline) -> dict[str, Any]:
        """The sampler table to pass as ``sampler=...``, as ``charseq sample`` makes it from
        its flags: the named sampler (``beam`` when ``num_beams`` is given and the model's is
        another; ``greedy`` for ``temperature: 0``), else the model's own, with the flags'
        options set on it. The registry checks the options when it builds the sampler."""
        flags = dict(self.flags)
        name: str | None = None
        table: dict[str, Any]
        if isinstance(self.sampler, dict):
            table = dict(self.sampler)
        elif isinstance(self.sampler, str):
            table = {"name": self.sampler}
        else:
            if flags.get("temperature") == 0:  # OpenAI's way of asking for greedy decoding
                unused = [k for k in ("repetition_penalty", "num_beams") if k in flags]
                if unused:
                    raise ApiError(
                        400,
                        f"temperature 0 means greedy decoding, which has no {unused[0]}: give a "
                        "temperature above 0, or sampler 'beam' for beam search",
                        param=unused[0],
                    )
                return {"name": "greedy"}
            if "num_beams" in flags and pipe.spec.sampler.name != "beam":
                name = "beam"  # num_beams means beam search, as --num-beams does
            table = {"name": name} if name else pipe.sampler_section()
        table.update(flags)
        return table

    def generate_kwargs(self, pipe: Pipeline) -> dict[str, Any]:
        """The keyword arguments of ``pipe.generate`` / ``pipe.stream`` (but ``num_samples``)."""
        return {
            "sampler": self.sampler_table(pipe),
            "seed": self.seed,
            "stop": self.stop,
            "allowed": self.allowed,
            "acrostic": self.acrostic,
            "acrostic_after": self.acrostic_after,
            "form": self.form,
            "constraints": self.built_constraints(pipe),
            "unknown": self.unknown,
        }

    def built_constraints(self, pipe: Pipeline) -> list[Constraint]:
        """The ``constraints`` built by ``pipe``'s registry, as ``Pipeline.generate`` would
        build them (an unknown name or option is a 400 naming the field)."""
        built = []
        for i, choice in enumerate(self.constraints):
            try:
                built.append(build_constraint(choice, pipe.registry, f"constraints[{i}]"))
            except CharseqError as error:
                raise ApiError(
                    400, str(error), param="constraints", code=type(error).__name__
                ) from None
        return built


def parse_completion(
    body: Mapping[str, Any], *, max_tokens_cap: int, max_prompt_chars: int
) -> CompletionRequest:
    """Check a completions request body field by field.

    Raises:
        ApiError: 400 naming the field at fault (an unknown field, a wrong type, a value out of
            range, a field this server cannot honour), 413 for a prompt longer than
            ``max_prompt_chars`` or ``max_tokens`` above ``max_tokens_cap``.
    """
    for key in body:
        if key not in KNOWN_FIELDS:
            raise ApiError(
                400,
                f"unknown field {key!r}{did_you_mean(key, KNOWN_FIELDS)}",
                param=key,
                code="unknown_field",
            )
    for key, defaults in _DEFAULTS.items():
        if key in body and not any(body[key] == d and type(body[key]) is type(d) for d in defaults):
            raise ApiError(
                400,
                f"{key} is not supported by charseq serve (only its default, "
                f"{defaults[-1]!r}); leave it out",
                param=key,
                code="unsupported_field",
            )
    prompt = body.get("prompt", "")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(
            400,
            "prompt must be a string (or a list of one string; token ids are not supported)",
            param="prompt",
        )
    if len(prompt) > max_prompt_chars:
        raise ApiError(
            413,
            f"the prompt has {len(prompt)} characters; this server reads at most "
            f"{max_prompt_chars}",
            param="prompt",
            code="prompt_too_long",
        )
    max_tokens = _int(body, "max_tokens", 16, minimum=0)
    if max_tokens > max_tokens_cap:
        raise ApiError(
            413,
            f"max_tokens is {max_tokens}; this server makes at most {max_tokens_cap} per "
            "completion (its --max-new-tokens)",
            param="max_tokens",
            code="max_tokens_too_large",
        )
    n = _int(body, "n", 1, minimum=1)
    if n > MAX_N:
        raise ApiError(400, f"n is {n}; at most {MAX_N} completions per request", param="n")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise ApiError(400, "stream must be true or false", param="stream")
    if stream and n > 1:
        raise ApiError(
            400, "stream makes one completion: ask n=1, or leave stream out for n > 1", param="n"
        )
    logprobs = body.get("logprobs")
    if logprobs is not None:
        logprobs = _int(body, "logprobs", None, minimum=0)
        if logprobs > MAX_TOP_LOGPROBS:
            raise ApiError(
                400, f"logprobs is at most {MAX_TOP_LOGPROBS} alternatives", param="logprobs"
            )
    sampler = body.get("sampler")
    if not (sampler is None or isinstance(sampler, str | dict)):
        raise ApiError(
            400,
            'sampler must be a name ("beam") or an object with a name and options '
            '({"name": "temperature", "temperature": 0.8})',
            param="sampler",
        )
    flags = {}
    for key in SAMPLER_FLAGS:
        value = body.get(key)
        if value is None:
            continue
        if not is_number(value) or isinstance(value, bool):
            raise ApiError(400, f"{key} must be a number, got {value!r}", param=key)
        if key in ("top_k", "num_beams") and not is_int(value):
            raise ApiError(400, f"{key} must be an integer, got {value!r}", param=key)
        flags[key] = value
    if "temperature" in flags and flags["temperature"] < 0:
        raise ApiError(400, "temperature must be 0 (greedy) or more", param="temperature")
    stop = body.get("stop")
    if not (
        stop is None
        or isinstance(stop, str)
        or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise ApiError(400, "stop must be a string or a list of strings", param="stop")
    seed = body.get("seed")
    if seed is not None and not (is_int(seed) and not isinstance(seed, bool)):
        raise ApiError(400, f"seed must be an integer, got {seed!r}", param="seed")
    form = optional_str(body, "form")
    if form is not None:
        try:
            template_of(form)  # an unknown name, with the names there are
        except CharseqError as error:
            raise ApiError(400, str(error), param="form", code=type(error).__name__) from None
    unknown = optional_str(body, "unknown")
    if unknown is not None and unknown not in UNKNOWN_POLICIES:
        raise ApiError(
            400, f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}", param="unknown"
        )
    return CompletionRequest(
        model=required_str(body, "model"),
        prompt=prompt,
        max_tokens=max_tokens,
        n=n,
        stream=stream,
        logprobs=logprobs,
        sampler=sampler,
        flags=flags,
        stop=stop or None,
        seed=seed,
        acrostic=optional_str(body, "acrostic"),
        acrostic_after=optional_str(body, "acrostic_after"),
        form=form,
        constraints=constraint_choices(body),
        allowed=optional_str(body, "allowed"),
        unknown=unknown,
    )


def constraint_choices(body: Mapping[str, Any]) -> tuple[str | dict[str, Any], ...]:
    """``body["constraints"]``: a list of at most :data:`MAX_CONSTRAINTS` constraints, each a
    registered name or an object with a ``name`` and options (400 otherwise); the registry
    checks the names and options when it builds them."""
    value = body.get("constraints")
    if value is None:
        return ()
    shape = 'a list of constraints, each a name ("form") or an object with a name and options'
    if not isinstance(value, list):
        raise ApiError(400, f"constraints must be {shape}, got {value!r}", param="constraints")
    if len(value) > MAX_CONSTRAINTS:
        raise ApiError(
            400,
            f"constraints has {len(value)} entries; at most {MAX_CONSTRAINTS} per request",
            param="constraints",
        )
    for i, item in enumerate(value):
        named = item.get("name") if isinstance(item, dict) else item
        if not isinstance(named, str) or not named:
            raise ApiError(
                400,
                f"constraints[{i}] must be a name or an object with a name (a string), "
                f"got {item!r}",
                param="constraints",
            )
    return tuple(value)


def required_str(body: Mapping[str, Any], key: str) -> str:
    """``body[key]``, which must be a non-empty string (400 otherwise)."""
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{key} is required: a non-empty string", param=key)
    return value


def optional_str(body: Mapping[str, Any], key: str) -> str | None:
    """``body[key]``, a string, or None when absent or null (400 for anything else)."""
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"{key} must be a string, got {value!r}", param=key)
    return value


def _int(body: Mapping[str, Any], key: str, default: int | None, *, minimum: int) -> int:
    value = body.get(key)
    if value is None and default is not None:
        return default
    if not is_int(value) or isinstance(value, bool) or value < minimum:
        raise ApiError(400, f"{key} must be an integer >= {minimum}, got {value!r}", param=key)
    return value


def completion_id() -> str:
    """A fresh completion id, ``cmpl-`` and 24 hex digits."""
    return "cmpl-" + secrets.token_hex(12)


def completion(
    cid: str,
    model: str,
    choices: list[dict[str, Any]],
    *,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """A whole completion response, OpenAI's ``text_completion`` object."""
    return {
        "id": cid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def choice(
    index: int, text: str, logprobs: dict[str, Any] | None, finish_reason: str | None
) -> dict[str, Any]:
    """One entry of a response's or chunk's ``choices``."""
    return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish_reason}


def chunk(
    cid: str,
    model: str,
    text: str,
    *,
    logprobs: dict[str, Any] | None = None,
    finish_reason: str | None = None,
) -> dict[str, Any]:
    """One streamed chunk: the completion object with ``choices[0].text`` the new text."""
    return {
        "id": cid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice(0, text, logprobs, finish_reason)],
    }


def finish_reason(text: str, stop: str | list[str] | None, form: str | None = None) -> str:
    """``"stop"`` when ``text`` ended at a stop string or filled the ``form``, else
    ``"length"``."""
    stops = [stop] if isinstance(stop, str) else stop or []
    filled = form is not None and len(text) == len(template_of(form))
    return "stop" if filled or any(s and text.endswith(s) for s in stops) else "length"
