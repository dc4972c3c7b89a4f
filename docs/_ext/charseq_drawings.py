"""Drawings for the tutorial, made by the build: ``{drawing} NAME`` embeds one as an SVG.

In a MyST page::

    ```{drawing} unrolled-rnn
    :alt: The RNN unrolled over "hello"
    :caption: One cell, applied at every step.
    ```

Each drawing is a function that draws with matplotlib's object-oriented API (a ``Figure``, no
pyplot, no display) on a :class:`Canvas` whose units are inches, so sizes read as they will
show: Furo's content column (``_static/charseq.css``) is about 7.8 inches wide at 96 pixels per
inch, every drawing fits it, and so its text shows at its own size (11 to 17 points, about the
page's own). The SVG keeps its text as paths (matplotlib's default), so it needs no font, and it
is embedded in the page as a ``data:`` URI (``charseq_images``): no image file is written or
committed.

One colour per role, in every drawing (after the Okabe-Ito palette, chosen to stay apart for
common colour-vision deficiencies): inputs orange, cells and gates green, outputs blue, the
recurrent state (what is carried from step to step) purple; element-wise operations are white
circles. The background is white, so a drawing reads the same in Furo's dark mode.

``:alt:`` defaults to the drawing's own description; ``:caption:`` makes it a figure with that
caption. An unknown name is an ERROR at the directive's line that lists the known names; the
project builds with ``-W``, which fails on it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
from charseq_images import data_image
from docutils import nodes
from docutils.parsers.rst import directives
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle
from matplotlib.path import Path
from sphinx.util.docutils import SphinxDirective

Point = tuple[float, float]


@dataclass(frozen=True)
class Role:
    """How one kind of thing is drawn: its fill and its edge (and arrow) colour."""

    fill: str
    edge: str


INPUT = Role(fill="#fbe3b4", edge="#b57c00")  # orange (Okabe-Ito #E69F00, darkened for lines)
CELL = Role(fill="#bfe8d9", edge="#00805c")  # bluish green (#009E73)
OUTPUT = Role(fill="#c4dcf0", edge="#0064a0")  # blue (#0072B2)
STATE = Role(fill="#f3d5e6", edge="#a3467c")  # reddish purple (#CC79A7, darkened)
OP = Role(fill="white", edge="#333333")  # element-wise operations
BOUNDARY = Role(fill="#f7f7f7", edge="#bbbbbb")  # around the inside of one cell
INK = "#222222"  # text and the arrows that carry no state
MUTED = "#666666"  # secondary text

LEGEND = [(INPUT, "input"), (CELL, "gate"), (STATE, "state"), (OUTPUT, "output")]

STYLE = {
    "font.family": "DejaVu Sans",  # matplotlib's own font: the same drawing on every machine
    "mathtext.fontset": "cm",  # maths in Computer Modern, as MathJax shows it in the text
    "svg.hashsalt": "charseq",  # the same SVG from every build (clip-path ids)
}


@dataclass(frozen=True)
class Shape:
    """A drawn box or circle, by its centre and half sizes, for connecting arrows to its edges."""

    x: float
    y: float
    half_width: float
    half_height: float

    @property
    def top(self) -> Point:
        return (self.x, self.y + self.half_height)

    @property
    def bottom(self) -> Point:
        return (self.x, self.y - self.half_height)

    @property
    def left(self) -> Point:
        return (self.x - self.half_width, self.y)

    @property
    def right(self) -> Point:
        return (self.x + self.half_width, self.y)


class Canvas:
    """A white figure whose data units are inches, with helpers for boxes, nodes and arrows."""

    def __init__(self, width: float, height: float) -> None:
        self.figure = Figure(figsize=(width, height), facecolor="white")
        self.ax = self.figure.add_axes((0, 0, 1, 1))
        self.ax.set_xlim(0, width)
        self.ax.set_ylim(0, height)
        self.ax.set_axis_off()

    def box(
        self,
        at: Point,
        size: tuple[float, float],
        role: Role,
        text: str = "",
        fontsize: float = 13,
        dashed: bool = False,
        zorder: float = 3,
        **text_style: Any,
    ) -> Shape:
        """A rounded box centred at ``at``, of ``size`` (width, height), with centred text."""
        (x, y), (w, h) = at, size
        self.ax.add_patch(
            FancyBboxPatch(
                (x - w / 2, y - h / 2),
                w,
                h,
                boxstyle="round,pad=0,rounding_size=0.08",
                facecolor=role.fill,
                edgecolor=role.edge,
                linewidth=1.6,
                linestyle=(0, (4, 2)) if dashed else "solid",
                zorder=zorder,
            )
        )
        if text:
            self.text(at, text, fontsize=fontsize, zorder=4, **text_style)
        return Shape(x, y, w / 2, h / 2)

    def node(self, at: Point, text: str, radius: float = 0.17, fontsize: float = 13) -> Shape:
        """A white circle for an element-wise operation (``×``, ``+``, ``1-``, ``tanh``)."""
        self.ax.add_patch(
            Circle(at, radius, facecolor=OP.fill, edgecolor=OP.edge, linewidth=1.4, zorder=3)
        )
        self.text(at, text, fontsize=fontsize, zorder=4)
        return Shape(at[0], at[1], radius, radius)

    def arrow(
        self, points: Sequence[Point], color: str = INK, head: bool = True, over: bool = False
    ) -> None:
        """A line through ``points`` with an arrowhead at the last one.

        ``over``: drawn above the other lines, for one that crosses them (see :meth:`gap`).
        """
        self.ax.add_patch(
            FancyArrowPatch(
                path=Path(list(points)),
                arrowstyle="-|>,head_length=0.5,head_width=0.25" if head else "-",
                mutation_scale=18,
                color=color,
                linewidth=1.6,
                joinstyle="miter",
                capstyle="butt",
                zorder=5 if over else 2,
            )
        )

    def gap(self, at: Point, background: str = "white") -> None:
        """A break in a horizontal line at ``at``, where a vertical line crosses over it."""
        corner = (at[0] - 0.08, at[1] - 0.04)
        self.ax.add_patch(Rectangle(corner, 0.16, 0.08, color=background, zorder=4.5))

    def dot(self, at: Point, color: str) -> None:
        """A junction: where one line splits into two."""
        self.ax.add_patch(Circle(at, 0.045, color=color, zorder=6))

    def text(self, at: Point, text: str, fontsize: float = 13, **style: Any) -> None:
        """Text centred at ``at`` unless ``ha``/``va`` say otherwise."""
        style = {"ha": "center", "va": "center", "color": INK, **style}
        self.ax.text(at[0], at[1], text, fontsize=fontsize, **style)

    def legend(self, y: float, roles: Sequence[tuple[Role, str]], x: float = 0.3) -> None:
        """A row of swatches at height ``y``, each naming what its colour stands for."""
        for role, label in roles:
            self.box((x + 0.12, y), (0.24, 0.2), role)
            self.text((x + 0.34, y), label, fontsize=11, ha="left", color=MUTED)
            x += 0.5 + 0.085 * len(label)

    def svg(self) -> bytes:
        """The drawing as SVG, with no date in it (the same bytes from every build)."""
        out = io.BytesIO()
        self.figure.savefig(out, format="svg", metadata={"Date": None})
        return out.getvalue()


# -- the drawings ---------------------------------------------------------------------------------


def unrolled_rnn() -> Canvas:
    """The RNN unrolled over "hello": it reads h, e, l, l and should predict e, l, l, o."""
    canvas = Canvas(7.7, 4.55)
    rows = {"target": 4.05, "output": 3.2, "state": 2.1, "input": 1.0}
    labels = {
        "target": "target $y_t$",
        "output": "output $p_t$",
        "state": "state $h_t$",
        "input": "input $x_t$",
    }
    for row, y in rows.items():
        canvas.text((1.35, y), labels[row], ha="right", fontsize=13)
    char = {"fontsize": 17, "family": "DejaVu Sans Mono", "weight": "bold"}
    h0 = (1.95, rows["state"])
    canvas.text(h0, "$h_0 = 0$", fontsize=13)
    previous: Shape | None = None
    for t, (a, b) in enumerate(zip("hell", "ello", strict=True), start=1):
        x = 2.55 + 1.3 * t - 0.75
        x_box = canvas.box((x, rows["input"]), (0.62, 0.56), INPUT, a, **char)
        cell = canvas.box((x, rows["state"]), (0.8, 0.62), CELL, f"$h_{t}$", fontsize=15)
        out = canvas.box((x, rows["output"]), (0.62, 0.56), OUTPUT, f"$p_{t}$", fontsize=15)
        target = canvas.box((x, rows["target"]), (0.62, 0.5), OUTPUT, b, dashed=True, **char)
        canvas.arrow([x_box.top, cell.bottom])
        canvas.text((x + 0.08, (x_box.top[1] + cell.bottom[1]) / 2), "$W_{ih}$", ha="left")
        canvas.arrow([cell.top, out.bottom])
        canvas.text((x + 0.08, (cell.top[1] + out.bottom[1]) / 2), "$W_{hy}$", ha="left")
        canvas.arrow([out.top, target.bottom], color=MUTED, head=False)
        canvas.text((x, 0.4), f"$t = {t}$", color=MUTED)
        start = previous.right if previous else (h0[0] + 0.45, h0[1])
        canvas.arrow([start, cell.left], color=STATE.edge)
        canvas.text(((start[0] + cell.left[0]) / 2, rows["state"] + 0.2), "$W_{hh}$", va="bottom")
        previous = cell
    return canvas


def _cell_boundary(canvas: Canvas, bottom: float, top: float) -> None:
    """The light grey box around what happens inside one cell."""
    canvas.box((3.9, (bottom + top) / 2), (6.1, top - bottom), BOUNDARY, zorder=1)


def _gate(canvas: Canvas, x: float, y: float, bus_y: float, function: str, about: str) -> Shape:
    """A gate's box at (x, y), fed from the bus below, with its name under the bus."""
    gate = canvas.box((x, y), (0.62, 0.5), CELL, function, fontsize=14)
    canvas.arrow([(x, bus_y), gate.bottom])
    canvas.dot((x, bus_y), INK)
    canvas.text((x, bus_y - 0.3), about, fontsize=11, color=MUTED)
    return gate


