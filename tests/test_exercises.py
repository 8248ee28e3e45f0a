"""The learner's problem sets: reference solutions pass, plausible wrong ones fail with the right message,
loops are flagged, the generated folder runs on NumPy alone, and the shipped fixtures equal a fresh build."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from circuitlab.cli import main
from circuitlab.exercises import SETS, check_folder, checker, new_set, problem_file
from circuitlab.exercises.build import MODEL_FILE, build_set
from circuitlab.exercises.solutions import circuits as C
from circuitlab.exercises.solutions import concepts as K
from circuitlab.exercises.solutions import games as G
from circuitlab.exercises.solutions import numpy_transformer as N

MISMATCH, SHAPE, NAN = "first mismatch", "wrong shape", "NaN at index"


def _unstable_softmax(x):
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def _off_by_one_mask(scores):
    n = scores.shape[-1]
    return np.where(np.arange(n)[None, :] >= np.arange(n)[:, None], -np.inf, scores)


def _post_norm_block(resid, params, layer):
    p, a, m = f"blocks.{layer}.", f"blocks.{layer}.attn.", f"blocks.{layer}.mlp."
    attn = [params[a + n] for n in ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O", "b_O")]
    resid = N.layer_norm(resid + N.multi_head_attention(resid, *attn), params[p + "ln1.w"], params[p + "ln1.b"])
    out = resid + N.mlp(resid, params[m + "W_in"], params[m + "b_in"], params[m + "W_out"], params[m + "b_out"])
    return N.layer_norm(out, params[p + "ln2.w"], params[p + "ln2.b"])


def _forward_without_ln_final(model_path, tokens):
    with np.load(model_path) as data:
        params = {k: data[k] for k in data.files}
    resid = N.embed(tokens, params["embed.W_E"], params["pos_embed.W_pos"])
    for layer in range(2):
        resid = N.transformer_block(resid, params, layer)
    return resid @ params["unembed.W_U"] + params["unembed.b_U"]


def _greedy_from_first_position(model_path, tokens, n_new):
    for _ in range(n_new):
        tokens = np.concatenate([tokens, N.forward(model_path, tokens)[:, 0].argmax(-1)[:, None]], axis=1)
    return tokens


def _unscaled_attn_only_forward(params, tokens):
    scaled = {k: v * 4.0 if k.endswith("attn.W_Q") else v for k, v in params.items()}  # cancels 1/sqrt(16)
    return C.attn_only_forward(scaled, tokens)


def _patch_after_layer(params, clean_tokens, corrupt_tokens, layer, pos):
    return C.patch_residual_cell(params, clean_tokens, corrupt_tokens, min(layer + 1, 2), pos)


def _unclosed_flips(boards, player, squares):
    batch, n = boards.shape
    rays = G.othello_rays(6)[squares]
    padded = np.concatenate([boards, np.full((batch, 1), 3)], axis=1)
    seen = np.take_along_axis(padded, rays.reshape(batch, -1), axis=1).reshape(rays.shape)
    run = np.cumprod(seen == 3 - player[:, None, None], axis=-1).astype(bool)  # opponent run, closed or not
    out = np.zeros((batch, n + 1), dtype=bool)
    out[np.arange(batch)[:, None], np.where(run, rays, n).reshape(batch, -1)] = True
    return out[:, :n]


def _play_without_placing(boards, player, squares):
    return np.where(G.othello_flips(boards, player, squares), player[:, None], boards)


def _unscaled_key_scores(params, tokens, changed_tokens, layer, key):
    scaled = {k: v * np.sqrt(8) if k.endswith("attn.W_Q") else v for k, v in params.items()}
    return K.key_score_dependence(scaled, tokens, changed_tokens, layer, key)


# One plausible mistake per problem, and the message it must get.
WRONG = {
    "numpy-transformer": {
        "softmax": (_unstable_softmax, NAN),
        "layer_norm": (lambda x, w, b, eps=1e-5: (x - x.mean(0)) / np.sqrt(x.var(0) + eps) * w + b, MISMATCH),
        "causal_mask": (_off_by_one_mask, "-inf at index"),
        "attention_scores": (lambda q, k: np.einsum("bqhe,bkhe->bhqk", q, k), MISMATCH),
        "attention_head": (lambda x, W_Q, W_K, W_V: N.softmax((x @ W_Q) @ (x @ W_K).T / 2) @ (x @ W_V), MISMATCH),
        "multi_head_attention": (
            lambda x, W_O, b_O, **w: N.multi_head_attention(x, W_O=W_O, b_O=0 * b_O, **w),
            MISMATCH,
        ),
        "embed": (lambda tokens, W_E, W_pos: W_E[tokens], MISMATCH),
        "sinusoidal_positions": (lambda n_ctx, d_model: N.sinusoidal_positions(n_ctx, d_model)[:, ::-1], MISMATCH),
        "rotary": (lambda x, base=10000.0: N.rotary(x, 1 / base), MISMATCH),
        "mlp": (lambda x, W_in, b_in, W_out, b_out: np.maximum(x @ W_in + b_in, 0) @ W_out + b_out, MISMATCH),
        "transformer_block": (_post_norm_block, MISMATCH),
        "forward": (_forward_without_ln_final, MISMATCH),
        "next_token_loss": (lambda logits, tokens: N.next_token_loss(logits[:, 1:], tokens[:, :-1]), MISMATCH),
        "greedy_generate": (_greedy_from_first_position, MISMATCH),
    },
    "circuits": {
        "qk_circuit": (lambda W_Q, W_K: W_K @ W_Q.T, MISMATCH),
        "ov_circuit": (lambda W_V, W_O: (W_V @ W_O).T, MISMATCH),
        "full_ov_circuit": (
            lambda W_E, W_V, W_O, W_U: np.swapaxes(C.full_ov_circuit(W_E, W_V, W_O, W_U), 1, 2),
            MISMATCH,
        ),
        "full_qk_circuit": (lambda W_E, W_Q, W_K: C.full_qk_circuit(W_E, W_K, W_Q), MISMATCH),
        "positional_qk_circuit": (lambda W_pos, W_Q, W_K: C.positional_qk_circuit(W_pos, W_K, W_Q), MISMATCH),
        "copying_score": (
            lambda W_E, W_V, W_O, W_U: (lambda e: e.real.sum(-1) / np.abs(e).sum(-1))(
                np.linalg.eigvals(C.full_ov_circuit(W_E, W_V, W_O, W_U))
            ),
            MISMATCH,
        ),
        "composition_score": (lambda W_A, W_B: np.linalg.norm(W_A @ W_B) / np.linalg.norm(W_A) ** 2, MISMATCH),
        "k_composition_scores": (
            lambda W_V0, W_O0, W_Q1, W_K1: C.k_composition_scores(W_V0, W_O0, W_K1, W_Q1),
            MISMATCH,
        ),
        "previous_token_scores": (lambda pattern: np.diagonal(pattern, -1, -2, -1).mean(axis=(1, -1)), SHAPE),
        "induction_scores": (lambda pattern, period: C.induction_scores(pattern, period + 1), MISMATCH),
        "direct_logit_attribution": (lambda head_results, W_U, answers: head_results @ W_U[:, answers], SHAPE),
        "mean_ablate_head": (
            lambda z, head: np.concatenate(
                [
                    z[:, :, :head],
                    z[:, :, head : head + 1].mean(1, keepdims=True).repeat(z.shape[1], 1),
                    z[:, :, head + 1 :],
                ],
                axis=2,
            ),
            MISMATCH,
        ),
        "attn_only_forward": (_unscaled_attn_only_forward, MISMATCH),
        "patch_residual_cell": (_patch_after_layer, MISMATCH),
    },
    "games": {
        "ttt_winner": (lambda boards: np.where((boards[:, G.LINES[:3]] == 1).all(-1).any(-1), 1, 0), MISMATCH),
        "ttt_legal_moves": (lambda boards: boards == 0, MISMATCH),
        "ttt_boards_from_moves": (lambda moves: (3 - G.ttt_boards_from_moves(moves)) % 3, MISMATCH),
        "othello_rays": (lambda size: G.othello_rays(size)[:, ::-1], MISMATCH),
        "othello_flips": (_unclosed_flips, MISMATCH),
        "othello_legal_moves": (lambda boards, player: G.othello_legal_moves(boards, 3 - player), MISMATCH),
        "othello_play": (_play_without_placing, MISMATCH),
        "board_state_labels": (lambda boards, to_move: G.board_state_labels(boards, 3 - to_move), MISMATCH),
        "othello_outcome": (lambda boards: (3 - G.othello_outcome(boards)) % 3, MISMATCH),
        "probe_accuracy": (
            lambda acts, weight, bias, labels: (
                (np.einsum("nd,doc->noc", acts, weight) + bias).argmax(-1) == labels
            ).mean(0),
            MISMATCH,
        ),
    },
    "concepts": {
        "dot_product_std": (lambda q, k: (q * k).sum(-1).std(ddof=1), MISMATCH),
        "mean_max_weight": (lambda scores: (scores.max(-1) / scores.sum(-1)).mean(), MISMATCH),
        "attention_output": (
            lambda x, W_Q, W_K, W_V, causal, scale: K.attention_output(x, W_Q, W_K, W_V, causal, True),
            MISMATCH,
        ),
        "saturation_with_and_without_scaling": (
            lambda x, W_Q, W_K: K.saturation_with_and_without_scaling(x, W_Q, W_K)[::-1],
            MISMATCH,
        ),
        "permutation_gap": (
            lambda x, W_Q, W_K, W_V, perm, causal: np.abs(
                K.attention_output(x[perm], W_Q, W_K, W_V, causal, True)
                - K.attention_output(x, W_Q, W_K, W_V, causal, True)
            ).max(),
            MISMATCH,
        ),
        "last_position_order_gap": (
            lambda W_E, W_pos, W_Q, W_K, W_V, tokens, perm: K.last_position_order_gap(
                W_E, 0 * W_pos, W_Q, W_K, W_V, tokens, perm
            ),
            MISMATCH,
        ),
        "future_influence": (
            lambda x, x_changed, W_Q, W_K, W_V, causal: K.future_influence(x, x_changed, W_Q, W_K, W_V, False),
            MISMATCH,
        ),
        "key_score_dependence": (_unscaled_key_scores, MISMATCH),
    },
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sets")
    return {name: new_set(root / name, name).parent for name in SETS}


@pytest.mark.parametrize("name", list(SETS))
def test_reference_solutions_pass(folders: dict[str, Path], name: str) -> None:
    results = check_folder(folders[name], solutions=True)
    assert [r.status for r in results] == ["PASS"] * len(results), [r for r in results if r.status != "PASS"]
    assert 8 <= len(results) <= 15


@pytest.mark.parametrize("name", list(SETS))
def test_every_problem_has_a_wrong_solution_that_fails_with_its_message(folders: dict[str, Path], name: str) -> None:
    assert set(WRONG[name]) == set(SETS[name].problems)
    for problem, (fn, message) in WRONG[name].items():
        (result,) = checker.check({problem: fn}, folders[name], names=[problem])
        assert result.status == "FAIL" and message in result.message, (problem, result)


def test_a_fresh_folder_is_all_not_yet_and_the_checker_messages(folders: dict[str, Path]) -> None:
    results = check_folder(folders["numpy-transformer"])
    assert {r.status for r in results} == {"NOT YET"}
    assert (
        checker.compare(np.zeros((3, 2)), np.zeros((2, 3)), 1e-6)
        == "wrong shape: got (3, 2), expected (2, 3) (transposed?)"
    )
    message = checker.compare(np.array([0.0, 1.5]), np.array([0.0, 1.0]), 1e-6)
    assert message.startswith("first mismatch at index (1,): got 1.5, expected 1; max error 0.5")
    assert checker.compare(np.array([1.0 + 1e-9]), np.array([1.0]), 1e-6) is None
    assert "NaN at index (0,)" in checker.compare(np.array([np.nan]), np.array([1.0]), 1e-6)
    assert checker.compare(np.array([-np.inf, 1.0]), np.array([-np.inf, 1.0]), 1e-6) is None
    assert checker.compare(None, np.zeros(2), 1e-6).startswith("returned None")


LOOPED = '''
def softmax(x):
    """Stable softmax."""
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        e = np.exp(x[i] - x[i].max(-1, keepdims=True))
        out[i] = e / e.sum(-1, keepdims=True)
    return out


def layer_norm(x, w, b, eps=1e-5):
    """LayerNorm with a comprehension."""
    rows = [(r - r.mean(-1, keepdims=True)) / np.sqrt(r.var(-1, keepdims=True) + eps) * w + b for r in x]
    return np.stack(rows)


def mlp(x, W_in, b_in, W_out, b_out):
    """Comprehensions over names or dict views are not loops over array elements."""
    w = {name: value for name, value in dict(W_in=W_in, W_out=W_out).items()}
    b_in, b_out = (v for v in [b_in, b_out])
    u = x @ w["W_in"] + b_in
    return 0.5 * u * (1 + np.tanh(np.sqrt(2 / np.pi) * (u + 0.044715 * u**3))) @ w["W_out"] + b_out


def _by_rows(f, x):
    return np.stack([f(row) for row in x])


def attention_scores(q, k):
    """Right, but through a helper that loops."""
    return _by_rows(lambda row: row / np.sqrt(q.shape[-1]), np.einsum("bqhe,bkhe->bhqk", q, k))


def causal_mask(scores):
    """A Python loop over rows is allowed here (for this test)."""
    scores = scores.copy()
    n = scores.shape[-1]
    for q in range(n):
        scores[..., q, q + 1 :] = -np.inf
    return scores
'''


def _write_solutions(folder: Path, code: str) -> None:
    """Replace the stubs of problems.py by `code` (the functions after the module header)."""
    path = folder / "problems.py"
    text = path.read_text()
    main_block = text[text.index('\n\nif __name__ == "__main__":') :]
    path.write_text("import numpy as np\n" + code + main_block)


def test_loops_and_comprehensions_are_flagged_unless_the_docstring_allows(tmp_path: Path) -> None:
    folder = new_set(tmp_path / "ex").parent
    _write_solutions(folder, LOOPED)
    results = {r.name: r for r in check_folder(folder)}
    assert results["softmax"].status == "LOOP" and "a `for` loop (line 6)" in results["softmax"].message
    assert results["layer_norm"].status == "LOOP" and "list comprehension" in results["layer_norm"].message
    assert results["causal_mask"].status == "PASS"
    assert results["attention_scores"].status == "LOOP"
    assert "a list comprehension in _by_rows() (line 27)" in results["attention_scores"].message
    assert results["mlp"].status == "PASS"
    assert results["embed"].status == "MISSING"


def test_errors_name_the_learners_line(tmp_path: Path) -> None:
    folder = new_set(tmp_path / "ex").parent
    _write_solutions(folder, "\n\ndef softmax(x):\n    return np.exp(x) @ np.ones((7, 7))\n")
    (result,) = [r for r in check_folder(folder) if r.name == "softmax"]
    assert result.status == "ERROR" and result.message.startswith("case 0: ValueError") and "(line 5)" in result.message
    _write_solutions(folder, "\ndef softmax(x:\n")
    with pytest.raises(ValueError, match=r"problems.py does not run \(line 3\): SyntaxError"):
        check_folder(folder)


def test_model_files_load_as_exported_models() -> None:
    """The `.npz` models load with numpy_ref.load_npz into a torch model that gives the fixtures' logits."""
    import torch

    from circuitlab import HookedTransformer, HookedTransformerConfig
    from circuitlab.numpy_ref import load_npz

    for name, problem in (("numpy-transformer", "forward"), ("circuits", "attn_only_forward")):
        cfg, params = load_npz(SETS[name].data_dir / MODEL_FILE)
        model = HookedTransformer(HookedTransformerConfig.from_dict({**cfg, "dtype": "float64"}))
        model.load_state_dict({k: torch.as_tensor(v) for k, v in params.items()})
        _, _, cases = checker.load_fixtures(SETS[name].data_dir)
        (case,) = cases[problem]
        logits = model(torch.as_tensor(case["in"]["tokens"])).detach().numpy()
        np.testing.assert_allclose(logits, case["out"][None], atol=1e-10)


