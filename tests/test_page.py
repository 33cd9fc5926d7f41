"""The draw-a-digit page in a real browser: Playwright drives Debian's Chromium against the real server process.

Set DIGITLAB_PAGE_SCREENSHOT=docs/page.png to also write the README's screenshot there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from test_serve import start_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt-get install chromium; CI does)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
# Waits for the page's answer, not timings asserted: generous for a loaded 2-core machine.
ANSWER_TIMEOUT_MS = 30_000

# A "7" in the pad's 280x280 coordinates: the top bar, then the diagonal down to the foot.
SEVEN_STROKES = [[(70, 60), (120, 60), (170, 60), (210, 60)], [(210, 60), (180, 130), (150, 190), (125, 240)]]


@pytest.fixture(scope="module")
def server_url():
    process, url = start_server()
    yield url
    process.terminate()
    process.wait(timeout=60)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser, server_url):
    page = browser.new_page(viewport={"width": 900, "height": 580})
    page.goto(server_url)
    return page


def draw(page, strokes) -> None:
    """Mouse strokes in the pad's own pixel coordinates, whatever size the layout gave it."""
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / 280

    def at(point):
        return box["x"] + point[0] * scale, box["y"] + point[1] * scale

    for stroke in strokes:
        page.mouse.move(*at(stroke[0]))
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*at(point), steps=8)
        page.mouse.up()


def test_drawn_seven_is_read_as_seven(page, tmp_path):
    draw(page, SEVEN_STROKES)
    # The answer to the finished drawing: no newer one on its way (answers to half-drawn strokes come first).
    sync_api.expect(page.locator(".answer")).to_have_attribute("aria-busy", "false", timeout=ANSWER_TIMEOUT_MS)
    sync_api.expect(page.locator("#digit")).to_have_text("7", timeout=ANSWER_TIMEOUT_MS)
    bars = page.locator("#bars li")
    assert bars.count() == 10
    assert "best" in (bars.nth(7).get_attribute("class") or "")
    # The 28x28 digit the model saw is drawn: some pixel of it is lit.
    lit = page.evaluate(
        "() => Array.from(document.getElementById('seen').getContext('2d')"
        ".getImageData(0, 0, 28, 28).data).some((v, i) => i % 4 === 0 && v > 128)"
    )
    assert lit
    page.screenshot(path=tmp_path / "page.png")
    if os.environ.get("DIGITLAB_PAGE_SCREENSHOT"):
        page.screenshot(path=os.environ["DIGITLAB_PAGE_SCREENSHOT"])


def test_clear_is_keyboard_reachable_and_resets(page):
    page.locator("#clear").focus()
    page.keyboard.press("Enter")
    sync_api.expect(page.locator("#digit")).to_have_text("?")
    assert page.locator("#clear").get_attribute("type") == "button"
    assert page.locator("#upload").is_visible()


def test_phone_screen_fits_without_sideways_scrolling(browser, server_url):
    phone = browser.new_page(viewport={"width": 375, "height": 740}, has_touch=True, is_mobile=True)
    phone.goto(server_url)
    overflow = phone.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    pad = phone.locator("#pad").bounding_box()
    assert overflow <= 0
    assert pad["x"] >= 0 and pad["x"] + pad["width"] <= 375
