"""Build the report of a training run directory (see `build_report`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..runs import Run, open_run
from ..viz.page import Page

# Head scores whose trajectories the report draws (the roles of the census), in this order.
ROLE_SCORES = ("induction", "previous_token", "duplicate_token", "prefix_matching", "copying_eigen")


def checkpoint_score_rows(run: Run, batch: int = 16, seed: int = 0) -> list[dict[str, Any]]:
    """Head scores recomputed on every checkpoint, as metrics-style rows (`heads.score.LxHy`), for runs
    trained without `register_head_scores`."""
    from ..analysis import register_head_scores

    record = register_head_scores(batch=batch, seed=seed)["heads"]
    rows = []
    with torch.no_grad():
        for step, _ in run.checkpoints:
            values = record(run.model_at(step))
            rows.append({"step": step, **{f"heads.{k}": v for k, v in values.items()}})
    return rows


def _top_head(scores: dict[str, torch.Tensor], name: str) -> tuple[int, int]:
    values = scores[name]
    flat = int(values.flatten().argmax())
    return divmod(flat, values.shape[1])


def _section(page: Page, title: str, build: Callable[[], None]) -> None:
    """A section whose failure is written into the report (and the rest still built), never hidden."""
    page.heading(title)
    try:
        build()
    except (ValueError, AttributeError, KeyError, RuntimeError) as err:
        page.text(f"(this section could not be built: {err})")


@torch.no_grad()
def build_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    sample_size: int = 8,
    seed: int = 0,
    png_dir: str | Path | None = None,
) -> Path:
    """Write the report of a run directory to `out` (default RUN_DIR/report.html) and return its path.

    With `png_dir`, every figure is also written there as a PNG (through matplotlib).
    """
    from .. import viz
    from ..analysis import (
        all_composition_scores,
        composition_baseline,
        full_ov_circuit,
        head_census,
        head_scores,
        positional_qk_circuit,
    )

    run = open_run(run_dir)
    out = Path(out) if out is not None else run.path / "report.html"
    model = run.model()
    task = run.task()
    cfg = model.cfg
    rows = run.metrics
    steps = [s for s, _ in run.checkpoints]
    page = Page(f"circuitlab report: {run.path.name}")
    figures: list[tuple[str, Any]] = []

    def figure(name: str, fig: Any, caption: str | None = None) -> None:
        page.figure(fig, caption)
        figures.append((name, fig))

    n_params = sum(p.numel() for p in model.parameters())
    final = rows[-1] if rows else {}
    page.text(
        f"Run directory {run.path}: a {cfg.n_layers}-layer model with {cfg.n_heads} heads per layer "
        f"(d_model {cfg.d_model}, {n_params:,} parameters{', attention only' if cfg.attn_only else ''}) trained on "
        f"{run.config['task']['name']} for {final.get('step', '?')} steps; final eval loss "
        f"{final.get('eval_loss', float('nan')):.4f} nats. {len(steps)} checkpoints at steps {steps}."
    )

    try:
        scores = head_scores(model, batch=32, seed=seed)
        scores_error = None
    except ValueError as err:  # e.g. a context too short for the probe sequences
        scores, scores_error = None, str(err)

    def census() -> None:
        if scores is None:
            raise ValueError(f"head scores unavailable: {scores_error}")
        result = head_census(model, task=task, scores=scores, seed=seed)
        page.text(
            "Roles are named by thresholds fixed in advance (circuitlab.analysis.census.THRESHOLDS): a score must "
            "pass a level and beat its null baseline. 'ablation dloss' is the increase of the task loss "
            f"(clean {result.clean_loss:.4f}) when the head is mean-ablated."
        )
        page.table(result.table())
        figure("head_scores", viz.head_scores_grid(scores, title="head scores"))
        page.text("Each score's null baseline is in the table above and on hover.")

    _section(page, "Head census", census)

    def attention() -> None:
        if task is None:
            raise ValueError("the run's task cannot be rebuilt from config.json")
        batch = task.generate(sample_size, seed=seed + 1000)
        tokens = batch.tokens.to(model.device)
        _, cache = model.run_with_cache(tokens)
        words = viz.str_tokens(model, tokens[0])
        page.text(f"One sequence of a fresh batch from the task ({sample_size} drawn, seed {seed + 1000}).")
        figure("attention", viz.attention_grid(cache, words, title="attention patterns, sequence 0"))
        page.text("Interactive: hover a head to choose it, hover a token to colour what it attends to.")
        for layer in range(cfg.n_layers):
            page.raw_html(viz.attention_heads(cache, words, layer=layer, title=f"layer {layer}").html())
        page.raw_html(viz.token_losses(model, tokens[0], title="the model's loss on each token of sequence 0").html())
        predictions = viz.token_predictions(model, tokens[:1], top_k=3)
        title = "predictions at each position (rank of the next token)"
        figure("predictions", viz.predictions_table(predictions, title=title))
        figure("logit_lens", viz.logit_lens_heatmap(cache, tokens, str_toks=words))

    _section(page, "Attention on a sample", attention)

    def circuits() -> None:
        if cfg.n_layers >= 2:
            comps = all_composition_scores(model)
            top = viz.composition_zmax(*comps.values())  # one colour scale for Q, K and V
            for kind in ("K", "Q", "V"):
                base = composition_baseline(model, kind)
                figure(f"{kind}_composition", viz.composition_matrix(comps[kind], kind, baseline=base, zmax=top))
        layer, head = _top_head(scores.scores, "induction") if scores is not None else (cfg.n_layers - 1, 0)
        n_tok = min(cfg.d_vocab, 48)
        figure(
            "full_ov",
            viz.circuit_matrix(
                full_ov_circuit(model)[layer, head],
                title=f"full OV circuit W_E W_V W_O W_U of L{layer}H{head}"
                + (" (highest induction score)" if scores is not None else "")
                + f", first {n_tok} tokens",
                max_size=n_tok,
            ),
            "A copying head has a positive diagonal: attending to token t raises the logit of t.",
        )
        if cfg.positional_embedding_type == "standard":
            layer, head = _top_head(scores.scores, "previous_token") if scores is not None else (0, 0)
            n_pos = min(cfg.n_ctx, task.seq_len if task is not None else cfg.n_ctx, 64)
            figure(
                "positional_qk",
                viz.circuit_matrix(
                    positional_qk_circuit(model)[layer, head],
                    title=f"positional QK circuit of L{layer}H{head}"
                    + (" (highest previous-token score)" if scores is not None else ""),
                    max_size=n_pos,
                    row_title="query position",
                    col_title="key position",
                    causal=True,
                    rows="softmax",
                    scale=cfg.attn_scale,
                ),
                "Each row: the attention a query at that position would pay from the positional embeddings alone "
                "(softmax of W_pos W_QK W_pos^T / attn_scale over the keys a causal model sees). A previous-token "
                "head's mass sits just below the diagonal.",
            )

    _section(page, "Circuits", circuits)

    def discovery() -> None:
        from ..analysis.discovery import discover
        from ..analysis.discovery.problems import task_problem

        if task is None:
            raise ValueError("the run has no task to discover a circuit on")
        problem = task_problem(model, task, batch=sample_size * 2, seed=seed)
        found = discover(problem, "eap-ig", level=0.9, steps=10)
        circuit = found.circuit
        known = (
            f" Against the agreed circuit ({problem.description}): ROC AUC {found.roc_auc:.3f}."
            if problem.true_edges
            else ""
        )
        page.text(
            f"EAP-IG (10 steps) on {len(problem.clean)} sequences of the task against corrupted ones; the smallest "
            f"top-scoring circuit reaching 0.9 faithfulness has {len(circuit)} of {circuit.graph.n_edges} edges "
            f"(faithfulness {found.faithfulness:.3f}; area under the faithfulness curve {found.curve.area:.3f}).{known}"
        )
        figure("circuit", viz.circuit_graph(circuit, title="circuit (EAP-IG), edge widths by |score|"))

    _section(page, "Circuit discovery", discovery)

    def training() -> None:
        if not rows:
            raise ValueError("metrics.jsonl is empty or missing")
        figure("loss", viz.loss_curves(rows, steps, title="loss (dotted lines: checkpoints)"))
        figure("loss_per_position", viz.loss_per_position(rows, title="eval loss at each position"))

    _section(page, "Training curves", training)

    def trajectories() -> None:
        source = rows
        if not viz.head_score_names(rows):
            if not steps:
                raise ValueError("no head scores in metrics.jsonl and no checkpoints to recompute them on")
            source = checkpoint_score_rows(run, seed=seed)
            page.text("Head scores recomputed on each checkpoint (the run did not record them during training).")
        else:
            page.text("Head scores recorded at each evaluation (register_head_scores); dotted lines: checkpoints.")
        for score in ROLE_SCORES:
            if score in viz.head_score_names(source):
                figure(f"trajectory_{score}", viz.head_trajectories(source, score, steps))

    _section(page, "Role trajectories over training", trajectories)
    page.details("Configuration (config.json of the run)", run.config)

    path = page.save(out)
    if png_dir is not None:
        for name, fig in figures:
            viz.save_png(fig, Path(png_dir) / f"{name}.png")
    return path
