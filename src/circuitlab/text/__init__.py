"""Real English for the natural-language studies: corpus, tokenizer, text task, baselines, GPT-2 export."""

from .baselines import LMLoss, bigram_loss, icl_score, lm_loss, unigram_loss
from .corpus import CorpusMissingError, corpus_path, read_texts
from .task import TextTask
from .tokenizer import EOS, EOS_ID, corpus_tokenizer, load_tokenizer, save_tokenizer, train_tokenizer

__all__ = [
    "EOS",
    "EOS_ID",
    "CorpusMissingError",
    "LMLoss",
    "TextTask",
    "bigram_loss",
    "corpus_path",
    "corpus_tokenizer",
    "icl_score",
    "lm_loss",
    "load_tokenizer",
    "read_texts",
    "save_tokenizer",
    "train_tokenizer",
    "unigram_loss",
]
