"""Generate the problem sets' `.npz` fixtures from circuitlab's own implementations, with fixed seeds.

Expected results come from the NumPy twin (`circuitlab.numpy_ref`), the torch model and its analysis
functions (`circuitlab.analysis`), and the games engine (`circuitlab.games`); the reference solutions
(`solutions/`) are separate NumPy code tested against them. Everything is float64.

Reproducibility: random inputs come from `np.random.default_rng(seed)` or seeded torch generators, so
`build_set` gives the same arrays on every run. The one trained model (the `circuits` set's
`model.npz`, a 2-layer attention-only induction model) is the fixture *input*: it is stored, and a
rebuild derives every other array from it deterministically. Retraining (`train_induction_model`,
`circuitlab exercises build --train`) is deterministic on one machine, but float32 training is not
bit-exact across CPUs and BLAS builds, so the shipped-equals-fresh-build test never retrains.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from ..files import atomic_write
from ..numpy_ref.forward import attention, block, forward, mlp, rotary, softmax
from ..numpy_ref.io import CONFIG_KEY
from .checker import FIXTURES

Arrays = dict[str, np.ndarray]
MODEL_FILE = "model.npz"
# The NumPy twin, by the names used below (np_forward.attention, ...).
np_forward = SimpleNamespace(attention=attention, block=block, forward=forward, mlp=mlp, rotary=rotary, softmax=softmax)


class Fixtures:
    """Test cases per problem, flattened into the key layout `checker.load_fixtures` reads."""

    def __init__(self) -> None:
        self.cases: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        self.tols: dict[str, float] = {}

    def add(self, problem: str, expected: Any, tol: float = 1e-6, **inputs: Any) -> None:
        self.cases.setdefault(problem, []).append((inputs, expected))
        self.tols[problem] = tol

    def arrays(self) -> Arrays:
        out: Arrays = {"__problems__": np.array(list(self.cases))}
        for name, cases in self.cases.items():
            out[f"{name}/tol"] = np.array(float(self.tols[name]))
            for i, (inputs, expected) in enumerate(cases):
                for arg, value in inputs.items():
                    if isinstance(value, dict):
                        out.update({f"{name}/{i}/in/{arg}/{k}": _array(v) for k, v in value.items()})
                    else:
                        out[f"{name}/{i}/in/{arg}"] = _array(value)
                if isinstance(expected, tuple):
                    out.update({f"{name}/{i}/out/{j}": _array(e) for j, e in enumerate(expected)})
                else:
                    out[f"{name}/{i}/out"] = _array(expected)
        return out


def _array(value: Any) -> np.ndarray:
    """float64 / int64 / bool / str arrays (torch tensors included)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    value = np.asarray(value)
    if value.dtype.kind == "f":
        return value.astype(np.float64)
    if value.dtype.kind in "iu":
        return value.astype(np.int64)
    return value


