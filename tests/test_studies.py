"""The one-command studies in quick mode: complete, well-formed verdicts and reports; the robust claims
(induction needs two layers, the induction circuit with its positional check on the positions the task
needs, no causal mask, the attention-score variance, an induction head on periodic sequences) on the right
side of their thresholds; the verdict logic (PASS / FAIL / INCONCLUSIVE, per-seed fractions), --workers,
--summary, and a hand-set offset head that the periodic study's induction check must reject.

Studies share identically-configured trained models within the process (`studies.common.train_preset`
memoises them), so the order below (study 1 first) keeps the total small.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from circuitlab.cli import main
from circuitlab.studies import STUDIES, run_study

from .tiny_hf import save_tiny_gpt2

ALL = [
    "induction-needs-two-layers",
    "induction-circuit",
    "no-causal-mask",
    "no-positional-embedding",
    "attention-scaling",
    "periodic-sequences",
    "phase-change",
    "name-copy-patching",
]
_DONE: dict[str, tuple[dict, Path]] = {}


def quick(name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """Run a study once per session in quick mode with one seed; its verdict (as written) and folder."""
    if name not in _DONE:
        out = tmp_path_factory.mktemp(name)
        run_study(name, out, seeds=1, quick=True)
        _DONE[name] = (json.loads((out / "verdict.json").read_text()), out)
    return _DONE[name]


def check_complete(verdict: dict, out: Path, name: str) -> None:
    assert verdict["study"] == name and verdict["claim"] == STUDIES[name].claim
    assert verdict["seeds"] == [0] and verdict["quick"] is True and verdict["wall_time_s"] > 0
    assert verdict["checks"], "a study without checks tests nothing"
    for c in verdict["checks"]:
        assert set(c) >= {"name", "measured", "op", "threshold", "description", "passed"}
        assert isinstance(c["measured"], float) and c["op"] in (">", ">=", "<", "<=")
        value_passed = (
            {
                ">": c["measured"] > c["threshold"],
                ">=": c["measured"] >= c["threshold"],
                "<": c["measured"] < c["threshold"],
                "<=": c["measured"] <= c["threshold"],
            }[c["op"]]
            if c["min_fraction"] is None
            else c["fraction_passed"] >= c["min_fraction"]
        )
        assert c["passed"] == value_passed
    failed_pre = any(c["precondition"] and not c["passed"] for c in verdict["checks"])
    expected = "INCONCLUSIVE" if failed_pre else ("PASS" if all(c["passed"] for c in verdict["checks"]) else "FAIL")
    assert verdict["verdict"] == expected
    assert verdict["measurements"]
    html = (out / "report.html").read_text()
    assert verdict["claim"][:40] in html and "Plotly" in html and html.count('class="figure"') >= 1


def passed(verdict: dict) -> dict[str, bool]:
    return {c["name"]: c["passed"] for c in verdict["checks"]}


def test_every_study_is_listed_with_its_claim(capsys) -> None:
    assert sorted(ALL) == sorted(n for n in STUDIES if n in ALL)
    assert main(["study", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ALL:
        assert name in out
        assert STUDIES[name].claim.split()[0] in out
        quick_s = STUDIES[name].measured_s[0]
        line = next(l for l in out.splitlines() if l.startswith(name + "  "))
        assert "quick " in line and "full " in line  # measured wall times, or "not measured"
        assert (quick_s is None) == ("quick not measured" in line)


def test_make_studies_runs_every_registered_study() -> None:
    """`make studies` names its studies by hand (in the order they run): none may be missing or unknown."""
    import re

    text = (Path(__file__).parents[1] / "Makefile").read_text()
    listed = re.search(r"^STUDIES := (.*?)\n\S", text, re.S | re.M).group(1).replace("\\\n", " ").split()
    assert sorted(listed) == sorted(STUDIES) and len(set(listed)) == len(listed)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["study", "induction-needs-to-layers", "--quick"], "did you mean induction-needs-two-layers"),
        (["study"], "give a study NAME or --list"),
        (["study", "phase-change", "--list"], "not both"),
        (["study", "phase-change", "--seeds", "0"], "--seeds must be a positive integer"),
        (["study", "phase-change", "--workers", "0"], "--workers must be a positive integer"),
    ],
)
def test_cli_errors_are_one_clear_line(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.slow
def test_induction_needs_two_layers(tmp_path_factory) -> None:
    verdict, out = quick("induction-needs-two-layers", tmp_path_factory)
    check_complete(verdict, out, "induction-needs-two-layers")
    assert verdict["verdict"] == "PASS", verdict["checks"]
    row = verdict["measurements"]["per_seed"][0]
    assert row["2L_late_loss"] < row["1L_late_loss"]
    assert (out / "models" / "2L_seed0" / "model.safetensors").exists()


def test_induction_circuit(tmp_path_factory) -> None:  # quick: 600 steps, one seed (~5-10 s)
    verdict, out = quick("induction-circuit", tmp_path_factory)
    check_complete(verdict, out, "induction-circuit")
    ok = passed(verdict)
    # The induction head, its K-composition, its copying OV circuit, both ablations and the positional QK
    # circuit on the positions the task needs: the robust part.
    robust = [
        "prev_token_L0H0_worst",
        "pos_qk_below_diagonal_worst",
        "induction_L1H0_worst",
        "k_composition_ratio_worst",
        "copy_top1_L1H0_worst",
        "copy_eigen_L1H0_worst",
        "ablate_L0H0_increase_worst",
        "ablate_L1H0_increase_worst",
    ]
    assert all(ok[name] for name in robust), verdict["checks"]
    html = (out / "report.html").read_text()
    for piece in ("previous-token head", "K-composing", "OV circuit copies", "Ablation"):
        assert piece in html


@pytest.mark.slow
def test_no_causal_mask(tmp_path_factory) -> None:
    quick("induction-needs-two-layers", tmp_path_factory)  # its 2-layer model is the causal control
    verdict, out = quick("no-causal-mask", tmp_path_factory)
    check_complete(verdict, out, "no-causal-mask")
    assert verdict["verdict"] == "PASS", verdict["checks"]
    row = verdict["measurements"]["per_seed"][0]
    # The control: with the mask, training and generation see the same thing.
    assert row["causal_generation_loss"] == pytest.approx(row["causal_train_loss"], abs=1e-3)


@pytest.mark.parametrize("name", ["no-positional-embedding", "phase-change", "name-copy-patching"])
@pytest.mark.slow
def test_exploratory_studies_write_complete_verdicts(name, tmp_path_factory) -> None:
    verdict, out = quick(name, tmp_path_factory)
    check_complete(verdict, out, name)


def test_cli_runs_a_study(tmp_path, capsys) -> None:
    out = tmp_path / "scaling"
    code = main(["study", "attention-scaling", "--quick", "--seeds", "1", "--out", str(out)])
    verdict = json.loads((out / "verdict.json").read_text())
    check_complete(verdict, out, "attention-scaling")
    assert code == (0 if verdict["verdict"] == "PASS" else 1)
    assert f"attention-scaling: {verdict['verdict']}" in capsys.readouterr().out
    grid = verdict["measurements"]["init_grid"]
    assert len(grid) == 36 and {r["d_head"] for r in grid} == {8, 16, 32, 64, 128, 256}
    assert {r["init_range"] for r in grid} == {0.02, 0.1, 0.2}
    # The robust part of the claim (Vaswani et al.'s footnote: q . k has variance d_k): the unscaled score
    # spread grows like sqrt(d_head), the scaled one stays flat; the refuted gradient claim is explained.
    ok = passed(verdict)
    assert ok["unscaled_score_sd_slope_low"] and ok["unscaled_score_sd_slope_high"] and ok["scaled_score_sd_flat"]
    assert abs(verdict["measurements"]["trends"]["unscaled_sd"]["slope"] - 0.5) < 0.05
    assert not ok["qk_grad_ratio_at_max_d_head"] and "refuted" in verdict["explanation"]


def test_periodic_sequences_quick_grows_an_induction_head(tmp_path_factory) -> None:
    """Quick mode (the Séminaire set-up, one arm, one seed, ~45 s): the attention-only model learns the task
    and grows a previous-token head (where needed) and an induction head, both used, diagonal stopping early."""
    verdict, out = quick("periodic-sequences", tmp_path_factory)
    check_complete(verdict, out, "periodic-sequences")
    assert verdict["verdict"] == "PASS", verdict["checks"]
    robust = {"task_learned", "previous_token_head", "induction_head", "ablate_L0_head", "ablate_L1_head"}
    assert robust <= set(passed(verdict)) and all(passed(verdict)[n] for n in robust)
    arm = verdict["measurements"]["per_seed"][0]["arms"]["fresh"]
    assert len(arm["curves"]["prev"]) == 91 and (out / "models" / "fresh_seed0" / "model.safetensors").exists()


def test_name_copy_patching_on_a_pretrained_folder(tmp_path, monkeypatch) -> None:
    """The natural-text hook: a Hugging Face folder with a tokenizer (random GPT-2 weights, a BPE trained
    here on the prompts) runs the same patching on text prompts; only well-formedness is checked."""
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from circuitlab.studies import name_copy_patching as study
    from circuitlab.tasks.name_copy import FIRST_NAMES, LAST_NAMES

    folder = tmp_path / "hf"
    corpus = [study.NATURAL_TEMPLATE.format(F=f, L=l) + "." for f in FIRST_NAMES for l in LAST_NAMES]
    save_tiny_gpt2(folder, corpus, special="<|endoftext|>", vocab_size=400)

    monkeypatch.setenv(study.ENV_MODEL, str(folder))
    out = tmp_path / "study"
    run_study("name-copy-patching", out, seeds=1, quick=True)
    verdict = json.loads((out / "verdict.json").read_text())
    check_complete(verdict, out, "name-copy-patching")
    m = verdict["measurements"]["per_seed"][0]["arms"]["natural"]
    assert str(folder) in m["source"] and m["n_prompts"] >= 2 and m["training_steps"] == 0
    assert "Her name was" in m["example"] and m["name_pos"] is not None
    assert len(m["resid_restore"]) == 3 and len(m["head_restore"]) == 2
    # patching everything at the final residual restores the clean run exactly
    assert m["resid_restore"][-1][-1] == pytest.approx(1.0, abs=1e-4)

    monkeypatch.setenv(study.ENV_MODEL, str(tmp_path / "missing"))
    with pytest.raises(Exception, match="missing"):
        run_study("name-copy-patching", tmp_path / "again", seeds=1, quick=True)


@pytest.mark.slow
def test_name_copy_patching_prompts_are_aligned_and_unpadded(tmp_path_factory) -> None:
    verdict, _ = quick("name-copy-patching", tmp_path_factory)
    m = verdict["measurements"]["per_seed"][0]["arms"]["1 head"]
    words = m["example"].split()  # decode drops padding: one word per position only if there is none
    assert all(len(row) == len(words) for row in m["resid_restore"])
    assert words[-1] in m["example"].split()[:-1] and m["name_pos"] == words.index(words[-1]) + 1
    # the three people's last names, the asked one among them; layer 0's single head's attention to them
    assert len(m["last_name_pos"]) == 3 and m["name_pos"] in m["last_name_pos"]
    assert [len(layer) for layer in m["early_attention_final_to_last_names"]] == [1]
    assert 0 <= m["early_attention_final_to_last_names"][0][0] <= 1
    assert [c["name"].split(": ")[0] for c in verdict["checks"]] == ["1 head"] * 4
    # quick mode is the full study's 1-head arm on one seed: the whole claim holds there
    assert verdict["verdict"] == "PASS", verdict["checks"]


def _offset_head_model(offset: int) -> Any:
    """A hand-set 2-layer attention-only model whose L1 head attends from q to q - offset and copies that
    token (L0 is switched off): it solves periodic sequences of period offset + 1 without induction."""
    import math

    import torch

    from circuitlab.model import HookedTransformer, HookedTransformerConfig

    vocab, n_ctx, n_freq = 100, 91, 14
    d_model, d_head = vocab + 2 * n_freq, vocab
    cfg = HookedTransformerConfig(
        n_layers=2,
        n_heads=1,
        d_model=d_model,
        d_head=d_head,
        n_ctx=n_ctx,
        d_vocab=vocab,
        attn_only=True,
        normalization_type=None,
        positional_embedding_type="standard",
    )
    model = HookedTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.W_E[:, :vocab] = torch.eye(vocab)  # tokens one-hot in dims 0..99
        angle = 2 * math.pi * torch.arange(1, n_freq + 1) / (2 * n_ctx)  # harmonics: one peak over 0..90
        pos = torch.arange(n_ctx)[:, None] * angle  # [pos, freq]
        model.pos_embed.W_pos[:, vocab::2], model.pos_embed.W_pos[:, vocab + 1 :: 2] = pos.cos(), pos.sin()
        attn = model.blocks[1].attn
        # QK: q . k = scale * sum_freq cos(angle (q - offset - k)): the query rotated back by `offset`
        c, s = (offset * angle).cos(), (offset * angle).sin()
        rot = torch.zeros(2 * n_freq, 2 * n_freq)
        rot[0::2, 0::2], rot[1::2, 1::2] = torch.diag(c), torch.diag(c)
        rot[0::2, 1::2], rot[1::2, 0::2] = torch.diag(-s), torch.diag(s)
        attn.W_Q[0, vocab:, : 2 * n_freq] = 400.0 * rot  # sharp: neighbouring keys score only 4% less
        attn.W_K[0, vocab:, : 2 * n_freq] = torch.eye(2 * n_freq)
        attn.W_V[0, :vocab, :] = torch.eye(vocab)  # OV copies the attended token...
        attn.W_O[0, :, :vocab] = 10.0 * torch.eye(vocab)  # ...louder than the current token's skip path
        model.unembed.W_U[:vocab] = torch.eye(vocab)
    return model


def test_periodic_induction_check_rejects_a_fixed_offset_head() -> None:
    """With a fixed period 30 a hand-set offset head (q -> q-29, copy) solves the task without induction;
    the study's induction measure (variable periods, summed over copies, averaged per period) rejects it."""
    from circuitlab.studies import periodic_sequences as study
    from circuitlab.tasks.periodic import Periodic

    model = _offset_head_model(offset=29)
    fixed = Periodic(min_period=30, max_period=30).generate(64, seed=0)
    assert study.later_period_loss(model, fixed) < 0.1 < study.MAX_LATER_LOSS  # solved, by an offset head
    assert study.head_measures(model, fixed)["induction"] > 0.95  # on the fixed period it looks like induction
    variable = Periodic(min_period=15, max_period=30).generate(study.EVAL_BATCH, study.EVAL_SEED)
    measured = study.head_measures(model, variable)
    assert measured["induction"] < study.INDUCTION_LEVEL  # rejected: only periods dividing 30 are read right
    per_period = measured["induction_per_period"]
    assert per_period[30] > 0.95 and per_period[15] > 0.8 and max(v for p, v in per_period.items() if 30 % p) < 0.1
    assert study.later_period_loss(model, variable) > 2.0  # and it does not solve the variable-period task


