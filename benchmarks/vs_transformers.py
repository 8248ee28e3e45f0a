"""Our model against `transformers` on the same GPT-2-small-shaped weights (random, 124M), on the CPU.

Prints, from one run, at batch 8 x 64 tokens under no_grad, median seconds interleaved over repeats:
- plain forward: ours (`model(tokens)`) / transformers (`hf(tokens)`, its default attention), target <= 1.05;
- full cache: ours (`run_with_cache`, every hook point) / transformers with
  `output_hidden_states=True, output_attentions=True` (eager attention, as attentions need), target <= 1.2.
Our model is loaded from the transformers one (`from_hf_model`, unprocessed) and checked equal first.
Run: `.venv/bin/python benchmarks/vs_transformers.py`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from circuitlab import HookedTransformer
from timing import time_calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--pos", type=int, default=64)
    args = parser.parse_args()
    import transformers as tf

    torch.manual_seed(0)
    hf_default = tf.GPT2LMHeadModel(tf.GPT2Config()).eval()  # GPT-2 small shape, default (sdpa) attention
    hf_eager = tf.GPT2LMHeadModel(tf.GPT2Config(attn_implementation="eager")).eval()
    hf_eager.load_state_dict(hf_default.state_dict())
    ours = HookedTransformer.from_hf_model(
        hf_default, fold_ln=False, center_writing_weights=False, center_unembed=False, fold_value_biases=False
    )
    tokens = torch.randint(0, 50257, (args.batch, args.pos), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), hf_default(tokens).logits, atol=1e-4, rtol=0)

    fns: dict[str, Callable[[], object]] = {
        "ours forward": lambda: ours(tokens),
        "hf forward": lambda: hf_default(tokens),
        "ours run_with_cache": lambda: ours.run_with_cache(tokens),
        "hf hidden+attentions": lambda: hf_eager(tokens, output_hidden_states=True, output_attentions=True),
    }
    start = time.perf_counter()
    with torch.no_grad():
        times = time_calls(fns, args.repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"GPT-2-small shape (random weights), batch {args.batch} x {args.pos} tokens, CPU, "
        f"{torch.get_num_threads()} threads, "
        f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE')}, "
        f"torch {torch.__version__}, transformers {tf.__version__}, "
        f"{args.repeats} interleaved repeats ({time.perf_counter() - start:.0f} s); medians:"
    )
    for name, value in med.items():
        print(f"  {name:22s} {1e3 * value:8.1f} ms")
    plain = med["ours forward"] / med["hf forward"]
    cache = med["ours run_with_cache"] / med["hf hidden+attentions"]
    print(f"plain forward: ours / transformers = {plain:.3f} (target <= 1.05)")
    print(f"full cache: ours run_with_cache / transformers hidden_states+attentions = {cache:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
