"""`circuitlab serve [MODEL_OR_RUN] [--port 8000]`: the web lab (prompt -> predictions, attention, census,
patching) on http://127.0.0.1:PORT."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Any

LOOPBACK = "127.0.0.1"


HELP = "serve the web lab for a model"  # the line in `circuitlab --help`


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help=HELP,
        description="Serve the web lab: a page where you type a prompt and see the tokens with their top "
        "predictions, any head's attention pattern, the head census and a residual-stream patching heatmap. "
        "MODEL_OR_RUN: a run directory (from `circuitlab train`), a folder written by model.save, a Hugging "
        "Face model folder, or a preset name trained in memory; default: the induction preset (600 "
        "steps, 10 s on one thread here).",
    )
    p.add_argument("model", nargs="?", metavar="MODEL_OR_RUN", help="what to serve (default: the induction preset)")
    p.add_argument("--host", default=LOOPBACK, help=f"address to bind (default {LOOPBACK}: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--time-limit", type=float, default=30.0, help="seconds one computation may run (default 30)")
    p.add_argument("--max-body-bytes", type=int, default=64 * 1024, help="largest request body (default 65536)")
    p.add_argument("--workers", type=int, default=2,
                   help="computations run at once, each on its own copy of the model (default 2)")  # fmt: skip
    p.add_argument("--steps", type=int, help="training steps when serving a preset (default: the preset's)")
    p.add_argument("--census-batch", type=int, default=32, help="sequences per head-census probe (default 32)")
    p.add_argument("--threads", type=int, help="torch CPU threads")


def allowed_hosts(host: str) -> list[str] | None:
    """The Host headers a lab bound to `host` accepts: for a loopback bind (`localhost`, any 127/8 address,
    `::1`) only its own names, its literal address and `localhost`, so that a page elsewhere cannot reach it
    through DNS rebinding; None (any) for other binds."""
    if host == "localhost":
        return ["localhost", LOOPBACK, "[::1]"]
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if not address.is_loopback:
        return None
    return [f"[{address.compressed}]" if address.version == 6 else address.compressed, "localhost"]


def run(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as err:
        raise RuntimeError(
            f"circuitlab serve needs the web extra ({err.name} is not installed): pip install 'circuitlab[web]'"
        ) from None
    import torch

    from ..web import Lab, Limits, create_app, load_served

    if not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port} is invalid: expected 1 to 65535")
    if args.census_batch < 1:
        raise ValueError(f"--census-batch {args.census_batch} is invalid: expected a positive integer")
    limits = Limits(
        max_body_bytes=args.max_body_bytes,
        time_limit_s=args.time_limit,
        workers=args.workers,
        max_pending=max(8, 2 * args.workers),
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model is None:
        print("no MODEL_OR_RUN given: training the induction preset in memory (keep one with "
              "`circuitlab train induction --out runs/induction`, then `circuitlab serve runs/induction`)")  # fmt: skip
    served = load_served(args.model, steps=args.steps)
    lab = Lab(served.model, served.name, served.kind, served.task, args.census_batch)
    hosts = allowed_hosts(args.host)
    app = create_app(lab, limits, allowed_hosts=hosts)
    if hosts is None:
        print(f"warning: --host {args.host} is not a loopback address: the lab is exposed to the network and has "
              "no authentication; anyone who can reach this address can run computations on this machine",
              file=sys.stderr)  # fmt: skip
    netloc = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {served.name} on http://{netloc}:{args.port}/ (Ctrl-C stops)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
