"""The storefront page end to end, in a real headless Chromium (Debian's ``chromium``, driven by
Selenium through Debian's ``chromium-driver``; nothing is downloaded at run time).

The service is the real ``uvicorn`` command on the tiny twin's pipeline output, with browser
events on and CORS restricted to the page's own origin. The browser tests skip on a machine
without the two packages and fail under ``CI=true`` (``dev_scripts/ensure_test_services.sh``
installs them).

The first paint of the recommendations is measured in the page (``window.shopTimings``) and
reported, not asserted. ``RECSYS_STOREFRONT_SCREENSHOT=docs/storefront.png`` writes the README's
screenshot there (by default it goes to the test's temporary folder).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from recsys.service.events import ONLINE_EVENTS
from tests.conftest import unavailable
from tests.service.conftest import ROOT, LiveService, PublishedData, free_port

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
RECOMMENDATION_CARDS = "#recommendations a.card"
# The page's fetches answer in milliseconds; this only bounds a broken page.
WAIT_S = 10.0


@pytest.fixture(scope="module")
def shop(published_data: PublishedData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """The service on a SQLite copy, browser events on, CORS allowing only its own origin."""
    folder = tmp_path_factory.mktemp("storefront")
    shutil.copyfile(published_data.sqlite_path, folder / "service.sqlite3")
    port = free_port()
    service = LiveService(
        f"sqlite:///{folder / 'service.sqlite3'}",
        folder / "service.log",
        env={
            "RECSYS_BROWSER_EVENTS_ENABLED": "true",
            "RECSYS_CORS_ALLOWED_ORIGINS": f'["http://127.0.0.1:{port}"]',
        },
        port=port,
    ).start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium with its console log kept."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        unavailable("chromium or chromedriver missing: apt-get install chromium chromium-driver")
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1100"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: WebDriver) -> list[dict[str, Any]]:
    """Console errors since the last call (reading the log empties it)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def open_page(driver: WebDriver, shop: LiveService, fragment: str = "") -> None:
    """Load the page afresh and wait for the recommendations."""
    driver.get("about:blank")
    console_errors(driver)
    driver.get(f"{shop.url}/shop{fragment}")
    wait_for_cards(driver)


def wait_for_cards(driver: WebDriver) -> list[WebElement]:
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, RECOMMENDATION_CARDS))
    return driver.find_elements(By.CSS_SELECTOR, RECOMMENDATION_CARDS)


def shown(driver: WebDriver, selector: str = RECOMMENDATION_CARDS) -> list[tuple[int, str]]:
    """Item id and source of every card of a list, in order."""
    cards = driver.find_elements(By.CSS_SELECTOR, selector)
    return [
        (int(card.get_attribute("data-item-id") or -1), card.get_attribute("data-source") or "")
        for card in cards
    ]


def renders(driver: WebDriver) -> int:
    return int(driver.execute_script("return Number(document.body.dataset.renders || 0)"))


def page_config(shop: LiveService) -> dict[str, Any]:
    return httpx.get(f"{shop.url}/shop/api/config", timeout=10).json()


def example(shop: LiveService, kind: str) -> int:
    return next(e["user_id"] for e in page_config(shop)["examples"] if e["kind"] == kind)


def online_events(shop: LiveService) -> list[tuple[int, int, str]]:
    engine = sa.create_engine(shop.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(ONLINE_EVENTS.c.user_id, ONLINE_EVENTS.c.item_id, ONLINE_EVENTS.c.event).order_by(
                    ONLINE_EVENTS.c.event_id
                )
            ).fetchall()
    finally:
        engine.dispose()
    return [(int(user), int(item), str(event)) for user, item, event in rows]


def click_timed(driver: WebDriver, card: WebElement) -> float:
    """Click like a user and return the page's clock at the click (ms)."""
    started = float(driver.execute_script("return performance.now()"))
    card.click()
    return started


def wait_for_new_list(driver: WebDriver, before_renders: int, before: list[tuple[int, str]]) -> float:
    """Wait for a re-render that changed the list; return the page's clock at that render (ms)."""
    WebDriverWait(driver, WAIT_S).until(lambda d: renders(d) > before_renders and shown(d) != before)
    return float(driver.execute_script("return window.shopTimings.lastRender"))