# ---- verdict logic, seeds with spread, workers, summary (no training) ---------------------------------
def test_checks_over_seeds_pass_on_their_stated_fraction() -> None:
    from circuitlab.studies import Check
    from circuitlab.studies.base import status_of

    c = Check.over_seeds("x", [0.1, 0.5, 0.9, 0.7, 0.6], ">=", 0.5, min_fraction=0.8)
    assert c.fraction_passed == 0.8 and c.passed and c.measured == 0.6
    assert c.spread == {"min": 0.1, "median": 0.6, "max": 0.9}
    assert c.measured_text() == "0.6 [0.1, 0.9]" and "80% of seeds (80% did)" in c.test_text()
    strict = Check.over_seeds("x", [0.1, 0.5, 0.9, 0.7, 0.6], ">=", 0.5, min_fraction=1.0)
    assert not strict.passed
    claim_fails = Check("claim", 0.1, ">=", 0.5)
    pre_fails = Check("learned", 3.0, "<=", 0.5, precondition=True)
    assert status_of([c]) == "PASS" and status_of([c, claim_fails]) == "FAIL"
    assert status_of([c, claim_fails, pre_fails]) == "INCONCLUSIVE"  # the claim was not tested
    assert pre_fails.row()["result"] == "INCONCLUSIVE" and claim_fails.row()["result"] == "FAIL"
    with pytest.raises(ValueError, match="min_fraction"):
        Check("x", 1.0, ">=", 0.5, min_fraction=0.5)  # a fraction needs per-seed values


