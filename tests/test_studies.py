"""The one-command studies in quick mode: complete, well-formed verdicts and reports; the robust claims
(induction needs two layers, the induction circuit, no causal mask) on the right side of their thresholds.

Studies share identically-configured trained models within the process (`studies.common.train_preset`
memoises them), so the order below (study 1 first) keeps the total small.
"""

from __future__ import annotations

import json
from pathlib import Path

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
        assert (
            c["passed"]
            == {
                ">": c["measured"] > c["threshold"],
                ">=": c["measured"] >= c["threshold"],
                "<": c["measured"] < c["threshold"],
                "<=": c["measured"] <= c["threshold"],
            }[c["op"]]
        )
    assert verdict["verdict"] == ("PASS" if all(c["passed"] for c in verdict["checks"]) else "FAIL")
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


@pytest.mark.parametrize(
    "argv, message",
    [
        (["study", "induction-needs-to-layers", "--quick"], "did you mean induction-needs-two-layers"),
        (["study"], "give a study NAME or --list"),
        (["study", "phase-change", "--list"], "not both"),
        (["study", "phase-change", "--seeds", "0"], "--seeds must be a positive integer"),
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


@pytest.mark.slow
def test_induction_circuit(tmp_path_factory) -> None:
    quick("induction-needs-two-layers", tmp_path_factory)  # trains the same model first (shared)
    verdict, out = quick("induction-circuit", tmp_path_factory)
    check_complete(verdict, out, "induction-circuit")
    ok = passed(verdict)
    # The induction head, its K-composition, its copying OV circuit and both ablations: the robust part.
    # (The previous-token checks are reported, not asserted: the diagonal stops part-way, see the study.)
    robust = [
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
    assert len(grid) == 12 and {r["d_head"] for r in grid} == {8, 16, 32, 64, 128, 256}


def test_periodic_sequences_quick(tmp_path_factory) -> None:
    verdict, out = quick("periodic-sequences", tmp_path_factory)
    check_complete(verdict, out, "periodic-sequences")
    assert {r["condition"] for r in verdict["measurements"]["per_run"]} == {"wd_on", "wd_off"}


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
    m = verdict["measurements"]
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
    m = verdict["measurements"]
    words = m["example"].split()  # decode drops padding: one word per position only if there is none
    assert all(len(row) == len(words) for row in m["resid_restore"])
    assert words[-1] in m["example"].split()[:-1] and m["name_pos"] == words.index(words[-1]) + 1
