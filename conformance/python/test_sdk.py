"""The official WorkOS Python SDK (PyPI `workos` 10.x), unchanged, against a real Trailmark.

Each test names the section of shared/reference/workos-wire.md it checks. SDK calls show that
the package works as shipped; the raw HTTP calls (`raw` fixture) pin what is on the wire where
the SDK would hide it (status codes, error bodies, headers, Trailmark's event receipt).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from workos import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    UnprocessableEntityError,
    WorkOSClient,
)
from workos.audit_logs import RetentionPeriod, RetentionPeriodInDays
from workos.audit_logs.models import (
    AuditLogEvent,
    AuditLogEventActor,
    AuditLogEventContext,
    AuditLogEventCreateResponse,
    AuditLogEventTarget,
    AuditLogSchemaActor,
    AuditLogSchemaTarget,
)
from workos.common.models.organization_domain_data_state import OrganizationDomainDataState
from workos.common.models.update_audit_logs_retention_retention_period import (
    UpdateAuditLogsRetentionRetentionPeriod,
)
from workos.organizations.models.organization_domain_data import OrganizationDomainData

from conftest import Raw, RawResponse, make_client

ACTION = "user.signed_in"
TEAM_METADATA_SCHEMA = {"type": "object", "properties": {"plan": {"type": "string"}}}
ACTOR_METADATA_SCHEMA = {"type": "object", "properties": {"role": {"type": "string"}}}
EVENT_METADATA_SCHEMA_V1 = {"type": "object", "properties": {"method": {"type": "string"}}}
# Differs from v1 only by an extra optional property, so the events below are valid against
# either version and the tests do not depend on which version an event without `version` uses.
EVENT_METADATA_SCHEMA_V2 = {
    "type": "object",
    "properties": {"method": {"type": "string"}, "mfa": {"type": "boolean"}},
}
# A well-formed org id (prefix + 26-char ULID) that no test ever creates.
UNKNOWN_ORG = "org_01HZZZZZZZZZZZZZZZZZZZZZZZ"
# §2 / SPEC §2: timestamps out are YYYY-MM-DDTHH:MM:SS.mmmZ.
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


# ---------------------------------------------------------------------------------------------
# helpers and shared state
# ---------------------------------------------------------------------------------------------


def create_signed_in_schema(client: WorkOSClient, event_metadata: dict[str, Any]):
    return client.audit_logs.create_schema(
        ACTION,
        targets=[AuditLogSchemaTarget(type="team", metadata=TEAM_METADATA_SCHEMA)],
        actor=AuditLogSchemaActor(metadata=ACTOR_METADATA_SCHEMA),
        metadata=event_metadata,
    )


@pytest.fixture(scope="session")
def signed_in_schemas(client: WorkOSClient) -> SimpleNamespace:
    """Creates v1, re-posts v1 unchanged, then posts a different schema (v2). §2.4, §11."""
    first = create_signed_in_schema(client, EVENT_METADATA_SCHEMA_V1)
    again = create_signed_in_schema(client, EVENT_METADATA_SCHEMA_V1)
    second = create_signed_in_schema(client, EVENT_METADATA_SCHEMA_V2)
    return SimpleNamespace(first=first, again=again, second=second)


@pytest.fixture(scope="session")
def shared_org(client: WorkOSClient):
    suffix = secrets.token_hex(4)
    return client.organizations.create_organization(name=f"Shared {suffix}")


def sdk_event(**overrides: Any) -> AuditLogEvent:
    fields: dict[str, Any] = dict(
        action=ACTION,
        occurred_at=datetime.now(timezone.utc),
        actor=AuditLogEventActor(
            id="user_01", type="user", name="Jon Smith", metadata={"role": "admin"}
        ),
        targets=[AuditLogEventTarget(id="team_01", type="team", metadata={"plan": "pro"})],
        context=AuditLogEventContext(location="192.0.2.8", user_agent="conformance/1.0"),
        metadata={"method": "password"},
    )
    fields.update(overrides)
    return AuditLogEvent(**fields)


def raw_event(occurred_at: str | None = None, **overrides: Any) -> dict[str, Any]:
    if occurred_at is None:
        occurred_at = (
            datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
    event: dict[str, Any] = {
        "action": ACTION,
        "occurred_at": occurred_at,
        "actor": {"id": "user_01", "type": "user", "name": "Jon Smith", "metadata": {"role": "admin"}},
        "targets": [{"id": "team_01", "type": "team", "metadata": {"plan": "pro"}}],
        "context": {"location": "192.0.2.8", "user_agent": "conformance/1.0"},
        "metadata": {"method": "password"},
    }
    event.update(overrides)
    return event


class _EventWithoutActorId:
    """What a caller can hand the SDK when building the event by hand: `create_event` only calls
    `event.to_dict()`, so an event without `actor.id` goes out as is (no local validation)."""

    def to_dict(self) -> dict[str, Any]:
        event = raw_event()
        del event["actor"]["id"]
        return event


def idem_key() -> str:
    return f"conformance-{uuid.uuid4()}"


def assert_json_error(resp, status: int) -> dict[str, Any]:
    assert resp.status == status, resp.describe()
    assert resp.content_type.startswith("application/json"), resp.describe()
    body = resp.json()
    assert isinstance(body, dict), resp.describe()
    assert isinstance(body.get("message"), str) and body["message"], resp.describe()
    return body


def code_field(errors: Any) -> list[dict[str, Any]]:
    """The `code`/`field` part of 422 error items. Extra keys in an item (e.g. a per-item
    `message`) are allowed: every SDK ignores them."""
    if not isinstance(errors, list):
        return []
    return [{"code": e.get("code"), "field": e.get("field")} for e in errors if isinstance(e, dict)]


def bounded(iterator, limit: int = 2000) -> list:
    """Drain an SDK auto-paging iterator, failing instead of looping forever on a bad cursor."""
    items = []
    for item in iterator:
        items.append(item)
        assert len(items) <= limit, "auto-pagination did not stop (list_metadata.after never null?)"
    return items


# ---------------------------------------------------------------------------------------------
# 1. Organizations (§4)
# ---------------------------------------------------------------------------------------------


def test_create_organization_with_domain_data(client: WorkOSClient):
    suffix = secrets.token_hex(4)
    domain = f"acme-{suffix}.example.com"
    org = client.organizations.create_organization(
        name=f"Acme {suffix}",
        domain_data=[OrganizationDomainData(domain=domain, state=OrganizationDomainDataState.VERIFIED)],
    )
    assert org.object == "organization"
    assert org.id.startswith("org_")
    assert org.name == f"Acme {suffix}"
    assert [d.domain for d in org.domains] == [domain]
    assert org.domains[0].organization_id == org.id
    assert org.domains[0].id
    assert org.metadata == {}
    assert org.external_id is None
    assert org.created_at.tzinfo is not None


def test_get_organization(client: WorkOSClient, org):
    got = client.organizations.get_organization(org.id)
    assert got.id == org.id
    assert got.name == org.name
    assert [d.domain for d in got.domains] == [d.domain for d in org.domains]
    assert got.created_at == org.created_at


def test_list_organizations_includes_created(client: WorkOSClient, org):
    page = client.organizations.list_organizations()
    ids = [o.id for o in bounded(page.auto_paging_iter())]
    assert org.id in ids
    assert ids.count(org.id) == 1


def test_get_organization_by_external_id(client: WorkOSClient):
    external_id = f"ext-{secrets.token_hex(6)}"
    org = client.organizations.create_organization(name="External Inc", external_id=external_id)
    assert org.external_id == external_id
    found = client.organizations.get_organization_by_external_id(external_id)
    assert found.id == org.id
    assert found.external_id == external_id
    with pytest.raises(NotFoundError) as exc:
        client.organizations.get_organization_by_external_id(f"ext-missing-{secrets.token_hex(6)}")
    assert exc.value.status_code == 404


def test_get_unknown_organization_is_not_found(client: WorkOSClient):
    with pytest.raises(NotFoundError) as exc:
        client.organizations.get_organization(UNKNOWN_ORG)
    assert exc.value.status_code == 404
    assert exc.value.request_id


def test_organization_wire_shape(raw: Raw):
    """§4 / §9 item 8: POST /organizations is 201 with every key any SDK requires."""
    suffix = secrets.token_hex(4)
    resp = raw.post(
        "/organizations",
        {"name": f"Raw {suffix}", "domain_data": [{"domain": f"raw-{suffix}.example.com", "state": "pending"}]},
    )
    assert resp.status == 201, resp.describe()
    body = resp.json()
    for key in (
        "object", "id", "name", "domains", "metadata", "external_id",
        "allow_profiles_outside_organization", "created_at", "updated_at",
    ):
        assert key in body, f"missing {key!r}: {resp.describe()}"
    assert body["object"] == "organization"
    assert body["metadata"] == {}
    assert body["external_id"] is None
    assert isinstance(body["allow_profiles_outside_organization"], bool)
    assert TIMESTAMP_RE.match(body["created_at"]), body["created_at"]
    assert TIMESTAMP_RE.match(body["updated_at"]), body["updated_at"]
    (domain,) = body["domains"]
    for key in ("object", "id", "organization_id", "domain", "created_at", "updated_at"):
        assert key in domain, f"domain item missing {key!r}: {resp.describe()}"
    assert domain["object"] == "organization_domain"
    assert domain["organization_id"] == body["id"]
    assert domain["domain"] == f"raw-{suffix}.example.com"


def test_list_envelope(raw: Raw, shared_org):
    """§4: list envelope with object "list" and list_metadata.before/after (keys present)."""
    resp = raw.get("/organizations?limit=1")
    assert resp.status == 200, resp.describe()
    body = resp.json()
    assert body.get("object") == "list", resp.describe()
    assert isinstance(body.get("data"), list) and len(body["data"]) == 1, resp.describe()
    meta = body.get("list_metadata")
    assert isinstance(meta, dict) and "before" in meta and "after" in meta, resp.describe()


# ---------------------------------------------------------------------------------------------
# 2. Schemas and actions (§2.4, §2.5, §2.6, §11)
# ---------------------------------------------------------------------------------------------


def test_create_schema_first_version(signed_in_schemas):
    s = signed_in_schemas.first
    assert s.object == "audit_log_schema"
    assert s.version == 1
    assert [t.type for t in s.targets] == ["team"]
    # §2.4: the server stores and echoes arbitrary JSON Schema objects.
    assert s.targets[0].metadata == TEAM_METADATA_SCHEMA
    assert s.actor is not None and s.actor.metadata == ACTOR_METADATA_SCHEMA
    assert s.metadata == EVENT_METADATA_SCHEMA_V1
    assert s.created_at.tzinfo is not None


def test_create_identical_schema_returns_same_version(signed_in_schemas):
    """§11: posting the latest schema again returns it; it does not create version 2."""
    assert signed_in_schemas.again.version == 1
    assert signed_in_schemas.again.metadata == EVENT_METADATA_SCHEMA_V1


def test_create_different_schema_creates_next_version(signed_in_schemas):
    s = signed_in_schemas.second
    assert s.version == 2
    assert s.metadata == EVENT_METADATA_SCHEMA_V2
    assert [t.type for t in s.targets] == ["team"]


def test_list_action_schemas_returns_both_versions(client: WorkOSClient, signed_in_schemas):
    page = client.audit_logs.list_action_schemas(ACTION)
    schemas = bounded(page.auto_paging_iter())
    # The SDK sends order=desc (§2.5): newest version first.
    assert [s.version for s in schemas] == [2, 1]
    by_version = {s.version: s for s in schemas}
    assert by_version[1].metadata == EVENT_METADATA_SCHEMA_V1
    assert by_version[2].metadata == EVENT_METADATA_SCHEMA_V2


def test_list_actions_embeds_latest_schema(client: WorkOSClient, signed_in_schemas):
    actions = bounded(client.audit_logs.list_actions().auto_paging_iter())
    matching = [a for a in actions if a.name == ACTION]
    assert len(matching) == 1, [a.name for a in actions]
    action = matching[0]
    assert action.object == "audit_log_action"
    assert action.schema.version == 2
    assert action.schema.metadata == EVENT_METADATA_SCHEMA_V2
    assert [t.type for t in action.schema.targets] == ["team"]
    assert action.created_at.tzinfo is not None
    assert action.updated_at >= action.created_at


def test_schema_and_action_wire_shape(raw: Raw, signed_in_schemas):
    """§2.4-§2.6 and §2: list envelopes and millisecond-Z timestamps on schemas and actions."""
    resp = raw.get(f"/audit_logs/actions/{ACTION}/schemas")
    assert resp.status == 200, resp.describe()
    body = resp.json()
    assert body.get("object") == "list", resp.describe()
    assert "before" in body["list_metadata"] and "after" in body["list_metadata"], resp.describe()
    for schema in body["data"]:
        assert schema["object"] == "audit_log_schema"
        assert TIMESTAMP_RE.match(schema["created_at"]), schema["created_at"]

    resp = raw.get("/audit_logs/actions?limit=100")
    assert resp.status == 200, resp.describe()
    body = resp.json()
    assert body.get("object") == "list", resp.describe()
    (action,) = [a for a in body["data"] if a.get("name") == ACTION]
    for key in ("object", "name", "schema", "created_at", "updated_at"):
        assert key in action, f"missing {key!r}: {action}"
    assert TIMESTAMP_RE.match(action["created_at"]), action["created_at"]
    assert TIMESTAMP_RE.match(action["updated_at"]), action["updated_at"]


def test_create_schema_raw_status(raw: Raw):
    """§2.4: creating a new schema answers 201 with an audit_log_schema object."""
    action = f"conformance.raw_{secrets.token_hex(3)}"
    resp = raw.post(f"/audit_logs/actions/{action}/schemas", {"targets": [{"type": "document"}]})
    assert resp.status == 201, resp.describe()
    body = resp.json()
    assert body["object"] == "audit_log_schema"
    assert body["version"] == 1
    assert [t["type"] for t in body["targets"]] == ["document"], resp.describe()
    assert TIMESTAMP_RE.match(body["created_at"]), resp.describe()


# ---------------------------------------------------------------------------------------------
# 3. Events (§2.1)
# ---------------------------------------------------------------------------------------------


def test_create_event(client: WorkOSClient, org, signed_in_schemas):
    result = client.audit_logs.create_event(organization_id=org.id, event=sdk_event())
    assert isinstance(result, AuditLogEventCreateResponse)
    assert result.success is True


def test_create_event_with_an_empty_location_as_the_tutorial_sends_it(
    client: WorkOSClient, raw: Raw, org, signed_in_schemas
):
    """The tutorial's middleware sends `req.headers['x-forwarded-for'] ?? ''`: empty locally."""
    result = client.audit_logs.create_event(
        organization_id=org.id,
        event=sdk_event(context=AuditLogEventContext(location="", user_agent="conformance/1.0")),
    )
    assert result.success is True
    found = raw.request("GET", f"/audit_logs/events?organization_id={org.id}")
    assert found.status == 200
    assert [e["context"]["location"] for e in found.json()["data"]] == [""]


