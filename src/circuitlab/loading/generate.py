"""`model.generate`: greedy or sampled continuation (TransformerLens 2.x's signature).

With `use_past_kv_cache` (the default, as in TransformerLens) the prompt runs once and each step runs only
the new token against a `HookedTransformerKeyValueCache`; without it each step re-runs the whole sequence.
Both give the same tokens (benchmarks/generate.py measures the speed-up).
"""

from __future__ import annotations

from typing import Any

import torch

from ..model.kv_cache import HookedTransformerKeyValueCache
from ..model.masks import get_attention_mask


def sample_logits(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    freq_penalty: float = 0.0,
    tokens: torch.Tensor | None = None,
) -> torch.Tensor:
    """One token id per row of logits [batch, vocab]; temperature 0 is greedy.

    freq_penalty subtracts freq_penalty * (count of the token in `tokens` [batch, pos]) from each logit."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if freq_penalty > 0:
        if tokens is None:
            raise ValueError("freq_penalty needs the tokens so far (tokens=[batch, pos])")
        counts = torch.zeros_like(logits).scatter_add_(-1, tokens, torch.ones_like(tokens, dtype=logits.dtype))
        logits = logits - freq_penalty * counts
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # mass before this token already exceeds top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model: Any,
    input: str | list[str] | torch.Tensor = "",
    max_new_tokens: int = 10,
    stop_at_eos: bool = True,
    eos_token_id: int | list[int] | None = None,
    do_sample: bool = True,
    top_k: int | None = None,
    top_p: float | None = None,
    temperature: float = 1.0,
    freq_penalty: float = 0.0,
    use_past_kv_cache: bool = True,
    prepend_bos: bool | None = None,
    padding_side: str | None = None,
    return_type: str = "input",
    verbose: bool = False,
    seed: int | None = None,
) -> str | list[str] | torch.Tensor:
    """Continue `input` (text, a list of texts, or token ids [batch, pos]) by up to `max_new_tokens`.

    `do_sample=False` (or temperature 0) is greedy; otherwise sampling with `temperature`, `top_k`,
    `top_p`, `freq_penalty`, reproducible with `seed`. A sequence that produced EOS is padded with EOS after
    it, and generation stops once every sequence has (with `stop_at_eos`) or the context `n_ctx` is full.
    A left-padded token batch (`padding_side="left"`) is masked as in the forward pass.
    return_type: "input" (same kind as the input), "str" or "tokens". `verbose` is accepted for
    TransformerLens code and ignored (no progress bar).
    """
    if return_type not in ("input", "str", "tokens"):
        raise ValueError(f"return_type={return_type!r} is invalid: expected 'input', 'str' or 'tokens'")
    options = dict(
        max_new_tokens=max_new_tokens,
        stop_at_eos=stop_at_eos,
        eos_token_id=eos_token_id,
        do_sample=do_sample,
        top_k=top_k,
        top_p=top_p,
        temperature=temperature,
        freq_penalty=freq_penalty,
        use_past_kv_cache=use_past_kv_cache,
        prepend_bos=prepend_bos,
        padding_side=padding_side,
        return_type=return_type,
        seed=seed,
    )
    if isinstance(input, list):  # texts of different lengths: one at a time, no padding inside a prompt
        return [generate(model, text, **options) for text in input]
    from_text = isinstance(input, str)
    prepend = model.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
    tokens = model.to_tokens(input, prepend_bos=prepend) if from_text else torch.as_tensor(input, device=model.device)
    tokens = tokens[None] if tokens.ndim == 1 else tokens
    if eos_token_id is None and model.tokenizer is not None:
        eos_token_id = model.tokenizer.eos_token_id
    eos = torch.as_tensor([] if eos_token_id is None else eos_token_id, device=tokens.device).reshape(-1)
    stop = stop_at_eos and eos.numel() > 0
    generator = torch.Generator(device=tokens.device).manual_seed(seed) if seed is not None else None
    finished = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    side = padding_side or getattr(model.tokenizer, "padding_side", "right")
    # The prompt's padding (left padding only); generated tokens are always real, even when they equal pad.
    prompt_mask = get_attention_mask(model.tokenizer, tokens, prepend, padding_side="left") if side == "left" else None
    cache = (
        HookedTransformerKeyValueCache.init_cache(model.cfg, model.device, tokens.shape[0])
        if use_past_kv_cache
        else None
    )
    new = tokens
    for _ in range(max_new_tokens):
        if tokens.shape[1] >= model.cfg.n_ctx:
            break
        if cache is None:
            mask = None if prompt_mask is None else _extend_mask(prompt_mask, tokens.shape[1])
        else:
            mask = prompt_mask if new is tokens and prompt_mask is not None else torch.ones_like(new)
        logits = model(new, attention_mask=mask, past_kv_cache=cache)[:, -1, :].float()  # [batch, vocab]
        if do_sample:
            next_tokens = sample_logits(
                logits,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                generator=generator,
                freq_penalty=freq_penalty,
                tokens=tokens,
            )
        else:
            next_tokens = logits.argmax(-1)
        if stop:
            next_tokens = torch.where(finished, eos[0], next_tokens)
            finished |= torch.isin(next_tokens, eos)
        tokens = torch.cat([tokens, next_tokens[:, None]], dim=1)
        new = tokens if cache is None else next_tokens[:, None]
        if stop and finished.all():
            break
    if return_type == "tokens" or (return_type == "input" and not from_text):
        return tokens
    # As TransformerLens: special tokens (the BOS, EOS padding after a finished sequence) are left out of the
    # text, and one sequence gives a string, several a list.
    special = set(getattr(model.tokenizer, "all_special_ids", None) or [])
    texts = [model.to_string([t for t in row.tolist() if t not in special]) for row in tokens]
    return texts[0] if len(texts) == 1 else texts


def _extend_mask(prompt_mask: torch.Tensor, n_pos: int) -> torch.Tensor:
    """The prompt's mask [batch, prompt] followed by ones up to n_pos positions (the generated tokens)."""
    extra = n_pos - prompt_mask.shape[1]
    return torch.cat([prompt_mask, prompt_mask.new_ones(prompt_mask.shape[0], extra)], dim=1)
