"""Small helpers shared by several test modules."""

from collections.abc import Iterator
from contextlib import contextmanager


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
