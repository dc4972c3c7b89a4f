"""The report page: one offline HTML file; its text is escaped, its picker recolours the text.

The page tests open the file in a headless Chromium (tests/browser.py) and skip without one."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from charseq import Pipeline
from charseq.inspect import Activations, Trace
from charseq.inspect.report import MAX_VALUES, embed_json, render_report, write_report
from tests._cli import SMALL, assert_error_line, run
from tests.browser import console_errors, open_page

ATTACK = '<script>window.pwned = 1</script></script><!-- & "quotes" -->'
TEXT = f'def f(x):\n\treturn "{ATTACK}"  # é\n' * 4


@pytest.fixture(scope="module")
def lstm():
    spec = {
        "cell": {"name": "lstm", "hidden_size": 12, "num_layers": 2},
        "train": {"steps": 3, "batch_size": 4, "seq_len": 16, "eval_every": 3},
    }
    return Pipeline.from_spec(spec, device="cpu").fit(TEXT * 5)


@pytest.fixture(scope="module")
def acts(lstm):
    return lstm.activations(TEXT)


@pytest.fixture(scope="module")
def findings(acts):
    from charseq.inspect import find_units

    return find_units(acts, ["in-quotes", "line-position"], top=2)


@pytest.fixture(scope="module")
def report(acts, findings, tmp_path_factory):
    from charseq.inspect import gate_saturation

    path = tmp_path_factory.mktemp("report") / "report.html"
    about = {"model": "runs/<b>bold</b>", "text": "a.py"}
    write_report(acts, path, findings=findings, saturation=gate_saturation(acts), about=about)
    return path


def embedded(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page)
    return json.loads(found.group(1))


def test_the_data_is_embedded_escaped_and_reads_back(report, acts):
    page = report.read_text("utf-8")
    assert page.count("<script") == 2 and page.count("</script>") == 2  # only the page's own
    assert "window.pwned" not in page.split("<body>")[0]
    data = embedded(page)
    assert "".join(data["tokens"]) == TEXT == acts.text
    assert data["about"]["model"] == "runs/<b>bold</b>"
    assert "<b>bold" not in page and "&lt;b&gt;bold" in page  # the title, escaped
    assert len(data["surprise"]) == len(acts) and len(data["top_ids"][0]) == 5
    np.testing.assert_allclose(data["surprise"], acts.surprise, atol=5e-4)


def test_embed_json_closes_nothing():
    text = embed_json({"a": "</script><!--x-->&"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><!--x-->&"}


def test_the_file_loads_nothing_from_anywhere(report):
    page = report.read_text("utf-8")
    assert not re.search(r"https?:|ftp:|//[\w.-]+\.[a-z]{2,}/", page)
    assert not re.search(r"\b(src|href)\s*=|url\(|@import", page)
    assert "default-src 'none'" in page  # and the browser is told to refuse any request


def test_units_are_stored_in_8_bits_within_a_step_of_their_values(report, acts):
    data = embedded(report.read_text("utf-8"))
    entry = next(t for t in data["traces"] if t["key"] == "1:c")
    import base64

    q = np.frombuffer(base64.b64decode(entry["data"]), np.int8).reshape(len(acts), -1)
    values = q * np.array(entry["scales"]) / 127
    scale = np.abs(acts.trace("1:c").values).max(axis=0)
    assert np.all(np.abs(values - acts.trace("1:c").values) <= scale / 254 + 1e-6)


def test_outputs_and_states_are_embedded_gates_left_out_and_found_units_kept(report, findings):
    data = embedded(report.read_text("utf-8"))
    assert [t["key"] for t in data["traces"]] == ["0:h", "0:c", "1:h", "1:c"]
    assert data["left_out"] == ["0:i", "0:f", "0:g", "0:o", "1:i", "1:f", "1:g", "1:o"]
    named = {f.unit for items in findings.values() for f in items}
    kept = {t["key"] for t in data["traces"]}
    assert {u for u in named if u.rpartition(":")[0] not in kept} == set(data["units"])


def test_a_5000_character_text_of_a_2x128_lstm_stays_a_few_megabytes():
    rng = np.random.default_rng(0)
    length, units, vocab = 5000, 128, 96
    traces = tuple(
        Trace(layer, name, role, rng.standard_normal((length, units)).astype(np.float32))
        for layer in (0, 1)
        for name, role in [("h", "output"), ("c", "state")] + [(g, "internal") for g in "ifgo"]
    )
    probs = rng.dirichlet(np.ones(vocab), size=length).astype(np.float32)
    ids = rng.integers(0, vocab, length)
    vocab_text = tuple(chr(32 + i) for i in range(vocab))
    acts = Activations(
        text="".join(vocab_text[i] for i in ids),
        tokens=tuple(vocab_text[i] for i in ids),
        ids=ids,
        traces=traces,
        probs=probs,
        logprobs=np.log(probs[np.arange(length), ids]),
        vocab=vocab_text,
    )
    page = render_report(acts)
    assert len(page.encode("utf-8")) < 4.5e6  # 4 x 5000 x 128 bytes as base64, and the rest
    assert len(embedded(page)["left_out"]) == 8  # the gates
    capped = embedded(render_report(acts, max_values=2 * length * units))
    assert [t["key"] for t in capped["traces"]] == ["0:h", "0:c"]
    assert 4 * length * units < MAX_VALUES  # the default embeds all four
    chosen = embedded(render_report(acts, traces=["1:f"]))
    assert [t["key"] for t in chosen["traces"]] == ["1:f"] and "0:h" in chosen["left_out"]


# -- in the browser ------------------------------------------------------------------------------


def colours(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#text span.t'),"
        " s => getComputedStyle(s).backgroundColor)"
    )


def test_the_report_opens_with_no_error_and_no_request(browser, report):
    open_page(browser, report)
    assert browser.title == "charseq report: runs/<b>bold</b>"
    assert console_errors(browser) == []
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    spans = browser.execute_script("return document.querySelectorAll('#text span.t').length")
    assert spans == len(TEXT)
    assert "runs/<b>bold</b>" in browser.find_element("id", "about").text


def test_a_script_in_the_text_is_shown_as_text_and_never_runs(browser, report):
    open_page(browser, report)
    assert browser.execute_script("return window.pwned") is None
    shown = browser.execute_script("return document.getElementById('text').textContent")
    assert ATTACK in shown  # every character shown as itself
    assert "\u21b5" in shown and "\u2192" in shown  # a newline and a tab, made visible
    elements = "return document.querySelectorAll('#text *:not(span.t)').length"
    assert browser.execute_script(elements) == 0  # the text made no element but its own


def test_the_unit_picker_changes_the_colouring(browser, report):
    from selenium.webdriver.support.ui import Select

    open_page(browser, report)
    body = browser.find_element("tag name", "body")
    seen = {body.get_attribute("data-unit"): colours(browser)}
    Select(browser.find_element("id", "layer")).select_by_value("0")
    Select(browser.find_element("id", "tensor")).select_by_value("0:c")
    seen[body.get_attribute("data-unit")] = colours(browser)
    browser.find_element("id", "next").click()
    seen[body.get_attribute("data-unit")] = colours(browser)
    index = browser.find_element("id", "index")
    index.clear()
    index.send_keys("7\n")
    seen[body.get_attribute("data-unit")] = colours(browser)
    assert list(seen)[1:] == ["0:c:0", "0:c:1", "0:c:7"]
    assert len({tuple(c) for c in seen.values()}) == 4  # each unit colours the text its way
    assert "value of 0:c:7" in browser.find_element("id", "legend").text


def test_a_found_unit_is_one_click_away(browser, report, findings):
    open_page(browser, report)
    chips = browser.find_elements("css selector", ".chip")
    assert len(chips) == sum(len(items) for items in findings.values())
    for chip in chips:
        chip.click()
        body = browser.find_element("tag name", "body")
        assert body.get_attribute("data-unit") == chip.get_attribute("data-unit")
        assert "active" in chip.get_attribute("class")


def test_surprise_mode_and_a_characters_guesses(browser, report, acts):
    open_page(browser, report)
    unit_colours = colours(browser)
    browser.find_element("id", "mode-surprise").click()
    assert browser.find_element("tag name", "body").get_attribute("data-mode") == "surprise"
    assert colours(browser) != unit_colours
    values = browser.execute_script(
        "return Array.from(document.querySelectorAll('#text span.t'), s => +s.dataset.value)"
    )
    np.testing.assert_allclose(values, acts.surprise, atol=2e-3)
    browser.find_elements("css selector", "#text span.t")[7].click()
    guesses = browser.find_elements("css selector", "#guesses li .g")
    top_ids, _ = acts.top(5)
    expected = [acts.vocab[i].replace(" ", "\u2423") for i in top_ids[7]]
    assert [g.text for g in guesses] == expected
    assert len(browser.find_elements("css selector", "#strip tr")) == 6  # characters + 5 guesses


def test_the_gate_saturation_plot_has_a_panel_per_layer_and_gate(browser, report):
    open_page(browser, report)
    panels = browser.find_elements("css selector", "svg.saturation g.panel")
    assert {(p.get_attribute("data-layer"), p.get_attribute("data-gate")) for p in panels} == {
        (str(layer), gate) for layer in (0, 1) for gate in "ifo"
    }
    dots = browser.find_elements("css selector", "svg.saturation g.panel[data-gate=f] circle")
    assert len(dots) == 2 * 12


# -- charseq inspect --html ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect-run")
    (root / "corpus.txt").write_text(TEXT * 5, "utf-8")
    (root / "page.py").write_text(TEXT, "utf-8")
    result = run("train", "--data", str(root / "corpus.txt"), *SMALL, "--steps", "3",
                 "--set", "cell.num_layers=2", "--out", str(root / "run"))  # fmt: skip
    assert result.exit_code == 0, result.output
    return root


def test_inspect_html_writes_the_report_with_the_search_and_the_gates(run_dir):
    out = run_dir / "report.html"
    result = run("inspect", str(run_dir / "run"), "--text", str(run_dir / "page.py"),
                 "--html", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and "detector" not in result.output  # no table
    page = out.read_text("utf-8")
    data = embedded(page)
    assert "".join(data["tokens"]) == TEXT
    assert {"in-quotes", "line-position"} <= {group["detector"] for group in data["findings"]}
    assert data["about"]["model"] == f"{run_dir / 'run'} (step 3)"
    assert page.count('class="panel"') == 2 * 3  # two layers' i, f, o


def test_inspect_html_with_find_prints_the_table_too_and_trace_chooses_the_tensors(run_dir):
    out = run_dir / "gates.html"
    result = run("inspect", str(run_dir / "run"), "--text", str(run_dir / "page.py"), "--find",
                 "--html", str(out), "--trace", "1:f", "--trace", "0:c")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "detector" in result.output and "gate saturation" in result.output
    assert [t["key"] for t in embedded(out.read_text("utf-8"))["traces"]] == ["1:f", "0:c"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "--html PATH writes the report page"),
        (["--find", "--trace", "1:f"], "--trace chooses what the --html page embeds"),
        (["--html", "x.html", "--trace", "2:h"], "no trace '2:h' in these activations"),
    ],
)
def test_inspect_says_what_is_missing_or_wrong(run_dir, flags, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("inspect", str(run_dir / "run"), "--text", str(run_dir / "page.py"), *flags)
    assert_error_line(result, message)