def test_create_event_with_non_utc_datetime(client: WorkOSClient, org, signed_in_schemas):
    plus_two = timezone(timedelta(hours=2))
    event = sdk_event(occurred_at=datetime.now(plus_two))
    result = client.audit_logs.create_event(organization_id=org.id, event=event)
    assert result.success is True


def test_create_event_with_idempotency_key_twice(client: WorkOSClient, org, signed_in_schemas):
    event = sdk_event()
    first = client.audit_logs.create_event(organization_id=org.id, event=event, idempotency_key="k1")
    second = client.audit_logs.create_event(organization_id=org.id, event=event, idempotency_key="k1")
    assert first.success is True
    assert second.success is True


def test_idempotent_replay_raw(raw: Raw, org, signed_in_schemas):
    """§2.1: same Idempotency-Key and body → the same response; SPEC §4.1: the receipt."""
    key = idem_key()
    body = {"organization_id": org.id, "event": raw_event()}
    r1 = raw.post("/audit_logs/events", body, headers={"Idempotency-Key": key})
    r2 = raw.post("/audit_logs/events", body, headers={"Idempotency-Key": key})
    assert r1.status == 200, r1.describe()
    assert r2.status == 200, r2.describe()
    b1, b2 = r1.json(), r2.json()
    assert b1 == b2, f"replay differs:\n{r1.describe()}\n{r2.describe()}"
    assert b1.get("success") is True, r1.describe()
    assert isinstance(b1.get("id"), str) and b1["id"].startswith("event_"), r1.describe()
    seq = b1.get("sequence")
    assert isinstance(seq, int) and not isinstance(seq, bool), r1.describe()


