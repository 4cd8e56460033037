"""The comparison report opened in headless Chromium (Debian's, driven by Playwright): its
tables and plots are there, and it makes no network request."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_compare import A_CORRECT, B_CORRECT, F1_A, F1_B, base_runs, eval_run  # noqa: E402

from pfkit.compare import collect, compare_scores, render_html  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.slow
def test_report_renders_in_chromium_without_network(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        pytest.fail("Debian's chromium is needed for this test (apt-get install chromium); "
                    ".ci/run installs it")
    a, b = base_runs()
    result = compare_scores([collect(a, [eval_run("ev_a", A_CORRECT, F1_A)]),
                             collect(b, [eval_run("ev_b", B_CORRECT, F1_B)])])
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(result), encoding="utf-8")
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            page.wait_for_load_state("networkidle")
            assert page.title().startswith("pfkit comparison")
            headings = page.locator("h2").all_inner_texts()
            assert headings[:2] == ["correct", "f1"]
            # two metrics, the changed lines, and every line (collapsed until opened)
            assert page.locator("table").count() == 4
            assert not page.locator("details table").is_visible()
            page.locator("details summary").click()
            assert page.locator("details table tr").count() == 13  # a header and 12 lines
            assert page.locator("svg").count() == 4
            assert page.locator("svg circle").count() > 24  # every line's score is drawn
            verdicts = page.locator("td.better").all_inner_texts()
            assert verdicts == ["better", "better"]
            box = page.locator("svg").first.bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 40
        finally:
            browser.close()
    assert requests == [page_file.as_uri()]  # the page itself, nothing else
