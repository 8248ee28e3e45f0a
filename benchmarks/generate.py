"""Speed of `generate` with and without the key/value cache.

Prints, from one run: tokens/s of greedy generation on a GPT-2-small-shaped model (random weights) from a
1 x 16 prompt, 64 new tokens, with `use_past_kv_cache=True` and `False` side by side, their ratio (target
>= 5x) and whether both produced identical tokens. Run: `.venv/bin/python benchmarks/generate.py`.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from circuitlab import HookedTransformer, HookedTransformerConfig
from forward import GPT2_SMALL
from timing import time_calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    model = HookedTransformer(HookedTransformerConfig(**GPT2_SMALL, seed=0, device=args.device))
    prompt = torch.randint(0, GPT2_SMALL["d_vocab"], (1, args.prompt), generator=torch.Generator().manual_seed(0))
    prompt = prompt.to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    outputs: dict[str, torch.Tensor] = {}

    def run(cached: bool) -> None:
        out = model.generate(prompt, args.new, do_sample=False, stop_at_eos=False, use_past_kv_cache=cached)
        sync()
        outputs["cached" if cached else "uncached"] = out

    times = time_calls({"cached": lambda: run(True), "uncached": lambda: run(False)}, args.repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    same = torch.equal(outputs["cached"], outputs["uncached"])
    print(
        f"GPT-2-small shape, prompt 1 x {args.prompt}, {args.new} new tokens, greedy, on {args.device}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}"
    )
    for name in ("cached", "uncached"):
        print(f"  {name:8s}: {med[name]:6.2f} s, {args.new / med[name]:7.1f} tokens/s")
    print(
        f"  speed-up with the key/value cache: {med['uncached'] / med['cached']:.1f}x (target >= 5); "
        f"identical tokens: {same}"
    )


if __name__ == "__main__":
    main()
