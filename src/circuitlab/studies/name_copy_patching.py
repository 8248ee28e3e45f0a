"""Study `name-copy-patching`: where the copied name travels, by activation patching ("MI in 50 lines").

Prompt pairs in the style of "Her name was Alex Hart. Tomorrow at lunch time Alex" -> " Hart" against
the same prompt with " Carroll": they differ at the last name only, and the metric is the logit
difference answer - distractor at the final position, normalised so 0 = corrupted run, 1 = clean run.
Clean activations are patched into the corrupted run (denoising), one cell at a time:

- residual stream (blocks.0.hook_resid_pre and every hook_resid_post) x position: a heatmap;
- each head's output (hook_z), over all positions and per position.

Model: a natural-text model when `CIRCUITLAB_NAME_COPY_MODEL` names a folder `HookedTransformer.
from_pretrained` reads (with its tokenizer); otherwise the `name_copy` preset's toy (2-layer attention-only,
4 heads) trained here on templated text (three people introduced, one named again: copying the right
last name needs induction; before it forms the loss sits at log 3, a bet on all three).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..analysis import normalized_logit_diff, patch_activation, patch_head_out_all_pos, patch_head_out_by_pos
from ..model import HookedTransformer
from ..tasks import Batch, NameCopy
from ..tasks.name_copy import FIRST_NAMES, LAST_NAMES
from ..viz.page import Page
from .base import Check, Study, StudyResult, phase, register
from .common import heatmap, train_preset

NAME = "name-copy-patching"
CLAIM = (
    "In a model that copies a last name after a repeated first name, the answer's information still sits at the "
    "last-name position in the residual stream entering the last layer, and not yet at the final position: the "
    "last layer's attention heads move it, and patching their outputs restores most of the logit difference."
)
SOURCE = "Heimersheim 2023, 'MI in 50 lines' (residual-stream and head-output patching on name-copy prompts)"
ENV_MODEL = "CIRCUITLAB_NAME_COPY_MODEL"
# Thresholds, fixed before any run.
MIN_ACCURACY = 0.9  # the model does the task: the answer is its top prediction on the clean prompts
# The residual stream entering the last layer (resid_pre of the last block). Patching the last resid_post is
# no test: at the final position it restores 1 and elsewhere 0 by construction.
MIN_NAME_POS_RESTORE = 0.9  # at the last-name position: the information is still there
MAX_FINAL_POS_RESTORE = 0.1  # at the final position: it has not arrived yet
# The last layer's heads, patched together (= its attn_out at all positions): "most" = half. With 4 heads
# per layer the answer is shared by all four (single heads restore 0.25 / 0.18 / 0.17 / 0.13, all four
# jointly 0.73 in the audit run), so a check crediting one head tests the metric, not the claim; the joint
# check was registered before the runs it now judges, and the best single head is still reported.
MIN_LAST_LAYER_HEADS_RESTORE = 0.5

# The `name_copy` preset (batch 512, lr 1e-2, cosine, 800 steps): in a pilot run (seed 0) the loss sat at the
# log 3 plateau (a bet on all three last names) until ~step 650, then induction formed (0.13 nats at step 800).
# Read a FAIL of `clean_accuracy` as "no induction formed in this budget", not as a patching result.
STEPS, QUICK_STEPS, QUICK_BATCH = 800, 60, 64  # quick: a smoke test only
N_PROMPTS, PROMPT_SEED = 64, 424242
NATURAL_TEMPLATE = "Her name was {F} {L}. Tomorrow at lunch time {F}"


def _toy(out_dir: Path, seed: int, quick: bool) -> tuple[HookedTransformer, dict]:
    steps = QUICK_STEPS if quick else STEPS
    training = {"batch_size": QUICK_BATCH} if quick else {}
    task, result = train_preset("name_copy", seed, steps, training=training)
    result.model.save(out_dir / "models" / f"toy_seed{seed}")
    # One layout (the first template) and the second person asked for, so positions line up across prompts;
    # the same templates and names as in training, hence the same vocabulary.
    one = NameCopy(task.first_names, task.last_names, task.templates, asked=1)
    assert one.vocab.itos == task.vocab.itos
    batch = one.generate(N_PROMPTS * 4 * len(task.templates), PROMPT_SEED)
    rows = (batch.metadata["template"] == 0).nonzero()[:N_PROMPTS, 0]
    n = int(batch.metadata["end_pos"][rows[0]]) + 1  # drop the right padding: the prompt ends with the asked name
    batch = Batch(
        batch.tokens[rows, :n], batch.targets[rows, :n], batch.loss_mask[rows, :n],
        {k: v[rows, :n] if v.ndim == 2 else v[rows] for k, v in batch.metadata.items()},
    )  # fmt: skip
    labels = [one.vocab.itos[t] for t in batch.tokens[0].tolist()]
    return result.model, {
        "source": "toy model trained on the name_copy task",
        "clean": batch.tokens,
        "corrupted": batch.metadata["corrupted_tokens"],
        "answer": batch.metadata["answer"],
        "distractor": batch.metadata["distractor"],
        "name_pos": int(batch.metadata["answer_pos"][0]),
        "labels": labels,
        "example": one.decode(batch.tokens[0]),
        "steps": steps,
    }


def _natural(folder: str) -> tuple[HookedTransformer, dict]:
    model = HookedTransformer.from_pretrained(folder)
    if model.tokenizer is None:
        raise ValueError(f"{ENV_MODEL}={folder!r}: the folder has no tokenizer; the prompts are text")
    clean, corrupted, answers, distractors = [], [], [], []
    singles = [n for n in LAST_NAMES if len(model.to_tokens(" " + n, prepend_bos=False)[0]) == 1]
    for i, first in enumerate(FIRST_NAMES):
        last, other = singles[i % len(singles)], singles[(i + 1) % len(singles)]
        a = model.to_tokens(NATURAL_TEMPLATE.format(F=first, L=last))
        b = model.to_tokens(NATURAL_TEMPLATE.format(F=first, L=other))
        if a.shape == b.shape and (not clean or a.shape == clean[0].shape):
            clean.append(a)
            corrupted.append(b)
            answers.append(model.to_single_token(" " + last))
            distractors.append(model.to_single_token(" " + other))
    if len(clean) < 2 or len(singles) < 2:
        raise ValueError(f"{ENV_MODEL}={folder!r}: too few prompt pairs tokenise to equal lengths with one-token names")
    tokens = torch.cat(clean)
    diff = (tokens != torch.cat(corrupted)).any(0).nonzero()
    return model, {
        "source": f"natural-text model {folder}",
        "clean": tokens,
        "corrupted": torch.cat(corrupted),
        "answer": torch.tensor(answers),
        "distractor": torch.tensor(distractors),
        "name_pos": int(diff[0]) if len(diff) == 1 else None,
        "labels": model.to_str_tokens(tokens[0]),
        "example": model.to_string(tokens[0]),
        "steps": 0,
    }


def run(out_dir: Path, seeds: list[int], quick: bool) -> StudyResult:
    folder = os.environ.get(ENV_MODEL)
    model, p = _natural(folder) if folder else _toy(out_dir, seeds[0], quick)
    clean, corrupted, answer, distractor = p["clean"], p["corrupted"], p["answer"], p["distractor"]
    with torch.no_grad():
        clean_logits, corrupted_logits = model(clean), model(corrupted)
    final = clean_logits[:, -1]
    accuracy = float((final.argmax(-1) == answer).float().mean())  # top-1: the right person's last name
    metric = normalized_logit_diff(answer, distractor, clean_logits, corrupted_logits)
    n_layers = model.cfg.n_layers
    resid = torch.cat(
        [
            patch_activation(model, clean, corrupted, metric, "resid_pre", layers=[0], progress=False),
            patch_activation(model, clean, corrupted, metric, "resid_post", progress=False),
        ]
    )  # [1 + layer, pos]
    phase(f"{NAME}: patching")
    heads = patch_head_out_all_pos(model, clean, corrupted, metric, progress=False)  # [layer, head]
    joint = float(
        patch_activation(
            model, clean, corrupted, metric, "attn_out", by_pos=False, layers=[n_layers - 1], progress=False
        )[0]
    )  # every head of the last layer at once
    heads_by_pos = patch_head_out_by_pos(model, clean, corrupted, metric, progress=False)  # [layer, pos, head]
    name_pos = p["name_pos"]
    order = heads.flatten().argsort(descending=True)
    top = [(int(i) // model.cfg.n_heads, int(i) % model.cfg.n_heads, float(heads.flatten()[i])) for i in order[:4]]
    name_restore = float(resid[-2, name_pos]) if name_pos is not None else float("nan")  # row -2: resid_pre of last
    checks = [
        Check(
            "clean_accuracy",
            accuracy,
            ">=",
            MIN_ACCURACY,
            "top-1 accuracy on the clean prompts: without it there is no copying to locate",
            precondition=True,
        ),
        Check(
            "last_layer_input_name_pos_restore",
            name_restore,
            ">=",
            MIN_NAME_POS_RESTORE,
            "normalised logit difference restored by the residual entering the last layer, at the last name",
        ),
        Check(
            "last_layer_input_final_pos_restore",
            float(resid[-2, -1]),
            "<=",
            MAX_FINAL_POS_RESTORE,
            "the same at the final position",
        ),
        Check(
            "last_layer_heads_restore",
            joint,
            ">=",
            MIN_LAST_LAYER_HEADS_RESTORE,
            "the last layer's head outputs patched together, at all positions",
        ),
    ]
    explanation = f"The best single head restores {top[0][2]:.2f} and the last layer's heads together {joint:.2f}" + (
        ": the answer is spread over several heads." if top[0][2] < MIN_LAST_LAYER_HEADS_RESTORE <= joint else "."
    )
    final_restore = float(resid[-2, -1])
    if final_restore > MAX_FINAL_POS_RESTORE:
        explanation += (
            f" Entering the last layer, the final position already carries {final_restore:.2f} of the answer (and "
            f"the last-name position {name_restore:.2f}): layer 0 moves part of it, so in this model the move is "
            "not the last layer's alone. A finding about this model (several heads in layer 0 can copy), not a "
            "metric artefact: the patch is the whole residual stream at one position."
        )
    measurements = {
        "source": p["source"],
        "training_steps": p["steps"],
        "n_prompts": len(clean),
        "example": p["example"],
        "clean_logit_diff": float(metric.clean),
        "corrupted_logit_diff": float(metric.corrupted),
        "accuracy": accuracy,
        "name_pos": name_pos,
        "resid_restore": resid.tolist(),
        "head_restore": heads.tolist(),
        "top_heads": [{"head": f"L{l}H{h}", "restore": round(v, 4)} for l, h, v in top],
        "last_layer_heads_restore": joint,
    }
    page = Page(NAME)
    page.text(
        f"Model: {p['source']}. Example clean prompt: {p['example']!r}. Clean logit difference "
        f"{metric.clean:.2f}, corrupted {metric.corrupted:.2f}; clean accuracy {accuracy:.0%}."
    )
    labels = [f"{i}:{t}" for i, t in enumerate(p["labels"])]
    rows = ["resid_pre 0", *(f"resid_post {l}" for l in range(n_layers))]
    page.figure(
        heatmap(
            resid, "Residual stream patching (1 = clean behaviour restored)", labels, rows, "position", "", zmid=0.0
        )
    )
    page.figure(
        heatmap(
            heads,
            "Head output patching, all positions",
            [f"H{h}" for h in range(model.cfg.n_heads)],
            [f"L{l}" for l in range(n_layers)],
            "head",
            "layer",
            zmid=0.0,
        )
    )
    page.figure(
        heatmap(
            heads_by_pos.permute(0, 2, 1).flatten(0, 1),
            "Head output patching by position",
            labels,
            [f"L{l}H{h}" for l in range(n_layers) for h in range(model.cfg.n_heads)],
            "position",
            "",
            zmid=0.0,
        )
    )
    page.heading("Heads that carry the answer").table(measurements["top_heads"])
    return StudyResult(checks, measurements, page, explanation)


register(Study(NAME, CLAIM, run, source=SOURCE, default_seeds=1, measured_s=(4, 49)))
