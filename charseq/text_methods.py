"""What a fitted pipeline does with text: generate, stream, score and evaluate it.

:class:`TextMethods` is the half of :class:`~charseq.Pipeline` that asks a trained model for text
(as Hugging Face's models get ``generate`` from a ``GenerationMixin``): each method checks the
request (:mod:`charseq.requests`) and hands it to the module that owns the work
(:mod:`charseq.streaming`, :mod:`charseq.scoring`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from charseq.constraints import ConstraintChoice
from charseq.dynamic_eval import DynamicEvalOptions
from charseq.errors import CharseqError
from charseq.inspect.activations import Activations
from charseq.interfaces import Tokenizer
from charseq.model import CharModel
from charseq.plugin_records import OWN_SAMPLER, StandIns
from charseq.registry import Registry
from charseq.requests import (
    GenerationRequest,
    SamplerChoice,
    evaluate_text,
    inspect_text,
    resolve_sampler,
    score_text,
)
from charseq.scoring import UNITS, Score
from charseq.spec import PipelineSpec
from charseq.streaming import Generation, stream_text

__all__ = ["TextMethods"]


class TextMethods:
    """Generating, streaming, scoring and evaluating text with a pipeline's model.

    A mixin of :class:`~charseq.Pipeline`, which holds the attributes below.
    """

    spec: PipelineSpec
    tokenizer: Tokenizer
    model: CharModel | None
    registry: Registry
    device: torch.device
    normalize: str | None
    stand_ins: StandIns

    def evaluate(self, text: str, chunk_size: int = 8192) -> dict[str, float]:
        """Cross-entropy of ``text`` under the model: ``{"nats", "bpc", "tokens"}``.

        One stream, read ``chunk_size`` tokens at a time with the state carried, so every
        token after the first is predicted from all that precede it, in bounded memory.
        """
        return evaluate_text(
            self._require_model(), self.tokenizer, text, chunk_size=chunk_size,
            normalize=self.normalize, device=self.device,
        )  # fmt: skip

    # -- generation ---------------------------------------------------------------------------

    def generate(
        self,
        prime: str = "",
        max_new_tokens: int = 200,
        *,
        sampler: SamplerChoice = None,
        seed: int | None = None,
        num_samples: int | None = None,
        stop: str | Sequence[str] | None = None,
        allowed: str | None = None,
        acrostic: str | None = None,
        acrostic_after: str | None = None,
        form: str | None = None,
        constraints: Sequence[ConstraintChoice] = (),
        unknown: str | None = None,
    ) -> str | list[str]:
        """Continue ``prime`` by up to ``max_new_tokens`` tokens.

        Everything is checked before any generation starts (a bad request raises
        :class:`~charseq.constraints.GenerationError`, a ``ValueError``, or the tokenizer's
        ``UnknownCharacterError`` for the prime). Constraints compose with every sampler; see
        :mod:`charseq.constraints`.

        Args:
            prime: text to start from (consumed in one fused pass); empty starts from uniform
                odds. Characters outside the vocabulary follow the tokenizer's policy, or
                ``unknown``.
            max_new_tokens: how many tokens to add, in ``[0, MAX_NEW_TOKENS]``.
            sampler: the spec's sampler if ``None``; else a name (``"greedy"``), a dict
                (``{"name": "temperature", "temperature": 0.8}``) or a :class:`Sampler`.
            seed: makes the output reproducible on the same device.
            num_samples: when given, return a list of this many samples, made as one batch
                (at most ``MAX_NUM_SAMPLES``).
            stop: stop string(s): each text ends just after the first one it produces (the stop
                string is included, as in Hugging Face's ``stop_strings``).
            allowed: the only characters that may be generated.
            acrostic: force the first character of each line, in order (of each clause, with
                ``acrostic_after``).
            acrostic_after: the characters after which the next acrostic head is due, e.g.
                ``"，。:"`` for the clauses of Chinese verse (``:`` ends tensorflow_poems'
                titles); default a newline, or with ``form`` its clause ends.
            form: a verse form the text fills and ends with: ``"wujue"``, ``"qijue"``,
                ``"wulv"``, ``"qilv"``, or a template of free (``?``) and fixed characters
                (:mod:`charseq.constraints.forms`).
            constraints: more constraints: registered names (``"my_rhyme"``), tables with a
                name and options, or :class:`~charseq.constraints.Constraint` objects.
            unknown: ``"error"``, ``"skip"`` or ``"replace"``: override the tokenizer's policy
                for characters of the prime outside the vocabulary.

        Returns:
            The generated text (without the prime); a list of texts if ``num_samples`` is set
            or the sampler returns several sequences per sample (``num_return_sequences``).
        """
        request = GenerationRequest(
            prime=prime, max_new_tokens=max_new_tokens, sampler=sampler, seed=seed,
            num_samples=1 if num_samples is None else num_samples, stop=stop, allowed=allowed,
            acrostic=acrostic, acrostic_after=acrostic_after, form=form, constraints=constraints,
            unknown=unknown,
        )  # fmt: skip
        job = self._prepare(request)
        out = job.run(max_new_tokens)
        texts = [job.cut(self.tokenizer.decode(row.tolist())) for row in out.ids]
        return texts if num_samples is not None or len(texts) > 1 else texts[0]

    def stream(
        self,
        prime: str = "",
        max_new_tokens: int = 200,
        *,
        sampler: SamplerChoice = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        allowed: str | None = None,
        acrostic: str | None = None,
        acrostic_after: str | None = None,
        form: str | None = None,
        constraints: Sequence[ConstraintChoice] = (),
        unknown: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Like :meth:`generate` for one sample, but yield the text in pieces as it is made.

        The request is checked here, before the first piece. Joined, the pieces equal what
        :meth:`generate` returns with the same arguments and seed; closing the iterator early
        stops generation at the next token. How pieces are cut (a token each, stop strings
        held back, beam search in one piece) is in ``docs/how-to/generate.md``.

        ``cancel``: an event that, once set from any thread, ends the stream at the next step
        with no further piece, also while a search sampler (beam), which yields only at its
        end, is still working (a server sets it when its client goes away).
        """
        request = GenerationRequest(
            prime=prime, max_new_tokens=max_new_tokens, sampler=sampler, seed=seed, stop=stop,
            allowed=allowed, acrostic=acrostic, acrostic_after=acrostic_after, form=form,
            constraints=constraints, unknown=unknown,
        )  # fmt: skip
        return stream_text(self._prepare(request), self.tokenizer, max_new_tokens, cancel)

    def _prepare(self, request: GenerationRequest) -> Generation:
        sampler = functools.partial(
            resolve_sampler, spec=self.spec, registry=self.registry, stand_ins=self.stand_ins
        )
        return request.prepare(
            self._require_model(), self.tokenizer, device=self.device, normalize=self.normalize,
            resolve_sampler=sampler, registry=self.registry,
        )  # fmt: skip

    def sampler_section(self) -> dict[str, Any]:
        """The spec's sampler as a table (``name`` and options), to adjust and pass as
        ``sampler=...``; refused when it is a loaded checkpoint's sampler whose plugin is not
        installed here (another sampler must then be named)."""
        self.stand_ins.require("sampler", self.spec, OWN_SAMPLER)
        return self.spec.sampler.to_dict()

    # -- scoring ------------------------------------------------------------------------------

    def score(
        self,
        text: str,
        *,
        prime: str = "",
        top: int = 10,
        unknown: str | None = None,
        chunk_size: int = 8192,
        dynamic: bool | DynamicEvalOptions | Mapping[str, Any] = False,
        stats_text: str | None = None,
    ) -> Score:
        """How likely the model finds ``text``: per-token log-probabilities, total nats, BPC
        and the ``top`` most surprising positions (see :class:`~charseq.scoring.Score`).

        Every token of ``text`` is scored given all before it and ``prime``; without a prime
        the first token is scored under the uniform odds generation starts from.

        ``dynamic=True`` (or a dict of options, or
        :class:`~charseq.dynamic_eval.DynamicEvalOptions`) scores it with dynamic evaluation:
        the model takes a gradient step on each segment of the text once it is scored, so it
        adapts to what it has read (:mod:`charseq.dynamic_eval`; the pipeline's own model is
        not changed, and ``chunk_size`` is then unused). ``stats_text``, such as the training
        text, gives the ``"rms"`` rule its gradient statistics; without it they come from the
        first segments of ``text``. The result's ``dynamic`` holds the options used.
        """
        return score_text(
            self._require_model(), self.tokenizer, text, prime=prime, top=top, unknown=unknown,
            normalize=self.normalize, chunk_size=chunk_size,
            unit=UNITS.get(self.spec.tokenizer.name, ""),  # "": told by the token texts
            dynamic=dynamic, stats_text=stats_text,
        )  # fmt: skip

    def activations(self, text: str, *, prime: str = "", unknown: str | None = None) -> Activations:
        """Run ``text`` through the model and keep what every layer computes on it: each unit
        of each layer's output and state tensors (and a built-in cell's gates), and the
        next-character distribution after every character (see
        :class:`~charseq.inspect.Activations`). Works for any cell, plugin cells included.

        ``prime`` is read first, unrecorded; ``unknown`` as in :meth:`score`.
        """
        return inspect_text(
            self._require_model(), self.tokenizer, text, prime=prime, unknown=unknown,
            normalize=self.normalize,
        )  # fmt: skip

    def _require_trained(self) -> torch.nn.Module:
        """The model, whatever the task (a language model or a classifier)."""
        if self.model is None:
            raise CharseqError("this pipeline has no model yet: call fit(...) or Pipeline.load()")
        return self.model

    def _require_model(self) -> CharModel:
        if self.spec.task.name != "lm":
            raise CharseqError(
                f"this pipeline is a classifier (task {self.spec.task.name!r}): it predicts a "
                "label for a text (predict), and does not write, score or evaluate text as a "
                "language model (task 'lm') does"
            )
        if self.model is None:
            raise CharseqError("this pipeline has no model yet: call fit(text) or Pipeline.load()")
        return self.model
