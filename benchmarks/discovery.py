"""Circuit discovery scored against known circuits: EAP, EAP-IG and ACDC on the constructed models
(`circuitlab.compiled`) and on trained induction and name-copy models, plus EAP's time on a GPT-2-small-shaped graph.

Per method and model: ROC AUC of the edge ranking against the true edges, faithfulness of the top-k
circuit (k = the number of true edges; for ACDC its own circuit), the fewest edges reaching 0.9
faithfulness (top-k of the ranking), and wall time of the method. Trained models: the `induction` preset
with one head per layer (600 steps) and the preset itself (2 heads per layer), whose agreed circuit joins
the previous-token heads to the induction heads (`induction_problem`); the `name_copy` preset with one head
per layer and the preset itself (4 heads, 800 steps), corrupted at the asked person's earlier first name
(`name_copy_problem`: previous-token heads -> K input of the induction heads -> logits, the heads picked by
their attention on the task's prompts, not by any method). Then the targets of issue 14, and EAP against
EAP-IG over seeds, ablations (corrupted run / mean) and IG steps (`ranking_table`).

Run: `PYTHONPATH=src .venv/bin/python benchmarks/discovery.py [--threads 1] [--seeds 3] [--name-copy-seeds N]
[--no-gpt2]`.

Measured (2 shared CPU cores, other jobs running, --threads 1 --seeds 3 --name-copy-seeds 2: 546 s in all
with training; seed 0 in the main table):
ROC AUC 1.000 for EAP-IG on every model; EAP 1.000 except on gated-mlp (0.792, top-3 faithfulness 0.000:
built to defeat first-order attribution); ACDC 1.000 except the 4-head name-copy preset (0.998). Agreed
circuits of the trained models: faithfulness 1.012 (induction 1-head, 5 edges), 1.009 (preset, 12),
0.988 (name-copy 1-head, 3 edges; complement 0.0001), 0.811 (name-copy preset, 9 edges: 4 induction heads
share the answer). ACDC's circuit = EAP's top-k on the built models except gated-mlp. EAP on the
GPT-2-small-shaped graph (32,491 edges, 8 x 16 tokens): 3.4 s. Every method takes under 1.3 s here.

EAP vs EAP-IG (target: EAP-IG >= EAP in faithfulness on the trained models). Comparing circuits of equal
size (k = |agreed|, as Hanna et al. 2024 do), corrupted ablation, mean (sd) over seeds 0-2:
- induction preset (2 heads): EAP-IG 0.943 (0.061) vs EAP 0.632 (0.329); per seed +0.000 / +0.454 / +0.479.
  The tie measured before was seed 0 alone; on seeds 1 and 2 EAP's top 12 is another, less faithful set.
- induction 1-head (12-edge graph), name-copy 1-head (12 edges) and name-copy preset (81 edges): the same
  top-k set, so equal faithfulness (1.003, 0.996, 0.676); curve areas within 0.01 (name-copy preset 0.897
  vs 0.893). A tie for an explained reason, not a silent pass: both rank the agreed edges first although
  EAP's estimates are far off (relative error against the exact single-edge effects 0.80 for EAP vs 0.007
  for EAP-IG on name-copy 1-head: saturated attention flattens the gradient at the clean point); ranking
  needs only the order, and on these small graphs the true edges are far ahead of the rest.
- IG steps 5, 20, 50 give the same rankings (errors 0.59 / 0.59 / 0.59 on induction 1-head).
- Mean ablation gives the same picture on the induction models (preset 0.948 vs 0.638). On name-copy it is
  no test: the mean over prompts of four templates at each position is not a "no match" input, the agreed
  circuit is derived for the corrupted-run ablation, and the top-k circuits keep about 0 (1-head) or
  swing with a near-zero denominator (preset: sd 2.4).
The area over all k hides most of this (it averages the flat tail where every ranking is complete).
The figures above were measured with the name-copy models at 800 steps. The name-copy-patching study found
that at 800 steps two of three seeds of the 4-head preset are still on the log-3 plateau and that 1600 steps
train all three, so the default is now --name-copy-steps 1600. Measured with it (main table, seed 0,
`--threads 1 --seeds 0 --name-copy-steps 1600 --no-gpt2`, CI running beside it): the 4-head preset's agreed
circuit keeps 1.002 (9 edges; 0.811 at 800 steps) and every method reaches 0.9 with exactly those 9 edges; on
the 1-head name-copy model, trained longer, attention saturates and EAP fails outright: AUC 0.889, top-3
faithfulness -0.002 (EAP-IG 1.000 and 1.004, ACDC 1.000 and 1.004); curve areas EAP 0.541 vs EAP-IG 0.793
(1-head) and 0.910 vs 0.939 (preset). Every issue-14 target line is then True except "ACDC and EAP agree" on
gated-mlp (built to defeat first-order attribution). The EAP vs EAP-IG seed table was not re-run at 1600.
"""

