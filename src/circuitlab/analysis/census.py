"""`head_census`: one row per head naming its roles, with the numbers that justify each name.

Roles are given by thresholds fixed in advance (`THRESHOLDS`), never by eye: a score must pass an
absolute level *and* beat its null baseline by a margin. The causal column is the increase in loss
on the relevant task (by default: predicting the second half of repeated random tokens) when the
head is mean-ablated.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..files import atomic_write_text
from ..model import HookedTransformer
from ..table import Table, TableView
from ..tasks import Task, masked_loss
from .ablation import head_ablation_effects
from .heads import Bos, HeadScores, _resolve_bos, head_scores, make_probes

# role: (score, minimum value, minimum margin over the baseline). Decided before looking at results.
THRESHOLDS: dict[str, tuple[str, float, float]] = {
    "previous-token": ("previous_token", 0.4, 0.2),
    "current-token": ("current_token", 0.4, 0.2),
    "first-token": ("first_token", 0.5, 0.2),
    "duplicate-token": ("duplicate_token", 0.3, 0.2),
    "prefix-matching": ("prefix_matching", 0.3, 0.2),
    "copying": ("copying_eigen", 0.8, 0.2),
}
# An induction head matches prefixes at varying offsets and copies (Olsson et al. 2022): it needs
# this rule and the "copying" one.
INDUCTION = ("induction", 0.3, 0.2)


@dataclass
class HeadRow:
    layer: int
    head: int
    roles: list[str]
    scores: dict[str, float]
    baselines: dict[str, float]
    ablation_loss_increase: float | None
    evidence: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"L{self.layer}H{self.head}"


@dataclass(repr=False)  # the repr is TableView's
class HeadCensus(TableView):
    rows: list[HeadRow]
    clean_loss: float | None = None

    def heads_with(self, role: str) -> list[HeadRow]:
        return [r for r in self.rows if role in r.roles]

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps({"clean_loss": self.clean_loss, "heads": [asdict(r) for r in self.rows]}, indent=2)
        if path is not None:
            atomic_write_text(path, text)
        return text

    def to_csv(self, path: str | Path | None = None) -> str:
        names = sorted({k for r in self.rows for k in r.scores})
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["head", "roles", "ablation_loss_increase", *names, *(f"{n}_baseline" for n in names)])
        for r in self.rows:
            writer.writerow(
                [r.label, ";".join(r.roles), r.ablation_loss_increase]
                + [r.scores[n] for n in names]
                + [r.baselines[n] for n in names]
            )
        if path is not None:
            atomic_write_text(path, out.getvalue())
        return out.getvalue()

    def table(self) -> Table:
        """One row per head: its roles, the mean-ablation loss increase and the evidence for each role."""
        rows = [
            {
                "head": r.label,
                "roles": ", ".join(r.roles) or "-",
                "ablation dloss": r.ablation_loss_increase,
                "evidence": "; ".join(r.evidence),
            }
            for r in self.rows
        ]
        return Table(rows, ["head", "roles", "ablation dloss", "evidence"], title="head census")

    def summary(self) -> str:
        """One line: how many heads, which have roles."""
        named = [f"{r.label} {'/'.join(r.roles)}" for r in self.rows if r.roles]
        loss = "" if self.clean_loss is None else f", clean loss {self.clean_loss:.3f}"
        return f"HeadCensus of {len(self.rows)} heads{loss}: " + ("; ".join(named) if named else "no head has a role")


def _passes(scores: HeadScores, rule: tuple[str, float, float]) -> torch.Tensor:
    name, level, margin = rule
    return (scores.scores[name] >= level) & (scores.scores[name] - scores.baselines[name] >= margin)


def repeated_loss_fn(tokens: torch.Tensor, half: int) -> Any:
    """Loss of predicting the second copy of [BOS?, x, x] (every token of it after its first)."""
    n_pos = tokens.shape[1]
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[:, n_pos - half : n_pos - 1] = True  # predictions at these positions target tokens of the copy

    def loss(logits: torch.Tensor) -> torch.Tensor:
        targets = torch.cat([tokens[:, 1:], tokens[:, :1]], dim=1)
        per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), targets, reduction="none")
        return (per_token * mask).sum() / mask.sum()

    return loss


@torch.no_grad()
def head_census(
    model: HookedTransformer,
    task: Task | None = None,
    scores: HeadScores | None = None,
    batch: int = 32,
    seed: int = 0,
    bos: Bos = "model",
    ablate: bool = True,
    token_range: tuple[int, int] | None = None,
    length: int | None = None,
) -> HeadCensus:
    """Score every head, name its roles, and mean-ablate it on `task` (default: repeated tokens).

    `bos`, `token_range` and `length` shape the probe sequences as in `head_scores` (default: the
    model's BOS id, the whole vocabulary, n_ctx tokens).
    """
    bos = _resolve_bos(model, bos)
    scores = scores or head_scores(model, batch=batch, seed=seed, bos=bos, token_range=token_range, length=length)
    passed = {role: _passes(scores, rule) for role, rule in THRESHOLDS.items()}
    passed["induction"] = _passes(scores, INDUCTION) & passed["copying"]

    effects, clean = None, None
    if ablate:
        if task is not None:
            data = task.generate(batch, seed=seed + 1).to(model.device)
            tokens = data.tokens

            def loss_fn(logits: torch.Tensor) -> torch.Tensor:
                return masked_loss(logits, data)
        else:
            probes = make_probes(
                model.cfg.d_vocab,
                model.cfg.n_ctx,
                batch=batch,
                length=length,
                bos=bos,
                seed=seed + 1,
                token_range=token_range,
            )
            tokens = probes.repeat.to(model.device)
            loss_fn = repeated_loss_fn(tokens, probes.half)
        clean = float(loss_fn(model(tokens)))
        effects = head_ablation_effects(model, tokens, loss_fn)

    rows = []
    order = ["induction", *THRESHOLDS]
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            roles = [role for role in order if bool(passed[role][layer, head])]
            if "induction" in roles and "prefix-matching" in roles:
                roles.remove("prefix-matching")  # implied by induction
            evidence = []
            for role in roles:
                name = INDUCTION[0] if role == "induction" else THRESHOLDS[role][0]
                evidence.append(f"{name} {scores.describe(name, layer, head)}")
            rows.append(
                HeadRow(
                    layer,
                    head,
                    roles,
                    {k: round(float(v[layer, head]), 4) for k, v in scores.scores.items()},
                    {k: round(float(v[layer, head]), 4) for k, v in scores.baselines.items()},
                    None if effects is None else round(float(effects[layer, head]), 4),
                    evidence,
                )
            )
    return HeadCensus(rows, clean)
