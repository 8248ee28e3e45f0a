"""Key/value cache for incremental decoding, with TransformerLens 2.x's classes and semantics.

One `HookedTransformerKeyValueCacheEntry` per layer holds the keys and values of every position seen so far,
[batch, pos_so_far, kv_head, d_head] (keys before rotary, as TransformerLens caches them), and the cache holds
the attention mask of those positions. A forward pass given `past_kv_cache` computes only its new positions:
their queries attend to the cached keys and to their own. A frozen cache is read but not extended, so many
continuations can share one prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import HookedTransformerConfig


@dataclass
class HookedTransformerKeyValueCacheEntry:
    past_keys: torch.Tensor  # [batch, pos_so_far, kv_head, d_head]
    past_values: torch.Tensor  # [batch, pos_so_far, kv_head, d_head]
    frozen: bool = False

    @classmethod
    def init_cache_entry(
        cls, cfg: HookedTransformerConfig, device: torch.device | str | None, batch_size: int = 1
    ) -> HookedTransformerKeyValueCacheEntry:
        n_heads = cfg.n_heads if cfg.ungroup_grouped_query_attention else cfg.n_kv_heads
        shape = (batch_size, 0, n_heads, cfg.d_head)
        return cls(
            past_keys=torch.empty(shape, device=device, dtype=cfg.dtype),
            past_values=torch.empty(shape, device=device, dtype=cfg.dtype),
        )

    def append(self, new_keys: torch.Tensor, new_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the cached positions followed by the new ones; stored unless frozen."""
        if new_keys.shape[0] != self.past_keys.shape[0] or new_keys.shape[2:] != self.past_keys.shape[2:]:
            raise ValueError(
                f"new keys {tuple(new_keys.shape)} do not fit the cached keys {tuple(self.past_keys.shape)}: "
                "batch, kv_head and d_head must match (make the cache with the model's config and batch size)"
            )
        keys = torch.cat([self.past_keys, new_keys], dim=1)
        values = torch.cat([self.past_values, new_values], dim=1)
        if not self.frozen:
            self.past_keys, self.past_values = keys, values
        return keys, values


@dataclass
class HookedTransformerKeyValueCache:
    """A list of per-layer entries plus the attention mask [batch, pos_so_far] of the cached positions."""

    entries: list[HookedTransformerKeyValueCacheEntry]
    previous_attention_mask: torch.Tensor  # [batch, pos_so_far]
    frozen: bool = False

    @classmethod
    def init_cache(
        cls, cfg: HookedTransformerConfig, device: torch.device | str | None = None, batch_size: int = 1
    ) -> HookedTransformerKeyValueCache:
        return cls(
            entries=[
                HookedTransformerKeyValueCacheEntry.init_cache_entry(cfg, device, batch_size)
                for _ in range(cfg.n_layers)
            ],
            previous_attention_mask=torch.empty((batch_size, 0), device=device, dtype=torch.int),
        )

    def freeze(self) -> None:
        self.frozen = True
        for entry in self.entries:
            entry.frozen = True

    def unfreeze(self) -> None:
        self.frozen = False
        for entry in self.entries:
            entry.frozen = False

    def append_attention_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """The mask of the cached positions followed by the new ones [batch, pos_so_far + new]; stored unless frozen."""
        attention_mask = attention_mask.to(self.previous_attention_mask.device)
        updated = torch.cat([self.previous_attention_mask, attention_mask], dim=-1)
        if not self.frozen:
            self.previous_attention_mask = updated
        return updated

    @property
    def n_cached(self) -> int:
        """Positions already in the cache (the position offset of the next forward pass)."""
        return self.entries[0].past_keys.shape[1] if self.entries else self.previous_attention_mask.shape[1]

    def __getitem__(self, idx: int) -> HookedTransformerKeyValueCacheEntry:
        return self.entries[idx]

    def __len__(self) -> int:
        return len(self.entries)
