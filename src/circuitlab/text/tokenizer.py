"""A byte-level BPE tokenizer trained on the corpus with `tokenizers`, saved in Hugging Face format.

The folder holds `tokenizer.json`, `tokenizer_config.json` and the GPT-2 style `vocab.json` + `merges.txt`,
so `transformers.AutoTokenizer.from_pretrained(folder)` and `HookedTransformer.from_pretrained` find it.
`<|endoftext|>` is id 0 and serves as BOS, EOS and padding (as in GPT-2), so the head-score probes'
BOS id 0 is the model's real BOS.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

EOS = "<|endoftext|>"
EOS_ID = 0


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096) -> Any:
    """Train a byte-level BPE (GPT-2 pre-tokenisation, all 256 bytes in the alphabet): a `GPT2TokenizerFast`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2TokenizerFast

    if not isinstance(vocab_size, int) or vocab_size < 257 + 1:
        raise ValueError(f"vocab_size={vocab_size!r} is invalid: expected an integer > 257 (256 bytes + {EOS})")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    if tok.token_to_id(EOS) != EOS_ID:
        raise RuntimeError(f"{EOS} should be id {EOS_ID}, got {tok.token_to_id(EOS)}")
    return GPT2TokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=EOS)


def save_tokenizer(tokenizer: Any, folder: str | Path) -> Path:
    """Write the Hugging Face files (tokenizer.json, tokenizer_config.json, vocab.json, merges.txt) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
    tokenizer.backend_tokenizer.model.save(str(folder))  # GPT-2 style vocab.json + merges.txt
    return folder


def load_tokenizer(folder: str | Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def atomic_dir(target: Path, fill: Callable[[Path], object]) -> Path:
    """Build a folder in a temporary sibling, then move it into place: never half-written. An existing folder
    is swapped out in one step where the system can (Linux's renameat2 RENAME_EXCHANGE), so a kill at any
    moment leaves the old folder or the new one under `target`, never none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)
        if target.exists() and _exchange(tmp, target):
            return target  # `tmp` now holds the old folder: removed below
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (renameat2 with RENAME_EXCHANGE); False where the system has no such call."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def corpus_tokenizer(vocab_size: int = 4096, max_chars: int | None = None, root: str | Path | None = None) -> Path:
    """Folder of the tokenizer trained on the corpus's training split (trained once, then cached beside it)."""
    from .corpus import corpus_path, read_texts

    folder = corpus_path(root).parent / "tokenizers" / f"bpe-{vocab_size}-{max_chars or 'all'}"
    if not (folder / "tokenizer.json").is_file():
        tok = train_tokenizer(read_texts("train", max_chars, root), vocab_size)
        atomic_dir(folder, lambda tmp: save_tokenizer(tok, tmp))
    return folder
