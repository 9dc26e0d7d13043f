"""OpenTelemetry traces from the real binary (`--otlp-endpoint`), received over OTLP/HTTP by a
loopback collector that decodes them with OTLP's own protobuf messages (PyPI
`opentelemetry-proto`): a span per request, with the storage commit and a stream delivery as its
children."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status


@pytest.fixture
def collector():
    """An OTLP/HTTP trace receiver: every request must be a protobuf ExportTraceServiceRequest."""
    received: list[ExportTraceServiceRequest] = []
    problems: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != "/v1/traces":
                problems.append(f"path {self.path}")
            if self.headers.get("Content-Type") != "application/x-protobuf":
                problems.append(f"content-type {self.headers.get('Content-Type')}")
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            received.append(request)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()
            self.wfile.write(ExportTraceServiceResponse().SerializeToString())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, received, problems
    server.shutdown()
    server.server_close()


def spans_of(received: list[ExportTraceServiceRequest]) -> list[tuple[Any, Span]]:
    return [
        (resource_spans.resource, span)
        for request in received
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def attributes(span: Span) -> dict[str, Any]:
    values = {}
    for attribute in span.attributes:
        kind = attribute.value.WhichOneof("value")
        values[attribute.key] = getattr(attribute.value, kind)
    return values


def test_a_span_per_request_with_its_commit_and_deliveries_as_children(start_server, collector, receiver):
    http_server, received, problems = collector
    endpoint = f"http://127.0.0.1:{http_server.server_address[1]}"
    server = start_server("--allow-private-destinations", "--otlp-endpoint", endpoint, "--log", "warn")

    status, org, _ = server.request("POST", "/organizations", {"name": "Acme"})
    assert status == 201
    event = {
        "action": "user.login",
        "occurred_at": "2026-08-01T10:00:00.000Z",
        "actor": {"id": "user_1", "type": "user"},
        "targets": [],
        "context": {"location": "127.0.0.1"},
    }
    status, _, _ = server.request(
        "POST",
        "/audit_logs/events",
        {"organization_id": org["id"], "event": event},
        headers={"X-Request-ID": "req_traced_ingest"},
    )
    assert status == 200
    status, stream, _ = server.request(
        "POST",
        "/audit_logs/streams",
        {"organization_id": org["id"], "type": "http", "name": "Hook", "config": {"url": receiver.url + "/hook"}},
    )
    assert status == 201, stream
    status, _, _ = server.request(
        "POST", f"/audit_logs/streams/{stream['id']}/test", headers={"X-Request-ID": "req_traced_test"}
    )
    assert status == 200
    assert server.request("GET", "/organizations", key="sk_wrong")[0] == 401

    def by_request_id(request_id: str) -> Span:
        for _, span in spans_of(received):
            if attributes(span).get("trailmark.request_id") == request_id:
                return span
        raise AssertionError(f"no span for {request_id}")

    deadline = time.monotonic() + 15
    while True:
        try:
            ingest = by_request_id("req_traced_ingest")
            test = by_request_id("req_traced_test")
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert problems == []
    spans = spans_of(received)

    resource = spans[0][0]
    service = {a.key: a.value.string_value for a in resource.attributes}
    assert service["service.name"] == "trailmark"
    assert service["service.version"]

    # The request's span: a SERVER span named for its route, with HTTP's attributes.
    assert ingest.name == "POST /audit_logs/events"
    assert ingest.kind == Span.SPAN_KIND_SERVER
    assert len(ingest.trace_id) == 16 and len(ingest.span_id) == 8
    assert ingest.parent_span_id == b""
    assert attributes(ingest) == {
        "http.request.method": "POST",
        "http.route": "/audit_logs/events",
        "http.response.status_code": 200,
        "trailmark.request_id": "req_traced_ingest",
    }
    assert ingest.end_time_unix_nano >= ingest.start_time_unix_nano > 0
    assert ingest.status.code == Status.STATUS_CODE_UNSET

    # Its storage commit: a child in the same trace, inside the request's time.
    commits = [s for _, s in spans if s.name == "store.commit" and s.parent_span_id == ingest.span_id]
    assert len(commits) == 1
    commit = commits[0]
    assert commit.trace_id == ingest.trace_id
    assert commit.kind == Span.SPAN_KIND_INTERNAL
    assert attributes(commit) == {"organization_id": org["id"], "events": 1}
    assert ingest.start_time_unix_nano <= commit.start_time_unix_nano <= commit.end_time_unix_nano <= ingest.end_time_unix_nano

    # A stream's test event: the delivery is a CLIENT child of the request that sent it.
    assert test.name == "POST /audit_logs/streams/{id}/test"
    deliveries = [s for _, s in spans if s.name == "stream.delivery" and s.parent_span_id == test.span_id]
    assert len(deliveries) == 1
    delivery = deliveries[0]
    assert delivery.trace_id == test.trace_id
    assert delivery.kind == Span.SPAN_KIND_CLIENT
    assert attributes(delivery) == {"stream_id": stream["id"], "type": "http", "events": 1, "outcome": "delivered"}
    assert receiver.requests, "the test event reached the receiver"

    # Every span id is unique; a refused request has its span too.
    assert len({s.span_id for _, s in spans}) == len(spans)
    refused = [s for _, s in spans if attributes(s).get("http.response.status_code") == 401]
    assert [s.name for s in refused] == ["GET /organizations"]
