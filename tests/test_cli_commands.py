"""`circuitlab info / census / patch` end to end on a trained run, a saved model and a Hugging Face
folder with a tokenizer; errors are one line unless --debug."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from circuitlab import HookedTransformer
from circuitlab.analysis import logit_diff, patch_head_out_all_pos, patch_resid_pre
from circuitlab.cli import main

from .tiny_hf import save_tiny_gpt2


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_info_lists_shape_parameters_and_the_hook_points_that_fire(trained_induction, capsys) -> None:
    _, result = trained_induction
    code, out, _ = run_cli(capsys, "info", result.run_dir)
    assert code == 0
    n_params = sum(p.numel() for p in result.model.parameters())
    assert "n_layers 2, n_heads 2, d_model 64" in out and f"parameters: {n_params:,} (" in out
    assert "trained on: repeated_tokens" in out and "blocks.{i}.attn.hook_pattern  (x2)" in out
    code, out, _ = run_cli(capsys, "info", result.run_dir / "final", "--json")
    info = json.loads(out)
    _, cache = result.model.run_with_cache(torch.zeros(1, 4, dtype=torch.long))
    assert sorted(info["hook_points"]) == sorted(cache.keys())  # exactly the hooks a forward pass fills
    assert info["parameters"] == n_params and info["tokenizer"] is False


def test_census_on_a_run_and_on_a_saved_model(trained_induction, tmp_path: Path, capsys) -> None:
    _, result = trained_induction
    code, out, _ = run_cli(capsys, "census", result.run_dir, "--csv", tmp_path / "c.csv", "--json", tmp_path / "c.json")
    assert code == 0
    induction = [line for line in out.splitlines() if line.startswith("L1H") and "induction" in line]
    assert induction and "on task repeated_tokens" in out
    rows = json.loads((tmp_path / "c.json").read_text())["heads"]
    assert len(rows) == 4 and any("induction" in r["roles"] for r in rows if r["layer"] == 1)
    assert (tmp_path / "c.csv").read_text().startswith("head,roles,ablation_loss_increase,")

    result.model.save(tmp_path / "model")
    code, out, _ = run_cli(capsys, "census", tmp_path / "model", "--no-ablation", "--batch", "8")
    assert code == 0 and "induction" in out and "clean loss" not in out


def test_patch_with_token_ids_matches_the_analysis(trained_induction, tmp_path: Path, capsys) -> None:
    _, result = trained_induction
    clean, corrupted = "0 5 6 7 8 9 10 5 6 7 8", "0 5 6 7 8 9 10 5 6 7 11"
    code, out, _ = run_cli(capsys, "patch", result.run_dir, "--clean", clean, "--corrupted", corrupted,
                           "--answer", "9", "--distractor", "12", "--out", tmp_path, "--png")  # fmt: skip
    assert code == 0 and "logit['9'] - logit['12']: clean" in out
    record = json.loads((tmp_path / "patch.json").read_text())
    model = result.model
    c = torch.tensor([[int(t) for t in clean.split()]])
    x = torch.tensor([[int(t) for t in corrupted.split()]])
    metric = logit_diff(9, 12)
    expected = patch_resid_pre(model, c, x, metric, progress=False)
    torch.testing.assert_close(
        torch.tensor(record["resid"][:2], dtype=torch.float64), expected.double(), atol=1e-4, rtol=0
    )
    heads = patch_head_out_all_pos(model, c, x, metric, progress=False).double()
    torch.testing.assert_close(torch.tensor(record["heads"], dtype=torch.float64), heads, atol=1e-4, rtol=0)
    assert record["clean"] == pytest.approx(float(metric(model(c).detach())), abs=1e-4)
    assert record["resid"][-1][-1] == pytest.approx(record["clean"], abs=1e-4)  # the whole last stream: clean run
    html = (tmp_path / "patch.html").read_text()
    assert "10:8" in html and "<script src" not in html
    for name in ("resid.png", "heads.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["0 5 6", "0 5", "9", "12"],
            "error: the clean prompt has 3 tokens ['0', '5', '6'] but the corrupted one has 2",
        ),
        (["hello", "0 5", "9", "12"], "error: --clean 'hello' is not a list of token ids"),
        (["0 5", "0 99", "9", "12"], "error: --corrupted has token ids [99] outside the vocabulary [0, 64)"),
        (["0 5", "0 6", "9", "9"], "error: --answer and --distractor are the same token"),
        (["0 5", "0 6", "9 10", "12"], "error: --answer '9 10' is 2 tokens: the metric compares the logits of one"),
        (["0 5", "0 6", "9", "12, 13, 14"], "error: --distractor '12, 13, 14' is 3 tokens"),
    ],
)
def test_patch_refuses_bad_prompts_in_one_line(trained_induction, tmp_path, capsys, argv, message) -> None:
    _, result = trained_induction
    clean, corrupted, answer, distractor = argv
    code, _, err = run_cli(capsys, "patch", result.run_dir, "--clean", clean, "--corrupted", corrupted,
                           "--answer", answer, "--distractor", distractor, "--out", tmp_path)  # fmt: skip
    assert code == 2 and err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "patch.html").exists()


def test_census_refuses_an_output_folder_that_does_not_exist(trained_induction, tmp_path: Path, capsys) -> None:
    _, result = trained_induction
    code, out, err = run_cli(capsys, "census", result.run_dir, "--csv", tmp_path / "nowhere" / "c.csv")
    assert code == 2 and "--csv" in err and "the folder" in err and "does not exist" in err
    assert "written" not in out and not (tmp_path / "nowhere").exists()
    code, out, err = run_cli(capsys, "census", result.run_dir, "--json", tmp_path)
    assert code == 2 and "is a folder: give a file name" in err and out == ""


def test_errors_are_one_line_unless_debug(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(capsys, "census", tmp_path / "missing")
    assert code == 2 and err.count("\n") == 1 and "not found: expected a run directory" in err
    (tmp_path / "config.json").write_text("{}")
    code, _, err = run_cli(capsys, "info", tmp_path)
    assert code == 2 and err.startswith("error:") and "neither a circuitlab run" in err
    code, _, err = run_cli(capsys, "--debug", "report", tmp_path)
    assert code == 2 and "Traceback" in err and "not a run directory" in err


def test_text_prompts_on_a_model_with_a_tokenizer(tmp_path: Path, capsys) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    corpus = ["Her name was Alex Hart. Tomorrow at lunch time Alex Hart and Alex Carroll met."] * 10
    save_tiny_gpt2(tmp_path / "hf", corpus, vocab_size=400, min_frequency=1)

    code, out, _ = run_cli(capsys, "info", tmp_path / "hf")
    assert code == 0 and "tokenizer: yes" in out and "blocks.{i}.mlp.hook_post  (x2)" in out
    code, out, _ = run_cli(capsys, "census", tmp_path / "hf", "--no-ablation", "--batch", "4")
    assert code == 0 and [line.split()[0] for line in out.splitlines()[2:]] == [
        f"L{l}H{h}" for l in range(2) for h in range(4)
    ]
    clean = "Her name was Alex Hart. Tomorrow at lunch time Alex"
    corrupted = clean.replace("Hart", "Carroll")
    code, out, _ = run_cli(capsys, "patch", tmp_path / "hf", "--clean", clean, "--corrupted", corrupted,
                           "--answer", " Hart", "--distractor", " Carroll", "--out", tmp_path / "p")  # fmt: skip
    assert code == 0, out
    record = json.loads((tmp_path / "p" / "patch.json").read_text())
    model = HookedTransformer.from_pretrained(tmp_path / "hf")
    assert record["tokens"] == model.to_str_tokens(clean) and record["metric"] == "logit[' Hart'] - logit[' Carroll']"
    assert len(record["resid"]) == 3 and len(record["resid"][0]) == len(record["tokens"])
    code, _, err = run_cli(capsys, "patch", tmp_path / "hf", "--clean", clean, "--corrupted", corrupted + " Hart",
                           "--answer", " Hart", "--distractor", " Carroll", "--out", tmp_path / "p")  # fmt: skip
    assert code == 2 and "the clean prompt has" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "patch", tmp_path / "hf", "--clean", clean, "--corrupted", corrupted,
                           "--answer", " Hart", "--distractor", " Carroll met", "--out", tmp_path / "q")  # fmt: skip
    assert code == 2 and "not a single token" in err and not (tmp_path / "q").exists()


@pytest.mark.parametrize("command", ["report", "census", "info", "patch"])
def test_help_describes_each_command(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and out.startswith(f"usage: circuitlab {command}") and "RUN" in out


def test_patch_by_attribution(tmp_path: Path, capsys) -> None:
    from circuitlab.analysis import attribution_patch

    from .conftest import small_model

    model = small_model()
    model.save(tmp_path / "model")
    clean, corrupted = "0 5 6 7 8 9 10", "0 5 6 7 8 9 11"
    argv = ["--clean", clean, "--corrupted", corrupted, "--answer", "9", "--distractor", "12"]
    code, _, _ = run_cli(
        capsys, "patch", tmp_path / "model", *argv, "--out", tmp_path / "out", "--method", "attribution"
    )
    assert code == 0
    record = json.loads((tmp_path / "out" / "patch.json").read_text())
    c, x = (torch.tensor([[int(t) for t in s.split()]]) for s in (clean, corrupted))
    expected = attribution_patch(model, c, x, logit_diff(9, 12), "z", by_pos=False).detach()
    assert record["method"] == "attribution"
    torch.testing.assert_close(torch.tensor(record["heads"]), expected.float(), atol=1e-5, rtol=0)
    exact = patch_head_out_all_pos(model, c, x, logit_diff(9, 12), progress=False)
    assert (expected - exact).abs().max() > 1e-6  # not the exact sweep
