"""The web page at ``/``, in real Chromium (Debian's, driven through its chromedriver),
against the real stack: gunicorn, a Celery worker, Redis.

A person types a key, picks a task, reads the notice, consents, uploads a real
photo and gets the result once; "Delete now" purges the job. Every request the
browser made is recorded: all of them go to the page's own origin. Nothing is
left in cookies or browser storage. The stack publishes a worker key, so the page
encrypts the photo end to end and decrypts the result; a web that publishes none
gets the photo as before.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from backend.catalogue import CATALOGUE
from backend.ephemeral import store
from ephemera_client import Client, ResultGone
from ephemera_client.envelope import CONTENT_TYPE, KeyPair
from tests.harness import REPO, running, wait_for_http
from tests.integration.live_stack import LiveStack, photo_file
from tests.services import free_port

pytestmark = pytest.mark.slow

SCREENSHOT = REPO / "docs" / "web-page.png"


@pytest.fixture(scope="module")
def keyless_web(live_stack: LiveStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second web on the live stack whose one worker key is retired: it publishes no
    key, as a service that has not turned end-to-end encryption on."""
    port = free_port()
    retired = base64.b64encode(KeyPair.generate().public).decode()
    env = {
        **live_stack.env,
        "PORT": str(port),
        "EPHEMERA_E2E_PUBLIC_KEYS": f"old:{retired}@2020-01-01T00:00:00Z",
    }
    with running("web", env=env, log_dir=tmp_path_factory.mktemp("keyless-web")) as web:
        assert wait_for_http(web, port, "/healthz").status == 200
        yield f"http://127.0.0.1:{port}"


