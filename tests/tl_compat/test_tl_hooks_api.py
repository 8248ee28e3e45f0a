"""TransformerLens-style hook management: permanent hooks, context levels, handles, backward hooks returning a
tuple, `set_use_*` switches and start/stop_at_layer, checked against circuitlab's native ablation on the same
weights."""

from __future__ import annotations

from functools import partial

import torch

from circuitlab import HookedTransformer, HookedTransformerConfig
from circuitlab.analysis import run_with_ablation

CFG = dict(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=24, d_vocab=40, act_fn="gelu_new", seed=0)


def _tokens() -> torch.Tensor:
    return torch.randint(0, 40, (2, 10), generator=torch.Generator().manual_seed(0))


def test_perma_hook_head_ablation_equals_native_ablation() -> None:
    model = HookedTransformer(HookedTransformerConfig(**CFG))
    tokens = _tokens()

    # --- TL code: a permanent zero-ablation of head 1.2 through hook_z
    def zero_head(z: torch.Tensor, hook, head: int) -> torch.Tensor:
        z[:, :, head] = 0.0
        return z

    model.add_perma_hook("blocks.1.attn.hook_z", partial(zero_head, head=2))
    model.reset_hooks()  # keeps permanent hooks
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: None)]):
        assert model.hook_dict["blocks.0.hook_resid_pre"].fwd_hooks[0].context_level == 1
    ablated = model(tokens)
    model.reset_hooks(including_permanent=True)
    # --- native
    torch.testing.assert_close(ablated, run_with_ablation(model, tokens, heads=[(1, 2)], method="zero"))
    assert not torch.allclose(ablated, model(tokens))


def test_remove_all_hook_fns_and_handle_removal() -> None:
    model = HookedTransformer(HookedTransformerConfig(**CFG))
    tokens = _tokens()
    plain = model(tokens)
    model.add_hook("blocks.0.hook_mlp_out", lambda x, hook: x * 0)
    model.add_hook(lambda name: name.endswith("hook_attn_out"), lambda x, hook: x * 0)
    assert not torch.allclose(model(tokens), plain)
    model.hook_dict["blocks.0.hook_mlp_out"].fwd_hooks[0].hook.remove()
    assert len(model.hook_dict["blocks.1.hook_attn_out"].fwd_hooks) == 1
    model.remove_all_hook_fns()
    assert torch.equal(model(tokens), plain)
    assert len(list(model.hook_points())) == len(model.hook_dict)


def test_backward_hook_tuple_and_split_qkv_switch() -> None:
    model = HookedTransformer(HookedTransformerConfig(**CFG))
    tokens = _tokens()
    model.set_use_split_qkv_input(True)
    model.set_use_attn_result(True)
    grads: dict[str, torch.Tensor] = {}

    def save_and_keep(grad: torch.Tensor, hook) -> tuple[torch.Tensor]:
        grads[hook.name] = grad.detach()
        return (grad,)

    model.run_with_hooks(
        tokens,
        return_type="loss",
        bwd_hooks=[(lambda n: n.endswith(("hook_q_input", "hook_result")), save_and_keep)],
    ).backward()
    assert grads["blocks.0.hook_q_input"].shape == (2, 10, 4, 32)
    assert grads["blocks.1.attn.hook_result"].shape == (2, 10, 4, 32)
    logits, cache = model.run_with_cache(tokens, pos_slice=-1)
    assert cache["blocks.0.hook_q_input"].shape == (2, 1, 4, 32)
    # --- native: the split inputs do not change the numbers; start_at_layer picks up mid-model
    model.set_use_split_qkv_input(False)
    torch.testing.assert_close(logits, model(tokens), atol=1e-5, rtol=1e-5)
    resid = model(tokens, stop_at_layer=1)
    torch.testing.assert_close(model(resid, start_at_layer=1), model(tokens))
