"""`model.generate`: greedy or sampled continuation, for quick sanity checks.

Each step re-runs the whole sequence (no key/value cache): simple and exact, fine for short texts.
"""

from __future__ import annotations

from typing import Any

import torch


def sample_logits(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token id per row of logits [batch, vocab]; temperature 0 is greedy."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
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
    prepend_bos: bool | None = None,
    return_type: str = "input",
    seed: int | None = None,
) -> str | list[str] | torch.Tensor:
    """Continue `input` (text, a list of texts, or token ids [batch, pos]) by up to `max_new_tokens`.

    `do_sample=False` (or temperature 0) is greedy; otherwise sampling with `temperature`, `top_k`,
    `top_p`, reproducible with `seed`. A sequence that produced EOS is padded with EOS after it, and
    generation stops once every sequence has (with `stop_at_eos`) or the context `n_ctx` is full.
    return_type: "input" (same kind as the input), "str" or "tokens".
    """
    if return_type not in ("input", "str", "tokens"):
        raise ValueError(f"return_type={return_type!r} is invalid: expected 'input', 'str' or 'tokens'")
    if isinstance(input, list):  # texts of different lengths: one at a time, no padding inside a prompt
        kwargs = dict(
            max_new_tokens=max_new_tokens,
            stop_at_eos=stop_at_eos,
            eos_token_id=eos_token_id,
            do_sample=do_sample,
            top_k=top_k,
            top_p=top_p,
            temperature=temperature,
            prepend_bos=prepend_bos,
            return_type=return_type,
            seed=seed,
        )
        return [generate(model, text, **kwargs) for text in input]
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
    for _ in range(max_new_tokens):
        if tokens.shape[1] >= model.cfg.n_ctx:
            break
        logits = model(tokens)[:, -1, :].float()  # [batch, vocab]
        if do_sample:
            next_tokens = sample_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
        else:
            next_tokens = logits.argmax(-1)
        if stop:
            next_tokens = torch.where(finished, eos[0], next_tokens)
            finished |= torch.isin(next_tokens, eos)
        tokens = torch.cat([tokens, next_tokens[:, None]], dim=1)
        if stop and finished.all():
            break
    if return_type == "tokens" or (return_type == "input" and not from_text):
        return tokens
    start = 1 if from_text and prepend else 0  # the BOS we added is not part of the text
    texts = model.to_string(tokens[:, start:])
    return texts[0] if from_text else texts