from __future__ import annotations

import argparse
import time

import torch

from circuitlab import HookedTransformer, HookedTransformerConfig
from circuitlab.analysis.discovery import ALL_METHODS, Ablation, Circuit, discover, edge_attribution
from circuitlab.analysis.discovery.problems import induction_problem, name_copy_problem
from circuitlab.analysis.metrics import logit_diff
from circuitlab.compiled import known_circuits

GPT2_SMALL = dict(
    n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=1024, act_fn="gelu_new"
)
ACDC_THRESHOLD = 0.01
IG_STEPS = 20
IG_STEPS_SWEEP = (5, 20, 50)


# (label, preset, heads per layer, problem builder): the trained models with an agreed circuit.
TRAINED = (
    ("induction 1-head", "induction", 1, induction_problem),
    ("induction preset", "induction", 2, induction_problem),
    ("name-copy 1-head", "name_copy", 1, name_copy_problem),
    ("name-copy preset", "name_copy", 4, name_copy_problem),
)


def trained_problems(
    steps: dict[str, int], seed: int = 0, presets: tuple[str, ...] = ("induction", "name_copy")
) -> list:
    """One problem per entry of TRAINED (of `presets`), its model trained for steps[preset] with `seed`."""
    from circuitlab.studies.common import train_preset

    out = []
    for label, preset, heads, build in TRAINED:
        if preset not in presets:
            continue
        task, result = train_preset(preset, seed, steps[preset], model={"n_heads": heads})
        problem = build(result.model, task, seed=seed)
        problem.name = f"{label} (trained)"
        out.append(problem)
    return out


def score(problem) -> dict[str, dict]:
    exp = Ablation(problem.model, problem.clean, problem.corrupted, problem.metric)
    truth, k = problem.truth, len(problem.true_edges)
    rows = {"true circuit": {"faith": exp.evaluate(Circuit(exp.graph, truth)), "k": k}}
    for method in ALL_METHODS:
        found = discover(problem, method, 0.9, IG_STEPS, ACDC_THRESHOLD, experiment=exp)
        top_k = found.circuit if method == "acdc" else Circuit.top_k(exp.graph, found.scores, k)
        rows[method] = {
            "auc": found.roc_auc,
            "faith": exp.evaluate(top_k),  # top-k faithfulness (ACDC: its own circuit)
            "k90": len(found.circuit),  # fewest top edges reaching 0.9 (ACDC: its circuit's size)
            "area": found.curve.area,
            "s": found.seconds,
            "scores": found.scores,
            "circuit": found.circuit,
        }
    rows["graph"] = {"edges": exp.graph.n_edges}
    return rows


def cell(row: dict) -> str:
    if "auc" not in row:
        return f"faith {row['faith']:.3f} ({row['k']} edges)"
    return f"AUC {row['auc']:.3f} F@k {row['faith']:.3f} k90 {row['k90']} {row['s']:.2f}s"


def method_ranking(problem, ablation: str) -> dict[str, dict]:
    """EAP and EAP-IG (at several step counts) on one problem and ablation: faithfulness of the top-k circuit at
    k = |agreed circuit| (circuits of equal size, as Hanna et al. 2024 compare them), the curve's area over all
    k and over k <= 2 |agreed|, and how far each estimate is from the exact effect of ablating each edge alone."""
    exp = Ablation(problem.model, problem.clean, problem.corrupted, problem.metric, ablation)
    g, k = exp.graph, len(problem.true_edges)
    alone = ~torch.eye(g.n_edges, dtype=torch.bool)  # row i: every edge but i kept
    exact = exp.metrics(alone) - exp.clean_metric
    out = {}
    for method, steps in (("eap", 1), *(("eap-ig", n) for n in IG_STEPS_SWEEP)):
        scores = edge_attribution(
            problem.model, problem.clean, problem.corrupted, problem.metric, method, steps, ablation
        ).double()
        curve = exp.curve(scores, n_points=None)
        f = curve.faithfulness
        out[method if method == "eap" else f"eap-ig {steps}"] = {
            "f@k": f[k],
            "area": curve.area,
            "area<=2k": sum(f[: 2 * k + 1]) / (2 * k + 1),
            "error": float((scores - exact).norm() / exact.norm()),
        }
    return out


