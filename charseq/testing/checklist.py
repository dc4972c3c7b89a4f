"""Which checks run, in what order, and when each applies: the kit's one list of checks.

:data:`CHECKS` lists every check of each kind in the order the runners run them; the tags a
check needs (its ``requires``, from :data:`charseq.testing.tags.TAGS`) are written next to it.
:func:`checks_for` reads the list for one component, as ``parametrize_with_checks`` does::

    from charseq.testing.checklist import checks_for

    for check, skipped in checks_for("sampler:greedy"):
        print(check.__name__, skipped or "runs")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from charseq.testing import cell_agreement as agree
from charseq.testing import cell_contract as contract
from charseq.testing import cell_inspection as inspection
from charseq.testing import constraints, samplers, tokenizers
from charseq.testing import sampler_beams as beams
from charseq.testing._base import CHECKED_KINDS, REGISTERED, Subject, as_subject
from charseq.testing.tags import not_applicable

__all__ = ["CHECKS", "all_checks", "checks_for"]

Check = Callable[..., None]

CHECKS: dict[str, tuple[Check, ...]] = {
    "cell": (
        contract.check_cell_api,
        contract.check_shapes,
        agree.check_gradcheck,
        agree.check_fused_matches_step,  # fused_forward
        agree.check_fused_stack_matches_layers,  # fused_stack
        agree.check_compiled_matches_step,  # skips itself for fused_stack
        agree.check_inference_step_matches_step,  # inference_step
        agree.check_batch_independence,
        agree.check_detach_state,
        contract.check_seeded_determinism,
        contract.check_dtype_device,
        contract.check_state_dict_round_trip,
        contract.check_no_nan_long_sequence,
        inspection.check_activations_match_step,
    ),
    "tokenizer": (
        tokenizers.check_tokenizer_api,
        tokenizers.check_decode_encode_round_trip,
        tokenizers.check_ids_in_range,
        tokenizers.check_vocab_json_round_trip,
        tokenizers.check_stream_decoder_matches_decode,  # stream_decoder
        tokenizers.check_unknown_policy,  # unknown_policy
    ),
    "sampler": (
        samplers.check_sampler_api,
        samplers.check_sampled_ids_in_vocab,
        samplers.check_masked_ids_never_sampled,
        samplers.check_sampler_reproducible,
        samplers.check_deterministic_sampler_ignores_the_generator,  # deterministic
        samplers.check_greedy_is_argmax,  # greedy
        samplers.check_low_temperature_is_greedy,  # temperature
        samplers.check_top_k_one_is_greedy,  # top_k
        samplers.check_top_k_support,  # top_k
        samplers.check_top_p_support,  # top_p
        samplers.check_min_p_support,  # min_p
        samplers.check_repetition_penalty,  # repetition_penalty
        beams.check_beam_width_one_is_greedy,  # num_beams
        beams.check_beam_scores,  # num_beams
        beams.check_num_return_sequences,  # num_beams, num_return_sequences
        beams.check_beam_length_penalty,  # num_beams, length_penalty
    ),
    "constraint": (
        constraints.check_constraint_api,
        constraints.check_never_masks_every_id,
        constraints.check_constraint_deterministic,
        constraints.check_constraint_batch_independence,
        constraints.check_constraint_follows_reorder,
        constraints.check_allows_agrees_with_mask,
        constraints.check_end_within_text,
    ),
}
"""Every check, by kind, in the order they run (the comments name the tags each needs)."""

# a check made with @register_check but left out of CHECKS would never run: refuse that here
_unlisted = [c.__name__ for c in REGISTERED if c not in CHECKS[c.kind]]  # type: ignore[attr-defined]
if _unlisted:  # pragma: no cover - a mistake in the kit itself
    raise RuntimeError(f"charseq.testing.checklist.CHECKS lacks {', '.join(_unlisted)}")


def all_checks(kind: str | None = None) -> list[Check]:
    """Every check of ``kind`` (``"cell"``, ``"tokenizer"``, ``"sampler"``, ``"constraint"``),
    or of all kinds."""
    if kind is not None and kind not in CHECKS:
        raise ValueError(f"no checks for kind {kind!r}; checked kinds: {', '.join(CHECKED_KINDS)}")
    kinds = CHECKED_KINDS if kind is None else (kind,)
    return [check for k in kinds for check in CHECKS[k]]


def checks_for(component: Any, kind: str | None = None) -> Iterator[tuple[Check, str | None]]:
    """Each check of the component's kind, in order, with why it does not apply (``None`` when
    it does).

    A component whose tags cannot be worked out (it fails to build) gets ``None`` for every
    check: its checks run, and fail saying why.
    """
    subject: Subject = as_subject(component, kind)
    for check in CHECKS[subject.kind]:
        try:
            reason = not_applicable(check, subject)
        except Exception:
            reason = None  # a component that cannot even be built fails when its checks run
        yield check, reason
