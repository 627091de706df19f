"""The labeling page end to end: headless Chromium, driven by Playwright, on a
real Serve app; the labels it submits must be in the label store.

Needs Debian's ``chromium`` package (``/usr/bin/chromium``) and the Python
``playwright`` package; the browser that ``playwright install`` downloads is
not used.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from raycat.labels import open_label_store
from raycat.taxonomy import Taxonomy
from tests.conftest import CHROMIUM_HEADLESS_ARGS
from tests.test_serving import TOKEN, build_served_run, start_app

CHROMIUM = "/usr/bin/chromium"

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the labeling-page test needs the playwright Python package "
    "(pip install playwright; the browser is Debian's chromium, not "
    "`playwright install`)",
)
if not shutil.which(CHROMIUM):
    pytest.skip(
        f"the labeling-page test needs Chromium at {CHROMIUM} "
        "(apt-get install -y chromium)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def served(ray_session, tmp_path_factory):
    from ray import serve

    config = build_served_run(tmp_path_factory.mktemp("page"))
    client = start_app(config)
    yield config, f"http://127.0.0.1:{config.serving.port}"
    client.close()
    serve.shutdown()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_HEADLESS_ARGS
        )
        yield chromium
        chromium.close()


def test_a_labeler_labels_two_products_and_the_store_has_them(served, browser):
    config, base_url = served
    page = browser.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{base_url}/")

    # The labeler name and token are asked once, then kept in localStorage.
    page.fill("#login-labeler", "erin")
    page.fill("#login-token", TOKEN)
    page.click("#login button[type=submit]")
    page.wait_for_selector(".product >> nth=1")
    assert page.evaluate("localStorage.getItem('raycat.labeler')") == "erin"
    assert "confirm the selected category" in page.inner_text("#help")
    # The first product's image arrives (decoded, not a broken icon).
    page.wait_for_function(
        "() => { const img = document.querySelector('.product .thumb');"
        " return img && img.complete && img.naturalWidth > 0; }"
    )

    first = page.locator('.product[data-index="0"]')
    second = page.locator('.product[data-index="1"]')
    first_pid = first.get_attribute("data-product-id")
    second_pid = second.get_attribute("data-product-id")
    confirmed = first.locator('.category[data-row="0"]').get_attribute("data-category")
    rejected = second.locator('.category[data-row="1"]').get_attribute("data-category")

    # A click on the first product, the keyboard on the second.
    first.locator('.category[data-row="0"] .yes-button').click()
    page.keyboard.press("j")
    page.keyboard.press("2")
    page.keyboard.press("n")
    assert "no" in (
        page.locator('.product[data-index="1"] .category[data-row="1"]').get_attribute(
            "class"
        )
        or ""
    )
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#status.ok")
    assert "Saved 2 labels" in page.inner_text("#status")
    assert "labels saved from this browser: 2" in page.inner_text("#saved-total")

    taxonomy = Taxonomy.load(Path(config.home) / "taxonomy.json")
    with open_label_store(config.home, taxonomy) as store:
        events = store.events(sources="human", labeler="erin")
        done = set(store.queue(status="done")["product_id"])
    given = events[events["derived_from"].isna()]
    assert set(given[["product_id", "category", "value"]].itertuples(index=False)) == {
        (first_pid, confirmed, 1),
        (second_pid, rejected, 0),
    }
    assert {first_pid, second_pid} <= done

    # The next page holds neither product: both are done.
    page.wait_for_selector(".product")
    shown = page.eval_on_selector_all(
        ".product", "els => els.map(e => e.dataset.productId)"
    )
    assert first_pid not in shown and second_pid not in shown
    page.close()