def ranking_table(seeds: list[int], steps: dict[str, int], name_copy_seeds: int) -> None:
    """EAP vs EAP-IG over seeds, ablations and IG steps on the trained models (target: EAP-IG >= EAP); the
    name-copy models (minutes of training each) on the first `name_copy_seeds` seeds only."""
    keys = ("f@k", "area", "area<=2k", "error")
    rows: dict[tuple[str, str], list[dict]] = {}
    for i, seed in enumerate(seeds):
        presets = ("induction", "name_copy") if i < name_copy_seeds else ("induction",)
        for problem in trained_problems(steps, seed, presets):
            for ablation in ("corrupted", "mean"):
                rows.setdefault((problem.name, ablation), []).append(method_ranking(problem, ablation))
    methods = ["eap", *(f"eap-ig {n}" for n in IG_STEPS_SWEEP)]
    print(f"\nEAP vs EAP-IG on the trained models, seeds {seeds}: mean (sd) over seeds")
    print(
        "  f@k: faithfulness of the top-k circuit, k = |agreed circuit| (equal sizes); area: mean over all k; "
        "area<=2k: mean over k <= 2|agreed|;\n  error: ||score - exact single-edge ablation effect|| / ||exact||"
    )
    print(f"{'model':28}{'ablation':11}{'method':12}" + "".join(f"{k:>17}" for k in keys) + "   IG-EAP in f@k per seed")
    for (name, ablation), per_seed in rows.items():
        for m in methods:
            stats = []
            for key in keys:
                v = torch.tensor([r[m][key] for r in per_seed], dtype=torch.float64)
                stats.append(f"{float(v.mean()):9.3f} ({float(v.std()) if len(v) > 1 else 0.0:.3f})")
            diff = " ".join(f"{r[m]['f@k'] - r['eap']['f@k']:+.3f}" for r in per_seed) if m != "eap" else ""
            print(f"{name:28}{ablation:11}{m:12}" + "".join(f"{x:>17}" for x in stats) + f"   {diff}")


def gpt2_eap_seconds() -> tuple[float, int]:
    model = HookedTransformer(HookedTransformerConfig(**GPT2_SMALL, seed=0))
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 50257, (8, 16), generator=gen)
    corrupted = torch.randint(0, 50257, (8, 16), generator=gen)
    start = time.perf_counter()
    scores = edge_attribution(model, clean, corrupted, logit_diff(3, 5), method="eap")
    return time.perf_counter() - start, scores.numel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=600, help="training steps of the trained induction models")
    parser.add_argument("--name-copy-steps", type=int, default=1600, help="training steps of the name-copy models")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the EAP vs EAP-IG comparison (0 to skip)")
    parser.add_argument("--name-copy-seeds", type=int, help="of those, how many for the name-copy models (all)")
    parser.add_argument("--no-gpt2", action="store_true", help="skip the GPT-2-small-shaped EAP timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = {"induction": args.steps, "name_copy": args.name_copy_steps}
    problems = known_circuits() + trained_problems(steps)
    results = {p.name: score(p) for p in problems}
    names = list(results)
    width = max(len(cell(results[n]["eap"])) for n in names) + 2
    print(f"{'':14}" + "".join(f"{n:<{width}}" for n in names))
    print(f"{'edges':14}" + "".join(f"{results[n]['graph']['edges']:<{width}}" for n in names))
    for method in ("true circuit", "eap", "eap-ig", "acdc"):
        print(f"{method:14}" + "".join(f"{cell(results[n][method]):<{width}}" for n in names))
    areas = {n: " ".join(f"{m} {results[n][m]['area']:.3f}" for m in ("eap", "eap-ig", "acdc")) for n in names}
    print(f"{'curve area':14}" + "".join(f"{areas[n]:<{width}}" for n in names))
    constructed = [p.name for p in problems[: len(known_circuits())]]
    trained = [n for n in names if n not in constructed]
    print("\ntargets (issue 14):")
    worst_ig = min(results[n]["eap-ig"]["auc"] for n in constructed)
    print(f"  EAP-IG AUC >= 0.95 on every constructed model: worst {worst_ig:.3f} -> {worst_ig >= 0.95}")
    for n in trained:
        for what in ("faith", "area"):
            ig, eap = results[n]["eap-ig"][what], results[n]["eap"][what]
            label = "top-k faithfulness" if what == "faith" else "curve area"
            print(f"  EAP-IG >= EAP in {label} on {n}: {ig:.4f} vs {eap:.4f} -> {ig >= eap}")
    for n in constructed:
        found = results[n]["acdc"]["circuit"]
        top = set(Circuit.top_k(found.graph, results[n]["eap"]["scores"], len(found)).edges)
        print(
            f"  ACDC and EAP agree on {n}: ACDC {len(found)} edges, same as EAP's top {len(found)} -> "
            f"{top == set(found.edges)}"
        )
    if args.seeds:
        ranking_table(
            list(range(args.seeds)), steps, args.seeds if args.name_copy_seeds is None else args.name_copy_seeds
        )
    if not args.no_gpt2:
        seconds, n_edges = gpt2_eap_seconds()
        print(
            f"  EAP on a GPT-2-small-shaped random model ({n_edges} edges, 8 x 16 tokens): {seconds:.1f} s "
            f"-> {seconds < 60}"
        )


if __name__ == "__main__":
    main()
