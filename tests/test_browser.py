"""The app in a real browser (Debian's chromium, driven by Playwright), as a learner uses it.

Screenshots land in artifacts/ (or $ARTIFACTS_DIR) for a person to look at.
"""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import ROOT

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("ARTIFACTS_DIR", ROOT / "artifacts"))


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), f"no chromium at {CHROMIUM}: apt-get install chromium (see README, Tests)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


def open_app(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, wait_until="load")  # not "networkidle": the page polls every second
    expect(page.get_by_role("button", name="Start")).to_be_visible(timeout=30_000)
    return page


def step_shown(page) -> int:
    match = re.search(r"step ([\d,]+) /", page.locator(".status").inner_text())
    return int(match.group(1).replace(",", "")) if match else -1


def test_train_watch_stop_and_generate_in_the_browser(browser, app_server):
    page = open_app(browser, app_server["url"])
    expect(page.get_by_text("Runs on:")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "1-train-tab.png", full_page=True)

    page.get_by_label("Preset").click()
    page.get_by_role("option", name="tiny").click()
    expect(page.get_by_label("Layers")).to_have_value("2")  # the preset fills in its settings
    page.get_by_label("Iterations").fill("100000")
    page.get_by_label("Eval every").fill("20")
    page.get_by_label("Run name").fill("browser-run")
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_text("Started browser-run")).to_be_visible(timeout=30_000)

    expect(page.locator(".status")).to_contain_text("Training browser-run", timeout=30_000)
    first = step_shown(page)
    page.wait_for_function("() => /step [0-9,]+ \\//.test(document.querySelector('.status').innerText)")
    page.wait_for_timeout(2500)
    assert step_shown(page) > first  # the progress moves without a reload
    expect(page.locator("text=/tokens\\/s/").first).to_be_visible()
    expect(page.locator("text=/ETA/").first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "2-training.png", full_page=True)
    expect(page.locator("#loss-chart canvas, #loss-chart svg.marks").first).to_be_visible()  # the chart is drawn

    other = open_app(browser, app_server["url"])  # a second tab sees the same run, and cannot start another
    expect(other.locator(".status")).to_contain_text("Training browser-run", timeout=15_000)
    expect(other.get_by_role("button", name="Start")).to_be_disabled()
    page.screenshot(path=ARTIFACTS / "2-training.png", full_page=True)
    other.screenshot(path=ARTIFACTS / "3-second-tab.png", full_page=True)

    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".status")).to_contain_text("Stopped browser-run", timeout=60_000)
    expect(other.locator(".status")).to_contain_text("Stopped browser-run", timeout=15_000)
    page.screenshot(path=ARTIFACTS / "4-stopped.png", full_page=True)

    page.get_by_role("tab", name="Generate").click()
    weights = page.get_by_role("combobox", name="Weights")
    weights.click()
    page.get_by_role("option", name="browser-run").click()
    weights.click()
    page.get_by_role("option", name="default").click()
    page.get_by_label("number input for Characters to generate").fill("2000")
    page.get_by_label("number input for Characters to generate").press("Tab")
    page.get_by_role("button", name="Generate").click()
    text = page.get_by_label("Generated text")
    expect(text).to_have_value(re.compile(r"^ROMEO:.{20,}", re.S), timeout=30_000)
    partial = len(text.input_value())
    expect(page.get_by_text(re.compile(r"2,000 tokens \(characters\) in"))).to_be_visible(timeout=60_000)
    assert len(text.input_value()) == len("ROMEO:") + 2000 > partial  # it streamed in before it was complete
    page.screenshot(path=ARTIFACTS / "5-generate.png", full_page=True)


def test_train_for_minutes_in_the_browser(browser, app_server):
    page = open_app(browser, app_server["url"])
    page.get_by_label("Preset").click()
    page.get_by_role("option", name="tiny").click()
    expect(page.get_by_label("Layers")).to_have_value("2")
    page.get_by_label("Train for (minutes)").fill("0.25")
    page.get_by_label("Run name").fill("timed-browser-run")
    page.get_by_role("button", name="Start").click()
    status = page.locator(".status")
    expect(status).to_contain_text("training for 15 s", timeout=30_000)  # the clock, not the iterations
    expect(status).to_contain_text("ETA", timeout=15_000)
    page.screenshot(path=ARTIFACTS / "2b-training-for-minutes.png", full_page=True)
    expect(status).to_contain_text("Finished timed-browser-run", timeout=60_000)
    expect(status).to_contain_text("100%")
    page.screenshot(path=ARTIFACTS / "2c-timed-run-finished.png", full_page=True)


def test_ladder_and_attention_in_the_browser(browser, app_server):
    page = open_app(browser, app_server["url"])
    page.get_by_role("tab", name="Ladder").click()
    page.get_by_label("Steps per rung").fill("60")
    page.get_by_label("Steps per rung").press("Tab")
    page.get_by_role("button", name="Climb the ladder").click()
    expect(page.get_by_text("Climbing rungs 1, 2, 3, 4, 5, 6")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("LayerNorm before attention").first).to_be_visible(timeout=30_000)  # the table
    expect(page.get_by_role("button", name="Climb the ladder")).to_be_enabled(timeout=120_000)  # all rungs done
    expect(page.locator("#ladder-chart canvas, #ladder-chart svg.marks").first).to_be_visible()
    page.get_by_role("button", name="Show attention").click()
    expect(page.locator("#attention-maps img").first).to_be_visible(timeout=30_000)
    page.screenshot(path=ARTIFACTS / "6-ladder.png", full_page=True)


def test_share_push_and_pull_in_the_browser(browser, app_server, hub_server):
    from conftest import TOKENS

    token = next(t for t, (user, role) in TOKENS.items() if user == "alice" and role == "write")
    page = open_app(browser, app_server["url"])
    page.get_by_role("tab", name="Share").click()
    page.get_by_label("Hugging Face token").fill(token)
    expect(page.get_by_label("Hugging Face token")).to_have_attribute("type", "password")  # never shown
    page.get_by_label("Model repo").first.fill("alice/from-browser")
    page.get_by_role("button", name="Push to the Hub").click()
    expect(page.get_by_text("Pushed default to alice/from-browser")).to_be_visible(timeout=60_000)
    assert ("model", "alice/from-browser") in hub_server.state.repos

    page.get_by_label("Model repo").nth(1).fill("alice/from-browser")
    page.get_by_label("Save as weights/…").fill("browser-pulled")
    page.get_by_role("button", name="Pull from the Hub").click()
    expect(page.get_by_text("into weights/browser-pulled")).to_be_visible(timeout=60_000)
    page.get_by_label("Model repo").first.fill("bob/not-mine")
    page.get_by_role("button", name="Push to the Hub").click()
    expect(page.get_by_text("(403)").first).to_be_visible(timeout=60_000)
    page.screenshot(path=ARTIFACTS / "7-share.png", full_page=True)
    page.get_by_role("tab", name="Generate").click()
    expect(page.get_by_label("Weights", exact=True).locator("visible=true").first).to_have_value("browser-pulled")
