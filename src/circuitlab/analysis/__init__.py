"""Analysis: head roles with baselines, circuits from the weights, ablation, attribution, patching."""

from .ablation import ablation_hooks, head_ablation_effects, run_with_ablation
from .census import THRESHOLDS, HeadCensus, HeadRow, head_census
from .circuits import (
    all_composition_scores,
    composition_baseline,
    composition_scores,
    full_ov_circuit,
    full_qk_circuit,
    positional_qk_circuit,
    positional_structure,
)
from .heads import HeadScores, attention_scores, copying_scores, head_scores, make_probes, register_head_scores

__all__ = [
    "THRESHOLDS",
    "HeadCensus",
    "HeadRow",
    "HeadScores",
    "ablation_hooks",
    "all_composition_scores",
    "attention_scores",
    "composition_baseline",
    "composition_scores",
    "copying_scores",
    "full_ov_circuit",
    "full_qk_circuit",
    "head_ablation_effects",
    "head_census",
    "head_scores",
    "make_probes",
    "positional_qk_circuit",
    "positional_structure",
    "register_head_scores",
    "run_with_ablation",
]
