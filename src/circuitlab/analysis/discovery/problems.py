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


def unrepeated_tokens(tokens: torch.Tensor, d_vocab: int, seed: int, bos: int = 0) -> torch.Tensor:
    """Fresh sequences of the same shape: BOS (where `tokens` has it) and distinct random tokens, so nothing
    repeats and an induction head finds no match (its attention pattern changes, not only its values)."""
    gen = torch.Generator().manual_seed(seed)
    free = torch.tensor([t for t in range(d_vocab) if t != bos])
    if len(free) < tokens.shape[1]:
        raise ValueError(f"need at least {tokens.shape[1]} non-BOS token ids for distinct tokens, have {len(free)}")
    fresh = free[torch.rand(tokens.shape[0], len(free), generator=gen).argsort(-1)[:, : tokens.shape[1]]]
    return torch.where(tokens == bos, tokens, fresh)


def induction_edges(prev: list[tuple[int, int]], induction: list[tuple[int, int]]) -> list[str]:
    """The induction circuit's edges: each previous-token head reads the token (V); each induction head's
    key reads each previous-token head (K-composition), its query and value read the token, and it writes
    the logits."""
    name = lambda h: f"a{h[0]}.h{h[1]}"  # noqa: E731
    edges = [f"input->{name(p)}<v>" for p in prev]
    for i in induction:
        edges += [f"{name(p)}->{name(i)}<k>" for p in prev]
        edges += [f"input->{name(i)}<q>", f"input->{name(i)}<v>", f"{name(i)}->logits"]
    return edges


def _heads_above(scores: torch.Tensor, layer: int, level: float) -> list[tuple[int, int]]:
    """Heads of `layer` whose score reaches `level`, else the single best one."""
    row = scores[layer]
    picked = (row >= level).nonzero().flatten().tolist() or [int(row.argmax())]
    return [(layer, h) for h in picked]


def induction_problem(model: HookedTransformer, task, batch: int = 32, seed: int = 0) -> Problem:
    """A trained 2-layer model on `repeated_tokens`: clean = task sequences, corrupted = sequences of fresh
    distinct tokens (nothing repeats), metric = logit difference clean target - the corrupted sequence's
    token at the same place, over the scored repeated positions. The agreed circuit joins the layer-0
    previous-token heads to the layer-1 induction heads (the census levels: previous-token attention >= 0.4,
    induction >= 0.3; the best head if none)."""
    from ..census import INDUCTION, THRESHOLDS
    from ..heads import head_scores

    scores = head_scores(model, seed=seed).scores
    prev = _heads_above(scores["previous_token"], 0, THRESHOLDS["previous-token"][1])
    ind = _heads_above(scores["induction"], 1, INDUCTION[1])
    data = task.generate(batch, seed)
    corrupted = unrepeated_tokens(data.tokens, model.cfg.d_vocab, seed + 1, task.bos)
    distractors = torch.cat([corrupted[:, 1:], corrupted[:, :1]], dim=1)  # the corrupted "next token"
    label = lambda heads: ", ".join(f"L{l}H{h}" for l, h in heads)  # noqa: E731
    return Problem(
        "induction (trained)",
        model,
        data.tokens,
        corrupted,
        TargetLogitDiff(data.targets, distractors, data.loss_mask),
        induction_edges(prev, ind),
        f"previous-token heads {label(prev)} -> K input of induction heads {label(ind)} -> logits",
    )


class TargetLogProb:
    """Mean log-probability of the scored targets (`Batch.targets` / `loss_mask`): logits [..., b, p, v] -> [...]."""

    def __init__(self, targets: torch.Tensor, mask: torch.Tensor) -> None:
        if not mask.any():
            raise ValueError("the task's loss mask scores no position: nothing to measure")
        self.targets, self.mask = targets.long(), mask.bool()

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        log_probs = logits.log_softmax(-1)
        ids = self.targets.to(logits.device).expand(*logits.shape[:-1])[..., None]
        picked = log_probs.gather(-1, ids).squeeze(-1)  # [..., batch, pos]
        mask = self.mask.to(logits.device)
        return (picked * mask).sum((-2, -1)) / mask.sum()


def task_problem(model: HookedTransformer, task, batch: int = 32, seed: int = 0) -> Problem:
    """A discovery problem for any task: on a model of 2+ layers `repeated_tokens` gets `induction_problem`
    and `name_copy` gets `name_copy_problem` (with their agreed circuits); any other task compares its batch
    with another batch of the same task (seed + 1) under the mean log-probability of the scored targets, with
    no known circuit."""
    if getattr(task, "name", None) == "repeated_tokens" and model.cfg.n_layers >= 2:
        return induction_problem(model, task, batch, seed)
    if getattr(task, "name", None) == "name_copy" and model.cfg.n_layers >= 2:
        return name_copy_problem(model, task, batch, seed)
    data = task.generate(batch, seed)
    corrupted = task.generate(batch, seed + 1).tokens
    if corrupted.shape != data.tokens.shape:
        raise ValueError(f"task {task.name!r} draws sequences of varying length: clean and corrupted must match")
    return Problem(
        task.name, model, data.tokens, corrupted, TargetLogProb(data.targets, data.loss_mask), [], "no known circuit"
    )