def card_with_neighbours(
    driver: WebDriver, data: PublishedData, selector: str, skip: set[int], described: bool = False
) -> WebElement:
    """A card of the list whose item has similar items (a click on it feeds online i2i) and,
    if ``described``, a category and a price."""
    with_neighbours = set(data.tables["similar_items"]["item_id"].astype(int))
    if described:
        items = data.items
        with_neighbours &= set(items.loc[items["category_id"].notna() & items["price"].notna(), "item_id"])
    for card in driver.find_elements(By.CSS_SELECTOR, selector):
        item = int(card.get_attribute("data-item-id") or -1)
        if item in with_neighbours and item not in skip:
            return card
    pytest.fail(f"no card of {selector} has similar items")


def test_heavy_user_cards_render_without_console_errors_and_first_paint_is_reported(
    browser: WebDriver, shop: LiveService, published_data: PublishedData, record_property: Any
) -> None:
    open_page(browser, shop)
    heavy = example(shop, "heavy")
    # The page opens on the heavy example, whose answer it shows card for card.
    assert f"visitor={heavy}" in browser.current_url
    answer = httpx.get(f"{shop.url}/recommendations/users/{heavy}?k=12", timeout=10).json()
    assert shown(browser) == [(item["item_id"], item["source"]) for item in answer["items"]]
    assert {source for _, source in shown(browser)} <= {"ranked", "als", "i2i", "history_i2i", "default"}
    assert "Sources: " in browser.find_element(By.ID, "explanation").text

    # Each card shows the catalogue's facts of its item.
    items = published_data.items.set_index("item_id")
    first = browser.find_element(By.CSS_SELECTOR, RECOMMENDATION_CARDS)
    item_id = int(first.get_attribute("data-item-id") or -1)
    row = items.loc[item_id]
    assert first.find_element(By.CLASS_NAME, "card-title").text == f"Item {item_id}"
    category = first.find_element(By.CLASS_NAME, "card-category").text
    if pd.notna(row["category_id"]):
        # read_sql gives a float column when some items have no category.
        assert category.startswith("Category ") and category.endswith(f" {int(row['category_id'])}")
    assert first.find_element(By.CLASS_NAME, "card-price").text.replace(",", "") in {
        f"{row['price']:g}",
        "No price",
    }
    assert browser.find_elements(By.CSS_SELECTOR, "#popular a.card")

    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.execute_script("return window.shopTimings.firstRecommendations") is not None
    )
    painted = float(browser.execute_script("return window.shopTimings.firstRecommendations"))
    loaded = float(
        browser.execute_script("return performance.getEntriesByType('navigation')[0].loadEventEnd")
    )
    record_property("first_paint_of_recommendations_ms", round(painted))
    print(
        f"\nstorefront: recommendations painted {painted:.0f} ms after navigation start "
        f"(load event {loaded:.0f} ms)"
    )
    assert console_errors(browser) == []


def test_clicking_a_card_records_a_view_and_changes_the_list_within_a_second(
    browser: WebDriver, shop: LiveService, published_data: PublishedData
) -> None:
    heavy = example(shop, "heavy")
    open_page(browser, shop, f"#visitor={heavy}")
    before, before_renders = shown(browser), renders(browser)
    card = card_with_neighbours(browser, published_data, RECOMMENDATION_CARDS, skip=set())
    item = int(card.get_attribute("data-item-id") or -1)

    clicked_at = click_timed(browser, card)
    changed_at = wait_for_new_list(browser, before_renders, before)

    assert changed_at - clicked_at <= 1000, (
        f"the list changed {changed_at - clicked_at:.0f} ms after the click"
    )
    assert (heavy, item, "view") in online_events(shop)
    assert "online_i2i" in {source for _, source in shown(browser)}
    # The product page shows the item and its similar items.
    assert browser.find_element(By.ID, "product").is_displayed()
    assert browser.find_element(By.ID, "product-title").text == f"Item {item}"
    similar = [item_id for item_id, _ in shown(browser, "#similar a.card")]
    assert similar == published_data.list_of("similar_items", item)[: len(similar)] and similar
    assert console_errors(browser) == []


def test_add_to_cart_records_addtocart(
    browser: WebDriver, shop: LiveService, published_data: PublishedData
) -> None:
    light = example(shop, "light")
    open_page(browser, shop, f"#visitor={light}")
    card = card_with_neighbours(browser, published_data, RECOMMENDATION_CARDS, skip=set())
    item = int(card.get_attribute("data-item-id") or -1)
    card.click()
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "product").is_displayed())
    before_renders = renders(browser)
    browser.find_element(By.ID, "add-to-cart").click()

    WebDriverWait(browser, WAIT_S).until(lambda d: renders(d) > before_renders)
    assert (light, item, "addtocart") in online_events(shop)
    assert "in your cart" in browser.find_element(By.ID, "status").text
    assert console_errors(browser) == []


