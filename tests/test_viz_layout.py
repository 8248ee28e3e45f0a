"""Nothing cut off or overlapping, for every figure `circuitlab.viz` makes (tests/figure_gallery.py): in
headless Chromium at a notebook / report width, every text of a figure (titles, axis titles, colour-bar
titles, tick labels, subplot titles, legends) lies inside the figure, the figure fits the page, and no title
overlaps other text or the toolbar; the PNG of each renders (its content is checked in test_viz.py).

Skips without chromium, unless CIRCUITLAB_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from circuitlab import viz

from .figure_gallery import figures
from .test_web_browser import _save_artifact, browser  # noqa: F401  (fixture)

WINDOW_WIDTH = 1000  # px: a notebook cell on a laptop screen, or the report page

# For each figure: its box, the page's width, its texts' boxes, and its titles' boxes with the toolbar's.
BOXES = """
const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
const visible = e => e.textContent.trim() && e.getBBox().width > 0 && getComputedStyle(e).display !== 'none';
return [...document.querySelectorAll('.plotly-graph-div')].map(div => {
  const texts = [...div.querySelectorAll('svg text')].filter(visible);
  const isTitle = t => t.closest('.gtitle, .g-xtitle, .g-ytitle, .cbtitle, .annotation') || t.matches('.gtitle');
  return {
    figure: box(div), page: document.documentElement.clientWidth,
    texts: texts.map(t => [t.textContent, box(t)]),
    titles: texts.filter(isTitle).map(t => [t.textContent, box(t)]),
    toolbar: [...div.querySelectorAll('.modebar-group')].map(box),
  };
});
"""


def _overlap(a: list[float], b: list[float], slack: float = 1.0) -> bool:
    return a[0] < b[2] - slack and b[0] < a[2] - slack and a[1] < b[3] - slack and b[1] < a[3] - slack


def _inside(inner: list[float], outer: list[float], slack: float = 1.0) -> bool:
    return (inner[0] >= outer[0] - slack and inner[1] >= outer[1] - slack and inner[2] <= outer[2] + slack
            and inner[3] <= outer[3] + slack)  # fmt: skip


def test_every_figure_fits_and_nothing_is_cut_off(browser, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.support.ui import WebDriverWait

    built = {name: make() for name, make in figures().items()}
    page = viz.Page("every figure")
    for name, fig in built.items():
        page.heading(name).figure(fig)
    browser.set_window_size(WINDOW_WIDTH, 1200)
    browser.get(page.save(tmp_path / "figures.html").as_uri())
    drawn = "return [...document.querySelectorAll('.plotly-graph-div')].filter(d => d.querySelector('svg')).length"
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(drawn) == len(built))
    problems = []
    for name, found in zip(built, browser.execute_script(BOXES), strict=True):
        fig_box = found["figure"]
        if fig_box[2] > found["page"]:
            problems.append(f"{name}: {fig_box[2] - fig_box[0]:.0f} px wide, wider than the page ({found['page']} px)")
        problems += [f"{name}: {text!r} is cut off" for text, b in found["texts"] if not _inside(b, fig_box)]
        for text, b in found["titles"]:
            others = [t for t, o in found["texts"] if t != text and _overlap(b, o)]
            problems += [f"{name}: title {text!r} overlaps {others}"] if others else []
            if any(_overlap(b, tool) for tool in found["toolbar"]):
                problems.append(f"{name}: title {text!r} lies under the toolbar")
    _save_artifact(browser.get_screenshot_as_png(), tmp_path, "figures.png")
    assert not problems, "\n".join(problems)
    for name, fig in built.items():  # and each renders as a PNG
        assert viz.save_png(fig, tmp_path / f"{name}.png", dpi=40).stat().st_size > 1000, name


def test_titles_wrap_and_widths_are_capped() -> None:
    import torch

    long = "head outputs (all positions): clean activations patched into the corrupted run"
    fig = viz.layer_head_heatmap(torch.zeros(2, 3), title=long)
    assert fig.layout.title.text.replace("<br>", " ") == long and "<br>" in fig.layout.title.text
    assert fig.layout.margin.t >= 34 + 22 * (fig.layout.title.text.count("<br>") + 1)
    grid = viz.attention_grid(torch.full((2, 12, 64, 64), 1 / 64))
    assert grid.layout.width <= viz._common.MAX_WIDTH
    with pytest.raises(ValueError):
        viz.layer_head_heatmap(torch.zeros(2))
