"""Dynamic evaluation (Krause, Kahembwe, Murray & Renals 2018, "Dynamic Evaluation of Neural
Sequence Models"): score a text while the model adapts to it.

A static score reads the text with fixed weights. Dynamic evaluation reads it in segments of
``segment_len`` tokens, the recurrent state carried across them; each segment is scored first,
with the weights as they are, and then the weights take one gradient step on that segment's
loss (its mean nats per token). So every token is still predicted only from the tokens before
it, but the model has also *learnt* from them: a name, a phrase or a style that recurs in the
text becomes likelier each time it comes back.

Two update rules, with ``theta0`` the stored weights and ``g`` the segment's gradient:

- ``"sgd"``: ``theta <- theta - lr * g + decay * (theta0 - theta)``.
- ``"rms"`` (the paper's main rule, and the default): the gradient is divided, weight by
  weight, by the root mean square ``rms`` of gradients collected before scoring starts, and the
  decay towards ``theta0`` is scaled by ``rms`` divided by its mean over all weights (capped at
  ``1 / decay``, so the decay never overshoots ``theta0``):
  ``theta <- theta - lr * g / (rms + epsilon) + decay * rate * (theta0 - theta)``.
  The gradients for ``rms`` come from ``stats_segments`` consecutive segments of a statistics
  text (the training split, typically, at an offset chosen by ``seed``), or, without one, from
  the first segments of the scored text itself, with the stored weights.

The decay pulls the weights back towards the stored ones, so what the model learns from the
text fades unless the text keeps confirming it. The stored model is never changed: the steps
are taken by a deep copy, in eval mode (no dropout). :class:`DynamicEvalOptions` holds the
hyper-parameters; :func:`dynamic_logprobs` does the work, :func:`dynamic_evaluate_ids` gives
a split's nats and BPC as :func:`~charseq.scoring.evaluate_ids` does for a static one.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import torch
from torch import Tensor, nn

from charseq.checks import is_int, is_number, require_choice, short_repr
from charseq.errors import CharseqError
from charseq.model import detach_stack_state, evaluating

__all__ = [
    "DEFAULTS",
    "METHODS",
    "DynamicEvalError",
    "DynamicEvalOptions",
    "dynamic_evaluate_ids",
    "dynamic_logprobs",
    "gradient_rms",
]

METHODS = ("rms", "sgd")
"""The update rules: Krause et al.'s RMS-normalised rule and plain SGD, both decaying to the
stored weights."""

DEFAULTS: dict[str, dict[str, float]] = {
    "rms": {"lr": 5e-4, "decay": 0.02},
    "sgd": {"lr": 0.1, "decay": 0.02},
}
"""The learning rate and decay each method takes when they are not given: values that help
charseq's small character models (a 1x64 GRU, a 2x128 LSTM, trained briefly on Python source) on
their test splits, on the safe side of the best. The best values depend on the model and the
text: choose them on the validation split (``split="val"``). Too large a learning rate makes
the score worse than the static one, and then diverge."""


class DynamicEvalError(CharseqError, ValueError):
    """Dynamic evaluation's options are invalid, or its text too short for them."""


def _number(value: Any, name: str, *, positive: bool = False) -> float:
    """``value`` as a float if it is a finite number >= 0 (> 0 with ``positive``)."""
    ok = is_number(value) and math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise DynamicEvalError(
            f"dynamic evaluation's {name} must be a finite number {bound}, got {short_repr(value)}"
        )
    return float(value)


def _count(value: Any, name: str) -> int:
    if not (is_int(value) and value >= 1):
        raise DynamicEvalError(
            f"dynamic evaluation's {name} must be an int >= 1, got {short_repr(value)}"
        )
    return value


