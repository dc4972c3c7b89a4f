"""What a caller asks of a trained pipeline: a generation (the arguments of
:meth:`Pipeline.generate` / :meth:`Pipeline.stream`), a score or an evaluation of a text,
checked and prepared before any work starts; and encoding a user's text (a prime, a text to
score) with the unknown-character policy asked for.

:class:`GenerationRequest` holds what the caller asked for, by keyword;
:meth:`GenerationRequest.prepare` checks it against a model and tokenizer and returns the
:class:`~charseq.streaming.Generation` that runs it.
"""

from __future__ import annotations

import copy
import functools
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import torch

from charseq.assemble import build_sampler
from charseq.checks import (
    is_int,
    require_at_most,
    require_choice,
    require_int,
    require_str,
    short_repr,
)
from charseq.constraints import (
    Constraint,
    ConstraintChoice,
    Constraints,
    GenerationError,
    build_constraint,
)
from charseq.dynamic_eval import DynamicEvalOptions
from charseq.errors import CharseqError, UnknownCharacterError, warn
from charseq.inspect.activations import Activations, record_activations
from charseq.interfaces import UNKNOWN_POLICIES, Sampler, Tokenizer
from charseq.model import CharModel
from charseq.plugin_records import OWN_SAMPLER, StandIns
from charseq.registry import Registry, get_registry
from charseq.scoring import Score, evaluate_ids, score_ids
from charseq.spec import PipelineSpec
from charseq.streaming import Generation

MAX_NEW_TOKENS = 1_000_000
"""The most tokens one ``generate`` / ``stream`` call makes (a guard against a mistyped length)."""
MAX_NUM_SAMPLES = 1_000_000
"""The most samples one ``generate`` call makes as a batch (a guard against a mistyped count)."""

SamplerChoice = Sampler | str | Mapping[str, Any] | None
"""A sampler as a caller names it: ``None`` (the spec's), a name, a table or a :class:`Sampler`."""


@attrs.frozen(kw_only=True)
class GenerationRequest:
    """What a caller asked :meth:`~charseq.Pipeline.generate` or
    :meth:`~charseq.Pipeline.stream` for (see there for each argument); ``num_samples`` is the
    batch size (1 for one sample)."""

    prime: str = ""
    max_new_tokens: int = 200
    sampler: SamplerChoice = None
    seed: int | None = None
    num_samples: int = 1
    stop: str | Sequence[str] | None = None
    allowed: str | None = None
    acrostic: str | None = None
    acrostic_after: str | None = None
    form: str | None = None
    constraints: Sequence[ConstraintChoice] = ()
    unknown: str | None = None

    def prepare(
        self,
        model: CharModel,
        tokenizer: Tokenizer,
        *,
        device: torch.device,
        normalize: str | None,
        resolve_sampler: Callable[[SamplerChoice], Sampler],
        registry: Registry | None = None,
    ) -> Generation:
        """Check the request and prepare it, before any generation: the prime encoded (as the
        corpus was normalised), the sampler resolved, the constraints built (plugins from
        ``registry``) and compiled.

        Raises:
            GenerationError: a bad length, count, seed, prime, sampler or constraint.
            UnknownCharacterError: the prime has characters outside the vocabulary and the
                policy is ``"error"``.
        """
        self._check()
        sampler = resolve_sampler(self.sampler)
        batch = self.num_samples
        if batch > 1 and sampler.deterministic:
            warn(
                f"{type(sampler).__name__} is deterministic: the {batch} samples from one "
                "prime are identical (beam search's num_return_sequences gives different "
                "sequences)"
            )
        prime_ids = encode_text(
            tokenizer, self.prime, what="the prime", unknown=self.unknown, normalize=normalize
        )
        constraints = Constraints(
            stop=self.stop,
            allowed=self.allowed,
            acrostic=self.acrostic,
            acrostic_after=self.acrostic_after,
            form=self.form,
            extra=self._extra_constraints(registry),
        )
        compiled = constraints.compile(tokenizer, self.prime) if constraints.active else None
        generator = None
        if self.seed is not None:
            generator = torch.Generator(device=device).manual_seed(self.seed)
        return Generation(
            model,
            torch.tensor(prime_ids, dtype=torch.long),
            sampler,
            generator,
            compiled,
            batch,
        )

    def _extra_constraints(self, registry: Registry | None) -> list[Constraint]:
        choices = self.constraints
        if isinstance(choices, str | Mapping | Constraint):
            choices = [choices]  # one constraint, not a list of them
        if not isinstance(choices, Sequence):
            raise GenerationError(
                "constraints must be a list of constraints (names, tables or Constraint "
                f"objects), got {type(choices).__name__}"
            )
        registry = get_registry(registry) if choices else registry
        return [
            build_constraint(choice, registry, f"constraints[{i}]")  # type: ignore[arg-type]
            for i, choice in enumerate(choices)
        ]

    def _check(self) -> None:
        require_int(self.max_new_tokens, "max_new_tokens", error=GenerationError)
        if not 0 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise GenerationError(
                f"max_new_tokens must be in [0, {MAX_NEW_TOKENS}] (MAX_NEW_TOKENS, a guard "
                f"against a mistyped length), got {short_repr(self.max_new_tokens)}"
            )
        require_int(self.num_samples, "num_samples", min=1, error=GenerationError)
        require_at_most(
            self.num_samples,
            "num_samples",
            MAX_NUM_SAMPLES,
            why=" (MAX_NUM_SAMPLES, a guard against a mistyped count)",
            error=GenerationError,
        )
        seed = self.seed
        if seed is not None and not (is_int(seed) and 0 <= seed < 1 << 63):
            raise GenerationError(
                f"seed must be an int in [0, 2**63) (as train.seed), got {type(seed).__name__} "
                f"{short_repr(seed)}"
            )
        require_str(self.prime, "prime", error=GenerationError)


