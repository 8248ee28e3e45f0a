"""The web lab under concurrent load, really served on loopback by uvicorn: a bounded mixed burst from
several client threads gets, for every 200, exactly the answer the same request gets alone, and never a 500."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import torch

from circuitlab import HookedTransformer
from circuitlab.web import Lab, Limits, create_app
from circuitlab.web.background import serving

from .conftest import small_model
from .tiny_hf import save_tiny_gpt2

CLIENTS, PER_CLIENT, TIME_CAP_S = 6, 8, 60.0


TOY_PROMPTS = ["0 5 9 12 7 5 9 12 7 33", "0 3 8 3 8 21 3 8", "0 1 2 3 4 5 6 7 8 9 1 2 3 4 5 6"]
TOY_PAIRS = [
    {"clean": "0 5 9 12 7 5 9 12", "corrupted": "0 5 9 12 30 5 9 12", "answer": "7", "distractor": "30"},
    {"clean": "0 1 2 3 1 2", "corrupted": "0 1 4 3 1 2", "answer": "3", "distractor": "7"},
]
TEXT_PROMPTS = ["Her name was Alex Hart.", "Tomorrow at lunch time Alex", "Alex Carroll and Alex Hart ate."]
TEXT_PAIRS = [
    {"clean": "Her name was Alex Hart. Alex", "corrupted": "Her name was Alex Carroll. Alex", "answer": " Hart",
     "distractor": " Carroll"},
    {"clean": "Alex Hart and Alex", "corrupted": "Alex Carroll and Alex", "answer": " Hart", "distractor": " Carroll"},
]  # fmt: skip


def mixed_requests(prompts: list[str], pairs: list[dict]) -> list[tuple[str, str, dict | None]]:
    """(method, path, body): predictions, attention on every layer, patching both ways, the census."""
    out: list[tuple[str, str, dict | None]] = []
    for i, prompt in enumerate(prompts):
        out.append(("POST", "/api/predictions", {"prompt": prompt, "top_k": 3 + i}))
        for layer in (0, 1):
            out.append(("POST", "/api/attention", {"prompt": prompt, "layer": layer, "head": (i + layer) % 4}))
    for direction in ("denoise", "noise"):
        for pair in pairs:
            out.append(("POST", "/api/patching", {**pair, "direction": direction}))
    out.append(("GET", "/api/census", None))
    return out


def send(client: httpx.Client, request: tuple[str, str, dict | None]) -> httpx.Response:
    method, path, body = request
    return client.request(method, path, json=body)


@pytest.fixture(scope="module")
def model() -> HookedTransformer:
    return small_model()  # 2 layers x 4 heads, n_ctx 24, d_vocab 40


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> HookedTransformer:
    """A tiny GPT-2 with a fast `transformers` tokenizer, whose padding / truncation state every call sets."""
    pytest.importorskip("transformers")
    corpus = ["Her name was Alex Hart. Tomorrow at lunch time Alex Hart ate.", "Alex Carroll and Alex Hart."] * 30
    return HookedTransformer.from_pretrained(save_tiny_gpt2(tmp_path_factory.mktemp("hf"), corpus, n_positions=20))


@pytest.mark.parametrize(("kind", "workers"), [("toy", 1), ("toy", 4), ("text", 4)])
def test_a_concurrent_burst_gets_the_serial_answers(request, kind: str, workers: int) -> None:
    model = request.getfixturevalue("model" if kind == "toy" else "text_model")
    requests = mixed_requests(*((TOY_PROMPTS, TOY_PAIRS) if kind == "toy" else (TEXT_PROMPTS, TEXT_PAIRS)))
    modes = [m.training for m in model.modules()]
    lab = Lab(model, kind)
    app = create_app(lab, Limits(workers=workers, max_pending=2 * CLIENTS))
    with serving(app) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            serial = []
            for r in requests:
                response = send(client, r)
                assert response.status_code == 200, response.text
                serial.append(response.json())
        results: list[tuple[int, httpx.Response]] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(CLIENTS)
        stop_at = time.monotonic() + TIME_CAP_S

        def client_thread(k: int) -> None:
            try:
                with httpx.Client(base_url=url, timeout=30) as client:
                    barrier.wait()
                    for j in range(PER_CLIENT):
                        if time.monotonic() > stop_at:
                            return
                        index = (k * PER_CLIENT + j * 5) % len(requests)  # each thread its own mix
                        results.append((index, send(client, requests[index])))
            except BaseException as err:  # reported below, not lost in the thread
                errors.append(err)

        threads = [threading.Thread(target=client_thread, args=(k,)) for k in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIME_CAP_S + 30)
    assert not errors, errors
    assert len(results) == CLIENTS * PER_CLIENT  # the burst finished within the time cap
    codes = [r.status_code for _, r in results]
    assert set(codes) <= {200, 503}, [(r.status_code, r.text) for _, r in results if r.status_code not in (200, 503)]
    assert all(r.headers.get("retry-after") for _, r in results if r.status_code == 503)
    assert codes.count(200) >= len(codes) // 2
    wrong = [requests[i][1] for i, r in results if r.status_code == 200 and r.json() != serial[i]]
    assert not wrong, f"{len(wrong)} concurrent answers differ from the serial ones: {wrong}"
    assert lab.replicas.size <= workers  # one private model copy per computation running at once
    assert not any(hp.has_hooks() for hp in model.hook_points())  # the served model itself carries nothing
    assert not any(m._forward_pre_hooks for m in model.modules())
    assert [m.training for m in model.modules()] == modes  # no flag flipped on it either


def test_a_private_copy_shares_the_weights_and_nothing_else(text_model: HookedTransformer) -> None:
    from circuitlab.web.replicas import private_copy

    copy = private_copy(text_model)
    assert all(a is b for a, b in zip(text_model.parameters(), copy.parameters(), strict=True))  # no weight memory
    assert copy.cfg is not text_model.cfg and copy.tokenizer is not text_model.tokenizer
    assert copy.hook_dict["hook_embed"] is not text_model.hook_dict["hook_embed"]
    with copy.hooks([("hook_embed", lambda x, hook: x * 0)]):  # hooks on the copy never reach the original
        assert not text_model.hook_dict["hook_embed"].has_hooks()
        tokens = text_model.to_tokens("Alex Hart")
        assert not torch.equal(copy(tokens), text_model(tokens))
    torch.testing.assert_close(copy(tokens), text_model(tokens))  # the same weights: the same answers
    assert not copy.training
