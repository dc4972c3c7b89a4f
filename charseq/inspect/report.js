"use strict";
// The report page's script: reads the JSON data, builds the page with textContent only (no
// HTML from the data is ever parsed), and recolours the text when the unit or the view changes.
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const tokens = data.tokens;
  const T = tokens.length;
  const $ = (id) => document.getElementById(id);

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // -- the embedded values: int8, base64, row-major (T, U); value = q * scale / 127 ----------
  function int8(base64) {
    const raw = atob(base64);
    const out = new Int8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = (raw.charCodeAt(i) << 24) >> 24;
    return out;
  }
  const traces = new Map();
  for (const t of data.traces) traces.set(t.key, { scales: t.scales, q: int8(t.data) });
  const layout = new Map(data.layout.map((t) => [t.key, t]));

  function split(address) {
    const cut = address.lastIndexOf(":");
    return { key: address.slice(0, cut), index: Number(address.slice(cut + 1)) };
  }
  function available(address) {
    const { key, index } = split(address);
    const trace = traces.get(key);
    return (trace && index >= 0 && index < trace.scales.length) || address in data.units;
  }
  function unitValues(address) {
    const out = new Float32Array(T);
    const { key, index } = split(address);
    const trace = traces.get(key);
    if (trace && index < trace.scales.length) {
      const units = trace.scales.length, scale = trace.scales[index] / 127;
      for (let t = 0; t < T; t++) out[t] = trace.q[t * units + index] * scale;
      return { values: out, limit: trace.scales[index] };
    }
    const one = data.units[address];
    const q = int8(one.data);
    for (let t = 0; t < T; t++) out[t] = (q[t] * one.scale) / 127;
    return { values: out, limit: one.scale };
  }

  // -- colours -----------------------------------------------------------------------------
  const DIVERGING = ["#2166ac", "#92c5de", "#f7f7f7", "#f4a582", "#b2182b"]; // -1 .. +1
  const SEQUENTIAL = ["#fbfbfb", "#fdd0a2", "#fd8d3c", "#d94801", "#8c2d04"]; // 0 .. 1
  const rgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  function mix(stops, x) { // x in [0, 1] along the stops
    const at = Math.min(Math.max(x, 0), 1) * (stops.length - 1);
    const i = Math.min(Math.floor(at), stops.length - 2), f = at - i;
    const a = rgb(stops[i]), b = rgb(stops[i + 1]);
    return "rgb(" + a.map((v, k) => Math.round(v + (b[k] - v) * f)).join(", ") + ")";
  }
  const gradient = (stops) => "linear-gradient(to right, " + stops.join(", ") + ")";
  const probColour = (p) => "rgba(47, 143, 78, " + (0.08 + 0.92 * p).toFixed(3) + ")";
  const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));

  // -- how a token shows: white space and control characters made visible ------------------
  function visible(token, inGuess) {
    let out = "";
    for (const ch of token) {
      const code = ch.codePointAt(0);
      if (ch === "\n") out += "\u21b5";
      else if (ch === "\t") out += inGuess ? "\u21e5" : "\u2192   ";
      else if (ch === " " && inGuess) out += "\u2423";
      else if (code < 32) out += String.fromCodePoint(0x2400 + code);
      else if (code === 127) out += "\u2421";
      else out += ch;
    }
    return out;
  }
  const describe = (token) => visible(token, true) + (token.length === 1
    ? "  U+" + token.codePointAt(0).toString(16).toUpperCase().padStart(4, "0") : "");

  // -- the text ----------------------------------------------------------------------------
  const text = $("text");
  const spans = [];
  const fragment = document.createDocumentFragment();
  tokens.forEach((token, i) => {
    const span = element("span", "t", visible(token, false));
    if (/^[\s]+$/.test(token) || /[\x00-\x1f\x7f]/.test(token)) span.classList.add("ws");
    span.dataset.i = String(i);
    spans.push(span);
    fragment.appendChild(span);
    if (token.endsWith("\n")) fragment.appendChild(document.createTextNode("\n"));
  });
  text.appendChild(fragment);

  // -- state -------------------------------------------------------------------------------
  const state = { mode: "unit", unit: null, values: null, selected: null, kept: false };
  const surprise = data.surprise;
  const sorted = Array.from(surprise).sort((a, b) => a - b);
  const surpriseCap = Math.max(sorted[Math.floor(0.99 * (sorted.length - 1))] || 0, 1e-6);

  function paint() {
    document.body.dataset.mode = state.mode;
    document.body.dataset.unit = state.unit || "";
    let colour, values, limit;
    if (state.mode === "unit" && state.unit) {
      ({ values, limit } = state.values);
      colour = (v) => mix(DIVERGING, 0.5 + v / (2 * limit));
      $("legend-label").textContent = "value of " + state.unit;
      $("legend-low").textContent = "\u2212" + fmt(limit);
      $("legend-high").textContent = "+" + fmt(limit);
      $("legend-bar").style.background = gradient(DIVERGING);
    } else {
      values = surprise;
      limit = surpriseCap;
      colour = (v) => mix(SEQUENTIAL, v / limit);
      $("legend-label").textContent = "surprise, nats (\u2212ln p)";
      $("legend-low").textContent = "0";
      $("legend-high").textContent = "\u2265 " + fmt(limit);
      $("legend-bar").style.background = gradient(SEQUENTIAL);
    }
    for (let t = 0; t < T; t++) {
      const v = values[t], span = spans[t];
      const strength = state.mode === "unit" ? Math.abs(v) / limit : v / limit;
      span.style.backgroundColor = colour(v);
      span.style.color = strength > 0.72 ? "#fff" : "";
      span.dataset.value = v.toFixed(3);
    }
    $("mode-unit").setAttribute("aria-pressed", String(state.mode === "unit"));
    $("mode-surprise").setAttribute("aria-pressed", String(state.mode === "surprise"));
    $("picker").hidden = state.mode !== "unit";
    for (const chip of document.querySelectorAll(".chip")) {
      chip.classList.toggle("active", state.mode === "unit" && chip.dataset.unit === state.unit);
    }
    if (state.selected !== null) details(state.selected);
  }

  // -- the unit picker ---------------------------------------------------------------------
  const layerSelect = $("layer"), tensorSelect = $("tensor"), indexInput = $("index");
  const layers = Array.from(new Set(data.layout.map((t) => t.layer)));
  for (const layer of layers) {
    const option = element("option", "", String(layer));
    option.value = String(layer);
    layerSelect.appendChild(option);
  }

  function fillTensors(layer) {
    tensorSelect.replaceChildren();
    for (const t of data.layout) {
      if (t.layer !== layer) continue;
      const option = element("option", "", t.name + (traces.has(t.key) ? "" : " (left out)"));
      option.value = t.key;
      option.disabled = !traces.has(t.key);
      tensorSelect.appendChild(option);
    }
  }

  function chooseUnit(address, quietly) {
    if (!available(address)) return false;
    const { key, index } = split(address);
    state.unit = address;
    state.values = unitValues(address);
    state.mode = "unit";
    const trace = layout.get(key);
    layerSelect.value = String(trace.layer);
    fillTensors(trace.layer);
    tensorSelect.value = key;
    indexInput.max = String(trace.units - 1);
    indexInput.value = String(index);
    $("current").textContent = address;
    const whole = traces.has(key);
    $("prev").disabled = !whole || index === 0;
    $("next").disabled = !whole || index === trace.units - 1;
    if (!quietly) {
      try { history.replaceState(null, "", "#unit=" + address); } catch (error) { /* file: */ }
    }
    paint();
    return true;
  }

  function firstUnitOf(layer) {
    const trace = data.traces.find((t) => layout.get(t.key).layer === layer);
    return trace ? trace.key + ":0" : null;
  }
  layerSelect.addEventListener("change", () => {
    const unit = firstUnitOf(Number(layerSelect.value));
    if (unit) chooseUnit(unit);
  });
  tensorSelect.addEventListener("change", () => chooseUnit(tensorSelect.value + ":0"));
  indexInput.addEventListener("change", () => {
    chooseUnit(tensorSelect.value + ":" + Math.max(0, Math.floor(Number(indexInput.value))));
  });
  const step = (by) => chooseUnit(tensorSelect.value + ":" + (Number(indexInput.value) + by));
  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("mode-unit").addEventListener("click", () => { state.mode = "unit"; paint(); });
  $("mode-surprise").addEventListener("click", () => { state.mode = "surprise"; paint(); });

  // -- the search's best units -------------------------------------------------------------
  const findings = $("findings");
  if (data.findings.length === 0) {
    $("best-hint").textContent = "No search results were given to this report.";
  } else {
    $("best-hint").textContent = "r: correlation over this text. Dashed: no larger than " +
      "chance (what some unit reaches with the feature shifted along the text).";
  }
  for (const group of data.findings) {
    const block = element("div");
    const chance = group.units.length ? group.units[0].chance : 0;
    block.appendChild(element("div", "det", group.detector));
    const chips = element("div", "chips");
    for (const f of group.units) {
      const sign = f.correlation >= 0 ? "+" : "\u2212";
      const chip = element("button", "chip", f.unit + "  r=" + sign + Math.abs(f.correlation).toFixed(2));
      chip.type = "button";
      chip.dataset.unit = f.unit;
      chip.title = "correlation " + f.correlation.toFixed(3) +
        (f.accuracy === null ? "" : ", one-threshold accuracy " + f.accuracy.toFixed(3)) +
        ", chance " + chance.toFixed(3);
      if (!f.above_chance) chip.classList.add("weak");
      chip.addEventListener("click", () => chooseUnit(f.unit));
      chips.appendChild(chip);
    }
    block.appendChild(chips);
    findings.appendChild(block);
  }

  // -- a character's details and the model's guesses ---------------------------------------
  function details(t) {
    state.selected = t;
    for (const span of text.querySelectorAll(".selected")) span.classList.remove("selected");
    spans[t].classList.add("selected");
    $("details-hint").textContent = state.kept
      ? "Kept: click the character again, or another, to move on."
      : "Click to keep this character.";
    const facts = $("facts");
    facts.replaceChildren();
    const fact = (name, value) => {
      facts.appendChild(element("dt", "", name));
      facts.appendChild(element("dd", "", value));
    };
    fact("character", describe(tokens[t]));
    fact("position", t + " of " + T);
    const p = Math.exp(-surprise[t]);
    fact("surprise", surprise[t].toFixed(2) + " nats, " + (surprise[t] / Math.LN2).toFixed(2) +
      " bits (p " + (p < 0.001 ? p.toExponential(1) : p.toFixed(3)) + ")");
    if (state.unit) fact(state.unit, state.values.values[t].toFixed(3));
    strip(t);
    guesses(t);
  }

  function strip(t) {
    const from = Math.max(0, t - 5), to = Math.min(T - 1, t + 5);
    const table = element("table", "guesses");
    const caption = element("caption", "hint",
      "Under each character, the 5 guesses for the next (darker: likelier; boxed: what came).");
    caption.style.captionSide = "bottom";
    caption.style.textAlign = "left";
    table.appendChild(caption);
    const head = element("tr");
    for (let j = from; j <= to; j++) {
      const th = element("th", j === t ? "now" : "", visible(tokens[j], true));
      head.appendChild(th);
    }
    table.appendChild(head);
    for (let r = 0; r < data.top_ids[t].length; r++) {
      const row = element("tr");
      for (let j = from; j <= to; j++) {
        const id = data.top_ids[j][r], prob = data.top_probs[j][r];
        const td = element("td", "", visible(data.vocab[id], true));
        td.style.backgroundColor = probColour(prob);
        if (prob > 0.55) td.style.color = "#fff";
        td.title = (prob * 100).toFixed(1) + "%";
        if (j + 1 < T && data.vocab[id] === tokens[j + 1]) td.classList.add("hit");
        row.appendChild(td);
      }
      table.appendChild(row);
    }
    $("strip").replaceChildren(table);
  }

  function guesses(t) {
    const list = $("guesses");
    list.replaceChildren();
    const next = t + 1 < T ? tokens[t + 1] : null;
    $("next-came").textContent = next === null
      ? "After the last character, the model guessed:"
      : "Next came " + visible(next, true) + "; the model guessed:";
    data.top_ids[t].forEach((id, r) => {
      const prob = data.top_probs[t][r];
      const item = element("li", data.vocab[id] === next ? "hit" : "");
      const glyph = element("span", "g", visible(data.vocab[id], true));
      glyph.style.backgroundColor = probColour(prob);
      if (prob > 0.55) glyph.style.color = "#fff";
      const track = element("span", "track");
      const fill = element("span", "fill");
      fill.style.display = "block";
      fill.style.width = (100 * prob).toFixed(1) + "%";
      track.appendChild(fill);
      item.append(glyph, track, element("span", "p", (100 * prob).toFixed(1) + "%"));
      list.appendChild(item);
    });
  }

  text.addEventListener("mouseover", (event) => {
    const span = event.target.closest("span.t");
    if (span && !state.kept) details(Number(span.dataset.i));
  });
  text.addEventListener("click", (event) => {
    const span = event.target.closest("span.t");
    if (!span) return;
    const t = Number(span.dataset.i);
    state.kept = !(state.kept && state.selected === t);
    details(t);
  });

  // -- header and notes --------------------------------------------------------------------
  const about = $("about");
  for (const [name, value] of Object.entries(data.about)) {
    about.appendChild(document.createTextNode(name + " "));
    about.appendChild(element("b", "", value));
    about.appendChild(document.createTextNode("  \u00b7  "));
  }
  about.appendChild(document.createTextNode(
    T + " tokens, " + data.bpc.toFixed(3) + " bits each on average"));
  const notes = $("notes");
  const embedded = data.traces.map((t) => t.key);
  const pinned = Object.keys(data.units).length;
  notes.appendChild(element("p", "", "Embedded whole: " + (embedded.join(", ") || "none") +
    (pinned ? "; and " + pinned + " unit(s) the search names from other tensors" : "") +
    ". Values are stored in 8 bits per unit (to about 1/254 of the unit's largest size), " +
    "probabilities and surprise to 3 decimals."));
  if (data.left_out.length) {
    notes.appendChild(element("p", "", "Left out to keep the file small: " +
      data.left_out.join(", ") + " (charseq inspect --trace KEY embeds a tensor)."));
  }
  notes.appendChild(element("p", "", "Made by charseq inspect --html; works offline."));

  // -- the first unit: from the address bar, else the strongest finding, else the first -----
  const fromHash = decodeURIComponent(location.hash.replace(/^#unit=/, ""));
  const best = data.findings.flatMap((g) => g.units).filter((f) => f.above_chance)
    .sort((a, b) => Math.abs(b.correlation) - Math.abs(a.correlation))[0];
  const first = [fromHash, best && best.unit, data.traces.length ? data.traces[0].key + ":0" : null];
  if (!first.some((unit) => unit && chooseUnit(unit, true))) {
    state.mode = "surprise";
    $("mode-unit").disabled = true;
    paint();
  }
})();