def test_different_idempotency_keys_give_different_events(raw: Raw, org, signed_in_schemas):
    """Two different keys with distinct events are two events (ids and sequences differ)."""
    r1 = raw.post("/audit_logs/events", {"organization_id": org.id, "event": raw_event()},
                  headers={"Idempotency-Key": idem_key()})
    r2 = raw.post("/audit_logs/events",
                  {"organization_id": org.id, "event": raw_event(metadata={"method": "sso"})},
                  headers={"Idempotency-Key": idem_key()})
    assert r1.status == 200, r1.describe()
    assert r2.status == 200, r2.describe()
    b1, b2 = r1.json(), r2.json()
    assert b1["id"] != b2["id"]
    assert b2["sequence"] > b1["sequence"]


def _occurred_at(form: str) -> str:
    # A minute ago, so the instant is recent whatever the server's rules on old or future events.
    now = (datetime.now(timezone.utc) - timedelta(minutes=1)).replace(microsecond=123000)
    if form == "zulu":  # 2026-08-01T10:00:00.123Z
        return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if form == "offset":  # 2026-08-01T12:00:00.123+02:00
        return now.astimezone(timezone(timedelta(hours=2))).isoformat(timespec="milliseconds")
    # 2026-08-01T10:00:00.123 (what naive datetimes give in older Python SDKs)
    return now.replace(tzinfo=None).isoformat(timespec="milliseconds")


@pytest.mark.parametrize("form", ["zulu", "offset", "no-offset"])
def test_occurred_at_forms_accepted(raw: Raw, org, signed_in_schemas, form: str):
    """§2.1: the server accepts any ISO-8601 date-time: Z, ±HH:MM and no offset."""
    occurred_at = _occurred_at(form)
    resp = raw.post(
        "/audit_logs/events",
        {"organization_id": org.id, "event": raw_event(occurred_at=occurred_at)},
        headers={"Idempotency-Key": idem_key()},
    )
    assert resp.status == 200, resp.describe()
    assert resp.json().get("success") is True, resp.describe()


# ---------------------------------------------------------------------------------------------
# 4. Errors and the SDK's exception mapping (§2.1, §5)
# ---------------------------------------------------------------------------------------------


def test_target_type_not_in_schema_is_bad_request(client: WorkOSClient, org, signed_in_schemas):
    event = sdk_event(targets=[AuditLogEventTarget(id="doc_01", type="document")])
    with pytest.raises(BadRequestError) as exc:
        client.audit_logs.create_event(organization_id=org.id, event=event)
    err = exc.value
    assert err.status_code == 400
    assert err.code == "invalid_audit_log_event"
    assert isinstance(err.errors, list) and err.errors, err.response_json
    assert all("instancePath" in item for item in err.errors), err.response_json
    assert any(str(item["instancePath"]).startswith("/targets") for item in err.errors), err.response_json
    assert err.request_id


