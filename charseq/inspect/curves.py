"""Training curves: how a run's loss and learning rate went, read from its ``metrics.jsonl``.

:func:`read_curves` turns a run directory's log (written by :class:`~charseq.callbacks.MetricsLog`,
which ``charseq train`` and ``Pipeline.fit(out=...)`` add) into a :class:`Curves`: per step the
training loss, the learning rate and the seconds of training so far, and per evaluation the
validation loss. :func:`draw_curves` draws any number of runs overlaid, in four panels: the loss
against steps and against training time (nats per token on the left axis, bits on the right),
and the learning rate under each. :func:`plot_runs` does both and writes a PNG or an SVG; it is
``charseq plot``.

Drawing needs matplotlib, an optional extra: ``pip install "charseq[plot]"``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from charseq.checkpoint import LATEST_FILE, read_manifest, resolve_checkpoint
from charseq.errors import CharseqError
from charseq.scoring import UNITS, rate_names

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS_FILE = "metrics.jsonl"
FORMATS = (".png", ".svg")
"""The file types :func:`plot_runs` writes, chosen by the output's extension."""


@attrs.frozen(eq=False)
class Curves:
    """One run's log as arrays.

    Attributes:
        name: what the figure calls the run (the path it was read from).
        steps: ``(S,)`` the step of each training record; loss, lr: its loss (nats per token)
            and learning rate; seconds: its seconds of training so far (NaN in a log written
            before charseq recorded them).
        eval_steps: ``(E,)`` the step of each evaluation; val_nats: its validation loss;
            eval_seconds: its seconds of training so far (NaN where not recorded).
        unit: what a token is (``"characters"``, ``"bytes"``, ``"tokens"``), from the run's
            checkpoint (``"tokens"`` when it has none yet).
    """

    name: str
    steps: np.ndarray
    loss: np.ndarray
    lr: np.ndarray
    seconds: np.ndarray
    eval_steps: np.ndarray
    val_nats: np.ndarray
    eval_seconds: np.ndarray
    unit: str = "tokens"

    @property
    def timed(self) -> bool:
        """Whether the log records training time (logs from before charseq did, do not)."""
        return bool(np.isfinite(self.seconds).any())


def read_curves(run: str | Path, name: str | None = None) -> Curves:
    """Read a run directory's ``metrics.jsonl``.

    Args:
        run: the run directory (``charseq train --out``).
        name: the run's name in a figure; default: ``run`` as given.

    Raises:
        CharseqError: ``run`` is not a directory, is not a run, has no ``metrics.jsonl``, or
            its log has no training step yet.
    """
    path = Path(run)
    if not path.exists():
        raise CharseqError(f"{path}: no such run directory")
    if not path.is_dir():
        raise CharseqError(f"{path} is a file; give a run directory (charseq train --out)")
    log = path / METRICS_FILE
    if not log.is_file():
        if (path / LATEST_FILE).is_file() or any(path.glob("step-*")):
            raise CharseqError(
                f"{path} is a run directory without {METRICS_FILE}: nothing to plot (charseq "
                "train writes it; in Python, Pipeline.fit(out=...) or a MetricsLog callback)"
            )
        raise CharseqError(f"{path} is not a run directory (no {METRICS_FILE}, no {LATEST_FILE})")
    records = _records(log)
    steps = [r for r in records if r.get("event") == "step" and _numbers(r, "step", "loss")]
    unit = _unit(path)
    val = "val_loss" if unit == "texts" else "val_nats"  # a classifier's: nats per text
    evals = [r for r in records if r.get("event") == "eval" and _numbers(r, "step", val)]
    if not steps:
        raise CharseqError(f"{log} has no training step logged yet: nothing to plot")
    return Curves(
        name=str(path) if name is None else name,
        steps=_column(steps, "step"),
        loss=_column(steps, "loss"),
        lr=_column(steps, "lr"),
        seconds=_column(steps, "seconds"),
        eval_steps=_column(evals, "step"),
        val_nats=_column(evals, val),
        eval_seconds=_column(evals, "seconds"),
        unit=unit,
    )


