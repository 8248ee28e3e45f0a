"""Tokenizer helpers, attached to `HookedTransformer` as methods (TransformerLens names and behaviour).

BOS is prepended by id (`prepend_bos`, default `cfg.default_prepend_bos`), never by the tokenizer's own
special-token rules, so every tokenizer behaves the same way.
"""

from __future__ import annotations

from typing import Any

import torch


def _tokenizer(model: Any) -> Any:
    if model.tokenizer is None:
        raise ValueError(
            "this model has no tokenizer: load one with HookedTransformer.from_pretrained(folder) "
            "or attach one with model.set_tokenizer(tokenizer)"
        )
    return model.tokenizer


def set_tokenizer(model: Any, tokenizer: Any, default_padding_side: str | None = None) -> None:
    """Attach a `transformers` tokenizer; one without a pad token pads with EOS (or BOS).

    default_padding_side ("left" / "right") sets `tokenizer.padding_side`, which `to_tokens` and the
    forward pass use when no padding_side is passed."""
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.bos_token
        if fallback is not None:
            tokenizer.pad_token = fallback
    if default_padding_side is not None:
        if default_padding_side not in ("left", "right"):
            raise ValueError(f"default_padding_side={default_padding_side!r} is invalid: expected 'left' or 'right'")
        tokenizer.padding_side = default_padding_side
    model.tokenizer = tokenizer
    model.cfg.tokenizer_prepends_bos = len(tokenizer.encode("")) > 0  # TransformerLens's test for it


def local_tokenizer(name: str) -> Any:
    """The tokenizer in local folder `name` (a config's tokenizer_name), or None when it is not such a folder.

    Hub names are not fetched: nothing here reaches the network."""
    from pathlib import Path

    from . import load_tokenizer

    folder = Path(name).expanduser()
    return load_tokenizer(folder) if folder.is_dir() else None


def _bos_id(tokenizer: Any) -> int:
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise ValueError(
            "prepend_bos=True but the tokenizer has neither a BOS nor an EOS token; pass prepend_bos=False"
        )
    return bos


def to_tokens(
    model: Any,
    input: str | list[str],
    prepend_bos: bool | None = None,
    padding_side: str | None = None,
    move_to_device: bool = True,
    truncate: bool = True,
) -> torch.Tensor:
    """Token ids [batch, pos]; a list of strings is padded (pad token) on `padding_side`.

    padding_side None uses `model.tokenizer.padding_side` (as TransformerLens). Run a left-padded batch with
    the same `padding_side="left"` (or set the tokenizer's): the model then masks the pads and counts
    positions from each prompt's first real token.
    """
    tok = _tokenizer(model)
    padding_side = padding_side or getattr(tok, "padding_side", "right")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side={padding_side!r} is invalid: expected 'left' or 'right'")
    texts = [input] if isinstance(input, str) else list(input)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("to_tokens takes a string or a list of strings")
    prepend = model.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
    ids = [tok(text, add_special_tokens=False)["input_ids"] for text in texts]
    if prepend:
        bos = _bos_id(tok)
        ids = [[bos, *seq] for seq in ids]
    if truncate:
        ids = [seq[: model.cfg.n_ctx] for seq in ids]
    longest = max(len(seq) for seq in ids)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    rows = [
        [*seq, *[pad] * (longest - len(seq))] if padding_side == "right" else [*[pad] * (longest - len(seq)), *seq]
        for seq in ids
    ]
    tokens = torch.tensor(rows, dtype=torch.long).view(len(rows), longest)
    return tokens.to(model.device) if move_to_device else tokens


def to_string(model: Any, tokens: torch.Tensor | list[int] | int) -> str | list[str]:
    """Text of token ids: [pos] -> a string, [batch, pos] -> a list of strings."""
    tok = _tokenizer(model)
    tokens = torch.as_tensor(tokens)
    if tokens.ndim == 2:
        return [tok.decode(row.tolist(), clean_up_tokenization_spaces=False) for row in tokens]
    return tok.decode(tokens.reshape(-1).tolist(), clean_up_tokenization_spaces=False)


def to_str_tokens(model: Any, input: Any, prepend_bos: bool | None = None) -> list[str] | list[list[str]]:
    """Each token as its own string. Input: text, a list of texts, or token ids [pos] / [1, pos] / list."""
    tok = _tokenizer(model)
    if isinstance(input, list) and input and all(isinstance(t, str) for t in input):
        return [to_str_tokens(model, text, prepend_bos) for text in input]
    if isinstance(input, str):
        tokens = to_tokens(model, input, prepend_bos=prepend_bos, move_to_device=False)[0]
    else:
        tokens = torch.as_tensor(input)
        if tokens.ndim == 2:
            if tokens.shape[0] != 1:
                raise ValueError(f"to_str_tokens takes one sequence, got a batch of {tokens.shape[0]}")
            tokens = tokens[0]
        tokens = tokens.reshape(-1)
    return [tok.decode([int(t)], clean_up_tokenization_spaces=False) for t in tokens]


def to_single_token(model: Any, string: str) -> int:
    """The id of a string that is exactly one token; an error shows the split otherwise."""
    tokens = to_tokens(model, string, prepend_bos=False, move_to_device=False)[0]
    if tokens.numel() != 1:
        pieces = to_str_tokens(model, tokens)
        hint = ""
        if not string.startswith(" "):
            hint = f" (words inside a text usually carry their leading space: try {' ' + string!r})"
        raise ValueError(f"{string!r} is {tokens.numel()} tokens {pieces}, not a single token{hint}")
    return int(tokens[0])


def get_token_position(
    model: Any,
    single_token: str | int,
    input: str | torch.Tensor,
    mode: str = "first",
    prepend_bos: bool | None = None,
) -> int:
    """Position of `single_token` (a one-token string or an id) in `input` (text or ids [pos] / [1, pos])."""
    if mode not in ("first", "last"):
        raise ValueError(f"mode={mode!r} is invalid: expected 'first' or 'last'")
    token = to_single_token(model, single_token) if isinstance(single_token, str) else int(single_token)
    if isinstance(input, str):
        tokens = to_tokens(model, input, prepend_bos=prepend_bos, move_to_device=False)
    else:
        tokens = torch.as_tensor(input)
    if tokens.ndim == 2:
        if tokens.shape[0] != 1:
            raise ValueError(f"get_token_position takes one sequence, got a batch of {tokens.shape[0]}")
        tokens = tokens[0]
    hits = (tokens.cpu() == token).nonzero().flatten()
    if hits.numel() == 0:
        raise ValueError(f"token {token} ({single_token!r}) does not occur in the input")
    return int(hits[0] if mode == "first" else hits[-1])