def t64(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def config(**kwargs: Any) -> Any:
    from ..model import HookedTransformerConfig

    return HookedTransformerConfig(**kwargs)


def model_arrays(params: Arrays, cfg: Any) -> Arrays:
    """The arrays of an `export_npz` file: parameters under state-dict names and the config as JSON."""
    return {**{k: _array(v) for k, v in params.items()}, CONFIG_KEY: np.array(json.dumps(cfg.to_dict()))}


def random_params(cfg: Any, rng: np.random.Generator) -> Arrays:
    """float64 weights with a torch model's state-dict names and shapes, drawn from `rng`."""
    from ..model import HookedTransformer

    shapes = {k: tuple(v.shape) for k, v in HookedTransformer(cfg).state_dict().items()}
    params = {}
    for name, shape in shapes.items():
        if name.endswith(".w"):  # LayerNorm weights near 1
            params[name] = 1 + 0.1 * rng.standard_normal(shape)
        elif ".b" in name or name.endswith(".b"):  # biases small
            params[name] = 0.1 * rng.standard_normal(shape)
        else:
            fan_in = shape[-2] if len(shape) >= 2 else 1
            params[name] = rng.standard_normal(shape) / np.sqrt(fan_in if "W_" in name and "W_E" not in name else 1)
    return params


# ---- numpy-transformer ---------------------------------------------------------------------------
def build_numpy_transformer(data_dir: Path) -> dict[str, Arrays]:
    rng = np.random.default_rng(1501)
    f = Fixtures()
    cfg = config(
        n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=12, n_ctx=16, act_fn="gelu_new",
        normalization_type="LN",
    )  # fmt: skip
    params = random_params(cfg, rng)

    for x in (rng.standard_normal((3, 5)) * 3, np.array([[1000.0, 1000.0, 999.0], [-1000.0, 0.0, 1000.0]]),
              np.array([[0.0, -np.inf, 1.0, 2.0]])):  # fmt: skip
        f.add("softmax", np_forward.softmax(x), x=x)

    for shape in ((4, 8), (2, 3, 16)):
        x = rng.standard_normal(shape) * 2 + 5  # a mean to remove
        w, b = 1 + 0.1 * rng.standard_normal(shape[-1]), 0.1 * rng.standard_normal(shape[-1])
        want = torch.nn.functional.layer_norm(t64(x), (shape[-1],), t64(w), t64(b), eps=1e-5)
        f.add("layer_norm", want, x=x, w=w, b=b, eps=1e-5)

    for shape in ((4, 4), (2, 3, 5, 5)):
        scores = rng.standard_normal(shape)
        blocked = torch.triu(torch.ones(shape[-1], shape[-1], dtype=torch.bool), diagonal=1)
        f.add("causal_mask", t64(scores).masked_fill(blocked, float("-inf")), scores=scores)

    q, k = rng.standard_normal((2, 5, 3, 4)), rng.standard_normal((2, 5, 3, 4))
    f.add("attention_scores", torch.einsum("bqhe,bkhe->bhqk", t64(q), t64(k)) / 2.0, q=q, k=k)

    one_head = config(n_layers=1, d_model=8, n_heads=1, d_head=4, n_ctx=16, d_vocab=4, attn_only=True)
    x = rng.standard_normal((6, 8))
    W = {n: rng.standard_normal((8, 4)) / np.sqrt(8) for n in ("W_Q", "W_K", "W_V")}
    head = {f"a.{n}": w[None] for n, w in W.items()} | {f"a.b_{n[-1]}": np.zeros((1, 4)) for n in W}
    head |= {"a.W_O": np.eye(4, 8)[None], "a.b_O": np.zeros(8)}
    acts: dict = {}
    np_forward.attention(x[None], "a", head, one_head, acts)
    f.add("attention_head", acts["a.hook_z"][0, :, 0], x=x, **W)

    attn = {n: params[f"blocks.0.attn.{n}"] for n in ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O", "b_O")}
    x = rng.standard_normal((2, 7, 16))
    f.add("multi_head_attention", np_forward.attention(x, "blocks.0.attn", params, cfg, {}), x=x, **attn)

    tokens = rng.integers(0, 12, (3, 9))
    want = torch.nn.functional.embedding(torch.as_tensor(tokens), t64(params["embed.W_E"])) + t64(
        params["pos_embed.W_pos"][:9]
    )
    f.add("embed", want, tokens=tokens, W_E=params["embed.W_E"], W_pos=params["pos_embed.W_pos"])

    for n_ctx, d_model in ((8, 6), (16, 16)):
        pos, i = torch.arange(n_ctx, dtype=torch.float64)[:, None], torch.arange(d_model // 2, dtype=torch.float64)
        angle = pos / torch.pow(10000.0, 2 * i / d_model)
        f.add(
            "sinusoidal_positions", torch.stack([angle.sin(), angle.cos()], -1).flatten(1), n_ctx=n_ctx, d_model=d_model
        )

    for base in (10000.0, 100.0):
        x = rng.standard_normal((2, 6, 2, 8))
        rot = config(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=16, d_vocab=4, attn_only=True,
                     positional_embedding_type="rotary", rotary_dim=8, rotary_base=base)  # fmt: skip
        f.add("rotary", np_forward.rotary(x, rot), x=x, base=base)

    mlp = {n: params[f"blocks.1.mlp.{n}"] for n in ("W_in", "b_in", "W_out", "b_out")}
    x = rng.standard_normal((2, 5, 16))
    f.add("mlp", np_forward.mlp(x, "blocks.1.mlp", params, cfg, {}), x=x, **mlp)

    for layer in (0, 1):
        resid = rng.standard_normal((2, 6, 16))
        want = np_forward.block(resid, layer, params, cfg, {})
        f.add("transformer_block", want, resid=resid, params=f"npz:{MODEL_FILE}", layer=layer)

    tokens = rng.integers(0, 12, (3, 10))
    logits, _ = np_forward.forward(params, cfg, tokens)
    f.add("forward", logits, model_path=f"file:{MODEL_FILE}", tokens=tokens)

    want = torch.nn.functional.cross_entropy(
        t64(logits[:, :-1]).flatten(0, 1), torch.as_tensor(tokens[:, 1:]).flatten()
    )
    f.add("next_token_loss", want, logits=logits, tokens=tokens)
    big = logits * 500  # overflows exp() unless computed stably
    want = torch.nn.functional.cross_entropy(t64(big[:, :-1]).flatten(0, 1), torch.as_tensor(tokens[:, 1:]).flatten())
    f.add("next_token_loss", want, logits=big, tokens=tokens)

    prompt = rng.integers(0, 12, (2, 4))
    out = prompt
    for _ in range(5):
        out = np.concatenate([out, np_forward.forward(params, cfg, out)[0][:, -1].argmax(-1)[:, None]], axis=1)
    f.add("greedy_generate", out, model_path=f"file:{MODEL_FILE}", tokens=prompt, n_new=5)
    return {FIXTURES: f.arrays(), MODEL_FILE: model_arrays(params, cfg)}


# ---- circuits ------------------------------------------------------------------------------------
INDUCTION_TASK = dict(vocab=32, length=24, min_chunk=4, max_chunk=8, max_gap=4)
INDUCTION_MODEL = dict(n_layers=2, n_heads=2, d_model=32, d_head=16)
INDUCTION_STEPS, INDUCTION_SEED = 500, 0


def train_induction_model() -> Arrays:
    """Train the `circuits` set's model (7 s on one thread of this project's 2-core machine, measured busy): the
    `induction` preset, made tiny."""
    from ..studies.common import train_preset

    with torch.random.fork_rng():
        _task, result = train_preset(
            "induction", INDUCTION_SEED, INDUCTION_STEPS, task_params=INDUCTION_TASK, model=INDUCTION_MODEL
        )
    params = {k: v.double().numpy() for k, v in result.model.state_dict().items()}
    return model_arrays(params, result.model.cfg)


def load_model(arrays: Arrays) -> tuple[Any, Arrays, Any]:
    """(config, float64 params, float64 torch model) from a model file's arrays."""
    from ..model import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig.from_dict({**json.loads(str(arrays[CONFIG_KEY])), "dtype": "float64"})
    params = {k: v for k, v in arrays.items() if k != CONFIG_KEY}
    model = HookedTransformer(cfg)
    model.load_state_dict({k: t64(v) for k, v in params.items()})
    return cfg, params, model.eval()


def induction_probes(d_vocab: int, period: int, batch: int, seed: int) -> np.ndarray:
    """BOS (0), then `period` distinct random tokens, twice: [batch, 2 period + 1]."""
    rng = np.random.default_rng(seed)
    chunk = np.argsort(rng.random((batch, d_vocab - 1)), axis=1)[:, :period] + 1
    return np.concatenate([np.zeros((batch, 1), dtype=np.int64), chunk, chunk], axis=1)


@torch.no_grad()
def build_circuits(data_dir: Path) -> dict[str, Arrays]:
    from ..analysis.circuits import composition_scores, full_ov_circuit, full_qk_circuit, positional_qk_circuit
    from ..analysis.heads import attention_to, copying_scores

    with np.load(data_dir / MODEL_FILE, allow_pickle=False) as data:
        stored = {k: data[k] for k in data.files}
    cfg, P, model = load_model(stored)
    f = Fixtures()
    for layer, head in ((0, 0), (1, 1)):
        w = {n: P[f"blocks.{layer}.attn.{n}"][head] for n in ("W_Q", "W_K", "W_V", "W_O")}
        f.add("qk_circuit", model.QK[layer, head].AB, W_Q=w["W_Q"], W_K=w["W_K"])
        f.add("ov_circuit", model.OV[layer, head].AB, W_V=w["W_V"], W_O=w["W_O"])

    def ref(key: str) -> str:  # an array of the model file, passed by name (not copied into each case)
        return f"npz:{MODEL_FILE}#{key}"

    W_E, W_pos, W_U = ref("embed.W_E"), ref("pos_embed.W_pos"), ref("unembed.W_U")
    for layer in (0, 1):
        w = {n: ref(f"blocks.{layer}.attn.{n}") for n in ("W_Q", "W_K", "W_V", "W_O")}
        f.add("full_ov_circuit", full_ov_circuit(model).AB[layer], W_E=W_E, W_V=w["W_V"], W_O=w["W_O"], W_U=W_U)
        f.add("full_qk_circuit", full_qk_circuit(model).AB[layer], W_E=W_E, W_Q=w["W_Q"], W_K=w["W_K"])
        f.add("positional_qk_circuit", positional_qk_circuit(model).AB[layer], W_pos=W_pos, W_Q=w["W_Q"], W_K=w["W_K"])
    copying = copying_scores(model.W_E, model.W_V, model.W_O, model.W_U)["copying_eigen"]
    for layer in (0, 1):
        w = {n: ref(f"blocks.{layer}.attn.{n}") for n in ("W_V", "W_O")}
        f.add("copying_score", copying[layer], W_E=W_E, W_V=w["W_V"], W_O=w["W_O"], W_U=W_U)
    OV, QK = model.OV.AB, model.QK.AB  # [layer, head, d_model, d_model]
    for W_A, W_B in ((OV[0, 1], QK[1, 0].T), (OV[0, 0], OV[1, 1])):  # K- and V-composition of a head pair
        score = torch.linalg.matrix_norm(W_A @ W_B) / (torch.linalg.matrix_norm(W_A) * torch.linalg.matrix_norm(W_B))
        f.add("composition_score", score, W_A=W_A, W_B=W_B)
    f.add(
        "k_composition_scores",
        composition_scores(model, "K")[0, :, 1, :],
        W_V0=ref("blocks.0.attn.W_V"),
        W_O0=ref("blocks.0.attn.W_O"),
        W_Q1=ref("blocks.1.attn.W_Q"),
        W_K1=ref("blocks.1.attn.W_K"),
    )

    period = 8
    tokens = induction_probes(cfg.d_vocab, period, 8, seed=1502)
    _, cache = model.run_with_cache(torch.as_tensor(tokens))
    n_pos = tokens.shape[1]
    query = torch.arange(n_pos).expand(len(tokens), n_pos)
    for layer in (0, 1):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]  # [batch, head, query, key]
        prev_key = torch.where(query >= 1, query - 1, -1)
        f.add("previous_token_scores", attention_to(pattern[None], prev_key)[0], pattern=pattern)
        ind_key = torch.where(query >= period + 1, query - period + 1, -1)
        f.add("induction_scores", attention_to(pattern[None], ind_key)[0], pattern=pattern, period=period)

    z1 = cache["blocks.1.attn.hook_z"][:, -2]  # [batch, head, d_head] at the second-to-last position
    results = torch.einsum("bhe,hed->bhd", z1, model.W_O[1])
    answers = torch.as_tensor(tokens[:, -1])  # the induction answer at that position
    f.add("direct_logit_attribution", torch.einsum("bhd,db->bh", results, model.W_U[:, answers]),
          head_results=results, W_U=ref("unembed.W_U"), answers=answers)  # fmt: skip

    z0 = cache["blocks.0.attn.hook_z"][:4]
    for head in (0, 1):
        ablated = z0.clone()
        ablated[:, :, head] = z0[:, :, head].mean(0)
        f.add("mean_ablate_head", ablated, z=z0, head=head)

    small = tokens[:4]
    f.add("attn_only_forward", np_forward.forward(P, cfg, small)[0], params=f"npz:{MODEL_FILE}", tokens=small)
    corrupt = small.copy()
    corrupt[:, 3] = (corrupt[:, 3] % (cfg.d_vocab - 1)) + 1  # another token in the first copy
    _, clean_cache = model.run_with_cache(torch.as_tensor(small))
    for layer, pos in ((1, 3), (0, 3 + period), (2, n_pos - 1)):
        name = f"blocks.{layer}.hook_resid_pre" if layer < cfg.n_layers else f"blocks.{layer - 1}.hook_resid_post"

        def patch(act: torch.Tensor, hook: Any, name: str = name, pos: int = pos) -> torch.Tensor:
            act[:, pos] = clean_cache[name][:, pos]
            return act

        logits = model.run_with_hooks(torch.as_tensor(corrupt), fwd_hooks=[(name, patch)])
        f.add("patch_residual_cell", logits, params=f"npz:{MODEL_FILE}", clean_tokens=small,
              corrupt_tokens=corrupt, layer=layer, pos=pos)  # fmt: skip
    return {FIXTURES: f.arrays(), MODEL_FILE: stored}


# ---- games ---------------------------------------------------------------------------------------
@torch.no_grad()
def build_games(data_dir: Path) -> dict[str, Arrays]:
    from ..analysis.probes import LinearProbe
    from ..games import Othello, TicTacToe
    from ..games.base import N_SPECIAL, relative_board

    f = Fixtures()
    ttt = TicTacToe()
    games = ttt.random_games(24, seed=1503)
    boards = games.boards.flatten(0, 1)[::3].long()  # [n, 9] positions along the games, some won
    f.add("ttt_winner", ttt.winner(boards), boards=boards)
    f.add("ttt_legal_moves", ttt.legal_squares(boards, torch.ones(len(boards))), boards=boards)
    squares = games.tokens[:, 1:] - N_SPECIAL
    moves = torch.where(squares >= 0, squares, -1)
    f.add("ttt_boards_from_moves", games.boards[:, -1], moves=moves)

    for size in (4, 6):
        f.add("othello_rays", Othello(size).rays, size=size)
    oth = Othello(6)
    games = oth.random_games(16, seed=1504)
    nxt = games.tokens[:, 1:] - N_SPECIAL  # [batch, pos - 1]: the square played after each board, or < 0
    played = (nxt >= 0) & (nxt < oth.n_squares)
    b_idx, p_idx = played.nonzero(as_tuple=True)
    keep = torch.arange(len(b_idx)) % 5 == 0  # a sample along the games
    b_idx, p_idx = b_idx[keep], p_idx[keep]
    boards, player, square = games.boards[b_idx, p_idx].long(), games.to_move[b_idx, p_idx].long(), nxt[b_idx, p_idx]
    f.add("othello_flips", oth.flips(boards, player, square), boards=boards, player=player, squares=square)
    f.add("othello_legal_moves", oth.legal_squares(boards, player), boards=boards, player=player)
    f.add("othello_play", oth.play(boards, player, square), boards=boards, player=player, squares=square)
    f.add("board_state_labels", relative_board(boards, player), boards=boards, to_move=player)
    final = games.boards[:, -1].long()
    f.add("othello_outcome", oth.outcome(final), boards=final)

    rng = np.random.default_rng(1505)
    labels = relative_board(boards, player).long()[:48]
    labels[torch.as_tensor(rng.random(labels.shape) < 0.1)] = -1
    weight, bias = rng.standard_normal((8, oth.n_squares, 3)), 0.1 * rng.standard_normal((oth.n_squares, 3))
    acts = rng.standard_normal((len(labels), 8))
    probe = LinearProbe(t64(weight), t64(bias))
    f.add("probe_accuracy", probe.accuracy(t64(acts), labels), acts=acts, weight=weight, bias=bias, labels=labels)
    return {FIXTURES: f.arrays()}


# ---- concepts ------------------------------------------------------------------------------------
def _head(d_model: int, d_head: int, causal: bool, scale: bool) -> Any:
    return config(n_layers=1, d_model=d_model, n_heads=1, d_head=d_head, n_ctx=64, d_vocab=4, attn_only=True,
                  causal=causal, use_attn_scale=scale)  # fmt: skip


def _one_head(x: np.ndarray, W: dict[str, np.ndarray], causal: bool, scale: bool = True) -> dict:
    """The NumPy twin's activations of one head (W_O = I) on one sequence x [pos, d_model]."""
    d_model, d_head = W["W_Q"].shape
    params = {f"a.{n}": w[None] for n, w in W.items()} | {f"a.b_{n[-1]}": np.zeros((1, d_head)) for n in W}
    params |= {"a.W_O": np.eye(d_head, d_model)[None], "a.b_O": np.zeros(d_model)}
    acts: dict = {}
    np_forward.attention(x[None], "a", params, _head(d_model, d_head, causal, scale), acts)
    return {"z": acts["a.hook_z"][0, :, 0], "pattern": acts["a.hook_pattern"][0, 0]}


def build_concepts(data_dir: Path) -> dict[str, Arrays]:
    rng = np.random.default_rng(1506)
    f = Fixtures()
    for d_head in (4, 64):
        q, k = rng.standard_normal((100, d_head)), rng.standard_normal((100, d_head))
        f.add("dot_product_std", (t64(q) * t64(k)).sum(-1).std(correction=0), q=q, k=k)
    for scale in (1.0, 10.0):
        scores = rng.standard_normal((32, 16)) * scale
        f.add("mean_max_weight", np_forward.softmax(scores).max(-1).mean(), scores=scores)

    d_model, d_head = 16, 8
    W = {n: rng.standard_normal((d_model, d_head)) / np.sqrt(d_model) for n in ("W_Q", "W_K", "W_V")}
    x = rng.standard_normal((8, d_model)) * 2
    for causal in (True, False):
        for scale in (True, False):
            f.add("attention_output", _one_head(x, W, causal, scale)["z"], x=x, **W, causal=causal, scale=scale)

    x_sat = rng.standard_normal((16, d_model))
    W_sat = {n: rng.standard_normal((d_model, 256)) / np.sqrt(d_model) for n in ("W_Q", "W_K", "W_V")}
    sat = tuple(_one_head(x_sat, W_sat, False, s)["pattern"].max(-1).mean() for s in (True, False))
    f.add("saturation_with_and_without_scaling", sat, x=x_sat, W_Q=W_sat["W_Q"], W_K=W_sat["W_K"])

    perm = rng.permutation(8)
    for causal in (False, True):
        gap = np.abs(_one_head(x[perm], W, causal)["z"] - _one_head(x, W, causal)["z"][perm]).max()
        f.add("permutation_gap", gap, tol=1e-9 if not causal else 1e-6, x=x, **W, perm=perm, causal=causal)

    W_E, tokens = rng.standard_normal((20, d_model)), rng.permutation(20)[:8]
    perm = np.concatenate([rng.permutation(7), [7]])
    for W_pos in (np.zeros((16, d_model)), rng.standard_normal((16, d_model))):
        z, z_perm = (_one_head(W_E[t] + W_pos[:8], W, True)["z"][-1] for t in (tokens, tokens[perm]))
        f.add("last_position_order_gap", np.abs(z - z_perm).max(), W_E=W_E, W_pos=W_pos, **W, tokens=tokens, perm=perm)

    x_changed = x.copy()
    x_changed[-1] = rng.standard_normal(d_model) * 2
    for causal in (True, False):
        change = np.abs(_one_head(x_changed, W, causal)["z"] - _one_head(x, W, causal)["z"]).max(-1)
        f.add("future_influence", change, x=x, x_changed=x_changed, **W, causal=causal)

    cfg = config(n_layers=2, d_model=d_model, n_heads=2, d_head=d_head, n_ctx=16, d_vocab=20, attn_only=True,
                 normalization_type=None)  # fmt: skip
    params = random_params(cfg, rng)
    tokens = rng.permutation(20)[:10]
    key = 6
    changed = tokens.copy()
    changed[key - 1] = (tokens[key - 1] + 1) % 20
    scores = [np_forward.forward(params, cfg, t[None])[1] for t in (tokens, changed)]
    for layer in (0, 1):
        name = f"blocks.{layer}.attn.hook_attn_scores"
        diff = np.abs(scores[0][name][0, :, -1, key] - scores[1][name][0, :, -1, key])
        f.add("key_score_dependence", diff, params=f"npz:{MODEL_FILE}", tokens=tokens, changed_tokens=changed,
              layer=layer, key=key)  # fmt: skip
    return {FIXTURES: f.arrays(), MODEL_FILE: model_arrays(params, cfg)}


BUILDERS: dict[str, Callable[[Path], dict[str, Arrays]]] = {
    "numpy-transformer": build_numpy_transformer,
    "circuits": build_circuits,
    "games": build_games,
    "concepts": build_concepts,
}


def build_set(name: str, data_dir: Path | None = None) -> dict[str, Arrays]:
    """The files of a set ({file name: arrays}), built fresh (not written)."""
    from . import SET_KEY, get_set

    problem_set = get_set(name)
    files = BUILDERS[name](data_dir or problem_set.data_dir)
    files[FIXTURES][SET_KEY] = np.array(name)
    return files


def write_set(name: str, data_dir: Path | None = None, train: bool = False) -> list[Path]:
    """Build a set and write its files; with `train` (the `circuits` set), retrain its model first."""
    from . import get_set

    data_dir = Path(data_dir or get_set(name).data_dir)
    written = []
    if train and name == "circuits":
        written.append(_save(data_dir / MODEL_FILE, train_induction_model()))
    for file, arrays in build_set(name, data_dir).items():
        written.append(_save(data_dir / file, arrays))
    return written


def _save(path: Path, arrays: Arrays) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    return atomic_write(path, write)
