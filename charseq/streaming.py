"""Streaming: yield generated text in pieces while the sampler is still choosing ids.

A token sampler's steps run in the consumer's thread, one per id; other samplers run in a
worker thread and report ids through ``Decoder.emit``. Ids become text in
:class:`_TextStream`, which waits out incomplete multi-byte characters and holds back text that
could begin a stop string. Closing the iterator stops generation at the next id.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import torch

from charseq.constraints import CompiledConstraint, CompiledConstraints, cut_at_stop, held_back
from charseq.constraints.builtin import CompiledStop
from charseq.generate import Decoder, generate_ids, sampler_name
from charseq.interfaces import Sampler, SamplerOutput, Tokenizer, TokenSampler
from charseq.model import CharModel, evaluating


@attrs.frozen
class Generation:
    """A checked generation request."""

    model: CharModel
    prime_ids: torch.Tensor
    sampler: Sampler
    generator: torch.Generator | None
    constraints: CompiledConstraints | None
    batch: int

    def cut(self, text: str) -> str:
        """A generated text cut where the constraints end it (a stop string, a filled form)."""
        return text if self.constraints is None else self.constraints.cut(text)

    def steps(self, max_new_tokens: int) -> int:
        """How many steps to take for ``max_new_tokens``: no more than the longest text the
        constraints allow (a form's length), after which every text is cut anyway."""
        longest = None if self.constraints is None else self.constraints.longest
        return max_new_tokens if longest is None else min(max_new_tokens, longest)

    def run(
        self,
        max_new_tokens: int,
        on_token: Callable[[torch.Tensor], None] | None = None,
        on_advance: Callable[[], None] | None = None,
    ) -> SamplerOutput:
        """Generate ``max_new_tokens`` ids per sequence; ``on_token`` sees each step's ids,
        ``on_advance`` is called before each step (what it raises ends the run)."""
        return generate_ids(
            self.model,
            self.prime_ids,
            self.sampler,
            self.steps(max_new_tokens),
            self.batch,
            self.generator,
            constraints=self.constraints,
            on_token=on_token,
            on_advance=on_advance,
        )


class _Cancelled(Exception):
    """Raised in the stream's worker thread when the consumer has gone."""


class _TextStream:
    """Turns ids into text pieces: waits out incomplete multi-byte characters, holds back text
    that could begin a stop string, and cuts where the constraints end the text."""

    def __init__(self, tokenizer: Tokenizer, constraints: CompiledConstraints | None) -> None:
        self.tokenizer = tokenizer
        self.constraints = constraints
        stop = constraints.stop if constraints is not None else ()
        self.stop = stop
        self.enders = [  # the constraints other than stop strings that end a text (a form)
            part
            for part in (constraints.parts if constraints is not None else ())
            if not isinstance(part, CompiledStop) and type(part).end is not CompiledConstraint.end
        ]
        self.longest = max((len(s) for s in stop), default=0)
        self.pending: list[int] = []
        self.ids: list[int] = []  # every id pushed
        self.text = ""  # everything decoded so far (kept only with stop strings)
        self.pieces: list[str] = []  # what has been yielded
        self.sent_len = 0
        self.stopped = False
        self._single: dict[int, str] = {}  # decode([id]), the common case, once per id
        self._stream = tokenizer.stream_decoder()  # the tokenizer's own incremental decoding

    @property
    def sent(self) -> str:
        return "".join(self.pieces)

    def _decode_pending(self) -> str:
        if len(self.pending) == 1:
            token = self.pending[0]
            decoded = self._single.get(token)
            if decoded is None:
                decoded = self._single[token] = self.tokenizer.decode(self.pending)
            return decoded
        return self.tokenizer.decode(self.pending)

    def push(self, token: int) -> str:
        self.ids.append(token)
        if self._stream is not None:
            decoded = self._stream([token], False)
        else:
            self.pending.append(token)
            decoded = self._decode_pending()
            if decoded.endswith("\ufffd") and len(self.pending) < 4:
                return ""  # perhaps the first bytes of a character
            self.pending = []
        if not self.stop and not self.enders:  # nothing to hold back or cut
            self.pieces.append(decoded)
            self.sent_len += len(decoded)
            return decoded
        before = len(self.text)
        self.text += decoded
        end = None
        if self.stop:
            end = cut_at_stop(self.text, self.stop, max(0, before - self.longest + 1))
        for part in self.enders:
            found = part.end(self.text)
            if found is not None and (end is None or found < end):
                end = found
        if end is not None:
            self.stopped = True
            safe = end
        else:
            held = held_back(self.text[-self.longest :], self.stop) if self.stop else 0
            safe = len(self.text) - held
        piece = self.text[self.sent_len : safe] if safe > self.sent_len else ""
        self.pieces.append(piece)
        self.sent_len += len(piece)
        return piece

    def finish(self, ids: list[int] | None = None) -> str:
        """The text not yet sent once generation has ended with ``ids`` (default: the ids
        pushed): held-back text and incomplete characters, cut where the constraints end it."""
        final = self.tokenizer.decode(self.ids if ids is None else ids)
        if self.constraints is not None:
            final = self.constraints.cut(final)
        sent = self.sent
        return final[len(sent) :] if final.startswith(sent) else final


def stream_text(
    job: Generation,
    tokenizer: Tokenizer,
    max_new_tokens: int,
    cancel: threading.Event | None = None,
) -> Iterator[str]:
    """Run ``job`` and yield its text in pieces; joined, they equal the generated text.

    A token sampler whose ``sample`` is :class:`~charseq.interfaces.TokenSampler`'s runs its
    :meth:`~charseq.interfaces.TokenSampler.steps` here, one step per id, with no thread. Any
    other sampler runs in a worker thread and its ids arrive through ``Decoder.emit``.

    ``cancel``, once set (from any thread), ends the stream at the generation's next step, with
    no further piece: how a caller stops a search sampler (beam), which yields only at its end,
    while it waits for that piece.
    """
    cancel = threading.Event() if cancel is None else cancel
    sampler = job.sampler
    if isinstance(sampler, TokenSampler) and type(sampler).sample is TokenSampler.sample:
        return _stream_steps(job, tokenizer, max_new_tokens, cancel)
    return _stream_thread(job, tokenizer, max_new_tokens, cancel)


_set_grad_enabled = torch._C._set_grad_enabled
"""The switch ``torch.set_grad_enabled`` flips, without building its context manager (two per
character here)."""


def _stream_steps(
    job: Generation, tokenizer: Tokenizer, max_new_tokens: int, cancel: threading.Event
) -> Iterator[str]:
    model = job.model
    with evaluating(model):
        with torch.no_grad():
            decoder = Decoder.from_prime(model, job.prime_ids, job.batch, job.constraints)
            decoder.sampler_name = sampler_name(job.sampler)
            steps = job.sampler.steps(decoder, job.steps(max_new_tokens), job.generator)
        text = _TextStream(tokenizer, job.constraints)
        while True:
            caller_grad = torch.is_grad_enabled()  # the caller's mode between pieces
            _set_grad_enabled(False)
            try:
                ids = next(steps, None)
            finally:
                _set_grad_enabled(caller_grad)
            if cancel.is_set():
                return
            if ids is None:
                break
            if job.constraints is not None:  # checked before its text goes out
                decoder.emit(ids)
                decoder.check()
            piece = text.push(ids.item())  # one sequence: ids is (1,)
            if piece:
                yield piece
            if text.stopped:
                return
        rest = text.finish()
        if rest:
            yield rest


def _stream_thread(
    job: Generation, tokenizer: Tokenizer, max_new_tokens: int, cancel: threading.Event
) -> Iterator[str]:
    pieces: queue.Queue[tuple[str, Any]] = queue.Queue()

    def stop_if_cancelled() -> None:  # before every step: a beam emits nothing till its end
        if cancel.is_set():
            raise _Cancelled

    def on_token(ids: torch.Tensor) -> None:
        stop_if_cancelled()
        pieces.put(("id", int(ids[0])))

    def work() -> None:
        try:
            out = job.run(max_new_tokens, on_token, on_advance=stop_if_cancelled)
            pieces.put(("done", out.ids[0].tolist()))
        except _Cancelled:
            pieces.put(("cancelled", None))
        except BaseException as error:  # handed to the consumer
            pieces.put(("error", error))

    worker = threading.Thread(target=work, name="charseq-stream", daemon=True)
    worker.start()
    text = _TextStream(tokenizer, job.constraints)
    try:
        while True:
            kind, value = pieces.get()
            if kind == "id":
                piece = text.push(value)
                if piece:
                    yield piece
                if text.stopped:
                    return
            elif kind == "done":
                rest = text.finish(value)  # a sampler that emits nothing (beam) sends all here
                if rest:
                    yield rest
                return
            elif kind == "error":
                raise value
            else:
                return
    finally:
        cancel.set()
        worker.join()
