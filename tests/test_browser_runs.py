"""The Runs tab in a real browser (Debian's chromium, driven by Playwright): two runs compared on one chart."""

import time

from playwright.sync_api import expect

from test_app import TINY, wait_for
from test_browser import ARTIFACTS, browser, open_app  # noqa: F401  (fixtures)
from webapp.runs import COLUMNS

COLUMN_WORDS = {w for c in COLUMNS for w in c.split()}


def test_runs_tab_overlays_two_curves_and_shows_two_samples(browser, app_server):  # noqa: F811
    from gradio_client import Client

    client = Client(app_server["url"], analytics_enabled=False, verbose=False)
    for name, layers in [("compare-1", 1), ("compare-2", 2)]:  # two quick runs, trained through the API
        client.predict(*{**TINY, "run_name": name, "n_layer": layers, "max_iters": 20, "eval_interval": 10}.values(),
                       api_name="/start_training")
        wait_for(client, lambda s: s["state"] not in ("running", "stopping"), timeout=300)

    page = open_app(browser, app_server["url"])
    page.get_by_role("tab", name="Runs").click()
    table = page.locator("#runs-table")
    expect(table).to_contain_text("compare-1", timeout=30_000)
    expect(table).to_contain_text("compare-2")
    expect(page.locator("#runs-chart")).to_be_hidden()  # nothing ticked: no empty image box, no empty table
    for header in table.locator("th").all_inner_texts():  # a header wraps between its words, never inside one
        words = header.replace("⋮", "").split()
        assert all(w in COLUMN_WORDS for w in words), (header, words)
    expect(page.locator("#runs-settings")).to_be_hidden()
    picked = page.locator("#runs-picked")
    picked.get_by_label("compare-1", exact=True).check()
    expect(page.locator("#runs-chart img")).to_be_visible(timeout=30_000)  # one run: its curve, nothing to compare
    expect(page.locator("#runs-settings")).to_be_hidden()
    picked.get_by_label("compare-2", exact=True).check()
    page.get_by_label("best val").check()  # sort by best val: one click; the ticks stay with their runs
    order = [r["name"] for r in client.predict("best val", api_name="/list_runs")]
    first_cells = table.get_by_role("row").locator("[role=gridcell]:first-child")  # the rows as a reader sees them
    shown, deadline = [], time.monotonic() + 30
    while time.monotonic() < deadline:  # the grid draws only the rows in view: those, in that order
        shown = [name.strip() for name in first_cells.all_inner_texts()]
        if len(shown) >= 3 and shown == order[:len(shown)]:
            break
        time.sleep(0.5)
    assert len(shown) >= 3 and shown == order[:len(shown)], (shown, order)
    expect(page.locator("#runs-chart img")).to_be_visible(timeout=30_000)
    samples = page.locator(".run-sample")
    expect(samples).to_have_count(2, timeout=30_000)
    expect(samples.nth(0)).to_contain_text("compare-1")
    expect(samples.nth(1)).to_contain_text("compare-2")
    expect(page.locator("#runs-settings")).to_contain_text("n_layer")  # what differs between them
    page.screenshot(path=ARTIFACTS / "8-runs.png", full_page=True)
    first = page.locator("#runs-chart img").get_attribute("src")
    page.get_by_label("wall-clock seconds").check()
    expect(page.locator("#runs-chart img")).not_to_have_attribute("src", first, timeout=30_000)  # redrawn
