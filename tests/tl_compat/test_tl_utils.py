"""`circuitlab.utils`, `circuitlab.evals` and the TL-named modules, used as TransformerLens code uses them;
numbers checked against circuitlab's native functions or by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from circuitlab import HookedTransformer, utils
from circuitlab.analysis import composition_scores as native_composition_scores
from circuitlab.evals import generate_repeated_tokens, induction_loss, make_repeated_tokens

from ..conftest import small_model
from ._tiny import tiny_gpt2_folder


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> HookedTransformer:
    return HookedTransformer.from_pretrained(tiny_gpt2_folder(tmp_path_factory.mktemp("tiny")))


def test_tl_module_paths_import() -> None:
    from circuitlab import ActivationCache as CacheClass
    from circuitlab import FactoredMatrix as FMClass
    from circuitlab.ActivationCache import ActivationCache
    from circuitlab.FactoredMatrix import FactoredMatrix
    from circuitlab.hook_points import HookedRootModule, HookPoint, NamesFilter  # noqa: F401
    from circuitlab.HookedTransformerConfig import HookedTransformerConfig
    from circuitlab.model import HookedTransformerConfig as ConfigClass

    # the class names on the package stay classes after the same-named modules are imported
    assert FactoredMatrix is FMClass and ActivationCache is CacheClass and HookedTransformerConfig is ConfigClass
    assert isinstance(small_model().hook_embed, HookPoint) and issubclass(HookedTransformer, HookedRootModule)


def test_slice_modes() -> None:
    x = torch.arange(60).reshape(3, 20)
    assert torch.equal(utils.Slice(3).apply(x, dim=-1), x[:, 3]) and utils.Slice(3).mode == "int"
    assert torch.equal(utils.Slice((2, 10, 3)).apply(x, 1), x[:, 2:10:3])
    assert torch.equal(utils.Slice(slice(-4, None)).apply(x, -1), x[:, -4:])
    assert torch.equal(utils.Slice([0, 2]).apply(x), x[[0, 2]]) and utils.Slice([0, 2]).mode == "array"
    assert torch.equal(utils.Slice(torch.tensor([1, 4])).apply(x, 1), x[:, [1, 4]])
    assert torch.equal(utils.Slice(np.array([1])).apply(x), x[[1]])
    assert utils.Slice(None).apply(x) is x and utils.Slice(None).mode == "identity"
    assert list(utils.Slice((2, 6)).indices(10)) == [2, 3, 4, 5] and list(utils.Slice(7).indices()) == [7]
    assert utils.Slice.unwrap(5).apply(x, 1).shape == (3, 1)  # unwrap keeps the dim
    with pytest.raises(ValueError, match="max_ctx"):
        utils.Slice((2, 6)).indices()
    with pytest.raises(ValueError, match="invalid slice"):
        utils.Slice("last")


def test_small_helpers() -> None:
    assert utils.get_act_name("pattern", 0) == "blocks.0.attn.hook_pattern"
    assert utils.get_act_name("scale4ln1") == "blocks.4.ln1.hook_scale"
    t = torch.arange(24.0).reshape(2, 3, 4)
    assert isinstance(utils.to_numpy(t.requires_grad_()), np.ndarray) and utils.to_numpy([1, 2]).shape == (2,)
    assert utils.to_numpy(3).shape == ()
    with pytest.raises(ValueError):
        utils.to_numpy({1: 2})
    assert torch.equal(utils.get_corner(t.detach(), 2), t.detach()[:2, :2, :2])
    fm = utils.FactoredMatrix(torch.randn(2, 5, 3), torch.randn(2, 3, 5))
    assert torch.allclose(utils.get_corner(fm, 2), fm.AB[:2, :2, :2])
    assert utils.remove_batch_dim(torch.ones(1, 3, 4)).shape == (3, 4)
    assert utils.remove_batch_dim(torch.ones(2, 3)).shape == (2, 3)  # unchanged, as in TL
    assert utils.transpose(torch.ones(2, 3, 4)).shape == (2, 4, 3)
    assert utils.is_square(torch.ones(3, 3)) and not utils.is_square(torch.ones(3, 4))
    assert not utils.is_square(torch.ones(2, 3, 3))
    assert utils.is_lower_triangular(torch.ones(3, 3).tril()) and not utils.is_lower_triangular(torch.ones(3, 3))
    assert utils.override_or_use_default_value(True, None) is True
    assert utils.override_or_use_default_value(True, False) is False
    assert utils.override_or_use_default_flag(default_flag=False) is False  # the earlier name
    assert utils.Slice(torch.tensor(0)).mode == "int" and (utils.Slice(0).indices(2) == np.array(0)).all()
    model = small_model()
    assert utils.get_nested_attr(model, "blocks.1.attn.W_Q") is model.blocks[1].attn.W_Q
    utils.set_nested_attr(model, "cfg.use_attn_result", True)
    assert model.cfg.use_attn_result
    resid = torch.randn(2, 3, 5)
    heads = utils.repeat_along_head_dimension(resid, n_heads=4)
    assert heads.shape == (2, 3, 4, 5) and torch.equal(heads[:, :, 3], resid)
    assert utils.ACTIVATION_FN_DICT["gelu_new"] is utils.gelu_new and utils.ACTIVATION_FN_DICT["solu"] is utils.solu
    x = torch.linspace(-3, 3, 13)
    gelu_new = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(utils.gelu_new(x), gelu_new)
    torch.testing.assert_close(utils.solu(x), x * x.softmax(-1))
    torch.testing.assert_close(utils.gelu_pytorch_tanh(x), torch.nn.functional.gelu(x, approximate="tanh"))


def test_losses_take_tl_argument_order() -> None:
    gen = torch.Generator().manual_seed(0)
    logits, tokens = torch.randn(2, 5, 7, generator=gen), torch.randint(0, 7, (2, 5), generator=gen)
    per_token = -logits.log_softmax(-1)[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]
    torch.testing.assert_close(utils.lm_cross_entropy_loss(logits, tokens), per_token.mean())
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    keep = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    torch.testing.assert_close(utils.lm_cross_entropy_loss(logits, tokens, mask), (per_token * keep).sum() / 6)
    torch.testing.assert_close(utils.lm_cross_entropy_loss(logits, tokens, per_token=True), per_token)
    correct = logits.argmax(-1)[:, :-1] == tokens[:, 1:]
    assert torch.equal(utils.lm_accuracy(logits, tokens, per_token=True), correct)
    torch.testing.assert_close(utils.lm_accuracy(logits, tokens), correct.float().mean())


def test_composition_scores_equal_the_native_ones() -> None:
    model = small_model(n_layers=3, dtype=torch.float64)
    tl_k = utils.composition_scores(model.OV, model.QK.T)  # TL: all_composition_scores("K") [L, H, L, H]
    tl_v = utils.composition_scores(model.OV, model.OV)
    later = torch.triu(torch.ones(3, 3, dtype=torch.bool), diagonal=1)[:, None, :, None].expand(3, 4, 3, 4)
    torch.testing.assert_close(tl_k[later], native_composition_scores(model, "K")[later])
    torch.testing.assert_close(tl_v[later], native_composition_scores(model, "V")[later])
    with pytest.raises(AssertionError, match="rdim"):
        utils.composition_scores(model.OV, utils.FactoredMatrix(torch.ones(5, 2), torch.ones(2, 5)))


def test_init_functions_follow_tl_fans() -> None:
    assert utils.calc_fan_in_and_fan_out(torch.empty(7)) == (1, 7)
    assert utils.calc_fan_in_and_fan_out(torch.empty(64, 256)) == (64, 256)
    assert utils.calc_fan_in_and_fan_out(torch.empty(8, 512, 64)) == (512, 512)  # [head, d_model, d_head]
    with pytest.raises(ValueError):
        utils.calc_fan_in_and_fan_out(torch.empty(()))
    torch.manual_seed(0)
    w = torch.empty(400, 600)
    bound = math.sqrt(6 / 1000)
    assert w is utils.init_xavier_uniform_(w) and w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    assert abs(utils.init_xavier_normal_(w, gain=2.0).std() - 2 * math.sqrt(2 / 1000)) < 2e-3
    kaiming = math.sqrt(2) / math.sqrt(400)  # relu gain sqrt(2), fan_in 400
    assert abs(utils.init_kaiming_normal_(w).std() - kaiming) < 2e-3
    assert abs(utils.init_kaiming_uniform_(w, nonlinearity="linear", mode="fan_out").std() - 1 / math.sqrt(600)) < 2e-3


def test_test_prompt_prints_tl_report(gpt2: HookedTransformer, capsys) -> None:
    assert utils.test_prompt("The cat sat on the", "mat", gpt2, top_k=3) is None
    out = capsys.readouterr().out
    assert "Tokenized prompt:" in out and "Top 2th token." in out and "Ranks of the answer tokens: [(' mat'," in out
    utils.test_prompt("The cat sat on the", ["mat", "log"], gpt2, print_details=False)
    out = capsys.readouterr().out
    assert out.startswith("Ranks of the answer tokens: [[(' mat',") and "(' log'," in out


def test_tokenize_and_concatenate_without_datasets(gpt2: HookedTransformer) -> None:
    tok = gpt2.tokenizer
    texts = ["The cat sat on the mat.", "John gave a drink to Mary.", "Alex Hart came back."] * 6
    ds = utils.tokenize_and_concatenate(texts, tok, max_length=16)
    rows = ds["tokens"]
    assert rows.shape[1] == 16 and len(ds) == rows.shape[0] > 1 and ds[0]["tokens"].shape == (16,)
    assert (rows[:, 0] == tok.bos_token_id).all()
    full_text = tok.eos_token.join(texts)
    chunks = utils._chunks(full_text, 20)  # TL's 20 pieces, cut at whitespace within a short lookahead
    assert len(chunks) == 20 and "".join(chunks) == full_text
    stream = [i for chunk in chunks for i in tok(chunk)["input_ids"]]
    assert rows[:, 1:].flatten().tolist() == stream[: rows.shape[0] * 15]  # (equal to TL 2.18's rows, by hand)
    same = utils.tokenize_and_concatenate({"text": texts}, tok, max_length=16, column_name="text")
    assert torch.equal(same["tokens"], rows)
    from_ids = utils.tokenize_and_concatenate(torch.tensor(stream), tok, max_length=16)
    assert torch.equal(from_ids["tokens"], rows)
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    assert next(iter(loader))["tokens"].shape == (2, 16)
    short = utils.tokenize_and_concatenate(["a cat"], tok, max_length=16, add_bos_token=False)
    assert short["tokens"].shape == (1, 16) and short["tokens"][0, -1] == tok.eos_token_id  # padded with EOS


def test_repeated_tokens_and_induction_loss() -> None:
    model = small_model(n_layers=2)
    torch.manual_seed(0)
    rep = make_repeated_tokens(model, seq_len=6, batch=3)
    assert rep.shape == (3, 13) and (rep[:, 0] == 0).all() and torch.equal(rep[:, 1:7], rep[:, 7:])
    model.cfg.extra["bos_token_id"] = 1  # a Llama-style BOS from the pretrained config
    assert (generate_repeated_tokens(model, 4, batch=2)[:, 0] == 1).all()
    assert make_repeated_tokens(model, 4, prepend_bos=False, token_range=(10, 12)).unique().tolist() in (
        [10],
        [11],
        [10, 11],
    )
    torch.manual_seed(1)
    loss = induction_loss(model, batch_size=2, subseq_len=10)
    torch.manual_seed(1)
    half = torch.randint(0, 40, (2, 10))  # TL's draw (from the whole vocabulary when it is under 20000 tokens)
    tokens = torch.cat([half, half], dim=1)
    tokens[:, 0] = 1
    per_token = model(tokens, return_type="loss", loss_per_token=True)
    torch.testing.assert_close(loss, per_token[:, 11:].mean())
    with pytest.raises(ValueError, match="do not fit the context"):
        induction_loss(model)  # TL's default 2 x 384 tokens


def test_submodules_reachable_as_attributes() -> None:
    import circuitlab

    assert circuitlab.utils.get_act_name("k6") == "blocks.6.attn.hook_k"  # `import circuitlab as tl; tl.utils`
    assert callable(circuitlab.head_detector.detect_head) and callable(circuitlab.evals.induction_loss)
    with pytest.raises(AttributeError):
        circuitlab.no_such_module  # noqa: B018