def test_a_verdict_shows_as_a_table_in_a_notebook() -> None:
    from circuitlab.studies import Check
    from circuitlab.studies.base import Verdict

    checks = [Check.over_seeds("x", [0.1, 0.6, 0.9], ">=", 0.5, min_fraction=0.6), Check("<y>", 0.1, ">=", 0.5)]
    verdict = Verdict("demo", "a claim & more", checks, {}, [0, 1, 2], quick=True, explanation="why it failed")
    table = verdict.table()
    assert [r["result"] for r in table] == ["PASS", "FAIL"] and table[0]["measured"] == "0.6 [0.1, 0.9]"
    html = verdict._repr_html_()
    assert ">FAIL</b>" in html and "a claim &amp; more" in html and "&lt;y&gt;" in html and "why it failed" in html
    assert repr(verdict).startswith("demo: FAIL (3 seeds, quick=True")


def _fake_seed(out_dir: Path, seed: int, quick: bool) -> dict:
    import os

    return {"seed": seed, "pid": os.getpid(), "value": float(seed)}


def _fake_combine(out_dir: Path, per_seed: list[dict], quick: bool) -> Any:
    from circuitlab.studies import Check, StudyResult
    from circuitlab.viz.page import Page

    check = Check.over_seeds("value", [r["value"] for r in per_seed], "<=", 0.5, min_fraction=0.5, precondition=True)
    return StudyResult([check], {"per_seed": per_seed}, Page("fake"), "half the seeds are small")


