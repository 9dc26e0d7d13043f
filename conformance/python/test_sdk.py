"""The official WorkOS Python SDK (PyPI `workos` 10.x), unchanged, against a real Trailmark.

Each test names the section of shared/reference/workos-wire.md it checks. SDK calls show that
the package works as shipped; the raw HTTP calls (`raw` fixture) pin what is on the wire where
the SDK would hide it (status codes, error bodies, headers, Trailmark's event receipt).
"""

from __future__ import annotations

import re
import secrets
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

from conftest import Raw, make_client

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
