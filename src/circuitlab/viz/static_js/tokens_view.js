// circuitlab's interactive token views (attention heads, per-token values), CircuitsVis-style but offline:
// this file is inlined into each page or notebook cell, and reads its data from the JSON element beside the
// view's root element. No network request, no library.
(function () {
  "use strict";
  if (window.circuitlabViews) { window.circuitlabViews.renderAll(); return; }

  const BLUE = [33, 102, 172];
  const RED = [178, 24, 43];

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "style") Object.assign(node.style, v); else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  function rgba(rgb, alpha) {
    return `rgba(${rgb[0]}, ${rgb[1]}, ${rgb[2]}, ${Math.max(0, Math.min(1, alpha)).toFixed(3)})`;
  }

  // One head's pattern [query][key] as a small heatmap (white 0 -> blue 1).
  function drawPattern(canvas, pattern, cell) {
    const n = pattern.length;
    canvas.width = canvas.height = n * cell;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, n * cell, n * cell);
    for (let q = 0; q < n; q++) {
      for (let k = 0; k < pattern[q].length; k++) {
        ctx.fillStyle = rgba(BLUE, pattern[q][k]);
        ctx.fillRect(k * cell, q * cell, cell, cell);
      }
    }
  }

  function renderAttention(root, data) {
    const nHeads = data.patterns.length;
    const nTok = data.tokens.length;
    let head = 0;
    let mode = "query"; // "query": where the hovered token attends; "key": what attends to it
    let focus = null;
    const cell = Math.max(2, Math.min(8, Math.floor(160 / nTok)));
    const heads = el("div", { class: "cl-heads" });
    const tiles = data.head_names.map((name, h) => {
      const canvas = el("canvas", { class: "cl-pattern", title: `${name}: rows = queries, columns = keys` });
      drawPattern(canvas, data.patterns[h], cell);
      const tile = el("div", { class: "cl-head", "data-head": String(h) }, el("div", {}, name), canvas);
      tile.addEventListener("mouseenter", () => { head = h; update(); });
      tile.addEventListener("click", () => { head = h; update(); });
      heads.append(tile);
      return tile;
    });
    const modes = el("div", { class: "cl-modes" });
    for (const [value, label] of [["query", "where the hovered token attends (it is the query)"],
                                  ["key", "what attends to the hovered token (it is the key)"]]) {
      const input = el("input", { type: "radio", name: `${root.id}-mode`, value });
      if (value === mode) input.checked = true;
      input.addEventListener("change", () => { mode = value; update(); });
      modes.append(el("label", {}, input, " " + label));
    }
    const status = el("div", { class: "cl-status" });
    const strip = el("div", { class: "cl-tokens" });
    const spans = data.tokens.map((t, i) => {
      const span = el("span", { class: "cl-tok", "data-pos": String(i) }, t);
      span.addEventListener("mouseenter", () => { focus = i; update(); });
      strip.append(span);
      return span;
    });
    strip.addEventListener("mouseleave", () => { focus = null; update(); });

    function update() {
      tiles.forEach((tile, h) => tile.classList.toggle("cl-selected", h === head));
      const pattern = data.patterns[head];
      spans.forEach((span, j) => {
        let value = 0;
        if (focus !== null) value = mode === "query" ? (pattern[focus][j] || 0) : (pattern[j][focus] || 0);
        span.style.backgroundColor = focus === null ? "" : rgba(BLUE, value);
        span.style.color = value > 0.6 ? "#fff" : "";
        span.classList.toggle("cl-focus", j === focus);
        span.title = focus === null ? `${j}:${data.tokens[j]}` :
          `${j}:${data.tokens[j]}  attention ${value.toFixed(3)} (${data.head_names[head]}, ` +
          (mode === "query" ? `query ${focus}, key ${j})` : `query ${j}, key ${focus})`);
        span.dataset.value = value.toFixed(4);
      });
      status.textContent = `${data.head_names[head]}` + (focus === null ? ": hover a token" :
        `: ${mode === "query" ? "keys read by" : "queries reading"} ${focus}:${data.tokens[focus]}`);
    }
    root.replaceChildren(el("div", { class: "cl-title" }, data.title || ""), heads, modes, status, strip);
    update();
    if (nHeads === 0 || nTok === 0) status.textContent = "nothing to show";
  }

  function renderValues(root, data) {
    const max = Math.max(1e-9, ...data.values.map((v) => Math.abs(v)));
    const strip = el("div", { class: "cl-tokens" });
    data.tokens.forEach((t, i) => {
      const v = data.values[i];
      const span = el("span", { class: "cl-tok", "data-pos": String(i) }, t);
      if (v !== null) {
        span.style.backgroundColor = rgba(v >= 0 ? (data.positive === "blue" ? BLUE : RED) : BLUE, Math.abs(v) / max);
        span.style.color = Math.abs(v) / max > 0.6 ? "#fff" : "";
        span.dataset.value = v.toFixed(4);
      }
      span.title = `${i}:${t}` + (v === null ? " (no value)" : `  ${data.label} ${v.toFixed(3)}`);
      strip.append(span);
    });
    const legend = el("div", { class: "cl-status" }, `${data.label}: darker = larger (max ${max.toFixed(3)}); hover a token`);
    root.replaceChildren(el("div", { class: "cl-title" }, data.title || ""), legend, strip);
  }

  function renderAll() {
    for (const root of document.querySelectorAll("[data-circuitlab-view]:not([data-rendered])")) {
      const data = JSON.parse(document.getElementById(root.id + "-data").textContent);
      (root.dataset.circuitlabView === "attention" ? renderAttention : renderValues)(root, data);
      root.dataset.rendered = "1";
    }
  }

  window.circuitlabViews = { renderAll };
  renderAll();
})();