def test_a_new_visitor_starts_with_popular_items_and_gets_online_recommendations_after_two_clicks(
    browser: WebDriver, shop: LiveService, published_data: PublishedData
) -> None:
    open_page(browser, shop)
    before_renders = renders(browser)
    browser.find_element(By.CSS_SELECTOR, "button.example[data-kind='new']").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: renders(d) > before_renders)
    visitor = int(browser.find_element(By.ID, "visitor-id").get_attribute("value") or -1)
    assert visitor not in set(published_data.tables["ranked_recommendations"]["user_id"].astype(int))
    assert all(user != visitor for user, _, _ in online_events(shop))

    # Popular items first: the default list, which the "Popular now" strip shows too.
    cards = shown(browser)
    assert {source for _, source in cards} == {"default"}
    assert [item for item, _ in cards][:10] == [item for item, _ in shown(browser, "#popular a.card")]
    assert "no history" in browser.find_element(By.ID, "explanation").text

    clicked: set[int] = set()
    for _ in range(2):
        before, before_renders = shown(browser), renders(browser)
        card = card_with_neighbours(browser, published_data, "#popular a.card", skip=clicked)
        clicked.add(int(card.get_attribute("data-item-id") or -1))
        card.click()
        wait_for_new_list(browser, before_renders, before)
    assert "online_i2i" in {source for _, source in shown(browser)}
    assert {(visitor, item, "view") for item in clicked} <= set(online_events(shop))
    assert console_errors(browser) == []


def test_accessibility_tree_labels_controls_and_pictures_and_cards_are_keyboard_reachable(
    browser: WebDriver, shop: LiveService
) -> None:
    open_page(browser, shop, f"#visitor={example(shop, 'light')}")
    nodes = browser.execute_cdp_cmd("Accessibility.getFullAXTree", {})["nodes"]

    def role(node: dict[str, Any]) -> str:
        return str(node.get("role", {}).get("value", ""))

    def name(node: dict[str, Any]) -> str:
        return str(node.get("name", {}).get("value", "")).strip()

    def focusable(node: dict[str, Any]) -> bool:
        return any(p["name"] == "focusable" and p["value"]["value"] for p in node.get("properties", []))

    visible = [node for node in nodes if not node.get("ignored")]
    controls = [n for n in visible if role(n) in {"button", "textbox", "spinbutton", "combobox", "searchbox"}]
    assert {role(n) for n in controls} >= {"button", "spinbutton"}
    assert [n for n in controls if not name(n)] == []
    assert any(name(n) == "Visitor id" for n in controls)
    pictures = [n for n in visible if role(n) in {"image", "img"}]
    assert pictures and [n for n in pictures if not name(n)] == []
    links = {name(n) for n in visible if role(n) == "link" and focusable(n)}
    for item, _ in shown(browser):
        assert any(f"Item {item}" in link for link in links), f"card of item {item} is not a focusable link"

    # Tab from the top reaches a card, and Enter opens it.
    browser.find_element(By.TAG_NAME, "body").click()
    for _ in range(40):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        focused = browser.switch_to.active_element
        if "card" in (focused.get_attribute("class") or "").split():
            break
    else:
        pytest.fail("40 presses of Tab did not reach a product card")
    item = focused.get_attribute("data-item-id")
    focused.send_keys(Keys.ENTER)
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "product").is_displayed())
    assert browser.find_element(By.ID, "product-title").text == f"Item {item}"
    # Focus moves to the product's heading, so a screen reader announces it.
    assert browser.switch_to.active_element.get_attribute("id") == "product-title"
    assert console_errors(browser) == []


def test_the_page_works_with_cors_restricted_to_its_own_origin(browser: WebDriver, shop: LiveService) -> None:
    open_page(browser, shop)
    assert console_errors(browser) == []
    # A page of another origin (the same service named differently) may not read the API: the
    # restriction is active, and it is what the page above worked under.
    other = shop.url.replace("127.0.0.1", "localhost")
    browser.get(f"{other}/shop/static/product.svg")
    outcome = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => done('read ' + r.status), e => done('blocked: ' + e.name));",
        f"{shop.url}/shop/api/popular",
    )
    assert outcome.startswith("blocked"), outcome
    assert any("CORS" in entry["message"] for entry in console_errors(browser))
    # The page's own origin is allowed (the CORS answer names it).
    answer = httpx.get(f"{shop.url}/shop/api/popular", headers={"Origin": shop.url}, timeout=10)
    assert answer.headers["access-control-allow-origin"] == shop.url


