"""The HTML report in a real browser: headless Chromium opens it with no console error and no
request for anything outside the file, and a screenshot of it is not blank.

Console errors are read over the DevTools protocol on a pipe (--remote-debugging-pipe: commands
on fd 3, replies on fd 4, NUL-terminated JSON), so no websocket client is needed. A page with a
deliberate error checks that the detector sees errors at all.
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from suite.paths import TESTS
from suite.records import runs
from suite.report import files as report_files
from suite.report import model as report_model

FIXTURES = TESTS / "fixtures" / "runs"
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio"]

# slow: opens reports in headless Chromium
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None, reason="needs the chromium browser on PATH (Debian: apt-get install chromium; "
                             ".ci/run installs it), not found")]


class DevTools:
    """A headless browser driven over --remote-debugging-pipe."""

    def __init__(self, profile: Path):
        to_child, self._out = os.pipe()
        self._in, from_child = os.pipe()

        def wire() -> None:  # in the child: the protocol's fds 3 (commands) and 4 (replies)
            a, b = fcntl.fcntl(to_child, fcntl.F_DUPFD, 10), fcntl.fcntl(from_child, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"],
                                     preexec_fn=wire, pass_fds=(3, 4), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._buf, self._id, self.events = b"", 0, []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next(deadline)
            if reply is None:
                raise TimeoutError(f"no reply to {method} within {timeout} s")
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _next(self, deadline: float) -> dict | None:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                return None
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise RuntimeError(f"the browser closed the pipe (exit code {self.proc.poll()})")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def wait_for(self, method: str, session: str, timeout: float = 60) -> None:
        """Wait for an event, dismissing any JavaScript dialog (alert() would block the page)."""
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            event = self._next(deadline)
            if event is None:
                raise TimeoutError(f"no {method} within {timeout} s")
            self.events.append(event)
            if event.get("method") == "Page.javascriptDialogOpening":
                self.send("Page.handleJavaScriptDialog", {"accept": False}, session=session)

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (event := self._next(deadline)) is not None:
            self.events.append(event)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._in)
        os.close(self._out)


def problems(events: list[dict]) -> list[str]:
    """Console errors, uncaught exceptions, error log entries and requests for anything not in the page."""
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description")))
                                                               for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            out.append("exception: " + str(p.get("exceptionDetails", {}).get("text")))
        elif m == "Page.javascriptDialogOpening":
            out.append(f"dialog: {p.get('type')} {p.get('message')}")
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append("log: " + str(p["entry"].get("text")))
        elif m == "Network.requestWillBeSent" and not p["request"]["url"].startswith(("file:", "data:")):
            out.append("request: " + p["request"]["url"])
    return out


def open_page(browser: DevTools, url: str) -> list[str]:
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    browser.events.clear()
    for domain in ("Runtime", "Log", "Network", "Page"):
        browser.send(f"{domain}.enable", session=session)
    browser.send("Page.navigate", {"url": url}, session=session)
    browser.wait_for("Page.loadEventFired", session)
    browser.drain(1.0)  # late console messages and image decoding errors
    found = problems(browser.events)
    browser.send("Target.closeTarget", {"targetId": target})
    return found


@pytest.fixture(scope="module", params=["report", "history"])
def page(request, tmp_path_factory) -> Path:
    """The comparison report of the crafted runs, and the history of the planted nights (change points,
    a drift, timelines; benchmarks/history_fixture.py)."""
    out = tmp_path_factory.mktemp(request.param)
    if request.param == "history":
        from benchmarks.history_fixture import nightly, planted_series
        from suite.report import history, history_pages

        nights = nightly(out / "nights", planted_series())
        return history_pages.write(history.analyse([str(nights)]), out / "pages")["html"]
    rep = report_model.Report.build(runs.load(FIXTURES / "verdicts-base"), [runs.load(FIXTURES / "verdicts-cand")])
    return report_files.write(rep, out)["html"]


def test_report_opens_without_console_errors(page, tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text("<!doctype html><title>x</title><script>console.error('planted'); nosuchfunction();</script>"
                      "<img src=x onerror=alert('unescaped')>")
    browser = DevTools(tmp_path / "profile")
    try:
        planted = open_page(browser, broken.as_uri())
        found = open_page(browser, page.as_uri())
    finally:
        browser.close()
    for expected in ("console.error: planted", "exception: ", "dialog: alert unescaped", "log: Failed to load"):
        assert any(p.startswith(expected) for p in planted), (expected, planted)
    assert found == []


def test_screenshot_is_not_blank(page, tmp_path):
    from PIL import Image, ImageStat

    shot = tmp_path / "shot.png"
    height = 2000 if page.name == "report.html" else 1000  # the history page is shorter
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    f"--window-size=1280,{height}", page.as_uri()], check=True, timeout=180,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    image = Image.open(shot).convert("L")
    assert image.size == (1280, height)
    stat = ImageStat.Stat(image)
    assert stat.stddev[0] > 10, f"screenshot looks blank (pixel stddev {stat.stddev[0]:.1f})"
    dark = sum(image.histogram()[:128]) / (image.size[0] * image.size[1])
    assert dark > 0.01, f"only {dark:.2%} of the screenshot is text or lines"


# Words laid out over more than one line: for every word of the page's visible text, a Range over it
# and the distinct tops of its client rects (a word broken mid-word has two). Hidden text has no rects.
# A word is what lies between spaces and after a hyphen, slash, plus, comma, colon or underscore: ids
# and paths may wrap there (suite/report/html.py's wrappable), nowhere else.
BROKEN_WORDS = """(() => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const m of node.data.matchAll(/[^\\s\\-\\/+,:_]+[\\-\\/+,:_]*/g)) {
      const r = document.createRange();
      r.setStart(node, m.index); r.setEnd(node, m.index + m[0].length);
      const tops = new Set(Array.from(r.getClientRects()).filter(b => b.width > 0).map(b => Math.round(b.top)));
      if (tops.size > 1) out.push(m[0]);
    }
  }
  return out;
})()"""


def layout(browser: DevTools, url: str, width: int) -> dict:
    """At `width` CSS pixels: the document's scroll and client widths, and the words broken across lines."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    browser.events.clear()
    browser.send("Page.enable", session=session)
    browser.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": 1000, "deviceScaleFactor": 1,
                                                        "mobile": False}, session=session)
    browser.send("Page.navigate", {"url": url}, session=session)
    browser.wait_for("Page.loadEventFired", session)
    value = lambda expr: browser.send("Runtime.evaluate", {"expression": expr, "returnByValue": True},  # noqa: E731
                                      session=session)["result"]["value"]
    got = {"scroll": value("document.documentElement.scrollWidth"),
           "client": value("document.documentElement.clientWidth"), "broken": value(BROKEN_WORDS)}
    browser.send("Target.closeTarget", {"targetId": target})
    return got


