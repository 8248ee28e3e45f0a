"""`Table` (what every `.table()` returns) and the notebook views of analysis results."""

from __future__ import annotations

import pytest
import torch

from circuitlab.analysis.census import HeadCensus, HeadRow
from circuitlab.analysis.heads import HeadScores
from circuitlab.table import Table


def test_table_is_a_list_of_dicts_with_text_html_and_csv_views() -> None:
    t = Table([{"head": "L0H1", "score": 0.91234}, {"head": "L1H0", "score": 0.5, "extra": "x"}], title="scores")
    assert len(t) == 2 and t[0]["head"] == "L0H1" and [r["score"] for r in t] == [0.91234, 0.5]
    assert t.columns == ["head", "score", "extra"] and t.column("score") == [0.91234, 0.5]
    text = str(t).splitlines()
    assert text[0] == "scores" and text[1].split() == ["head", "score", "extra"]
    assert text[2].split() == ["L0H1", "0.9123"]  # floats to 4 significant digits, missing cells empty
    html = t._repr_html_()
    assert html.count("<tr>") == 3 and "<caption>scores</caption>" in html
    assert t.to_csv().splitlines() == ["head,score,extra", "L0H1,0.91234,", "L1H0,0.5,x"]
    with pytest.raises(KeyError, match="the columns are"):
        t.column("nope")


def test_repr_fits_a_screen_and_html_escapes() -> None:
    t = Table([{"i": i, "note": "<b>" + "x" * 100} for i in range(50)])
    lines = repr(t).splitlines()
    assert len(lines) == 22 and lines[-1] == "... 30 more rows (of 50)"
    assert max(len(line) for line in lines) <= 60  # long cells cut in the text view
    assert "&lt;b&gt;" in t._repr_html_() and "<b>" not in t._repr_html_()


def test_to_pandas() -> None:
    pd = pytest.importorskip("pandas")
    df = Table([{"a": 1, "b": 2.0}]).to_pandas()
    assert isinstance(df, pd.DataFrame) and list(df.columns) == ["a", "b"]


def test_census_and_scores_views() -> None:
    census = HeadCensus(
        [
            HeadRow(0, 0, ["previous-token"], {"previous_token": 0.9}, {"previous_token": 0.1}, 0.5, ["prev 0.9"]),
            HeadRow(0, 1, [], {"previous_token": 0.1}, {"previous_token": 0.1}, 0.0),
        ],
        clean_loss=1.25,
    )
    assert isinstance(census.table(), Table) and census.table()[0]["roles"] == "previous-token"
    assert repr(census).splitlines()[0] == "HeadCensus of 2 heads, clean loss 1.250: L0H0 previous-token"
    assert "<table" in census._repr_html_() and "L0H1" in census._repr_html_()
    scores = HeadScores({"induction": torch.tensor([[0.1, 0.8]])}, {"induction": torch.tensor([[0.1, 0.2]])})
    row = scores.table()[1]
    assert row == {"head": "L0H1", "induction": pytest.approx(0.8), "induction baseline": pytest.approx(0.2)}
    assert "induction L0H1 0.80 vs 0.20 baseline" in repr(scores)
    assert "<table" in scores._repr_html_()
