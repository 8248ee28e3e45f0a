"""`circuitlab.head_detector`: TransformerLens's module name for `circuitlab.analysis.head_detector`."""

from .analysis.head_detector import (
    HEAD_NAMES,
    ErrorMeasure,
    HeadName,
    LayerHeadTuple,
    LayerToHead,
    compute_head_attention_similarity_score,
    detect_head,
    get_duplicate_token_head_detection_pattern,
    get_induction_head_detection_pattern,
    get_previous_token_head_detection_pattern,
    get_supported_heads,
)
from .utils import is_lower_triangular, is_square  # TL's head_detector module has them too

__all__ = [
    "HEAD_NAMES",
    "ErrorMeasure",
    "HeadName",
    "LayerHeadTuple",
    "LayerToHead",
    "compute_head_attention_similarity_score",
    "detect_head",
    "get_duplicate_token_head_detection_pattern",
    "get_induction_head_detection_pattern",
    "get_previous_token_head_detection_pattern",
    "get_supported_heads",
    "is_lower_triangular",
    "is_square",
]