def _records(log: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON Lines file; a line that is not one (cut short by a kill,
    or written by something else) is skipped."""
    records = []
    with log.open(encoding="utf-8", errors="replace") as file:
        for line in file:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def _numbers(record: dict[str, Any], *keys: str) -> bool:
    return all(isinstance(record.get(k), int | float) for k in keys)


def _column(records: list[dict[str, Any]], key: str) -> np.ndarray:
    """One field of every record as floats; NaN where a record lacks it."""
    values = [r.get(key) for r in records]
    return np.array([v if isinstance(v, int | float) else math.nan for v in values], float)


def _unit(run: Path) -> str:
    """What a token of the run is, from its tokenizer ("texts" for a classifier, whose loss is
    per text); "tokens" if no checkpoint says."""
    try:
        spec = read_manifest(resolve_checkpoint(run))["spec"]
        if (spec.get("task") or {}).get("name") == "classify":
            return "texts"
        return UNITS.get(spec["tokenizer"]["name"], "tokens")
    except (CharseqError, KeyError, TypeError):
        return "tokens"


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """The running mean of ``values`` over the last ``window`` (fewer at the start): the
    trend of a noisy per-step loss, one value per step."""
    sums = np.cumsum(np.insert(values, 0, 0.0))  # (S + 1,)
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def draw_curves(runs: Sequence[Curves]) -> Figure:
    """A figure of ``runs`` overlaid, one colour each: the training loss (each step faint, its
    running mean solid) and the validation loss (dots) against steps and against training time,
    nats on the left axis and bits on the right; the learning rate in a panel under each."""
    figure_class = _matplotlib_figure()
    if not runs:
        raise CharseqError("no runs to draw")
    fig = figure_class(figsize=(12, 6.5), layout="constrained")
    (by_step, by_time), (lr_step, lr_time) = fig.subplots(
        2, 2, height_ratios=(3, 1.2), sharex="col"
    )
    colours = [f"C{i % 10}" for i in range(len(runs))]
    for run, colour in zip(runs, colours, strict=True):
        trend = smooth(run.loss, window=max(1, len(run.steps) // 50))
        for ax, x, x_eval in (
            (by_step, run.steps, run.eval_steps),
            (by_time, run.seconds, run.eval_seconds),
        ):
            ax.plot(x, run.loss, color=colour, lw=0.6, alpha=0.25)
            ax.plot(x, trend, color=colour, lw=1.6, label=run.name)
            ax.plot(x_eval, run.val_nats, "o--", color=colour, ms=4, lw=1)
        lr_step.plot(run.steps, run.lr, color=colour, lw=1.4)
        lr_time.plot(run.seconds, run.lr, color=colour, lw=1.4)
    per, bits = _rate_names(runs)
    to_bits, to_nats = (lambda n: n / math.log(2)), (lambda b: b * math.log(2))
    for ax, title in ((by_step, "by step"), (by_time, "by training time")):
        ax.set_title(f"loss {title}", loc="left")
        ax.set_ylabel(f"loss (nats per {per})")
        if per != "text":  # a classifier's loss is a text's; bits per character do not apply
            ax.secondary_yaxis("right", functions=(to_bits, to_nats)).set_ylabel(bits)
        ax.grid(alpha=0.3)
    for ax, xlabel in ((lr_step, "training step"), (lr_time, "seconds of training")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("learning rate")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.grid(alpha=0.3)
    if not any(run.timed for run in runs):
        note = "no training times in these logs (written before charseq recorded them)"
        by_time.text(0.5, 0.5, note, transform=by_time.transAxes, ha="center", color="grey")
    _legend(by_step)
    return fig


def _rate_names(runs: Sequence[Curves]) -> tuple[str, str]:
    """("char", "BPC") when every run is of characters; the common unit's names otherwise;
    ("text", "") for classifiers, whose loss cannot share an axis with a language model's."""
    units = {run.unit for run in runs}
    if "texts" in units:
        if len(units) > 1:
            raise CharseqError(
                "a classifier's loss (nats per text) and a language model's (per character) "
                "do not share an axis: plot them apart"
            )
        return "text", ""
    return rate_names(units.pop() if len(units) == 1 else "tokens")


def _legend(ax: Any) -> None:
    """The runs' names by colour, and what a solid line, a faint one and dots mean."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    styles = [
        Line2D([], [], color="grey", lw=1.6),
        Line2D([], [], color="grey", lw=0.6, alpha=0.4),
        Line2D([], [], color="grey", ls="--", marker="o", ms=4, lw=1),
    ]
    kinds = ["training (running mean)", "training, each step", "validation"]
    ax.legend(handles + styles, labels + kinds, fontsize="small")


def _matplotlib_figure() -> Any:
    """matplotlib's ``Figure`` class, or an error naming the extra that installs it."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CharseqError(
            "drawing curves needs matplotlib, which is not installed: "
            'pip install "charseq[plot]" (or pip install matplotlib)'
        ) from None
    return Figure


def check_output(out: str | Path) -> str:
    """The format (``"png"``/``"svg"``) ``out``'s extension asks for; an error for others."""
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        what = f"not {suffix}" if suffix else "and it has no extension"
        raise CharseqError(f"{out}: a figure is written as .png or .svg, {what}")
    return suffix[1:]


def plot_runs(runs: Sequence[str | Path], out: str | Path, *, dpi: int = 110) -> Path:
    """Draw the curves of ``runs`` (run directories) into ``out``, PNG or SVG by its extension.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.
    """
    fmt = check_output(out)
    curves = [read_curves(run) for run in runs]
    fig = draw_curves(curves)
    out = Path(out)
    fig.savefig(out, format=fmt, dpi=dpi)
    return out
