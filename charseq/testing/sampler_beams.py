"""Conformance checks for beam-search samplers (those with a ``num_beams`` option).

Beam search with one beam is greedy; beam scores are the log-probabilities the model gives the
returned sequences (length-penalised as Hugging Face ``transformers`` does), best first, and
``num_return_sequences`` returns each row's best sequences, row by row. The checks run on the
tiny models of :mod:`charseq.testing.fixtures`; the other sampler checks are in
:mod:`charseq.testing.samplers`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from charseq.generate import Decoder
from charseq.interfaces import Sampler, SamplerOutput
from charseq.model import CharModel
from charseq.testing._base import (
    CheckSkipped,
    Subject,
    assert_close,
    describe,
    register_check,
    require,
)
from charseq.testing._sampler_harness import require_greedy, run_sampler
from charseq.testing.fixtures import PRIME, tiny_model

__all__ = [
    "check_beam_length_penalty",
    "check_beam_scores",
    "check_beam_width_one_is_greedy",
    "check_num_return_sequences",
]


@register_check("sampler", requires=("num_beams",))
def check_beam_width_one_is_greedy(subject: Subject) -> None:
    """Beam search with ``num_beams=1`` is greedy decoding."""
    require_greedy(
        subject,
        "num_beams=1",
        "with one beam keep the single best continuation at every step.",
        num_beams=1,
    )


@register_check("sampler", requires=("num_beams",))
def check_beam_scores(subject: Subject) -> None:
    """Beam scores are finite, best first, one per distinct sequence, and are log-probabilities.

    With ``num_beams=3`` (``num_return_sequences=3`` where the sampler has it, so all three
    beams come back; and ``length_penalty=0`` where it has that, so a score is the plain sum of
    log-probabilities), each score equals the log-probability the model gives its sequence after
    the prime.
    """
    overrides: dict[str, Any] = {"num_beams": 3}
    if subject.tags.get("num_return_sequences"):
        overrides["num_return_sequences"] = 3  # all three beams, so their order is visible
    exact = bool(subject.tags.get("length_penalty")) and subject.accepts(
        **overrides, length_penalty=0.0
    )
    if exact:
        overrides["length_penalty"] = 0.0
    sampler = subject.build_checked(**overrides)
    model = tiny_model(seed=5, spread=1.0)
    out = run_sampler(sampler, model, 6)
    scores = out.scores
    require(
        scores is not None,
        "num_beams=3 returned scores=None",
        "return each beam's (length-penalised) log-probability in SamplerOutput.scores.",
    )
    require(
        bool(torch.isfinite(scores).all()),
        f"beam scores {scores.tolist()} are not finite",
        "accumulate log_softmax values; never let a beam start from -inf.",
    )
    require(
        bool((scores[:-1] >= scores[1:] - 1e-6).all()),
        f"beam scores {scores.tolist()} are not sorted best first",
        "sort the finished beams by score, highest first.",
    )
    rows = [tuple(r) for r in out.ids.tolist()]
    require(
        len(set(rows)) == len(rows),
        f"beam search returned duplicate sequences {rows}",
        "keep distinct hypotheses: expand every beam, then take the top num_beams of all "
        "(beam, next id) pairs, reordering the decoder with Decoder.reorder.",
    )
    if exact:
        expected = _log_probability(model, out.ids)
        assert_close(
            scores,
            expected,
            "with length_penalty=0 the beam scores are not the "
            "log-probabilities the model gives the returned sequences",
            "add log_softmax(logits)[id] of each chosen id to its beam's score, and "
            "carry scores along when beams are reordered.",
            atol=1e-4,
            rtol=1e-4,
        )


@torch.no_grad()
def _log_probability(model: CharModel, ids: Tensor, prime: Tensor = PRIME) -> Tensor:
    """Sum of log p(id_t | prime, ids_<t) over the generated ids, per row."""
    rows = ids.shape[0]
    full = torch.cat([prime.view(1, -1).expand(rows, -1), ids], dim=1)  # (N, P + T)
    logits, _ = model.eval()(full[:, :-1])  # (N, P + T - 1, V)
    logp = torch.log_softmax(logits[:, prime.numel() - 1 :], dim=-1)  # (N, T, V)
    return logp.gather(2, ids.unsqueeze(-1)).squeeze(-1).sum(dim=1)


_OTHER_PRIME = torch.tensor([9, 3, 3, 0])


@torch.no_grad()
def _sample_primes(sampler: Sampler, model: CharModel, primes: Tensor, steps: int) -> SamplerOutput:
    """Run ``sampler`` on a decoder over several primes ``(B, P)``, one row each."""
    logits, state = model.eval()(primes)  # (B, P, V)
    out = sampler.sample(Decoder(model, state, logits[:, -1]), steps, torch.Generator())
    require(
        isinstance(out, SamplerOutput) and isinstance(out.ids, Tensor),
        f"sample(decoder, max_new_tokens={steps}) returned {type(out).__name__}",
        "return charseq.SamplerOutput(ids, scores).",
    )
    return out


@register_check("sampler", requires=("num_beams", "num_return_sequences"))
def check_num_return_sequences(subject: Subject) -> None:
    """``num_return_sequences=R`` returns the R best sequences of each row, row by row.

    With ``num_beams=3`` and R of 1, 2 and 3, a decoder over two different primes gives ids
    ``(2 * R, T)`` and scores ``(2 * R,)``: the first prime's R sequences, then the second's,
    each block distinct, best first (scores descending) and equal to what that prime gets
    alone. ``num_return_sequences`` larger than ``num_beams`` is rejected when the sampler is
    built.
    """
    model = tiny_model(seed=5, spread=1.0)
    primes = torch.stack([PRIME, _OTHER_PRIME])  # (2, P)
    steps = 5
    for returned in (1, 2, 3):
        sampler = subject.build_checked(num_beams=3, num_return_sequences=returned)
        out = _sample_primes(sampler, model, primes, steps)
        rows = 2 * returned
        require(
            tuple(out.ids.shape) == (rows, steps)
            and isinstance(out.scores, Tensor)
            and tuple(out.scores.shape) == (rows,),
            f"num_return_sequences={returned} on 2 primes returned ids "
            f"{describe(out.ids, dtype=True)} and scores {describe(out.scores, dtype=True)}; "
            f"expected ({rows}, {steps}) and ({rows},)",
            "return the R best beams of every row: ids (B * R, T), scores (B * R,).",
        )
        for row in range(2):
            block = slice(row * returned, (row + 1) * returned)
            ids, scores = out.ids[block], out.scores[block]
            sequences = [tuple(r) for r in ids.tolist()]
            alone = _sample_primes(sampler, model, primes[row : row + 1], steps)
            require(
                torch.equal(ids, alone.ids),
                f"in a batch, prime {row} got {sequences} at rows {block.start}..{block.stop - 1}"
                f"; alone it gets {alone.ids.tolist()}",
                "order the output row by row: row b's sequences are b * R .. b * R + R - 1 "
                "(reshape (B, R, T) to (B * R, T), not (R, B, T)).",
            )
            require(
                bool((scores[:-1] >= scores[1:] - 1e-6).all()),
                f"prime {row}'s scores {scores.tolist()} are not sorted best first",
                "sort each row's finished beams by score, highest first.",
            )
            require(
                len(set(sequences)) == len(sequences),
                f"prime {row} got duplicate sequences {sequences}",
                "return distinct beams: the top num_return_sequences of the row's num_beams.",
            )
    built = True
    try:
        subject.build(num_beams=2, num_return_sequences=3)
    except (ValueError, TypeError):
        built = False
    require(
        not built,
        "num_beams=2 with num_return_sequences=3 was accepted",
        "reject num_return_sequences > num_beams when the options are built (an attrs "
        "__attrs_post_init__ raising charseq.options.OptionError('num_return_sequences', ...)).",
    )


@register_check("sampler", requires=("num_beams", "length_penalty"))
def check_beam_length_penalty(subject: Subject) -> None:
    """Beam scores are length-penalised as Hugging Face computes them.

    With ``num_beams=3`` (and ``num_return_sequences=3`` where the sampler has it), each score
    is the log-probability the model gives its sequence after the prime divided by
    ``T ** length_penalty``, ``T`` the number of new ids, for ``length_penalty`` 1, 0.5 and 2
    (those accepted) and ``T`` of 1 and 5.
    """
    overrides: dict[str, Any] = {"num_beams": 3}
    if subject.tags.get("num_return_sequences"):
        overrides["num_return_sequences"] = 3
    model = tiny_model(seed=5, spread=1.0)
    tried = []
    for penalty in (1.0, 0.5, 2.0):
        if not subject.accepts(**overrides, length_penalty=penalty):
            continue
        tried.append(penalty)
        sampler = subject.build_checked(**overrides, length_penalty=penalty)
        for steps in (1, 5):
            out = run_sampler(sampler, model, steps)
            require(
                out.scores is not None,
                "num_beams=3 returned scores=None",
                "return each sequence's length-penalised log-probability in SamplerOutput.scores.",
            )
            expected = _log_probability(model, out.ids) / steps**penalty
            assert_close(
                out.scores.to(expected.dtype),
                expected,
                f"with length_penalty={penalty} and {steps} new ids the scores are not "
                f"log p(sequence | prime) / {steps} ** {penalty}",
                "divide each beam's summed log-probability by (number of new ids) ** "
                "length_penalty, once, when the beams are returned.",
                atol=1e-4,
                rtol=1e-4,
            )
    if not tried:
        raise CheckSkipped(f"{subject.label} accepts no length_penalty of 1, 0.5 or 2")
