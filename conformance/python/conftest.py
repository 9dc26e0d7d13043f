"""Fixtures for the WorkOS Python SDK conformance suite.

The suite starts the real `trailmark` binary once per session (port 0, a temporary data
directory, a random bootstrap API key), points the official `workos` package at it, and
tears it down with SIGTERM. Raw HTTP checks go through `urllib.request` so that they see
exactly what the server sent, independent of the SDK's parsing.

Environment:
    TRAILMARK_BIN  path of the server binary (default: <repo>/target/debug/trailmark)
    TRAILMARK_TEST_DATABASE_URL  a fresh database to run on (default: SQLite in the data dir)
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
from pathlib import Path
from typing import Any, Optional

import pytest
from workos import WorkOSClient
from workos.common.models.organization_domain_data_state import OrganizationDomainDataState
from workos.organizations.models.organization_domain_data import OrganizationDomainData

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "trailmark"
STARTUP_TIMEOUT_S = 30.0
LISTENING_RE = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


@dataclass
class Server:
    """A running `trailmark serve` process and how to reach it."""

    proc: subprocess.Popen
    port: int
    api_key: str
    data_dir: Path
    stdout_lines: list[str] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return "".join(self.stdout_lines[-50:]) + "".join(self.stderr_lines[-100:])


def _pump(stream, sink: list[str], on_line=None) -> None:
    """Read a child's pipe to EOF so the child never blocks on a full pipe."""
    for line in iter(stream.readline, ""):
        sink.append(line)
        if on_line is not None:
            on_line(line)
    stream.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    binary = Path(os.environ.get("TRAILMARK_BIN", str(DEFAULT_BIN)))
    if not binary.is_file():
        pytest.fail(
            f"trailmark binary not found at {binary}; build it or set TRAILMARK_BIN",
            pytrace=False,
        )
    data_dir = tmp_path_factory.mktemp("trailmark-data")
    api_key = f"sk_test_{secrets.token_hex(16)}"
    # The suite controls the configuration: drop any TRAILMARK_* the caller has set.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILMARK_")}
    env["TRAILMARK_API_KEY"] = api_key
    command = [str(binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)]
    # The PostgreSQL run of the suite (scripts/test) names a fresh database here.
    database = os.environ.get("TRAILMARK_TEST_DATABASE_URL")
    if database:
        command += ["--database", database]
    proc = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    stdout_lines: list[str] = []
    stderr_lines: list[str] = []
    found: dict[str, int] = {}
    ready = threading.Event()

    def on_stdout(line: str) -> None:
        m = LISTENING_RE.search(line)
        if m and not ready.is_set():
            found["port"] = int(m.group(1))
            ready.set()

    threads = [
        threading.Thread(target=_pump, args=(proc.stdout, stdout_lines, on_stdout), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, stderr_lines), daemon=True),
    ]
    for t in threads:
        t.start()

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not ready.is_set() and time.monotonic() < deadline and proc.poll() is None:
        ready.wait(0.1)
    if not ready.is_set():
        exited = proc.poll()
        if exited is None:
            proc.kill()
            proc.wait(5)
        for t in threads:
            t.join(2)
        why = (
            f"exited with code {exited} before printing it"
            if exited is not None
            else f"did not print it within {STARTUP_TIMEOUT_S:.0f}s"
        )
        pytest.fail(
            f"trailmark ({binary}) was expected to print "
            f"'listening on http://127.0.0.1:PORT' but {why}\n"
            f"--- stdout ---\n{''.join(stdout_lines)}\n--- stderr ---\n{''.join(stderr_lines)}",
            pytrace=False,
        )

    srv = Server(
        proc=proc,
        port=found["port"],
        api_key=api_key,
        data_dir=data_dir,
        stdout_lines=stdout_lines,
        stderr_lines=stderr_lines,
    )
    try:
        yield srv
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for t in threads:
            t.join(2)


def make_client(server: Server, api_key: Optional[str] = None) -> WorkOSClient:
    # max_retries=0: every SDK call is exactly one HTTP request, so a 5xx is reported as
    # the server's answer instead of being retried (and slept on) by the SDK.
    return WorkOSClient(
        api_key=api_key if api_key is not None else server.api_key,
        client_id="client_test",
        base_url=server.base_url,
        max_retries=0,
    )


@pytest.fixture(scope="session")
def client(server: Server) -> WorkOSClient:
    return make_client(server)


@dataclass
class RawResponse:
    status: int
    headers: Any  # email.message.Message: case-insensitive .get()
    text: str

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type") or ""

    @property
    def request_id(self) -> str:
        return self.headers.get("X-Request-ID") or ""

    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError as e:
            raise AssertionError(
                f"response body is not JSON (status {self.status}): {self.text!r}"
            ) from e

    def describe(self) -> str:
        return f"HTTP {self.status} content-type={self.content_type!r} body={self.text[:2000]!r}"


class Raw:
    """Hand-written HTTP calls against the server (no SDK involved)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: Optional[bytes] = None,
        headers: Optional[dict[str, str]] = None,
        api_key: Optional[str] = None,
        auth: bool = True,
    ) -> RawResponse:
        hdrs = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        if auth:
            hdrs["Authorization"] = f"Bearer {api_key or self.server.api_key}"
        hdrs.update(headers or {})
        req = urllib.request.Request(
            self.server.base_url + path, data=data, method=method, headers=hdrs
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return RawResponse(resp.status, resp.headers, resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", errors="replace")
            return RawResponse(e.code, e.headers, text)

    def get(self, path: str, **kw: Any) -> RawResponse:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> RawResponse:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> RawResponse:
        return self.request("PUT", path, body, **kw)


@pytest.fixture(scope="session")
def raw(server: Server) -> Raw:
    return Raw(server)


@pytest.fixture
def org(client: WorkOSClient):
    """A fresh organization for one test (so retention and similar state never leaks)."""
    suffix = secrets.token_hex(4)
    return client.organizations.create_organization(
        name=f"Conformance {suffix}",
        domain_data=[
            OrganizationDomainData(
                domain=f"conf-{suffix}.example.com", state=OrganizationDomainDataState.VERIFIED
            )
        ],
    )