def _h_t_out(canvas: Canvas, at: Point, right_y: float, top: float) -> None:
    """h_t leaves at ``at``: to the right at ``right_y`` (the next step's state) and up (the
    cell's output, to the layer above or the head)."""
    x, y = at
    canvas.arrow([(x, y), (x, right_y), (7.05, right_y)], STATE.edge)
    canvas.text((7.1, right_y), "$h_t$", ha="left", fontsize=15)
    canvas.dot((x, y), STATE.edge)
    canvas.arrow([(x, y), (x, top)], OUTPUT.edge, over=True)
    canvas.text((x + 0.15, top - 0.15), "$h_t$", ha="left", fontsize=15)


def lstm_cell() -> Canvas:
    """The LSTM cell: forget, input and output gates and the candidate; the cell state on top."""
    canvas = Canvas(7.7, 5.0)
    c_y, bus_y, gate_y, mid_y = 3.85, 1.15, 1.85, 2.95
    _cell_boundary(canvas, 0.6, 4.15)
    # The cell state runs along the top: forget (×), then write (+).
    forget = canvas.node((2.1, c_y), "×")
    write = canvas.node((3.9, c_y), "+")
    canvas.text((0.1, c_y), "$c_{t-1}$", ha="left", fontsize=15)
    canvas.arrow([(0.65, c_y), forget.left], STATE.edge)
    canvas.arrow([forget.right, write.left], STATE.edge)
    canvas.arrow([write.right, (7.05, c_y)], STATE.edge)
    canvas.text((7.1, c_y), "$c_t$", ha="left", fontsize=15)
    # h_{t-1} and x_t meet on a bus that feeds the four gates.
    canvas.text((0.1, bus_y), "$h_{t-1}$", ha="left", fontsize=15)
    canvas.arrow([(0.65, bus_y), (1.3, bus_y)], STATE.edge, head=False)
    canvas.text((1.3, 0.15), "$x_t$", fontsize=15)
    canvas.arrow([(1.3, 0.35), (1.3, bus_y)], INPUT.edge, head=False)
    canvas.arrow([(1.3, bus_y), (5.4, bus_y)], INK, head=False)
    canvas.dot((1.3, bus_y), INK)
    f = _gate(canvas, 2.1, gate_y, bus_y, r"$\sigma$", "forget")
    i = _gate(canvas, 3.0, gate_y, bus_y, r"$\sigma$", "input")
    g = _gate(canvas, 3.9, gate_y, bus_y, "tanh", "candidate")
    o = _gate(canvas, 5.4, gate_y, bus_y, r"$\sigma$", "output")
    # f scales the old cell state; i × g is what is written.
    canvas.arrow([f.top, forget.bottom], CELL.edge)
    canvas.text((2.0, 2.6), "$f$", ha="right", fontsize=15)
    scaled = canvas.node((3.9, mid_y), "×")
    canvas.arrow([i.top, (3.0, mid_y), scaled.left], CELL.edge)
    canvas.text((2.9, 2.6), "$i$", ha="right", fontsize=15)
    canvas.arrow([g.top, scaled.bottom], CELL.edge)
    canvas.text((4.0, 2.45), "$g$", ha="left", fontsize=15)
    canvas.arrow([scaled.top, write.bottom], CELL.edge)
    # The output gate shows o × tanh(c_t): that is h_t.
    squash = canvas.node((6.3, mid_y), "tanh", radius=0.27, fontsize=12)
    canvas.dot((6.3, c_y), STATE.edge)
    canvas.arrow([(6.3, c_y), squash.top], STATE.edge)
    shown = canvas.node((6.3, gate_y), "×")
    canvas.arrow([squash.bottom, shown.top], STATE.edge)
    canvas.arrow([o.right, shown.left], CELL.edge)
    canvas.text((5.85, gate_y + 0.1), "$o$", va="bottom", fontsize=15)
    canvas.arrow([shown.right, (6.75, gate_y)], STATE.edge, head=False)
    _h_t_out(canvas, (6.75, gate_y), bus_y, 4.75)
    canvas.gap((6.75, c_y), BOUNDARY.fill)  # h_t crosses over the cell state
    canvas.legend(0.15, LEGEND, x=2.3)
    return canvas


