"""Figures: interactive Plotly (offline: plotly.js comes from the installed package, inlined once by
`Page`) and static PNG through matplotlib (`save_png`). One module per family of figures; every name
is imported on first use, so `import circuitlab.viz` loads neither plotly nor torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DIVERGING": "_common",
    "SEQUENTIAL": "_common",
    "pos_label": "_common",
    "Page": "page",
    "attention_pattern": "attention",
    "attention_grid": "attention",
    "attention_heads": "interactive",
    "token_values": "interactive",
    "token_losses": "interactive",
    "TokenView": "interactive",
    "patterns_from_cache": "attention",
    "token_predictions": "predictions",
    "predictions_table": "predictions",
    "test_prompt": "predictions",
    "PromptTest": "predictions",
    "PositionPrediction": "predictions",
    "str_tokens": "predictions",
    "layer_pos_heatmap": "patching",
    "layer_head_heatmap": "patching",
    "normalise_effect": "patching",
    "head_score_matrix": "scores",
    "head_scores_grid": "scores",
    "composition_matrix": "scores",
    "composition_zmax": "scores",
    "circuit_matrix": "scores",
    "read_metrics": "training",
    "head_score_names": "training",
    "loss_curves": "training",
    "head_trajectories": "training",
    "loss_per_position": "training",
    "logit_lens_table": "lens",
    "logit_lens_heatmap": "lens",
    "lens_log_probs": "lens",
    "circuit_graph": "circuit",
    "save_png": "static",
    "render": "static",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
