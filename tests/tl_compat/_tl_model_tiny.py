"""A tiny GPT-2 folder with its own BPE tokenizer (pad = BOS = EOS = id 0), for the tl-model compat programs."""

from __future__ import annotations

from pathlib import Path

from ..tiny_hf import save_tiny_gpt2

CORPUS = ["the cat sat on the mat", "a dog sat on a log and the cat ran", "Mr Hart gave a drink to Mrs Hart"] * 20


def tiny_folder(folder: Path) -> Path:
    return save_tiny_gpt2(folder, CORPUS, special="<|endoftext|>", n_positions=40)
