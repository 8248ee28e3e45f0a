"""The supported Hugging Face families, each a declarative `Architecture` table."""

from __future__ import annotations

from typing import Any

from .base import Architecture, Weight
from .gpt2 import GPT2
from .llama import LLAMA
from .neo import GPT_NEO
from .neox import GPT_NEOX

ARCHITECTURES: tuple[Architecture, ...] = (GPT2, GPT_NEO, GPT_NEOX, LLAMA)
SUPPORTED = [name for arch in ARCHITECTURES for name in arch.hf_classes]


def find_architecture(config: dict[str, Any]) -> Architecture:
    """The family of a Hugging Face config (its `architectures` list, else its `model_type`)."""
    classes = config.get("architectures") or []
    for arch in ARCHITECTURES:
        if any(c in arch.hf_classes for c in classes):
            return arch
    if not classes:
        for arch in ARCHITECTURES:
            if config.get("model_type") in arch.model_types:
                return arch
    found = classes or config.get("model_type")
    raise ValueError(f"unsupported architecture {found!r}; supported: {SUPPORTED}")


__all__ = ["ARCHITECTURES", "SUPPORTED", "Architecture", "Weight", "find_architecture"]
