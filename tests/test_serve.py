"""`beamtui serve`: the dashboard in a real headless Chromium (the OS package, driven by Playwright), loopback only."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, free_port, run_cli
from tui.commands.serve import access_token, exposure_warning

CHROMIUM = os.environ.get("BEAMTUI_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {process.communicate()[1]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listened on {port} within {timeout}s")


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium: install the OS package (apt-get install "
                                              "chromium) or point BEAMTUI_CHROMIUM at one; .ci/run installs it")
def test_the_dashboard_in_a_browser_renders_and_plus_widens_the_beam(fault_server):
    from playwright.sync_api import sync_playwright

    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "serve", "--port", str(port), "--token", "browser-token", "--backend",
         "openai", "--base-url",
         fault_server.base_url, "--model", "synthetic", "--tokenizer", "embedded", "--prompt", "hi",
         "--max-tokens", "16", "--block-tokens", "8"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    frames: list[str] = []  # what the server sent the page's terminal: the dashboard's output

    def screen() -> str:
        return "".join(frames)

    try:
        wait_for_port(port, serve)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            local = f"http://127.0.0.1:{port}/"
            # The page asks Google for a font; nothing leaves loopback.
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(local)
                       else route.abort())
            page.on("websocket", lambda ws: ws.on(
                "framereceived", lambda data: frames.append(data if isinstance(data, str) else
                                                            data.decode("utf-8", "replace"))))
            assert page.goto(local).status == 403  # no token: no page, no dashboard
            assert page.goto(local + "?token=browser-token").status == 200
            deadline = time.monotonic() + 60
            while not ("Beams" in screen() and "beam:4x4" in screen()) and time.monotonic() < deadline:
                page.wait_for_timeout(100)
            assert "Beams" in screen() and "beam:4x4" in screen()
            assert "beam:5x4" not in screen()
            page.mouse.click(800, 500)  # focus the terminal
            page.keyboard.press("+")
            while "beam:5x4" not in screen() and time.monotonic() < deadline:
                page.wait_for_timeout(100)
            assert "beam:5x4" in screen()
            browser.close()
    finally:
        serve.terminate()
        serve.communicate(timeout=20)


def test_beyond_loopback_a_token_is_made_and_only_no_token_turns_it_off_with_a_warning():
    assert access_token("127.0.0.1", None, False) is None and access_token("localhost", None, False) is None
    made = access_token("0.0.0.0", None, False)
    assert made and len(made) >= 32 and made != access_token("0.0.0.0", None, False)
    assert access_token("0.0.0.0", "my-own-token", False) == "my-own-token"
    assert access_token("0.0.0.0", None, True) is None
    assert exposure_warning("0.0.0.0", 8000, made) is None and exposure_warning("127.0.0.1", 8000, None) is None
    assert "anyone who can reach port 8000 can drive the search" in exposure_warning("0.0.0.0", 8000, None)


def test_without_its_token_the_page_and_websocket_are_refused():
    import httpx

    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "tui.cli", "serve", "--port", str(port), "--token", "s3cret-token",
                              "--max-tokens", "8"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    try:
        wait_for_port(port, serve)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/").status_code == 403
        assert httpx.get(f"{base}/?token=wrong-token").status_code == 403
        assert httpx.get(f"{base}/ws").status_code == 403
        page = httpx.get(f"{base}/?token=s3cret-token")
        assert page.status_code == 200 and page.cookies.get("beamtui_token") == "s3cret-token"
        assert f"ws://127.0.0.1:{port}/ws" in page.text  # where the browser reached it, not the bound address
        assert httpx.get(f"http://localhost:{port}/?token=s3cret-token").text.count(f"ws://localhost:{port}/ws")
    finally:
        serve.terminate()
        _, err = serve.communicate(timeout=20)
    assert f"open http://127.0.0.1:{port}/?token=s3cret-token" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--port", "0"], "--port must be 1 to 65535"),
    (["--port", "PORT_IN_USE"], "cannot listen on 127.0.0.1:"),
    (["--beam-width", "0"], "beam-width must be an integer >= 1"),
    (["--token", "abcdefgh", "--no-token"], "give --token or --no-token, not both"),
    (["--token", "short"], "--token must be at least 8 characters"),
    (["--max-tabs", "0"], "--max-tabs must be >= 1"),
])
def test_bad_serve_input_exits_2_with_one_line(argv, message):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        taken = str(busy.getsockname()[1])
        done = run_cli("serve", *[taken if a == "PORT_IN_USE" else a for a in argv], timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