def test_new_refuses_a_non_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an empty folder"):
        new_set(tmp_path)
    assert main(["exercises", "new", str(tmp_path)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    with pytest.raises(ValueError, match="unknown problem set 'nope'"):
        new_set(tmp_path / "new", "nope")


BLOCKER = """
import runpy, sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "circuitlab"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Blocker())
sys.path.insert(0, ".")
sys.argv = ["problems.py"]
runpy.run_path("problems.py", run_name="__main__")
"""


@pytest.mark.parametrize("name", list(SETS))
def test_problems_py_runs_with_numpy_alone(tmp_path: Path, name: str) -> None:
    """The solutions pasted into the generated problems.py pass under `python -I` with torch and circuitlab
    blocked; the stubs of a fresh folder report NOT YET."""
    folder = new_set(tmp_path / name, name).parent
    fresh = subprocess.run(
        [sys.executable, "-I", "-c", BLOCKER], cwd=folder, capture_output=True, text=True, timeout=120
    )
    assert fresh.returncode == 0 and "NOT YET" in fresh.stdout, fresh.stderr
    source = Path(SETS[name].solutions.__file__).read_text()
    _write_solutions(folder, source)
    solved = subprocess.run(
        [sys.executable, "-I", "-c", BLOCKER], cwd=folder, capture_output=True, text=True, timeout=120
    )
    assert solved.returncode == 0, solved.stdout + solved.stderr
    assert re.search(rf"{len(SETS[name].problems)} pass \(of", solved.stdout), solved.stdout


def test_problem_file_has_stubs_with_the_docstrings() -> None:
    text = problem_file(SETS["numpy-transformer"])
    assert text.startswith("# circuitlab exercises, set numpy-transformer:")
    assert text.count("raise NotImplementedError") == len(SETS["numpy-transformer"].problems)
    assert "np.exp(x - x.max" not in text and "subtract each row's maximum first" in text
    assert "import torch" not in text and "circuitlab." not in text.split("\n", 1)[1].replace(
        "circuitlab.numpy_ref", ""
    )
    assert "_attention" not in problem_file(SETS["circuits"])  # private helpers stay in the package


@pytest.mark.parametrize("name", list(SETS))
def test_shipped_fixtures_equal_a_fresh_build(name: str) -> None:
    """Exact for integers, booleans and strings; floats to 1e-12 (BLAS may order sums differently elsewhere)."""
    fresh = build_set(name)
    shipped_files = sorted(p.name for p in SETS[name].data_dir.glob("*.npz"))
    assert shipped_files == sorted(fresh)
    for file, arrays in fresh.items():
        with np.load(SETS[name].data_dir / file, allow_pickle=False) as data:
            assert sorted(data.files) == sorted(arrays), file
            for key, value in arrays.items():
                stored = data[key]
                assert stored.dtype == value.dtype and stored.shape == value.shape, key
                if value.dtype.kind == "f":
                    np.testing.assert_allclose(stored, value, rtol=1e-12, atol=1e-12, err_msg=key)
                else:
                    assert np.array_equal(stored, value), key
        assert (SETS[name].data_dir / file).stat().st_size < 600 * 1024


def test_circuits_model_is_a_real_induction_model(folders: dict[str, Path]) -> None:
    """The shipped weights have a previous-token head in layer 0 and induction heads in layer 1."""
    _, _, cases = checker.load_fixtures(folders["circuits"])
    prev = [c["out"][None] for c in cases["previous_token_scores"]]
    induction = [c["out"][None] for c in cases["induction_scores"]]
    assert prev[0].max() > 0.7 and induction[1].min() > 0.9 and induction[0].max() < 0.1
    k_comp = cases["k_composition_scores"][0]["out"][None]
    assert k_comp.shape == (2, 2)


@pytest.mark.slow
def test_retraining_the_circuits_model_gives_induction_heads(tmp_path: Path) -> None:
    from circuitlab.exercises.build import load_model, train_induction_model

    *_, model = load_model(train_induction_model())
    tokens = np.concatenate([np.zeros((8, 1), dtype=int), np.tile(np.arange(1, 9), (8, 2))], axis=1)
    import torch

    _, cache = model.run_with_cache(torch.as_tensor(tokens))
    assert C.induction_scores(cache["blocks.1.attn.hook_pattern"].numpy(), 8).max() > 0.9


def test_concepts_point_to_registered_studies() -> None:
    from circuitlab.studies import STUDIES

    named = set(re.findall(r"study `([\w-]+)`", Path(K.__file__).read_text()))
    assert named and named <= set(STUDIES), named - set(STUDIES)


def test_cli_new_check_list(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "ex"
    assert main(["exercises", "new", str(folder), "--set", "games"]) == 0
    assert main(["exercises", "check", str(folder)]) == 0  # NOT YET is not a failure
    out = capsys.readouterr().out
    assert "ttt_winner" in out and "NOT YET" in out and "10 not yet (of 10)" in out
    assert main(["exercises", "check", str(folder), "--solutions"]) == 0
    assert "10 pass (of 10)" in capsys.readouterr().out
    _write_solutions(folder, textwrap.dedent(LOOPED).replace("softmax", "ttt_winner"))
    assert main(["exercises", "check", str(folder)]) == 1
    assert main(["exercises", "list"]) == 0
    assert "numpy-transformer" in capsys.readouterr().out


def test_cli_build_writes_the_same_fixtures(tmp_path: Path) -> None:
    assert main(["exercises", "build", "--set", "games", "--out", str(tmp_path)]) == 0
    with np.load(tmp_path / "games" / "fixtures.npz") as a, np.load(SETS["games"].data_dir / "fixtures.npz") as b:
        assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
    assert not (tmp_path / "games" / MODEL_FILE).exists()
