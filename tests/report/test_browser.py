"""report.html in a real browser: headless Chromium (Debian's `chromium`) opens each page
from disk with the network blocked, renders it without a script error, shows the figures
and holds the run's numbers; a click on a column's header sorts the table.

Skipped where chromium is missing, except on CI (CI=true), where that is a failure:
`make setup` installs it (see the Makefile).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import QUICK
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.report.html import ERRORS_ID

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# no name resolves and every request goes to a closed port: nothing can be fetched
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"]
HEADLESS = ["--headless=new", "--no-sandbox", "--disable-gpu", *OFFLINE]
WINDOW = (1200, 2000)

if CHROMIUM is None and os.environ.get("CI") == "true":
    pytest.fail("CI must run the browser tests: install chromium (make setup does, as root)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two quick runs (their own report.html) and the page of both."""
    tmp = tmp_path_factory.mktemp("pages")
    spec = tmp / "quick.yaml"
    spec.write_text(QUICK)
    runner = CliRunner()
    found: dict[str, Path] = {}
    for lr, epochs in (("0.05", 6), ("0.01", 2)):  # six rows to sort
        args = ["train", str(spec), "--runs-dir", str(tmp / "runs"), "-q", "--set"]
        result = runner.invoke(
            app, [*args, f"optimizer.lr={lr}", "--set", f"train.epochs={epochs}"]
        )
        assert result.exit_code == 0, result.output
        found[lr] = Path(result.stdout.strip())
    both = tmp / "both.html"
    result = runner.invoke(app, ["report", str(tmp / "runs"), "--out", str(both)])
    assert result.exit_code == 0, result.output
    found["both"] = both
    return found


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *HEADLESS, *args], capture_output=True, text=True, timeout=120, check=False
    )


def dom(page: Path) -> str:
    """The page's DOM once loaded and its scripts have run."""
    done = chromium("--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr
    return done.stdout


def script_errors(document: str) -> str:
    """What the page's own error catcher recorded (uncaught errors, failed loads)."""
    found = re.search(rf'<pre id="{ERRORS_ID}"[^>]*>(.*?)</pre>', document, re.S)
    assert found is not None, "the page lost its error catcher"
    return found.group(1)


def screenshot(page: Path, shot: Path) -> Any:
    """The page as the browser draws it in a WINDOW-sized viewport: an (H, W, 3) array."""
    import matplotlib.image

    done = chromium(f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}", page.as_uri())
    assert done.returncode == 0, done.stderr
    assert "Uncaught" not in done.stderr  # (chromium logs console errors there too)
    return matplotlib.image.imread(shot)[..., :3]


def figures_shown(page: Path, folder: Path) -> float:
    """The share of the screenshot that changes when the page's pictures are taken out:
    ~0 where the browser drew none of them."""
    bare = folder / "bare.html"
    text = page.read_text(encoding="utf-8")
    bare.write_text(re.sub(r'src="data:image/png;base64,[^"]*"', 'src=""', text))
    shown, without = screenshot(page, folder / "shown.png"), screenshot(bare, folder / "bare.png")
    assert shown.shape[:2] == (WINDOW[1], WINDOW[0])
    return float((abs(shown - without).max(axis=-1) > 0.1).mean())


@pytest.mark.parametrize("which", ["0.05", "both"])
def test_a_report_renders_offline_with_its_figures_and_numbers(
    pages: dict[str, Path], which: str, tmp_path: Path
) -> None:
    page = pages[which] if which == "both" else pages[which] / "report.html"
    shown = figures_shown(page, tmp_path)

    # ~1% for the page of both (thin lines on white), ~0 were no figure drawn
    assert shown > 0.004, shown
    document = dom(page)
    assert script_errors(document) == ""
    for run in (pages["0.05"], pages["0.01"]) if which == "both" else (pages[which],):
        final = json.loads((run / "run.json").read_text())["final"]
        assert f'title="{final["test_accuracy"]!r}"' in document
        assert f'title="{final["val_loss"]!r}"' in document


def test_the_error_catcher_sees_a_broken_script(pages: dict[str, Path], tmp_path: Path) -> None:
    """The check above can fail: a page with a failing script shows the error."""
    broken = tmp_path / "broken.html"
    text = (pages["0.05"] / "report.html").read_text(encoding="utf-8")
    broken.write_text(text.replace("<main>", "<script>undefinedThing()</script><main>", 1))

    assert "undefinedThing is not defined" in script_errors(dom(broken))


def test_the_browser_is_offline(tmp_path: Path) -> None:
    """A page that asks for a picture on the network gets none (and says so)."""
    page = tmp_path / "net.html"
    page.write_text(
        f'<pre id="{ERRORS_ID}"></pre><script>addEventListener("error",function(e){{'
        f'document.getElementById("{ERRORS_ID}").textContent+="failed "+e.target.tagName;}},'
        'true);</script><img src="http://example.com/x.png">'
    )

    assert script_errors(dom(page)) == "failed IMG"


# --- a click sorts: the browser driven through its DevTools pipe (stdlib only) -----------


class DevTools:
    """Chromium with --remote-debugging-pipe: commands go in on fd 3, replies come out on
    fd 4, each a JSON message ended by a NUL byte."""

    def __init__(self) -> None:
        assert CHROMIUM is not None
        commands_in, self._commands = os.pipe()
        self._replies, replies_out = os.pipe()

        def fds() -> None:
            os.dup2(commands_in, 3)
            os.dup2(replies_out, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, *HEADLESS, "--remote-debugging-pipe", "about:blank"],
            pass_fds=(3, 4),
            preexec_fn=fds,  # noqa: PLW1509 (only dup2 runs there)
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_in)
        os.close(replies_out)
        self._buffer = b""
        self._id = 0
        self.session: str | None = None

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if self.session is not None:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._replies, 1 << 16)
                assert chunk, "chromium closed its DevTools pipe"
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply: dict[str, Any] = json.loads(raw)
            if reply.get("id") == self._id:
                assert "error" not in reply, reply
                return reply.get("result", {})

    def open(self, page: Path) -> None:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Page.navigate", url=page.as_uri())
        self.evaluate(
            "new Promise(function(done){if(document.readyState==='complete')done(1);"
            "else addEventListener('load',function(){done(1);});})"
        )

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def close(self) -> None:
        self.session = None
        try:
            self.call("Browser.close")
        finally:
            os.close(self._commands)
            os.close(self._replies)
            self.process.wait(timeout=30)


