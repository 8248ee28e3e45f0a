"""The web lab under a burst of requests, really served on loopback by uvicorn: serial against concurrent.

A mixed burst (predictions, attention, residual patching both ways, the cached census) on a random-weight
model of the induction preset's shape, sent once by one client (serial) and once by `--clients` client
threads at once (concurrent), against a server with 1 worker (one model copy: computations one at a time,
the same as a lock around the model) and with `--workers` workers (one private copy each). Prints
requests/s, p50 / p95 latency, the status codes and how many 200 answers differ from the serial answer to
the same request (must be 0), all from one run.

Run: `PYTHONPATH=src .venv/bin/python benchmarks/web_lab.py [--requests 200] [--clients 20] [--workers 4]`.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import Counter

import httpx
import torch

from circuitlab import HookedTransformer
from circuitlab.training import from_preset
from circuitlab.web import Lab, Limits, create_app
from circuitlab.web.background import serving


def burst(cfg_ctx: int, d_vocab: int, n: int) -> list[tuple[str, str, dict | None]]:
    """n requests cycling through predictions, attention, patching (both directions) and the census."""
    gen = torch.Generator().manual_seed(0)
    out: list[tuple[str, str, dict | None]] = []
    length = min(cfg_ctx, 32)
    for i in range(n):
        ids = torch.randint(1, d_vocab, (length // 2,), generator=gen).tolist()
        prompt = " ".join(map(str, [0, *ids, *ids][:length]))
        kind = i % 5
        if kind == 0:
            out.append(("POST", "/api/predictions", {"prompt": prompt, "top_k": 5}))
        elif kind == 1:
            out.append(("POST", "/api/attention", {"prompt": prompt, "layer": i % 2, "head": (i // 2) % 2}))
        elif kind in (2, 3):
            clean = [0, *ids, *ids[:-1]]
            corrupted = [0, *ids[:-1], (ids[-1] % (d_vocab - 1)) + 1, *ids[:-1]]
            body = {"clean": " ".join(map(str, clean)), "corrupted": " ".join(map(str, corrupted))}
            answer, distractor = ids[-1], (ids[-1] % (d_vocab - 1)) + 1
            out.append(("POST", "/api/patching", {**body, "answer": str(answer), "distractor": str(distractor),
                                                  "direction": "denoise" if kind == 2 else "noise"}))  # fmt: skip
        else:
            out.append(("GET", "/api/census", None))
    return out


def run_burst(url: str, requests: list, clients: int) -> tuple[list[tuple[int, int, object, float]], float]:
    """Send every request once, spread over `clients` threads; (index, status, json, seconds) each, wall time."""
    results: list[tuple[int, int, object, float]] = []
    lock = threading.Lock()
    next_index = iter(range(len(requests)))
    barrier = threading.Barrier(clients + 1)

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            barrier.wait()
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                method, path, body = requests[i]
                start = time.perf_counter()
                r = c.request(method, path, json=body)
                took = time.perf_counter() - start
                data = r.json() if r.status_code == 200 else None
                with lock:
                    results.append((i, r.status_code, data, took))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return results, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20, help="client threads of the concurrent burst")
    parser.add_argument("--workers", type=int, default=4, help="worker threads (model copies) of the second server")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task, model_cfg, _ = from_preset("induction")
    model = HookedTransformer(model_cfg)
    requests = burst(model_cfg.n_ctx, model_cfg.d_vocab, args.requests)
    print(
        f"model: induction preset shape ({model_cfg.n_layers} layers, d_model {model_cfg.d_model}, "
        f"{model_cfg.n_heads} heads), random weights; {args.requests} requests; torch threads {args.threads}"
    )
    reference: dict[int, object] = {}
    for workers in (1, args.workers):
        lab = Lab(model, "bench", "model", task, census_batch=8)
        app = create_app(lab, Limits(workers=workers, max_pending=max(8, args.clients), time_limit_s=120))
        with serving(app) as url:
            run_burst(url, requests[:5], 1)  # warm up (and compute the census once)
            for clients in (1, args.clients):
                results, wall = run_burst(url, requests, clients)
                codes = Counter(status for _, status, _, _ in results)
                for i, status, data, _ in results:
                    if status == 200:
                        reference.setdefault(i, data)
                differ = sum(1 for i, status, data, _ in results if status == 200 and data != reference[i])
                lat = sorted(took for *_, took in results)
                p50, p95 = statistics.median(lat), lat[min(len(lat) - 1, int(0.95 * len(lat)))]
                mode = "serial    " if clients == 1 else f"concurrent ({clients} clients)"
                print(
                    f"workers {workers} ({lab.replicas.size} model copies), {mode}: {len(results) / wall:7.1f} req/s, "
                    f"p50 {1000 * p50:7.1f} ms, p95 {1000 * p95:7.1f} ms, codes {dict(codes)}, "
                    f"differ from the first answer: {differ}"
                )


if __name__ == "__main__":
    main()
