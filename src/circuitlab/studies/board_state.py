"""Study `board-state`: does a transformer trained only to predict legal moves hold a linear board state?

After Li et al. 2023 ("Emergent World Representations", Othello-GPT) and Nanda et al. 2023 ("Emergent
Linear Representations in World Models"): a model trained on random legal games predicts legal moves;
linear probes read the board (empty / mine / theirs, relative to the player to move) from its residual
stream far better than from a randomly initialised model of the same shape, better than the absolute
colours (empty / black / white), and pushing the residual stream along a probe direction changes the
moves the model predicts the way the edited board would.

For each game (tic-tac-toe, and 6x6 Othello in the full run) the study trains the preset, probes every
layer on held-out games with both labellings, repeats the probes on a random-init model, and runs the
causal test: at the layer where the mine/theirs probe reads best (the last layer excluded, where the
residual stream is almost the logits), at one position per game where the model's top-1 move is a
square s, add the vector that makes the probe read "theirs" at s. If the model uses that direction as
its board, it stops playing s (an occupied square is illegal: its probability falls below half of
what it was) and its new top-1 move is legal on the edited board. The control adds a random vector of
the same norm (the top-1 alone is a poor signal: a trained model spreads its probability evenly over
the legal moves, so any push reorders them). Projecting the square's probe directions out is reported
too.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from ..analysis.probes import ProbeSweep, probe_layers, random_init_like, run_with_intervention, steering_vectors
from ..games import N_SPECIAL, register_legal_move_rate, relative_board
from ..model import HookedTransformer
from ..training import from_preset, train
from ..viz.page import Page
from .base import Check, Study, StudyResult, progress_enabled, register

CLAIM = (
    "A transformer trained only to predict legal moves of random games (tic-tac-toe; 6x6 Othello) plays legal "
    "moves, and its residual stream holds the board linearly: probes for empty / mine / theirs beat the same "
    "probes on a random-init model, beat empty / black / white (Othello), and steering along a probe "
    "direction changes the predicted moves as the edited board would."
)

# Thresholds, fixed before any result was seen.
LEGAL_BAR = {"tictactoe": 0.99, "othello6": 0.95}  # top-1 legal moves on held-out games (the bars)
PROBE_GAIN_OVER_RANDOM = 0.05  # best-layer mine/theirs test accuracy minus the random-init model's best
MINE_OVER_COLOUR = 0.0  # Othello: mine/theirs best-layer accuracy minus black/white, must be above this
STEER_GAIN_OVER_RANDOM = 0.5  # fraction of steered squares suppressed (below), minus the random control
SUPPRESSED = 0.5  # a square counts as suppressed when its probability falls below this fraction of before
STEER_COUNTERFACTUAL_LEGAL = 0.8  # fraction of new top-1 moves legal on the edited board

THEIRS = 2  # relative_board class of the opponent of the player to move

# Sizes: games for probing / intervening, and training steps in quick mode.
FULL = dict(games=("tictactoe", "othello6"), probe_games=600, steer_games=500, steps={})
QUICK = dict(games=("tictactoe",), probe_games=300, steer_games=200, steps={"tictactoe": 400})


def _train(preset: str, seed: int, steps: int | None) -> tuple[Any, HookedTransformer, list, float]:
    training = {"seed": seed, **({"steps": steps} if steps else {})}
    task, model_cfg, train_cfg = from_preset(preset, model={"seed": seed}, training=training)
    metrics = register_legal_move_rate(task)
    result = train(HookedTransformer(model_cfg), task, train_cfg, metrics=metrics, progress=progress_enabled())
    curve = [(row["step"], row["legal_move_rate"]) for row in result.history]
    return task, result.model.eval(), curve, result.seconds


def _steer(model: HookedTransformer, task: Any, sweep: ProbeSweep, hook: str, n_games: int, seed: int) -> dict:
    """The causal test at `hook`: steer the probe to "theirs" at the model's chosen square, one position per game."""
    game = task.game
    batch = dataclasses.replace(task, split="test").generate(n_games, seed)
    with torch.no_grad():
        logits, cache = model.run_with_cache(batch.tokens, names_filter=[hook], return_cache_object=False)
    top1 = logits.argmax(-1)  # [batch, pos]
    eligible = batch.loss_mask & (top1 >= N_SPECIAL) & (top1 < game.d_vocab)
    eligible &= batch.metadata["legal"].gather(-1, top1.clamp(max=game.d_vocab - 1)[..., None]).squeeze(-1)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(eligible.shape, generator=gen).masked_fill(~eligible, -1)
    rows = eligible.any(1).nonzero().squeeze(1)
    pos = noise[rows].argmax(1)  # one random eligible position per game
    tokens, old = batch.tokens[rows], top1[rows, pos]
    square = old - N_SPECIAL
    acts = cache[hook][rows, pos].float()  # [n, d_model]
    probe = sweep.probes[hook]
    push = steering_vectors(probe, acts, square, THEIRS)
    rand = torch.randn(push.shape, generator=gen)
    rand = rand / rand.norm(dim=-1, keepdim=True) * push.norm(dim=-1, keepdim=True)
    steered = run_with_intervention(model, tokens, hook, add=push, positions=pos)[torch.arange(len(rows)), pos]
    control = run_with_intervention(model, tokens, hook, add=rand, positions=pos)[torch.arange(len(rows)), pos]
    dirs = torch.stack([probe.directions(int(s)) for s in square])  # [n, 2, d_model]
    projected = run_with_intervention(model, tokens, hook, project_out=dirs, positions=pos)[
        torch.arange(len(rows)), pos
    ]
    board = batch.metadata["boards"][rows, pos].clone()  # the edited board: s now holds an opponent disc
    mover = batch.metadata["to_move"][rows, pos]
    board[torch.arange(len(rows)), square] = (3 - mover).to(board.dtype)
    cf_legal = game.legal_tokens(board, mover)  # [n, d_vocab]
    orig_legal = batch.metadata["legal"][rows, pos]

    def legal_rate(mask: torch.Tensor, new: torch.Tensor) -> float:
        inside = new < game.d_vocab
        return float((mask.gather(1, new.clamp(max=game.d_vocab - 1)[:, None]).squeeze(1) & inside).float().mean())

    new, new_rand, new_proj = steered.argmax(-1), control.argmax(-1), projected.argmax(-1)
    before = logits[rows, pos].softmax(-1).gather(1, old[:, None]).squeeze(1)  # P(s) before any change

    def suppressed(after: torch.Tensor) -> float:  # the model all but stopped playing s
        return float((after.softmax(-1).gather(1, old[:, None]).squeeze(1) < SUPPRESSED * before).float().mean())

    return {
        "hook": hook,
        "n": len(rows),
        "steer_norm": float(push.norm(dim=-1).mean()),
        "resid_norm": float(acts.norm(dim=-1).mean()),
        "suppressed_steer": suppressed(steered),
        "suppressed_random": suppressed(control),
        "suppressed_project": suppressed(projected),
        "left_square_steer": float((new != old).float().mean()),
        "left_square_random": float((new_rand != old).float().mean()),
        "left_square_project": float((new_proj != old).float().mean()),
        "counterfactual_legal_steer": legal_rate(cf_legal, new),
        "counterfactual_legal_random": legal_rate(cf_legal, new_rand),
        "original_legal_steer": legal_rate(orig_legal, new),
        "original_legal_project": legal_rate(orig_legal, new_proj),
    }