class AnswerVsOthers:
    """Mean over the batch of logit[answer] - mean logit[others] at one position per prompt: answers [batch],
    others [batch, n], pos [batch]; logits [..., batch, pos, vocab] -> [...]."""

    def __init__(self, answers: torch.Tensor, others: torch.Tensor, pos: torch.Tensor) -> None:
        if not (answers.ndim == 1 and others.ndim == 2 and pos.shape == answers.shape == others.shape[:1]):
            raise ValueError(
                f"answers {tuple(answers.shape)} and pos {tuple(pos.shape)} must be [batch], others "
                f"{tuple(others.shape)} [batch, n]"
            )
        self.answers, self.others, self.pos = answers.long(), others.long(), pos.long()

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(self.pos), device=logits.device)
        final = logits[..., rows, self.pos.to(logits.device), :]  # [..., batch, vocab]
        lead = final.shape[:-2]
        answer = final.gather(-1, self.answers.to(logits.device).expand(*lead, -1)[..., None])[..., 0]
        others = final.gather(-1, self.others.to(logits.device).expand(*lead, -1, -1)).mean(-1)
        return (answer - others).mean(-1)


def name_copy_roles(model: HookedTransformer, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head roles on a `name_copy` batch, measured from attention patterns only: (previous-token
    [layer, head]: mean attention from each last name to its first name, the position before; induction
    [layer, head]: mean attention from the final position to the asked person's last name)."""
    tokens = batch.tokens
    rows = torch.arange(len(tokens))
    end, answer_pos = batch.metadata["end_pos"], batch.metadata["answer_pos"]
    last_pos = batch.metadata["last_pos"]  # [batch, person]
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    pattern = torch.stack([cache[n] for n in names])  # [layer, batch, head, query, key]
    pattern = pattern.permute(0, 2, 1, 3, 4)  # [layer, head, batch, query, key]
    prev = pattern[:, :, rows[:, None], last_pos, last_pos - 1].mean((-2, -1))
    induction = pattern[:, :, rows, end, answer_pos].mean(-1)
    return prev.cpu(), induction.cpu()


def name_copy_problem(model: HookedTransformer, task, batch: int = 64, seed: int = 0) -> Problem:
    """A trained 2-layer model on `name_copy` ("... Alex Hart ... Alex" -> "Hart"). Corrupted: the asked
    person's EARLIER first name is replaced by a first name absent from the prompt, so the final first name
    matches no earlier one; metric: logit of the answer minus the mean logit of the other people's last
    names, at the final position (the model picks the right person: ~0 when it cannot tell them apart).

    The agreed circuit follows from head roles measured on the clean prompts (`name_copy_roles`), with the
    census levels (previous-token >= 0.4 in layer 0, induction >= 0.3 in layer 1; the best head if none):
    the previous-token heads read the changed first name (input -> <v>), write it at the last name's
    position where the induction heads' keys read it (K-composition), and the induction heads write the
    logits. Their query (the final first name) and value (the last name) inputs read tokens the corruption
    leaves unchanged, so those edges carry none of the clean / corrupted difference and are not in it."""
    from ..census import INDUCTION, THRESHOLDS

    if getattr(task, "name", None) != "name_copy" or model.cfg.n_layers < 2:
        raise ValueError("name_copy_problem needs the name_copy task and a model of 2+ layers")
    data = task.generate(batch, seed)
    k = task.n_people
    slots = task.slots[data.metadata["template"]]  # [batch, pos] slot codes: 2i + 1 first name, 2i + 2 last name
    first_pos, last_pos = data.metadata["first_pos"], data.metadata["last_pos"]  # [batch, person]
    rows = torch.arange(batch)
    asked_first = data.metadata["answer_pos"] - 1  # every template writes "{Fi} {Li}"
    if not (slots[rows, asked_first] % 2 == 1).all():
        raise ValueError("the task's templates must put each first name right before its last name")
    # A first name none of the prompt's people has (first_ids in the prompt are distinct).
    gen = torch.Generator().manual_seed(seed + 1)
    in_prompt = (data.tokens[rows[:, None], first_pos][:, :, None] == task.first_ids[None, None]).any(1)
    weights = (~in_prompt).float()  # [batch, first name]
    fresh = task.first_ids[torch.multinomial(weights, 1, generator=gen)[:, 0]]
    corrupted = data.tokens.clone()
    corrupted[rows, asked_first] = fresh
    answers = data.metadata["answer"]
    lasts = data.tokens[rows[:, None], last_pos]  # [batch, person]
    others = lasts[lasts != answers[:, None]].view(batch, k - 1)
    prev_scores, ind_scores = name_copy_roles(model, data)
    prev = _heads_above(prev_scores, 0, THRESHOLDS["previous-token"][1])
    ind = _heads_above(ind_scores, 1, INDUCTION[1])
    name = lambda h: f"a{h[0]}.h{h[1]}"  # noqa: E731
    edges = [f"input->{name(p)}<v>" for p in prev]
    edges += [f"{name(p)}->{name(i)}<k>" for i in ind for p in prev] + [f"{name(i)}->logits" for i in ind]
    label = lambda heads: ", ".join(f"L{l}H{h}" for l, h in heads)  # noqa: E731
    return Problem(
        "name-copy (trained)",
        model,
        data.tokens,
        corrupted,
        AnswerVsOthers(answers, others, data.metadata["end_pos"]),
        edges,
        f"previous-token heads {label(prev)} -> K input of induction heads {label(ind)} -> logits",
    )
