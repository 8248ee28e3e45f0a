"""The web lab's JSON API through FastAPI's test client: every endpoint against the analysis functions it
wraps, the input limits (n_ctx, body size, time, queue) and the error messages; plus `circuitlab serve`."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from circuitlab import HookedTransformer
from circuitlab.analysis import head_census, logit_diff, patch_resid_pre
from circuitlab.cli import main
from circuitlab.web import Lab, Limits, create_app, load_served
from circuitlab.web.limits import Busy, ComputationTimeout, Worker, add_deadline_hooks

from .conftest import small_model
from .tiny_hf import save_tiny_gpt2

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def model() -> HookedTransformer:
    return small_model()  # 2 layers x 4 heads, n_ctx 24, d_vocab 40, no tokenizer


@pytest.fixture(scope="module")
def client(model: HookedTransformer):
    with TestClient(create_app(Lab(model, "tiny"))) as c:
        yield c


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    """A tiny GPT-2 in Hugging Face layout with a byte-level BPE tokenizer trained here (offline)."""
    corpus = ["Her name was Alex Hart. Tomorrow at lunch time Alex Hart ate.", "Alex Carroll and Alex Hart."] * 30
    return save_tiny_gpt2(tmp_path_factory.mktemp("hf"), corpus, n_positions=20)


def ids(tokens: list[int]) -> str:
    return " ".join(map(str, tokens))


# ---- the page and its assets ------------------------------------------------------------------------
def test_page_and_assets_are_local(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = client.get("/static/lab.js")
    assert script.status_code == 200
    for text in (page.text, script.text, client.get("/static/lab.css").text):
        assert "http://" not in text and "https://" not in text  # nothing fetched from elsewhere
    assert '<script src="/static/plotly.min.js">' in page.text
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200 and "javascript" in plotly.headers["content-type"]
    assert "Plotly" in plotly.text[:5000] and len(plotly.text) > 1_000_000  # the full bundle from the package
    assert client.get("/static/missing.js").status_code == 404


def test_info_describes_the_model_and_its_prompt_format(client: TestClient) -> None:
    info = client.get("/api/info").json()
    assert (info["n_layers"], info["n_heads"], info["n_ctx"], info["d_vocab"]) == (2, 4, 24, 40)
    assert info["has_tokenizer"] is False and "no tokenizer" in info["prompt_format"]
    assert info["limits"] == {"max_body_bytes": 64 * 1024, "time_limit_s": 30.0}
    ex = info["examples"]
    clean, corrupted = ex["clean"].split(), ex["corrupted"].split()
    assert len(clean) == len(corrupted) and sum(a != b for a, b in zip(clean, corrupted, strict=True)) == 1
    # the induction example: the clean prompt's next token repeats the earlier copy; the corrupted one's differs
    first = clean.index(clean[-1])
    assert clean[first + 1] == ex["answer"] and corrupted[first + 1] == ex["distractor"] != ex["answer"]


# ---- predictions --------------------------------------------------------------------------------------
def test_predictions_match_the_model(client: TestClient, model: HookedTransformer) -> None:
    tokens = [0, 5, 9, 12, 7, 5, 9, 12, 7, 33]
    data = client.post("/api/predictions", json={"prompt": ids(tokens), "top_k": 4}).json()
    assert data["tokens"] == [str(t) for t in tokens]
    with torch.no_grad():
        probs = model(torch.tensor([tokens]))[0].softmax(-1)  # [pos, vocab]
    for p, row in enumerate(data["positions"]):
        assert [t["id"] for t in row["top"]] == probs[p].topk(4).indices.tolist()
        assert [t["prob"] for t in row["top"]] == pytest.approx(probs[p].topk(4).values.tolist(), abs=1e-4)
        if p == len(tokens) - 1:
            assert row["next"] is None
            continue
        nxt = tokens[p + 1]
        order = probs[p].argsort(descending=True).tolist()
        assert row["next"]["id"] == nxt and row["next"]["rank"] == order.index(nxt)  # 0 = top
        assert row["next"]["prob"] == pytest.approx(float(probs[p, nxt]), abs=1e-4)
    loss = -torch.log(probs[:-1].gather(-1, torch.tensor(tokens[1:])[:, None])).mean()
    assert data["loss"] == pytest.approx(float(loss), abs=1e-4)


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("", "the prompt is empty"),
        ("1 2 three", "'three' in the prompt is not a token id: this model has no tokenizer"),
        ("1 2 40", "token id 40 in the prompt is out of range: ids must lie in [0, 40)"),
        (ids([1] * 25), "the prompt is 25 tokens long but this model reads at most n_ctx=24 tokens: remove 1"),
    ],
)
def test_bad_prompts_get_a_clear_422(client: TestClient, prompt: str, message: str) -> None:
    response = client.post("/api/predictions", json={"prompt": prompt})
    assert response.status_code == 422 and message in response.json()["detail"]


def test_malformed_requests_get_readable_422(client: TestClient) -> None:
    missing = client.post("/api/predictions", json={"top_k": 3})
    assert missing.status_code == 422 and missing.json()["detail"] == "invalid request: prompt: Field required"
    big_k = client.post("/api/predictions", json={"prompt": "1 2", "top_k": 51})
    assert big_k.status_code == 422 and "top_k" in big_k.json()["detail"] and "50" in big_k.json()["detail"]
    not_json = client.post("/api/predictions", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 422 and "JSON" in not_json.json()["detail"]
    assert client.get("/api/predictions").status_code == 405


# ---- attention ----------------------------------------------------------------------------------------
def test_attention_is_the_cached_pattern(client: TestClient, model: HookedTransformer) -> None:
    tokens = [0, 3, 8, 3, 8, 21]
    data = client.post("/api/attention", json={"prompt": ids(tokens), "layer": 1, "head": 3}).json()
    _, cache = model.run_with_cache(torch.tensor([tokens]))
    expected = cache["pattern", 1][0, 3]
    got = torch.tensor(data["pattern"])
    assert (data["layer"], data["head"], data["tokens"]) == (1, 3, [str(t) for t in tokens])
    torch.testing.assert_close(got, expected.float(), atol=1e-4, rtol=0)
    assert got.triu(1).abs().max() == 0  # causal: no attention to later keys


@pytest.mark.parametrize(
    ("layer", "head", "message"), [(2, 0, "layer=2 is out of range"), (0, -1, "head=-1 is out of range")]
)
def test_attention_rejects_heads_that_do_not_exist(client: TestClient, layer: int, head: int, message: str) -> None:
    response = client.post("/api/attention", json={"prompt": "0 1 2", "layer": layer, "head": head})
    assert response.status_code == 422 and message in response.json()["detail"]


# ---- census -------------------------------------------------------------------------------------------
def test_census_is_head_census_and_is_cached(client: TestClient, model: HookedTransformer, monkeypatch) -> None:
    first = client.get("/api/census")
    assert first.status_code == 200
    data = first.json()
    expected = head_census(model)
    assert [h["label"] for h in data["heads"]] == [r.label for r in expected.rows]
    assert [h["roles"] for h in data["heads"]] == [r.roles for r in expected.rows]
    assert [h["ablation_loss_increase"] for h in data["heads"]] == [r.ablation_loss_increase for r in expected.rows]
    assert data["clean_loss"] == pytest.approx(expected.clean_loss)
    monkeypatch.setattr("circuitlab.web.lab.head_census", lambda *a, **k: pytest.fail("census computed twice"))
    assert client.get("/api/census").json() == data  # served from the cache


# ---- patching -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_patching_matches_patch_resid_pre(client: TestClient, model: HookedTransformer, direction: str) -> None:
    clean, corrupted = [0, 5, 9, 12, 7, 5, 9, 12], [0, 5, 9, 12, 30, 5, 9, 12]
    body = {"clean": ids(clean), "corrupted": ids(corrupted), "answer": "7", "distractor": "30"}
    data = client.post("/api/patching", json={**body, "direction": direction}).json()
    clean_t, corrupted_t = torch.tensor([clean]), torch.tensor([corrupted])
    metric = logit_diff(7, 30)
    with torch.no_grad():
        clean_ld, corrupted_ld = float(metric(model(clean_t))), float(metric(model(corrupted_t)))
    expected = patch_resid_pre(model, clean_t, corrupted_t, metric, direction=direction)
    values = torch.tensor(data["values"])
    assert data["rows"] == ["resid_pre 0", "resid_pre 1", "resid_post 1"] and values.shape == (3, 8)
    torch.testing.assert_close(values[:2], expected.float(), atol=2e-4, rtol=0)
    assert data["clean_logit_diff"] == pytest.approx(clean_ld, abs=1e-4)
    assert data["corrupted_logit_diff"] == pytest.approx(corrupted_ld, abs=1e-4)
    # the last residual stream at the last position decides the metric: patching it there gives the source
    # run's logit difference; anywhere else the base run's
    source, base = (clean_ld, corrupted_ld) if direction == "denoise" else (corrupted_ld, clean_ld)
    assert values[2, -1] == pytest.approx(source, abs=1e-3)
    torch.testing.assert_close(values[2, :-1], torch.full((7,), base), atol=1e-3, rtol=0)
    normalized = torch.tensor(data["normalized"])
    spread = clean_ld - corrupted_ld  # values are rounded to 1e-4: allow for that, scaled
    torch.testing.assert_close(normalized, (values - corrupted_ld) / spread, atol=1e-3 + 3e-4 / abs(spread), rtol=0)


def test_patching_explains_bad_pairs(client: TestClient) -> None:
    body = {"clean": "0 1 2 3", "corrupted": "0 1 2", "answer": "3", "distractor": "4"}
    response = client.post("/api/patching", json=body)
    assert response.status_code == 422
    assert (
        "the clean prompt is 4 tokens and the corrupted one 3: they must be the same length"
        in response.json()["detail"]
    )
    response = client.post("/api/patching", json={**body, "corrupted": "0 1 4", "clean": "0 1 2", "answer": "3 4"})
    assert response.status_code == 422 and "the answer must be one token id, got 2" in response.json()["detail"]
    response = client.post("/api/patching", json={**body, "direction": "sideways"})
    assert response.status_code == 422 and "direction" in response.json()["detail"]


# ---- limits -------------------------------------------------------------------------------------------
def test_request_body_size_is_bounded(model: HookedTransformer) -> None:
    with TestClient(create_app(Lab(model), Limits(max_body_bytes=200))) as c:
        ok = c.post("/api/predictions", json={"prompt": "0 1 2"})
        assert ok.status_code == 200
        big = c.post("/api/predictions", json={"prompt": "1 " * 150})
        assert big.status_code == 413 and "the limit is 200 bytes" in big.json()["detail"]

        def chunks():  # no Content-Length: counted as the body arrives
            yield b'{"prompt": "'
            for _ in range(30):
                yield b"1 1 1 1 1 "
            yield b'"}'

        chunked = c.post("/api/predictions", content=chunks(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413


def test_computation_over_the_time_limit_gets_504_and_frees_the_worker(model: HookedTransformer) -> None:
    with TestClient(create_app(Lab(model), Limits(time_limit_s=0.0))) as c:
        response = c.post("/api/predictions", json={"prompt": "0 1 2"})
        assert response.status_code == 504 and "time limit of 0 s" in response.json()["detail"]
        assert c.get("/api/info").status_code == 200  # no computation, no limit
        assert c.app.state.worker.pending == 0


def test_the_deadline_stops_a_running_model_at_its_next_module(model: HookedTransformer) -> None:
    """A computation that would run forever is stopped by the model's own deadline hooks."""
    add_deadline_hooks(model)
    worker = Worker(Limits(time_limit_s=0.3))
    calls = []

    def forever() -> None:
        while True:
            model(torch.tensor([[0, 1, 2]]))
            calls.append(1)

    start = time.perf_counter()
    with pytest.raises(ComputationTimeout):
        asyncio.run(worker.run(forever))
    assert len(calls) > 0 and time.perf_counter() - start < 1.0  # stopped by the hook, not by the grace
    for _ in range(100):  # the worker thread has returned
        if worker.pending == 0:
            break
        time.sleep(0.01)
    assert worker.pending == 0
    model(torch.tensor([[0, 1, 2]]))  # outside a worker there is no deadline
    worker.close()


