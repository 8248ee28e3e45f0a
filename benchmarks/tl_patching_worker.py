"""TransformerLens 2.x side of `benchmarks/patching.py`; runs inside the TL virtual environment (imports only
transformer_lens and torch). Reads `job.json` + `job.pt` from the folder given, writes `result.json` + `result.pt`.

job.json: {"cfg": HookedTransformerConfig kwargs, "threads": int | null, "sweeps": {name: [cell index, ...]}}
job.pt: {"state": state dict, "clean", "corrupted", "answer", "distractor": tensors}
Sweeps: "resid_pre" (get_act_patch_resid_pre, cells layer * pos + pos) and "head_out"
(get_act_patch_attn_head_out_all_pos, cells layer * n_heads + head). A sweep given a subset of its cells runs
TL's `generic_activation_patch` with an `index_df` of those cells (the same per-cell loop).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig, patching


def main(folder: Path) -> None:
    job = json.loads((folder / "job.json").read_text())
    data = torch.load(folder / "job.pt", weights_only=True)
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    model = HookedTransformer(HookedTransformerConfig(**job["cfg"]))
    missing, unexpected = model.load_state_dict(data["state"], strict=False)
    if unexpected or any(not k.endswith(("mask", "IGNORE")) for k in missing):
        raise SystemExit(f"weights do not fit TransformerLens's model: missing {missing}, unexpected {unexpected}")
    model.eval()
    clean, corrupted = data["clean"], data["corrupted"]
    answer, distractor = data["answer"], data["distractor"]
    rows = torch.arange(clean.shape[0])

    def metric(logits: torch.Tensor) -> torch.Tensor:  # the usual TL metric: logit diff at the last position
        return (logits[rows, -1, answer] - logits[rows, -1, distractor]).mean()

    n_layers, n_pos, n_heads = model.cfg.n_layers, clean.shape[1], model.cfg.n_heads
    results, times = {}, {}
    with torch.no_grad():
        start = time.perf_counter()
        _, clean_cache = model.run_with_cache(clean)
        cache_s = time.perf_counter() - start
        for name, cells in job["sweeps"].items():
            width, full_fn, setter, act, axes = {
                "resid_pre": (
                    n_pos,
                    patching.get_act_patch_resid_pre,
                    patching.layer_pos_patch_setter,
                    "resid_pre",
                    ["layer", "pos"],
                ),
                "head_out": (
                    n_heads,
                    patching.get_act_patch_attn_head_out_all_pos,
                    patching.layer_head_vector_patch_setter,
                    "z",
                    ["layer", "head"],
                ),
            }[name]
            start = time.perf_counter()
            if len(cells) == n_layers * width:
                out = full_fn(model, corrupted, clean_cache, metric).flatten()
            else:
                index_df = pd.DataFrame([divmod(c, width) for c in cells], columns=axes)
                out = patching.generic_activation_patch(
                    model, corrupted, clean_cache, metric, setter, act, index_df=index_df
                )
            times[name] = time.perf_counter() - start + cache_s
            results[name] = out.detach().double().flatten()
    (folder / "result.json").write_text(json.dumps({"times": times}))
    torch.save(results, folder / "result.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
