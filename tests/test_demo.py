"""pfkit demo, the README's main job, end to end on the embedded model."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_demo_shows_a_real_difference(tmp_path, monkeypatch, capsys):
    pytest.importorskip("llama_cpp")
    from pfkit.cli import main

    monkeypatch.setenv("PFKIT_HOME", str(tmp_path / "home"))
    report = tmp_path / "demo.html"
    assert main(["demo", "--html", str(report), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "zero_shot" in out and "few_shot" in out
    import pfkit

    group = next(r.group for r in pfkit.Session.default().store.list() if r.group)
    result = pfkit.compare([group], metrics=["accuracy"])
    zero = next(r for r in result.runs if r.endswith("zero_shot"))
    few = next(r for r in result.runs if r.endswith("few_shot"))
    assert result.baseline == zero
    assert result.alignment.line_numbers == tuple(range(80))
    comparison = result.comparisons["accuracy"][few]
    assert comparison.difference > 0.2 and comparison.significant
    assert comparison.test == "McNemar (exact)"
    page = report.read_text(encoding="utf-8")
    assert "<svg" in page and "zero-shot vs few-shot" in page
