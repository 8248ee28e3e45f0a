// circuitlab web lab: calls the JSON API of the server that served this page, draws with the local plotly.js.
// Token text from the model is only ever inserted as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let current = null; // the prompt of the last successful run

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

// Spaces and line breaks made visible: a token " Hart" shows as "␣Hart".
function showToken(text) {
  return text.replace(/ /g, "\u2423").replace(/\n/g, "\\n").replace(/\t/g, "\\t");
}

// "pos:token", as in every circuitlab figure.
function posLabel(i, token) {
  return `${i}:${showToken(token)}`;
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const detail = data && data.detail ? data.detail : response.statusText;
    throw new Error(`${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return data;
}

function showError(id, err) {
  const box = $(id);
  if (err) { box.textContent = err.message || String(err); box.hidden = false; } else { box.hidden = true; }
}

async function withStatus(statusId, errorId, work) {
  $(statusId).textContent = "computing…";
  showError(errorId, null);
  try {
    await work();
    $(statusId).textContent = "";
  } catch (err) {
    $(statusId).textContent = "";
    showError(errorId, err);
  }
}

function fillSelect(select, n) {
  select.replaceChildren(...Array.from({ length: n }, (_, i) => el("option", { value: i }, i)));
}

async function loadInfo() {
  const info = await api("/api/info");
  const source = info.task ? `${info.kind}, trained on ${info.task}` : info.kind;
  $("model-info").textContent =
    `${info.name} (${source}): ${info.n_layers} layers × ${info.n_heads} heads, d_model ${info.d_model}, ` +
    `n_ctx ${info.n_ctx}, vocabulary ${info.d_vocab}. Limits: ${info.limits.time_limit_s} s per computation, ` +
    `${info.limits.max_body_bytes} bytes per request.`;
  $("prompt-format").textContent = `Prompt: ${info.prompt_format}.`;
  fillSelect($("layer"), info.n_layers);
  fillSelect($("head"), info.n_heads);
  const ex = info.examples;
  $("prompt").value = ex.prompt;
  for (const key of ["clean", "corrupted", "answer", "distractor"]) $(key).value = ex[key];
}

function renderPredictions(data) {
  const head = el("tr", {}, el("th", {}, "pos"), el("th", {}, "token"), el("th", {}, "top predictions"),
    el("th", {}, "next token"), el("th", {}, "rank (0 = top)"), el("th", {}, "p(next)"));
  const rows = data.positions.map((p, i) => {
    const preds = el("td", {});
    for (const t of p.top) {
      preds.append(el("span", { class: "pred" }, el("span", { class: "tok" }, showToken(t.token)), " ",
        el("span", { class: "prob" }, t.prob.toFixed(3))));
    }
    const next = p.next;
    const rankClass = !next ? "" : next.rank === 0 ? "rank1" : next.rank >= 10 ? "rankfar" : "";
    return el("tr", {}, el("td", {}, i), el("td", {}, el("span", { class: "tok" }, showToken(p.token))), preds,
      el("td", {}, next ? el("span", { class: "tok" }, showToken(next.token)) : "–"),
      el("td", { class: rankClass }, next ? next.rank : "–"), el("td", {}, next ? next.prob.toFixed(3) : "–"));
  });
  $("predictions").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  $("loss").textContent = data.loss === null ? "" :
    `Mean next-token loss over the prompt: ${data.loss.toFixed(3)} nats.`;
}

// Categorical axes would merge repeated tokens: plot positions, label them with the tokens.
function tokenAxis(tokens, title) {
  return {
    title: { text: title }, tickmode: "array", tickvals: tokens.map((_, i) => i),
    ticktext: tokens.map((t, i) => posLabel(i, t)), automargin: true, tickfont: { size: tokens.length > 32 ? 8 : 10 },
  };
}

function renderAttention(data) {
  const trace = {
    type: "heatmap", z: data.pattern, colorscale: data.colorscale, zmin: 0, zmax: 1,
    customdata: data.pattern.map((row, q) => row.map((_, k) => [posLabel(q, data.tokens[q]), posLabel(k, data.tokens[k])])),
    hovertemplate: "query (pos:token) %{customdata[0]}<br>key (pos:token) %{customdata[1]}<br>attention %{z:.3f}<extra></extra>",
  };
  const layout = {
    title: { text: `L${data.layer}H${data.head} attention` },
    xaxis: tokenAxis(data.tokens, "key"), yaxis: { ...tokenAxis(data.tokens, "query"), autorange: "reversed" },
    margin: { t: 40 }, height: Math.max(420, 14 * data.tokens.length + 160),
  };
  Plotly.react($("attention-plot"), [trace], layout, { responsive: true, displaylogo: false });
}

async function refreshAttention() {
  if (current === null) return;
  await withStatus("attention-status", "attention-error", async () => {
    renderAttention(await api("/api/attention",
      { prompt: current, layer: Number($("layer").value), head: Number($("head").value) }));
  });
}

async function runPrompt(event) {
  event.preventDefault();
  const prompt = $("prompt").value;
  await withStatus("prompt-status", "prompt-error", async () => {
    const top_k = Number($("top-k").value);
    const [preds, attention] = await Promise.all([
      api("/api/predictions", { prompt, top_k }),
      api("/api/attention", { prompt, layer: Number($("layer").value), head: Number($("head").value) }),
    ]);
    current = prompt;
    renderPredictions(preds);
    showError("attention-error", null);
    renderAttention(attention);
  });
}

function renderCensus(data) {
  const head = el("tr", {}, el("th", {}, "head"), el("th", {}, "roles"), el("th", {}, "ablation Δloss"),
    el("th", {}, "evidence"));
  const rows = data.heads.map((h) => el("tr", {}, el("td", {}, h.label), el("td", {}, h.roles.join(", ") || "–"),
    el("td", {}, h.ablation_loss_increase === null ? "–" : h.ablation_loss_increase.toFixed(3)),
    el("td", {}, h.evidence.join("; "))));
  $("census").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
}

async function runCensus() {
  await withStatus("census-status", "census-error", async () => renderCensus(await api("/api/census")));
}

function renderCircuit(data) {
  Plotly.react($("circuit-plot"), data.figure.data, data.figure.layout, { responsive: true, displaylogo: false });
  $("circuit-summary").textContent =
    `${data.method} on ${data.task}: ${data.edges.length} of ${data.n_graph_edges} edges, faithfulness ` +
    `${data.faithfulness.toFixed(3)}` + (data.roc_auc === null ? "." :
      `; ROC AUC ${data.roc_auc.toFixed(3)} against the known circuit (${data.known_circuit}).`);
}

async function runCircuit() {
  await withStatus("circuit-status", "circuit-error", async () =>
    renderCircuit(await api("/api/circuit", { method: $("circuit-method").value })));
}

function renderPatching(data) {
  const normalized = data.normalized !== null;
  const z = normalized ? data.normalized : data.values;
  // The same convention as every circuitlab figure: 0 (no effect) white, 1 (the clean behaviour) blue, a
  // symmetric range, and the server's own colour stops (plotly.js's "RdBu" runs the other way).
  const bound = Math.max(normalized ? 1 : 0, ...z.flat().map(Math.abs)) || 1;
  const trace = {
    type: "heatmap", z, y: data.rows, colorscale: data.colorscale, zmid: 0, zmin: -bound, zmax: bound,
    colorbar: { title: { text: normalized ? "normalised (1 = clean)" : "logit diff" } },
    customdata: data.values, hovertemplate: "%{y}, position %{x}: %{z:.3f} (logit diff %{customdata:.3f})<extra></extra>",
  };
  const layout = {
    title: { text: `residual-stream patching (${data.direction})` },
    xaxis: tokenAxis(data.clean_tokens, "position (clean tokens)"),
    yaxis: { automargin: true, autorange: "reversed" }, margin: { t: 40 }, height: 160 + 28 * data.rows.length,
  };
  Plotly.react($("patching-plot"), [trace], layout, { responsive: true, displaylogo: false });
  $("patching-summary").textContent =
    `Logit difference: clean ${data.clean_logit_diff.toFixed(3)}, corrupted ${data.corrupted_logit_diff.toFixed(3)}` +
    (normalized ? "." : " (equal, so the map shows raw logit differences).");
}

async function runPatching(event) {
  event.preventDefault();
  await withStatus("patching-status", "patching-error", async () => {
    const body = {};
    for (const key of ["clean", "corrupted", "answer", "distractor", "direction"]) body[key] = $(key).value;
    renderPatching(await api("/api/patching", body));
  });
}

window.addEventListener("DOMContentLoaded", async () => {
  $("prompt-form").addEventListener("submit", runPrompt);
  $("patching-form").addEventListener("submit", runPatching);
  $("census-run").addEventListener("click", runCensus);
  $("circuit-run").addEventListener("click", runCircuit);
  $("layer").addEventListener("change", refreshAttention);
  $("head").addEventListener("change", refreshAttention);
  try { await loadInfo(); } catch (err) { showError("prompt-error", err); }
});
