"""`beamtui serve`: the dashboard in a real headless Chromium (the OS package, driven by Playwright), loopback only."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import ROOT, free_port, run_cli
from tui.commands.serve import access_token, exposure_warning
from tui.commands.tab_server import QUIT_GRACE_S, TERM_GRACE_S

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


# A dashboard's process must be gone this long after its socket closed: quit, SIGTERM and SIGKILL graces, and
# a second for the poll.
TAB_GONE_S = QUIT_GRACE_S + TERM_GRACE_S + 2.0
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium: install the OS package (apt-get "
                                                             "install chromium) or point BEAMTUI_CHROMIUM at one; "
                                                             ".ci/run installs it")


def start_serve(*argv: str) -> tuple[subprocess.Popen, int]:
    """`beamtui serve` on the embedded model, its dashboards short, listening on a free loopback port."""
    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "tui.cli", "serve", "--port", str(port), "--max-tokens", "8",
                              *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_port(port, serve)
    return serve, port


def dashboards(serve: subprocess.Popen) -> list[psutil.Process]:
    """Everything serve has started that still runs: its tabs' dashboards and whatever they started."""
    try:
        return [p for p in psutil.Process(serve.pid).children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
    except psutil.NoSuchProcess:
        return []


def wait_for_dashboards(serve: subprocess.Popen, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(dashboards(serve)) < count:
        assert time.monotonic() < deadline, f"{count} dashboards did not start within {timeout}s"
        time.sleep(0.1)


QUIET_S = 1.5  # a dashboard may start a moment after its socket dropped: none for this long means none left


def assert_no_dashboard_left(serve: subprocess.Popen, within: float, what: str) -> None:
    """Within `within` seconds, no dashboard running for QUIET_S seconds together."""
    deadline = time.monotonic() + within + QUIET_S
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < QUIET_S:
        left = dashboards(serve)
        if left:
            quiet_since = time.monotonic()
            assert time.monotonic() < deadline, \
                f"{what}: {[' '.join(p.cmdline()[-4:]) for p in left]} still running {within}s on"
        time.sleep(0.1)


def upgrade_request(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET /ws?width=160&height=48 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def text_frame(payload: str) -> bytes:
    """A masked client text frame (RFC 6455), short payloads only."""
    data, mask = payload.encode(), os.urandom(4)
    assert len(data) < 126
    return bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def read_until(sock: socket.socket, marker: bytes, timeout: float = 30.0) -> bytes:
    sock.settimeout(timeout)
    seen = b""
    while marker not in seen:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed before sending {marker!r}"
        seen += chunk
    return seen


def drop_socket(port: int, stage: str) -> None:
    """Open the dashboard's websocket by hand and drop it at `stage` of its handshake."""
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        if stage == "connected":
            return
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(upgrade_request(port))
        if stage == "upgrade sent":
            return
        head = read_until(sock, b"\r\n\r\n")
        assert b" 101 " in head.split(b"\r\n")[0], head
        if stage == "upgraded":
            return
        if stage == "never read":  # the dashboard's frames back up into the server, which must not stall it
            time.sleep(5)
            return
        read_until(sock, b"\x1b[?1049h")  # the dashboard's first frame: it has started
        if stage == "first frame":
            return
        sock.sendall(text_frame('["resize", {"width": 100, "height": 30}]'))
        time.sleep(2)  # rendering at its new size, its engine running
    finally:
        sock.close()


STAGES = ("connected", "upgrade sent", "upgraded", "never read", "first frame", "resized")


def test_a_dashboard_ends_within_seconds_of_its_socket_dropping_at_any_stage():
    serve, port = start_serve("--max-tabs", "1")
    try:
        for stage in STAGES:
            drop_socket(port, stage)
            assert_no_dashboard_left(serve, TAB_GONE_S, f"socket dropped at {stage!r}")
        # Reconnecting: a second socket while the first's dashboard still starts, then the first dropped.
        first = socket.create_connection(("127.0.0.1", port))
        first.sendall(upgrade_request(port))
        read_until(first, b"\x1b[?1049h")
        second = socket.create_connection(("127.0.0.1", port))
        second.sendall(upgrade_request(port))
        assert b" 503 " in read_until(second, b"\r\n\r\n").split(b"\r\n")[0]  # --max-tabs 1: the slot is taken
        second.close()
        first.close()
        assert_no_dashboard_left(serve, TAB_GONE_S, "socket dropped after a refused reconnect")
        # Every slot came back: a new socket gets its dashboard.
        again = socket.create_connection(("127.0.0.1", port))
        again.sendall(upgrade_request(port))
        assert b" 101 " in read_until(again, b"\r\n\r\n").split(b"\r\n")[0]
        read_until(again, b"\x1b[?1049h")
        again.close()
        assert_no_dashboard_left(serve, TAB_GONE_S, "the last socket dropped")
    finally:
        serve.terminate()
        serve.communicate(timeout=20)


@pytest.mark.parametrize("ending", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_serve_ends_every_dashboard_when_it_ends(ending):
    serve, port = start_serve("--max-tabs", "2")
    held = []
    try:
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(upgrade_request(port))
            read_until(sock, b"\x1b[?1049h")
            held.append(sock)
        wait_for_dashboards(serve, 2)
        tabs = dashboards(serve)
        serve.send_signal(ending)
        serve.communicate(timeout=TAB_GONE_S + 10)
        gone, alive = psutil.wait_procs(tabs, timeout=TAB_GONE_S)  # SIGKILL: they die with their parent
        assert not alive, f"after {ending.name} on serve: {[p.pid for p in alive]} still running"
    finally:
        for sock in held:
            sock.close()
        if serve.poll() is None:
            serve.kill()


@needs_chromium
def test_a_headless_browser_screenshot_leaves_no_dashboard_behind(tmp_path):
    """What a user's screenshot tool does: load the page and leave a few seconds in, during start-up."""
    serve, port = start_serve()
    try:
        for attempt in range(2):
            subprocess.run([CHROMIUM, *HEADLESS, f"--user-data-dir={tmp_path / f'profile-{attempt}'}",
                            f"--screenshot={tmp_path / 'page.png'}", "--window-size=1400,900",
                            f"http://127.0.0.1:{port}/"], capture_output=True, timeout=90)
            assert_no_dashboard_left(serve, TAB_GONE_S, f"screenshot {attempt + 1}")
    finally:
        serve.terminate()
        serve.communicate(timeout=20)


@needs_chromium
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
                              "--max-tokens", "8"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
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
        out, err = serve.communicate(timeout=20)
    # The one address printed is the one that opens the dashboard: with its token.
    assert f"open http://127.0.0.1:{port}/?token=s3cret-token" in out
    assert f"http://127.0.0.1:{port} " not in out + err and "textual" not in (out + err).lower()


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
