"""A discovery problem: a model, clean and corrupted tokens, a metric, and (when known) the true circuit."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...model import HookedTransformer
from .graph import Graph
from .interventions import Metric


class TargetLogitDiff:
    """Mean over the scored (batch, position) cells of logit[answer] - logit[distractor]: answers,
    distractors and mask are [batch, pos]; logits [..., batch, pos, vocab] -> [...]."""

    def __init__(self, answers: torch.Tensor, distractors: torch.Tensor, mask: torch.Tensor) -> None:
        if not answers.shape == distractors.shape == mask.shape:
            raise ValueError(
                f"answers {tuple(answers.shape)}, distractors {tuple(distractors.shape)} and mask "
                f"{tuple(mask.shape)} must all be [batch, pos]"
            )
        if not mask.any():
            raise ValueError("the mask scores no position: nothing to measure")
        self.answers, self.distractors, self.mask = answers.long(), distractors.long(), mask.bool()

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        lead = logits.shape[:-3]

        def pick(ids: torch.Tensor) -> torch.Tensor:
            return logits.gather(-1, ids.to(logits.device).expand(*lead, *ids.shape)[..., None]).squeeze(-1)

        diff = pick(self.answers) - pick(self.distractors)  # [..., batch, pos]
        mask = self.mask.to(logits.device)
        return (diff * mask).sum((-2, -1)) / mask.sum()


@dataclass
class Problem:
    """One circuit-discovery experiment; `true_edges` names the circuit when it is known."""

    name: str
    model: HookedTransformer
    clean: torch.Tensor
    corrupted: torch.Tensor
    metric: Metric
    true_edges: list[str] = field(default_factory=list)
    description: str = ""
    distractors: list[str] = field(default_factory=list)  # senders built to write but not matter

    @property
    def graph(self) -> Graph:
        return Graph.from_model(self.model)

    @property
    def truth(self) -> torch.Tensor:
        """[n_edges] bool: the true edges."""
        names = {n: i for i, n in enumerate(self.graph.edge_names)}
        mask = torch.zeros(len(names), dtype=torch.bool)
        for e in self.true_edges:
            mask[names[e] if e in names else self.graph.edge_id(e)] = True
        return mask


def relabel_tokens(tokens: torch.Tensor, d_vocab: int, seed: int, keep: tuple[int, ...] = (0,)) -> torch.Tensor:
    """The same sequences with every token id (except those in `keep`) moved along a random cycle per row
    (so no token keeps its id): same structure (repeats, positions), different tokens."""
    gen = torch.Generator().manual_seed(seed)
    free = torch.tensor([t for t in range(d_vocab) if t not in keep])
    order = free[torch.rand(tokens.shape[0], len(free), generator=gen).argsort(-1)]  # [batch, free]
    table = torch.arange(d_vocab).repeat(tokens.shape[0], 1)  # [batch, vocab]
    table.scatter_(1, order, order.roll(-1, dims=1))  # order[i] -> order[i + 1]
    return table.gather(1, tokens)