def requested_urls(driver: WebDriver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def response_types(driver: WebDriver) -> dict[str, str]:
    """The content type the browser got for each URL it fetched."""
    types = {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.responseReceived":
            types[message["params"]["response"]["url"]] = message["params"]["response"]["mimeType"]
    return types


def upload_a_photo(driver: WebDriver, url: str, key: str, photo: Path) -> None:
    """Key, anonymize, photo, consent, upload; the sent ``image`` part is kept in
    ``window.sentImage``, as the network got it."""
    driver.get(url + "/")
    driver.find_element(By.ID, "api-key").send_keys(key)
    driver.find_element(By.ID, "connect-button").click()
    task = wait_for(driver, expected_conditions.visibility_of_element_located((By.ID, "task")))
    Select(task).select_by_value("anonymize")
    driver.find_element(By.ID, "image").send_keys(str(photo))
    driver.find_element(By.ID, "consent").click()
    driver.execute_script(
        """
        const send = XMLHttpRequest.prototype.send;
        XMLHttpRequest.prototype.send = function (body) {
          window.sentImage = body.get("image");
          return send.call(this, body);
        };
        """
    )
    driver.find_element(By.ID, "submit").click()


def sent_image(driver: WebDriver) -> tuple[str, bytes]:
    """The content type and bytes of the ``image`` part the page sent."""
    kind, data = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const image = window.sentImage;
        image.arrayBuffer().then((data) => done([image.type, Array.from(new Uint8Array(data))]));
        """
    )
    return kind, bytes(data)


def job_body(url: str, key: str, requested: list[str]) -> dict[str, Any]:
    """The job the page polled, as the API tells its owner."""
    (job_id,) = {
        match.group(1) for u in requested if (match := re.search(r"/api/v1/jobs/([0-9a-f-]+)$", u))
    }
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
        return http.get(f"/api/v1/jobs/{job_id}").raise_for_status().json()


def press(driver: WebDriver, *keys: str) -> None:
    """Keys typed on the keyboard, into whatever has the focus (as a person types)."""
    ActionChains(driver).send_keys(*keys).perform()


def press_shift_tab(driver: WebDriver) -> None:
    ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT).perform()


def wait_for(driver: WebDriver, condition: Any, timeout: float = 60) -> Any:
    return WebDriverWait(driver, timeout).until(condition)


def status_says(text: str) -> Any:
    return expected_conditions.text_to_be_present_in_element((By.ID, "status"), text)


def save_full_page(driver: WebDriver, path: Path) -> None:
    """The whole page, not only the viewport: the README shows it."""
    width, height = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def browser_storage(driver: WebDriver) -> dict[str, Any]:
    return driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        (async () => ({
          local: localStorage.length,
          session: sessionStorage.length,
          cookie: document.cookie,
          indexedDB: (await indexedDB.databases()).length,
          caches: (await caches.keys()).length,
        }))().then(done, (error) => done({error: String(error)}));
        """
    )


def test_a_person_uploads_a_photo_gets_it_once_and_deletes_it(
    live_stack: LiveStack, redis_conn: redis.Redis, browser: WebDriver, tmp_path: Path
) -> None:
    photo = photo_file(tmp_path)
    browser.get(live_stack.url + "/")

    # The key goes into a password field; the tasks come from the catalogue.
    key_field = browser.find_element(By.ID, "api-key")
    assert key_field.get_attribute("type") == "password"
    key_field.send_keys(live_stack.key)
    browser.find_element(By.ID, "connect-button").click()
    task = wait_for(browser, expected_conditions.visibility_of_element_located((By.ID, "task")))
    offered = {option.get_attribute("value") for option in Select(task).options}
    # Every one-photo task; face_verify takes two photos and consent: API only.
    assert offered == set(CATALOGUE) - {"face_verify"}
    Select(task).select_by_value("anonymize")
    Select(browser.find_element(By.ID, "param-mode")).select_by_visible_text("pixelate")

    # No upload without consent.
    browser.find_element(By.ID, "image").send_keys(str(photo))
    submit = browser.find_element(By.ID, "submit")
    assert not submit.is_enabled()
    browser.find_element(By.ID, "consent").click()
    assert submit.is_enabled()
    submit.click()

    result = wait_for(
        browser, expected_conditions.visibility_of_element_located((By.ID, "result-image"))
    )
    assert browser.execute_script("return arguments[0].naturalWidth", result) == 512
    assert browser.switch_to.active_element.get_attribute("id") == "result-title"
    assert browser.find_element(By.ID, "save").get_attribute("href").startswith("blob:")
    save_full_page(browser, SCREENSHOT)

    # The page downloaded the result once; a second download is refused.
    jobs = [key.decode().removeprefix("eph:job:") for key in redis_conn.scan_iter("eph:job:*")]
    assert len(jobs) == 1
    job_id = jobs[0]
    result_urls = [url for url in requested_urls(browser) if "/api/v1/results/" in url]
    assert len(result_urls) == 1, result_urls
    with Client(url=live_stack.url, api_key=live_stack.key) as client, pytest.raises(ResultGone):
        client.download(result_urls[0].removeprefix(live_stack.url))

    # "Delete now" purges the job in Redis.
    browser.find_element(By.ID, "delete").click()
    wait_for(browser, status_says("Deleted"))
    assert not redis_conn.exists(f"eph:in:{job_id}")
    assert not list(redis_conn.scan_iter("eph:res:*"))
    # The job keeps its end; its result and upload are gone.
    tombstone = store.get_job(job_id)
    assert tombstone is not None
    assert (tombstone.status, tombstone.result_token_sealed) == ("succeeded", None)
    assert not browser.find_element(By.ID, "result-image").is_displayed()

    # Only this origin was ever asked for anything.
    urls = requested_urls(browser)
    assert urls, "no request was recorded"
    foreign = [url for url in urls if not url.startswith(live_stack.url + "/")]
    assert foreign == [], foreign
    assert live_stack.key not in browser.current_url

    # Nothing went into cookies or browser storage.
    assert browser.get_cookies() == []
    assert browser_storage(browser) == {
        "local": 0,
        "session": 0,
        "cookie": "",
        "indexedDB": 0,
        "caches": 0,
    }
    # No console error: no CSP violation, no failed request, no script error.
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def test_the_page_encrypts_the_photo_and_decrypts_the_result_end_to_end(
    live_stack: LiveStack, browser: WebDriver, tmp_path: Path
) -> None:
    photo = photo_file(tmp_path)
    upload_a_photo(browser, live_stack.url, live_stack.key, photo)
    # The notice says so before the consent box is ticked.
    assert "End-to-end encrypted" in browser.find_element(By.ID, "e2e-notice").text

    result = wait_for(
        browser, expected_conditions.visibility_of_element_located((By.ID, "result-image"))
    )
    # The page decrypted the result itself: the server answered an envelope, the page
    # shows an image that decodes.
    assert browser.execute_script("return arguments[0].naturalWidth", result) == 512
    assert "End-to-end encrypted" in browser.find_element(By.ID, "status").text
    types = response_types(browser)
    (download,) = [url for url in types if "/api/v1/results/" in url]
    assert types[download] == CONTENT_TYPE
    # What left the page was an envelope of exactly the photo: header, enc, ciphertext.
    kind, sent = sent_image(browser)
    assert kind == CONTENT_TYPE
    assert sent[:5] == b"EPHK\x01"
    assert len(sent) == 6 + sent[5] + 32 + 32 + photo.stat().st_size + 16
    job = job_body(live_stack.url, live_stack.key, list(types))
    assert job["status"] == "succeeded"
    assert job["e2e"] is True
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def test_without_a_published_key_the_page_sends_the_photo_as_before(
    live_stack: LiveStack, keyless_web: str, browser: WebDriver, tmp_path: Path
) -> None:
    photo = photo_file(tmp_path)
    upload_a_photo(browser, keyless_web, live_stack.key, photo)
    assert not browser.find_element(By.ID, "e2e-notice").is_displayed()

    result = wait_for(
        browser, expected_conditions.visibility_of_element_located((By.ID, "result-image"))
    )
    assert browser.execute_script("return arguments[0].naturalWidth", result) == 512
    assert "End-to-end" not in browser.find_element(By.ID, "status").text
    kind, sent = sent_image(browser)
    assert (kind, sent) == ("image/jpeg", photo.read_bytes())
    job = job_body(keyless_web, live_stack.key, requested_urls(browser))
    assert job["e2e"] is False


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("notes.jpg", b"not a photo at all\n" * 100, "unsupported_media_type"),
        (
            "IMG_0001.HEIC",
            b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(512),
            "unsupported_media_type",
        ),
        ("huge.jpg", b"\xff\xd8\xff" + bytes(16 * 1024 * 1024), "payload_too_large"),
    ],
)
def test_a_file_the_task_would_refuse_is_refused_here_and_never_sent(
    live_stack: LiveStack,
    browser: WebDriver,
    redis_conn: redis.Redis,
    tmp_path: Path,
    name: str,
    data: bytes,
    code: str,
) -> None:
    # Encrypted, the web cannot see what the file is, and refused uploads in a
    # row block the key and the address: the page looks at the bytes first.
    not_a_photo = tmp_path / name
    not_a_photo.write_bytes(data)
    upload_a_photo(browser, live_stack.url, live_stack.key, not_a_photo)

    error = wait_for(browser, expected_conditions.visibility_of_element_located((By.ID, "error")))
    wait_for(browser, lambda _: f"({code})" in error.text)
    assert "not sent" in error.text
    assert not [url for url in requested_urls(browser) if url.endswith("/api/v1/jobs")]
    assert not list(redis_conn.scan_iter("eph:job:*"))
    assert not browser.find_element(By.ID, "result-image").is_displayed()


