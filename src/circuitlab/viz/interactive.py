"""Interactive token views, CircuitsVis-style and offline: every head of a layer side by side with the tokens
coloured by attention on hover, and tokens coloured by a per-token value (loss, log-prob).

Each view is an HTML fragment with its data as JSON and a small script of ours inlined (no CDN, no
`circuitsvis` package: its Python side loads its renderer from unpkg.com); it shows in a notebook cell
(`_repr_html_`), in a `Page` (`page.raw_html(view.html())`) or as a page of its own (`view.save(path)`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ._common import check_ndim, to_numpy

_CSS = """
.cl-view { font-family: system-ui, sans-serif; font-size: 13px; margin: .5em 0; }
.cl-title { font-weight: 600; margin-bottom: .3em; }
.cl-heads { display: flex; flex-wrap: wrap; gap: 8px; margin-bottom: .4em; }
.cl-head { border: 2px solid #ddd; padding: 3px; cursor: pointer; text-align: center; font-size: 11px; }
.cl-head.cl-selected { border-color: rgb(33, 102, 172); }
.cl-pattern { display: block; image-rendering: pixelated; border: 1px solid #eee; }
.cl-modes label { margin-right: 1.2em; }
.cl-status { color: #555; margin: .3em 0; }
.cl-tokens { line-height: 2; }
.cl-tok { display: inline-block; padding: 0 3px; margin: 1px; border: 1px solid #e4e4e4; border-radius: 3px;
  white-space: pre; font-family: ui-monospace, monospace; }
.cl-tok.cl-focus { outline: 2px solid #222; }
"""
_ids = itertools.count()


def _script() -> str:
    return resources.files("circuitlab.viz").joinpath("static_js/tokens_view.js").read_text()


def _visible(token: str) -> str:
    """Newlines and tabs written out, a token of spaces as dots (each box keeps its leading space: " Hart")."""
    token = token.replace("\n", "\\n").replace("\t", "\\t")
    return token if token.strip() else token.replace(" ", "\u00b7") or "\u2205"


@dataclass
class TokenView:
    """An interactive view: `kind` "attention" or "values", with its JSON-serialisable data."""

    kind: str
    data: dict[str, Any]
    element_id: str = field(default_factory=lambda: f"circuitlab-view-{next(_ids)}")

    def html(self) -> str:
        """The fragment: root element, its data, the stylesheet and the script (safe to repeat on a page)."""
        payload = json.dumps(self.data).replace("</", "<\\/")  # never closes the <script> early
        return (
            f"<style>{_CSS}</style>"
            f'<div class="cl-view" id="{self.element_id}" data-circuitlab-view="{self.kind}"></div>'
            f'<script type="application/json" id="{self.element_id}-data">{payload}</script>'
            f"<script>{_script()}</script>"
        )

    def _repr_html_(self) -> str:
        return self.html()

    def save(self, path: str | Path) -> Path:
        """A page of its own that opens offline."""
        from .page import Page

        return Page(self.data.get("title") or "circuitlab view").raw_html(self.html()).save(path)


def attention_heads(
    patterns: Any,
    tokens: Sequence[Any],
    layer: int = 0,
    batch_index: int = 0,
    head_names: Sequence[str] | None = None,
    title: str | None = None,
    decimals: int = 3,
) -> TokenView:
    """Every head of one layer side by side; hover a token to colour the tokens it attends to (or, switched,
    the tokens attending to it), hover a head to choose it.

    patterns: [head, query, key] for one sequence, or an ActivationCache (layer `layer`, sequence `batch_index`).
    """
    if hasattr(patterns, "model"):  # an ActivationCache
        values = to_numpy(patterns["pattern", layer][batch_index])
        head_names = head_names or [f"L{layer}H{h}" for h in range(values.shape[0])]
    else:
        values = to_numpy(patterns)
    check_ndim(values, 3, "patterns", "[head, query, key]")
    n_heads, n_q, n_k = values.shape
    words = [_visible(str(int(t)) if hasattr(t, "item") else str(t)) for t in tokens]
    if len(words) != n_k or n_q != n_k:
        raise ValueError(f"got {len(words)} tokens for patterns of {n_q} queries x {n_k} keys: they must be equal")
    names = list(head_names) if head_names is not None else [f"H{h}" for h in range(n_heads)]
    if len(names) != n_heads:
        raise ValueError(f"got {len(names)} head names for {n_heads} heads")
    data = {
        "title": title or f"attention, layer {layer}",
        "tokens": words,
        "head_names": names,
        "patterns": np.round(values, decimals).tolist(),
    }
    return TokenView("attention", data)


def token_values(
    tokens: Sequence[Any], values: Any, label: str = "value", title: str | None = None, positive: str = "red"
) -> TokenView:
    """Tokens coloured by one value each (darker = larger in magnitude; `positive` "red" or "blue"); None or
    NaN leaves a token uncoloured (e.g. the first token, which no position predicts)."""
    words = [_visible(str(int(t)) if hasattr(t, "item") else str(t)) for t in tokens]
    vals = [None if v is None or not np.isfinite(v) else float(v) for v in to_numpy(values).reshape(-1).tolist()]
    if len(vals) != len(words):
        raise ValueError(f"got {len(vals)} values for {len(words)} tokens")
    if positive not in ("red", "blue"):
        raise ValueError(f"positive={positive!r} is invalid: expected 'red' or 'blue'")
    data = {"title": title or label, "tokens": words, "values": vals, "label": label, "positive": positive}
    return TokenView("values", data)


def token_losses(model: Any, tokens: Any, title: str | None = None) -> TokenView:
    """One sequence's tokens coloured by the model's loss on each (-log p of the token given the ones before;
    the first token has none)."""
    import torch

    from .predictions import str_tokens

    toks = torch.as_tensor(tokens).reshape(1, -1).to(model.device)
    with torch.no_grad():
        log_probs = model(toks).float().log_softmax(-1)[0, :-1]  # [pos - 1, vocab]
    loss = -log_probs.gather(-1, toks[0, 1:, None])[:, 0]
    values = [None, *loss.cpu().tolist()]
    return token_values(str_tokens(model, toks[0]), values, label="loss (nats)", title=title or "loss per token")
