"""Circuit discovery: the edge graph, exact edge ablation, EAP / EAP-IG against patching, ACDC."""

from __future__ import annotations

import pytest
import torch

from circuitlab import HookedTransformer
from circuitlab.analysis.discovery import (
    Ablation,
    Circuit,
    Graph,
    acdc,
    edge_attribution,
    roc_auc,
    run_with_edges,
    sender_activations,
)
from circuitlab.analysis.metrics import logit_diff
from circuitlab.viz.circuit import circuit_graph

from .conftest import CONFIGS, small_cfg


def _model(**overrides) -> HookedTransformer:
    return HookedTransformer(small_cfg(dtype="float64", **overrides))


def _tokens(seed: int, batch: int = 3, pos: int = 7) -> torch.Tensor:
    return torch.randint(0, 40, (batch, pos), generator=torch.Generator().manual_seed(seed))


def test_graph_counts_match_gpt2_small():
    g = Graph(n_layers=12, n_heads=12, has_mlp=True)
    assert (len(g.senders), len(g.receivers), g.n_edges) == (157, 445, 32491)  # Hanna et al. 2024
    names = g.edge_names
    assert "a0.h3->a1.h0<k>" in names and "m0->m1" in names and "a1.h0->m1" in names
    assert "m1->a1.h0<q>" not in names and "a1.h0->a1.h1<v>" not in names  # nothing within a layer but head->MLP
    parallel = Graph(n_layers=2, n_heads=2, has_mlp=True, parallel_attn_mlp=True)
    assert "a0.h0->m0" not in parallel.edge_names and "a0.h0->m1" in parallel.edge_names
    with pytest.raises(ValueError, match="no edge"):
        g.edge_id("a0.h0->a0.h1<k>")


@pytest.mark.parametrize(
    "name",
    ["ln_mlp_gelu", "attn_only_no_ln", "parallel_attn_mlp", "rotary", "rms_silu", "no_pos_embed", "gqa", "llama_like",
     "ungrouped_gqa_rotary"],
)  # fmt: skip
def test_keeping_every_edge_is_clean_and_none_is_corrupted(name):
    model = _model(**CONFIGS[name])
    clean, corrupted = _tokens(0), _tokens(1)
    g = Graph.from_model(model)
    keep = torch.stack([g.valid, torch.zeros_like(g.valid)]).double()
    logits = run_with_edges(model, clean, sender_activations(model, corrupted, g), keep, g)
    with torch.no_grad():
        torch.testing.assert_close(logits[0], model(clean), atol=1e-10, rtol=0)
        torch.testing.assert_close(logits[1], model(corrupted), atol=1e-10, rtol=0)
    assert not model.cfg.use_split_qkv_input and not model.cfg.use_attn_result  # config restored


def test_grouped_query_attention_has_key_value_receivers_per_kv_head():
    g = Graph.from_model(_model(n_key_value_heads=2))  # 4 query heads, 2 KV heads: groups {0, 1}, {2, 3}
    layer1 = g.receivers[g.qkv_receivers(1)]
    assert layer1 == [*(f"a1.h{h}<q>" for h in range(4)), "a1.kv0<k>", "a1.kv1<k>", "a1.kv0<v>", "a1.kv1<v>"]
    assert g.receivers[g.head_receiver(1, 3, "k")] == "a1.kv1<k>"
    assert g.receivers[g.head_receiver(1, 2, "v")] == "a1.kv1<v>"
    assert g.receiver_senders(g.head_receiver(1, 2, "k")) == [g.head_sender(1, 2), g.head_sender(1, 3)]
    # 4 fewer k/v receivers per layer, reading 1 sender (the input) in layer 0 and 6 in layer 1.
    assert g.n_edges == Graph(2, 4, True).n_edges - 4 * (1 + 6)
    assert "a0.h1->a1.kv0<k>" in g.edge_names and "a0.h1->a1.h0<k>" not in g.edge_names
    ungrouped = _model(n_key_value_heads=2, ungroup_grouped_query_attention=True)  # keys computed per query head
    assert Graph.from_model(ungrouped).receivers == Graph(2, 4, True).receivers
    with pytest.raises(ValueError, match="n_kv_heads"):
        Graph(2, 4, True, n_kv_heads=3)


def _l0h1_result_shift(model, clean, corrupted):
    """What head L0H1 writes in the clean run minus in the corrupted one (needs use_attn_result)."""
    _, c_clean = model.run_with_cache(clean)
    _, c_corr = model.run_with_cache(corrupted)
    return c_clean["blocks.0.attn.hook_result"][:, :, 1] - c_corr["blocks.0.attn.hook_result"][:, :, 1]


