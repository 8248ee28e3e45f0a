"""The main demo: build a small model, run it with a cache, and print what is inside.

Run with `make demo` (or `python -m circuitlab.demo`). It trains nothing yet: it shows the hook points,
the cache, head attention statistics on repeated random tokens (at initialisation they sit at the
uniform-attention baseline), the NumPy twin agreeing with torch, and a save/load round trip.
"""

from __future__ import annotations

import tempfile
import time

import torch

from circuitlab import HookedTransformer, HookedTransformerConfig
from circuitlab.numpy_ref import export_npz, forward, load_npz


def repeated_random_tokens(batch: int, half: int, d_vocab: int, seed: int = 0) -> torch.Tensor:
    """[batch, 1 + 2 * half]: token 0 as BOS, then a random half repeated once."""
    gen = torch.Generator().manual_seed(seed)
    first = torch.randint(1, d_vocab, (batch, half), generator=gen)
    return torch.cat([torch.zeros(batch, 1, dtype=torch.long), first, first], dim=1)


def attention_to_offset(pattern: torch.Tensor, offset: int, first_query: int = 0) -> torch.Tensor:
    """Mean attention from each query (from `first_query` on) to the key `offset` positions back.

    pattern [batch, head, query, key] -> [head].
    """
    diag = pattern.diagonal(offset=-offset, dim1=-2, dim2=-1)  # entry j: query j + offset
    return diag[..., max(first_query - offset, 0) :].mean(dim=(0, -1))


def main() -> None:
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=64, n_heads=4, n_ctx=64, d_vocab=64, attn_only=True, seed=0, dtype="float64"
    )
    model = HookedTransformer(cfg)
    half = 24
    tokens = repeated_random_tokens(batch=8, half=half, d_vocab=cfg.d_vocab)
    print(
        f"model: {cfg.n_layers} layers x {cfg.n_heads} heads, d_model {cfg.d_model}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters, {len(model.hook_dict)} hook points"
    )

    start = time.perf_counter()
    loss, cache = model.run_with_cache(tokens, return_type="loss", loss_per_token=False)
    print(
        f"run_with_cache: {cache} in {1e3 * (time.perf_counter() - start):.1f} ms, loss {loss.item():.3f} "
        f"(uniform guess: {torch.log(torch.tensor(float(cfg.d_vocab))).item():.3f})"
    )
    print(cache.memory_summary(top=3))

    print("\nattention on repeated random tokens, against a uniform-attention baseline:")
    n_pos = tokens.shape[1]
    uniform = (torch.ones(n_pos, n_pos).tril() / torch.arange(1, n_pos + 1)[:, None])[None, None]
    # Previous-token: attention to the key one back. Induction: from a token in the repeat to the
    # token after its first occurrence, which is half - 1 positions back.
    scores = {"previous-token": (1, 1), "induction": (half - 1, 1 + half)}
    baseline = {name: attention_to_offset(uniform, *args).item() for name, args in scores.items()}
    for layer in range(cfg.n_layers):
        pattern = cache["pattern", layer]  # [batch, head, query, key]
        measured = {name: attention_to_offset(pattern, *args) for name, args in scores.items()}
        for head in range(cfg.n_heads):
            cells = ", ".join(f"{name} {measured[name][head]:.3f} (uniform {baseline[name]:.3f})" for name in scores)
            print(f"  L{layer}H{head}: {cells}")

    resid, labels = cache.decompose_resid(return_labels=True)
    gap = (resid.sum(0) - cache["resid_post", -1]).abs().max().item()
    print(f"\nresidual stream = {' + '.join(labels)} (max error {gap:.1e})")

    with tempfile.TemporaryDirectory() as tmp:
        cfg_np, params = load_npz(export_npz(model, f"{tmp}/model.npz"))
        logits_np, acts_np = forward(params, cfg_np, tokens.numpy())
        logits = model(tokens)
        err = abs(logits_np - logits.detach().numpy()).max()
        print(f"NumPy twin: {len(acts_np)} activations, max |logit difference| vs torch {err:.1e}")

        reloaded = HookedTransformer.load(model.save(f"{tmp}/ckpt"))
        same = torch.equal(reloaded(tokens), logits)
        print(f"save/load round trip: identical logits = {same}")


if __name__ == "__main__":
    main()
