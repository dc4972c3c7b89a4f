"""Per-character log-probabilities of generated text, in OpenAI's legacy ``logprobs`` object.

A completion asked for with ``logprobs: k`` carries, for each generated token, its natural-log
probability under the model and the ``k`` likeliest tokens at that place with theirs:
``{"tokens", "token_logprobs", "top_logprobs", "text_offset"}``. They are the model's own odds
(the softmax of its logits), not the sampler's: temperature, top-k and constraints change what
is drawn, not what the model thought. Without a prime the first token is scored under the
uniform odds generation starts from, as :meth:`Pipeline.score <charseq.Pipeline.score>` does.

:class:`LogprobTracker` follows a text as it is streamed: each piece is read once, with the
recurrent state carried, so a streamed completion costs one extra model pass per character.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from charseq.model import StackState
from charseq.pipeline import Pipeline
from charseq.requests import encode_text

__all__ = ["LogprobTracker", "merge"]

MAX_TOP_LOGPROBS = 20
"""The most alternatives per token a request may ask for (OpenAI's own limit)."""


class LogprobTracker:
    """The ``logprobs`` of a text generated after ``prime``, a piece at a time.

    Args:
        pipe: the pipeline that generates the text.
        prime: the text generation started from (already checked by the generation).
        top: how many alternatives to list per token (``0``: none, only the chosen token's).
        unknown: the policy the generation used for the prime's unknown characters.
    """

    def __init__(self, pipe: Pipeline, prime: str, top: int, unknown: str | None = None) -> None:
        assert pipe.model is not None
        self.model = pipe.model
        self.tokenizer = pipe.tokenizer
        self.normalize = pipe.normalize
        self.top = top
        self.offset = 0  # characters of generated text seen
        self.vocab = [self.tokenizer.decode([i]) for i in range(self.tokenizer.vocab_size)]
        prime_ids = encode_text(
            self.tokenizer, prime, what="the prime", unknown=unknown, normalize=pipe.normalize
        )
        device = self.model.head.weight.device
        self.state: StackState = self.model.initial_state(1, device=device)
        with torch.no_grad():
            if prime_ids:
                logits, self.state = self.model(torch.tensor([prime_ids], device=device))
                self.next = logits[0, -1].double().log_softmax(-1).cpu()  # (V,)
            else:
                size = self.model.vocab_size
                self.next = torch.full((size,), -math.log(size), dtype=torch.float64)

    def add(self, piece: str) -> dict[str, Any]:
        """The ``logprobs`` object of ``piece``, the text generated next."""
        ids = self.tokenizer.encode(piece) if piece else []
        out: dict[str, Any] = {
            "tokens": [],
            "token_logprobs": [],
            "top_logprobs": [],
            "text_offset": [],
        }
        if not ids:
            return out
        device = self.model.head.weight.device
        with torch.no_grad():
            logits, self.state = self.model(torch.tensor([ids], device=device), self.state)
        after = logits[0].double().log_softmax(-1).cpu()  # (T, V): the odds after each token
        odds = torch.cat([self.next[None], after[:-1]])  # (T, V): the odds of each token
        self.next = after[-1]
        for i, token_id in enumerate(ids):
            token = self.vocab[token_id]
            out["tokens"].append(token)
            out["token_logprobs"].append(float(odds[i, token_id]))
            out["text_offset"].append(self.offset)
            self.offset += len(token)
            if self.top:
                values, indices = odds[i].topk(min(self.top, odds.shape[1]))
                pairs = zip(indices.tolist(), values.tolist(), strict=True)
                out["top_logprobs"].append({self.vocab[j]: float(v) for j, v in pairs})
        if not self.top:
            out["top_logprobs"] = None
        return out


def merge(parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Several pieces' ``logprobs`` objects as one (a chunk that joins pieces)."""
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    merged: dict[str, Any] = {key: [] for key in parts[0]}
    for part in parts:
        for key, values in part.items():
            if values is None:
                merged[key] = None
            elif merged[key] is not None:
                merged[key].extend(values)
    return merged
