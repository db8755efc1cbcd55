"""The operator console in a real browser: Debian's headless Chromium driven by Selenium (through the
distribution's ``chromedriver``, nothing downloaded), against a real vendor on loopback with known
traffic (tests/console_world.py). Signs in, compares the keys table with the ledger, creates, tops up
and revokes a key through the forms, checks that the charts are drawn with data, that a key named
``<script>alert(1)</script>`` is shown as text, that nothing opens without the token, and that a form
posted from another origin's page is refused.

Each page is saved as a screenshot; ``VL2V_CONSOLE_SCREENSHOTS=DIR`` keeps them in ``DIR`` (how the
images in docs/console.md are made: ``VL2V_CONSOLE_SCREENSHOTS=docs/console pytest
tests/test_console_browser.py``). Without Chromium the tests skip, and fail under
``VL2V_REQUIRE_BROWSER=1`` (set by ``.ci/run``, which installs it), so CI cannot pass by skipping."""

from __future__ import annotations

import base64
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ADMIN_TOKEN, VendorServer
from console_world import send_traffic, wait_for_outcomes
from required import missing

from client_distill.buy.local_vendor import free_port
from vendor_server.ledger import SqlLedger, open_ledger

pytestmark = pytest.mark.slow

REQUIRE_ENV = "VL2V_REQUIRE_BROWSER"
SCREENSHOTS_ENV = "VL2V_CONSOLE_SCREENSHOTS"
WINDOW = (1360, 900)


def browser_binaries() -> tuple[str, str]:
    """Chromium and its driver, or skip (fail under ``VL2V_REQUIRE_BROWSER=1``) naming what is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        reason = (
            "Chromium or chromedriver is not installed; install Debian's chromium and chromium-driver packages "
            "(.ci/run does) to run the browser tests"
        )
        missing(reason, REQUIRE_ENV)
    return chromium, driver


@pytest.fixture(scope="module")
def browser() -> Iterator:
    chromium, driver_path = browser_binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def world(vendor_server_factory) -> Iterator[tuple[VendorServer, SqlLedger, object]]:
    """A vendor with the console on, its ledger, and the traffic it served."""
    server = vendor_server_factory(VL2V_ADMIN_TOKEN=ADMIN_TOKEN)
    ledger = open_ledger(server.db)
    traffic = send_traffic([server.url], ledger)
    assert wait_for_outcomes(ledger, traffic.expected_outcomes) == traffic.expected_outcomes
    yield server, ledger, traffic
    ledger.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(driver, folder: Path, name: str) -> Path:
    """The whole page, beyond the window's height (Chromium's DevTools capture), as ``folder/name.png``."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path = folder / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 10_000  # something was drawn
    return path


def signed_out(driver) -> None:
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})


def sign_in(driver, url: str, token: str = ADMIN_TOKEN) -> None:
    from selenium.webdriver.common.by import By

    signed_out(driver)
    driver.get(f"{url}/console/login")
    driver.find_element(By.NAME, "token").send_keys(token)
    submit(driver, driver.find_element(By.CSS_SELECTOR, "#login button"))


