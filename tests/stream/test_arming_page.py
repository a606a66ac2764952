"""The arming controls on the review page, in a real headless chromium against a running monitor behind basic
auth: disarm, snooze, end the snooze and arm again from a camera card; the server's state follows each click and
the card says what the server says; no console errors."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from stream_doubles import NORMAL, ScriptedBackend, stream_config

from corevad_stream import App

pytestmark = pytest.mark.slow


def _wait(driver: Any, what: str, condition: Callable[[Any], Any], timeout: float = 20.0) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The cards are redrawn on every score: an element found by one poll can be gone when it is read.
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition, message=what)


@pytest.fixture
def page_password() -> Iterator[str]:
    os.environ["ARMING_PAGE_PW"] = "s3cret"
    yield "s3cret"
    del os.environ["ARMING_PAGE_PW"]


async def test_the_card_disarms_snoozes_and_arms_the_camera(browser: Any, page_password: str,
                                                            artifacts_dir: Path) -> None:
    from selenium.webdriver.common.by import By

    cfg = stream_config([{"name": "gate", "url": "frameless://", "rate": "native"}],
                        runtime={"segment_seconds": 0.5},
                        metrics={"enabled": True, "port": 0, "username": "op", "password_env": "ARMING_PAGE_PW"})
    async with App(cfg, backend=ScriptedBackend(lambda clip: NORMAL)) as app:
        assert app.metrics_server is not None
        port = app.metrics_server.port
        gate = app.cameras["gate"]
        card = ".cam[data-camera=gate]"

        def text(d: Any, role: str) -> str:
            return str(d.find_element(By.CSS_SELECTOR, f"{card} [data-role={role}]").text)

        def click(d: Any, selector: str) -> Any:
            d.find_element(By.CSS_SELECTOR, f"{card} {selector}").click()
            return True

        def drive() -> dict[str, Any]:
            d = browser
            d.set_window_size(1280, 900)
            d.get(f"http://op:{page_password}@127.0.0.1:{port}/api/cameras")  # the browser caches the credentials
            d.get("about:blank")
            d.get_log("browser")  # the JSON view's favicon 404: what follows is the page's own
            d.get(f"http://127.0.0.1:{port}/")
            seen: dict[str, Any] = {}
            _wait(d, "the card's arming", lambda d: text(d, "arming") == "armed")
            _wait(d, "live", lambda d: d.find_element(By.ID, "conn").text == "live")
            _wait(d, "normal", lambda d: text(d, "state") == "normal")
            _wait(d, "Disarm clicked", lambda d: text(d, "arm-toggle") == "Disarm"
                  and click(d, "[data-role=arm-toggle]"))
            _wait(d, "disarmed on the card", lambda d: text(d, "arming") == "disarmed")
            seen["server_after_disarm"] = gate.arming.state
            seen["state_pill"] = _wait(d, "the state pill", lambda d: text(d, "state") == "disarmed" and "disarmed")
            _wait(d, "Snooze clicked", lambda d: click(d, "[data-role=snooze][data-minutes='15']"))
            seen["snoozed"] = _wait(d, "snoozed on the card", lambda d: text(d, "arming").startswith("snoozed until")
                                    and text(d, "arming"))
            seen["server_snooze"] = (gate.arming.state, gate.arming.until)
            d.save_screenshot(str(artifacts_dir / "web-page-arming.png"))
            _wait(d, "End snooze clicked", lambda d: click(d, "[data-role=snooze-cancel]"))
            _wait(d, "back to the manual disarm", lambda d: text(d, "arming") == "disarmed")
            _wait(d, "Arm clicked", lambda d: text(d, "arm-toggle") == "Arm" and click(d, "[data-role=arm-toggle]"))
            _wait(d, "armed on the card", lambda d: text(d, "arming") == "armed")
            _wait(d, "scored again", lambda d: text(d, "state") == "normal")
            seen["server_end"] = (gate.arming.state, gate.arming.source)
            seen["selected"] = d.find_elements(By.CSS_SELECTOR, ".cam.selected")  # a click on a control is no filter
            seen["errors"] = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]
            d.get("about:blank")
            return seen

        seen = await asyncio.to_thread(drive)
    assert seen["server_after_disarm"] == "disarmed" and seen["state_pill"] == "disarmed"
    state, until = seen["server_snooze"]
    assert state == "snoozed" and until is not None
    assert seen["server_end"] == ("armed", "manual")
    assert seen["selected"] == []
    assert seen["errors"] == [], seen["errors"]