def test_workers_run_seeds_in_parallel_processes_and_summary_lists_every_study(tmp_path, monkeypatch, capsys) -> None:
    import os

    from circuitlab.studies import Study

    monkeypatch.setitem(
        STUDIES, "fake-study", Study("fake-study", "A fake claim.", run_seed=_fake_seed, combine=_fake_combine)
    )
    runs = tmp_path / "runs"
    verdict = run_study("fake-study", runs / "fake-study", seeds=3, workers=2)
    pids = {r["pid"] for r in verdict.measurements["per_seed"]}
    assert [r["seed"] for r in verdict.measurements["per_seed"]] == [0, 1, 2]
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # seeds ran in the worker processes
    assert verdict.status == "INCONCLUSIVE"  # 1 of 3 seeds <= 0.5: the precondition fails
    written = json.loads((runs / "fake-study" / "verdict.json").read_text())
    assert written["verdict"] == "INCONCLUSIVE" and written["explanation"] == "half the seeds are small"
    assert written["checks"][0]["spread"] == {"min": 0.0, "median": 1.0, "max": 2.0}

    doc = tmp_path / "docs" / "studies.md"
    assert main(["study", "--summary", str(runs), "--summary-out", str(doc)]) == 0
    text = doc.read_text()
    assert "| fake-study | A fake claim. |" in text and "**INCONCLUSIVE**" in text
    assert "1 [0, 2]" in text and "[report](../runs/fake-study/report.html)" in text
    for name in ALL:  # studies without a verdict are listed, not hidden
        assert f"| {name} |" in text
    assert "not run" in text
    wall = written["wall_time_s"] / 60
    assert f"Full runs listed: 1, {wall:.0f} min of wall time together" in text
    assert main(["study", "--summary", str(tmp_path / "nothing")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_fit_slope_interval() -> None:
    import torch

    from circuitlab.studies.common import fit_slope

    exact = fit_slope([0, 1, 2, 3], [1, 3, 5, 7])
    assert exact["slope"] == pytest.approx(2.0) and exact["hi"] - exact["lo"] == pytest.approx(0.0, abs=1e-9)
    gen = torch.Generator().manual_seed(0)
    covered = 0
    for _ in range(200):  # the 95% interval covers the true slope ~95% of the time
        x = torch.arange(10.0)
        fit = fit_slope(x.tolist(), (0.5 * x + torch.randn(10, generator=gen)).tolist())
        covered += fit["lo"] <= 0.5 <= fit["hi"]
    assert 180 <= covered <= 199
    with pytest.raises(ValueError, match="distinct x"):
        fit_slope([1, 1, 1], [1, 2, 3])


def test_fine_tune_reshape_rank_against_random_heads() -> None:
    from circuitlab.studies.fine_tune_circuits import SCORES, reshape_rank

    def head(value: float, roles: list[str]) -> dict:
        return {"roles": roles, "scores": dict.fromkeys(SCORES, value)}

    before = {f"L0H{i}": head(0.0, ["induction"] if i < 2 else []) for i in range(8)}
    moved = {h: head(1.0 if i < 2 else 0.01 * i, []) for i, h in enumerate(before)}  # the role heads move most
    r = reshape_rank(before, moved)
    assert r["role_heads"] == 2 and r["other_heads"] == 6 and r["rank"] > 0.95
    still = {h: head(0.0 if i < 2 else 1.0, []) for i, h in enumerate(before)}  # only other heads move
    assert reshape_rank(before, still)["rank"] < 0.05
    nobody = {h: head(0.0, []) for h in before}
    assert reshape_rank(nobody, moved)["role_heads"] == 0  # -> the precondition fails: INCONCLUSIVE


def test_progress_lines_follow_the_flag(tmp_path, monkeypatch, capsys) -> None:
    from circuitlab.studies import Study

    monkeypatch.setitem(
        STUDIES, "fake-study", Study("fake-study", "A fake claim.", run_seed=_fake_seed, combine=_fake_combine)
    )
    run_study("fake-study", tmp_path / "a", seeds=2, progress=True)
    err = capsys.readouterr().err
    assert "fake-study: 2 seed(s), full mode" in err and "seed 1 (2/2)" in err and "combining" in err
    run_study("fake-study", tmp_path / "b", seeds=2, progress=False)
    assert capsys.readouterr().err == ""
    assert main(["study", "fake-study", "--seeds", "1", "--no-progress", "--out", str(tmp_path / "c")]) == 0
    captured = capsys.readouterr()  # seed 0 has value 0 <= 0.5: PASS, and nothing on stderr
    assert captured.err == "" and "fake-study: PASS" in captured.out and "half the seeds are small" in captured.out
