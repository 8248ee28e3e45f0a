"""What every task shares: a `Batch` of tokens, targets, loss mask and metadata, and the `Task` base.

A task scores predictions made *at* positions: `targets[b, p]` is what the model should output at
position p (for language-model tasks the next token, tokens[b, p + 1]) and `loss_mask[b, p]` says
whether that prediction counts. Tasks whose label is not the next token (most-frequent token,
modular addition, parentheses) use the same form, so one trainer serves them all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F


@dataclass
class Batch:
    tokens: torch.Tensor  # [batch, pos] int64 model input
    targets: torch.Tensor  # [batch, pos] int64 wanted output at each position (0 where unscored)
    loss_mask: torch.Tensor  # [batch, pos] bool: which predictions are scored
    metadata: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: str | torch.device) -> Batch:
        return Batch(
            self.tokens.to(device),
            self.targets.to(device),
            self.loss_mask.to(device),
            {k: v.to(device) for k, v in self.metadata.items()},
        )


def per_position_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Cross-entropy of each prediction [batch, pos]; zero where the mask is off."""
    loss = F.cross_entropy(logits.flatten(0, 1).float(), batch.targets.flatten(), reduction="none")
    return loss.view_as(batch.targets) * batch.loss_mask


def masked_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy over the scored predictions."""
    return per_position_loss(logits, batch).sum() / batch.loss_mask.sum().clamp(min=1)


def lm_targets(tokens: torch.Tensor) -> torch.Tensor:
    """Next-token targets: targets[:, p] = tokens[:, p + 1], and 0 at the last position."""
    return torch.cat([tokens[:, 1:], torch.zeros_like(tokens[:, :1])], dim=1)


def pad_templates(
    rows: list[list[int]], slot_rows: list[list[int]], pad: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokenised templates as one table: ids [template, pos] padded with `pad`, their slot codes padded
    with 0 (no slot), and each template's length [template]."""
    width = max(map(len, rows))
    table = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    slots = torch.tensor([s + [0] * (width - len(s)) for s in slot_rows])
    return table, slots, torch.tensor([len(r) for r in rows])


def distinct_tokens(batch: int, length: int, low: int, high: int, gen: torch.Generator) -> torch.Tensor:
    """[batch, length] tokens from [low, high), all different within a row (a random permutation's prefix)."""
    if high - low < length:
        raise ValueError(f"need at least {length} distinct tokens, but the range [{low}, {high}) has {high - low}")
    return torch.rand(batch, high - low, generator=gen).argsort(dim=1)[:, :length] + low


@dataclass
class Task:
    """Base class: a dataclass of parameters plus `generate(batch_size, seed)`."""

    name: ClassVar[str] = "task"

    @property
    def d_vocab(self) -> int:
        raise NotImplementedError

    @property
    def seq_len(self) -> int:
        raise NotImplementedError

    def generate(self, batch_size: int, seed: int | torch.Generator = 0) -> Batch:
        """A batch drawn from a generator seeded with `seed`: same seed, same batch."""
        gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is invalid: expected a positive integer")
        return self._generate(batch_size, gen)

    def _generate(self, batch_size: int, gen: torch.Generator) -> Batch:
        raise NotImplementedError

    def model_config(self, **overrides: Any) -> Any:
        """A HookedTransformerConfig sized for this task (vocabulary, context); fields overridable."""
        from ..model import HookedTransformerConfig

        kwargs: dict[str, Any] = dict(n_layers=2, d_model=64, n_heads=2, n_ctx=self.seq_len, d_vocab=self.d_vocab)
        kwargs.update(overrides)
        return HookedTransformerConfig(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}

    def _check(self, condition: bool, field_name: str, message: str) -> None:
        if not condition:
            raise ValueError(f"{type(self).__name__}.{field_name}={getattr(self, field_name)!r} is invalid: {message}")
