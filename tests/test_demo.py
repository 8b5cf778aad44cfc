"""The web demo in a real browser: ``binsr demo`` on 127.0.0.1 driven by headless Chromium (Debian's package,
through Playwright's ``executable_path``; no browser is downloaded). Uploads an image, waits for the result,
downloads it and compares it with ``binsr upscale`` of the same file; a truncated image shows the command
line's one-line error. A screenshot is saved to $BINSR_TEST_ARTIFACTS (default build/test-artifacts)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from binsr.cli import main
from binsr.demo import DemoRunner
from binsr.errors import BinsrError
from conftest import smooth_image

REPO = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser")


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium found (Debian: apt-get install chromium; .ci/run installs it): the browser test "
                "did not run")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("gradio", reason="the demo extra (gradio) is not installed: the browser test did not run")
    port = _free_port()
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "binsr", "demo", "--port", str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    url, deadline = f"http://127.0.0.1:{port}/", time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.2)
        if process.poll() is not None:
            pytest.fail(f"binsr demo exited: {process.stdout.read()}")
    else:
        process.kill()
        pytest.fail("binsr demo did not serve its page within 90 s")
    started = time.perf_counter() - start
    line = process.stdout.readline()
    workdir = Path(line.split("files in ")[1].split(";")[0])
    yield url, started, workdir, process
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    assert not workdir.exists(), f"binsr demo left {workdir} behind"  # every file it wrote was in there
    log = process.stdout.read()
    assert "Traceback" not in log, log  # every error, crafted requests' included, was one line


@pytest.fixture(scope="module")
def page(server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_browser(), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.goto(server[0])
        page.wait_for_selector("#run")
        yield page
        browser.close()


def _upload(page, path: Path) -> None:
    clear = page.locator("#lr-upload button[aria-label='Clear']")
    if clear.count():  # a file from an earlier test is still there
        clear.first.click()
    page.locator("#lr-upload input[type=file]").set_input_files(str(path))
    _wait_for_preview(page, path.name)


def _wait_for_preview(page, name: str) -> None:
    """Until the upload is done as a user sees it: the input preview shows ``name`` (loaded, or broken)."""
    page.wait_for_function("name => { const img = document.querySelector('#lr-preview img');"
                           " return img !== null && img.src.includes(encodeURIComponent(name)) && img.complete; }",
                           arg=name, timeout=30_000)


def _click_to_facts(page) -> float:
    """Click Upscale and wait for the facts of the result; the seconds between the two as the page itself saw
    them (its own clock; Playwright notices a change only at its next poll, up to a few hundred ms later)."""
    page.evaluate("""() => {
        window.binsrTimes = {};
        document.querySelector('#run').addEventListener('click', () => { window.binsrTimes.click = performance.now(); },
                                                        {capture: true, once: true});
        const facts = document.querySelector('#facts'), before = facts.innerText;
        new MutationObserver((_, observer) => {
            if (facts.querySelector('table') && facts.innerText !== before) {
                window.binsrTimes.facts = performance.now();
                observer.disconnect();
            }
        }).observe(facts, {subtree: true, childList: true, characterData: true});
    }""")
    page.locator("#run").click()
    page.wait_for_function("() => window.binsrTimes.facts !== undefined", timeout=60_000)
    times = page.evaluate("window.binsrTimes")
    return (times["facts"] - times["click"]) / 1000


def test_the_page_upscales_like_the_command_line(server, page, tmp_path, capsys):
    url, started, _, _ = server
    image = tmp_path / "photo.png"
    Image.fromarray(smooth_image(np.random.default_rng(5), 256, 256)).save(image)
    _upload(page, image)
    seconds = _click_to_facts(page)
    facts = page.locator("#facts").inner_text()
    assert "1024×1024 (×4)" in facts and "packed 1-bit kernels" in facts and "bimacosr-x4" in facts
    with page.expect_download() as download:
        page.locator("#result-file a").first.click()
    downloaded = tmp_path / "downloaded.png"
    download.value.save_as(downloaded)
    assert main(["upscale", str(image), "-o", str(tmp_path / "cli"), "--quiet"]) == 0
    assert downloaded.read_bytes() == (tmp_path / "cli" / "photo_x4.png").read_bytes()
    page.locator("#lr-upload button[aria-label='Clear']").first.click()
    page.get_by_text("sample_lr.png").first.click()  # the page's own example: the sample photo, made LR
    _wait_for_preview(page, "sample_lr.png")
    page.locator("#run").click()
    page.wait_for_selector("#facts >> text=512×600", timeout=60_000)
    artifacts = Path(os.environ.get("BINSR_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / "demo.png"), full_page=True)
    with capsys.disabled():
        print(f"\n[demo] page served {started:.1f} s after start; 256x256 upload returned in {seconds:.2f} s "
              f"(click to facts shown, by the page's clock); screenshot: {artifacts / 'demo.png'}\n{facts}")


def test_a_truncated_image_shows_the_one_line_error(page, tmp_path):
    good = tmp_path / "ok.png"
    Image.fromarray(smooth_image(np.random.default_rng(6), 32, 32)).save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:80])
    _upload(page, broken)
    page.locator("#run").click()
    toast = page.locator(".toast-body").first
    toast.wait_for(timeout=30_000)
    text = toast.inner_text()
    assert "broken.png: truncated or corrupt image" in text and "Traceback" not in text


def test_uploads_and_results_stay_in_the_server_folder(server, page):
    workdir = server[2]
    written = [p for p in workdir.rglob("*") if p.is_file()]
    assert any(p.name.endswith("_x4.png") for p in written) and any(p.name == "photo.png" for p in written)


def test_runner_refuses_like_the_command_line(tmp_path):
    runner = DemoRunner(tmp_path / "work")
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((600, 600, 3), np.uint8)).save(big)
    with pytest.raises(BinsrError, match=r"big.png: 600x600 is over the demo's limit"):
        runner.upscale(big)
    with pytest.raises(BinsrError, match="upload an image first"):
        runner.upscale(None)
    with pytest.raises(BinsrError, match="outscale must be above 0"):
        runner.upscale(big, outscale=-1)
    assert all(p.is_relative_to(tmp_path / "work") for p in tmp_path.rglob("*") if p.suffix == ".png"
               and p.name != "big.png")


def test_crafted_api_calls_are_refused_with_one_line(server):
    import json

    url = server[0]

    def call(data: list) -> str:
        request = urllib.request.Request(f"{url}gradio_api/call/run", data=json.dumps({"data": data}).encode(),
                                         headers={"Content-Type": "application/json"})
        event = json.load(urllib.request.urlopen(request, timeout=30))["event_id"]
        return urllib.request.urlopen(f"{url}gradio_api/call/run/{event}", timeout=60).read().decode()

    for data, kind in (([123, "bimacosr-x4", None, None, None, None, None, None], "ValidationError"),
                       ([{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, "bimacosr-x4", None, None,
                         None, None, None, None], "InvalidPathError"),
                       (["x"], "ValueError")):
        answer = call(data)
        assert answer.startswith("event: error") and f"malformed request: {kind}" in answer, answer
