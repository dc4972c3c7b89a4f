"""The report page: one self-contained HTML file to look inside a model as it reads a text.

:func:`write_report` (``charseq inspect RUN --text FILE --html out.html``) writes a page that
shows the text coloured by a chosen unit's activation, a unit picker with the search's best
units (:func:`~charseq.inspect.find_units`) one click away, the model's five likeliest next
characters at each position, a view colouring each character by its surprise, and the gate
saturation plot of Karpathy, Johnson and Fei-Fei (2015, figure 3) drawn here as inline SVG.

The file works offline and loads nothing: its styles and script are inline (a
Content-Security-Policy allows that one script and no other, and no request to any host), and
the data is JSON in a ``<script type="application/json">`` with every ``<``, ``>`` and ``&``
written as a JSON escape, so no text closes the element. The script builds the page with
``textContent``: a ``<script>`` in the text is shown as text and never runs.

What is embedded is capped, and the page says so. Each unit's values are stored in 8 bits
(``round(127 * v / max|v|)``, the unit's own largest size kept beside them): plenty for a
colour, and four times smaller than float32. By default only the layers' outputs and states are
embedded (an LSTM's ``h`` and ``c``, not its gates) within :data:`MAX_VALUES` values, plus every
unit the search names; ``traces=`` chooses others. A 5,000-character text of a two-layer LSTM of
128 units makes a file of under 4 MB.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from charseq.errors import CharseqError
from charseq.inspect.activations import Activations, Trace
from charseq.inspect.gates import GateSaturation
from charseq.inspect.search import Finding

__all__ = ["MAX_VALUES", "render_report", "saturation_svg", "write_report"]

MAX_VALUES = 4_000_000
"""At most this many unit values (one byte each, a third more as base64) are embedded by
default: traces past it are left out, and the page lists them."""

TOP_K = 5
"""How many next-character guesses the page shows per position."""

GATE_NAMES = {
    "i": "input gate",
    "f": "forget gate",
    "o": "output gate",
    "r": "reset gate",
    "z": "update gate",
}
"""What the built-in cells' gates are called in the saturation plot's titles."""


def write_report(
    acts: Activations,
    path: str | Path,
    *,
    findings: Mapping[str, Sequence[Finding]] | None = None,
    saturation: Sequence[GateSaturation] = (),
    traces: Iterable[str] | None = None,
    about: Mapping[str, str] | None = None,
    max_values: int = MAX_VALUES,
) -> Path:
    """Write the report page of ``acts`` to ``path`` (see :func:`render_report`)."""
    page = render_report(
        acts,
        findings=findings,
        saturation=saturation,
        traces=traces,
        about=about,
        max_values=max_values,
    )
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path


def csp_hash(script: str) -> str:
    """A script's digest as a Content-Security-Policy source: ``sha256-<base64>``."""
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()


def render_report(
    acts: Activations,
    *,
    findings: Mapping[str, Sequence[Finding]] | None = None,
    saturation: Sequence[GateSaturation] = (),
    traces: Iterable[str] | None = None,
    about: Mapping[str, str] | None = None,
    max_values: int = MAX_VALUES,
) -> str:
    """The report page of ``acts`` as one HTML document.

    Args:
        acts: what the model computed on the text (:meth:`charseq.Pipeline.activations`).
        findings: the search's best units per detector (:func:`~charseq.inspect.find_units`);
            each unit is embedded, whatever ``traces`` says.
        saturation: the gates' saturation (:func:`~charseq.inspect.gate_saturation`), drawn as
            a scatter per layer and gate; nothing is drawn when empty.
        traces: the traces to embed whole, by key (``"1:c"``), in this order; default: every
            output and state, bottom layer first, as many as fit in ``max_values``.
        about: lines for the page's header, e.g. ``{"model": "runs/demo", "text": "a.py"}``.
        max_values: the cap on embedded values for the default ``traces`` (given ``traces``
            are embedded whole).
    """
    data = report_data(acts, findings=findings, traces=traces, about=about, max_values=max_values)
    template = resources.files("charseq.inspect").joinpath("report.html").read_text("utf-8")
    script = resources.files("charseq.inspect").joinpath("report.js").read_text("utf-8")
    title = "charseq report" + (f": {about['model']}" if about and "model" in about else "")
    parts = {
        "title": html.escape(title),
        "script_hash": csp_hash(script),
        "data": embed_json(data),
        "saturation": saturation_svg(saturation) if saturation else _NO_GATES,
        "script": script,
    }
    for name, value in parts.items():
        template = template.replace(f"<!--{name}-->", value)
    return template


