"""What the model predicts: per position (token, top-k predictions, the correct next token's rank), and
TransformerLens's `test_prompt` (how a prompt's answer ranks, printed and as a figure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ._common import go, layout


def str_tokens(model: Any, tokens: Sequence[int] | torch.Tensor) -> list[str]:
    """Each token id as a string: the tokenizer's text when the model has one, else the id itself."""
    ids = [int(t) for t in torch.as_tensor(tokens).reshape(-1)]
    if getattr(model, "tokenizer", None) is not None:
        return model.to_str_tokens(torch.tensor(ids))
    return [str(i) for i in ids]


@dataclass
class PositionPrediction:
    """The model's output at one position: its `top` (token, probability) pairs, and where the actual
    next token ranks (0 = top prediction; None at the last position)."""

    position: int
    token: str
    next_token: str | None
    rank: int | None
    prob: float | None  # of the next token
    logit: float | None
    top: list[tuple[str, float]] = field(default_factory=list)


def _ranks(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Rank of ids[i] among logits[i] [n, vocab]: how many tokens score strictly higher."""
    return (logits > logits.gather(-1, ids[:, None])).sum(-1)


@torch.no_grad()
def token_predictions(model: Any, tokens: Any, top_k: int = 5) -> list[PositionPrediction]:
    """For one sequence (token ids [pos] / [1, pos], or text with a tokenizer): each position's top-k
    predictions and the rank / probability of the token that actually comes next."""
    if isinstance(tokens, str):
        tokens = model.to_tokens(tokens)
    tokens = model._check_tokens(torch.as_tensor(tokens))
    if tokens.shape[0] != 1:
        raise ValueError(f"token_predictions takes one sequence, got a batch of {tokens.shape[0]}")
    logits = model(tokens)[0].float()  # [pos, vocab]
    probs = logits.softmax(-1)
    top_p, top_i = probs.topk(min(top_k, probs.shape[-1]), dim=-1)  # [pos, k]
    nxt = tokens[0, 1:]
    ranks = _ranks(logits[:-1], nxt).tolist()
    next_p = probs[:-1].gather(-1, nxt[:, None])[:, 0].tolist()
    next_logit = logits[:-1].gather(-1, nxt[:, None])[:, 0].tolist()
    words = str_tokens(model, tokens[0])
    vocab_words = {int(i): w for i, w in zip(top_i.flatten().tolist(), str_tokens(model, top_i.flatten()), strict=True)}
    out = []
    for p, word in enumerate(words):
        has_next = p + 1 < len(words)
        top = [(vocab_words[int(i)], round(float(q), 6)) for i, q in zip(top_i[p].tolist(), top_p[p], strict=True)]
        out.append(
            PositionPrediction(
                p,
                word,
                words[p + 1] if has_next else None,
                ranks[p] if has_next else None,
                next_p[p] if has_next else None,
                next_logit[p] if has_next else None,
                top,
            )
        )
    return out


def predictions_table(predictions: Sequence[PositionPrediction], title: str | None = None) -> Any:
    """A table: position, token, the next token with its rank and probability, and the top-k predictions."""
    k = max((len(p.top) for p in predictions), default=0)
    columns = ["pos", "token", "next", "rank (0 = top)", "p(next)", *(f"top {i + 1}" for i in range(k))]
    cells = [
        [p.position for p in predictions],
        [repr(p.token) for p in predictions],
        [repr(p.next_token) if p.next_token is not None else "" for p in predictions],
        ["" if p.rank is None else p.rank for p in predictions],
        ["" if p.prob is None else f"{p.prob:.3f}" for p in predictions],
        *([f"{p.top[i][0]!r} {p.top[i][1]:.3f}" if i < len(p.top) else "" for p in predictions] for i in range(k)),
    ]
    fill = [["#e6f4ea" if p.rank == 0 else "#fdecea" if p.rank is not None else "white" for p in predictions]]
    fig = go().Figure(
        go().Table(
            header=dict(values=columns, fill_color="#f0f0f0", align="left"),
            cells=dict(values=cells, align="left", fill_color=fill * len(columns)),
        )
    )
    return layout(fig, title, height=min(1200, 120 + 24 * len(predictions)), width=max(700, 160 * (k + 3)))


@dataclass
class PromptTest:
    """`test_prompt`'s result: prompt and answer tokens, and per answer token its rank, logit, probability
    and the top-k tokens (token, logit, probability) at the position that predicts it."""

    prompt_tokens: list[str]
    answer_tokens: list[str]
    ranks: list[int]
    logits: list[float]
    probs: list[float]
    top: list[list[tuple[str, float, float]]]

    def text(self) -> str:
        """The printout, in TransformerLens's format."""
        lines = [f"Tokenized prompt: {self.prompt_tokens}", f"Tokenized answer: {self.answer_tokens}"]
        for i, answer in enumerate(self.answer_tokens):
            lines.append("Performance on answer token:")
            lines.append(
                f"Rank: {self.ranks[i]: <8} Logit: {self.logits[i]:5.2f} Prob: {self.probs[i]:6.2%} Token: |{answer}|"
            )
            for j, (word, logit, prob) in enumerate(self.top[i]):
                lines.append(f"Top {j}th token. Logit: {logit:5.2f} Prob: {prob:6.2%} Token: |{word}|")
        pairs = list(zip(self.answer_tokens, self.ranks, strict=True))
        lines.append(f"Ranks of the answer tokens: {pairs}")
        return "\n".join(lines)

    def figure(self, title: str | None = None) -> Any:
        """The top-k tokens at each answer position as a table, the answer highlighted."""
        columns, cells, fills = ["rank (0 = top)"], [list(range(max(len(t) for t in self.top)))], []
        for i, answer in enumerate(self.answer_tokens):
            columns.append(f"predicting {answer!r} (rank {self.ranks[i]}, p={self.probs[i]:.3f})")
            cells.append([f"{w!r}  logit {lg:.2f}  p {p:.3f}" for w, lg, p in self.top[i]])
            fills.append(["#e6f4ea" if w == answer else "white" for w, _, _ in self.top[i]])
        fig = go().Figure(
            go().Table(
                columnwidth=[1] + [3] * len(self.answer_tokens),
                header=dict(values=columns, fill_color="#f0f0f0", align="left"),
                cells=dict(values=cells, align="left", fill_color=[["white"] * len(cells[0]), *fills]),
            )
        )
        return layout(
            fig,
            title or "test_prompt: " + "".join(self.prompt_tokens)[:80],
            height=140 + 26 * len(cells[0]),
            width=max(500, 300 * len(columns)),
        )


@torch.no_grad()
def test_prompt(
    model: Any,
    prompt: str | Sequence[int] | torch.Tensor,
    answer: str | int | Sequence[int],
    top_k: int = 10,
    prepend_bos: bool | None = None,
    print_details: bool = True,
    return_result: bool = False,
) -> PromptTest | None:
    """TransformerLens's `utils.test_prompt`: run prompt + answer and print, for each answer token, its
    rank, logit and probability and the top-k tokens where it is predicted. Text needs a tokenizer;
    a toy model takes token ids for the prompt and the answer. Returns None, as TransformerLens does,
    unless `return_result=True` (then the `PromptTest`, with `.figure()`)."""
    if isinstance(prompt, str):
        prompt_ids = model.to_tokens(prompt, prepend_bos=prepend_bos)[0].cpu()
    else:
        prompt_ids = torch.as_tensor(prompt).reshape(-1).long()
    if isinstance(answer, str):
        answer_ids = model.to_tokens(answer, prepend_bos=False)[0].cpu()
    else:
        answer_ids = torch.as_tensor(answer).reshape(-1).long()
    if len(prompt_ids) == 0 or len(answer_ids) == 0:
        raise ValueError("test_prompt needs a non-empty prompt and answer")
    tokens = torch.cat([prompt_ids, answer_ids])
    logits = model(model._check_tokens(tokens[None]))[0].float()  # [pos, vocab]
    at = logits[len(prompt_ids) - 1 : -1]  # [answer token, vocab]: the positions predicting each answer token
    probs = at.softmax(-1)
    ans = answer_ids.to(at.device)
    ranks = _ranks(at, ans).tolist()
    top_l, top_i = at.topk(min(top_k, at.shape[-1]), dim=-1)
    top = []
    for row in range(len(answer_ids)):
        words = str_tokens(model, top_i[row])
        top.append(
            [
                (w, float(lg), float(probs[row, i]))
                for w, lg, i in zip(words, top_l[row].tolist(), top_i[row].tolist(), strict=True)
            ]
        )
    result = PromptTest(
        str_tokens(model, prompt_ids),
        str_tokens(model, answer_ids),
        ranks,
        at.gather(-1, ans[:, None])[:, 0].tolist(),
        probs.gather(-1, ans[:, None])[:, 0].tolist(),
        top,
    )
    if print_details:
        print(result.text())
    return result if return_result else None


test_prompt.__test__ = False  # a library function named test_*: not a pytest test when imported into one
