"""The many-to-one model: shapes and gradients for every registered cell and pooling, padding
that changes nothing, and a synthetic task it must learn."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from charseq import PipelineSpec
from charseq.classify.model import POOLINGS, TextClassifier, build_classifier, pad
from charseq.errors import CharseqError
from charseq.registry import get_registry

CELLS = get_registry().names("cell")  # the built-ins and any installed plugin's (mgu)
VOCAB = 12


def classifier(cell: str, pooling: str, layers: int = 1, seed: int = 0) -> TextClassifier:
    spec = PipelineSpec.from_dict(
        {
            "cell": {"name": cell, "hidden_size": 8, "num_layers": layers},
            "model": {"embedding_size": 5},
        }
    )
    torch.manual_seed(seed)
    return build_classifier(spec, get_registry(), VOCAB, 3, pooling=pooling).eval()


texts = st.lists(
    st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=9), min_size=1, max_size=5
)


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("cell", CELLS)
@settings(max_examples=8, deadline=None)
@given(batch=texts, others=texts)
def test_a_texts_logits_do_not_depend_on_the_rest_of_its_batch(cell, pooling, batch, others):
    model = classifier(cell, pooling, layers=2)
    with torch.no_grad():
        together = model(*pad(batch + others))  # (B, C)
        for row, text in enumerate(batch):
            alone = model(*pad([text], pad_id=VOCAB - 1))  # another pad id, no neighbours
            torch.testing.assert_close(together[row], alone[0], atol=1e-5, rtol=1e-5)
    assert together.shape == (len(batch) + len(others), 3)


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_match_finite_differences(cell, pooling):
    model = classifier(cell, pooling).double()
    ids, lengths = pad([[1, 2, 3, 4], [5, 6]])
    embedded = model.embedding(ids).detach().requires_grad_(True)  # (B, T, E)
    classify = lambda x: model.classify(x, lengths)  # noqa: E731
    assert torch.autograd.gradcheck(classify, (embedded,), eps=1e-6, atol=1e-4)


def test_pooling_reads_each_text_up_to_its_length():
    model = classifier("gru", "last")
    ids, lengths = pad([[1, 2, 3], [1, 2]])
    out, _ = model.stack(model.embedding(ids))
    torch.testing.assert_close(model.pool(out, lengths), torch.stack([out[0, 2], out[1, 1]]))
    model.pooling = "mean"
    torch.testing.assert_close(model.pool(out, lengths)[1], out[1, :2].mean(dim=0))
    model.pooling = "max"
    torch.testing.assert_close(model.pool(out, lengths)[1], out[1, :2].amax(dim=0))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m(*pad([[1, 2]])[:1], torch.tensor([3])), r"length must be in \[1, 2\]"),
        (lambda m: m(torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 1])), "at least one"),
        (lambda m: m(torch.zeros(2, 3, dtype=torch.long), torch.tensor([1])), "expected ids"),
        (lambda m: pad([[1], []]), "no empty text"),
        (lambda m: TextClassifier(4, 2, list(m.stack.cells), 1), "at least 2 classes"),
        (lambda m: TextClassifier(4, 2, list(m.stack.cells), 2, pooling="sum"), "one of last"),
    ],
)
def test_bad_input_is_refused(call, message):
    with pytest.raises(CharseqError, match=message):
        call(classifier("gru", "last"))


@pytest.mark.parametrize("cell", ["gru", "mgu"] if "mgu" in CELLS else ["gru"])
def test_it_learns_whether_a_text_has_more_opening_than_closing_brackets(cell):
    rng = random.Random(0)

    def example():
        text = [rng.choice([0, 1, 2]) for _ in range(rng.randint(4, 14))]  # 0 "(", 1 ")", 2 "x"
        return text, int(text.count(0) > text.count(1))

    data = [example() for _ in range(600)]
    train, test = data[:500], data[500:]
    spec = PipelineSpec.from_dict(
        {"cell": {"name": cell, "hidden_size": 24}, "model": {"embedding_size": 8}}
    )
    torch.manual_seed(0)
    model = build_classifier(spec, get_registry(), 3, 2, pooling="last")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for step in range(150):
        batch = [train[(step * 32 + i) % len(train)] for i in range(32)]
        ids, lengths = pad([t for t, _ in batch])
        loss = torch.nn.functional.cross_entropy(
            model(ids, lengths), torch.tensor([label for _, label in batch])
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model(*pad([t for t, _ in test])).argmax(dim=1)
    accuracy = (predicted == torch.tensor([label for _, label in test])).float().mean()
    majority = max(sum(label for _, label in test), sum(1 - label for _, label in test)) / 100
    assert accuracy >= 0.85 > majority + 0.2, (float(accuracy), majority)