def test_gqa_edge_ablation_patches_the_whole_groups_key_input():
    """Ablating a0.h1 -> a1.kv1<k> = layer 1's key input of KV head 1 (read by query heads 2 and 3) patched by
    hand; with ungrouped keys the same patch on both of the group's per-head inputs."""
    model = _model(n_key_value_heads=2, positional_embedding_type="rotary", normalization_type="RMS")
    clean, corrupted = _tokens(0), _tokens(1)
    g = Graph.from_model(model)
    keep = g.valid.clone()
    keep[g.head_sender(0, 1), g.edge_index[g.edge_id("a0.h1->a1.kv1<k>"), 1]] = False
    got = run_with_edges(model, clean, sender_activations(model, corrupted, g), keep.double(), g)
    model.cfg.use_attn_result = model.cfg.use_split_qkv_input = True
    try:
        shift = _l0h1_result_shift(model, clean, corrupted)

        def patch(x, hook):
            x[:, :, 1] -= shift
            return x

        want = model.run_with_hooks(clean, fwd_hooks=[("blocks.1.hook_k_input", patch)])
        model.set_ungroup_grouped_query_attention(True)

        def patch_both(x, hook):
            x[:, :, 2:4] -= shift[:, :, None]
            return x

        ungrouped = model.run_with_hooks(clean, fwd_hooks=[("blocks.1.hook_k_input", patch_both)])
    finally:
        model.cfg.use_attn_result = model.cfg.use_split_qkv_input = False
        model.set_ungroup_grouped_query_attention(False)
    torch.testing.assert_close(got, want.detach(), atol=1e-10, rtol=0)
    torch.testing.assert_close(ungrouped.detach(), want.detach(), atol=1e-10, rtol=0)
    assert (got - model(clean)).abs().max() > 1e-4  # the patch did something


def test_single_edge_ablation_equals_path_patching_by_hand():
    """Ablating a0.h1 -> a1.h2<v> alone = running layer 1 with that head's value input patched by hand."""
    model = _model(attn_only=True)
    clean, corrupted = _tokens(0), _tokens(1)
    g = Graph.from_model(model)
    keep = g.valid.clone()
    keep[g.head_sender(0, 1), g.head_receiver(1, 2, "v")] = False
    got = run_with_edges(model, clean, sender_activations(model, corrupted, g), keep.double(), g)
    model.cfg.use_attn_result = model.cfg.use_split_qkv_input = True
    try:
        shift = _l0h1_result_shift(model, clean, corrupted)

        def patch(x, hook):
            x[:, :, 2] -= shift
            return x

        want = model.run_with_hooks(clean, fwd_hooks=[("blocks.1.hook_v_input", patch)])
    finally:
        model.cfg.use_attn_result = model.cfg.use_split_qkv_input = False
    torch.testing.assert_close(got, want.detach(), atol=1e-10, rtol=0)


@pytest.mark.parametrize("name,ablation", [("ln_mlp_gelu", "corrupted"), ("attn_only_no_ln", "corrupted"),
                                           ("ln_mlp_gelu", "mean"), ("llama_like", "corrupted"),
                                           ("gqa_rotary_rms", "mean")])  # fmt: skip
def test_eap_is_the_linear_limit_of_edge_ablation(name, ablation):
    """EAP = d metric / d (fraction of the edge ablated) at 0, for every edge: a finite difference."""
    model = _model(**CONFIGS[name])
    clean, corrupted = _tokens(0), _tokens(1)
    metric = logit_diff(3, 5)
    scores = edge_attribution(model, clean, corrupted, metric, method="eap", ablation=ablation)
    g = Graph.from_model(model)
    ablated = sender_activations(model, corrupted, g)
    if ablation == "mean":
        ablated = ablated.mean(0, keepdim=True)
    eps = 1e-6
    keep = 1 - eps * torch.eye(g.n_edges, dtype=torch.float64)  # [edge, edge]: edge i ablated by eps
    base = float(metric(run_with_edges(model, clean, ablated, g.valid.double(), g)))
    finite = (metric(run_with_edges(model, clean, ablated, g.to_grid(keep), g)) - base) / eps
    torch.testing.assert_close(scores, finite, atol=1e-5 * float(finite.abs().max()), rtol=1e-4)


def _linear_path_model(zero_heads: bool) -> HookedTransformer:
    """Attention-only, no LayerNorm, W_Q = W_K = 0: uniform attention, so every receiver's input is linear
    in the input embedding, while the metric (a log-probability) is not linear."""
    model = _model(attn_only=True, normalization_type=None)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_Q.zero_()
            block.attn.W_K.zero_()
            if zero_heads:
                block.attn.W_O.zero_()
    return model