_NO_GATES = '<p class="hint"><i>No gate statistics: the model has no gates, or none were given.</i>'


def embed_json(data: Any) -> str:
    """``data`` as JSON safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` are written
    as ``\\u003c``, ``\\u003e``, ``\\u0026`` (JSON reads them back as themselves), so nothing in
    the data can close the element or open a comment."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def report_data(
    acts: Activations,
    *,
    findings: Mapping[str, Sequence[Finding]] | None = None,
    traces: Iterable[str] | None = None,
    about: Mapping[str, str] | None = None,
    max_values: int = MAX_VALUES,
) -> dict[str, Any]:
    """What the page's script reads: the tokens, the surprise, the top guesses, the embedded
    traces and units (8-bit, base64), the findings, and what was left out."""
    top_ids, top_probs = acts.top(TOP_K)
    chosen, left_out = _choose_traces(acts, traces, max_values)
    embedded = {trace.key for trace in chosen}
    found = findings or {}
    pinned = {
        finding.unit
        for items in found.values()
        for finding in items
        if finding.unit.rpartition(":")[0] not in embedded
    }
    bits = float(acts.surprise.mean() / math.log(2))
    return {
        "about": dict(about or {}),
        "tokens": list(acts.tokens),
        "vocab": list(acts.vocab),
        "surprise": _rounded(acts.surprise),
        "bpc": round(bits, 4),
        "top_ids": top_ids.tolist(),
        "top_probs": _rounded(top_probs),
        "traces": [_trace_entry(trace) for trace in chosen],
        "layout": [
            {"key": t.key, "layer": t.layer, "name": t.name, "role": t.role, "units": t.units}
            for t in acts.traces
        ],
        "units": {unit: _unit_entry(acts.unit(unit)) for unit in sorted(pinned)},
        "findings": [
            {"detector": name, "units": [_finding_entry(f) for f in items]}
            for name, items in found.items()
        ],
        "left_out": left_out,
    }


def _choose_traces(
    acts: Activations, keys: Iterable[str] | None, max_values: int
) -> tuple[list[Trace], list[str]]:
    """The traces to embed and the keys of those left out."""
    if keys is not None:
        chosen = [acts.trace(key) for key in dict.fromkeys(keys)]
        return chosen, [t.key for t in acts.traces if t not in chosen]
    chosen, left_out, total = [], [], 0
    for trace in acts.traces:
        size = trace.values.size
        if trace.role != "internal" and total + size <= max_values:
            chosen.append(trace)
            total += size
        else:
            left_out.append(trace.key)
    return chosen, left_out


def _quantise(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(T, U)`` values as int8 ``round(127 * v / max|v|)`` per unit, and that ``max|v|``
    (1 for a unit that is 0 throughout)."""
    scale = np.abs(values).max(axis=0).astype(np.float64)  # (U,)
    scale[~(scale > 0)] = 1.0
    quantised = np.round(values / scale * 127).astype(np.int8)  # (T, U)
    return quantised, scale


def _trace_entry(trace: Trace) -> dict[str, Any]:
    quantised, scale = _quantise(np.nan_to_num(trace.values))
    return {
        "key": trace.key,
        "scales": [float(f"{s:.5g}") for s in scale],
        "data": base64.b64encode(quantised.tobytes()).decode("ascii"),  # row-major (T, U)
    }


def _unit_entry(values: np.ndarray) -> dict[str, Any]:
    quantised, scale = _quantise(np.nan_to_num(values)[:, None])
    return {"scale": float(f"{scale[0]:.5g}"), "data": base64.b64encode(quantised).decode()}


def _finding_entry(finding: Finding) -> dict[str, Any]:
    return {
        "unit": finding.unit,
        "correlation": round(finding.correlation, 3),
        "accuracy": None if finding.accuracy is None else round(finding.accuracy, 3),
        "chance": round(finding.chance, 3),
        "above_chance": abs(finding.correlation) > finding.chance,
    }