def _study_game(preset: str, seed: int, quick: bool) -> tuple[dict, dict]:
    sizes = QUICK if quick else FULL
    task, model, curve, seconds = _train(preset, seed, sizes["steps"].get(preset))
    batch = dataclasses.replace(task, split="test").generate(sizes["probe_games"], 10_000 + seed)
    boards, mask = batch.metadata["boards"], batch.loss_mask
    labels = {"mine_theirs": relative_board(boards, batch.metadata["to_move"]), "colour": boards}
    random_model = random_init_like(model, seed=10_000 + seed)
    sweeps = {
        (who, kind): probe_layers(m, batch.tokens, y, mask, n_classes=3, seed=seed)
        for who, m in (("trained", model), ("random", random_model))
        for kind, y in labels.items()
    }
    mt = sweeps["trained", "mine_theirs"]
    candidates = mt.hook_names[1:-1] if model.cfg.n_layers > 1 else mt.hook_names[1:]
    hook = max(candidates, key=lambda n: float(mt.mean_test_acc[mt.hook_names.index(n)]))
    steer = _steer(model, task, mt, hook, sizes["steer_games"], 20_000 + seed)
    m = {
        "legal_move_rate": curve[-1][1],
        "legal_move_rate_by_step": curve,
        "train_seconds": round(seconds, 1),
        "probe_best": {f"{w}.{k}": s.best[1] for (w, k), s in sweeps.items()},
        "probe_by_layer": {f"{w}.{k}": s.mean_test_acc.tolist() for (w, k), s in sweeps.items()},
        "majority_acc": {k: float(sweeps["trained", k].majority_acc.mean()) for k in labels},
        "hook_names": mt.hook_names,
        "n_probe_rows": {"train": mt.n_train, "test": mt.n_test},
        "steer": steer,
    }
    return m, {"sweeps": sweeps, "task": task, "batch": batch, "model": model}


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))