def test_target_type_not_in_schema_raw_body(raw: Raw, org, signed_in_schemas):
    event = raw_event(targets=[{"id": "doc_01", "type": "document"}])
    resp = raw.post("/audit_logs/events", {"organization_id": org.id, "event": event},
                    headers={"Idempotency-Key": idem_key()})
    body = assert_json_error(resp, 400)
    assert body.get("code") == "invalid_audit_log_event", resp.describe()
    assert isinstance(body.get("errors"), list) and body["errors"], resp.describe()
    for item in body["errors"]:
        assert isinstance(item.get("instancePath"), str), resp.describe()
    assert "error" not in body, "§9.5: no `error` key (Node maps it to OauthException)"


def test_missing_actor_id_via_sdk_is_unprocessable(client: WorkOSClient, org, signed_in_schemas):
    with pytest.raises(UnprocessableEntityError) as exc:
        client.audit_logs.create_event(organization_id=org.id, event=_EventWithoutActorId())  # type: ignore[arg-type]
    err = exc.value
    assert err.status_code == 422
    assert {"code": "required", "field": "event.actor.id"} in code_field(err.errors), err.response_json


def test_null_actor_id_model_is_unprocessable(client: WorkOSClient, org, signed_in_schemas):
    """The SDK's dataclass does not check types: actor id None goes out as `"id": null`."""
    event = sdk_event(actor=AuditLogEventActor(id=None, type="user"))  # type: ignore[arg-type]
    with pytest.raises(UnprocessableEntityError) as exc:
        client.audit_logs.create_event(organization_id=org.id, event=event)
    fields = [item.get("field") for item in (exc.value.errors or [])]
    assert "event.actor.id" in fields, exc.value.response_json


def test_missing_actor_id_raw_body(raw: Raw, org, signed_in_schemas):
    event = raw_event()
    del event["actor"]["id"]
    resp = raw.post("/audit_logs/events", {"organization_id": org.id, "event": event},
                    headers={"Idempotency-Key": idem_key()})
    body = assert_json_error(resp, 422)
    assert code_field(body.get("errors")) == [{"code": "required", "field": "event.actor.id"}], (
        resp.describe()
    )


@pytest.mark.parametrize(
    "path,field",
    [
        (("action",), "event.action"),
        (("occurred_at",), "event.occurred_at"),
        (("actor", "type"), "event.actor.type"),
        (("context", "location"), "event.context.location"),
    ],
)
def test_other_missing_required_fields_raw(raw: Raw, org, signed_in_schemas, path, field):
    """§6: required event fields; a missing one is a 422 naming it."""
    event = raw_event()
    parent = event
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    resp = raw.post("/audit_logs/events", {"organization_id": org.id, "event": event},
                    headers={"Idempotency-Key": idem_key()})
    body = assert_json_error(resp, 422)
    assert {"code": "required", "field": field} in code_field(body.get("errors")), resp.describe()


def test_unknown_organization_is_not_found(client: WorkOSClient, signed_in_schemas):
    with pytest.raises(NotFoundError) as exc:
        client.audit_logs.create_event(organization_id=UNKNOWN_ORG, event=sdk_event())
    assert exc.value.status_code == 404
    assert UNKNOWN_ORG in exc.value.message, exc.value.response_json


def test_wrong_api_key_is_authentication_error(server, signed_in_schemas, shared_org):
    bad = make_client(server, api_key="sk_test_definitely_not_the_key")
    with pytest.raises(AuthenticationError) as exc:
        bad.organizations.list_organizations()
    assert exc.value.status_code == 401
    assert exc.value.request_id
    with pytest.raises(AuthenticationError):
        bad.audit_logs.create_event(organization_id=shared_org.id, event=sdk_event())


def test_missing_authorization_is_401_json(raw: Raw):
    assert_json_error(raw.get("/organizations", auth=False), 401)


# ---------------------------------------------------------------------------------------------
# 5. Retention (§2.7, §11)
# ---------------------------------------------------------------------------------------------


def test_retention_never_set_is_null(client: WorkOSClient, org):
    r = client.audit_logs.get_organization_audit_logs_retention(org.id)
    assert r.retention_period_in_days is None


def test_retention_never_set_raw_has_key(raw: Raw, org):
    resp = raw.get(f"/organizations/{org.id}/audit_logs_retention")
    assert resp.status == 200, resp.describe()
    body = resp.json()
    assert "retention_period_in_days" in body, resp.describe()
    assert body["retention_period_in_days"] is None, resp.describe()


def test_update_retention_with_period(client: WorkOSClient, org):
    r = client.audit_logs.update_organization_audit_logs_retention(
        org.id, retention=RetentionPeriod(UpdateAuditLogsRetentionRetentionPeriod.VALUE_1_YEAR)
    )
    assert r.retention_period_in_days == 365
    got = client.audit_logs.get_organization_audit_logs_retention(org.id)
    assert got.retention_period_in_days == 365


@pytest.mark.parametrize(
    "period,days",
    [("1_MONTH", 30), ("2_MONTHS", 60), ("11_MONTHS", 330), ("2_YEARS", 730), ("10_YEARS", 3650)],
)
def test_update_retention_period_values(client: WorkOSClient, org, period: str, days: int):
    r = client.audit_logs.update_organization_audit_logs_retention(
        org.id, retention=RetentionPeriod(period)
    )
    assert r.retention_period_in_days == days


def test_update_retention_in_days(client: WorkOSClient, org):
    r = client.audit_logs.update_organization_audit_logs_retention(
        org.id, retention=RetentionPeriodInDays(30)
    )
    assert r.retention_period_in_days == 30
    got = client.audit_logs.get_organization_audit_logs_retention(org.id)
    assert got.retention_period_in_days == 30


@pytest.mark.parametrize(
    "body",
    [
        {"retention_period_in_days": 31},
        {"retention_period_in_days": 400},
        {"retention_period": "13_MONTHS"},
        {"retention_period": "1_YEAR", "retention_period_in_days": 365},
        {},
    ],
    ids=["days-31", "days-400", "period-13-months", "both-forms", "empty"],
)
def test_invalid_retention_is_422(raw: Raw, client: WorkOSClient, org, body):
    client.audit_logs.update_organization_audit_logs_retention(
        org.id, retention=RetentionPeriodInDays(60)
    )
    resp = raw.put(f"/organizations/{org.id}/audit_logs_retention", body)
    assert_json_error(resp, 422)
    # A refused update changes nothing.
    got = client.audit_logs.get_organization_audit_logs_retention(org.id)
    assert got.retention_period_in_days == 60


def test_invalid_retention_via_sdk_is_unprocessable(client: WorkOSClient, org):
    with pytest.raises(UnprocessableEntityError):
        client.audit_logs.update_organization_audit_logs_retention(
            org.id, retention=RetentionPeriodInDays(31)
        )


