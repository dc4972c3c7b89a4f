"""Scoring text under a model: a split's mean loss (:func:`evaluate_ids`), and one text's
per-token log-probabilities, total nats, BPC and surprises (:func:`score_ids`).

:func:`score_ids` reads the text in one stream, ``chunk_size`` tokens at a time with the
recurrent state carried, so every token is predicted from all that precede it (and from the
prime, if one is given) in bounded memory. Without a prime the first token is scored under the
uniform odds generation starts from (``log 1/V``), so :attr:`Score.total_nats` is exactly
``-log p(text)`` of sampling the text at temperature 1 from an empty prime. With dynamic
evaluation's options (:mod:`charseq.dynamic_eval`) the model adapts to the text as it reads it,
and the :class:`Score` says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from charseq.batches import IGNORE_INDEX, evaluation_batches
from charseq.dynamic_eval import DynamicEvalOptions, dynamic_logprobs
from charseq.model import CharModel, evaluating

LN2 = math.log(2.0)

UNITS = {"char": "characters", "byte": "bytes"}
"""What a token of the built-in tokenizers is, by tokenizer name, for messages; any other
tokenizer's is a token."""


def rate_names(unit: str) -> tuple[str, str]:
    """How nats and bits per token read for tokens that are ``unit``: ``("char", "BPC")``,
    ``("byte", "bits/byte")`` or ``("token", "bits/token")``."""
    return {"characters": ("char", "BPC"), "bytes": ("byte", "bits/byte")}.get(
        unit, ("token", "bits/token")
    )


@attrs.frozen
class Surprise:
    """One scored position: ``position`` (token index in the text), its ``token`` text, its
    natural-log probability ``logprob`` and a little ``context`` with the token in brackets."""

    position: int
    token: str
    logprob: float
    context: str

    @property
    def probability(self) -> float:
        return math.exp(self.logprob)


@attrs.frozen
class Score:
    """How well a model predicts a text.

    Attributes:
        tokens: the text of each scored token (characters, for the ``char`` tokenizer).
        logprobs: natural-log probability of each token given all before it.
        total_nats: ``-sum(logprobs)``.
        nats: nats per token, ``total_nats / len(tokens)``.
        bpc: bits per token (per character for character tokenizers), ``nats / ln 2``.
        surprising: the least likely positions, most surprising first (ties: earlier first).
        unit: what a token is, for :meth:`summary`: ``"characters"``, ``"bytes"`` or
            ``"tokens"``; empty: characters if every token is one character, else tokens.
        dynamic: the options of dynamic evaluation if the model adapted to the text as it read
            it (:mod:`charseq.dynamic_eval`); ``None`` for a static score.
    """

    tokens: list[str]
    logprobs: list[float]
    total_nats: float
    nats: float
    bpc: float
    surprising: list[Surprise]
    unit: str = ""
    dynamic: DynamicEvalOptions | None = None

    @property
    def method(self) -> str:
        """``"static"`` or ``"dynamic"``: whether the weights stayed fixed while scoring."""
        return "static" if self.dynamic is None else "dynamic"

    def __len__(self) -> int:
        return len(self.tokens)

    def to_dict(self) -> dict:
        """The totals and surprising positions as plain data; a dynamic score adds
        ``"dynamic"``, its options."""
        data = {
            "tokens": len(self.tokens),
            "total_nats": self.total_nats,
            "nats": self.nats,
            "bpc": self.bpc,
            "surprising": [
                {**attrs.asdict(s), "probability": s.probability} for s in self.surprising
            ],
        }
        if self.dynamic is not None:
            data["dynamic"] = self.dynamic.to_dict()
        return data

    def summary(self) -> str:
        """A few human-readable lines: totals, then the most surprising positions."""
        unit = self.unit or (
            "characters" if all(len(token) == 1 for token in self.tokens) else "tokens"
        )
        per, bits = rate_names(unit)
        lines = [
            f"{len(self.tokens)} {unit}: {self.total_nats:.4f} nats in all, "
            f"{self.nats:.4f} nats/{per}, {self.bpc:.4f} {bits}"
        ]
        if self.dynamic is not None:
            lines.append(f"dynamic evaluation ({self.dynamic.describe()})")
        if self.surprising:
            lines.append("most surprising:")
        for s in self.surprising:
            lines.append(
                f"  position {s.position:>6} {s.token!r:>6}  log p = {s.logprob:8.4f} "
                f"(p = {s.probability:.2e})  {s.context!r}"
            )
        return "\n".join(lines)