@attrs.frozen(kw_only=True)
class DynamicEvalOptions:
    """The hyper-parameters of dynamic evaluation (see :mod:`charseq.dynamic_eval`).

    Attributes:
        method: ``"rms"`` (the paper's RMS-normalised rule) or ``"sgd"``.
        lr: the learning rate (``eta``); ``None`` takes the method's default (:data:`DEFAULTS`).
            ``0`` never changes the weights: the score is then the static one.
        decay: how strongly each step pulls the weights back to the stored ones (``lambda``);
            ``None`` takes the method's default.
        segment_len: tokens scored between two steps (the paper's ``n``).
        epsilon: added to the ``"rms"`` rule's divisor, so that weights whose gradients were
            (nearly) 0 in the statistics take small steps, not huge ones. The reference
            implementation's ``2e-5`` went with the gradients of batches of 100 streams; these
            statistics are of single segments, the gradients the steps take, which are larger
            (up to ten times, the square root of 100, where the streams' gradients are
            independent).
        stats_segments: how many segments the ``"rms"`` rule's gradient statistics come from.
        seed: where in the statistics text (the training split) those segments start; the
            same seed gives the same numbers.
    """

    method: str = "rms"
    lr: float | None = None
    decay: float | None = None
    segment_len: int = 50
    epsilon: float = 2e-4
    stats_segments: int = 100
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        require_choice(self.method, "dynamic evaluation's method", METHODS, error=DynamicEvalError)
        for name in ("lr", "decay"):
            value = getattr(self, name)
            value = DEFAULTS[self.method][name] if value is None else _number(value, name)
            object.__setattr__(self, name, value)  # the method's default, resolved once
        object.__setattr__(self, "epsilon", _number(self.epsilon, "epsilon", positive=True))
        _count(self.segment_len, "segment_len")
        _count(self.stats_segments, "stats_segments")
        if not is_int(self.seed):
            raise DynamicEvalError(
                f"dynamic evaluation's seed must be an int, got {short_repr(self.seed)}"
            )

    @classmethod
    def of(cls, choice: bool | DynamicEvalOptions | Mapping[str, Any]) -> DynamicEvalOptions | None:
        """Options from what a caller passes as ``dynamic=``: ``False`` (static scoring:
        ``None``), ``True`` (the defaults), a mapping of options, or options themselves."""
        if isinstance(choice, cls):
            return choice
        if choice is False:
            return None
        if choice is True:
            return cls()
        if isinstance(choice, Mapping):
            unknown = sorted(set(choice) - {field.name for field in attrs.fields(cls)})
            if unknown:
                known = ", ".join(field.name for field in attrs.fields(cls))
                raise DynamicEvalError(
                    f"unknown dynamic evaluation option(s) {', '.join(map(repr, unknown))}; "
                    f"the options are {known}"
                )
            return cls(**choice)
        raise DynamicEvalError(
            "dynamic must be True, False, a dict of options or DynamicEvalOptions, got "
            f"{type(choice).__name__} {short_repr(choice)}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The options as a plain dict (the defaults filled in)."""
        return attrs.asdict(self)

    def describe(self) -> str:
        """One line for reports: ``"rms, lr 0.0005, decay 0.02, segments of 50"``."""
        return (
            f"{self.method}, lr {self.lr:g}, decay {self.decay:g}, segments of {self.segment_len}"
        )


def _segment_loss(model: nn.Module, x: Tensor, y: Tensor, state: Any) -> tuple[Tensor, Tensor, Any]:
    """Log-probabilities of ``y`` (``(T,)``) after ``x`` (``(1, T)``) from ``state``, in float64
    as static scoring computes them, their mean negative (the loss, with its graph) and the
    state after ``x``."""
    logits, state = model(x, state)  # (1, T, V)
    logprobs = logits[0].double().log_softmax(dim=-1).gather(1, y.unsqueeze(1)).squeeze(1)
    return logprobs, -logprobs.mean(), state


def _gradients(loss: Tensor, parameters: Sequence[Tensor]) -> list[Tensor]:
    """The gradient of ``loss`` for each parameter (zeros for one it does not use)."""
    grads = torch.autograd.grad(loss, list(parameters), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(parameters, grads, strict=True)]


def gradient_rms(
    model: nn.Module, ids: Tensor, segment_len: int, state: Any = None
) -> list[Tensor]:
    """The root mean square of each parameter's gradient over the segments of ``ids``
    (``(N,)``, read as one stream from ``state``, ``segment_len`` tokens a segment, each
    gradient that of the segment's mean loss): the ``"rms"`` rule's scale. The weights are not
    changed; ``model`` should be in eval mode."""
    parameters = [p for p in model.parameters()]
    squares = [torch.zeros_like(p) for p in parameters]
    stream = ids.view(1, -1)  # (1, N)
    segments = 0
    with torch.enable_grad():
        for begin in range(0, stream.shape[1] - 1, segment_len):
            end = min(begin + segment_len, stream.shape[1] - 1)
            _, loss, state = _segment_loss(
                model, stream[:, begin:end], stream[0, begin + 1 : end + 1], state
            )
            for square, grad in zip(squares, _gradients(loss, parameters), strict=True):
                square.add_(grad.detach().square())
            state = detach_stack_state(state)
            segments += 1
    if segments == 0:
        raise DynamicEvalError("the gradient statistics need a text of at least 2 tokens")
    return [(square / segments).sqrt() for square in squares]


class _Rule:
    """One of :data:`METHODS`, applied to ``parameters`` after each segment: a step against the
    gradient and a decay towards the values they had when the rule was made."""

    def __init__(
        self, parameters: Sequence[Tensor], options: DynamicEvalOptions, rms: list[Tensor] | None
    ) -> None:
        self.parameters = list(parameters)
        self.start = [p.detach().clone() for p in self.parameters]  # theta0
        self.lr, self.decay = float(options.lr), float(options.decay)  # resolved in the options
        self.scale: list[Tensor] | None = None  # the rms rule's 1 / (rms + epsilon)
        self.rates: list[Tensor] | None = None  # and its decay rate per weight
        if rms is not None:
            mean = torch.cat([r.flatten() for r in rms]).mean()
            cap = 1.0 / self.decay if self.decay > 0 else math.inf
            self.scale = [1.0 / (r + options.epsilon) for r in rms]
            rates = [(r / mean) if mean > 0 else torch.ones_like(r) for r in rms]
            self.rates = [rate.clamp(max=cap) for rate in rates]

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor]) -> None:
        """Move every parameter: ``-lr`` times its (scaled) gradient, plus ``decay`` times its
        (scaled) distance back to ``theta0``, both from the values before this step."""
        for i, (p, grad, p0) in enumerate(zip(self.parameters, grads, self.start, strict=True)):
            pull = p0 - p
            if self.scale is not None and self.rates is not None:  # the rms rule
                grad, pull = grad * self.scale[i], pull * self.rates[i]
            p.add_(grad, alpha=-self.lr).add_(pull, alpha=self.decay)