def _checks(preset: str, runs: list[dict]) -> list[Check]:
    def avg(fn) -> float:
        return _mean([fn(r) for r in runs])

    checks = [
        Check(f"{preset}.legal_move_rate", avg(lambda r: r["legal_move_rate"]), ">=", LEGAL_BAR[preset],
              "top-1 predicted moves that are legal, on held-out games"),
        Check(f"{preset}.probe_gain_over_random",
              avg(lambda r: r["probe_best"]["trained.mine_theirs"] - r["probe_best"]["random.mine_theirs"]),
              ">=", PROBE_GAIN_OVER_RANDOM,
              "best-layer empty/mine/theirs probe test accuracy, trained minus random-init model"),
        Check(f"{preset}.steer_gain_over_random",
              avg(lambda r: r["steer"]["suppressed_steer"] - r["steer"]["suppressed_random"]), ">=",
              STEER_GAIN_OVER_RANDOM,
              f"squares steered to 'theirs' whose probability falls below {SUPPRESSED:g}x, minus a random push "
              "of the same norm"),
        Check(f"{preset}.steer_counterfactual_legal", avg(lambda r: r["steer"]["counterfactual_legal_steer"]), ">=",
              STEER_COUNTERFACTUAL_LEGAL, "new top-1 moves after steering that are legal on the edited board"),
    ]  # fmt: skip
    if preset.startswith("othello"):
        checks.insert(2, Check(
            f"{preset}.mine_theirs_minus_colour",
            avg(lambda r: r["probe_best"]["trained.mine_theirs"] - r["probe_best"]["trained.colour"]), ">",
            MINE_OVER_COLOUR, "best-layer probe accuracy: empty/mine/theirs minus empty/black/white",
        ))  # fmt: skip
    return checks


# ---- figures ----


def _board_heatmaps(game: Any, panels: dict[str, torch.Tensor], title: str, zmin: float, zmax: float) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=list(panels))
    cols = [chr(ord("a") + c) for c in range(game.cols)]
    rows = [str(r + 1) for r in range(game.rows)]
    for i, (name, values) in enumerate(panels.items()):
        grid = values.reshape(game.rows, game.cols).tolist()
        text = [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row] for row in grid]
        fig.add_trace(
            go.Heatmap(z=grid, x=cols, y=rows, zmin=zmin, zmax=zmax, colorscale="Viridis", text=text,
                       texttemplate="%{text}", showscale=i == len(panels) - 1, name=name),
            row=1, col=i + 1,
        )  # fmt: skip
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{i + 1 if i else ''}", row=1, col=i + 1)
    fig.update_layout(title=title, height=340, width=320 * len(panels) + 80)
    return fig


