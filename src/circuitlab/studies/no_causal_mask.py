"""Study `no-causal-mask`: without the causal mask the model reads the answer from the future.

The `induction` preset (one head per layer) is trained with bidirectional attention (`causal=False`) and, as a control,
with the mask, same budget. Two numbers per model on 256 fresh sequences:

- training-time loss: the repeated-half loss with the whole sequence visible, as during training;
- generation: what greedy decoding sees, the prediction at position p from the prefix tokens[:p+1]
  only (the future does not exist yet). Its loss and greedy (argmax) accuracy on the same targets.
  For a causal model the two views agree exactly; a model that learnt to read token p+1 has nothing to
  read at generation time. The report also shows a free-running greedy continuation of one prompt.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..model import HookedTransformer
from ..tasks import Batch, masked_loss
from ..viz.page import Page
from .base import Check, Study, StudyResult, register
from .common import attention_pattern, bars, heatmap, summary, train_preset

NAME = "no-causal-mask"
CLAIM = (
    "Without the causal mask a model trained on repeated random tokens reads the future: its training loss "
    "collapses to near zero while greedy generation, which cannot see the future, fails."
)
# Thresholds, fixed before any run. Worst seed against each.
# Claim: without the mask a model trained on next-token prediction reads the answer from the future, so
# its training loss collapses while generation (which has no future) gets no benefit.
MAX_TRAIN_LOSS = 0.1  # nats: the loss with the future visible collapses (0.1 nats = 90% on the answer)
MIN_GENERATION_LOSS = 2.0  # nats: from the prefix alone it is no better than guessing among seen tokens
MAX_GENERATION_ACCURACY = 0.2  # greedy accuracy from the prefix alone (chance is 1/63)

STEPS = 600
QUICK_STEPS = 300  # the causal control is then the same model as the other studies' quick runs
EVAL_BATCH, EVAL_SEED = 256, 424242


@torch.no_grad()
def prefix_logits(model: HookedTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """[batch, pos, vocab]: the logits at each position p computed from tokens[:, :p+1] alone."""
    return torch.stack([model(tokens[:, : p + 1])[:, p] for p in range(tokens.shape[1])], dim=1)


@torch.no_grad()
def generation_measures(model: HookedTransformer, batch: Batch) -> dict[str, float]:
    full = model(batch.tokens)
    cut = prefix_logits(model, batch.tokens)
    mask = batch.loss_mask
    hits = (cut.argmax(-1) == batch.targets) & mask
    ce = F.cross_entropy(cut.transpose(1, 2).float(), batch.targets, reduction="none")
    return {
        "train_loss": float(masked_loss(full, batch)),
        "generation_loss": float((ce * mask).sum() / mask.sum()),
        "generation_accuracy": float(hits.sum() / mask.sum()),
        "train_accuracy": float(((full.argmax(-1) == batch.targets) & mask).sum() / mask.sum()),
    }


@torch.no_grad()
def greedy_continuation(model: HookedTransformer, prompt: torch.Tensor, n_new: int) -> list[int]:
    """Free-running greedy decoding of `n_new` tokens after `prompt` [pos]."""
    tokens = prompt[None]
    for _ in range(n_new):
        tokens = torch.cat([tokens, model(tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens[0, len(prompt) :].tolist()


def run(out_dir: Path, seeds: list[int], quick: bool) -> StudyResult:
    steps = QUICK_STEPS if quick else STEPS
    per_seed, example = [], None
    for seed in seeds:
        row: dict = {"seed": seed}
        for label, causal in (("no_mask", False), ("causal", True)):
            task, result = train_preset("induction", seed, steps, model={"causal": causal, "n_heads": 1})
            result.model.save(out_dir / "models" / f"{label}_seed{seed}")
            batch = task.generate(EVAL_BATCH, EVAL_SEED)
            row.update({f"{label}_{k}": round(v, 4) for k, v in generation_measures(result.model, batch).items()})
            if example is None and not causal:
                example = (result.model, batch)
        per_seed.append(row)

    checks = [
        Check.over_seeds(
            "no_mask_train_loss_worst",
            [r["no_mask_train_loss"] for r in per_seed],
            "<=",
            MAX_TRAIN_LOSS,
            1.0,  # every seed
            "repeated-half loss with the whole sequence visible, as in training (nats)",
        ),
        Check.over_seeds(
            "no_mask_generation_loss_best",
            [r["no_mask_generation_loss"] for r in per_seed],
            ">=",
            MIN_GENERATION_LOSS,
            1.0,  # every seed
            "the same predictions from the prefix alone, as greedy generation makes them",
        ),
        Check.over_seeds(
            "no_mask_generation_accuracy_worst",
            [r["no_mask_generation_accuracy"] for r in per_seed],
            "<=",
            MAX_GENERATION_ACCURACY,
            1.0,  # every seed
            "greedy accuracy on the repeated half from the prefix alone",
        ),
    ]
    measurements = {
        "steps": steps,
        "per_seed": per_seed,
        **{k: summary([r[k] for r in per_seed]) for k in per_seed[0] if k != "seed"},
    }
    return StudyResult(checks, measurements, _page(per_seed, *example))


def _page(per_seed: list[dict], model: HookedTransformer, batch: Batch) -> Page:
    page = Page(NAME)
    page.heading("Training loss vs generation").table(per_seed)
    r = per_seed[0]
    page.figure(
        bars(
            ["training view (future visible)", "generation view (prefix only)"],
            {
                "no mask": [r["no_mask_train_loss"], r["no_mask_generation_loss"]],
                "causal mask": [r["causal_train_loss"], r["causal_generation_loss"]],
            },
            f"Repeated-half loss (seed {r['seed']})",
            "nats",
        )
    )
    tokens = batch.tokens[0]
    start, chunk = int(batch.metadata["repeat_start"][0]), int(batch.metadata["chunk_len"][0])
    generated = greedy_continuation(model, tokens[: start + 1], chunk - 1)
    truth = tokens[start + 1 : start + chunk].tolist()
    page.heading("A free-running greedy continuation (no-mask model)")
    page.code(f"prompt ends with the copy's first token; expected {truth}\ngenerated {generated}")
    idx = [f"{i}:{t}" for i, t in enumerate(tokens.tolist())]
    pattern = attention_pattern(model, tokens[None], 0)[0].mean(0)
    page.figure(
        heatmap(pattern, "No-mask model, layer 0 attention (mean over heads): it looks ahead", idx, idx, "key", "query")
    )
    return page


register(
    Study(
        NAME,
        CLAIM,
        run,
        default_seeds=3,
        source="a didactic check: why decoders mask the future (Vaswani et al. 2017)",
        measured_s=(37, 46),
    )
)
