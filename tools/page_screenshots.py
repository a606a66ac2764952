"""The review page's screenshots in docs/: a real monitor on real video files, photographed in headless chromium.

Runs corevad_stream.App on three generated clips at their native rate (plus one camera that never connects)
with a scripted model: one camera's alert opens and then falls below the close threshold ("closing"), one
stays open, one has a stretch of unreadable answers (a gap in its line). After `--seconds` of video it saves
the desktop view (1280x800), the phone view (390x844) and one alert's event view, as palette PNGs.

    .venv/bin/python tools/page_screenshots.py [--out docs] [--seconds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from corevad.models.base import Clip
from corevad_stream import App
from corevad_stream.config import config_from_dict
from corevad_stream.testing.clips import make_test_video
from corevad_stream.testing.doubles import ANOMALOUS, NORMAL

DOCK = "Explosion020_x264_loading_dock"


class Story:
    """What the model answers, by camera and segment."""

    name = "story"

    def answer(self, clips: Sequence[Clip]) -> list[str]:
        return [self._one(c.source, c.index) for c in clips]

    @staticmethod
    def _one(camera: str, index: int) -> str:
        if camera == DOCK:
            return ANOMALOUS if 6 <= index < 14 else NORMAL  # opens, then below the close threshold: closing
        if camera == "lane":
            return ANOMALOUS if index >= 20 else NORMAL  # opens late and stays open
        return "" if 8 <= index < 16 else NORMAL  # eight empty answers (failures, no score): a gap

    def close(self) -> None:
        pass


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--hide-scrollbars"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))


def _save(driver: Any, path: Path, width: int, height: int) -> None:
    from PIL import Image

    driver.set_window_size(width, height)
    driver.execute_script("window.scrollTo(0, 0);")
    time.sleep(0.5)  # the page relayouts after a resize; a screenshot is no test, so a short pause is enough
    raw = path.with_suffix(".raw.png")
    driver.save_screenshot(str(raw))
    Image.open(raw).convert("RGB").quantize(colors=128).save(path, optimize=True)  # small files in git
    raw.unlink()
    print(f"{path}: {path.stat().st_size // 1024} KiB")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--seconds", type=float, default=40.0, help="video time before the photographs")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        clips = {name: make_test_video(Path(tmp) / f"{name}.mp4", seconds=args.seconds + 30, size=(480, 270))
                 for name in (DOCK, "lane", "gate")}
        cams = [{"name": n, "url": str(p)} for n, p in clips.items()]
        cams.append({"name": "door", "url": "rtsp://127.0.0.1:9/x"})  # never connects: offline, no picture
        cfg = config_from_dict({
            "cameras": cams, "metrics": {"enabled": True, "port": 0},
            "store": {"path": str(Path(tmp) / "e.sqlite3")}, "refinement": {"smooth_length": 1},
            "alerts": {"snapshot": True, "close_after_s": 60, "cooldown_s": 0},
            "runtime": {"frame_size": 32, "max_wait_s": 0.0, "state_dir": str(Path(tmp) / "state"),
                        "reconnect": {"initial_s": 0.5, "max_s": 2.0, "open_timeout_s": 5}},
        })
        async with App(cfg, backend=Story()) as app:
            assert app.metrics_server is not None
            base = f"http://127.0.0.1:{app.metrics_server.port}/"
            await asyncio.sleep(args.seconds)  # let the story play at the clips' own pace
            driver = await asyncio.to_thread(_browser)
            try:
                def shoot() -> None:
                    from selenium.webdriver.common.by import By
                    from selenium.webdriver.support.ui import WebDriverWait

                    driver.set_window_size(1280, 800)
                    driver.get(base)
                    WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "conn").text == "live")
                    WebDriverWait(driver, 20).until(lambda d: d.execute_script(
                        "return [...document.querySelectorAll('img.frame')].filter((i) => i.naturalWidth).length"
                        " >= 3;"))
                    _save(driver, args.out / "review-page.png", 1280, 800)
                    _save(driver, args.out / "review-page-phone.png", 390, 844)
                    driver.set_window_size(1280, 800)
                    link = driver.find_element(By.CSS_SELECTOR, f".alert[data-id^='{DOCK}'] a[href^='#event=']")
                    driver.get(link.get_attribute("href"))
                    WebDriverWait(driver, 20).until(
                        lambda d: d.find_elements(By.CSS_SELECTOR, "#detail .timeline polyline"))
                    _save(driver, args.out / "review-page-event.png", 1280, 800)
                    driver.get("about:blank")

                await asyncio.to_thread(shoot)
            finally:
                driver.quit()


if __name__ == "__main__":
    asyncio.run(main())
