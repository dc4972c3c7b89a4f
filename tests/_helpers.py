"""Small helpers shared by several test modules."""

import random
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# A tiny corpus and a model spec that fits it in a few steps (generation, constraints, scoring).
TEXT = "the cat sat on the mat.\nand the dog ran far.\n" * 30
SMALL = {
    "cell": {"hidden_size": 16, "num_layers": 1},
    "model": {"embedding_size": 8},
    "optimizer": {"name": "adam", "lr": 0.02},
    "train": {"steps": 15, "batch_size": 4, "seq_len": 16},
}

HAN = "山水風月花春夏秋冬日雲雨雪江天人家來去不知白青紅金玉長空夜"
"""30 characters for made-up verse (:func:`quatrains`)."""


def quatrains(count: int = 40, seed: int = 0) -> str:
    """``count`` made-up five-character quatrains in tensorflow_poems' format, one a line:
    ``題{i}:`` and four clauses of five of :data:`HAN`, ended by ，。，。"""
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        clauses = ["".join(rng.choice(HAN) for _ in range(5)) for _ in range(4)]
        lines.append(f"題{i}:" + "".join(c + p for c, p in zip(clauses, "，。，。", strict=True)))
    return "\n".join(lines) + "\n"


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


def weights(pipe) -> dict:
    """A copy of a pipeline's model weights, by name."""
    return {k: v.clone() for k, v in pipe.model.state_dict().items()}


def assert_identical(a: dict, b: dict) -> None:
    """Two sets of weights are equal to the bit, name by name."""
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"