def test_it_works_with_the_keyboard_alone_and_every_field_has_a_label(
    live_stack: LiveStack, browser: WebDriver
) -> None:
    browser.get(live_stack.url + "/")
    # Tab from the top: the skip link, then the key field; Enter sends the key.
    press(browser, Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("class") == "skip"
    press(browser, Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "api-key"
    press(browser, live_stack.key, Keys.ENTER)
    wait_for(browser, lambda driver: driver.switch_to.active_element.get_attribute("id") == "task")

    # Tab walks the form in reading order, one field after the other.
    visited = []
    for _ in range(12):
        press(browser, Keys.TAB)
        visited.append(browser.switch_to.active_element.get_attribute("id"))
    assert visited[:2] == ["param-mode", "param-margin"]
    assert visited.index("image") < visited.index("consent")
    # Space ticks the consent box; the upload still waits for a photo.
    while browser.switch_to.active_element.get_attribute("id") != "consent":
        press_shift_tab(browser)
    press(browser, Keys.SPACE)
    assert browser.find_element(By.ID, "consent").is_selected()
    assert not browser.find_element(By.ID, "submit").is_enabled()

    unlabelled = browser.execute_script(
        """
        return [...document.querySelectorAll('input, select, progress')]
          .filter((field) => field.labels.length === 0)
          .map((field) => field.id);
        """
    )
    assert unlabelled == []
    # The focused field shows it: a visible outline.
    outline = browser.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")


def test_text_has_enough_contrast(live_stack: LiveStack, browser: WebDriver) -> None:
    browser.get(live_stack.url + "/")
    # WCAG 2 contrast of each visible text element against its nearest opaque background.
    ratios = browser.execute_script(
        """
        const channel = (c) => {
          c /= 255;
          return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
        };
        const rgb = (text) => text.match(/[\\d.]+/g).map(Number);
        const luminance = ([r, g, b]) =>
          0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
        const background = (el) => {
          for (; el; el = el.parentElement) {
            const value = rgb(getComputedStyle(el).backgroundColor);
            if (value.length < 4 || value[3] > 0) return value;
          }
          return [255, 255, 255];
        };
        return [...document.querySelectorAll('h1, h2, p, li, label, button, a, code, legend')]
          .filter((el) => el.offsetParent !== null && el.textContent.trim())
          .map((el) => {
            const [a, b] = [luminance(rgb(getComputedStyle(el).color)), luminance(background(el))];
            return [el.tagName + '#' + el.id, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
          });
        """
    )
    assert len(ratios) > 10
    low = [(name, round(ratio, 2)) for name, ratio in ratios if ratio < 4.5]
    assert low == [], f"below WCAG AA (4.5:1): {low}"


def test_the_page_and_its_assets_are_served_with_a_strict_policy(live_stack: LiveStack) -> None:
    with httpx.Client(base_url=live_stack.url) as http:
        page = http.get("/")
        assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
        answers = [http.get(path) for path in assets]

    assert page.status_code == 200
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "form-action 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    # No inline script, no inline style, nothing from another host.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text)
    assert " style=" not in page.text and "<style" not in page.text
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", page.text)
    # Assets carry their content hash in their names and are cached for ever.
    assert sorted(path.rsplit(".", 1)[1] for path in assets) == ["css", "js", "js", "svg"]
    for path, answer in zip(assets, answers, strict=True):
        assert re.fullmatch(r"/assets/(app|hpke|favicon)\.[0-9a-f]{12}\.(js|css|svg)", path)
        assert answer.status_code == 200
        assert "immutable" in answer.headers["Cache-Control"]
    with httpx.Client(base_url=live_stack.url) as http:
        assert http.get("/assets/app.000000000000.js").status_code == 404
