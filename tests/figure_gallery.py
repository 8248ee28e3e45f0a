"""Every Plotly figure `circuitlab.viz` makes, built from a small random model with realistic labels (text
tokens with leading spaces, long titles): the layout tests render them in Chromium and as PNGs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from circuitlab import HookedTransformer, HookedTransformerConfig, viz
from circuitlab.analysis import composition_scores, full_ov_circuit, head_scores

WORDS = ["<|BOS|>", " Her", " name", " was", " Alex", " Hart", ".", " Tomorrow", " at", " lunch", " time", " Alex"]


def _model() -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=3, d_model=32, n_heads=4, n_ctx=64, d_vocab=40, attn_only=True, seed=0, d_head=8
    )
    return HookedTransformer(cfg)


def _metrics_rows() -> list[dict[str, Any]]:
    rows = []
    for i, step in enumerate(range(0, 1001, 100)):
        row = {"step": step, "eval_loss": 3.5 - 0.3 * i, "train_loss": 3.6 - 0.3 * i}
        row |= {f"heads.induction.L{l}H{h}": (i / 10) * (l == 1) * (h + 1) / 4 for l in range(3) for h in range(4)}
        row["loss_per_position"] = [3.5 - 0.03 * p * i / 10 for p in range(40)]
        rows.append(row)
    return rows


def figures() -> dict[str, Callable[[], Any]]:
    """name -> a function building the figure (built lazily, so one failing figure names itself)."""
    model = _model()
    n = len(WORDS)
    toks = torch.randint(1, 40, (1, n), generator=torch.Generator().manual_seed(1))
    _, cache = model.run_with_cache(toks)
    long_toks = torch.randint(1, 40, (1, 64), generator=torch.Generator().manual_seed(2))
    _, long_cache = model.run_with_cache(long_toks)
    long_words = [f" tok{int(t)}" for t in long_toks[0]]
    scores = head_scores(model, batch=4, seed=0)
    comp = composition_scores(model, "K")
    resid = torch.linspace(-1, 3, 4 * n).reshape(4, n)
    heads = torch.linspace(-1, 3, 12).reshape(3, 4)
    rows = _metrics_rows()

    def circuit() -> Any:
        from circuitlab.analysis.discovery import Circuit, edge_attribution
        from circuitlab.compiled import induction

        p = induction(batch=4, chunk=5)
        return viz.circuit_graph(
            Circuit.from_edges(p.graph, p.true_edges, edge_attribution(p.model, p.clean, p.corrupted, p.metric))
        )

    return {
        "attention_pattern": lambda: viz.attention_pattern(cache["pattern", 1][0, 2], WORDS, title="L1H2 attention"),
        "attention_pattern_64": lambda: viz.attention_pattern(long_cache["pattern", 1][0, 0], long_words, title="64"),
        "attention_grid": lambda: viz.attention_grid(cache, WORDS, title="every head's attention on the prompt"),
        "attention_grid_64": lambda: viz.attention_grid(long_cache, long_words, title="every head, 64 tokens"),
        "predictions_table": lambda: viz.predictions_table(
            viz.token_predictions(model, toks, top_k=5), title="predictions at every position"
        ),
        "prompt_test": lambda: viz.test_prompt(
            model, toks[0, :-1], toks[0, -1:], print_details=False, return_result=True
        ).figure(),
        "layer_pos_heatmap": lambda: viz.layer_pos_heatmap(
            resid,
            WORDS,
            title="residual stream: clean activations patched into the corrupted run",
            metric_name="logit diff",
            clean=3.0,
            corrupted=-1.0,
            layer_labels=[*(f"resid_pre {l}" for l in range(3)), "resid_post 2"],
        ),
        "layer_head_heatmap": lambda: viz.layer_head_heatmap(
            heads,
            title="head outputs (all positions): clean activations patched into the corrupted run",
            metric_name="logit diff",
            clean=3.0,
            corrupted=-1.0,
        ),
        "head_score_matrix": lambda: viz.head_score_matrix(
            scores.scores["induction"], title="induction score", baseline=scores.baselines["induction"]
        ),
        "head_scores_grid": lambda: viz.head_scores_grid(scores, title="head scores (hover: the baseline)"),
        "composition_matrix": lambda: viz.composition_matrix(comp, "K", title="K-composition", baseline=0.2),
        "circuit_matrix": lambda: viz.circuit_matrix(
            full_ov_circuit(model)[1, 0], title="full OV circuit L1H0", max_size=40
        ),
        "circuit_matrix_qk": lambda: viz.circuit_matrix(
            torch.randn(30, 30),
            title="positional QK circuit L0H0",
            causal=True,
            rows="softmax",
            row_title="query position",
            col_title="key position",
        ),
        "loss_curves": lambda: viz.loss_curves(rows, checkpoints=[0, 500, 1000], title="loss"),
        "head_trajectories": lambda: viz.head_trajectories(rows, "induction", checkpoints=[500]),
        "loss_per_position": lambda: viz.loss_per_position(rows, title="eval loss at each position"),
        "logit_lens_table": lambda: viz.logit_lens_table(cache, toks, pos=-1, answer=int(toks[0, -1])),
        "logit_lens_heatmap": lambda: viz.logit_lens_heatmap(cache, toks, str_toks=WORDS),
        "circuit_graph": circuit,
    }