def _log_prob(logits: torch.Tensor) -> torch.Tensor:
    return logits[..., -1, :].log_softmax(-1)[..., 3].mean(-1)


def test_eap_ig_is_exact_where_the_path_is_linear_and_eap_is_not():
    model = _linear_path_model(zero_heads=True)  # only input -> logits carries anything
    clean, corrupted = _tokens(0), _tokens(1)
    g = Graph.from_model(model)
    exp = Ablation(model, clean, corrupted, _log_prob)
    edge = g.edge_id("input->logits")
    only = torch.ones(1, g.n_edges, dtype=torch.bool)
    only[0, edge] = False
    exact = float(exp.metrics(only)[0]) - exp.clean_metric
    ig = edge_attribution(model, clean, corrupted, _log_prob, method="eap-ig", steps=50)
    eap = edge_attribution(model, clean, corrupted, _log_prob, method="eap")
    assert float(ig[edge]) == pytest.approx(exact, rel=1e-3)
    assert abs(float(eap[edge]) - exact) > 10 * abs(float(ig[edge]) - exact)


def test_eap_ig_is_complete_over_the_edges_into_the_logits():
    """Sum of the IG scores of the edges into a linear-path receiver = the metric's change on that path."""
    model = _linear_path_model(zero_heads=False)
    clean, corrupted = _tokens(0), _tokens(1)
    g = Graph.from_model(model)
    exp = Ablation(model, clean, corrupted, _log_prob)
    ig = edge_attribution(model, clean, corrupted, _log_prob, method="eap-ig", steps=64)
    into_logits = g.edge_index[:, 1] == g.logits_receiver
    # With W_Q = W_K = 0 nothing upstream changes the attention, so the logits input is linear in the input.
    assert float(ig[into_logits].sum()) == pytest.approx(exp.ablated_metric - exp.clean_metric, rel=1e-3)


def test_mean_ablation_and_input_errors():
    model = _model(attn_only=True)
    clean = _tokens(0, batch=6)
    exp = Ablation(model, clean, None, logit_diff(3, 5), ablation="mean")
    assert exp.evaluate(Circuit(exp.graph, torch.ones(exp.graph.n_edges))) == pytest.approx(1.0)
    assert exp.evaluate(Circuit(exp.graph, torch.zeros(exp.graph.n_edges))) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="same shape"):
        edge_attribution(model, clean, _tokens(1, batch=2), logit_diff(3, 5))
    with pytest.raises(ValueError, match="method"):
        edge_attribution(model, clean, clean, logit_diff(3, 5), method="acdc")
    with pytest.raises(ValueError, match="changes nothing"):
        Ablation(model, clean, clean, logit_diff(3, 5))


@pytest.mark.parametrize("overrides", [dict(n_heads=2, d_head=16), dict(n_key_value_heads=2)], ids=["mha", "gqa"])
def test_curve_and_acdc_on_a_random_model(overrides):
    model = _model(**overrides)
    clean, corrupted = _tokens(0), _tokens(1)
    metric = logit_diff(3, 5)
    exp = Ablation(model, clean, corrupted, metric)
    scores = edge_attribution(model, clean, corrupted, metric, method="eap-ig", steps=8)
    curve = exp.curve(scores, n_points=None)
    assert curve.k[0] == 0 and curve.k[-1] == exp.graph.n_edges
    assert curve.faithfulness[0] == pytest.approx(0.0, abs=1e-9) and curve.faithfulness[-1] == pytest.approx(1.0)
    k9 = curve.minimal(0.9)
    assert k9 is not None and exp.evaluate(Circuit.top_k(exp.graph, scores, k9)) >= 0.9
    found = acdc(model, clean, corrupted, metric, threshold=0.02, experiment=exp)
    assert 0 < len(found) < exp.graph.n_edges
    assert len(circuit_graph(found).data) == len(found) + 1  # one trace per edge, then the nodes
    # Every removal moved the metric by < 2% of its range, so the result stays near the model.
    assert abs(exp.evaluate(found) - 1) < 0.02 * len(found.complement()) + 1e-9
    assert set(found.edges) <= set(exp.graph.edge_names)


def test_roc_auc():
    truth = torch.tensor([True, True, False, False, False])
    assert roc_auc(torch.tensor([5.0, -4, 1, 0, 2]), truth) == 1.0
    assert roc_auc(torch.tensor([0.0, 0, 0, 0, 0]), truth) == 0.5
    assert roc_auc(torch.tensor([1.0, 3, 2, 0, 0]), truth) == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="true and false"):
        roc_auc(torch.ones(3), torch.ones(3, dtype=torch.bool))
