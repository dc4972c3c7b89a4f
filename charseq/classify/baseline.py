"""The reference every classifier is measured against: logistic regression on character n-grams.

:class:`NgramBaseline` reads a text as a bag of its character n-grams (by default every 1-, 2-
and 3-gram, with ``\\x02`` marking the start and ``\\x03`` the end, so that ``on\\x03`` tells
a name ending in "-son" from one with "son" inside), keeps the
``max_features`` most frequent in the training texts, and fits a multinomial logistic
regression on them: one weight per n-gram and class. It knows nothing of order beyond n
characters, which is what makes it a fair reference: a recurrent model that cannot beat it has
not used what it reads in sequence.

The fit is full-batch Adam from zero weights, on the CPU, so it is the same on every run; a
thousand short texts take well under a second.

>>> baseline = NgramBaseline().fit(["abab", "baba", "cdcd", "dcdc"], [0, 0, 1, 1], num_classes=2)
>>> baseline.predict(["abba", "ddcc"]).tolist()
[0, 1]
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from charseq.errors import CharseqError

BEGIN = "\x02"
"""Put before every text, so the n-grams that hold it are a text's beginning."""
END = "\x03"
"""Put after every text, so the n-grams that hold it are a text's end."""


def ngrams(text: str, sizes: Sequence[int]) -> Counter[str]:
    """How often each character n-gram of each size in ``sizes`` occurs in ``text``, read
    between the :data:`BEGIN` and :data:`END` markers."""
    marked = BEGIN + text + END
    return Counter(marked[i : i + n] for n in sizes for i in range(len(marked) - n + 1))