def test_a_computation_that_ignores_the_deadline_still_gets_an_answer_in_time() -> None:
    worker = Worker(Limits(time_limit_s=0.1))
    release = threading.Event()
    start = time.perf_counter()
    with pytest.raises(ComputationTimeout, match=r"no result within 0.1 s"):
        asyncio.run(worker.run(lambda: release.wait(10)))
    assert time.perf_counter() - start < 2.0
    release.set()
    worker.close()


def test_a_full_queue_answers_busy() -> None:
    worker = Worker(Limits(workers=1, max_pending=1, time_limit_s=5))
    release = threading.Event()

    async def both() -> None:
        first = asyncio.ensure_future(worker.run(lambda: release.wait(5)))
        await asyncio.sleep(0.05)
        with pytest.raises(Busy):
            await worker.run(lambda: None)
        release.set()
        assert await first is True

    asyncio.run(both())
    worker.close()


def test_busy_and_bad_limits_read_clearly(model: HookedTransformer) -> None:
    with pytest.raises(ValueError, match="max_pending=0 is invalid"):
        Limits(max_pending=0)
    app = create_app(Lab(model), Limits(max_pending=1))
    app.state.worker.pending = 1  # as if a computation were running
    with TestClient(app) as c:
        response = c.post("/api/predictions", json={"prompt": "0 1"})
    assert response.status_code == 503 and "busy" in response.json()["detail"]
    assert response.headers["retry-after"] == "5"