@pytest.fixture
def browser() -> Iterator[DevTools]:
    tools = DevTools()
    try:
        yield tools
    finally:
        tools.close()


def test_a_click_on_a_header_sorts_the_table(pages: dict[str, Path], browser: DevTools) -> None:
    browser.open(pages["0.05"] / "report.html")
    column = (
        "(function(name,clicks){var t=document.querySelectorAll('table.sortable')[1];"
        "var th=[].find.call(t.tHead.rows[0].cells,function(c){return c.textContent===name;});"
        "for(var i=0;i<clicks;i++)th.click();"
        "return [].map.call(t.tBodies[0].rows,function(r){return r.cells[th.cellIndex]"
        ".title;});})"
    )

    ascending = [float(v) for v in browser.evaluate(f"{column}('val_loss',1)")]
    descending = [float(v) for v in browser.evaluate(f"{column}('val_loss',1)")]

    rows = (pages["0.05"] / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    losses = [float(r.split(",")[header.index("val_loss")]) for r in rows[1:]]
    assert ascending == sorted(losses)
    assert descending == sorted(losses, reverse=True)
    assert browser.evaluate(f"document.getElementById('{ERRORS_ID}').textContent") == ""


def test_blank_and_non_finite_cells_sort_last(browser: DevTools, tmp_path: Path) -> None:
    from nncli.report import html

    rows = [{"loss": 1.0}, {"loss": math.nan}, {"loss": None}, {"loss": 0.5}, {"loss": 2.0}]
    page = tmp_path / "page.html"
    page.write_text(html.page("nan", html.table(rows, ["loss"])))
    browser.open(page)
    column = (
        "(function(){var th=document.querySelector('th');th.click();var up=[].map.call("
        "document.querySelectorAll('tbody td'),function(c){return c.textContent;});th.click();"
        "return [up,[].map.call(document.querySelectorAll('tbody td'),"
        "function(c){return c.textContent;})];})()"
    )

    ascending, descending = browser.evaluate(column)

    assert ascending[:3] == ["0.5000", "1", "2"]
    assert descending[:3] == ["2", "1", "0.5000"]
    assert sorted(ascending[3:]) == sorted(descending[3:]) == ["", "nan"]
