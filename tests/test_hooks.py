"""Hooks: adding, replacing, filtering, removing (also on errors), backward hooks and clear errors."""

from __future__ import annotations

import pytest
import torch

from circuitlab import HookNameError

from .conftest import small_model


def _n_hooks(model) -> int:
    return sum(len(hp.fwd_hooks) + len(hp.bwd_hooks) for hp in model.hook_dict.values())


class Boom(RuntimeError):
    pass


def _raise(tensor, hook):
    raise Boom(hook.name)


def test_hooks_removed_after_a_raising_hook(tokens: torch.Tensor) -> None:
    model = small_model()
    seen = []
    with pytest.raises(Boom):
        model.run_with_hooks(
            tokens,
            fwd_hooks=[
                ("blocks.0.hook_resid_pre", lambda t, hook: seen.append(hook.name)),
                ("blocks.1.attn.hook_z", _raise),
            ],
        )
    assert seen == ["blocks.0.hook_resid_pre"] and _n_hooks(model) == 0
    with pytest.raises(Boom), model.hooks(fwd_hooks=[("hook_embed", _raise)]):
        model(tokens)
    assert _n_hooks(model) == 0
    with pytest.raises(Boom), model.hooks(fwd_hooks=[("ln_final.hook_scale", _raise)]):
        model.run_with_cache(tokens)
    assert _n_hooks(model) == 0
    # The model still runs cleanly afterwards, identical to a fresh forward.
    torch.testing.assert_close(model(tokens), model.run_with_hooks(tokens, fwd_hooks=[]))


def test_hooks_removed_when_the_forward_raises(tokens: torch.Tensor) -> None:
    model = small_model()
    with pytest.raises(ValueError, match="return_type"):
        model.run_with_cache(tokens, return_type="bogus")
    with pytest.raises(ValueError, match="n_ctx"):
        model.run_with_hooks(torch.zeros(1, 99, dtype=torch.long), fwd_hooks=[("hook_embed", lambda t, hook: None)])
    assert _n_hooks(model) == 0


def test_unknown_hook_name_lists_the_closest(tokens: torch.Tensor) -> None:
    model = small_model()
    with pytest.raises(HookNameError) as err:
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_patern", lambda t, hook: None)])
    assert "blocks.0.attn.hook_pattern" in str(err.value) and "hook_patern" in str(err.value)
    with pytest.raises(KeyError, match=r"blocks\.1\.hook_resid_pre"):  # also a KeyError, as dict users expect
        model.run_with_cache(tokens, names_filter=["blocks.1.hook_resid_pr"])
    with pytest.raises(HookNameError, match="matched no hook point"):
        model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_nothing"))
    assert _n_hooks(model) == 0


def test_flagged_hook_points_say_which_flag(tokens: torch.Tensor) -> None:
    model = small_model()
    with pytest.raises(ValueError, match="use_attn_result=True"):
        model.run_with_cache(tokens, names_filter="blocks.0.attn.hook_result")
    with pytest.raises(ValueError, match="use_split_qkv_input=True"):
        model.add_hook("blocks.0.hook_q_input", lambda t, hook: None)
    _, cache = model.run_with_cache(tokens)  # caching everything skips the silent points
    assert "blocks.0.attn.hook_result" not in cache and "blocks.0.hook_mlp_in" not in cache


def test_hook_replacement_changes_the_output(tokens: torch.Tensor) -> None:
    model = small_model()
    clean = model(tokens)

    def zero_head_1(z, hook):
        z = z.clone()
        z[:, :, 1] = 0.0
        return z

    ablated, cache = None, None
    with model.hooks(fwd_hooks=[("blocks.1.attn.hook_z", zero_head_1)]):
        ablated, cache = model.run_with_cache(tokens)
    assert (cache["z", 1][:, :, 1] == 0).all()  # the cache sees the replacement
    assert not torch.allclose(clean, ablated)
    # Same ablation done by hand: subtract head 1's contribution from layer 1's attention output.
    _, clean_cache = model.run_with_cache(tokens)
    head_out = clean_cache["z", 1][:, :, 1] @ model.W_O[1, 1]
    expected = clean_cache["attn_out", 1] - head_out
    torch.testing.assert_close(cache["attn_out", 1], expected.detach(), atol=1e-5, rtol=1e-5)


def test_in_place_edit_and_wrong_shape(tokens: torch.Tensor) -> None:
    model = small_model()

    def bad(t, hook):
        return t[:, :1]

    with pytest.raises(ValueError, match=r"return None or a tensor of shape \(3, 11, 32\)"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_resid_pre", bad)])


def test_filter_hooks_every_matching_point(tokens: torch.Tensor) -> None:
    model = small_model()
    names: list[str] = []
    model.run_with_hooks(
        tokens, fwd_hooks=[(lambda n: n.endswith("hook_pattern"), lambda t, hook: names.append(hook.name))]
    )
    assert names == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]


def test_permanent_hooks_survive_reset_and_context(tokens: torch.Tensor) -> None:
    model = small_model()
    calls: list[str] = []
    model.add_hook("hook_embed", lambda t, hook: calls.append("perm"), is_permanent=True)
    model.add_hook("hook_embed", lambda t, hook: calls.append("temp"))
    with model.hooks(fwd_hooks=[("hook_embed", lambda t, hook: calls.append("ctx"))]):
        model(tokens)
    assert calls == ["perm", "temp", "ctx"]
    model.reset_hooks()
    calls.clear()
    model(tokens)
    assert calls == ["perm"]
    model.reset_hooks(including_permanent=True)
    assert _n_hooks(model) == 0