def gru_cell() -> Canvas:
    """The GRU cell: reset and update gates, the candidate; h_t = (1 - z) n + z h_{t-1}."""
    canvas = Canvas(7.7, 5.0)
    h_y, z_y, n_y, gate_y, bus_y = 4.0, 3.3, 2.55, 1.65, 1.0
    _cell_boundary(canvas, 0.45, 4.3)
    # The state runs along the top: keep z of it (×), add (1 - z) of the candidate (+).
    keep = canvas.node((2.1, h_y), "×")
    mix = canvas.node((5.6, h_y), "+")
    canvas.text((0.1, h_y), "$h_{t-1}$", ha="left", fontsize=15)
    canvas.arrow([(0.65, h_y), keep.left], STATE.edge)
    canvas.arrow([keep.right, mix.left], STATE.edge)
    # h_{t-1} also goes down to the bus, where x_t joins it to feed the gates.
    canvas.dot((1.1, h_y), STATE.edge)
    canvas.arrow([(1.1, h_y), (1.1, bus_y), (1.5, bus_y)], STATE.edge, head=False)
    canvas.text((1.5, 0.15), "$x_t$", fontsize=15)
    canvas.arrow([(1.5, 0.35), (1.5, bus_y)], INPUT.edge, head=False)
    canvas.arrow([(1.5, bus_y), (5.6, bus_y)], INK, head=False)
    canvas.dot((1.5, bus_y), INK)
    z = _gate(canvas, 2.1, gate_y, bus_y, r"$\sigma$", "update")
    r = _gate(canvas, 2.95, gate_y, bus_y, r"$\sigma$", "reset")
    # torch's convention: r multiplies W_hn h_{t-1} + b_hn (not h_{t-1}), inside the candidate.
    linear = canvas.box((4.1, gate_y), (1.3, 0.5), OP, r"$W_{hn} h_{t-1} + b_{hn}$", fontsize=12)
    canvas.arrow([(4.1, bus_y), linear.bottom])
    canvas.dot((4.1, bus_y), INK)
    reset = canvas.node((4.1, n_y), "×")
    canvas.arrow([r.top, (2.95, n_y), reset.left], CELL.edge)
    canvas.text((2.85, 2.2), "$r$", ha="right", fontsize=15)
    canvas.arrow([linear.top, reset.bottom])
    n = _gate(canvas, 5.6, n_y, bus_y, "tanh", "candidate")
    canvas.arrow([reset.right, n.left])
    # z keeps the old state, 1 - z lets the candidate in.
    canvas.arrow([z.top, keep.bottom], CELL.edge)
    canvas.text((2.0, 2.5), "$z$", ha="right", fontsize=15)
    canvas.dot((2.1, z_y), CELL.edge)
    flip = canvas.node((3.9, z_y), "1−", radius=0.2, fontsize=12)
    canvas.arrow([(2.1, z_y), flip.left], CELL.edge)
    let_in = canvas.node((5.6, z_y), "×")
    canvas.arrow([flip.right, let_in.left], CELL.edge)
    canvas.text((4.75, z_y + 0.08), "$1 - z$", va="bottom", fontsize=14)
    canvas.arrow([n.top, let_in.bottom], CELL.edge)
    canvas.text((5.7, 2.98), "$n$", ha="left", fontsize=15)
    canvas.arrow([let_in.top, mix.bottom], CELL.edge)
    canvas.arrow([mix.right, (6.75, h_y)], STATE.edge, head=False)
    _h_t_out(canvas, (6.75, h_y), h_y, 4.85)
    canvas.legend(0.15, LEGEND, x=2.3)
    return canvas


