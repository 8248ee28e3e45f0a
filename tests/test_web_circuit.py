"""The web lab's circuit view: POST /api/circuit on a model with a task, and the clear error without one."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from circuitlab.compiled import induction
from circuitlab.tasks import make_task
from circuitlab.web import Lab, create_app


def test_circuit_endpoint_finds_the_built_induction_circuit():
    built = induction(batch=2, chunk=8)
    task = make_task("repeated_tokens", vocab=24, length=17, min_chunk=3, max_chunk=8, max_gap=0)
    with TestClient(create_app(Lab(built.model, "built", task=task))) as client:
        for method in ("eap-ig", "acdc"):
            r = client.post("/api/circuit", json={"method": method})
            assert r.status_code == 200, r.text
            data = r.json()
            assert set(data["edges"]) == set(built.true_edges) and data["faithfulness"] > 0.99
            assert data["roc_auc"] == 1.0 and data["n_graph_edges"] == 29
            assert len([t for t in data["figure"]["data"] if t["mode"] == "lines"]) == 5
        assert client.post("/api/circuit", json={"method": "magic"}).status_code == 422
    page = TestClient(create_app(Lab(built.model, "built", task=task))).get("/").text
    assert 'id="circuit-run"' in page


def test_circuit_endpoint_without_a_task_says_what_to_do():
    built = induction(batch=2, chunk=4)
    with TestClient(create_app(Lab(built.model, "built"))) as client:
        r = client.post("/api/circuit", json={})
        assert r.status_code == 422 and "serve a run directory" in r.json()["detail"]


from .test_web_browser import _save_artifact, browser, server  # noqa: E402, F401  (fixtures)


def test_circuit_view_in_the_browser(browser, server, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, _ = server
    wait = WebDriverWait(browser, 60)
    browser.get(url + "/")
    Select(browser.find_element(By.ID, "circuit-method")).select_by_value("eap")
    browser.find_element(By.ID, "circuit-run").click()
    wait.until(lambda d: "faithfulness" in d.find_element(By.ID, "circuit-summary").text)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#circuit-plot .main-svg"))
    summary = browser.find_element(By.ID, "circuit-summary").text
    assert summary.startswith("eap on induction (trained)") and "ROC AUC" in summary
    assert not browser.find_element(By.ID, "circuit-error").is_displayed()
    _save_artifact(browser.get_screenshot_as_png(), tmp_path, "web_circuit.png")
