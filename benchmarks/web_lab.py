"""The web lab under a burst of requests, really served on loopback by uvicorn: serial against concurrent.

A mixed burst (predictions, attention, residual patching both ways, the cached census) on a random-weight
model of the induction preset's shape (`--d-model` / `--n-layers` make it bigger), sent once by one client
(serial) and once by `--clients` client threads at once (concurrent), against a server process with 1 worker
(one model copy: computations one at a time, the same as a lock around the model) and one with `--workers`
workers (one private copy each). Prints requests/s, p50 / p95 latency, the status codes and how many 200
answers differ from the first answer to the same request (must be 0), all from one run.

Run: `PYTHONPATH=src .venv/bin/python benchmarks/web_lab.py [--requests 200] [--clients 20] [--workers 4]`.

Measured (2 shared CPU cores, load ~2.5, torch threads 1), every answer equal to the first one, no 500:
induction shape (2 x 64), 200 requests: 1 worker serial 208.8 req/s (p50 3.3 ms, p95 8.5 ms), concurrent
212.2 req/s (p50 92 ms, p95 102 ms); 4 workers concurrent 188.7 req/s (p50 94 ms, p95 196 ms). With
`--d-model 256 --n-layers 4 --requests 100`: 1 worker concurrent 36.7 req/s (p50 536 ms, p95 580 ms), 4 workers
52.6 req/s (p50 354 ms, p95 496 ms), 1.43x. Tiny models are bound by Python (the GIL), so copies add nothing
there; once the tensor work dominates, private copies computing side by side beat one model behind a lock.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import threading
import time
from collections import Counter

import httpx
import torch

from circuitlab import HookedTransformer
from circuitlab.training import from_preset
from circuitlab.web import Lab, Limits, create_app


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


def build(d_model: int | None, n_layers: int | None):
    """(task, model) of the induction preset's shape (seed 0: the same weights in every process)."""
    over = {k: v for k, v in dict(d_model=d_model, n_layers=n_layers).items() if v is not None} | {"seed": 0}
    if d_model is not None:
        over["d_head"] = None
    task, model_cfg, _ = from_preset("induction", model=over)
    return task, HookedTransformer(model_cfg)


def serve(port: int, workers: int, clients: int, threads: int, d_model: int | None, n_layers: int | None) -> None:
    """The server process: the lab on 127.0.0.1:port with `workers` workers."""
    import uvicorn

    torch.set_num_threads(threads)
    task, model = build(d_model, n_layers)
    lab = Lab(model, "bench", "model", task, census_batch=8)
    app = create_app(lab, Limits(workers=workers, max_pending=max(8, clients), time_limit_s=120))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def start_server(workers: int, args: argparse.Namespace) -> tuple[multiprocessing.Process, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=serve, args=(port, workers, args.clients, args.threads, args.d_model, args.n_layers))
    proc.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(url + "/api/info", timeout=1)
            return proc, url
        except httpx.TransportError:
            if time.monotonic() > deadline or not proc.is_alive():
                raise RuntimeError("the server did not start") from None
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20, help="client threads of the concurrent burst")
    parser.add_argument("--workers", type=int, default=4, help="worker threads (model copies) of the second server")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of the server")
    parser.add_argument("--d-model", type=int, help="model width (default: the induction preset's)")
    parser.add_argument("--n-layers", type=int, help="model depth (default: the induction preset's)")
    args = parser.parse_args()
    _, model = build(args.d_model, args.n_layers)
    cfg = model.cfg
    requests = burst(cfg.n_ctx, cfg.d_vocab, args.requests)
    print(
        f"model: induction preset shape, {cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} heads, random "
        f"weights; {args.requests} requests; server in its own process, torch threads {args.threads}"
    )
    reference: dict[int, object] = {}
    for workers in (1, args.workers):
        proc, url = start_server(workers, args)
        try:
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
                mode = "serial" if clients == 1 else f"concurrent ({clients} clients)"
                print(
                    f"workers {workers}, {mode:24s}: {len(results) / wall:7.1f} req/s, p50 {1000 * p50:7.1f} ms, "
                    f"p95 {1000 * p95:7.1f} ms, codes {dict(codes)}, differ from the first answer: {differ}"
                )
        finally:
            proc.terminate()
            proc.join(10)


if __name__ == "__main__":
    main()