class NgramBaseline:
    """Multinomial logistic regression on a text's character n-gram counts.

    Each text becomes a vector with one entry per kept n-gram, ``log(1 + count)`` (a tenth
    ``"a"`` says less than the first), scaled to unit length so that long and short texts
    weigh the same; a linear layer maps it to one logit per class.

    Args:
        n: the n-gram sizes counted.
        max_features: how many n-grams are kept, the most frequent in the training texts
            (ties broken alphabetically); the others are ignored, in training and prediction.
        l2: the weight of the penalty ``l2 / 2 * sum(weight ** 2)`` added to the mean
            cross-entropy (the biases are not penalised).
        epochs: how many full-batch Adam steps the fit takes.
        lr: Adam's learning rate.
        seed: seeds torch's random numbers while fitting. The fit draws none today (it starts
            from zero weights and uses every text at each step), so every seed gives the same
            model; the argument is there so that a baseline is made like the models beside it.

    Attributes:
        vocabulary: each kept n-gram and its feature's column (set by :meth:`fit`, as are
            the others).
        weight: ``(F, C)`` the weight of each n-gram for each class.
        bias: ``(C,)`` the bias of each class.
        num_classes: ``C``, how many classes there are.
    """

    def __init__(
        self,
        n: tuple[int, ...] = (1, 2, 3),
        max_features: int = 20000,
        l2: float = 1e-4,
        epochs: int = 30,
        lr: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.n = tuple(int(size) for size in n)
        if not self.n or min(self.n) < 1:
            raise CharseqError(f"n={n!r}: n-gram sizes must be 1 or more", argument="n")
        if max_features < 1:
            raise CharseqError(
                f"max_features={max_features}: keep at least 1 n-gram", argument="max_features"
            )
        if l2 < 0 or epochs < 1 or lr <= 0:
            raise CharseqError(
                f"l2={l2}, epochs={epochs}, lr={lr}: l2 must be 0 or more, epochs 1 or more "
                "and lr more than 0",
                argument=("l2", "epochs", "lr"),
            )
        self.max_features = max_features
        self.l2 = l2
        self.epochs = epochs
        self.lr = lr
        self.seed = seed
        self.vocabulary: dict[str, int] = {}
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None
        self.num_classes = 0

    def __repr__(self) -> str:
        fitted = (
            f", {len(self.vocabulary)} n-grams, {self.num_classes} classes" if self.fitted else ""
        )
        return (
            f"NgramBaseline(n={self.n}, max_features={self.max_features}, l2={self.l2}, "
            f"epochs={self.epochs}, lr={self.lr}, seed={self.seed}{fitted})"
        )

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has run."""
        return self.weight is not None

    def fit(self, texts: Sequence[str], labels: Sequence[int], num_classes: int) -> NgramBaseline:
        """Choose the n-grams from ``texts`` and fit the weights to ``labels``.

        Args:
            texts: the training texts.
            labels: the class of each text, an integer in ``range(num_classes)``.
            num_classes: how many classes there are (a class with no training text still
                gets its column of probabilities, always small).

        Returns:
            This baseline, fitted (so ``NgramBaseline().fit(...)`` reads as one step).

        Raises:
            CharseqError: no texts, a text that is not a string, as many labels as texts
                not given, a label outside ``range(num_classes)``.
        """
        texts = _check_texts(texts)
        if num_classes < 1:
            raise CharseqError(
                f"num_classes={num_classes}: there must be at least one class",
                argument="num_classes",
            )
        targets = _check_labels(labels, len(texts), num_classes)
        counts = [ngrams(text, self.n) for text in texts]
        total: Counter[str] = Counter()
        for count in counts:
            total.update(count)
        kept = sorted(total.items(), key=lambda item: (-item[1], item[0]))[: self.max_features]
        self.vocabulary = {gram: column for column, (gram, _) in enumerate(kept)}
        self.num_classes = num_classes
        features = self._features(counts)  # (N, F)
        transposed = _csr(features.t())  # (F, N): for the weights' gradient
        features = _csr(features)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            weight = torch.zeros(len(self.vocabulary), num_classes, requires_grad=True)
            bias = torch.zeros(num_classes, requires_grad=True)
            optimizer = torch.optim.Adam([weight, bias], lr=self.lr)
            for _ in range(self.epochs):
                optimizer.zero_grad()
                logits = _SparseProduct.apply(weight, features, transposed) + bias  # (N, C)
                loss = torch.nn.functional.cross_entropy(logits, targets)
                loss = loss + self.l2 / 2 * weight.pow(2).sum()
                loss.backward()
                optimizer.step()
        self.weight, self.bias = weight.detach(), bias.detach()
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, C)`` float64: the probability of each class for each text; rows sum to 1."""
        if self.weight is None or self.bias is None:
            raise CharseqError(
                "this NgramBaseline is not fitted yet: call fit(texts, labels, num_classes) first"
            )
        texts = _check_texts(texts, allow_empty=True)
        if not texts:
            return np.zeros((0, self.num_classes))
        features = self._features([ngrams(text, self.n) for text in texts])
        with torch.no_grad():
            logits = _csr(features) @ self.weight + self.bias
            return torch.softmax(logits.double(), dim=1).numpy()

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """``(N,)`` int64: the most probable class of each text."""
        return self.predict_proba(texts).argmax(axis=1).astype(np.int64)

    def _features(self, counts: Sequence[Counter[str]]) -> torch.Tensor:
        """``(N, F)`` sparse (COO) float32: ``log(1 + count)`` of each kept n-gram, each row scaled
        to unit length (a row with no kept n-gram stays zero)."""
        rows, columns, values = [], [], []
        for row, count in enumerate(counts):
            kept = [(self.vocabulary[g], c) for g, c in count.items() if g in self.vocabulary]
            if not kept:
                continue
            logs = np.log1p([c for _, c in kept])
            logs /= np.sqrt((logs**2).sum())
            rows.extend([row] * len(kept))
            columns.extend(column for column, _ in kept)
            values.extend(logs.tolist())
        indices = torch.tensor([rows, columns], dtype=torch.int64).reshape(2, -1)
        size = (len(counts), len(self.vocabulary))
        values_ = torch.tensor(values, dtype=torch.float32)
        return torch.sparse_coo_tensor(indices, values_, size, check_invariants=True).coalesce()


def _csr(matrix: torch.Tensor) -> torch.Tensor:
    """``matrix`` (sparse COO) in the compressed-rows layout, whose product with a dense
    matrix is fast on the CPU. Torch calls that layout beta and warns so, once; the
    product charseq uses is the plain one, so the warning is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return matrix.coalesce().to_sparse_csr()


class _SparseProduct(torch.autograd.Function):
    """``features @ weight`` for a constant sparse ``features``, its gradient as a second
    sparse product with the transpose made once: twenty times faster than autograd's
    own sparse backward."""

    @staticmethod
    def forward(
        ctx: Any, weight: torch.Tensor, features: torch.Tensor, transposed: torch.Tensor
    ) -> torch.Tensor:
        ctx.transposed = transposed
        return features @ weight  # (N, F) @ (F, C) -> (N, C)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return ctx.transposed @ grad, None, None  # (F, N) @ (N, C) -> (F, C)


def _check_texts(texts: Sequence[str], *, allow_empty: bool = False) -> list[str]:
    """``texts`` as a list, checked to hold strings (and, for fitting, at least one)."""
    if isinstance(texts, str):
        raise CharseqError("texts=... is one string: pass a list of texts", argument="texts")
    texts = list(texts)
    if not texts and not allow_empty:
        raise CharseqError("texts=... is empty: the baseline needs texts to fit", argument="texts")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise CharseqError(
                f"texts[{i}] is a {type(text).__name__}, not a string", argument="texts"
            )
    return texts


def _check_labels(labels: Sequence[int], count: int, num_classes: int) -> torch.Tensor:
    """``labels`` as an int64 tensor, checked against the texts and the classes."""
    array = np.asarray(labels)
    if array.ndim != 1 or len(array) != count:
        raise CharseqError(
            f"labels=... has {len(array) if array.ndim == 1 else array.shape} labels for "
            f"{count} texts: give one class index a text",
            argument=("texts", "labels"),
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise CharseqError(
            f"labels=... holds {array.dtype} values, not class indices (integers)",
            argument="labels",
        )
    bad = array[(array < 0) | (array >= num_classes)]
    if bad.size:
        raise CharseqError(
            f"labels=... holds class {int(bad[0])}, outside range({num_classes}) "
            f"(num_classes={num_classes})",
            argument=("labels", "num_classes"),
        )
    return torch.from_numpy(array.astype(np.int64))