# ---- what `circuitlab serve` serves -------------------------------------------------------------------
def test_a_tokenizer_model_takes_text(hf_folder: Path) -> None:
    served = load_served(hf_folder)
    assert served.kind == "huggingface" and served.model.tokenizer is not None
    with TestClient(create_app(Lab(served.model, served.name, served.kind))) as c:
        info = c.get("/api/info").json()
        assert info["has_tokenizer"] and info["prompt_format"].startswith("text")
        text = "Her name was Alex Hart."
        data = c.post("/api/predictions", json={"prompt": text, "top_k": 2}).json()
        assert data["tokens"] == served.model.to_str_tokens(text)
        assert "".join(data["tokens"][1:]) == text  # BOS, then the text's pieces
        too_long = c.post("/api/predictions", json={"prompt": "Alex Hart ate. " * 10})
        assert too_long.status_code == 422 and "n_ctx=20" in too_long.json()["detail"]
        ex = info["examples"]  # Heimersheim's pair: 12 tokens each with this tokenizer
        pair = {k: ex[k] for k in ("clean", "corrupted", "answer", "distractor")}
        data = c.post("/api/patching", json=pair).json()
        assert data["clean_tokens"][5] == " Hart" and data["corrupted_tokens"][5] == " Carroll"
        assert data["answer_id"] == served.model.to_single_token(" Hart") and len(data["values"][0]) == 12
        no_space = c.post("/api/patching", json={**pair, "answer": "Hart"})
        assert no_space.status_code == 422
        assert no_space.json()["detail"].startswith("answer: 'Hart' is 2 tokens ['Har', 't'], not a single token")
        assert "leading space" in no_space.json()["detail"]