def _layer_figure(m: dict, preset: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    x = m["hook_names"]
    for key, acc in m["probe_by_layer"].items():
        fig.add_trace(go.Scatter(x=x, y=acc, mode="lines+markers", name=key))
    for kind, acc in m["majority_acc"].items():
        fig.add_trace(go.Scatter(x=x, y=[acc] * len(x), mode="lines", line=dict(dash="dot"), name=f"majority.{kind}"))
    fig.update_layout(title=f"{preset}: probe test accuracy by layer", yaxis_title="accuracy (mean over squares)",
                      height=380)  # fmt: skip
    return fig


def _game_page(preset: str, m: dict, extra: dict) -> Page:
    page = Page(preset)
    game, sweeps, batch = extra["task"].game, extra["sweeps"], extra["batch"]
    page.heading(f"{preset}", level=2)
    page.text(
        f"Legal top-1 moves on held-out games: {m['legal_move_rate']:.2%} (bar {LEGAL_BAR[preset]:.0%}), "
        f"after {m['train_seconds']} s of training. Probes: {m['n_probe_rows']['train']} train and "
        f"{m['n_probe_rows']['test']} test positions from disjoint held-out games."
    )
    page.figure(_layer_figure(m, preset))
    rows = []
    for i, name in enumerate(m["hook_names"]):
        rows.append({"hook": name, **{k: v[i] for k, v in m["probe_by_layer"].items()}})
    page.table(rows)
    best = {k: s.best[0] for k, s in ((k, sweeps[k]) for k in sweeps)}
    panels = {
        f"trained mine/theirs ({best['trained', 'mine_theirs']})": sweeps["trained", "mine_theirs"],
        f"trained black/white ({best['trained', 'colour']})": sweeps["trained", "colour"],
        f"random-init mine/theirs ({best['random', 'mine_theirs']})": sweeps["random", "mine_theirs"],
    }
    accs = {k: s.test_acc[s.hook_names.index(s.best[0])] for k, s in panels.items()}
    page.figure(_board_heatmaps(game, accs, "probe test accuracy per square, best layer", 0.0, 1.0))
    # One held-out position: the board as it is and as the best mine/theirs probe reads it.
    mt = sweeps["trained", "mine_theirs"]
    hook = mt.best[0]
    g, p = 0, int(batch.loss_mask[0].nonzero()[-1]) // 2
    with torch.no_grad():
        _, cache = extra["model"].run_with_cache(batch.tokens[g : g + 1], names_filter=[hook])
    read = mt.probes[hook].predict(cache[hook][0, p].float())
    truth = relative_board(batch.metadata["boards"][g, p], batch.metadata["to_move"][g, p])
    moves = " ".join(game.decode(batch.tokens[g, 1 : p + 1]))
    page.figure(
        _board_heatmaps(game, {"board (0 empty, 1 mine, 2 theirs)": truth, f"probe at {hook}": read},
                        f"after {moves}", 0, 2)
    )  # fmt: skip
    s = m["steer"]
    page.text(
        f"Steering at {s['hook']} on {s['n']} positions (push norm {s['steer_norm']:.2f}, residual norm "
        f"{s['resid_norm']:.2f}): the top-1 move left the steered square in {s['left_square_steer']:.1%} of cases "
        f"(random push of the same norm: {s['left_square_random']:.1%}; projecting the square's probe directions "
        f"out: {s['left_square_project']:.1%}); the new move was legal on the edited board in "
        f"{s['counterfactual_legal_steer']:.1%} of cases."
    )
    return page


def run(out_dir: Path, seeds: list[int], quick: bool) -> StudyResult:
    sizes = QUICK if quick else FULL
    checks, measurements, pages = [], {}, []
    for preset in sizes["games"]:
        runs, extras = [], []
        for seed in seeds:
            m, extra = _study_game(preset, seed, quick)
            runs.append(m)
            extras.append(extra)
        checks += _checks(preset, runs)
        measurements[preset] = runs if len(runs) > 1 else runs[0]
        pages.append(_game_page(preset, runs[0], extras[0]))
    page = Page("board-state")
    for p in pages:
        page.include(p)
    return StudyResult(checks, measurements, page)


STUDY = register(
    Study(
        name="board-state",
        claim=CLAIM,
        run=run,
        default_seeds=1,
        source="Li et al. 2023 (Othello-GPT), Nanda et al. 2023 (linear board-state representations)",
        measured_s=(9, 2460),  # full: 1 seed, measured with 1-3 other jobs on the 2 cores
    )
)
