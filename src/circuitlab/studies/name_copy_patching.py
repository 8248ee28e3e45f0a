"""Study `name-copy-patching`: where the copied name travels, by activation patching ("MI in 50 lines").

Prompt pairs in the style of "Her name was Alex Hart. Tomorrow at lunch time Alex" -> " Hart" against
the same prompt with " Carroll": they differ at the last name only, and the metric is the logit
difference answer - distractor at the final position, normalised so 0 = corrupted run, 1 = clean run.
Clean activations are patched into the corrupted run (denoising), one cell at a time:

- residual stream (blocks.0.hook_resid_pre and every hook_resid_post) x position: a heatmap;
- each head's output (hook_z), over all positions and per position, and the last layer's heads together.

Models: a natural-text model when `CIRCUITLAB_NAME_COPY_MODEL` names a folder `HookedTransformer.
from_pretrained` reads (with its tokenizer); otherwise two arms of toys trained here on templated text
(three people introduced, one named again: copying the right last name needs induction; before it forms
the loss sits at log 3, a bet on all three): the `name_copy` preset (2-layer attention-only, 4 heads per
layer) and the same model with one head per layer, where layer 0 has a single head to spend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
# Seeds: every check must hold on every seed (as in the other studies), a fraction fixed before the
# 3-seed runs. One seed was run before (4 heads per layer, seed 0: the two residual checks failed).
MIN_SEED_FRACTION = 1.0

# Budgets. The `name_copy` preset (batch 512, lr 1e-2, cosine) sits at the log 3 plateau (a bet on all three
# last names: layer 0 attends from the final position to every last name) until induction forms. At the
# preset's 800 steps that happened in seed 0 only (top-1 0.97; seeds 1 and 2: 0.47 and 0.39, still on the
# plateau): the cosine schedule has decayed the learning rate before the plateau is left. With 1600 steps,
# seeds 1 and 2 leave it at steps 600 and 700 (eval loss 0.001 by step 800). So the 4-head arm trains 1600
# steps: a budget set after that 3-seed run (thresholds unchanged). One head per layer: 800 steps (seeds 0-2
# reach top-1 1.0; 400 steps already give 0.004 nats in seed 0).
# Read a FAIL of `clean_accuracy` as "no induction formed in this budget", not as a patching result.
# arm -> (heads per layer, training steps). "4 heads" is the preset; "1 head" the minimal model of the mechanism.
ARMS = {"4 heads": (4, 1600), "1 head": (1, 800)}
# Quick mode: the full study's 1-head arm on one seed (800 steps: 50 s here on a quiet machine, measured). At
# 400 steps the task is learned (top-1 1.0) but the residual checks read 0.85 / 0.15, not yet the trained picture.
QUICK_ARMS = {"1 head": (1, 800)}
N_PROMPTS, PROMPT_SEED = 64, 424242
NATURAL_TEMPLATE = "Her name was {F} {L}. Tomorrow at lunch time {F}"


def _toy(out_dir: Path, seed: int, n_heads: int, steps: int) -> tuple[HookedTransformer, dict]:
    task, result = train_preset("name_copy", seed, steps, model={"n_heads": n_heads})
    result.model.save(out_dir / "models" / f"toy_{n_heads}heads_seed{seed}")
    # One layout (the first template) and the second person asked for, so positions line up across prompts;
    # the same templates and names as in training, hence the same vocabulary.
    one = NameCopy(task.first_names, task.last_names, task.templates, asked=1)
    assert one.vocab.itos == task.vocab.itos
    batch = one.generate(N_PROMPTS * 4 * len(task.templates), PROMPT_SEED)
    rows = (batch.metadata["template"] == 0).nonzero()[:N_PROMPTS, 0]
    n = int(batch.metadata["end_pos"][rows[0]]) + 1  # drop the right padding: the prompt ends with the asked name
    per_pos = lambda v: v.ndim == 2 and v.shape[1] == batch.tokens.shape[1]  # noqa: E731  # [batch, pos] entries
    batch = Batch(
        batch.tokens[rows, :n], batch.targets[rows, :n], batch.loss_mask[rows, :n],
        {k: v[rows, :n] if per_pos(v) else v[rows] for k, v in batch.metadata.items()},
    )  # fmt: skip
    last_name_pos = batch.metadata["last_pos"][0].tolist()  # every person's last name (one layout: row 0's)
    return result.model, {
        "source": f"toy model trained on the name_copy task ({n_heads} head(s) per layer)",
        "clean": batch.tokens,
        "corrupted": batch.metadata["corrupted_tokens"],
        "answer": batch.metadata["answer"],
        "distractor": batch.metadata["distractor"],
        "name_pos": int(batch.metadata["answer_pos"][0]),
        "last_name_pos": last_name_pos,
        "labels": [one.vocab.itos[t] for t in batch.tokens[0].tolist()],
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
        "last_name_pos": [int(diff[0])] if len(diff) == 1 else [],
        "labels": model.to_str_tokens(tokens[0]),
        "example": model.to_string(tokens[0]),
        "steps": 0,
    }


def measure(model: HookedTransformer, p: dict[str, Any]) -> dict[str, Any]:
    """One model's patching results on its prompt pairs `p` (JSON-able)."""
    clean, corrupted, answer, distractor = p["clean"], p["corrupted"], p["answer"], p["distractor"]
    with torch.no_grad():
        clean_logits, cache = model.run_with_cache(clean, names_filter=lambda n: n.endswith("attn.hook_pattern"))
        corrupted_logits = model(corrupted)
    accuracy = float((clean_logits[:, -1].argmax(-1) == answer).float().mean())  # top-1: the right last name
    metric = normalized_logit_diff(answer, distractor, clean_logits, corrupted_logits)
    n_layers, name_pos = model.cfg.n_layers, p["name_pos"]
    resid = torch.cat([
        patch_activation(model, clean, corrupted, metric, "resid_pre", layers=[0], progress=False),
        patch_activation(model, clean, corrupted, metric, "resid_post", progress=False),
    ])  # [1 + layer, pos]  # fmt: skip
    heads = patch_head_out_all_pos(model, clean, corrupted, metric, progress=False)  # [layer, head]
    joint = float(patch_activation(model, clean, corrupted, metric, "attn_out", by_pos=False,
                                   layers=[n_layers - 1], progress=False)[0])  # fmt: skip  # the last layer's heads
    heads_by_pos = patch_head_out_by_pos(model, clean, corrupted, metric, progress=False)  # [layer, pos, head]
    # How much attention the layers before the last pay, from the final position, to the last names (all
    # people's): what a head moving candidates (not the looked-up answer) to the final position would show.
    to_last_names = [
        cache[f"blocks.{l}.attn.hook_pattern"][:, :, -1, p["last_name_pos"]].sum(-1).mean(0).tolist()  # [head]
        for l in range(n_layers - 1)
    ]
    order = heads.flatten().argsort(descending=True)
    top = [(int(i) // model.cfg.n_heads, int(i) % model.cfg.n_heads, float(heads.flatten()[i])) for i in order[:4]]
    return {
        "source": p["source"],
        "training_steps": p["steps"],
        "n_prompts": len(clean),
        "example": p["example"],
        "labels": [str(t) for t in p["labels"]],
        "clean_logit_diff": float(metric.clean),
        "corrupted_logit_diff": float(metric.corrupted),
        "accuracy": accuracy,
        "name_pos": name_pos,
        "last_name_pos": p["last_name_pos"],
        "name_pos_restore": float(resid[-2, name_pos]) if name_pos is not None else float("nan"),  # resid_pre last
        "final_pos_restore": float(resid[-2, -1]),
        "last_layer_heads_restore": joint,
        "best_head_restore": top[0][2],
        "early_attention_final_to_last_names": to_last_names,  # [layer < last][head]
        "resid_restore": resid.tolist(),
        "head_restore": heads.tolist(),
        "head_restore_by_pos": heads_by_pos.tolist(),
        "top_heads": [{"head": f"L{l}H{h}", "restore": round(v, 4)} for l, h, v in top],
    }


def run_seed(out_dir: Path, seed: int, quick: bool) -> dict[str, Any]:
    folder = os.environ.get(ENV_MODEL)
    if folder:
        model, p = _natural(folder)
        return {"seed": seed, "arms": {"natural": measure(model, p)}}
    arms = {}
    for arm, (n_heads, steps) in (QUICK_ARMS if quick else ARMS).items():
        phase(f"{NAME}: seed {seed}, arm {arm}")
        model, p = _toy(out_dir, seed, n_heads, steps)
        arms[arm] = measure(model, p)
    return {"seed": seed, "arms": arms}


def _checks(arm: str, rows: list[dict[str, Any]]) -> list[Check]:
    def over(name: str, key: str, op: str, threshold: float, what: str, **kw: Any) -> Check:
        values = [r[key] for r in rows]
        return Check.over_seeds(f"{arm}: {name}", values, op, threshold, MIN_SEED_FRACTION, what, **kw)

    return [
        over("clean_accuracy", "accuracy", ">=", MIN_ACCURACY,
             "top-1 accuracy on the clean prompts: without it there is no copying to locate", precondition=True),
        over("last_layer_input_name_pos_restore", "name_pos_restore", ">=", MIN_NAME_POS_RESTORE,
             "normalised logit difference restored by the residual entering the last layer, at the last name"),
        over("last_layer_input_final_pos_restore", "final_pos_restore", "<=", MAX_FINAL_POS_RESTORE,
             "the same at the final position"),
        over("last_layer_heads_restore", "last_layer_heads_restore", ">=", MIN_LAST_LAYER_HEADS_RESTORE,
             "the last layer's head outputs patched together, at all positions"),
    ]  # fmt: skip


def _spread(values: list[float]) -> str:
    values = sorted(values)
    return f"{values[len(values) // 2]:.2f}" + (f" [{values[0]:.2f}, {values[-1]:.2f}]" if len(values) > 1 else "")


def _explain(arm: str, rows: list[dict[str, Any]], checks: list[Check]) -> str:
    ok = {c.name.split(": ", 1)[1]: c.passed for c in checks}
    best, joint = [r["best_head_restore"] for r in rows], [r["last_layer_heads_restore"] for r in rows]
    name, final = [r["name_pos_restore"] for r in rows], [r["final_pos_restore"] for r in rows]
    text = f"{arm}: the best single head restores {_spread(best)}, the last layer's heads together {_spread(joint)}"
    spread = max(best) < MIN_LAST_LAYER_HEADS_RESTORE <= min(joint)
    text += "; the answer is spread over several heads." if spread else "."
    if not ok["clean_accuracy"]:
        return text + " The task was not learned in this budget, so the claim was not tested."
    if ok["last_layer_input_name_pos_restore"] and ok["last_layer_input_final_pos_restore"]:
        return text + (f" Entering the last layer the answer sits at the last name ({_spread(name)}) and not yet at "
                       f"the final position ({_spread(final)}): the claim holds.")  # fmt: skip
    attn = [max(sum(layer) for layer in r["early_attention_final_to_last_names"]) for r in rows]
    return text + (
        f" Entering the last layer, the final position already carries {_spread(final)} of the answer (the "
        f"last-name position {_spread(name)}). The earlier layers' heads attend from the final position to the "
        f"three last names with a summed weight of {_spread(attn)} (a layer's heads summed): they move the "
        "candidate last names there by position, before the lookup, so part of the clean name arrives early. A "
        "finding about this model (spare heads in layer 0), not a metric artefact: the patch is the whole "
        "residual stream at one position."
    )


def combine(out_dir: Path, per_seed: list[dict[str, Any]], quick: bool) -> StudyResult:
    arm_names = list(per_seed[0]["arms"])
    checks, texts, page = [], [], Page(NAME)
    for arm in arm_names:
        rows = [s["arms"][arm] for s in per_seed]
        arm_checks = _checks(arm, rows)
        checks += arm_checks
        texts.append(_explain(arm, rows, arm_checks))
        _figures(page, arm, rows[0])
    held = {arm: all(c.passed for c in checks if c.name.startswith(f"{arm}: ")) for arm in arm_names}
    if len(arm_names) > 1 and len(set(held.values())) > 1:
        yes, no = (", ".join(a for a in arm_names if held[a] is v) for v in (True, False))
        texts.append(f"The claim holds in the {yes} model and not in the {no} one.")
    steps = {arm: per_seed[0]["arms"][arm]["training_steps"] for arm in arm_names}
    measurements = {"per_seed": per_seed, "steps": steps}
    return StudyResult(checks, measurements, page, " ".join(texts))


def _figures(page: Page, arm: str, m: dict[str, Any]) -> None:
    page.heading(f"{arm} (seed 0)")
    page.text(
        f"Model: {m['source']}. Example clean prompt: {m['example']!r}. Clean logit difference "
        f"{m['clean_logit_diff']:.2f}, corrupted {m['corrupted_logit_diff']:.2f}; clean accuracy {m['accuracy']:.0%}."
    )
    labels = [f"{i}:{t}" for i, t in enumerate(m["labels"])]
    resid, heads = torch.tensor(m["resid_restore"]), torch.tensor(m["head_restore"])
    n_layers, n_heads = heads.shape
    rows = ["resid_pre 0", *(f"resid_post {l}" for l in range(n_layers))]
    title = "Residual stream patching (1 = clean behaviour restored)"
    page.figure(heatmap(resid, title, labels, rows, "position", "", zmid=0.0))
    page.figure(heatmap(heads, "Head output patching, all positions", [f"H{h}" for h in range(n_heads)],
                        [f"L{l}" for l in range(n_layers)], "head", "layer", zmid=0.0))  # fmt: skip
    by_pos = torch.tensor(m["head_restore_by_pos"]).permute(0, 2, 1).flatten(0, 1)  # [layer * head, pos]
    head_labels = [f"L{l}H{h}" for l in range(n_layers) for h in range(n_heads)]
    page.figure(heatmap(by_pos, "Head output patching by position", labels, head_labels, "position", "", zmid=0.0))
    page.heading("Heads that carry the answer").table(m["top_heads"])


register(
    Study(
        NAME,
        CLAIM,
        default_seeds=3,
        quick_seeds=1,
        source=SOURCE,
        run_seed=run_seed,
        combine=combine,
        measured_s=(50, 1003),  # full: measured with 2-3 other jobs on the 2 cores
    )
)