def test_no_sideways_scroll_at_1400_px_and_long_notes_fold(tmp_path):
    """The report whose notes are longest (unreadable records, a timing that needs repeats) stays inside
    a 1400 px window: long notes fold into a details element instead of widening the table; a page
    made wide on purpose shows that the measurement sees sideways scroll at all."""
    rep = report_model.Report.build(runs.load(FIXTURES / "verdicts-base"), [runs.load(FIXTURES / "verdicts-cand")])
    page = report_files.write(rep, tmp_path / "out")["html"]
    assert '<details class="note"><summary>' in page.read_text()
    wide = tmp_path / "wide.html"
    wide.write_text("<!doctype html><title>w</title><table><tr><td style='white-space:nowrap'>" + "x" * 600
                    + "</td></tr></table>")
    browser = DevTools(tmp_path / "profile")
    try:
        planted = [layout(browser, wide.as_uri(), 1400)[k] for k in ("scroll", "client")]
        scroll, client = (layout(browser, page.as_uri(), 1400)[k] for k in ("scroll", "client"))
    finally:
        browser.close()
    assert planted[0] > planted[1], planted
    assert scroll <= client, f"the report scrolls sideways at 1400 px: {scroll} > {client}"


@pytest.mark.parametrize("width", [900, 1400])
def test_no_word_broken_mid_word_and_no_sideways_scroll(tmp_path, width):
    """The crafted pair's report (every verdict, the longest notes) and the two-machine report of 57 cases,
    at 900 and 1400 px: nothing scrolls sideways and no word is split across lines (ids wrap after their
    slashes); a page that breaks words on purpose shows that the probe sees a broken word at all."""
    pages = []
    for name, (b, c) in {"verdicts": (FIXTURES / "verdicts-base", FIXTURES / "verdicts-cand"),
                         "machines": (FIXTURES.parent / "machines" / "amd-epyc-zen4-avx512-bf16" / "benchmark-tiny-run",
                                      FIXTURES.parent / "machines" / "intel-xeon-avx512-amx" / "benchmark-tiny-run")
                         }.items():
        rep = report_model.Report.build(runs.load(b), [runs.load(c)])
        pages.append(report_files.write(rep, tmp_path / name)["html"])
    planted = tmp_path / "planted.html"
    planted.write_text("<!doctype html><title>p</title><div style='width:24px;overflow-wrap:anywhere'>"
                       "baseline passed +100.0%</div>")
    browser = DevTools(tmp_path / "profile")
    try:
        seen = layout(browser, planted.as_uri(), width)
        got = {page.parent.name: layout(browser, page.as_uri(), width) for page in pages}
    finally:
        browser.close()
    assert seen["broken"], "the probe found no broken word on a page made to break them"
    for name, g in got.items():
        assert g["scroll"] <= g["client"], f"{name} scrolls sideways at {width} px: {g['scroll']} > {g['client']}"
        assert g["broken"] == [], f"{name} at {width} px breaks words mid-word: {g['broken'][:20]}"


