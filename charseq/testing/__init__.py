"""charseq's conformance kit: the checks every cell, tokenizer, sampler and constraint plugin
must pass.

Install with ``pip install "charseq[testing]"`` (pytest and Hypothesis), or in a checkout
``pip install -e ".[testing]"``. charseq runs this kit on its own built-in components; a plugin
author runs it from the plugin's tests::

    from charseq.testing import check_plugin_installed, parametrize_with_checks

    @parametrize_with_checks(["cell:mgu"])
    def test_conformance(component, check):
        check(component)

    def test_installed():
        assert [c.name for c in check_plugin_installed("charseq-mgu")] == ["mgu"]

Each check is also a plain function taking a registry Component, a ``"kind:name"`` string or a
factory (``make_cell(input_size, hidden_size)``, ``make_tokenizer()``, ``make_sampler(**opts)``,
``make_constraint(**opts)``) and raising :class:`CheckError` with what failed and how to fix it;
a check that does not apply raises :class:`CheckSkipped` (a ``unittest.SkipTest``, which pytest
reports as skipped). Which checks apply is decided by the component's tags (:func:`get_tags`).
Checks draw examples with Hypothesis under the active settings profile; sizes stay tiny so the
whole kit runs in seconds.

Nothing else in charseq imports this package.
"""

try:
    import hypothesis  # noqa: F401  (the testing extra)
except ImportError as error:  # pragma: no cover - the test suite has it
    raise ImportError(
        "charseq.testing needs the 'testing' extra (Hypothesis): pip install "
        '"charseq[testing]", or pip install -e ".[testing]" in a checkout'
    ) from error

from charseq.testing import strategies  # noqa: E402
from charseq.testing._base import CheckError, CheckSkipped, get_tags
from charseq.testing.cells import (
    check_activations_match_step,
    check_batch_independence,
    check_cell_api,
    check_compiled_matches_step,
    check_detach_state,
    check_dtype_device,
    check_fused_matches_step,
    check_fused_stack_matches_layers,
    check_gradcheck,
    check_inference_step_matches_step,
    check_no_nan_long_sequence,
    check_seeded_determinism,
    check_shapes,
    check_state_dict_round_trip,
)
from charseq.testing.checklist import all_checks
from charseq.testing.constraints import (
    check_allows_agrees_with_mask,
    check_constraint_api,
    check_constraint_batch_independence,
    check_constraint_deterministic,
    check_constraint_follows_reorder,
    check_end_within_text,
    check_never_masks_every_id,
)
from charseq.testing.fixtures import ElmanCell, fixed_logits_model, tiny_model
from charseq.testing.parametrize import (
    check_component,
    check_plugin_installed,
    parametrize_with_checks,
)
from charseq.testing.samplers import (
    check_beam_length_penalty,
    check_beam_scores,
    check_beam_width_one_is_greedy,
    check_deterministic_sampler_ignores_the_generator,
    check_greedy_is_argmax,
    check_low_temperature_is_greedy,
    check_masked_ids_never_sampled,
    check_min_p_support,
    check_num_return_sequences,
    check_repetition_penalty,
    check_sampled_ids_in_vocab,
    check_sampler_api,
    check_sampler_reproducible,
    check_top_k_one_is_greedy,
    check_top_k_support,
    check_top_p_support,
)
from charseq.testing.tokenizers import (
    check_decode_encode_round_trip,
    check_ids_in_range,
    check_stream_decoder_matches_decode,
    check_tokenizer_api,
    check_unknown_policy,
    check_vocab_json_round_trip,
)

__all__ = [
    "CheckError",
    "CheckSkipped",
    "ElmanCell",
    "all_checks",
    "check_activations_match_step",
    "check_allows_agrees_with_mask",
    "check_batch_independence",
    "check_beam_length_penalty",
    "check_beam_scores",
    "check_beam_width_one_is_greedy",
    "check_cell_api",
    "check_component",
    "check_constraint_api",
    "check_constraint_batch_independence",
    "check_constraint_deterministic",
    "check_constraint_follows_reorder",
    "check_decode_encode_round_trip",
    "check_detach_state",
    "check_deterministic_sampler_ignores_the_generator",
    "check_dtype_device",
    "check_end_within_text",
    "check_fused_matches_step",
    "check_compiled_matches_step",
    "check_fused_stack_matches_layers",
    "check_inference_step_matches_step",
    "check_gradcheck",
    "check_greedy_is_argmax",
    "check_ids_in_range",
    "check_low_temperature_is_greedy",
    "check_masked_ids_never_sampled",
    "check_min_p_support",
    "check_never_masks_every_id",
    "check_no_nan_long_sequence",
    "check_num_return_sequences",
    "check_plugin_installed",
    "check_repetition_penalty",
    "check_sampled_ids_in_vocab",
    "check_sampler_api",
    "check_sampler_reproducible",
    "check_seeded_determinism",
    "check_shapes",
    "check_stream_decoder_matches_decode",
    "check_state_dict_round_trip",
    "check_tokenizer_api",
    "check_top_k_one_is_greedy",
    "check_top_k_support",
    "check_top_p_support",
    "check_unknown_policy",
    "check_vocab_json_round_trip",
    "fixed_logits_model",
    "get_tags",
    "parametrize_with_checks",
    "strategies",
    "tiny_model",
]