def score_ids(
    model: CharModel,
    ids: Tensor,
    prime: Tensor,
    token_texts: Sequence[str],
    *,
    top: int = 10,
    chunk_size: int = 8192,
    context: int = 20,
    unit: str = "",
    dynamic: DynamicEvalOptions | None = None,
    statistics: Tensor | None = None,
) -> Score:
    """Score ``ids`` (shape ``(N,)``) after ``prime`` (``(P,)``); ``token_texts[i]`` is the text
    of ``ids[i]`` (for the report), ``unit`` what a token is (see :class:`Score`).

    With ``dynamic`` options the model adapts to the text as it is read
    (:func:`~charseq.dynamic_eval.dynamic_logprobs`, ``statistics`` the ids its ``"rms"`` rule
    takes gradient statistics from); ``chunk_size`` is then unused (the options' segment length
    decides how much is read at a time) and the prime is context that takes no step.
    """
    if ids.numel() == 0:
        raise ValueError("score needs a non-empty text")
    both = torch.cat([prime, ids])  # (P + N,)
    start = max(prime.numel() - 1, 0)  # logits at i predict token i + 1
    pieces: list[Tensor] = []
    if prime.numel() == 0:  # the first token: uniform odds, as generation starts
        pieces.append(torch.full((1,), -math.log(model.vocab_size), dtype=torch.float64))
    if both.numel() - 1 > start and dynamic is None:
        pieces.append(_static_logprobs(model, both, start, chunk_size))
    elif both.numel() - 1 > start:
        pieces.append(dynamic_logprobs(model, both, start, dynamic, statistics=statistics))
    values = torch.cat(pieces).cpu()  # (N,)
    logprobs = values.tolist()
    total_nats = -float(values.sum())
    nats = total_nats / len(logprobs)
    order = sorted(range(len(logprobs)), key=lambda i: (logprobs[i], i))[: max(top, 0)]
    surprising = [
        Surprise(
            position=i,
            token=token_texts[i],
            logprob=logprobs[i],
            context="".join(token_texts[max(0, i - context) : i])
            + "["
            + token_texts[i]
            + "]"
            + "".join(token_texts[i + 1 : i + 1 + context]),
        )
        for i in order
    ]
    return Score(
        tokens=list(token_texts),
        logprobs=logprobs,
        total_nats=total_nats,
        nats=nats,
        bpc=nats / LN2,
        surprising=surprising,
        unit=unit,
        dynamic=dynamic,
    )


@torch.no_grad()
def _static_logprobs(model: CharModel, both: Tensor, start: int, chunk_size: int) -> Tensor:
    """log p of each token of ``both[start + 1:]`` (float64, on the CPU) given all before it,
    the stream read ``chunk_size`` tokens at a time with the state carried."""
    device = model.head.weight.device
    both = both.to(device).view(1, -1)  # (1, T)
    total = both.shape[1]
    pieces: list[Tensor] = []
    with evaluating(model):
        state = model.initial_state(1, device=device)
        # Feed every token but the last; keep the predictions of the text's own tokens.
        for begin in range(0, total - 1, chunk_size):
            end = min(begin + chunk_size, total - 1)
            logits, state = model(both[:, begin:end], state)  # (1, T, V)
            if end <= start:
                continue
            lo = max(start - begin, 0)
            logprobs = logits[0, lo:].double().log_softmax(dim=-1)  # (T', V)
            targets = both[0, begin + lo + 1 : end + 1]  # (T',)
            pieces.append(logprobs.gather(1, targets.unsqueeze(1)).squeeze(1))  # (T',)
    return torch.cat(pieces).cpu()


@torch.no_grad()
def evaluate_ids(
    model: nn.Module,
    ids: Any,
    *,
    batch_size: int = 32,
    seq_len: int = 256,
    warmup: int = 256,
    device: torch.device | str | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, float | int]:
    """Mean cross-entropy of ``ids`` under ``model``, with the hidden state carried through.

    Runs :func:`evaluation_batches` in eval mode (no dropout) without gradients, and puts the
    model back in the mode it was in. ``batch_size=1`` gives the exact single-pass value; more
    streams are faster, and ``warmup`` tokens of unscored context per stream keep the value
    close to it (within about 0.01 nats for a trained char model).

    Args:
        model: maps ``(ids (B, T), state)`` to ``(logits (B, T, V), state)``, like
            :class:`~charseq.model.CharModel`.
        ids: a 1-D id array, e.g. ``corpus.split().val``.
        batch_size, seq_len, warmup: see :func:`evaluation_batches`.
        device: where to run (default: where the model's parameters are).
        on_batch: called after each batch with the number of tokens scored so far (about
            ``len(ids) - 1`` in all), e.g. to show progress.

    Returns:
        ``{"nats": nats per token, "bpc": bits per token (bits per character for character
        tokenizers), "tokens": tokens scored}``.
    """
    batches = evaluation_batches(ids, batch_size, seq_len, warmup=warmup)
    if device is None:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    device = torch.device(device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    tokens = 0
    state = None
    with evaluating(model):
        for x, y, reset in batches:
            tokens += int((y != IGNORE_INDEX).sum())
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits, state = model(x, None if reset else state)
            loss = nn.functional.cross_entropy(
                logits.flatten(0, 1).float(),  # (B, T, V) -> (B*T, V)
                y.flatten(),  # (B, T) -> (B*T,)
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            total += loss.double()
            if on_batch is not None:
                on_batch(tokens)
    nats = total.item() / tokens
    return {"nats": nats, "bpc": nats / math.log(2), "tokens": tokens}