def page_values(browser: DevTools, url: str, expressions: dict[str, str]) -> dict:
    """Each expression's value on the loaded page."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    browser.events.clear()
    browser.send("Page.enable", session=session)
    browser.send("Page.navigate", {"url": url}, session=session)
    browser.wait_for("Page.loadEventFired", session)
    got = {k: browser.send("Runtime.evaluate", {"expression": e, "returnByValue": True}, session=session)["result"]
           .get("value") for k, e in expressions.items()}
    browser.send("Target.closeTarget", {"targetId": target})
    return got


def test_a_failure_no_check_names_reads_so_on_the_page(tmp_path):
    """The causes pair's report (tests/fixtures/make_runs.py) in the browser: the line of a case whose only
    failure is its moved curve is shown, and the title counts such cases (suite/report/causes.py)."""
    rep = report_model.Report.build(runs.load(FIXTURES / "causes-base"), [runs.load(FIXTURES / "causes-cand")])
    page = report_files.write(rep, tmp_path / "out")["html"]
    browser = DevTools(tmp_path / "profile")
    try:
        got = page_values(browser, page.as_uri(), {
            "title": "document.querySelector('h1').innerText",
            "unnamed": "Array.from(document.querySelectorAll('ul.causes li.unnamed')).map(li => li.innerText)",
            "named": "Array.from(document.querySelectorAll('ul.causes li:not(.unnamed)')).map(li => li.innerText)"})
    finally:
        browser.close()
    assert got["title"].endswith("3 cases worse; 2 cases with no check naming a cause"), got["title"]
    assert got["unnamed"] == [
        "causes/curve-only (failed; worse: final_loss): the loss curve moved; no check names a cause",
        "causes/worse-only (worse: final_loss): no check names a cause"], got["unnamed"]
    assert any(line.startswith("causes/relation-named (failed; worse: final_loss): grpo.advantages_by_definition: "
                               "advantages differ") for line in got["named"]), got["named"]