def _rounded(values: np.ndarray) -> Any:
    """Values to 3 decimals, as nested lists (JSON numbers: no NaN)."""
    return np.round(np.nan_to_num(np.asarray(values, dtype=np.float64)), 3).tolist()


# -- the gate saturation plot ---------------------------------------------------------------------

_PANEL, _MARGIN = 150, (46, 12, 40, 28)  # plot square; margins left, right, bottom, top
_GATE_COLOURS = ("#1b7837", "#2166ac", "#b2182b", "#762a83", "#e08214")


def saturation_svg(
    saturation: Sequence[GateSaturation], low: float = 0.1, high: float = 0.9
) -> str:
    """An inline SVG: for each layer (columns) and gate (rows), one dot per unit at the fraction
    of the text on which it is left-saturated (below ``low``, across) and right-saturated (above
    ``high``, up), as in Karpathy et al. (2015), figure 3. A dot can only lie below the dashed
    diagonal (the two fractions sum to at most 1)."""
    if not saturation:
        raise CharseqError("no gate statistics to draw (the model's cells have no gates)")
    layers = sorted({s.layer for s in saturation})
    gates = list(dict.fromkeys(s.gate for s in saturation))
    left, right, bottom, top = _MARGIN
    cell_w, cell_h = left + _PANEL + right, top + _PANEL + bottom
    width, height = cell_w * len(layers), cell_h * len(gates)
    parts = [
        f'<svg class="saturation" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="gate saturation per layer and gate">'
    ]
    for stat in saturation:
        x0 = layers.index(stat.layer) * cell_w + left
        y0 = gates.index(stat.gate) * cell_h + top
        colour = _GATE_COLOURS[gates.index(stat.gate) % len(_GATE_COLOURS)]
        parts.append(_panel(stat, x0, y0, colour, low, high))
    parts.append("</svg>")
    return "\n".join(parts)


def _text(x: float, y: float, cls: str, anchor: str, content: str, extra: str = "") -> str:
    """An SVG ``<text>`` at (x, y), its content escaped."""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" class="{cls}" text-anchor="{anchor}"{extra}>'
        f"{html.escape(content)}</text>"
    )


def _panel(stat: GateSaturation, x0: float, y0: float, colour: str, low: float, high: float) -> str:
    """One layer's one gate: axes, ticks, the diagonal and a dot per unit."""
    size = _PANEL
    name = GATE_NAMES.get(stat.gate, "gate")
    title = f"layer {stat.layer} · {stat.gate} ({name})"
    out = [
        f'<g class="panel" data-layer="{stat.layer}" data-gate="{html.escape(stat.gate)}">',
        f'<rect x="{x0}" y="{y0}" width="{size}" height="{size}" class="frame"/>',
        f'<line x1="{x0}" y1="{y0}" x2="{x0 + size}" y2="{y0 + size}" class="diagonal"/>',
        _text(x0, y0 - 8, "title", "start", title),
    ]
    for tick in (0, 0.5, 1):
        x, y = x0 + tick * size, y0 + (1 - tick) * size
        out.append(_text(x, y0 + size + 13, "tick", "middle", f"{tick:g}"))
        out.append(_text(x0 - 5, y + 4, "tick", "end", f"{tick:g}"))
    across = f"left-saturated (< {low:g})"
    out.append(_text(x0 + size / 2, y0 + size + 28, "axis", "middle", across))
    cx, cy = x0 - 30, y0 + size / 2
    turn = f' transform="rotate(-90 {cx} {cy})"'
    out.append(_text(cx, cy, "axis", "middle", f"right-saturated (> {high:g})", turn))
    for unit, (a, b) in enumerate(zip(stat.left, stat.right, strict=True)):
        x, y = x0 + float(a) * size, y0 + (1 - float(b)) * size
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.6" fill="{colour}">'
            f"<title>{stat.layer}:{html.escape(stat.gate)}:{unit}: left {a:.2f}, right {b:.2f}"
            "</title></circle>"
        )
    out.append("</g>")
    return "\n".join(out)
