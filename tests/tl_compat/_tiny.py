"""A tiny pretrained-style GPT-2 with a tokenizer, made offline, for TransformerLens-style programs on text."""

from __future__ import annotations

from pathlib import Path

from ..tiny_hf import save_tiny_gpt2

CORPUS = [
    "When Mary and John went to the store, John gave a drink to Mary.",
    "The cat sat on the mat and the dog sat on the log.",
    "Her name was Alex Hart. Tomorrow at lunch time Alex Hart came back.",
] * 8


def tiny_gpt2_folder(folder: Path) -> Path:
    """Save the tiny GPT-2 (2 layers, d_model 32, random weights, seed 0) and its BPE tokenizer in `folder`."""
    return save_tiny_gpt2(folder, CORPUS, vocab_size=1000, min_frequency=1, n_positions=64)
