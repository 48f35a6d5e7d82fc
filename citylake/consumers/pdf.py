"""HTML to PDF with headless Chromium: the contract report a manager attaches to a letter.

Chromium (Debian's ``chromium`` package) prints the page as a reader's browser would, with its
print stylesheet (A4). It is found as ``CITYLAKE_CHROMIUM`` or on the PATH; it resolves no host
(the report is self-contained, so nothing can be fetched while printing) and runs with a
throwaway profile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from citylake.core.errors import ConfigError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser(configured: str | None = None) -> str | None:
    """Return the Chromium to print with (``configured``: ``CITYLAKE_CHROMIUM``, else the PATH), or None."""
    if configured:
        return configured if Path(configured).exists() else shutil.which(configured)
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def html_to_pdf(page: bytes, browser: str | None = None, timeout_s: float = 120) -> bytes:
    """Print an HTML page to PDF with headless Chromium (``browser``, else one on the PATH); return
    the PDF's bytes."""
    browser = find_browser(browser)
    if browser is None:
        raise ConfigError(
            "no Chromium to print the PDF with: install Debian's chromium (apt-get install chromium) "
            "or set CITYLAKE_CHROMIUM to its path"
        )
    with tempfile.TemporaryDirectory(prefix="citylake-pdf-") as tmp:
        html, pdf = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        html.write_bytes(page)
        args = [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-pdf-header-footer",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={Path(tmp) / 'profile'}",
            f"--print-to-pdf={pdf}",
            html.as_uri(),
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(2, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"Chromium did not print the PDF within {timeout_s:.0f} s") from None
        if not pdf.exists() or pdf.stat().st_size == 0:
            raise RuntimeError(f"Chromium printed no PDF (exit {done.returncode}): {done.stderr.strip()[-500:]}")
        return pdf.read_bytes()
