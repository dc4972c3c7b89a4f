"""A probe of a language model: what its state after a whole text says about the text's class.

A language model is trained only to predict the next character, yet its state after reading a
text may hold what kind of text it was: Radford et al. (2017, "Learning to Generate Reviews and
Discovering Sentiment") found one unit of a character-level LSTM that tracked a review's
sentiment. This module asks the same question of any charseq language model, in three steps:

1. :func:`final_states`: each text read alone from the model's initial state, and every layer's
   output and state tensors kept after its last character, one row per text (``(N, U)``).
   The columns are named as :mod:`charseq.inspect` names units (:func:`feature_names`:
   ``"1:c:17"`` is unit 17 of the second layer's LSTM cell state), so ``pipe.activations(text)
   .unit("1:c:17")`` shows a unit the probe found, character by character.
2. :func:`fit_probe`: a logistic regression on all of those units with an L1 penalty, which
   sets most weights to exactly zero: how well the state predicts the class, and with how many
   units (:class:`Probe`).
3. :func:`best_unit`: the single unit that separates the classes best on its own, with its
   values per class (:class:`UnitFinding`): the "sentiment neuron" experiment.

:func:`probe_texts` runs the three on one held-out split and returns a :class:`ProbeReport`
(``charseq probe`` prints its :meth:`~ProbeReport.table`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch

from charseq.classify.data import stratified_split
from charseq.errors import CharseqError
from charseq.inspect.activations import record_activations
from charseq.model import CharModel, evaluating
from charseq.requests import encode_text

if TYPE_CHECKING:
    from charseq.pipeline import Pipeline

__all__ = [
    "Probe",
    "ProbeReport",
    "UnitFinding",
    "best_unit",
    "feature_names",
    "final_states",
    "fit_probe",
    "holdout",
    "probe_texts",
]

# -- 1. the state after each text ------------------------------------------------------------


@attrs.frozen
class _Tensor:
    """One recorded tensor of one layer: where its values come from and what inspect calls it."""

    layer: int
    name: str  # "h", "c", "output", "state0", ...
    state: int | None  # the index in the layer's state tuple; None: the layer's output
    units: int


def _layout(model: CharModel) -> list[_Tensor]:
    """The layers' output and state tensors as :func:`~charseq.inspect.record_activations`
    names them (an LSTM's ``h``, equal to its output, once): found by recording a short fixed
    text, so that the probe's units are the inspector's, for any cell."""
    ids = [i % model.vocab_size for i in range(8)]
    acts = record_activations(model, ids, tokens=["?"] * len(ids), vocab=["?"] * model.vocab_size)
    layout = []
    for trace in acts.traces:
        if trace.role == "internal":
            continue
        cell = model.stack.cells[trace.layer]
        names = list(cell.state_names)
        if trace.role == "output":
            state = None
        elif trace.name in names:
            state = names.index(trace.name)
        else:  # an unnamed state: "state2"
            state = int(trace.name.removeprefix("state"))
        layout.append(_Tensor(trace.layer, trace.name, state, trace.units))
    return layout


def feature_names(pipe: Pipeline) -> list[str]:
    """The name of each column :func:`final_states` returns, ``"layer:tensor:index"`` as
    :meth:`~charseq.inspect.Activations.unit` takes it (``"0:h:3"``, ``"1:c:17"``)."""
    layout = _layout(pipe._require_model())
    return [f"{t.layer}:{t.name}:{i}" for t in layout for i in range(t.units)]


def _encode(
    pipe: Pipeline, texts: Sequence[str], unknown: str | None, sources: Sequence[str] | None
) -> list[list[int]]:
    """Each text's ids, encoded as the corpus was; an error names the text by its source or
    its number."""
    if isinstance(texts, str):
        raise CharseqError("final_states needs a list of texts, not one str")
    if sources is not None and len(sources) != len(texts):
        raise CharseqError(f"{len(texts)} texts but {len(sources)} sources")
    encoded = []
    for i, text in enumerate(texts):
        what = f"text {i + 1}" if sources is None else f"the text of {sources[i]}"
        if not isinstance(text, str):
            raise CharseqError(f"{what} is a {type(text).__name__}, not a str")
        ids = encode_text(
            pipe.tokenizer, text, what=what, unknown=unknown, normalize=pipe.normalize
        )
        if not ids:
            raise CharseqError(f"{what} has no tokens left to read ({text!r})")
        encoded.append(ids)
    return encoded


@torch.no_grad()
def _read_batch(model: CharModel, batch: list[list[int]], layout: list[_Tensor]) -> np.ndarray:
    """The layout's tensors after each text's last token, ``(B, U)``, for texts of one length
    (no padding): each layer runs its cell's own forward (the core's loop over time, or the
    cell's fused kernel), and its output at the last token and its final state are kept."""
    device = model.head.weight.device
    x = model.embedding(torch.tensor(batch, device=device))  # (B, T) -> (B, T, E)
    outputs, states = [], []
    for cell in model.stack.cells:
        x, state = cell(x)  # (B, T, H_i), the state after the last token
        outputs.append(x[:, -1])  # (B, H_i)
        states.append(state)
    columns = [
        (outputs[t.layer] if t.state is None else states[t.layer][t.state]).reshape(len(batch), -1)
        for t in layout
    ]
    return torch.cat(columns, dim=1).double().cpu().numpy()


def final_states(
    pipe: Pipeline,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    unknown: str | None = None,
    sources: Sequence[str] | None = None,
) -> np.ndarray:
    """A language model's state after reading each whole text: ``(N, U)`` float64.

    Each text is read from the model's initial state (in eval mode). A row holds, for every
    layer, bottom first, the layer's output after the text's last token and each state tensor
    that differs from it (an LSTM's ``c``; its ``h`` is the output): the columns
    :func:`feature_names` names, the values :meth:`~charseq.Pipeline.activations` records at
    the text's last token.

    Texts of one length are read together, ``batch_size`` at a time (no padding), so a text's
    row does not depend on the other texts (beyond float rounding in batched matrix products,
    about 1e-7).

    Args:
        pipe: a fitted language-model pipeline.
        texts: the texts, each encoded as the corpus was (its normalisation, the tokenizer).
        batch_size: texts read at once.
        unknown: the policy for characters outside the vocabulary (``"skip"``,
            ``"replace"``; default the tokenizer's, usually ``"error"``).
        sources: what to call each text in an error (``"names.tsv:12"``; default
            ``"text 12"``).

    Raises:
        UnknownCharacterError: a text has characters outside the vocabulary, naming the text
            and the ``unknown`` policies that get past them.
        CharseqError: no texts, a text that is not a str or has no tokens.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise CharseqError(f"batch_size must be a positive int, got {batch_size!r}")
    model = pipe._require_model()
    encoded = _encode(pipe, texts, unknown, sources)
    if not encoded:
        raise CharseqError("final_states needs at least one text")
    layout = _layout(model)
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        by_length.setdefault(len(ids), []).append(i)
    rows = np.empty((len(encoded), sum(t.units for t in layout)))
    with evaluating(model):
        for same in by_length.values():  # texts of one length: no padding to mask
            for start in range(0, len(same), batch_size):
                chosen = same[start : start + batch_size]
                rows[chosen] = _read_batch(model, [encoded[i] for i in chosen], layout)
    return rows


# -- 2. the L1 logistic-regression probe -----------------------------------------------------


def _class_ids(labels: Sequence[Any]) -> tuple[list[Any], np.ndarray]:
    """The sorted classes and each label's index among them."""
    classes = sorted(set(labels), key=str)
    index = {label: i for i, label in enumerate(classes)}
    return classes, np.array([index[label] for label in labels], dtype=np.int64)


def _check(features: np.ndarray, labels: Sequence[Any]) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] == 0:
        raise CharseqError(f"features must be (texts, units), got shape {features.shape}")
    if len(labels) != features.shape[0]:
        raise CharseqError(f"{features.shape[0]} rows of features but {len(labels)} labels")
    if not np.isfinite(features).all():
        raise CharseqError("features must be finite (the model's states hold NaN or inf)")
    counts: dict[Any, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    if len(counts) < 2:
        raise CharseqError(f"a probe needs at least two classes, got {sorted(counts, key=str)}")
    return features


def holdout(labels: Sequence[Any], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, held_out)``, ascending: ``fraction`` of each class held out (at least
    one text of each), seeded; :func:`~charseq.classify.data.stratified_split` with no test part.

    Raises:
        CharseqError: ``fraction`` not between 0 and 1, or a class with a single text.
    """
    if not (isinstance(fraction, int | float) and 0 < fraction < 1):
        raise CharseqError(f"val_fraction must be between 0 and 1, got {fraction!r}")
    split = stratified_split(labels, val=fraction, test=0.0, seed=seed)
    return split.train, split.val


@attrs.frozen(eq=False)
class Probe:
    """A multinomial logistic regression with an L1 penalty on standardised features.

    Attributes:
        classes: the class labels, in the order of ``weights``' columns.
        mean, scale: ``(U,)``: each feature is standardised as ``(x - mean) / scale`` (on the
            training texts; scale 1 for a constant feature).
        weights: ``(U, C)`` on standardised features, most of them exactly zero.
        bias: ``(C,)``.
        l1: the penalty.
        train_accuracy, held_out_accuracy: the share of texts it labels right.
        majority_accuracy: on the held-out texts, always guessing the training set's
            commonest class: the figure a probe must beat.
        train_size, held_out_size: how many texts each part had.
        iterations: the proximal-gradient steps taken.
    """

    classes: tuple[Any, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    l1: float
    train_accuracy: float
    held_out_accuracy: float
    majority_accuracy: float
    train_size: int
    held_out_size: int
    iterations: int

    @property
    def used(self) -> np.ndarray:
        """Indices of the features with a nonzero weight for some class."""
        return np.flatnonzero(np.abs(self.weights).sum(axis=1) > 0)

    @property
    def units_used(self) -> int:
        return int(self.used.size)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """``(N, C)`` class scores of unstandardised ``features`` ``(N, U)``."""
        return (np.asarray(features) - self.mean) / self.scale @ self.weights + self.bias

    def predict(self, features: np.ndarray) -> list[Any]:
        """The likeliest class of each row of ``features``."""
        return [self.classes[i] for i in self.logits(features).argmax(axis=1)]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _fista(
    x: np.ndarray, y: np.ndarray, classes: int, l1: float, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Minimise mean cross-entropy + ``l1 * |W|_1`` (the bias unpenalised) by accelerated
    proximal gradient (FISTA): a gradient step on the cross-entropy, then soft-thresholding.
    The step is 1/L, L = the largest eigenvalue of ``[x 1]^T [x 1] / n`` over 2 (a bound on
    the softmax loss's curvature), so it converges without a line search; deterministic."""
    n, u = x.shape
    target = np.eye(classes)[y]  # (n, C)
    ones = np.hstack([x, np.ones((n, 1))])
    lipschitz = 0.5 * np.linalg.eigvalsh(ones.T @ ones / n)[-1]
    step = 1.0 / max(lipschitz, 1e-12)
    w, b = np.zeros((u, classes)), np.zeros(classes)
    zw, zb, t = w, b, 1.0
    steps = max_iter
    for step_number in range(1, max_iter + 1):
        residual = (_softmax(x @ zw + zb) - target) / n  # (n, C)
        grad_w, grad_b = x.T @ residual, residual.sum(axis=0)
        moved = zw - step * grad_w
        w_next = np.sign(moved) * np.maximum(np.abs(moved) - step * l1, 0.0)
        b_next = zb - step * grad_b
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        zw = w_next + (t - 1) / t_next * (w_next - w)
        zb = b_next + (t - 1) / t_next * (b_next - b)
        change = max(np.abs(w_next - w).max(), np.abs(b_next - b).max())
        w, b, t = w_next, b_next, t_next
        if change < tol:
            steps = step_number
            break
    return w, b, steps


def fit_probe(
    features: np.ndarray,
    labels: Sequence[Any],
    *,
    l1: float = 0.01,
    seed: int = 0,
    val_fraction: float = 0.25,
    max_iter: int = 3000,
    tol: float = 1e-6,
) -> Probe:
    """Fit an L1-penalised logistic regression from ``features`` to ``labels``.

    ``val_fraction`` of each class is held out (seeded by ``seed``, as :func:`holdout`); the
    features are standardised on the rest, so the penalty weighs every unit alike, and the
    regression (one weight per unit and class, softmax over the classes) is fitted there by
    :func:`_fista`. A larger ``l1`` keeps fewer units: at 0.01 a unit must lower the mean
    cross-entropy by about 0.01 nats per unit of its standardised weight to be used.

    Raises:
        CharseqError: features not ``(N, U)`` and finite, labels of another length, fewer than
            two classes or a class with a single text, a bad ``l1`` or ``val_fraction``.
    """
    features = _check(features, labels)
    if not (isinstance(l1, int | float) and l1 >= 0):
        raise CharseqError(f"l1 must be a number >= 0, got {l1!r}")
    train, held = holdout(labels, val_fraction, seed)
    classes, y = _class_ids(labels)
    mean = features[train].mean(axis=0)
    scale = features[train].std(axis=0)
    scale[scale < 1e-12] = 1.0
    x = (features - mean) / scale
    w, b, iterations = _fista(x[train], y[train], len(classes), float(l1), max_iter, tol)
    predicted = (x @ w + b).argmax(axis=1)
    majority = np.bincount(y[train], minlength=len(classes)).argmax()
    return Probe(
        classes=tuple(classes),
        mean=mean,
        scale=scale,
        weights=w,
        bias=b,
        l1=float(l1),
        train_accuracy=float((predicted[train] == y[train]).mean()),
        held_out_accuracy=float((predicted[held] == y[held]).mean()),
        majority_accuracy=float((y[held] == majority).mean()),
        train_size=int(train.size),
        held_out_size=int(held.size),
        iterations=iterations,
    )


# -- 3. the best single unit -----------------------------------------------------------------


@attrs.frozen
class ClassValues:
    """One unit's values on the texts of one class."""

    label: Any
    count: int
    mean: float
    std: float


@attrs.frozen(eq=False)
class UnitFinding:
    """The unit that separates the classes best on its own.

    Attributes:
        unit: its name (``"1:c:17"``); index: its column in the features.
        rule: ``"threshold"`` (two classes: the texts on one side of ``threshold`` are
            ``below``, the rest the other class) or ``"nearest mean"`` (more classes: a text is
            the class whose mean value of the unit is nearest its own).
        threshold: the cut, halfway between two neighbouring values (``None`` for nearest
            mean); below: the class below it.
        accuracy: the rule's accuracy on the texts it was chosen on.
        classes: the unit's count, mean and standard deviation in each class, on those texts.
    """

    unit: str
    index: int
    rule: str
    threshold: float | None
    below: Any
    accuracy: float
    classes: tuple[ClassValues, ...]

    def predict(self, values: np.ndarray) -> list[Any]:
        """The class the rule gives each of ``values`` (the unit's values, ``(N,)``)."""
        values = np.asarray(values, dtype=np.float64)
        labels = [c.label for c in self.classes]
        if self.threshold is not None:
            above = labels[1] if self.below == labels[0] else labels[0]
            return [self.below if v < self.threshold else above for v in values]
        means = np.array([c.mean for c in self.classes])
        return [labels[i] for i in np.abs(values[:, None] - means).argmin(axis=1)]

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _threshold_accuracy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each column of ``x`` ``(N, U)`` with 0/1 labels ``y``: the best accuracy of one
    threshold, the threshold, and whether class 0 lies below it; cuts only between distinct
    values (or below or above them all, which labels every text alike)."""
    n = len(y)
    order = np.argsort(x, axis=0, kind="stable")
    xs = np.take_along_axis(x, order, axis=0)  # (N, U), each column ascending
    ones_below = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(y[order], axis=0)])  # (N+1, U)
    k = np.arange(n + 1)[:, None]  # the cut after the k smallest values
    zeros_below = k - ones_below
    total_ones = ones_below[-1]
    zero_below_right = zeros_below + (total_ones - ones_below)  # 0 below the cut, 1 above
    one_below_right = ones_below + (n - total_ones - zeros_below)
    distinct = np.vstack(
        [np.ones((1, x.shape[1]), bool), xs[1:] > xs[:-1], np.ones((1, x.shape[1]), bool)]
    )
    zero_below_right = np.where(distinct, zero_below_right, -1)
    one_below_right = np.where(distinct, one_below_right, -1)
    zero_below = zero_below_right.max(axis=0) >= one_below_right.max(axis=0)
    right = np.where(zero_below, zero_below_right.max(axis=0), one_below_right.max(axis=0))
    cut = np.where(zero_below, zero_below_right.argmax(axis=0), one_below_right.argmax(axis=0))
    padded = np.vstack([xs[:1] - 1.0, xs, xs[-1:] + 1.0])  # below all, the values, above all
    columns = np.arange(x.shape[1])
    threshold = (padded[cut, columns] + padded[cut + 1, columns]) / 2
    return right / n, threshold, zero_below


def best_unit(features: np.ndarray, labels: Sequence[Any], names: Sequence[str]) -> UnitFinding:
    """The single unit (column of ``features``) whose values alone label the texts best.

    With two classes, a unit's score is its best one-threshold accuracy (either class below);
    with more, the accuracy of labelling each text by the class whose mean value of the unit is
    nearest (one-dimensional nearest class mean). Ties go to the first unit. The accuracy is
    measured on the texts given: choose on training texts, judge with :meth:`UnitFinding.predict`
    on held-out ones (as :func:`probe_texts` does).
    """
    features = _check(features, labels)
    if len(names) != features.shape[1]:
        raise CharseqError(f"{features.shape[1]} features but {len(names)} names")
    classes, y = _class_ids(labels)
    threshold: np.ndarray | None = None
    if len(classes) == 2:
        accuracy, threshold, zero_below = _threshold_accuracy(features, y)
    else:
        means = np.stack([features[y == c].mean(axis=0) for c in range(len(classes))])  # (C, U)
        nearest = np.abs(features[:, None, :] - means[None]).argmin(axis=1)  # (N, U)
        accuracy = (nearest == y[:, None]).mean(axis=0)
    index = int(np.argmax(accuracy))
    return UnitFinding(
        unit=names[index],
        index=index,
        rule="threshold" if threshold is not None else "nearest mean",
        threshold=None if threshold is None else float(threshold[index]),
        below=None if threshold is None else classes[0 if zero_below[index] else 1],
        accuracy=float(accuracy[index]),
        classes=_class_values(features[:, index], labels),
    )


def _class_values(column: np.ndarray, labels: Sequence[Any]) -> tuple[ClassValues, ...]:
    """Count, mean and standard deviation of one unit's ``column`` in each class."""
    classes, y = _class_ids(labels)
    return tuple(
        ClassValues(
            label, int((y == c).sum()), float(column[y == c].mean()), float(column[y == c].std())
        )
        for c, label in enumerate(classes)
    )


# -- all three, on one split -----------------------------------------------------------------


@attrs.frozen(eq=False)
class ProbeReport:
    """A probe of a language model's final states, and its best single unit.

    Attributes:
        texts: how many texts were read; units: how many features each gave.
        probe: the L1 logistic regression (:class:`Probe`), fitted on the training texts.
        unit: the best single unit (:class:`UnitFinding`), chosen on the training texts; its
            ``classes`` give its values over all texts.
        unit_held_out_accuracy: that unit's rule on the held-out texts.
        top_units: the probe's units with the largest weights (name, largest absolute weight
            on standardised values), at most five.
        source: what was probed (a run directory), for the table's first line.
    """

    texts: int
    units: int
    probe: Probe
    unit: UnitFinding
    unit_held_out_accuracy: float
    top_units: tuple[tuple[str, float], ...]
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (what ``charseq probe --json`` prints)."""
        probe = self.probe
        return {
            "source": self.source,
            "texts": self.texts,
            "units": self.units,
            "classes": [str(c) for c in probe.classes],
            "train_size": probe.train_size,
            "held_out_size": probe.held_out_size,
            "probe": {
                "l1": probe.l1,
                "train_accuracy": probe.train_accuracy,
                "held_out_accuracy": probe.held_out_accuracy,
                "majority_accuracy": probe.majority_accuracy,
                "units_used": probe.units_used,
                "iterations": probe.iterations,
                "top_units": [{"unit": name, "weight": w} for name, w in self.top_units],
            },
            "best_unit": {
                "unit": self.unit.unit,
                "rule": self.unit.rule,
                "threshold": self.unit.threshold,
                "below": None if self.unit.below is None else str(self.unit.below),
                "train_accuracy": self.unit.accuracy,
                "held_out_accuracy": self.unit_held_out_accuracy,
                "classes": [
                    {"label": str(c.label), "count": c.count, "mean": c.mean, "std": c.std}
                    for c in self.unit.classes
                ],
            },
        }

    def table(self) -> str:
        """The report as plain text: the probe against the majority class, then the best unit
        and its values in each class."""
        probe, unit = self.probe, self.unit
        about = f" of {self.source}" if self.source else ""
        lines = [
            f"probe{about}: {self.texts} texts ({probe.train_size} to fit, "
            f"{probe.held_out_size} held out), {self.units} units of final state",
            "",
            f"{'':<28}{'train':>8}{'held out':>10}",
            f"{f'probe (l1 {probe.l1:g})':<28}{probe.train_accuracy:>8.3f}"
            f"{probe.held_out_accuracy:>10.3f}",
            f"{'majority class':<28}{'':>8}{probe.majority_accuracy:>10.3f}",
            f"{'best unit ' + unit.unit:<28}{unit.accuracy:>8.3f}"
            f"{self.unit_held_out_accuracy:>10.3f}",
            "",
            f"units the probe uses: {probe.units_used} of {self.units}"
            + (": " + ", ".join(name for name, _ in self.top_units) if self.top_units else ""),
            "",
        ]
        if unit.threshold is not None:
            above = next(c.label for c in unit.classes if c.label != unit.below)
            lines.append(
                f"best unit {unit.unit}: below {unit.threshold:+.4f} is {unit.below}, "
                f"above is {above}"
            )
        else:
            lines.append(f"best unit {unit.unit}: each text is the class of the nearest mean")
        width = max(5, *(len(str(c.label)) for c in unit.classes)) + 2
        lines.append(f"{'class':<{width}}{'texts':>7}{'mean':>10}{'std':>9}")
        for c in unit.classes:
            lines.append(f"{str(c.label):<{width}}{c.count:>7}{c.mean:>+10.4f}{c.std:>9.4f}")
        return "\n".join(lines)


def probe_texts(
    pipe: Pipeline,
    texts: Sequence[str],
    labels: Sequence[Any],
    *,
    l1: float = 0.01,
    seed: int = 0,
    val_fraction: float = 0.25,
    unknown: str | None = None,
    batch_size: int = 64,
    source: str = "",
    sources: Sequence[str] | None = None,
) -> ProbeReport:
    """Read each text with ``pipe``'s language model (:func:`final_states`), fit the L1 probe
    (:func:`fit_probe`) and find the best single unit (:func:`best_unit`) on the same training
    texts, and judge both on the same held-out ones.

    ``source`` names what was probed in the report; ``sources`` name the texts in errors
    (:func:`final_states`); the other arguments are those of the functions above.
    """
    features = final_states(pipe, texts, batch_size=batch_size, unknown=unknown, sources=sources)
    names = feature_names(pipe)
    probe = fit_probe(features, labels, l1=l1, seed=seed, val_fraction=val_fraction)
    train, held = holdout(labels, val_fraction, seed)
    unit = best_unit(features[train], [labels[i] for i in train], names)
    column = features[:, unit.index]
    right = [p == labels[i] for p, i in zip(unit.predict(column[held]), held, strict=True)]
    strength = np.abs(probe.weights).max(axis=1)
    top = [i for i in np.argsort(-strength, kind="stable")[:5] if strength[i] > 0]
    return ProbeReport(
        texts=len(texts),
        units=features.shape[1],
        probe=probe,
        unit=attrs.evolve(unit, classes=_class_values(column, labels)),
        unit_held_out_accuracy=float(np.mean(right)),
        top_units=tuple((names[i], float(strength[i])) for i in top),
        source=source,
    )