def test_retention_unknown_org_is_not_found(client: WorkOSClient):
    with pytest.raises(NotFoundError):
        client.audit_logs.get_organization_audit_logs_retention(UNKNOWN_ORG)
    with pytest.raises(NotFoundError):
        client.audit_logs.update_organization_audit_logs_retention(
            UNKNOWN_ORG, retention=RetentionPeriodInDays(30)
        )


# ---------------------------------------------------------------------------------------------
# 6. Audit log configuration (§2.8)
# ---------------------------------------------------------------------------------------------


def test_audit_log_configuration_via_sdk(client: WorkOSClient, org):
    client.audit_logs.update_organization_audit_logs_retention(
        org.id, retention=RetentionPeriodInDays(30)
    )
    cfg = client.organizations.get_audit_log_configuration(org.id)
    assert cfg.organization_id == org.id
    assert cfg.retention_period_in_days == 30
    assert getattr(cfg.state, "value", cfg.state) in {"active", "inactive", "disabled"}


def test_audit_log_configuration_raw(raw: Raw, org):
    resp = raw.get(f"/organizations/{org.id}/audit_log_configuration")
    assert resp.status == 200, resp.describe()
    body = resp.json()
    for key in ("organization_id", "retention_period_in_days", "state"):
        assert key in body, f"missing {key!r}: {resp.describe()}"
    assert body["organization_id"] == org.id
    assert body["state"] in {"active", "inactive", "disabled"}, resp.describe()


def test_audit_log_configuration_unknown_org(client: WorkOSClient):
    with pytest.raises(NotFoundError):
        client.organizations.get_audit_log_configuration(UNKNOWN_ORG)


# ---------------------------------------------------------------------------------------------
# 7. Headers on every response (§2, §5)
# ---------------------------------------------------------------------------------------------


