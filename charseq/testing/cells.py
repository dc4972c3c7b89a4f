"""Conformance checks for cells, in two files: what every cell keeps on its own
(:mod:`charseq.testing.cell_contract`) and what every path that runs a cell computes the same
(:mod:`charseq.testing.cell_agreement`, and :mod:`charseq.testing.cell_inspection` for what
inspection records). This module gathers them, with the reference cell.

Each check takes the cell to test as a registry Component, a ``"cell:name"`` string, or a
factory ``make_cell(input_size, hidden_size)`` returning a fresh :class:`charseq.Cell`. Checks
build their own cells at tiny sizes, move them to the dtype they need with ``.to(dtype)``, put
them in eval mode, and fix the torch seed (the caller's RNG state is restored afterwards)::

    from charseq.testing import check_gradcheck
    check_gradcheck(lambda i, h: MyCell(i, h))
"""

from charseq.testing.cell_agreement import (
    check_batch_independence,
    check_compiled_matches_step,
    check_detach_state,
    check_fused_matches_step,
    check_fused_stack_matches_layers,
    check_gradcheck,
    check_inference_step_matches_step,
)
from charseq.testing.cell_contract import (
    check_cell_api,
    check_dtype_device,
    check_no_nan_long_sequence,
    check_seeded_determinism,
    check_shapes,
    check_state_dict_round_trip,
)
from charseq.testing.cell_inspection import check_activations_match_step
from charseq.testing.fixtures import ElmanCell

__all__ = [
    "ElmanCell",
    "check_activations_match_step",
    "check_batch_independence",
    "check_cell_api",
    "check_compiled_matches_step",
    "check_detach_state",
    "check_dtype_device",
    "check_fused_matches_step",
    "check_fused_stack_matches_layers",
    "check_gradcheck",
    "check_inference_step_matches_step",
    "check_no_nan_long_sequence",
    "check_seeded_determinism",
    "check_shapes",
    "check_state_dict_round_trip",
]