def _as_ids(ids: Tensor | np.ndarray | Sequence[int]) -> Tensor:
    """``ids`` as a 1-D int64 tensor (an array is copied: a corpus's may be read-only)."""
    if isinstance(ids, Tensor):
        return ids.long().flatten()
    return torch.tensor(np.asarray(ids), dtype=torch.long).flatten()


def _statistics_window(ids: Tensor, options: DynamicEvalOptions) -> Tensor:
    """``stats_segments`` segments (and the target after them) of ``ids``, starting at an
    offset drawn with ``seed``; all of ``ids`` when it is no longer than that."""
    need = options.stats_segments * options.segment_len + 1
    if ids.numel() <= need:
        return ids
    offset = random.Random(options.seed).randrange(ids.numel() - need + 1)
    return ids[offset : offset + need]


def dynamic_logprobs(
    model: nn.Module,
    stream: Tensor | np.ndarray | Sequence[int],
    start: int,
    options: DynamicEvalOptions,
    *,
    statistics: Tensor | np.ndarray | Sequence[int] | None = None,
    on_segment: Callable[[int], None] | None = None,
) -> Tensor:
    """The log-probability of each token of ``stream[start + 1:]`` given all before it, the
    model adapting to the text as it goes (see :mod:`charseq.dynamic_eval`).

    ``stream[:start]`` is read first, with the stored weights and no step: context, like a
    prime. Then segments of ``options.segment_len`` tokens are scored and stepped on, in turn.
    ``model`` itself is never changed: a deep copy adapts.

    Args:
        model: maps ``(ids (1, T), state)`` to ``(logits (1, T, V), state)``, like
            :class:`~charseq.model.CharModel`.
        stream: the token ids, shape ``(N,)``.
        start: how many tokens are context (``0 <= start < N - 1``).
        options: the hyper-parameters.
        statistics: ids of another text (the training split) for the ``"rms"`` rule's gradient
            statistics; ``None`` takes them from the first segments of the scored text.
        on_segment: called after each segment with the number of tokens scored so far.

    Returns:
        float64 log-probabilities, shape ``(N - 1 - start,)``, on the CPU.
    """
    ids = _as_ids(stream)
    total = ids.numel()
    if not 0 <= start < total - 1:
        raise DynamicEvalError(f"nothing to score: {total} token(s), {start} of them context")
    adapted = copy.deepcopy(model)
    device = next(adapted.parameters()).device
    parameters = [p.requires_grad_(True) for p in adapted.parameters()]
    for p in parameters:
        p.grad = None  # a copied training gradient; the steps use torch.autograd.grad
    both = ids.to(device).view(1, -1)  # (1, N)
    n = options.segment_len
    pieces: list[Tensor] = []
    with evaluating(adapted), torch.enable_grad():
        state = None  # the model's initial state, as static scoring starts
        if start > 0:
            with torch.no_grad():
                _, state = adapted(both[:, :start], state)
        rms = None
        if options.method == "rms":
            if statistics is None:
                window = both[0, start : start + options.stats_segments * n + 1]
                rms = gradient_rms(adapted, window, n, state)
            else:
                window = _statistics_window(_as_ids(statistics), options).to(device)
                rms = gradient_rms(adapted, window, n)
        rule = _Rule(parameters, options, rms)
        for begin in range(start, total - 1, n):
            end = min(begin + n, total - 1)
            logprobs, loss, state = _segment_loss(
                adapted, both[:, begin:end], both[0, begin + 1 : end + 1], state
            )
            pieces.append(logprobs.detach())
            if end < total - 1:  # the last segment's step would score nothing
                rule.step(_gradients(loss, parameters))
            state = detach_stack_state(state)
            if on_segment is not None:
                on_segment(end - start)
    return torch.cat(pieces).cpu()


def dynamic_evaluate_ids(
    model: nn.Module,
    ids: Tensor | np.ndarray | Sequence[int],
    options: DynamicEvalOptions,
    *,
    statistics: Tensor | np.ndarray | Sequence[int] | None = None,
    on_segment: Callable[[int], None] | None = None,
) -> dict[str, float | int]:
    """Mean cross-entropy of ``ids`` under dynamic evaluation, over the same tokens as a static
    :func:`~charseq.scoring.evaluate_ids` with one stream (every token after the first).

    Returns:
        ``{"nats", "bpc", "tokens"}``, as :func:`~charseq.scoring.evaluate_ids`.
    """
    values = dynamic_logprobs(
        model, _as_ids(ids), 0, options, statistics=statistics, on_segment=on_segment
    )
    nats = -float(values.sum()) / values.numel()
    return {"nats": nats, "bpc": nats / math.log(2), "tokens": values.numel()}
