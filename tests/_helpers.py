"""Small helpers shared by several test modules."""

from collections.abc import Iterator
from contextlib import contextmanager

# A tiny corpus and a model spec that fits it in a few steps (generation, constraints, scoring).
TEXT = "the cat sat on the mat.\nand the dog ran far.\n" * 30
SMALL = {
    "cell": {"hidden_size": 16, "num_layers": 1},
    "model": {"embedding_size": 8},
    "optimizer": {"name": "adam", "lr": 0.02},
    "train": {"steps": 15, "batch_size": 4, "seq_len": 16},
}


@contextmanager
def forward_calls(model) -> Iterator[list]:
    """Record the input shape of every ``model.forward`` call made inside the block."""
    calls = []
    original = model.forward

    def counting(ids, state=None):
        calls.append(ids.shape)
        return original(ids, state)

    model.forward = counting
    try:
        yield calls
    finally:
        del model.forward


@contextmanager
def step_calls(model) -> Iterator[list]:
    """Record the ids' shape of every call of the steps ``model.inference_step()`` builds inside
    the block (one per character generation advances)."""
    calls = []
    original = model.inference_step

    def counting_inference_step():
        step = original()

        def counting(ids, state):
            calls.append(ids.shape)
            return step(ids, state)

        return counting

    model.inference_step = counting_inference_step
    try:
        yield calls
    finally:
        del model.inference_step
