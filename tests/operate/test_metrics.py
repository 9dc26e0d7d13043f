"""`GET /metrics` read by the official Prometheus client's strict OpenMetrics parser, after real
traffic through the real binary: requests and rejections, commits, the connection pool, a log
stream delivering to a loopback receiver then failing (and an alert incident), an export, checkpoints, retention, and
the process itself."""

from __future__ import annotations

import json
import time

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def event(action: str, n: int) -> dict:
    return {
        "action": action,
        "occurred_at": f"2026-08-01T10:00:{n:02d}.000Z",
        "actor": {"id": f"user_{n}", "type": "user"},
        "targets": [{"id": "team_1", "type": "team"}],
        "context": {"location": "127.0.0.1"},
    }


def scrape(server) -> dict:
    status, text, headers = server.request("GET", "/metrics", key=None)
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    # Raises on anything that breaks the format: the whole exposition must parse.
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict, family: str, sample: str, **labels: str) -> float:
    matches = [
        s.value
        for s in families[family].samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert matches, f"no {sample} with {labels} in {families[family].samples}"
    return sum(matches)


def wait_until(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_metrics_after_real_traffic(start_server, receiver):
    server = start_server(
        "--allow-private-destinations",
        "--checkpoint-interval-ms",
        "100",
        "--retention-interval-secs",
        "1",
        "--alert-after-secs",
        "1",
    )
    status, org, _ = server.request("POST", "/organizations", {"name": "Acme"})
    assert status == 201
    organization = org["id"]
    status, stream, _ = server.request(
        "POST",
        "/audit_logs/streams",
        {
            "organization_id": organization,
            "type": "http",
            "name": "Loopback",
            "config": {"url": receiver.url + "/hook", "format": "json", "batch": {"max_wait_seconds": 0}},
        },
    )
    assert status == 201, stream
    stream_id = stream["id"]

    for n in range(3):
        status, _, _ = server.request(
            "POST", "/audit_logs/events", {"organization_id": organization, "event": event("user.login", n)}
        )
        assert status == 200
    status, _, _ = server.request(
        "POST",
        "/audit_logs/events/batch",
        {"organization_id": organization, "events": [event("user.batch", 10 + n) for n in range(5)]},
    )
    assert status == 200
    body = {"organization_id": organization, "event": event("user.once", 30)}
    for _ in range(2):
        status, _, _ = server.request("POST", "/audit_logs/events", body, headers={"Idempotency-Key": "k-1"})
        assert status == 200
    assert server.request("GET", "/organizations", key="sk_wrong")[0] == 401
    assert server.request("POST", "/organizations", {})[0] == 422
    assert server.request("GET", "/organizations/org_01HZZZZZZZZZZZZZZZZZZZZZZZ")[0] == 404

    receiver.wait_for(lambda requests: sum(len(json.loads(body)) for _, _, body in requests) >= 9)
    receiver.status[0] = 503
    for n in range(2):
        status, _, _ = server.request(
            "POST", "/audit_logs/events", {"organization_id": organization, "event": event("user.late", 40 + n)}
        )
        assert status == 200

    status, export, _ = server.request(
        "POST", "/audit_logs/exports", {"organization_id": organization, "format": "ndjson"}
    )
    assert status == 201

    def export_ready():
        status, got, _ = server.request("GET", f"/audit_logs/exports/{export['id']}")
        assert status == 200 and got["state"] == "ready", got

    wait_until(export_ready)

    def stream_failing() -> dict:
        families = scrape(server)
        assert value(families, "trailmark_stream_requests", "trailmark_stream_requests_total",
                     stream_id=stream_id, outcome="retry") >= 1
        assert value(families, "trailmark_stream_state", "trailmark_stream_state",
                     stream_id=stream_id, state="error") == 1
        assert value(families, "trailmark_retention_runs", "trailmark_retention_runs_total", outcome="ok") >= 1
        # Failing longer than --alert-after-secs: an incident (no --alert-webhook: nothing sent).
        assert value(families, "trailmark_alert_incidents_open", "trailmark_alert_incidents_open", kind="stream") == 1
        assert value(families, "trailmark_alert_incidents", "trailmark_alert_incidents_total", kind="stream") == 1
        return families

    families = wait_until(stream_failing)

    # Requests and rejections.
    assert value(families, "trailmark_http_requests", "trailmark_http_requests_total",
                 method="POST", route="/audit_logs/events", status="200") == 7
    assert value(families, "trailmark_rejections", "trailmark_rejections_total", reason="unauthorized") == 1
    assert value(families, "trailmark_rejections", "trailmark_rejections_total", reason="validation") == 1
    assert value(families, "trailmark_rejections", "trailmark_rejections_total", reason="not_found") == 1
    assert value(families, "trailmark_http_request_duration_seconds", "trailmark_http_request_duration_seconds_count",
                 route="/audit_logs/events/batch") == 1
    assert families["trailmark_http_request_duration_seconds"].type == "histogram"

    # Ingest and commits: the 11 events, Trailmark's records of the stream's and the export's
    # creation with the API key (trailmark.stream.created, trailmark.export.created), and the
    # alert incident's opening in Trailmark's own log (trailmark.alert.opened).
    assert value(families, "trailmark_events_ingested", "trailmark_events_ingested_total") == 14
    assert value(families, "trailmark_idempotent_replays", "trailmark_idempotent_replays_total") == 1
    assert value(families, "trailmark_store_commits", "trailmark_store_commits_total", outcome="committed") >= 7
    assert value(families, "trailmark_store_commit_events", "trailmark_store_commit_events_sum") == 14
    assert value(families, "trailmark_store_commit_events", "trailmark_store_commit_events_bucket", le="+Inf") >= 7
    assert value(families, "trailmark_store_commit_duration_seconds", "trailmark_store_commit_duration_seconds_count") >= 7
    assert value(families, "trailmark_store_fsync_duration_seconds", "trailmark_store_fsync_duration_seconds_sum") > 0
    assert value(families, "trailmark_store_pool_wait_duration_seconds", "trailmark_store_pool_wait_duration_seconds_count") >= 1
    assert value(families, "trailmark_store_pool_max_connections", "trailmark_store_pool_max_connections") >= 1
    assert value(families, "trailmark_store_pool_connections", "trailmark_store_pool_connections", state="in_use") >= 0

    # The stream (from now, after the record of its own creation): 9 events delivered, then 2 and
    # the record of the export waiting behind a failing destination.
    labels = {"stream_id": stream_id, "organization_id": organization, "type": "http"}
    assert value(families, "trailmark_stream_events_delivered", "trailmark_stream_events_delivered_total", **labels) == 9
    assert value(families, "trailmark_stream_requests", "trailmark_stream_requests_total",
                 stream_id=stream_id, outcome="delivered") >= 1
    assert value(families, "trailmark_stream_lag_events", "trailmark_stream_lag_events", **labels) == 3
    assert value(families, "trailmark_stream_lag_seconds", "trailmark_stream_lag_seconds", **labels) > 0
    assert value(families, "trailmark_stream_state", "trailmark_stream_state", state="active", **labels) == 0
    assert value(families, "trailmark_stream_request_duration_seconds", "trailmark_stream_request_duration_seconds_count",
                 type="http") >= 2

    # Background jobs.
    assert value(families, "trailmark_checkpoints_signed", "trailmark_checkpoints_signed_total", outcome="signed") >= 1
    assert value(families, "trailmark_checkpoint_signing_duration_seconds",
                 "trailmark_checkpoint_signing_duration_seconds_count") >= 1
    assert value(families, "trailmark_export_jobs", "trailmark_export_jobs_total", outcome="ready") == 1
    # The whole log: the 11 events, the record of the stream's creation and the export's own.
    assert value(families, "trailmark_export_events", "trailmark_export_events_total") == 13
    assert value(families, "trailmark_export_bytes", "trailmark_export_bytes_total") > 1000
    assert value(families, "trailmark_export_duration_seconds", "trailmark_export_duration_seconds_count") == 1
    assert value(families, "trailmark_retention_events_purged", "trailmark_retention_events_purged_total") == 0

    # The process and the build.
    assert families["trailmark_build"].type == "info"
    assert value(families, "trailmark_build", "trailmark_build_info", version=families["trailmark_build"].samples[0].labels["version"]) == 1
    assert abs(value(families, "process_start_time_seconds", "process_start_time_seconds") - time.time()) < 600
    assert value(families, "process_resident_memory_bytes", "process_resident_memory_bytes") > 1_000_000
    assert value(families, "process_open_fds", "process_open_fds") > 0
    assert value(families, "process_cpu_seconds", "process_cpu_seconds_total") > 0
    assert value(families, "process_max_fds", "process_max_fds") >= value(families, "process_open_fds", "process_open_fds")

    # A deleted stream leaves no series behind.
    assert server.request("DELETE", f"/audit_logs/streams/{stream_id}")[0] in (200, 204)

    def stream_gone():
        lag = scrape(server).get("trailmark_stream_lag_events")
        assert lag is None or not [s for s in lag.samples if s.labels.get("stream_id") == stream_id]

    wait_until(stream_gone)
