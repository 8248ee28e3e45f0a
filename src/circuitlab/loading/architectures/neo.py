"""GPT-Neo (`GPTNeoForCausalLM`): like GPT-2 but nn.Linear layout, separate q/k/v without biases,
attention scores NOT divided by sqrt(d_head), and alternating global / local (windowed) attention layers."""

from __future__ import annotations

from .base import Architecture, Weight, act_fn, linear_out_to_heads, linear_to_heads, transpose

H = "transformer.h.{l}"
A = f"{H}.attn.attention"
GPT_NEO = Architecture(
    name="GPT-Neo",
    hf_classes=("GPTNeoForCausalLM",),
    model_types=("gpt_neo",),
    config={
        "n_layers": "num_layers",
        "d_model": "hidden_size",
        "n_heads": "num_heads",
        "d_mlp": lambda hf: hf.intermediate_size or 4 * hf.hidden_size,
        "n_ctx": "max_position_embeddings",
        "d_vocab": "vocab_size",
        "act_fn": lambda hf: act_fn(hf.activation_function),
        "eps": "layer_norm_epsilon",
        "attn_types": lambda hf: list(hf.attention_layers),
        "window_size": "window_size",
    },
    defaults=dict(normalization_type="LN", positional_embedding_type="standard", attn_scale=1.0),
    weights=(
        Weight("transformer.wte.weight", "embed.W_E"),
        Weight("transformer.wpe.weight", "pos_embed.W_pos"),
        Weight(f"{H}.ln_1.weight", "blocks.{l}.ln1.w"),
        Weight(f"{H}.ln_1.bias", "blocks.{l}.ln1.b"),
        Weight(f"{A}.q_proj.weight", "blocks.{l}.attn.W_Q", linear_to_heads),
        Weight(f"{A}.k_proj.weight", "blocks.{l}.attn.W_K", linear_to_heads),
        Weight(f"{A}.v_proj.weight", "blocks.{l}.attn.W_V", linear_to_heads),
        Weight(f"{A}.out_proj.weight", "blocks.{l}.attn.W_O", linear_out_to_heads),
        Weight(f"{A}.out_proj.bias", "blocks.{l}.attn.b_O"),
        Weight(f"{H}.ln_2.weight", "blocks.{l}.ln2.w"),
        Weight(f"{H}.ln_2.bias", "blocks.{l}.ln2.b"),
        Weight(f"{H}.mlp.c_fc.weight", "blocks.{l}.mlp.W_in", transpose),
        Weight(f"{H}.mlp.c_fc.bias", "blocks.{l}.mlp.b_in"),
        Weight(f"{H}.mlp.c_proj.weight", "blocks.{l}.mlp.W_out", transpose),
        Weight(f"{H}.mlp.c_proj.bias", "blocks.{l}.mlp.b_out"),
        Weight("transformer.ln_f.weight", "ln_final.w"),
        Weight("transformer.ln_f.bias", "ln_final.b"),
        Weight("lm_head.weight", "unembed.W_U", transpose, tied="transformer.wte.weight"),
    ),
    ignore=(r"\.attn\.attention\.(masked_)?bias$",),
)