def resolve_sampler(
    sampler: SamplerChoice, spec: PipelineSpec, registry: Registry, stand_ins: StandIns
) -> Sampler:
    """The sampler a caller chose: ``spec``'s for ``None`` (refused when it only stands in for
    an absent plugin's), built from a name or table, or the :class:`Sampler` given."""
    if isinstance(sampler, Sampler):
        return sampler
    if sampler is None:
        stand_ins.require("sampler", spec, OWN_SAMPLER)
        return build_sampler(spec.sampler, registry)
    section = PipelineSpec.from_dict({"sampler": sampler_table(sampler)}, registry).sampler
    return build_sampler(section, registry)


def score_text(
    model: CharModel,
    tokenizer: Tokenizer,
    text: str,
    *,
    prime: str,
    top: int,
    unknown: str | None,
    normalize: str | None,
    chunk_size: int,
    unit: str,
    dynamic: bool | DynamicEvalOptions | Mapping[str, Any] = False,
    stats_text: str | None = None,
) -> Score:
    """:meth:`~charseq.Pipeline.score`: ``text`` (and ``prime``, and ``stats_text`` for
    dynamic evaluation) checked, encoded as :func:`encode_text` does, and scored by
    :func:`~charseq.scoring.score_ids`."""
    require_int(top, "top", min=0)
    options = DynamicEvalOptions.of(dynamic)
    if stats_text is not None and (options is None or options.method != "rms"):
        raise CharseqError(
            "stats_text gives the gradient statistics of dynamic evaluation's 'rms' rule; "
            "pass dynamic=True (or options with method 'rms') too, or leave it out"
        )
    ids, prime_ids = _text_and_prime(
        tokenizer, text, prime, unknown=unknown, normalize=normalize, task="score"
    )
    statistics = None
    if stats_text is not None:
        stats_ids = encode_text(
            tokenizer, stats_text, what="stats_text", unknown=unknown, normalize=normalize
        )
        statistics = torch.tensor(stats_ids, dtype=torch.long)
    return score_ids(
        model,
        torch.tensor(ids, dtype=torch.long),
        torch.tensor(prime_ids, dtype=torch.long),
        [tokenizer.decode([i]) for i in ids],
        top=top,
        chunk_size=chunk_size,
        unit=unit,
        dynamic=options,
        statistics=statistics,
    )


def inspect_text(
    model: CharModel,
    tokenizer: Tokenizer,
    text: str,
    *,
    prime: str,
    unknown: str | None,
    normalize: str | None,
) -> Activations:
    """:meth:`~charseq.Pipeline.activations`: ``text`` (and ``prime``) checked, encoded as
    :func:`encode_text` does, and run by :func:`~charseq.inspect.record_activations`."""
    ids, prime_ids = _text_and_prime(
        tokenizer, text, prime, unknown=unknown, normalize=normalize, task="inspect"
    )
    return record_activations(
        model,
        ids,
        prime_ids=prime_ids,
        tokens=[tokenizer.decode([i]) for i in ids],
        vocab=[tokenizer.decode([i]) for i in range(tokenizer.vocab_size)],
    )


