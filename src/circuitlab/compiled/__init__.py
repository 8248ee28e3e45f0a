"""Transformers with hand-set weights whose circuits are known by construction (ground truth for circuit
discovery): `Builder` sets attention and OV maps by intent; `models` holds the ready-made ones."""

from .builder import Builder
from .models import KNOWN, copy_position, duplicate_token, gated_mlp, induction, known_circuits

__all__ = ["KNOWN", "Builder", "copy_position", "duplicate_token", "gated_mlp", "induction", "known_circuits"]
