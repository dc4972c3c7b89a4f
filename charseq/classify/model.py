"""The many-to-one model: a text in, one class out, with any cell.

:class:`TextClassifier` reads a batch of texts of different lengths through the same embedding
and :class:`~charseq.model.CellStack` as the language model, pools each text's outputs over its
own characters only (``last``, ``mean`` or ``max``) and maps the pooled vector to class logits.
Texts are right-padded to the batch's longest; since a cell reads left to right, what follows a
text's last character never reaches its outputs, and the pooling never reads the padding: a
text's logits do not depend on the other texts of its batch (a property the tests check).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from charseq.assemble import build_cells
from charseq.errors import CharseqError
from charseq.interfaces import Cell
from charseq.model import CellStack, DropoutKind
from charseq.registry import Registry
from charseq.spec import PipelineSpec

Pooling = Literal["last", "mean", "max"]
POOLINGS: tuple[str, ...] = ("last", "mean", "max")
"""How a text's outputs over time become one vector: the last character's, their mean, or
their elementwise maximum."""


class TextClassifier(nn.Module):
    r"""Embedding -> :class:`~charseq.model.CellStack` -> pooling over time -> dropout -> linear.

    .. math::
        h_{1..L} = \mathrm{cells}(E[x_{1..L}]), \qquad
        p = \mathrm{pool}(h_{1..L}), \qquad
        \mathrm{logits} = W\,\mathrm{dropout}(p) + b

    where :math:`L` is the text's own length and :math:`\mathrm{pool}` is :math:`h_L`
    (``last``), :math:`\frac{1}{L}\sum_t h_t` (``mean``) or :math:`\max_t h_t` (``max``).

    Args:
        vocab_size: number of token ids V.
        embedding_size: size E of the learned embedding.
        cells: the recurrent layers (any cells that pass the conformance kit); the first
            takes E inputs.
        num_classes: number of classes C (at least 2).
        pooling: ``"last"``, ``"mean"`` or ``"max"``.
        dropout: on the pooled vector, and between layers.
        weight_drop, dropout_kind: the :class:`~charseq.model.CellStack`'s (``cell.weight_drop``
            and ``model.dropout_kind`` of the spec; locked applies between layers).

    Shape:
        - ids: :math:`(B, T)` int64, each row a text right-padded to T with any valid id.
        - lengths: :math:`(B,)` int64, each text's length, in ``[1, T]``.
        - output: :math:`(B, C)` logits.

    Example::

        >>> from charseq.builtins.cells import GRUCell
        >>> model = TextClassifier(30, 16, [GRUCell(16, 32)], num_classes=3, pooling="mean")
        >>> ids, lengths = pad([[1, 2, 3], [4, 5]])
        >>> model(ids, lengths).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        cells: Sequence[Cell],
        num_classes: int,
        pooling: Pooling = "last",
        dropout: float = 0.0,
        *,
        weight_drop: float = 0.0,
        dropout_kind: DropoutKind = "standard",
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise CharseqError(f"a classifier needs at least 2 classes, got {num_classes}")
        if pooling not in POOLINGS:
            raise CharseqError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.vocab_size = vocab_size
        self.pooling = pooling
        self.dropout = dropout
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.stack = CellStack(
            list(cells), dropout, weight_drop=weight_drop, dropout_kind=dropout_kind
        )
        self.head = nn.Linear(self.stack.cells[-1].hidden_size, num_classes)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """Class logits ``(B, C)`` of the texts ``ids (B, T)`` of ``lengths (B,)``."""
        return self.classify(self.embedding(ids), lengths)  # (B, T) -> (B, T, E) -> (B, C)

    def classify(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Class logits ``(B, C)`` of embedded texts ``x (B, T, E)`` of ``lengths (B,)``."""
        pooled = self.pool(self.stack(x)[0], lengths)  # (B, T, H) -> (B, H)
        return self.head(nn.functional.dropout(pooled, self.dropout, self.training))

    def pool(self, out: Tensor, lengths: Tensor) -> Tensor:
        """The cells' outputs ``out (B, T, H)`` pooled over each text's own characters,
        ``(B, H)``."""
        lengths = _checked_lengths(out, lengths)
        if self.pooling == "last":
            rows = torch.arange(out.shape[0], device=out.device)
            return out[rows, lengths - 1]  # (B, T, H) -> (B, H): each text's last character
        steps = torch.arange(out.shape[1], device=out.device)
        inside = (steps.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)  # (B, T, 1)
        if self.pooling == "mean":
            total = out.masked_fill(~inside, 0.0).sum(dim=1)  # (B, H)
            return total / lengths.unsqueeze(1).to(out.dtype)
        return out.masked_fill(~inside, float("-inf")).amax(dim=1)  # (B, H)


def _checked_lengths(out: Tensor, lengths: Tensor) -> Tensor:
    if out.dim() != 3 or lengths.shape != out.shape[:1]:
        raise CharseqError(
            f"expected ids (B, T) and lengths (B,), got {tuple(out.shape[:2])} and "
            f"{tuple(lengths.shape)}"
        )
    lengths = lengths.to(out.device)
    if bool((lengths < 1).any()) or bool((lengths > out.shape[1]).any()):
        raise CharseqError(
            f"every length must be in [1, {out.shape[1]}] (a text has at least one character), "
            f"got {lengths.tolist()}"
        )
    return lengths


def pad(texts: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Texts of ids, right-padded with ``pad_id`` into one batch: ``ids (B, T)`` and
    ``lengths (B,)``, T the longest text's length."""
    if not texts or any(len(t) == 0 for t in texts):
        raise CharseqError("pad needs at least one text, and no empty text")
    lengths = torch.tensor([len(t) for t in texts], dtype=torch.long)
    ids = torch.full((len(texts), int(lengths.max())), pad_id, dtype=torch.long)
    for row, text in enumerate(texts):
        ids[row, : len(text)] = torch.as_tensor(text, dtype=torch.long)
    return ids, lengths


def build_classifier(
    spec: PipelineSpec,
    registry: Registry,
    vocab_size: int,
    num_classes: int,
    *,
    pooling: Pooling = "last",
    dropout: float = 0.0,
) -> TextClassifier:
    """A freshly initialised classifier with the spec's embedding and cell stack (any
    registered cell, with its options), on torch's current default device; its cells frozen
    (no gradients) when the spec's ``task.freeze_cells`` says so."""
    cells = build_cells(spec, registry)
    size = spec.model.embedding_size
    model = TextClassifier(
        vocab_size,
        size,
        cells,
        num_classes,
        pooling,
        dropout,
        weight_drop=spec.cell.layout.weight_drop,
        dropout_kind=spec.model.dropout_kind,
    )
    if spec.task.freeze_cells:  # the head alone learns: the cells keep their weights
        model.stack.requires_grad_(False)
    return model