@dataclass(frozen=True)
class _Panel:
    """One shape: how many time steps, which of them read an input and which write an output."""

    title: str
    qualifier: str
    steps: int
    inputs: Sequence[int]
    outputs: Sequence[int]
    use: str
    how: str


_PANELS = [
    _Panel("one to one", "", 1, [0], [0], "no recurrence", "a plain network"),
    _Panel("one to many", "", 3, [0], [0, 1, 2], "generation", "built in"),
    _Panel("many to one", "", 3, [0, 1, 2], [2], "classification", "assembled"),
    _Panel("many to many", "read, then write", 5, [0, 1, 2], [3, 4], "translation", "assembled"),
    _Panel("many to many", "one per input", 3, [0, 1, 2], [0, 1, 2], "language model", "built in"),
]


def sequence_shapes() -> Canvas:
    """The five shapes of a sequence model, and what charseq does with each."""
    canvas = Canvas(7.8, 3.3)
    step, box = 0.45, (0.22, 0.3)  # 0.2 inches between cells: room for the state's arrow
    rows = {"output": 2.3, "cell": 1.6, "input": 0.9}
    widths = [
        max(panel.steps * step, 1.4 if panel.use == "language model" else 1.25) for panel in _PANELS
    ]
    gap = (7.8 - 0.1 - sum(widths)) / (len(_PANELS) - 1)
    left = 0.05
    for panel, width in zip(_PANELS, widths, strict=True):
        centre = left + width / 2
        canvas.text((centre, 3.1), panel.title, fontsize=11, weight="bold")
        if panel.qualifier:
            canvas.text((centre, 2.85), panel.qualifier, fontsize=11, color=MUTED)
        canvas.text((centre, 0.45), panel.use, fontsize=11, weight="bold")
        canvas.text((centre, 0.2), panel.how, fontsize=11, color=MUTED)
        previous: Shape | None = None
        for t in range(panel.steps):
            x = centre + (t - (panel.steps - 1) / 2) * step
            cell = canvas.box((x, rows["cell"]), box, CELL)
            if t in panel.inputs:
                canvas.arrow([canvas.box((x, rows["input"]), box, INPUT).top, cell.bottom])
            if t in panel.outputs:
                canvas.arrow([cell.top, canvas.box((x, rows["output"]), box, OUTPUT).bottom])
            if previous:
                canvas.arrow([previous.right, cell.left], STATE.edge)
            previous = cell
        left += width + gap
    return canvas