def test_load_served_reads_runs_and_saved_models(tmp_path: Path, model: HookedTransformer) -> None:
    from circuitlab.training import from_preset, train

    task, model_cfg, train_cfg = from_preset("induction", training=dict(steps=2, eval_every=2))
    train(HookedTransformer(model_cfg), task, train_cfg, out_dir=tmp_path / "run", progress=False)
    run = load_served(tmp_path / "run")
    assert (run.kind, run.name, run.task.name) == ("run", "run", "repeated_tokens")
    lab = Lab(run.model, run.name, run.kind, run.task)
    assert lab.examples()["prompt"] == ids(task.generate(1, seed=0).tokens[0].tolist())  # a sample of its task
    model.save(tmp_path / "saved")
    saved = load_served(tmp_path / "saved")
    assert saved.kind == "model" and saved.task is None
    torch.testing.assert_close(saved.model.W_Q, model.W_Q)

    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.json").write_text(json.dumps({"model": {}, "task": {}, "training": {}}))
    with pytest.raises(ValueError, match="neither final/ nor a checkpoint"):
        load_served(tmp_path / "unfinished")
    with pytest.raises(ValueError, match=r"has no config\.json"):
        load_served(tmp_path)
    with pytest.raises(ValueError, match="is a file"):
        load_served(tmp_path / "saved" / "config.json")
    with pytest.raises(ValueError, match="neither an existing path nor a preset name"):
        load_served(tmp_path / "nowhere")


def test_serve_command_binds_loopback_by_default(tmp_path: Path, model: HookedTransformer, monkeypatch, capsys) -> None:
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    model.save(tmp_path / "m")
    assert main(["serve", str(tmp_path / "m"), "--port", "8123", "--time-limit", "5"]) == 0
    app, kwargs = calls[-1]
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8123
    assert app.state.limits.time_limit_s == 5 and app.state.lab.model.cfg.n_ctx == 24
    assert "http://127.0.0.1:8123/" in capsys.readouterr().out

    with TestClient(app, base_url="http://127.0.0.1:8123") as c:  # the Host header is checked
        assert c.get("/api/info").status_code == 200
        assert c.get("/api/info", headers={"host": "localhost:8123"}).status_code == 200
        rebound = c.get("/api/info", headers={"host": "attacker.example:8123"})
        assert rebound.status_code == 400

    assert main(["serve", str(tmp_path / "m"), "--host", "0.0.0.0"]) == 0
    assert calls[-1][1]["host"] == "0.0.0.0" and "no authentication" in capsys.readouterr().err

    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert "error: " in capsys.readouterr().err and len(calls) == 2
    assert main(["serve", str(tmp_path / "m"), "--steps", "3"]) == 2
    assert "steps=3 applies to presets trained in memory" in capsys.readouterr().err


def test_serve_without_argument_trains_the_induction_preset(monkeypatch, capsys) -> None:
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(app))
    assert main(["serve", "--steps", "2"]) == 0
    lab = calls[0].state.lab
    assert lab.kind == "preset" and lab.task.name == "repeated_tokens" and lab.name.startswith("induction preset")
    assert "training the induction preset in memory" in capsys.readouterr().out
