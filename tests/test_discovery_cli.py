"""`circuitlab circuit` end to end and the circuit figure."""

from __future__ import annotations

import json
from pathlib import Path

from circuitlab import viz
from circuitlab.analysis.discovery import Circuit, edge_attribution
from circuitlab.cli import main
from circuitlab.compiled import induction


def test_circuit_figure_draws_each_edge_once_and_every_node():
    p = induction(batch=4, chunk=5)
    scores = edge_attribution(p.model, p.clean, p.corrupted, p.metric)
    circuit = Circuit.from_edges(p.graph, p.true_edges, scores)
    fig = viz.circuit_graph(circuit)
    lines = [t for t in fig.data if t.mode == "lines"]
    assert len(lines) == 5
    assert {t.hovertext.split(":")[0] for t in lines} == {e.replace("->", " -> ") for e in p.true_edges}
    widths = {t.hovertext.split(":")[0]: t.line.width for t in lines}
    strongest = p.graph.edge_names[int(scores.abs().argmax())].replace("->", " -> ")
    assert widths[strongest] == max(widths.values())
    nodes = fig.data[-1]
    assert list(nodes.text) == [*p.graph.senders, "logits"]


def test_circuit_command_on_a_run(trained_induction, tmp_path: Path, capsys):
    _, result = trained_induction
    out = tmp_path / "c"
    code = main(["circuit", str(result.run_dir), "--method", "eap", "--batch", "16", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "known circuit" in printed
    record = json.loads((out / "circuit.json").read_text())
    assert record["task"] == "induction (trained)" and record["faithfulness"] >= 0.9
    assert record["circuit"]["n_edges"] == record["curve"]["minimal_0.9"]
    assert len(record["circuit"]["scores"]) == record["circuit"]["n_graph_edges"] == 29
    assert 0 <= record["known_circuit"]["roc_auc"] <= 1
    assert "plotly" in (out / "circuit.html").read_text()[:200000].lower()


def test_circuit_command_errors_in_one_line(tmp_path: Path, capsys):
    p = induction(batch=2, chunk=4)
    p.model.save(tmp_path / "m")
    code = main(["circuit", str(tmp_path / "m"), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and "pass --task" in err and err.count("\n") == 1
    code = main(["circuit", str(tmp_path / "m"), "--task", "repeated_tokens", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and "needs d_vocab >= 64" in err
    assert not (tmp_path / "c" / "circuit.json").exists()


def test_circuit_help(capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        main(["circuit", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and out.startswith("usage: circuitlab circuit") and "--method" in out
