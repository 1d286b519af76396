"""A screenshot of an HTML page in a real headless browser (Chromium or Chrome).

Used to check that a run's report renders, plots included, in what a person
would open it with. No browser is bundled: the first of ``BROWSERS`` on PATH
(or ``$FEDMER_BROWSER``) is used, and its absence is an error that says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


class BrowserNotFound(RuntimeError):
    pass


def find_browser() -> str:
    override = os.environ.get("FEDMER_BROWSER")
    if override:
        found = shutil.which(override)
        if found is None:
            raise BrowserNotFound(f"FEDMER_BROWSER={override!r} is not an executable on PATH")
        return found
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserNotFound(
        f"no headless browser found (looked for {', '.join(BROWSERS)} on PATH, and "
        "FEDMER_BROWSER); install Chromium, e.g. `apt-get install chromium`"
    )


def screenshot(
    page: Path, out: Path, width: int = 1100, height: int = 2600, timeout: float = 120.0
) -> Path:
    """Render ``page`` headless and write a PNG of it to ``out``."""
    page, out = Path(page).resolve(), Path(out).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"{page}: no such page")
    out.parent.mkdir(parents=True, exist_ok=True)
    browser = find_browser()
    # A private profile: nothing of the user's browser is read or written.
    with tempfile.TemporaryDirectory(prefix="fedmer-browser-") as profile:
        command = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--disable-extensions", "--disable-background-networking",
            f"--user-data-dir={profile}", f"--window-size={width},{height}",
            f"--screenshot={out}", page.as_uri(),
        ]  # fmt: skip
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(
            f"{browser} exited {proc.returncode} without writing {out}: {proc.stderr[-1500:]}"
        )
    return out
