"""`circuitlab patch MODEL --clean ... --corrupted ... --answer ... --distractor ...`: activation patching
heatmaps (residual stream layer x position, head outputs layer x head) to HTML (and PNG)."""

from __future__ import annotations

import argparse
import json
import re
from functools import partial
from pathlib import Path
from typing import Any

HELP = "activation patching: residual stream and head-output heatmaps"  # the line in `circuitlab --help`


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "patch",
        help=HELP,
        description="Run the clean and corrupted prompts, patch one activation at a time (the residual "
        "stream at each layer and position; each head's output) and record the logit difference "
        "logit[answer] - logit[distractor] at the last position. With a tokenizer, prompts and answers are "
        "text (answers usually need their leading space, e.g. ' Hart'); a model without one takes token ids "
        "(e.g. --clean '0 5 6 7 5 6'). Clean and corrupted prompts must have the same number of tokens.",
    )
    p.add_argument("path", type=Path, metavar="RUN_OR_MODEL", help="run directory, saved model or HF folder")
    p.add_argument("--clean", required=True, help="clean prompt (text, or token ids for a model without tokenizer)")
    p.add_argument("--corrupted", required=True, help="corrupted prompt, same number of tokens")
    p.add_argument("--answer", required=True, help="the clean answer (one token)")
    p.add_argument("--distractor", required=True, help="the corrupted prompt's answer (one token)")
    p.add_argument(
        "--direction",
        choices=["denoise", "noise"],
        default="denoise",
        help="denoise: patch clean activations into the corrupted run (default); noise: the reverse",
    )
    p.add_argument(
        "--method",
        choices=["exact", "attribution"],
        default="exact",
        help="exact: one patched run per cell (default); attribution: the linear estimate from one forward and "
        "one backward pass (attribution patching, fast on large models, approximate)",
    )
    p.add_argument("--no-bos", action="store_true", help="do not prepend BOS to text prompts")
    p.add_argument("--out", type=Path, default=Path("patch"), help="output folder (default ./patch)")
    p.add_argument("--png", action="store_true", help="also write the heatmaps as PNG")
    p.add_argument("--threads", type=int, help="torch CPU threads")


def _ids(text: str, what: str, d_vocab: int) -> list[int]:
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    if not parts or not all(re.fullmatch(r"-?\d+", p) for p in parts):
        raise ValueError(
            f"{what} {text!r} is not a list of token ids: this model has no tokenizer, so give ids such as "
            f"'0 5 6 7' (each in [0, {d_vocab}))"
        )
    ids = [int(p) for p in parts]
    bad = [i for i in ids if not 0 <= i < d_vocab]
    if bad:
        raise ValueError(f"{what} has token ids {bad} outside the vocabulary [0, {d_vocab})")
    return ids


def _one_id(text: str, what: str, d_vocab: int) -> int:
    ids = _ids(text, what, d_vocab)
    if len(ids) != 1:
        raise ValueError(
            f"{what} {text!r} is {len(ids)} tokens: the metric compares the logits of one token each, so give a "
            "single token id"
        )
    return ids[0]