def test_screenshot_of_the_page(
    browser: WebDriver, shop: LiveService, published_data: PublishedData, tmp_path: Path
) -> None:
    heavy = example(shop, "heavy")
    open_page(browser, shop, f"#visitor={heavy}")
    card = card_with_neighbours(browser, published_data, RECOMMENDATION_CARDS, skip=set(), described=True)
    before, before_renders = shown(browser), renders(browser)
    card.click()
    wait_for_new_list(browser, before_renders, before)
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#similar a.card"))
    browser.execute_script("window.scrollTo(0, 0); document.activeElement.blur()")
    # The whole page, "Popular now" included.
    height = int(browser.execute_script("return document.documentElement.scrollHeight"))
    browser.set_window_size(1280, height + 160)
    target = Path(os.environ.get("RECSYS_STOREFRONT_SCREENSHOT", tmp_path / "storefront.png"))
    if not target.is_absolute():
        target = ROOT / target
    assert browser.save_screenshot(str(target))
    browser.set_window_size(1280, 1100)
    assert target.stat().st_size > 10_000
    assert console_errors(browser) == []


def test_browser_events_are_refused_from_other_origins_and_over_the_rate_limit(
    shop: LiveService, published_data: PublishedData
) -> None:
    item = published_data.item_with_neighbours()
    visitor = published_data.cold_user() + 777
    url = f"{shop.url}/shop/api/visitors/{visitor}/events"
    body = {"item_id": item, "event": "view"}
    with shop.client() as client:
        assert client.post(url, json=body).status_code == 403  # no Origin: not a browser page
        assert client.post(url, json=body, headers={"Origin": "https://evil.example"}).status_code == 403
        cross_site = {"Origin": shop.url, "Sec-Fetch-Site": "cross-site"}
        assert client.post(url, json=body, headers=cross_site).status_code == 403
        same = {"Origin": shop.url}
        assert client.post(url, json={**body, "event": "transaction"}, headers=same).status_code == 422
        unknown = int(published_data.items["item_id"].max()) + 10**6
        assert client.post(url, json={**body, "item_id": unknown}, headers=same).status_code == 404
        limit = 30  # RECSYS_BROWSER_EVENTS_PER_MINUTE's default
        statuses = [client.post(url, json=body, headers=same).status_code for _ in range(limit + 1)]
        assert statuses == [201] * limit + [429]
        refused = client.post(url, json=body, headers=same)
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # The limit is per visitor: another one still records.
        other = f"{shop.url}/shop/api/visitors/{visitor + 1}/events"
        assert client.post(other, json=body, headers=same).status_code == 201
    assert online_events(shop).count((visitor, item, "view")) == limit


def test_browser_events_are_off_unless_enabled(
    sqlite_service: LiveService, published_data: PublishedData
) -> None:
    url = f"{sqlite_service.url}/shop/api/visitors/1/events"
    answer = httpx.post(
        url,
        json={"item_id": published_data.item_with_neighbours(), "event": "view"},
        headers={"Origin": sqlite_service.url},
    )
    assert answer.status_code == 403
    assert "RECSYS_BROWSER_EVENTS_ENABLED" in answer.json()["detail"]
    assert page_config(sqlite_service)["browser_events"] is False
    # The page itself is served, and the catalogue facts reach the cards.
    assert httpx.get(f"{sqlite_service.url}/shop").status_code == 200
    popular = httpx.get(f"{sqlite_service.url}/shop/api/popular?k=5").json()["items"]
    items = published_data.items.set_index("item_id")
    expected = published_data.tables["default_recommendations"].sort_values("rank")["item_id"].tolist()
    assert [card["item_id"] for card in popular] == expected[:5]
    for card in popular:
        row = items.loc[card["item_id"]]
        assert card["in_catalogue"] and card["available"] is not False
        assert card["category_path"][-1:] == ([] if pd.isna(row["category_id"]) else [row["category_id"]])
        assert card["price"] == (None if pd.isna(row["price"]) else pytest.approx(row["price"], abs=0.01))
