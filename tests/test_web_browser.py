"""End to end: the real server (uvicorn on a free port) and Debian's headless Chromium (driven by selenium with
the system chromedriver, so nothing is downloaded). Loads the page, submits a prompt, waits for the
predictions and the attention plot, checks them against the model, and saves a screenshot as a test
artefact (pytest's tmp dir, and $CIRCUITLAB_ARTIFACTS when set).

Without chromium the test skips, unless CIRCUITLAB_REQUIRE_BROWSER=1 (CI sets it), where it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from circuitlab.web import Lab, create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",  # root in CI
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--window-size=1200,3200",
]


def _require_browser() -> None:
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[web]')")
    if missing:
        reason = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CIRCUITLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"CIRCUITLAB_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture
def server(trained_induction) -> Iterator[tuple[str, Lab]]:
    """The lab for the trained induction model, served by uvicorn on 127.0.0.1 at a free port."""
    import uvicorn

    task, result = trained_induction
    lab = Lab(result.model, "induction (400 steps)", "run", task, census_batch=8)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # a free port, held open: no race with other processes
    server = uvicorn.Server(uvicorn.Config(create_app(lab, allowed_hosts=["127.0.0.1"]), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", lab
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def browser(tmp_path: Path):
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # with the driver's path below, selenium-manager never runs
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _save_artifact(png: bytes, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(png)
    if os.environ.get("CIRCUITLAB_ARTIFACTS"):
        folder = Path(os.environ["CIRCUITLAB_ARTIFACTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / name)
    return path


def test_page_shows_predictions_and_attention(browser, server, tmp_path: Path) -> None:  # browser first: skip early
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, lab = server
    wait = WebDriverWait(browser, 30)
    browser.get(url + "/")
    wait.until(lambda d: d.find_element(By.ID, "prompt").get_property("value") != "")  # /api/info arrived
    assert "no tokenizer" in browser.find_element(By.ID, "prompt-format").text

    # A prompt longer than n_ctx: the page shows the server's message.
    prompt_box = browser.find_element(By.ID, "prompt")
    prompt_box.clear()
    prompt_box.send_keys(" ".join(["1"] * (lab.model.cfg.n_ctx + 1)))
    browser.find_element(By.ID, "run").click()
    error = wait.until(ec.visibility_of_element_located((By.ID, "prompt-error")))
    assert f"reads at most n_ctx={lab.model.cfg.n_ctx} tokens" in error.text

    # [BOS, x, x]: the trained model predicts the second copy, and its induction head attends back.
    x = [int(t) for t in torch.randperm(30, generator=torch.Generator().manual_seed(3))[:10] + 2]
    tokens = [0, *x, *x]
    prompt_box.clear()
    prompt_box.send_keys(" ".join(map(str, tokens)))
    Select(browser.find_element(By.ID, "layer")).select_by_value("1")
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#predictions tbody tr")) == len(tokens))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#attention-plot .main-svg"))
    assert not browser.find_element(By.ID, "prompt-error").is_displayed()

    cells = browser.execute_script(  # one round trip, not one per cell
        "return [...document.querySelectorAll('#predictions tbody tr')].map(r => [...r.cells].map(c => c.innerText))"
    )
    assert [c[1] for c in cells] == [str(t) for t in tokens]
    ranks = [c[4] for c in cells[len(x) + 1 : -1]]  # predictions of the second copy, after its first token
    assert ranks.count("0") >= len(ranks) - 1, ranks  # the induction model gets (nearly) all of them right

    plotted = browser.execute_script("return document.getElementById('attention-plot').data[0].z")
    expected = lab.attention(" ".join(map(str, tokens)), 1, 0)["pattern"]
    torch.testing.assert_close(torch.tensor(plotted), torch.tensor(expected))
    Select(browser.find_element(By.ID, "head")).select_by_value("1")  # another head: the plot follows
    title = "return document.getElementById('attention-plot').layout.title.text"
    wait.until(lambda d: d.execute_script(title) == "L1H1 attention")

    # The patching heatmap (the page's example pair) and the census table.
    browser.find_element(By.ID, "patching-run").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#patching-plot .main-svg"))
    browser.find_element(By.ID, "census-run").click()
    wait.until(
        lambda d: (
            len(d.find_elements(By.CSS_SELECTOR, "#census tbody tr")) == lab.model.cfg.n_layers * lab.model.cfg.n_heads
        )
    )
    assert "induction" in browser.find_element(By.ID, "census").text

    # Everything came from this server; the console holds no errors (a Content-Security-Policy violation
    # would show there).
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(name.startswith(url + "/") for name in loaded), loaded
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert all("status of 422" in m for m in severe), severe  # only the too-long prompt's response

    shot = _save_artifact(browser.get_screenshot_as_png(), tmp_path, "web_lab.png")
    assert shot.stat().st_size > 10_000
