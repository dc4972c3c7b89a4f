"use strict";
// The page of `charseq serve`: pick a model, generate (streamed; an acrostic by line or by
// clause, a verse form), stop, score a text by surprise and open its neuron report. Everything
// the server or the model sends is put in the page with textContent or as a text node, never
// parsed as HTML. API paths are relative, so the page works behind a reverse proxy under any
// prefix.
(function () {
  const $ = (id) => document.getElementById(id);
  const LN2 = Math.log(2);
  const KEY_STORE = "charseq-api-key";
  let models = [];
  let running = null; // the AbortController of the generation under way

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const chars = (text) => Array.from(text); // code points: a CJK or astral character is one

  // -- errors and state ----------------------------------------------------------------------
  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }
  function setState(state, message) {
    document.body.dataset.state = state;
    const generating = state === "generating";
    $("generate").disabled = generating;
    $("stop").disabled = !generating;
    $("model").disabled = generating;
    const status = $("status");
    status.textContent = message || "";
    status.classList.toggle("busy", generating);
  }

  // -- the API ---------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }
  // POST (or GET without a body) `path`; the Response when it is OK, else an ApiError with the
  // server's own message (OpenAI's error shape), or the status line when there is none.
  async function api(path, body, signal) {
    const headers = {};
    const key = $("api-key").value.trim();
    if (key) headers.Authorization = "Bearer " + key;
    const init = { method: body === undefined ? "GET" : "POST", headers, signal };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError("the server did not answer (" + error.message + ")", 0);
    }
    if (response.ok) return response;
    let message = response.status + " " + response.statusText;
    try {
      const data = await response.json();
      if (data && data.error && data.error.message) message = data.error.message;
    } catch (_) { /* not JSON: keep the status line */ }
    if (response.status === 401) {
      $("settings").open = true;
      message += " (enter the server's API key below)";
    }
    const retry = response.headers.get("Retry-After");
    if (retry) message += " (try again in " + retry + " s)";
    throw new ApiError(message, response.status);
  }

  // -- models ----------------------------------------------------------------------------------
  function count(n) {
    if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + " M";
    if (n >= 1e3) return (n / 1e3).toFixed(n >= 1e4 ? 0 : 1) + " k";
    return String(n);
  }
  function modelFacts(model) {
    const c = model.charseq || {};
    const facts = [];
    if (c.cell) facts.push(["cell", c.cell + (c.num_layers ? " " + c.num_layers + "\u00d7" + c.hidden_size : "")]);
    if (c.corpus_chars != null) facts.push(["corpus", count(c.corpus_chars) + " chars"]);
    if (c.val_bpc != null) facts.push(["val", c.val_bpc.toFixed(3) + " BPC"]);
    if (c.steps != null) facts.push(["steps", String(c.steps)]);
    if (c.tokenizer && c.tokenizer !== "char") facts.push(["tokens", c.tokenizer]);
    return facts;
  }
  function showFacts() {
    const box = $("model-facts");
    box.replaceChildren();
    const model = models.find((m) => m.id === $("model").value);
    if (!model) return;
    modelFacts(model).forEach(([name, value], i) => {
      if (i) box.append(" \u00b7 ");
      box.append(name + " ", element("b", "", value));
    });
  }
  async function loadModels() {
    try {
      const data = await (await api("v1/models")).json();
      models = data.data || [];
    } catch (error) {
      showError("could not list the models: " + error.message);
      $("health").textContent = "not connected";
      return;
    }
    const select = $("model");
    select.replaceChildren();
    for (const model of models) {
      const facts = modelFacts(model).filter(([n]) => n !== "steps").map(([, v]) => v);
      const label = model.id + (facts.length ? " \u2014 " + facts.join(", ") : "");
      const option = element("option", "", label);
      option.value = model.id;
      select.append(option);
    }
    $("health").textContent = models.length === 1 ? "1 model served" : models.length + " models served";
    showFacts();
    showVerseFields();
    if (!models.length) showError("the server serves no model");
  }

  // -- sampler controls ----------------------------------------------------------------------
  const SAMPLER_HINTS = {
    temperature: "Sample from the model's odds, sharpened (below 1) or flattened (above 1).",
    greedy: "Always the most likely character: the same text every time, often a loop.",
    "top-k": "Sample among the k most likely characters only.",
    "top-p": "Sample among the fewest characters whose odds add up to p.",
    beam: "Keep the most likely sequences and return the best: slow, and it arrives at the end.",
  };
  const samplerName = () => document.querySelector("input[name=sampler]:checked").value;
  function showSamplerFields() {
    const name = samplerName();
    for (const field of document.querySelectorAll("[data-for]")) {
      field.hidden = !field.dataset.for.split(" ").includes(name);
    }
    $("sampler-hint").textContent = SAMPLER_HINTS[name];
  }
  function number(id, fallback) {
    const value = $(id).valueAsNumber;
    return Number.isFinite(value) ? value : fallback;
  }
  function sampler() {
    const name = samplerName();
    const temperature = number("temperature", 1);
    if (name === "greedy") return "greedy";
    if (name === "beam") return { name: "beam", num_beams: Math.round(number("beams", 4)) };
    const chosen = { name: "temperature", temperature };
    if (name === "top-k") chosen.top_k = Math.round(number("top-k", 10));
    if (name === "top-p") chosen.top_p = number("top-p", 0.9);
    return chosen;
  }

  // -- the acrostic: its characters, one per line (white space between them is ignored) ------
  const acrosticChars = () => chars($("acrostic").value).filter((c) => !/\s/.test(c));

  // -- the verse: where the heads go (each line or each clause) and the form -----------------
  // By clause, a head is due after the title's colon and after each clause's ， or 。 (as in
  // tensorflow_poems' corpora); with a form, the server puts one at the start of each of its
  // clauses. By line, it is due after each newline, so the poem starts on a line of its own.
  const CLAUSE_ENDS = "\uff0c\u3002:";
  const headsBy = () => document.querySelector("input[name=heads]:checked").value;
  // The form to send: a named form, the custom template, or null for none.
  function chosenForm() {
    const value = $("form").value;
    if (value === "custom") return $("template").value || null;
    return value || null;
  }
  // The model's list of the named forms its vocabulary can fill (absent: all are offered).
  function offerForms() {
    const model = models.find((m) => m.id === $("model").value);
    const fillable = model && model.charseq && model.charseq.forms;
    for (const option of $("form").options) {
      if (!option.value || option.value === "custom") continue;
      option.disabled = Array.isArray(fillable) && !fillable.includes(option.value);
    }
    if ($("form").selectedOptions[0].disabled) $("form").value = "";
  }
  function showVerseFields() {
    offerForms();
    const clause = headsBy() === "clause";
    const form = chosenForm();
    $("acrostic-unit").textContent = clause ? "clause" : "line";
    $("template-field").hidden = $("form").value !== "custom";
    $("acrostic-end-field").hidden = clause || Boolean(form);
    $("acrostic-hint").textContent = clause
      ? "Optional. The heads open the clauses (a \u85cf\u5934\u8bd7): the first after the " +
        "prime's colon, the rest after each \uff0c or \u3002."
      : "Optional. With an acrostic, the poem starts on a new line after the prime.";
    let hint = "";
    if (form) {
      hint = "The poem ends when the form is filled";
      if (clause) hint += "; the heads open its clauses.";
      else if (acrosticChars().length) hint += "; the heads open its lines (a newline ends each).";
      else hint += ".";
    } else if ([...$("form").options].some((o) => o.disabled)) {
      hint = "This model's vocabulary cannot fill the greyed forms.";
    }
    $("form-hint").textContent = hint;
  }

  // -- server-sent events: `data: ...` lines, events split by a blank line ---------------------
  async function* events(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder(); // {stream: true} keeps a character split across reads whole
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
      const blocks = buffer.split(/\r?\n\r?\n/); // one split per read: linear in the text
      buffer = blocks.pop();
      for (const block of blocks) {
        const data = block.split(/\r?\n/).filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(l.startsWith("data: ") ? 6 : 5)).join("\n");
        if (data) yield data;
      }
      if (done) return;
    }
  }

  // -- generating ------------------------------------------------------------------------------
  // The text arrives in many small pieces; the page shows what came at most every FLUSH_MS
  // (one layout per flush, not per piece), so a fast model never freezes the page.
  const FLUSH_MS = 40;
  const output = { prime: "", text: "", node: null, count: 0, lines: 0, shown: 0, timer: 0 };
  function resetOutput(prime) {
    const box = $("output");
    box.replaceChildren();
    Object.assign(output, { prime, text: "", count: 0, lines: 0, shown: 0 });
    if (prime) box.append(element("span", "prime", prime));
    output.node = document.createTextNode("");
    box.append(output.node);
    $("output-count").textContent = "";
  }
  function append(piece) {
    output.text += piece;
    output.count += chars(piece).length;
    output.lines += piece.split("\n").length - 1;
    if (!output.timer) output.timer = setTimeout(flush, FLUSH_MS);
  }
  function flush() {
    clearTimeout(output.timer);
    output.timer = 0;
    if (output.shown === output.text.length) return;
    const box = $("output");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 30;
    // A text node: whatever the model writes is shown as text, never parsed as HTML.
    output.node.appendData(output.text.slice(output.shown));
    output.shown = output.text.length;
    $("output-count").textContent = output.count + (output.count === 1 ? " character" : " characters");
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  async function generate(event) {
    event.preventDefault();
    if (running) return;
    showError("");
    const acrostic = acrosticChars();
    const byLine = headsBy() === "line";
    const form = chosenForm();
    let prime = $("prompt").value;
    if (acrostic.length && byLine && prime && !prime.endsWith("\n")) prime += "\n"; // its own lines
    const body = {
      model: $("model").value,
      prompt: prime,
      max_tokens: Math.round(number("length", 300)),
      stream: true,
      sampler: sampler(),
    };
    const seed = $("seed").valueAsNumber;
    if (Number.isFinite(seed)) body.seed = Math.round(seed);
    if (acrostic.length) body.acrostic = acrostic.join("");
    if (form) body.form = form;
    if (acrostic.length && byLine && form) body.acrostic_after = "\n"; // not the form's clauses
    if (acrostic.length && !byLine && !form) body.acrostic_after = CLAUSE_ENDS;
    // With "end after its last line": the poem is done at the newline that follows its last line
    // (a form ends the poem itself, when it is filled).
    const lines = acrostic.length && byLine && !form && $("acrostic-end").checked ? acrostic.length : 0;

    resetOutput(prime);
    if (window.matchMedia("(max-width: 820px)").matches) { // one column: show where it goes
      $("output").scrollIntoView({ block: "nearest", behavior: "smooth" });
    }
    const controller = new AbortController();
    running = controller;
    setState("generating", "generating\u2026");
    const started = performance.now();
    let ending = "done";
    try {
      const response = await api("v1/completions", body, controller.signal);
      for await (const data of events(response)) {
        if (data === "[DONE]") break;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(chunk.error.message || "the generation failed", 500);
        const choice = (chunk.choices && chunk.choices[0]) || {};
        if (form && choice.finish_reason === "stop") ending = "form";
        let piece = choice.text || "";
        if (lines) {
          const parts = piece.split("\n");
          if (output.lines + parts.length - 1 >= lines) { // the last line ends in this piece
            piece = parts.slice(0, lines - output.lines).join("\n");
            append(piece);
            ending = "poem";
            controller.abort(); // ends the generation on the server too
            break;
          }
        }
        if (piece) append(piece);
      }
    } catch (error) {
      if (error.name === "AbortError") {
        if (ending !== "poem") ending = "stopped";
      } else {
        ending = "failed";
        showError(error.message);
      }
    } finally {
      flush();
      running = null;
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const made = output.count + (output.count === 1 ? " character" : " characters");
      const says = {
        done: "done: " + made + " in " + seconds + " s",
        poem: "done: the acrostic's " + lines + " lines, " + made,
        form: "done: the form is filled, " + made,
        stopped: "stopped after " + made,
        failed: "failed after " + made,
      };
      setState("idle", says[ending]);
      if (output.prime || output.text) $("score-text").value = output.prime + output.text;
    }
  }

  function stop() {
    if (running) running.abort();
  }

  // -- surprise --------------------------------------------------------------------------------
  const PALETTE = ["#fbfbfb", "#fdd0a2", "#fd8d3c", "#d94801", "#8c2d04"]; // 0 .. the top
  const rgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  function colour(x) {
    const at = Math.min(Math.max(x, 0), 1) * (PALETTE.length - 1);
    const i = Math.min(Math.floor(at), PALETTE.length - 2), f = at - i;
    const a = rgb(PALETTE[i]), b = rgb(PALETTE[i + 1]);
    return "rgb(" + a.map((v, k) => Math.round(v + (b[k] - v) * f)).join(", ") + ")";
  }
  function visible(token) {
    if (token === "\n") return "\u21b5";
    if (token === "\t") return "\u2192   ";
    return chars(token).map((c) => {
      const code = c.codePointAt(0);
      return code < 32 ? String.fromCodePoint(0x2400 + code) : code === 127 ? "\u2421" : c;
    }).join("");
  }
  function describe(token) {
    if (token === " ") return "space";
    if (token === "\n") return "newline";
    if (token === "\t") return "tab";
    return "\u201c" + visible(token) + "\u201d";
  }
  // The top of the colour scale: the 98th percentile of the surprises (so that one very
  // surprising character does not wash out the rest), at least 2 bits.
  function top(bits) {
    const sorted = [...bits].sort((a, b) => a - b);
    const at = sorted[Math.min(sorted.length - 1, Math.floor(0.98 * sorted.length))] || 0;
    return Math.max(2, Math.ceil(at));
  }
  let scored = null;
  function showScore(result) {
    const bits = result.logprobs.map((lp) => -lp / LN2);
    const high = top(bits);
    const box = $("surprise");
    box.replaceChildren();
    result.tokens.forEach((token, i) => {
      const span = element("span", /^\s+$/.test(token) ? "ws" : "", visible(token));
      const x = bits[i] / high;
      span.style.background = colour(x);
      if (x > 0.72) span.style.color = "#fff";
      span.dataset.i = String(i);
      span.title = describe(token) + ": " + bits[i].toFixed(2) + " bits (p = " +
        probability(result.logprobs[i]) + ")";
      box.append(span);
      if (token === "\n") box.append("\n");
    });
    scored = { tokens: result.tokens, bits, logprobs: result.logprobs };
    $("scale-high").textContent = "\u2265 " + high + " bits";
    $("scale-bar").style.background = "linear-gradient(to right, " + PALETTE.join(", ") + ")";
    $("scale").hidden = false;
    const n = result.tokens.length;
    const bpc = result.bpc != null ? result.bpc : result.nats / LN2;
    $("score-summary").textContent = n + (n === 1 ? " character, " : " characters, ") +
      bpc.toFixed(3) + " bits each on average";
    $("readout").textContent = "";
  }
  function probability(logprob) {
    const p = Math.exp(logprob);
    return p >= 0.01 ? p.toFixed(3) : p.toExponential(1);
  }
  function pointAt(event) {
    const i = event.target.dataset && event.target.dataset.i;
    if (i === undefined || !scored) return;
    const k = Number(i);
    $("readout").textContent = "character " + k + ", " + describe(scored.tokens[k]) + ": " +
      scored.bits[k].toFixed(2) + " bits of surprise, p = " + probability(scored.logprobs[k]);
  }
  function textToScore() {
    const text = $("score-text").value;
    if (!text) showError("type or generate a text to score first");
    return text;
  }
  async function score() {
    const text = textToScore();
    if (!text) return;
    showError("");
    $("score").disabled = true;
    $("score-summary").textContent = "scoring\u2026";
    try {
      const response = await api("v1/score", { model: $("model").value, text });
      showScore(await response.json());
    } catch (error) {
      $("score-summary").textContent = "";
      showError(error.message);
    } finally {
      $("score").disabled = false;
    }
  }

  // -- neurons: charseq inspect's report of the same text, in a new tab ------------------------
  async function neurons() {
    const text = textToScore();
    if (!text) return;
    showError("");
    // The tab opens now, while the click counts as the user's (a popup blocker lets it through),
    // and is sent to the report when it arrives.
    const tab = window.open("", "_blank");
    if (tab) tab.document.title = "charseq: making the report\u2026";
    try {
      const response = await api("v1/inspect", { model: $("model").value, text });
      const html = await response.text();
      const url = URL.createObjectURL(new Blob([html], { type: "text/html" }));
      if (tab) tab.location.href = url;
      else window.open(url, "_blank");
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (error) {
      if (tab) tab.close();
      showError(error.message);
    }
  }

  // -- wiring ----------------------------------------------------------------------------------
  const key = $("api-key");
  key.value = sessionStorage.getItem(KEY_STORE) || "";
  key.addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORE, key.value.trim());
    if (!models.length) { // the list was refused for want of the key: ask again
      showError("");
      loadModels();
    }
  });
  $("controls").addEventListener("submit", generate);
  $("stop").addEventListener("click", stop);
  $("model").addEventListener("change", showFacts);
  $("model").addEventListener("change", showVerseFields);
  for (const id of ["form", "template", "acrostic"]) $(id).addEventListener("input", showVerseFields);
  $("form").addEventListener("change", showVerseFields);
  for (const radio of document.querySelectorAll("input[name=heads]")) {
    radio.addEventListener("change", showVerseFields);
  }
  for (const radio of document.querySelectorAll("input[name=sampler]")) {
    radio.addEventListener("change", showSamplerFields);
  }
  $("score").addEventListener("click", score);
  $("neurons").addEventListener("click", neurons);
  $("surprise").addEventListener("mouseover", pointAt);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") stop();
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !running) {
      $("controls").requestSubmit();
    }
  });
  showSamplerFields();
  showVerseFields();
  setState("idle", "");
  loadModels();
})();