def prompts(model: Any, args: argparse.Namespace) -> tuple[Any, Any, int, int, list[str]]:
    """(clean [1, pos], corrupted [1, pos], answer id, distractor id, clean token strings)."""
    import torch

    from ..viz import str_tokens

    if model.tokenizer is not None:
        bos = False if args.no_bos else None
        clean, corrupted = (
            model.to_tokens(args.clean, prepend_bos=bos),
            model.to_tokens(args.corrupted, prepend_bos=bos),
        )
        answer, distractor = model.to_single_token(args.answer), model.to_single_token(args.distractor)
    else:
        d_vocab = model.cfg.d_vocab
        clean = torch.tensor([_ids(args.clean, "--clean", d_vocab)])
        corrupted = torch.tensor([_ids(args.corrupted, "--corrupted", d_vocab)])
        answer, distractor = (_one_id(text, what, d_vocab) for text, what in
                              ((args.answer, "--answer"), (args.distractor, "--distractor")))  # fmt: skip
    if clean.shape != corrupted.shape:
        raise ValueError(
            f"the clean prompt has {clean.shape[1]} tokens {str_tokens(model, clean)} but the corrupted one has "
            f"{corrupted.shape[1]} {str_tokens(model, corrupted)}: patching swaps activations position by "
            "position, so make them the same length (e.g. swap one name for another single-token name)"
        )
    if answer == distractor:
        raise ValueError("--answer and --distractor are the same token: the logit difference would always be 0")
    return clean, corrupted, answer, distractor, str_tokens(model, clean)


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import viz
    from ..analysis import attribution_patch, logit_diff, patch_head_out_all_pos, patch_resid_post, patch_resid_pre
    from ..runs import load_model_or_run

    if args.threads:
        torch.set_num_threads(args.threads)
    model, _ = load_model_or_run(args.path)
    clean, corrupted, answer, distractor, words = prompts(model, args)
    metric = logit_diff(answer, distractor)
    with torch.no_grad():
        clean_ld, corrupted_ld = (float(metric(model(t))) for t in (clean, corrupted))
    n = model.cfg.n_layers
    if args.method == "attribution":
        sweep = partial(attribution_patch, model, clean, corrupted, metric, direction=args.direction)
        resid = torch.cat([sweep("resid_pre"), sweep("resid_post")[n - 1 :]])
        heads = sweep("z", by_pos=False)
    else:
        kw = dict(direction=args.direction, progress=False)
        resid = torch.cat(
            [
                patch_resid_pre(model, clean, corrupted, metric, **kw),
                patch_resid_post(model, clean, corrupted, metric, layers=[n - 1], **kw),
            ]
        )
        heads = patch_head_out_all_pos(model, clean, corrupted, metric, **kw)
    rows = [f"resid_pre {l}" for l in range(n)] + [f"resid_post {n - 1}"]

    what = (
        "clean activations patched into the corrupted run"
        if args.direction == "denoise"
        else ("corrupted activations patched into the clean run")
    )
    attr = args.method == "attribution"
    ans, dis = viz.str_tokens(model, [answer])[0], viz.str_tokens(model, [distractor])[0]
    name = f"logit[{ans!r}] - logit[{dis!r}]"
    runs = dict(clean=clean_ld, corrupted=corrupted_ld, metric_name="logit diff")
    resid_fig = viz.layer_pos_heatmap(resid, words, title=f"residual stream: {what}", layer_labels=rows, **runs)
    heads_fig = viz.layer_head_heatmap(heads, title=f"head outputs (all positions): {what}", **runs)
    page = viz.Page("activation patching")
    page.text(
        f"Metric: {name} at the last position. Clean run {clean_ld:.3f}, corrupted run {corrupted_ld:.3f}. "
        f"Each cell: the metric with one activation patched ({what})"
        + (", estimated by attribution patching (linear in the activation change)" if attr else "")
        + ", shown as the normalised effect (patched - corrupted) / (clean - corrupted): 0 (white) = the corrupted "
        "run's value, 1 (blue) = the clean run's; the raw logit difference is on hover."
    )
    page.table(
        [
            {"": "clean", "tokens": " | ".join(words)},
            {"": "corrupted", "tokens": " | ".join(viz.str_tokens(model, corrupted))},
        ]
    )
    page.figure(resid_fig).figure(heads_fig)
    out = Path(args.out)
    html = page.save(out / "patch.html")
    from ..files import atomic_write_text

    record = {
        "metric": name,
        "direction": args.direction,
        "method": args.method,
        "clean": clean_ld,
        "corrupted": corrupted_ld,
        "tokens": words,
        "resid_rows": rows,
        "resid": resid.tolist(),
        "heads": heads.tolist(),
        "normalised": "(patched - corrupted) / (clean - corrupted); null when clean == corrupted",
        "resid_normalised": _listed(viz.normalise_effect(resid, clean_ld, corrupted_ld)),
        "heads_normalised": _listed(viz.normalise_effect(heads, clean_ld, corrupted_ld)),
    }
    atomic_write_text(out / "patch.json", json.dumps(record, indent=1))
    print(f"{name}: clean {clean_ld:.3f}, corrupted {corrupted_ld:.3f}")
    print(f"heatmaps written to {html} (values in {out / 'patch.json'})")
    if args.png:
        viz.save_png(resid_fig, out / "resid.png")
        viz.save_png(heads_fig, out / "heads.png")
        print(f"PNG: {out / 'resid.png'}, {out / 'heads.png'}")
    return 0


def _listed(values: Any) -> Any:
    return None if values is None else values.tolist()