def _header_cases():
    def ev(org_id, **kw):
        return {"organization_id": org_id, "event": raw_event(**kw)}

    def export_body(org_id, range_start, range_end):
        return {"organization_id": org_id, "range_start": range_start, "range_end": range_end}

    def missing_actor(org_id):
        body = ev(org_id)
        del body["event"]["actor"]["id"]
        return body

    return [
        ("list-organizations", lambda r, o: r.get("/organizations"), 200),
        ("get-organization", lambda r, o: r.get(f"/organizations/{o}"), 200),
        ("unknown-organization", lambda r, o: r.get(f"/organizations/{UNKNOWN_ORG}"), 404),
        ("no-authorization", lambda r, o: r.get("/organizations", auth=False), 401),
        ("wrong-key", lambda r, o: r.get("/organizations", api_key="sk_test_wrong"), 401),
        ("unknown-route", lambda r, o: r.get("/no/such/route"), 404),
        ("create-event", lambda r, o: r.post("/audit_logs/events", ev(o), headers={"Idempotency-Key": idem_key()}), 200),
        ("event-unknown-org", lambda r, o: r.post("/audit_logs/events", ev(UNKNOWN_ORG), headers={"Idempotency-Key": idem_key()}), 404),
        ("event-bad-target", lambda r, o: r.post("/audit_logs/events", ev(o, targets=[{"id": "d", "type": "document"}]), headers={"Idempotency-Key": idem_key()}), 400),
        ("event-missing-field", lambda r, o: r.post("/audit_logs/events", missing_actor(o), headers={"Idempotency-Key": idem_key()}), 422),
        ("event-malformed-json", lambda r, o: r.post("/audit_logs/events", data=b"{not json", headers={"Idempotency-Key": idem_key()}), "4xx"),
        ("wrong-method", lambda r, o: r.request("DELETE", "/audit_logs/events"), "4xx"),
        ("get-retention", lambda r, o: r.get(f"/organizations/{o}/audit_logs_retention"), 200),
        ("invalid-retention", lambda r, o: r.put(f"/organizations/{o}/audit_logs_retention", {"retention_period_in_days": 31}), 422),
        ("list-actions", lambda r, o: r.get("/audit_logs/actions"), 200),
        ("list-schemas", lambda r, o: r.get(f"/audit_logs/actions/{ACTION}/schemas"), 200),
        ("audit-log-configuration", lambda r, o: r.get(f"/organizations/{o}/audit_log_configuration"), 200),
        ("create-export", lambda r, o: r.post("/audit_logs/exports", export_body(o, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")), 201),
        ("export-inverted-range", lambda r, o: r.post("/audit_logs/exports", export_body(o, "2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z")), 400),
        ("unknown-export", lambda r, o: r.get(f"/audit_logs/exports/{UNKNOWN_EXPORT}"), 404),
        ("search-events", lambda r, o: r.get(f"/audit_logs/events?organization_id={o}&order=asc&limit=100"), 200),
    ]


@pytest.mark.parametrize("name,call,expected", _header_cases(), ids=[c[0] for c in _header_cases()])
def test_json_content_type_and_request_id(raw: Raw, shared_org, signed_in_schemas, name, call, expected):
    resp = call(raw, shared_org.id)
    if expected == "4xx":
        assert 400 <= resp.status < 500, resp.describe()
    else:
        assert resp.status == expected, resp.describe()
    assert resp.content_type.split(";")[0].strip() == "application/json", resp.describe()
    assert resp.request_id, f"no X-Request-ID header: {resp.describe()}"
    body = resp.json()
    if resp.status >= 400:
        assert isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"], (
            resp.describe()
        )
        assert "error" not in body, f"§9.5: no `error` key in error bodies: {resp.describe()}"


def test_request_ids_are_distinct(raw: Raw):
    ids = {raw.get("/organizations").request_id for _ in range(3)}
    assert len(ids) == 3, ids


# ---------------------------------------------------------------------------------------------
# 8. Exports (§2.2, §2.3, §8)
# ---------------------------------------------------------------------------------------------

# Trailmark's CSV layout (§8 leaves the layout to the server; this is the one Trailmark documents).
EXPORT_COLUMNS = [
    "id", "organization_id", "sequence", "occurred_at", "received_at", "action", "version",
    "actor_id", "actor_type", "actor_name", "actor_metadata", "targets", "location",
    "user_agent", "metadata",
]
# Columns holding compact JSON: compared parsed, since the server may order keys its own way.
EXPORT_JSON_COLUMNS = {"actor_metadata", "targets", "metadata"}
EXPORT_READY_TIMEOUT_S = 10.0
UNKNOWN_EXPORT = "audit_log_export_01HZZZZZZZZZZZZZZZZZZZZZZZ"

EXPORT_ACTORS = [
    AuditLogEventActor(id="user_alice", type="user", name="Alice Example", metadata={"role": "admin"}),
    # A comma: the CSV cell must be quoted, and the name filter must match it whole.
    AuditLogEventActor(id="user_bob", type="user", name="Smith, Bob", metadata={"role": "member"}),
    # A formula: the CSV cell must start with `'`; the quotes inside must be doubled.
    AuditLogEventActor(
        id="user_formula", type="user", name='=HYPERLINK("https://evil.test","x")',
        metadata={"role": "guest"},
    ),
]


def spreadsheet_safe(value: str) -> str:
    """What a CSV cell must hold for `value`: a leading `'` defuses spreadsheet formulas."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def download(url: str) -> RawResponse:
    """GET a signed export link with plain urllib: no Authorization header, no SDK."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url), timeout=30) as resp:
            return RawResponse(resp.status, resp.headers, resp.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        return RawResponse(e.code, e.headers, e.read().decode("utf-8", errors="replace"))


def wait_for_export(client: WorkOSClient, export_id: str):
    """Polls `get_export` until the export leaves `pending`; fails after 10 s or on any final
    state but `ready`."""
    deadline = time.monotonic() + EXPORT_READY_TIMEOUT_S
    while True:
        export = client.audit_logs.get_export(export_id)
        state = getattr(export.state, "value", export.state)
        if state != "pending":
            break
        if time.monotonic() > deadline:
            pytest.fail(f"export {export_id} still pending after {EXPORT_READY_TIMEOUT_S:.0f}s: {export}")
        time.sleep(0.1)
    assert state == "ready", f"export {export_id} ended in state {state!r}: {export}"
    return export


def parse_export_csv(resp: RawResponse) -> list[dict[str, str]]:
    """The rows of a CSV download as dicts, after checking the header and RFC 4180 framing."""
    assert resp.status == 200, resp.describe()
    text = resp.text
    # The csv module reads LF and CRLF alike, so CRLF is checked by hand (no cell here
    # contains a line break, so every LF must end a record).
    assert text.endswith("\r\n"), f"the last record must end with CRLF: {text[-80:]!r}"
    assert text.count("\n") == text.count("\r\n"), f"records must end with CRLF, not LF: {text[:300]!r}"
    header, *records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    assert header == EXPORT_COLUMNS, "CSV header row"
    for record in records:
        assert len(record) == len(EXPORT_COLUMNS), f"every record has {len(EXPORT_COLUMNS)} fields: {record}"
    return [dict(zip(EXPORT_COLUMNS, record)) for record in records]


def export_csv(client: WorkOSClient, **options: Any) -> SimpleNamespace:
    """create_export through the SDK, wait until ready, download, parse."""
    created = client.audit_logs.create_export(**options)
    ready = wait_for_export(client, created.id)
    resp = download(ready.url)
    return SimpleNamespace(created=created, ready=ready, resp=resp, rows=parse_export_csv(resp))


def search_events(raw: Raw, org_id: str) -> list[dict[str, Any]]:
    """Every event of `org_id` from the search API, oldest first (the seed fits one page)."""
    resp = raw.get(f"/audit_logs/events?organization_id={org_id}&order=asc&limit=100")
    assert resp.status == 200, resp.describe()
    body = resp.json()
    assert body.get("object") == "list", resp.describe()
    assert (body.get("list_metadata") or {}).get("after") is None, resp.describe()
    return body["data"]


@pytest.fixture(scope="module")
def export_seed(client: WorkOSClient, raw: Raw, signed_in_schemas) -> SimpleNamespace:
    """One organization with 15 events inside [range_start, range_end], sent with the SDK,
    plus one before and one after the range (and one in another organization inside it) that
    no export may contain. occurred_at is deliberately not in send order, so log (sequence)
    order and time order differ and the export's order is observable."""
    suffix = secrets.token_hex(4)
    org = client.organizations.create_organization(name=f"Exports {suffix}")
    other = client.organizations.create_organization(name=f"Exports elsewhere {suffix}")
    base = (datetime.now(timezone.utc) - timedelta(hours=2)).replace(second=0, microsecond=0)
    range_start, range_end = base, base + timedelta(minutes=20)

    in_range: list[AuditLogEvent] = []
    for i in range(15):
        common: dict[str, Any] = dict(
            # minutes 1..15 in a permuted order, with distinct milliseconds
            occurred_at=base + timedelta(minutes=1 + (i * 7) % 15, milliseconds=100 + i),
            actor=EXPORT_ACTORS[i % 3],
            context=AuditLogEventContext(location=f"198.51.100.{i + 1}", user_agent=f"conformance-python/{i}"),
        )
        kind = (i // 3) % 3
        if kind == 0:  # user.signed_in has schemas v1 and v2 (signed_in_schemas): valid v2 data
            event = AuditLogEvent(
                action=ACTION, version=2,
                targets=[AuditLogEventTarget(id="team_01", type="team", metadata={"plan": "pro"})],
                metadata={"method": f"sso-{i}", "mfa": i % 2 == 0}, **common,
            )
        elif kind == 1:
            event = AuditLogEvent(
                action="user.signed_out",
                targets=[AuditLogEventTarget(id="team_01", type="team")],
                metadata={"reason": "logout", "n": i}, **common,
            )
        else:
            event = AuditLogEvent(
                action="document.exported",
                targets=[AuditLogEventTarget(id=f"doc_{i}", type="document", name='Q3, "final"')],
                metadata={"format": "pdf", "pages": i, "signed": True}, **common,
            )
        in_range.append(event)

    def outside(occurred_at: datetime) -> AuditLogEvent:
        return AuditLogEvent(
            action="user.signed_out", occurred_at=occurred_at, actor=EXPORT_ACTORS[1],
            targets=[AuditLogEventTarget(id="team_01", type="team")],
            context=AuditLogEventContext(location="198.51.100.200"), metadata={"reason": "outside"},
        )

    # The out-of-range events go in the middle, so their sequences sit between exported ones.
    for k, event in enumerate(in_range):
        client.audit_logs.create_event(organization_id=org.id, event=event)
        if k == 5:
            client.audit_logs.create_event(organization_id=org.id, event=outside(base - timedelta(minutes=30)))
        if k == 10:
            client.audit_logs.create_event(organization_id=org.id, event=outside(base + timedelta(minutes=25)))
    client.audit_logs.create_event(
        organization_id=other.id,
        event=dataclasses.replace(in_range[0], occurred_at=base + timedelta(minutes=10, milliseconds=999)),
    )

    # create_event returns only `success`; ids and sequences come from the search API, joined
    # on occurred_at (unique per event). `sent` is the event exactly as the SDK put it on the wire.
    stored = search_events(raw, org.id)
    assert len(stored) == 17, f"the search API must return all 17 events: {[e['id'] for e in stored]}"
    by_time = {e["occurred_at"]: e for e in stored}
    events = []
    for event in in_range:
        sent = event.to_dict()
        assert sent["occurred_at"] in by_time, f"event at {sent['occurred_at']} missing from the search API"
        events.append(SimpleNamespace(sent=sent, stored=by_time[sent["occurred_at"]]))
    events.sort(key=lambda e: e.stored["sequence"])
    return SimpleNamespace(
        org=org, other=other, range_start=range_start, range_end=range_end, events=events, stored=stored,
    )


def expected_ids(seed: SimpleNamespace, pred=lambda sent: True) -> list[str]:
    """Ids of the seeded in-range events whose wire form satisfies `pred`, in log order."""
    return [e.stored["id"] for e in seed.events if pred(e.sent)]


def test_create_export_and_poll_until_ready(client: WorkOSClient, raw: Raw, export_seed):
    seed = export_seed
    created = client.audit_logs.create_export(
        organization_id=seed.org.id, range_start=seed.range_start, range_end=seed.range_end
    )
    assert created.object == "audit_log_export"
    assert created.id.startswith("audit_log_export_"), created
    state = getattr(created.state, "value", created.state)
    assert state in {"pending", "ready"}, created
    if state == "pending":
        assert created.url is None, f"no url while pending (§2.2): {created}"
    assert created.created_at.tzinfo is not None

    ready = wait_for_export(client, created.id)
    assert ready.id == created.id
    assert ready.created_at == created.created_at
    assert isinstance(ready.url, str), f"a ready export has a url, and the SDK exposes it: {ready}"
    url = urllib.parse.urlsplit(ready.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == (
        f"{raw.server.base_url}/audit_logs/exports/{created.id}/download"
    ), ready.url
    query = urllib.parse.parse_qs(url.query)
    assert query.get("signature"), f"the url is signed: {ready.url}"
    # §2.3: the link expires after 10 minutes (a little clock slack either way).
    expires = int(query["expires"][0])
    now = time.time()
    assert now + 540 < expires <= now + 610, f"expires={expires} should be ~10 min after {now:.0f}"

    # Raw: Trailmark's extra keys, which the SDK model drops.
    resp = raw.get(f"/audit_logs/exports/{created.id}")
    assert resp.status == 200, resp.describe()
    body = resp.json()
    assert body["state"] == "ready", resp.describe()
    assert body["organization_id"] == seed.org.id, resp.describe()
    assert body["format"] == "csv", f"csv is the default format: {resp.describe()}"
    assert body["row_count"] == 15, f"row_count counts the exported events: {resp.describe()}"
    assert TIMESTAMP_RE.match(body["created_at"]) and TIMESTAMP_RE.match(body["updated_at"]), resp.describe()
    # §2.3: every GET renews the link.
    renewed = int(urllib.parse.parse_qs(urllib.parse.urlsplit(body["url"]).query)["expires"][0])
    assert renewed >= expires, f"a later GET must not shorten the link: {expires} then {renewed}"


def test_export_csv_matches_ingested_events(client: WorkOSClient, export_seed):
    seed = export_seed
    result = export_csv(
        client, organization_id=seed.org.id, range_start=seed.range_start, range_end=seed.range_end
    )
    text, rows = result.resp.text, result.rows
    assert result.resp.content_type.startswith("text/csv"), result.resp.describe()

    # Not only parseable: the awkward names are quoted, with inner quotes doubled.
    assert ',"Smith, Bob",' in text, "a name with a comma is a quoted cell"
    assert ',"\'=HYPERLINK(""https://evil.test"",""x"")",' in text, (
        "a name starting with = gets a leading ' and its quotes doubled"
    )

    # Same events (not the two outside the range, not the other organization's), in log
    # order, with the ids the search API reports.
    ids = [r["id"] for r in rows]
    assert len(rows) == 15, f"15 events in range, got {len(rows)}: {ids}"
    assert ids == expected_ids(seed), "the export lists the in-range events in log order"
    lo, hi = (d.isoformat(timespec="milliseconds").replace("+00:00", "Z") for d in (seed.range_start, seed.range_end))
    assert ids == [e["id"] for e in seed.stored if lo <= e["occurred_at"] <= hi], (
        "export ids = search API ids (order=asc) within the range"
    )
    seqs = [int(r["sequence"]) for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"sequence must increase: {seqs}"
    times = [r["occurred_at"] for r in rows]
    assert times != sorted(times), "the seed interleaves occurred_at, so log order is not time order (self-check)"

    for k, (row, seeded) in enumerate(zip(rows, seed.events), start=1):
        sent, stored = seeded.sent, seeded.stored
        where = f"row {k} ({stored['id']}): {row}"
        plain = {c: v for c, v in row.items() if c not in EXPORT_JSON_COLUMNS}
        assert plain == {
            "id": stored["id"],
            "organization_id": seed.org.id,
            "sequence": str(stored["sequence"]),
            "occurred_at": sent["occurred_at"],
            "received_at": stored["received_at"],
            "action": sent["action"],
            "version": str(sent.get("version", "")),
            "actor_id": sent["actor"]["id"],
            "actor_type": sent["actor"]["type"],
            "actor_name": spreadsheet_safe(sent["actor"]["name"]),
            "location": sent["context"]["location"],
            "user_agent": sent["context"].get("user_agent", ""),
        }, where
        assert TIMESTAMP_RE.match(row["received_at"]), where
        for column, want in (
            ("actor_metadata", sent["actor"]["metadata"]),
            ("targets", sent["targets"]),
            ("metadata", sent["metadata"]),
        ):
            try:
                got = json.loads(row[column])
            except ValueError as e:
                pytest.fail(f"{column} is not JSON ({e}): {where}")
            assert got == want, f"{column} of {where}"
            assert json.dumps(got, separators=(",", ":"), ensure_ascii=False) == row[column], (
                f"{column} is compact JSON: {where}"
            )


def test_export_download_needs_valid_signature(client: WorkOSClient, export_seed):
    """The signed link is the only credential: a changed or missing signature is refused."""
    seed = export_seed
    created = client.audit_logs.create_export(
        organization_id=seed.org.id, range_start=seed.range_start, range_end=seed.range_end
    )
    url = urllib.parse.urlsplit(wait_for_export(client, created.id).url)
    query = dict(urllib.parse.parse_qsl(url.query))
    sig = query["signature"]
    query["signature"] = sig[:-1] + ("1" if sig.endswith("0") else "0")
    tampered = download(urllib.parse.urlunsplit(url._replace(query=urllib.parse.urlencode(query))))
    assert 400 <= tampered.status < 500, f"tampered signature: {tampered.describe()}"
    unsigned = download(urllib.parse.urlunsplit(url._replace(query="")))
    assert 400 <= unsigned.status < 500, f"unsigned link: {unsigned.describe()}"


@pytest.mark.parametrize(
    "options,pred",
    [
        ({"actions": ["user.signed_out"]}, lambda e: e["action"] == "user.signed_out"),
        ({"actor_names": ["Smith, Bob"]}, lambda e: e["actor"]["name"] == "Smith, Bob"),
        # `actors` is the deprecated alias of actor_names that Python 10 still sends (§2.2).
        ({"actors": ["Smith, Bob"]}, lambda e: e["actor"]["name"] == "Smith, Bob"),
        ({"actor_ids": ["user_formula"]}, lambda e: e["actor"]["id"] == "user_formula"),
        ({"targets": ["document"]}, lambda e: any(t["type"] == "document" for t in e["targets"])),
        (
            {"actions": ["user.signed_out"], "actor_names": ["Alice Example"]},
            lambda e: e["action"] == "user.signed_out" and e["actor"]["name"] == "Alice Example",
        ),
    ],
    ids=["actions", "actor_names", "actors-deprecated", "actor_ids", "targets", "actions+actor_names"],
)
def test_export_filters(client: WorkOSClient, export_seed, options, pred):
    seed = export_seed
    want = expected_ids(seed, pred)
    assert 0 < len(want) < 15, "the seed must make this filter selective (self-check)"
    result = export_csv(
        client, organization_id=seed.org.id, range_start=seed.range_start, range_end=seed.range_end, **options
    )
    assert [r["id"] for r in result.rows] == want, f"{options}: exactly the matching events, in log order"


def test_export_ndjson_raw(client: WorkOSClient, raw: Raw, export_seed):
    """`format` is Trailmark's addition (not in the SDK signature): one search-API event object
    per line, in log order, each with its inclusion proof (the export is filtered by its range),
    then one manifest line holding the signed checkpoint the proofs lead to."""
    seed = export_seed
    resp = raw.post("/audit_logs/exports", {
        "organization_id": seed.org.id,
        "range_start": seed.range_start.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "range_end": seed.range_end.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "format": "ndjson",
    })
    assert resp.status == 201, resp.describe()
    body = resp.json()
    assert body["object"] == "audit_log_export" and body["id"].startswith("audit_log_export_"), resp.describe()
    assert body["format"] == "ndjson", resp.describe()
    assert body["state"] in {"pending", "ready"}, resp.describe()

    ready = wait_for_export(client, body["id"])  # the SDK reads an ndjson export like any other
    got = download(ready.url)
    assert got.status == 200, got.describe()
    assert got.text.endswith("\n"), f"every line ends with a newline: {got.text[-80:]!r}"
    lines = got.text[:-1].split("\n")
    assert len(lines) == 16, f"15 events and a manifest expected: {got.text[:500]!r}"
    manifest = json.loads(lines[-1])
    assert manifest["object"] == "audit_log_export_manifest", lines[-1]
    assert manifest["event_count"] == 15 and manifest["complete"] is False, manifest
    assert manifest["organization_id"] == seed.org.id, manifest
    assert manifest["checkpoint"].startswith(f"trailmark/{seed.org.id}\n"), manifest["checkpoint"]
    by_id = {e["id"]: e for e in seed.stored}
    events = [json.loads(line) for line in lines[:-1]]
    assert [e["id"] for e in events] == expected_ids(seed), "log order"
    for obj in events:
        proof = obj.pop("inclusion_proof")
        assert isinstance(proof, list) and all(isinstance(h, str) for h in proof), obj
        assert obj == by_id[obj["id"]], f"line differs from the search API's event object:\n{obj}\n{by_id[obj['id']]}"
        assert obj["object"] == "audit_log_event", obj


def test_export_inverted_range_is_bad_request(client: WorkOSClient, raw: Raw, export_seed):
    seed = export_seed
    with pytest.raises(BadRequestError) as exc:
        client.audit_logs.create_export(
            organization_id=seed.org.id, range_start=seed.range_end, range_end=seed.range_start
        )
    assert exc.value.status_code == 400
    assert exc.value.code == "invalid_audit_log_export_range_date", exc.value.response_json
    assert exc.value.request_id

    resp = raw.post("/audit_logs/exports", {
        "organization_id": seed.org.id,
        "range_start": "2026-01-02T00:00:00.000Z",
        "range_end": "2026-01-01T00:00:00.000Z",
    })
    body = assert_json_error(resp, 400)
    assert body.get("code") == "invalid_audit_log_export_range_date", resp.describe()
    assert "error" not in body, "§9.5: no `error` key"


def test_get_unknown_export_is_not_found(client: WorkOSClient):
    with pytest.raises(NotFoundError) as exc:
        client.audit_logs.get_export(UNKNOWN_EXPORT)
    assert exc.value.status_code == 404
    assert UNKNOWN_EXPORT in exc.value.message, exc.value.response_json


# ---------------------------------------------------------------------------------------
# Admin Portal link (§3): Python 10's `admin_portal.generate_link`, which sends
# `it_contact_emails` and `external_user_id`.


def test_admin_portal_link_opens_once(client: WorkOSClient, org, server):
    response = client.admin_portal.generate_link(
        organization=org.id,
        intent="audit_logs",
        return_url="https://app.example.com/settings",
        it_contact_emails=["it@acme.test"],
        external_user_id="user_42",
    )
    assert re.fullmatch(rf"{re.escape(server.base_url)}/portal\?token=[0-9a-f]{{64}}", response.link)
    with urllib.request.urlopen(response.link) as opened:
        assert opened.status == 200
        assert opened.headers["Content-Type"].startswith("text/html")
        assert "HttpOnly; SameSite=Strict" in opened.headers["Set-Cookie"]
    with pytest.raises(urllib.error.HTTPError) as again:
        urllib.request.urlopen(response.link)
    assert again.value.code == 410


def test_admin_portal_link_takes_a_success_url(client: WorkOSClient, org, server):
    response = client.admin_portal.generate_link(
        organization=org.id,
        intent="log_streams",
        return_url="https://app.example.com/settings",
        success_url="https://app.example.com/settings/streams?done=1",
    )
    assert re.fullmatch(rf"{re.escape(server.base_url)}/portal\?token=[0-9a-f]{{64}}", response.link)


def test_admin_portal_refuses_intents_it_does_not_serve(client: WorkOSClient, org):
    with pytest.raises(UnprocessableEntityError) as exc:
        client.admin_portal.generate_link(organization=org.id, intent="sso")
    assert exc.value.status_code == 422
    assert "audit_logs, log_streams" in json.dumps(exc.value.response_json)


def test_admin_portal_link_for_unknown_organization_is_not_found(client: WorkOSClient):
    with pytest.raises(NotFoundError) as exc:
        client.admin_portal.generate_link(organization=UNKNOWN_ORG, intent="log_streams")
    assert exc.value.status_code == 404