def _text_and_prime(
    tokenizer: Tokenizer,
    text: str,
    prime: str,
    *,
    unknown: str | None,
    normalize: str | None,
    task: str,
) -> tuple[list[int], list[int]]:
    """The ids of a text to ``task`` (score, inspect) and of its prime, or a clear error."""
    if not isinstance(text, str):
        raise CharseqError(f"{task} needs a str, got {type(text).__name__}")
    if not text:
        raise CharseqError(f"{task} needs a non-empty text")
    encode = functools.partial(encode_text, tokenizer, unknown=unknown, normalize=normalize)
    ids = encode(text, what=f"the text to {task}")
    if not ids:
        raise CharseqError(f"{task}: nothing of the text is left once unknown characters go")
    return ids, encode(prime, what="the prime")


def evaluate_text(
    model: CharModel,
    tokenizer: Tokenizer,
    text: str,
    *,
    chunk_size: int,
    normalize: str | None,
    device: torch.device,
) -> dict[str, float]:
    """:meth:`~charseq.Pipeline.evaluate`: ``text`` encoded as :func:`encode_text` does and
    read as one stream, ``chunk_size`` tokens at a time with the state carried
    (:func:`~charseq.scoring.evaluate_ids` with one stream and no warmup), so every token after
    the first is predicted from all that precede it, in bounded memory."""
    ids = np.asarray(encode_text(tokenizer, text, what="the text to evaluate", normalize=normalize))
    if ids.size < 2:
        raise CharseqError("evaluate needs a text of at least 2 tokens")
    return evaluate_ids(model, ids, batch_size=1, seq_len=chunk_size, warmup=0, device=device)


def sampler_table(sampler: str | Mapping[str, Any]) -> dict[str, Any]:
    """A sampler named by a caller (a name, or a table with a name and options) as a spec's
    ``sampler`` table."""
    if not isinstance(sampler, str | Mapping):
        raise GenerationError(
            f"sampler must be a name, a table with a name and options, or a Sampler, got "
            f"{type(sampler).__name__} {sampler!r}"
        )
    return {"name": sampler} if isinstance(sampler, str) else dict(sampler)


def encode_text(
    tokenizer: Tokenizer,
    text: str,
    *,
    what: str,
    unknown: str | None = None,
    normalize: str | None = None,
) -> list[int]:
    """``text`` as ids: normalised as the corpus was (``normalize``), with ``unknown``
    overriding the tokenizer's policy (:func:`with_policy`).

    Raises:
        UnknownCharacterError: naming ``what`` was encoded (``"the prime"``) and how to get
            past the characters.
    """
    if unknown is not None:
        tokenizer = with_policy(tokenizer, unknown)
    if normalize and isinstance(text, str):
        text = unicodedata.normalize(normalize, text)  # as the corpus was
    try:
        return tokenizer.encode(text)
    except UnknownCharacterError as error:
        message = str(error)
        if message.startswith("the text "):  # the tokenizers' wording: say which text
            message = what + message[len("the text") :]
        else:
            message = f"{what}: {message}"
        raise UnknownCharacterError(
            f"{message} For this text alone: unknown='skip' (drop them) or unknown='replace'.",
            error.unknown,
            argument="unknown",
        ) from None


def with_policy(tokenizer: Tokenizer, unknown: str) -> Tokenizer:
    """A copy of ``tokenizer`` with its ``unknown`` policy set to ``unknown``."""
    require_choice(unknown, "unknown", UNKNOWN_POLICIES, error=GenerationError)
    state = tokenizer.state_dict()
    if "unknown" not in state:
        if unknown == "error":
            return tokenizer
        if state.get("type") == "byte":  # the byte tokenizer's state (the core imports no builtin)
            warn(
                "the byte tokenizer has no unknown characters (every text encodes, as its UTF-8 "
                f"bytes): unknown={unknown!r} changes nothing"
            )
            return tokenizer
        raise GenerationError(
            f"this tokenizer ({type(tokenizer).__name__}) has no unknown-character policy to set"
        )
    changed = copy.deepcopy(tokenizer)
    try:
        changed.load_state_dict({**state, "unknown": unknown})
        return changed
    except CharseqError:
        if unknown != "replace":
            raise
    vocab = state.get("vocab", [])  # replace with a character the model knows
    for candidate in ("\ufffd", "?", " ", "_"):
        if candidate in vocab:
            changed.load_state_dict({**state, "unknown": "replace", "replacement": candidate})
            return changed
    raise GenerationError(
        "unknown='replace' needs a replacement character in the vocabulary and this one has "
        "none of U+FFFD, '?', ' ', '_': use unknown='skip'"
    )