@dataclass(frozen=True)
class Drawing:
    """A drawing the ``drawing`` directive knows: how to draw it and what it shows (its alt)."""

    draw: Callable[[], Canvas]
    alt: str


DRAWINGS: dict[str, Drawing] = {
    "unrolled-rnn": Drawing(
        unrolled_rnn,
        "The RNN unrolled over four steps: it reads h, e, l, l, one per step, passes its state "
        "h_t from step to step, and at each step outputs probabilities p_t for the targets "
        "e, l, l, o.",
    ),
    "lstm-cell": Drawing(
        lstm_cell,
        "The LSTM cell: gates f, i, g, o computed from h_{t-1} and x_t; the cell state c runs "
        "along the top, multiplied by f and added i times g; h_t is o times tanh(c_t).",
    ),
    "gru-cell": Drawing(
        gru_cell,
        "The GRU cell: gates r and z and the candidate n computed from h_{t-1} and x_t; r "
        "multiplies W_hn h_{t-1} + b_hn inside the candidate; h_t = (1 - z) n + z h_{t-1}.",
    ),
    "sequence-shapes": Drawing(
        sequence_shapes,
        "Five shapes of sequence model, inputs below, cells in a row, outputs above: one to one "
        "(no recurrence), one to many (generation), many to one (classification), many to many "
        "read then write (translation) and many to many one per input (language model).",
    ),
}


def render(name: str) -> bytes:
    """The drawing called ``name``, as SVG bytes."""
    with matplotlib.rc_context(STYLE):
        return DRAWINGS[name].draw().svg()


class DrawingDirective(SphinxDirective):
    """``{drawing} NAME`` with optional ``:alt:`` and ``:caption:``: one of :data:`DRAWINGS`."""

    required_arguments = 1
    option_spec = {"alt": directives.unchanged, "caption": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        if name not in DRAWINGS:
            known = ", ".join(DRAWINGS)
            raise self.error(f"unknown drawing {name!r}; the known drawings are: {known}")
        self.env.note_dependency(__file__)  # a changed drawing rebuilds the pages that show it
        alt = self.options.get("alt", DRAWINGS[name].alt)
        image = data_image(render(name), "image/svg+xml", alt, classes=["charseq-drawing"])
        caption = self.options.get("caption")
        if not caption:
            return [image]
        text_nodes, messages = self.parse_inline(caption, lineno=self.lineno)
        return [nodes.figure("", image, nodes.caption(caption, "", *text_nodes)), *messages]


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("drawing", DrawingDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
