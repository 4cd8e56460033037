"""Every example flow under flows/ runs on every row of its own dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pfkit

FLOWS = Path(__file__).resolve().parent.parent / "flows"
EXAMPLES = sorted(p for p in FLOWS.iterdir() if (p / "flow.dag.yaml").is_file())


def test_there_are_example_flows():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("folder", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_on_its_data(folder):
    flow = pfkit.load_flow(folder)
    rows = [json.loads(line) for line in (folder / "data.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    assert rows
    for row in rows:
        result = flow.test(row)
        assert result.line.status == "Completed", (row, result.line.error)
        assert set(result.outputs) == set(flow.spec.outputs)


def test_support_router_takes_exactly_one_branch():
    flow = pfkit.load_flow(FLOWS / "support_router")
    result = flow.test(message="my password reset gives an error", customer_tier="standard")
    statuses = result.line.node_statuses()
    assert statuses["technical_reply"] == "Completed"
    assert statuses["refund_reply"] == statuses["general_reply"] == "Bypassed"
    assert result.outputs["intent"] == "technical"


def test_text_stats_metrics():
    result = pfkit.load_flow(FLOWS / "text_stats").test(text="a b c. d e f g h.")
    assert result.outputs["words"] == 8
    assert result.metrics["lines"] == 1 and result.metrics["total_words"] == 8
