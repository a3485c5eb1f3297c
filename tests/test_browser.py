"""Every page of the built book, loaded in a real browser (headless Chromium), at 1400 and 400 px.

`make test` runs this after `jupyter-book build` (`make browser`); `make unit` leaves it out (it
needs the built HTML). The pages are served on 127.0.0.1 with a small script added to each page
that reports, once the page and its MathJax have loaded: images that did not load, error output,
math left unrendered, resources fetched from anywhere but the local server, and anything wider
than the screen. A page also fails when it or anything it asks the server for is missing.
"""

from __future__ import annotations

import functools
import html
import io
import json
import re
import shutil
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from polcore.book import toc_files

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
WIDTHS = (1400, 400)
BROWSER = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(name)), None)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (Debian: apt-get install chromium)"),
]

# Runs in the page: waits for MathJax, then writes what it found into <body data-polcore-check>.
CHECK = r"""
<script>
window.addEventListener("load", async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const article = document.querySelector(".bd-article") || document.body;
  const width = document.documentElement.clientWidth;
  const found = {broken_images: [], errors: [], raw_math: [], external: [], too_wide: []};
  for (const img of document.images) {
    if (!img.complete || img.naturalWidth === 0) found.broken_images.push(img.getAttribute("src"));
  }
  for (const el of article.querySelectorAll(".output.error, .output.traceback, .output.stderr")) {
    found.errors.push(el.textContent.trim().slice(0, 200));
  }
  for (const el of article.querySelectorAll(".math")) {
    if (!el.querySelector("mjx-container")) found.raw_math.push(el.textContent.trim().slice(0, 80));
  }
  const text = article.innerText;
  for (const pattern of [/\{glue:[a-z]+\}/, /\{cite:[a-z]+\}/, /\{ref\}/, /\{numref\}/]) {
    const hit = text.match(pattern);
    if (hit) found.raw_math.push("unrendered markup " + hit[0]);
  }
  for (const entry of performance.getEntriesByType("resource")) {
    if (new URL(entry.name).hostname !== location.hostname) found.external.push(entry.name);
  }
  if (document.documentElement.scrollWidth > width + 1) {
    found.too_wide.push("the page (" + document.documentElement.scrollWidth + " px)");
  }
  // Prose, tables, outputs and figures must fit; code input may scroll (it is at most 88 wide).
  const boxes = article.querySelectorAll(
    "p, li, table, .cell_output, .output, figure, img, .pst-scrollable-table-container");
  for (const el of boxes) {
    if (el.closest(".cell_input, div.highlight")) continue;
    if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0) {
      found.too_wide.push(el.tagName.toLowerCase() + "." + [...el.classList].join(".") + ": "
        + el.scrollWidth + " > " + el.clientWidth + " px: " + el.textContent.trim().slice(0, 60));
    }
  }
  document.body.setAttribute("data-polcore-check", JSON.stringify(found));
  if (window.parent !== window) window.parent.postMessage(JSON.stringify(found), "*");
});
</script>
"""

# Headless Chromium's window is at least 500 px wide: narrower screens are an iframe of that width.
FRAME = """<html><body style="margin:0">
<iframe src="{src}" style="width:{width}px;height:1000px;border:0"></iframe>
<script>
window.addEventListener("message", (e) => document.body.setAttribute("data-polcore-check", e.data));
</script></body></html>
"""


class _Handler(SimpleHTTPRequestHandler):
    missing: list[str]

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def send_error(self, code: int, *args: object, **kwargs: object) -> None:
        if self.path != "/favicon.ico":  # asked for by the browser itself, not by the page
            self.missing.append(f"{code} {self.path}")
        super().send_error(code, *args, **kwargs)

    def send_head(self):  # type: ignore[override]
        if self.path.startswith("/__frame__/"):
            _, _, width, src = self.path.split("/", 3)
            return self._html(FRAME.format(src="/" + src, width=int(width)))
        path = Path(self.translate_path(self.path))
        if path.suffix == ".html" and path.is_file():
            return self._html(path.read_text().replace("</body>", CHECK + "</body>"))
        return super().send_head()

    def _html(self, text: str) -> io.BytesIO:
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").is_file():
        pytest.fail(f"no built book at {HTML}: run `make html` (jupyter-book build) first")
    missing: list[str] = []
    handler = functools.partial(type("Handler", (_Handler,), {"missing": missing}), directory=str(HTML))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", missing
    httpd.shutdown()
    httpd.server_close()


def load(base: str, page: str, width: int, profile_dir: Path) -> dict[str, list[str]]:
    """The page's own report, from the DOM Chromium dumps once the page has settled."""
    url = f"{base}/{page}" if width >= 500 else f"{base}/__frame__/{width}/{page}"
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", f"--user-data-dir={profile_dir}", "--hide-scrollbars",
           f"--window-size={max(width, 500)},1000", "--virtual-time-budget=15000", "--dump-dom", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{url}: Chromium exited {proc.returncode}: {proc.stderr[-500:]}"
    match = re.search(r'data-polcore-check="([^"]*)"', proc.stdout)
    assert match, f"{url} did not finish loading (no report in the DOM)"
    return json.loads(html.unescape(match.group(1)))


PAGES = [f"{entry}.html" for entry in toc_files(ROOT / "_toc.yml")]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("page", PAGES)
def test_page_renders_cleanly(server, page, width, tmp_path):
    base, missing = server
    missing.clear()
    report = load(base, page, width, tmp_path)
    problems = {key: value for key, value in report.items() if value}
    if missing:
        problems["not found on the server"] = sorted(set(missing))
    assert not problems, f"{page} at {width} px: {json.dumps(problems, indent=1)}"


def test_the_checks_catch_a_broken_page(server, tmp_path):
    """The script reports what it should: a page with each fault, served like the others."""
    base, missing = server
    bad = HTML / "_polcore_browser_test.html"
    bad.write_text(
        '<html><body><div class="bd-article"><img src="nowhere.png">'
        '<div class="output error">Traceback (most recent call last)</div>'
        '<span class="math">\\(x\\)</span><table><tr><td>' + "x" * 400 + "</td></tr></table>"
        "</div></body></html>")
    try:
        missing.clear()
        report = load(base, bad.name, 400, tmp_path)
    finally:
        bad.unlink()
    assert report["broken_images"] and report["errors"] and report["raw_math"] and report["too_wide"]
    assert any("nowhere.png" in m for m in missing)
