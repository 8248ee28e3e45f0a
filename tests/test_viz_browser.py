"""The figures as a person sees them, in Debian's headless Chromium: the run report, the interactive attention
view and the web lab's patching map — labels, the colour of a zero-effect cell, hover behaviour, and that no
request leaves the machine. Each saves a screenshot (pytest's tmp dir, and $CIRCUITLAB_ARTIFACTS when set).

Skips without chromium, unless CIRCUITLAB_REQUIRE_BROWSER=1 (CI sets it).
"""

from __future__ import annotations

from pathlib import Path

import torch

from circuitlab import viz
from circuitlab.report import build_report

from .test_web_browser import _save_artifact, browser, server  # noqa: F401  (fixtures)

# The colour plotly gives value v on a heatmap trace (its fullData): v's place on [zmin, zmax], nearest stop.
COLOUR_AT = """
const [trace, v] = [arguments[0], arguments[1]];
const at = (v - trace.zmin) / (trace.zmax - trace.zmin);
let best = trace.colorscale[0];
for (const stop of trace.colorscale) if (Math.abs(stop[0] - at) < Math.abs(best[0] - at)) best = stop;
return best[1];
"""


def _offline(driver) -> list[str]:
    """Every resource the page loaded that came over the network (http/https): none may."""
    names = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [n for n in names if n.startswith(("http:", "https:"))]


def test_report_in_chromium(browser, trained_induction, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, result = trained_induction
    page = build_report(result.run_dir, tmp_path / "report.html", sample_size=2)
    browser.get(page.as_uri())
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".plotly-graph-div .main-svg")) > 5)
    headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    assert headings[:3] == ["Head census", "Attention on a sample", "Circuits"]

    # The attention grid's axes carry "pos:token" labels on both axes, and query / key titles.
    grid = browser.find_elements(By.CSS_SELECTOR, ".plotly-graph-div")[1]
    ticks = grid.find_elements(By.CSS_SELECTOR, ".xtick text, .ytick text")
    assert ticks and all(":" in t.text for t in ticks if t.text)
    titles = {t.text for t in grid.find_elements(By.CSS_SELECTOR, ".infolayer text")}  # axis titles x, x3, y...
    assert {"query", "key"} <= titles

    # The interactive view: hover a token of layer 1 -> the tokens it attends to are coloured by that head's row.
    view = browser.find_elements(By.CSS_SELECTOR, "[data-circuitlab-view=attention]")[1]
    tokens = view.find_elements(By.CSS_SELECTOR, ".cl-tok")
    ActionChains(browser).move_to_element(tokens[-1]).perform()
    values = [float(t.get_attribute("data-value")) for t in tokens]
    assert abs(sum(values) - 1) < 0.01  # one query's attention over the keys
    assert "L1H0" in view.find_element(By.CSS_SELECTOR, ".cl-status").text
    assert tokens[-1].get_attribute("class").split() == ["cl-tok", "cl-focus"]
    assert _offline(browser) == []
    _save_artifact(browser.get_screenshot_as_png(), tmp_path, "report.png")


def test_interactive_attention_view(browser, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    n = 6
    previous = torch.zeros(n, n)
    previous[0, 0] = 1
    previous[torch.arange(1, n), torch.arange(n - 1)] = 1  # a previous-token head
    uniform = torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None]
    words = ["<s>", " Alex", " Hart", ".", " Alex", "\n"]
    view = viz.attention_heads(torch.stack([previous, uniform]), words, head_names=["prev", "uniform"])
    browser.get(view.save(tmp_path / "view.html").as_uri())
    tokens = browser.find_elements(By.CSS_SELECTOR, ".cl-tok")
    assert [t.text for t in tokens][1:3] == [" Alex", " Hart"] and tokens[
        5
    ].text == "\\n"  # leading spaces kept, newline written out
    values = lambda: [float(t.get_attribute("data-value")) for t in tokens]  # noqa: E731
    ActionChains(browser).move_to_element(tokens[3]).perform()  # query 3 attends to key 2
    assert values() == [0, 0, 1, 0, 0, 0]
    assert "rgba(33, 102, 172, 1" in tokens[2].value_of_css_property("background-color").replace(")", "")
    browser.find_element(By.CSS_SELECTOR, "input[value=key]").click()  # what attends to token 3: query 4
    ActionChains(browser).move_to_element(tokens[3]).perform()
    assert values() == [0, 0, 0, 0, 1, 0]
    ActionChains(browser).move_to_element(browser.find_elements(By.CSS_SELECTOR, ".cl-head")[1]).perform()
    ActionChains(browser).move_to_element(tokens[2]).perform()  # uniform head: queries 2..5 read key 2
    assert values() == [0, 0, round(1 / 3, 3), 0.25, 0.2, round(1 / 6, 3)]
    assert _offline(browser) == []
    _save_artifact(browser.get_screenshot_as_png(), tmp_path, "attention_view.png")


def test_web_lab_patching_zero_is_white(browser, server, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = server
    browser.get(url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_element(By.ID, "prompt").get_property("value") != "")
    browser.find_element(By.ID, "patching-run").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#patching-plot .main-svg"))
    trace = browser.execute_script("return document.getElementById('patching-plot')._fullData[0]")
    assert browser.execute_script(COLOUR_AT, trace, 0) == "rgb(255,255,255)"  # no effect: white
    r, g, b = (int(c) for c in browser.execute_script(COLOUR_AT, trace, 1)[4:-1].split(","))
    assert b > r and b > g  # the clean behaviour: blue, as in every other view
    assert trace["zmin"] == -trace["zmax"] and trace["zmax"] >= 1
    assert _offline(browser) == [] or all(n.startswith(url) for n in _offline(browser))
    _save_artifact(browser.get_screenshot_as_png(), tmp_path, "web_lab_patching.png")
