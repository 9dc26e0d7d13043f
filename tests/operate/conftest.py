"""Fixtures for the operator-facing suite: the real `trailmark` binary, started per test with
the flags the test needs, and small loopback receivers.

Environment:
    TRAILMARK_BIN  path of the server binary (default: <repo>/target/debug/trailmark)
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "trailmark"
LISTENING_RE = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    api_key: str
    data_dir: Path
    stderr_lines: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: Optional[str] = "default",
        headers: Optional[dict[str, str]] = None,
    ) -> tuple[int, Any, Any]:
        """One HTTP call; returns (status, parsed JSON body or text, headers)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if key is not None:
            request.add_header("Authorization", f"Bearer {self.api_key if key == 'default' else key}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw, response_headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, raw, response_headers = error.code, error.read(), error.headers
        text = raw.decode()
        try:
            return status, json.loads(text), response_headers
        except ValueError:
            return status, text, response_headers


def _pump(stream, sink: list[str], on_line: Optional[Callable[[str], None]] = None) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)
        if on_line is not None:
            on_line(line)
    stream.close()


@pytest.fixture
def start_server(tmp_path_factory: pytest.TempPathFactory):
    """Starts `trailmark serve` with extra arguments; every server is stopped after the test."""
    started: list[subprocess.Popen] = []

    def start(*args: str, env: Optional[dict[str, str]] = None) -> Server:
        binary = Path(os.environ.get("TRAILMARK_BIN", str(DEFAULT_BIN)))
        data_dir = tmp_path_factory.mktemp("trailmark-data")
        api_key = f"sk_test_{secrets.token_hex(16)}"
        environment = {
            k: v for k, v in os.environ.items() if not k.startswith("TRAILMARK_") and k != "RUST_LOG"
        }
        environment["TRAILMARK_API_KEY"] = api_key
        environment.update(env or {})
        proc = subprocess.Popen(
            [str(binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), *args],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        started.append(proc)
        stdout_lines: list[str] = []
        stderr_lines: list[str] = []
        port: dict[str, int] = {}
        ready = threading.Event()

        def on_stdout(line: str) -> None:
            match = LISTENING_RE.search(line)
            if match and not ready.is_set():
                port["port"] = int(match.group(1))
                ready.set()

        for stream, sink, hook in ((proc.stdout, stdout_lines, on_stdout), (proc.stderr, stderr_lines, None)):
            threading.Thread(target=_pump, args=(stream, sink, hook), daemon=True).start()
        deadline = time.monotonic() + 30
        while not ready.is_set() and time.monotonic() < deadline and proc.poll() is None:
            ready.wait(0.1)
        if not ready.is_set():
            pytest.fail(f"trailmark did not start:\n{''.join(stdout_lines)}{''.join(stderr_lines)}", pytrace=False)
        return Server(proc, port["port"], api_key, data_dir, stderr_lines)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@dataclass
class Receiver:
    """A loopback HTTP receiver that records every request and answers with `status`."""

    server: ThreadingHTTPServer
    requests: list[tuple[str, dict[str, str], bytes]]
    status: list[int]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, predicate: Callable[[list], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.requests):
                return
            time.sleep(0.05)
        raise AssertionError(f"the receiver did not get what was expected: {len(self.requests)} requests")


@pytest.fixture
def receiver():
    requests: list[tuple[str, dict[str, str], bytes]] = []
    status = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(status[0])
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Receiver(server, requests, status)
    server.shutdown()
    server.server_close()