def submit(driver, button) -> None:
    """Click a form's button and wait for the page its answer replaces this one with.

    Checked while the page is being replaced, chromedriver may answer "Node with given id does not belong
    to the document" (a plain WebDriverException, seen once in CI) instead of a stale-element error: the
    wait polls again then, and the next check sees the button stale (a page that never comes still times
    out)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    button.click()
    WebDriverWait(driver, 30, ignored_exceptions=(WebDriverException,)).until(expected_conditions.staleness_of(button))


def test_nothing_opens_without_the_token(browser, world, shots) -> None:
    from selenium.webdriver.common.by import By

    server, _, _ = world
    signed_out(browser)
    for page in ("/console", "/console/keys", "/console/coverage"):
        browser.get(server.url + page)
        assert browser.current_url == f"{server.url}/console/login"
    screenshot(browser, shots, "login")
    sign_in(browser, server.url, token="not-the-token")
    error = browser.find_element(By.CSS_SELECTOR, "p.error")
    assert error.get_attribute("data-code") == "invalid_admin_token"
    assert not browser.get_cookies()


def test_sign_in_and_the_keys_table_equals_the_ledger(browser, world, shots) -> None:
    from selenium.webdriver.common.by import By

    server, ledger, traffic = world
    sign_in(browser, server.url)
    assert browser.current_url == f"{server.url}/console"
    (cookie,) = browser.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    browser.get(f"{server.url}/console/keys")
    shown = {}
    for row in browser.find_elements(By.CSS_SELECTOR, "#keys tbody tr"):
        cell = {name: row.find_element(By.CSS_SELECTOR, f"td.{name}").text for name in ("name", "budget", "used")}
        shown[row.get_attribute("data-key-id")] = (
            cell["name"],
            int(cell["budget"].replace(",", "")),
            int(cell["used"].replace(",", "")),
        )
    assert shown == {record.id: (record.name, record.budget, record.used) for record in ledger.keys()}
    wide = browser.find_element(By.CSS_SELECTOR, f'tr[data-key-id="{traffic.wide}"]')
    assert wide.get_attribute("class") == "state-near"  # stands out: 320 of 328 used
    screenshot(browser, shots, "keys")


def test_the_charts_are_drawn_with_data(browser, world, shots) -> None:
    from selenium.webdriver.common.by import By

    server, ledger, traffic = world
    sign_in(browser, server.url)
    for page, charts in (
        ("/console", ("outcomes", "usage")),
        (f"/console/keys/{traffic.wide}", ("usage", "outcomes", "growth")),
    ):
        browser.get(server.url + page)
        for chart in charts:
            bars = browser.find_elements(By.CSS_SELECTOR, f"#{chart} svg rect.bar")
            assert bars, f"no bars in {page} #{chart}"
            assert all(bar.size["height"] > 0 and bar.size["width"] > 0 for bar in bars)
        drawn = browser.find_elements(By.CSS_SELECTOR, "#outcomes svg rect.bar")
        answers = traffic.outcomes if page == "/console" else traffic.by_key[traffic.wide]
        assert sum(int(bar.get_attribute("data-value")) for bar in drawn) == sum(answers.values())
        screenshot(browser, shots, "overview" if page == "/console" else "key")
    browser.get(f"{server.url}/console/coverage")
    first = browser.find_element(By.CSS_SELECTOR, "#coverage tbody tr")
    assert first.get_attribute("data-key-id") == traffic.wide
    screenshot(browser, shots, "coverage")


def test_create_top_up_and_revoke_through_the_forms(browser, world, shots) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    server, ledger, _ = world
    name = "<script>alert(1)</script>"
    sign_in(browser, server.url)
    browser.get(f"{server.url}/console/keys")
    form = browser.find_element(By.ID, "create-key")
    form.find_element(By.NAME, "name").send_keys(name)
    form.find_element(By.NAME, "budget").send_keys("1000")
    submit(browser, form.find_element(By.CSS_SELECTOR, "button"))
    secret = browser.find_element(By.ID, "new-secret").text
    record = ledger.authenticate(secret)
    assert (record.name, record.budget) == (name, 1000)
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018  (the name did not run as a script)
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-key-id="{record.id}"]')
    assert row.find_element(By.CSS_SELECTOR, "td.name").text == name
    screenshot(browser, shots, "created")

    row.find_element(By.CSS_SELECTOR, "form.topup input[name=queries]").send_keys("250")
    submit(browser, row.find_element(By.CSS_SELECTOR, "form.topup button"))
    assert ledger.key(record.id).budget == 1250
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-key-id="{record.id}"]')
    assert row.find_element(By.CSS_SELECTOR, "td.budget").text == "1,250"
    submit(browser, row.find_element(By.CSS_SELECTOR, "form.revoke button"))
    assert ledger.key(record.id).revoked
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-key-id="{record.id}"]')
    assert row.find_element(By.CSS_SELECTOR, "td.state").text == "revoked"


def test_a_form_posted_from_another_origin_is_refused(browser, world, tmp_path) -> None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server, ledger, traffic = world
    sign_in(browser, server.url)  # the operator is signed in, and visits another site's page
    target = f"{server.url}/console/keys/{traffic.narrow}/revoke"
    (tmp_path / "index.html").write_text(
        f'<form id="f" method="post" action="{target}"><input name="csrf" value="guessed"></form>'
        '<script>document.getElementById("f").submit()</script>'
    )
    with StaticSite(tmp_path) as attacker:
        browser.get(attacker)  # its script posts the form at once
        refused = WebDriverWait(browser, 30, ignored_exceptions=(WebDriverException,)).until(
            lambda driver: driver.current_url == target and driver.find_element(By.CSS_SELECTOR, "p.error")
        )
    assert refused.get_attribute("data-code") == "cross_site_request"
    assert not ledger.key(traffic.narrow).revoked


class StaticSite:
    """``folder`` served on another loopback port (another origin) for the length of a ``with``."""

    def __init__(self, folder: Path) -> None:
        handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(folder))  # noqa: E731
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