def test_nested_contexts_remove_only_their_own(tokens: torch.Tensor) -> None:
    model = small_model()
    calls: list[str] = []
    with model.hooks(fwd_hooks=[("hook_embed", lambda t, hook: calls.append("outer"))]):
        with model.hooks(fwd_hooks=[("hook_embed", lambda t, hook: calls.append("inner"))]):
            model(tokens)
        model(tokens)
    model(tokens)
    assert calls == ["outer", "inner", "outer"]


def test_prepend_runs_first(tokens: torch.Tensor) -> None:
    model = small_model()
    calls: list[str] = []
    model.add_hook("hook_embed", lambda t, hook: calls.append("a"))
    model.add_hook("hook_embed", lambda t, hook: calls.append("b"), prepend=True)
    model(tokens)
    model.reset_hooks()
    assert calls == ["b", "a"]


def test_backward_hooks_see_and_replace_gradients(tokens: torch.Tensor) -> None:
    model = small_model()
    grads: dict[str, torch.Tensor] = {}
    kept: dict[str, torch.Tensor] = {}

    def keep(t, hook):
        t.retain_grad()
        kept[hook.name] = t

    def save_grad(grad, hook):
        grads[hook.name] = grad

    name = "blocks.1.hook_resid_pre"
    loss = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(name, keep)], bwd_hooks=[(name, save_grad)])
    assert _n_hooks(model) == 0
    loss.backward()  # the hook is attached to this run's graph, so it fires after the call returned
    torch.testing.assert_close(grads[name], kept[name].grad)

    # A backward hook may replace the gradient: zero at resid_pre of block 1 cuts every path to W_E.
    model.zero_grad()
    loss = model.run_with_hooks(tokens, return_type="loss", bwd_hooks=[(name, lambda g, hook: torch.zeros_like(g))])
    loss.backward()
    assert model.W_E.grad.abs().max() == 0 and model.W_U.grad.abs().max() > 0


def test_run_with_cache_incl_bwd(tokens: torch.Tensor) -> None:
    model = small_model()
    loss, cache = model.run_with_cache(tokens, return_type="loss", incl_bwd=True, names_filter=lambda n: "resid" in n)
    assert loss.ndim == 0 and "blocks.0.hook_resid_post_grad" in cache
    kept = {}

    def keep(t, hook):
        t.retain_grad()
        kept["t"] = t

    model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[("blocks.0.hook_resid_post", keep)]).backward()
    torch.testing.assert_close(cache["blocks.0.hook_resid_post_grad"], kept["t"].grad)
    with pytest.raises(ValueError, match="scalar"):
        model.run_with_cache(tokens, incl_bwd=True)
    assert _n_hooks(model) == 0


def test_cache_is_detached_and_optionally_unbatched(tokens: torch.Tensor) -> None:
    model = small_model()
    _, cache = model.run_with_cache(tokens[:1], remove_batch_dim=True)
    assert cache["resid_pre", 0].shape == (11, 32) and not cache["resid_pre", 0].requires_grad
    assert cache["pattern", 1].shape == (4, 11, 11)
    _, raw = model.run_with_cache(tokens, return_cache_object=False, names_filter="hook_embed")
    assert list(raw) == ["hook_embed"]


def test_hook_context_dict(tokens: torch.Tensor) -> None:
    model = small_model()

    def count(t, hook):
        hook.ctx["n"] = hook.ctx.get("n", 0) + 1

    model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", count)])
    model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", count)])
    assert model.hook_dict["hook_embed"].ctx["n"] == 2
    model.reset_hooks()
    assert model.hook_dict["hook_embed"].ctx == {}


def test_gradients_flow_through_a_pattern_a_hook_kept() -> None:
    """A forward hook that keeps the live pattern (attribution patching, EAP) can take gradients through it, and
    still sees model(x)'s numbers bit for bit: the output carries the fast kernel's values and pattern @ v's
    gradients."""
    from tests.conftest import small_model

    model = small_model()
    x = torch.randint(0, 40, (2, 9), generator=torch.Generator().manual_seed(0))
    kept: dict[str, torch.Tensor] = {}

    def keep(pattern: torch.Tensor, hook) -> None:
        kept["pattern"] = pattern

    def grad_of_pattern() -> torch.Tensor:
        loss = model.run_with_hooks(x, return_type="loss", fwd_hooks=[("blocks.1.attn.hook_pattern", keep)])
        return torch.autograd.grad(loss, kept["pattern"])[0]

    fast = grad_of_pattern()
    model.cfg.fast_attention = False
    explicit = grad_of_pattern()
    model.cfg.fast_attention = True
    assert fast.abs().sum() > 0
    torch.testing.assert_close(fast, explicit, atol=1e-6, rtol=1e-5)
    assert torch.equal(model(x), model.run_with_cache(x)[0])  # autograd on
    assert torch.equal(model(x), model.run_with_hooks(x, fwd_hooks=[("blocks.1.attn.hook_pattern", keep)]))
    with torch.no_grad():
        assert torch.equal(model(x), model.run_with_cache(x)[0])
