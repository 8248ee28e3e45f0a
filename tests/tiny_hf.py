"""A tiny Hugging Face GPT-2 folder with its own tokenizer, made offline for tests that need text prompts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch


def save_tiny_gpt2(
    folder: Path,
    corpus: Sequence[str],
    *,
    special: str = "<eos>",
    vocab_size: int = 300,
    min_frequency: int = 2,
    n_positions: int = 32,
) -> Path:
    """Train a byte-level BPE on `corpus` (`special` is token 0, BOS and EOS) and save it beside a 2-layer
    GPT-2 with random weights (seed 0) in `folder`."""
    import tokenizers
    import transformers as tf

    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        corpus, vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[special], show_progress=False
    )
    tok = tf.PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=special, eos_token=special)
    tok.save_pretrained(folder)
    cfg = tf.GPT2Config(
        n_layer=2, n_embd=32, n_head=4, n_positions=n_positions, vocab_size=len(tok), bos_token_id=0, eos_token_id=0
    )
    torch.manual_seed(0)
    tf.GPT2LMHeadModel(cfg).save_pretrained(folder)
    return folder
