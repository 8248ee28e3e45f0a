"""Training a language model on the corpus with the ordinary trainer, and the evidence that it is one.

`prepare_text_model` freezes the unembedding bias at zero (GPT-2 has none, so the model stays exportable);
`heldout_metrics` adds the held-out loss and in-context-learning score to every evaluation in
metrics.jsonl; `finish_text_run` exports `final/` as a Hugging Face GPT-2 folder (`hf/`, with the
tokenizer) and writes `lm_report.json`: held-out loss vs unigram / bigram baselines, the ICL score and
sample generations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..files import atomic_write_text
from ..model import HookedTransformer
from .baselines import bigram_loss, icl_score, lm_loss, unigram_icl, unigram_loss
from .export import export_gpt2
from .task import TextTask

PROMPTS = ("ROMEO.", "To be, or not to be", "  KING. My lord,", "Enter HAMLET")


def prepare_text_model(model: HookedTransformer) -> HookedTransformer:
    """Zero and freeze b_U: GPT-2's lm_head has no bias, so the trained model exports exactly."""
    with torch.no_grad():
        model.unembed.b_U.zero_()
    model.unembed.b_U.requires_grad_(False)
    return model


def heldout_metrics(task: TextTask, max_windows: int = 128) -> dict[str, Any]:
    """A trainer metric: {"heldout.loss", "heldout.icl"} on fixed consecutive held-out windows."""
    batch = task.tiled("heldout", max_windows)

    def record(model: torch.nn.Module) -> dict[str, float]:
        result = lm_loss(model, batch)
        early = min(50, task.length // 4)
        return {"loss": result.loss, "icl": icl_score(result.per_position, early=early)}

    return {"heldout": record}


def baselines(task: TextTask) -> dict[str, float]:
    train, heldout = task.stream("train"), task.stream("heldout")
    bigram, weight = bigram_loss(train, heldout, task.vocab_size)
    return {"unigram": unigram_loss(train, heldout, task.vocab_size), "bigram": bigram, "bigram_weight": weight}


def lm_report(
    model: HookedTransformer, task: TextTask, max_windows: int | None = None, n_samples: int = 40, seed: int = 0
) -> dict[str, Any]:
    """Held-out loss per token (all consecutive held-out windows), baselines, ICL score, and samples
    (when the model has a tokenizer)."""
    windows = task.tiled("heldout", max_windows)
    result = lm_loss(model, windows)
    early = min(50, task.length // 4)
    report: dict[str, Any] = {
        "heldout_loss": result.loss,
        **{f"{k}_loss" if k != "bigram_weight" else k: v for k, v in baselines(task).items()},
        "icl_score": icl_score(result.per_position, early=early),
        "icl_unigram_baseline": unigram_icl(task.stream("train"), windows, task.vocab_size, early),
        "icl_positions": {"early": early, "late": "last 11 scored positions"},
        "loss_per_position": result.per_position,
    }
    if model.tokenizer is not None and n_samples:
        report["samples"] = {
            p: model.generate(p, max_new_tokens=n_samples, temperature=0.8, top_k=50, seed=seed) for p in PROMPTS
        }
    return report


def finish_text_run(model: HookedTransformer, task: TextTask, run_dir: str | Path) -> dict[str, Any]:
    """Export `run_dir/hf` (GPT-2 layout + tokenizer), reload it as a pretrained model, write lm_report.json."""
    run_dir = Path(run_dir)
    hf_dir = export_gpt2(model, run_dir / "hf", tokenizer_dir=task.tokenizer_dir)
    loaded = HookedTransformer.from_pretrained(hf_dir)
    report = lm_report(loaded, task)
    atomic_write_text(run_dir / "lm_report.json", json.dumps(report, indent=2) + "\n")
    return report


def summary(report: dict[str, Any]) -> str:
    lines = [
        f"held-out loss {report['heldout_loss']:.3f} nats/token; unigram {report['unigram_loss']:.3f}, "
        f"bigram {report['bigram_loss']:.3f}; ICL score {report['icl_score']:+.3f} nats (late - early)"
    ]
    for prompt, text in report.get("samples", {}).items():
        lines.append(f"  {prompt!r} -> {text!r}")
    return "\n".join(lines)


QUICK_TASK = dict(vocab_size=512, length=64, max_chars=300_000)
QUICK_MODEL = dict(n_layers=2, n_heads=4, d_model=64, act_fn="gelu_new", normalization_type="LN", seed=0)


def train_text_run(
    run_dir: str | Path,
    task: TextTask,
    model: dict[str, Any],
    training: dict[str, Any],
    progress: bool = False,
) -> tuple[HookedTransformer, dict[str, Any]]:
    """Train a language model on `task` into `run_dir` (checkpoints, metrics with held-out loss and ICL
    score), export `hf/` and write `lm_report.json`. Returns the exported model (loaded back) and the report."""
    from ..training import TrainingConfig, train

    run_dir = Path(run_dir)
    net = prepare_text_model(HookedTransformer(task.model_config(**model)))
    result = train(net, task, TrainingConfig(**training), out_dir=run_dir, metrics=heldout_metrics(task),
                   progress=progress)  # fmt: skip
    report = finish_text_run(result.model, task, run_dir)
    return HookedTransformer.from_pretrained(run_dir / "hf"), report


_QUICK_RUNS: dict[tuple[int, int], Path] = {}


def train_text_preset(run_dir: str | Path, preset: str = "tiny-lm", progress: bool = False) -> dict[str, Any]:
    """Train a text preset into `run_dir` as `circuitlab train text --preset PRESET --out RUN_DIR` does (held-out
    metrics at every evaluation, then `hf/` and `lm_report.json`); returns the report."""
    from ..training import from_preset, train

    task, model_cfg, train_cfg = from_preset(preset)
    net = prepare_text_model(HookedTransformer(model_cfg))
    result = train(net, task, train_cfg, out_dir=run_dir, metrics=heldout_metrics(task), progress=progress)
    if result.interrupted:
        raise KeyboardInterrupt(f"training {preset} into {run_dir} was interrupted; rerun to resume")
    return finish_text_run(result.model, task, run_dir)


def quick_text_run(steps: int = 120, seed: int = 0) -> Path:
    """A small model trained on a 300k-character slice (vocabulary 512, windows of 64; 120 steps in 5 s on one
    thread here, measured), for quick modes and tests: trained once per process into a temporary folder
    (removed at exit) and shared."""
    key = (steps, seed)
    if key not in _QUICK_RUNS or not (_QUICK_RUNS[key] / "lm_report.json").is_file():
        import atexit
        import shutil
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="circuitlab-quick-lm-"))
        atexit.register(shutil.rmtree, root, True)
        task = TextTask(**QUICK_TASK)
        training = dict(steps=steps, lr=3e-3, warmup_steps=10, batch_size=16, eval_every=max(1, steps // 3),
                        eval_batches=1, n_log_checkpoints=6, seed=seed)  # fmt: skip
        train_text_run(root / "run", task, {**QUICK_MODEL, "seed": seed}, training)
        _QUICK_RUNS[key] = root / "run"
    return _QUICK_RUNS[key]
