//! `POST /audit_logs/events` and `POST /audit_logs/events/batch`: receipts, durability,
//! sequencing, idempotency, validation and key scopes.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::{ApiKeySecret, Scope};
use trailmark_store::ApiKeyRecord;

use crate::helpers::{Options, TestApp, body, event};

#[tokio::test]
async fn an_event_is_acknowledged_with_a_receipt_and_stored() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let response = app
        .create_event(&organization, &event("user.signed_in"), Some("k1"))
        .await;
    assert_eq!(response.status(), 200);
    let receipt = body(response).await;
    assert_eq!(receipt["success"], true);
    assert_eq!(receipt["sequence"], 0);
    assert_eq!(receipt["organization_id"], organization.as_str());
    assert!(
        receipt["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("event_"))
    );

    let stored = app.stored_events(&organization).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, receipt["id"].as_str().unwrap_or_default());
    let mut stored_body = stored[0].body.clone();
    let salt = stored_body
        .as_object_mut()
        .and_then(|body| body.remove("salt"));
    assert!(
        salt.as_ref()
            .and_then(|s| s.as_str())
            .is_some_and(|s| s.len() == 24),
        "the seed of the event's salts (leaf version 2): {salt:?}"
    );
    assert_eq!(
        stored_body,
        event("user.signed_in"),
        "the stored event is the submitted one, normalized"
    );
}

#[tokio::test]
async fn every_iso_8601_form_of_occurred_at_is_accepted_and_normalized() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    for (index, form) in [
        "2026-08-01T10:00:00Z",
        "2026-08-01T12:00:00.000+02:00",
        "2026-08-01T10:00:00",
        "2026-08-01T10:00:00.123456Z",
    ]
    .into_iter()
    .enumerate()
    {
        let mut submitted = event("user.signed_in");
        submitted["occurred_at"] = json!(form);
        let response = app
            .create_event(&organization, &submitted, Some(&format!("form-{index}")))
            .await;
        assert_eq!(response.status(), 200, "{form}");
    }
    let stored: Vec<String> = app
        .stored_events(&organization)
        .await
        .iter()
        .map(|e| {
            e.body["occurred_at"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        stored,
        [
            "2026-08-01T10:00:00.000Z",
            "2026-08-01T10:00:00.000Z",
            "2026-08-01T10:00:00.000Z",
            "2026-08-01T10:00:00.123Z"
        ]
    );
}

#[tokio::test]
async fn the_same_key_and_event_replay_the_first_response_and_store_once() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let first = app
        .create_event(&organization, &event("user.signed_in"), Some("key-1"))
        .await;
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let first = body(first).await;
    let second = app
        .create_event(&organization, &event("user.signed_in"), Some("key-1"))
        .await;
    assert_eq!(
        second
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(body(second).await, first);

    // The same instant spelled differently is the same event.
    let mut respelled = event("user.signed_in");
    respelled["occurred_at"] = json!("2026-08-01T12:00:00+02:00");
    assert_eq!(
        body(
            app.create_event(&organization, &respelled, Some("key-1"))
                .await
        )
        .await,
        first
    );

    // The same key with a different event is a new request (WorkOS hashes key and event).
    let different = body(
        app.create_event(&organization, &event("user.signed_out"), Some("key-1"))
            .await,
    )
    .await;
    assert_eq!(different["sequence"], 1);
    assert_eq!(app.stored_events(&organization).await.len(), 2);
}

#[tokio::test]
async fn without_a_key_identical_content_is_stored_once() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let first = body(
        app.create_event(&organization, &event("user.signed_in"), None)
            .await,
    )
    .await;
    let second = body(
        app.create_event(&organization, &event("user.signed_in"), None)
            .await,
    )
    .await;
    assert_eq!(first, second);
    let mut later = event("user.signed_in");
    later["occurred_at"] = json!("2026-08-01T10:00:00.001Z");
    assert_eq!(
        body(app.create_event(&organization, &later, None).await).await["sequence"],
        1
    );
}

#[tokio::test]
async fn concurrent_requests_with_one_key_store_one_event_and_all_get_the_same_answer() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let submitted = event("user.signed_in");
    let requests = (0..32).map(|_| app.create_event(&organization, &submitted, Some("race")));
    let responses = futures_util::future::join_all(requests).await;
    let mut bodies = BTreeSet::new();
    for response in responses {
        assert_eq!(response.status(), 200);
        bodies.insert(body(response).await.to_string());
    }
    assert_eq!(
        bodies.len(),
        1,
        "every racer got the first response: {bodies:?}"
    );
    assert_eq!(app.stored_events(&organization).await.len(), 1);
}

#[tokio::test]
async fn concurrent_ingest_gets_gap_free_unique_sequences() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let requests = (0..200).map(|i| {
        let mut submitted = event("document.updated");
        submitted["metadata"] = json!({"n": i});
        let organization = organization.clone();
        let app = &app;
        async move {
            body(
                app.create_event(&organization, &submitted, Some(&format!("k{i}")))
                    .await,
            )
            .await
        }
    });
    let receipts = futures_util::future::join_all(requests).await;
    let sequences: BTreeSet<u64> = receipts
        .iter()
        .filter_map(|r| r["sequence"].as_u64())
        .collect();
    assert_eq!(
        sequences,
        (0..200).collect(),
        "sequences are 0..200 exactly once each"
    );
    let stored: Vec<u64> = app
        .stored_events(&organization)
        .await
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(stored, (0..200).collect::<Vec<_>>());
}

#[tokio::test]
async fn missing_fields_are_a_422_naming_each_field() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let response = app
        .create_event(
            &organization,
            &json!({"actor": {"type": "user"}, "targets": [], "context": {}}),
            None,
        )
        .await;
    assert_eq!(response.status(), 422);
    let error = body(response).await;
    assert_eq!(error["message"], "Validation failed.");
    let fields: Vec<&str> = error["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "event.action",
            "event.occurred_at",
            "event.actor.id",
            "event.context.location"
        ]
    );
    assert!(
        error["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|e| e["code"] == "required")
    );

    let response = app
        .post("/audit_logs/events", &json!({"event": event("a.b")}))
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(
        body(response).await["errors"][0]["field"],
        "organization_id"
    );
}

#[tokio::test]
async fn metadata_limits_are_a_400_with_instance_paths() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let mut submitted = event("user.signed_in");
    let too_many: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("k{i}"), json!(i))).collect();
    submitted["metadata"] = Value::Object(too_many);
    submitted["actor"]["metadata"] =
        json!({"bad key!": "x", "long": "x".repeat(501), "nested": {"a": 1}});
    let response = app.create_event(&organization, &submitted, None).await;
    assert_eq!(response.status(), 400);
    let error = body(response).await;
    assert_eq!(error["code"], "invalid_audit_log_event");
    let paths: BTreeSet<&str> = error["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["instancePath"].as_str())
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from([
            "/metadata",
            "/actor/metadata/bad key!",
            "/actor/metadata/long",
            "/actor/metadata/nested"
        ])
    );
}

#[tokio::test]
async fn an_unknown_organization_is_a_404() {
    let app = TestApp::spawn().await;
    let response = app
        .create_event("org_01HZZZZZZZZZZZZZZZZZZZZZZZ", &event("a.b"), None)
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        body(response).await["message"],
        "Organization not found: 'org_01HZZZZZZZZZZZZZZZZZZZZZZZ'."
    );
}

#[tokio::test]
async fn events_are_validated_against_the_schema_version_they_name() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let v1 = json!({"targets": [{"type": "team"}], "metadata": {"type": "object", "properties": {"successful": {"type": "boolean"}}, "required": ["successful"]}});
    assert_eq!(
        app.post("/audit_logs/actions/user.signed_in/schemas", &v1)
            .await
            .status(),
        201
    );
    let v2 = json!({"targets": [{"type": "invoice"}]});
    assert_eq!(
        body(
            app.post("/audit_logs/actions/user.signed_in/schemas", &v2)
                .await
        )
        .await["version"],
        2
    );

    // No version: validated against version 1.
    assert_eq!(
        app.create_event(&organization, &event("user.signed_in"), Some("a"))
            .await
            .status(),
        200
    );
    let mut without_required = event("user.signed_in");
    without_required["metadata"] = json!({});
    let error = body(
        app.create_event(&organization, &without_required, Some("b"))
            .await,
    )
    .await;
    assert_eq!(error["errors"][0]["instancePath"], "/metadata");

    // Version 2 allows invoices, not teams.
    let mut for_v2 = event("user.signed_in");
    for_v2["version"] = json!(2);
    let response = app.create_event(&organization, &for_v2, Some("c")).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        body(response).await["errors"][0]["instancePath"],
        "/targets/0/type"
    );
    for_v2["targets"][0]["type"] = json!("invoice");
    assert_eq!(
        app.create_event(&organization, &for_v2, Some("d"))
            .await
            .status(),
        200
    );

    for_v2["version"] = json!(9);
    let response = app.create_event(&organization, &for_v2, Some("e")).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        body(response).await["errors"][0]["instancePath"],
        "/version"
    );
}

#[tokio::test]
async fn require_schemas_refuses_actions_without_one() {
    let app = TestApp::spawn_with(Options {
        require_schemas: true,
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    let response = app
        .create_event(&organization, &event("no.schema"), None)
        .await;
    assert_eq!(response.status(), 400);
    let error = body(response).await;
    assert_eq!(error["code"], "invalid_audit_log_event");
    assert_eq!(error["errors"][0]["instancePath"], "/action");

    app.post(
        "/audit_logs/actions/no.schema/schemas",
        &json!({"targets": [{"type": "team"}]}),
    )
    .await;
    assert_eq!(
        app.create_event(&organization, &event("no.schema"), None)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_batch_stores_the_valid_events_and_reports_each_one() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let mut invalid = event("user.signed_in");
    invalid["actor"] = json!({"type": "user"});
    let mut over_limit = event("user.signed_in");
    over_limit["metadata"] = json!({"k": "x".repeat(501)});
    let mut third = event("user.signed_out");
    third["metadata"] = json!({"n": 3});
    let batch = json!({"organization_id": organization, "events": [event("user.signed_in"), invalid, over_limit, third]});

    let response = app.post("/audit_logs/events/batch", &batch).await;
    assert_eq!(response.status(), 200);
    let results = body(response).await;
    assert_eq!(results["object"], "list");
    let data = results["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(data.len(), 4);
    assert_eq!(
        (
            data[0]["index"].clone(),
            data[0]["success"].clone(),
            data[0]["sequence"].clone()
        ),
        (json!(0), json!(true), json!(0))
    );
    assert_eq!(
        (data[1]["success"].clone(), data[1]["status"].clone()),
        (json!(false), json!(422))
    );
    assert_eq!(data[1]["errors"][0]["field"], "events[1].actor.id");
    assert_eq!(
        (
            data[2]["status"].clone(),
            data[2]["errors"][0]["instancePath"].clone()
        ),
        (json!(400), json!("/metadata/k"))
    );
    assert_eq!(
        (data[3]["index"].clone(), data[3]["sequence"].clone()),
        (json!(3), json!(1))
    );
    assert_eq!(app.stored_events(&organization).await.len(), 2);

    let replay = app.post("/audit_logs/events/batch", &batch).await;
    assert_eq!(
        replay
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(body(replay).await, results);
    assert_eq!(app.stored_events(&organization).await.len(), 2);
}

#[tokio::test]
async fn a_batch_holds_one_to_a_thousand_events() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let thousand: Vec<Value> = (0..1000)
        .map(|i| {
            let mut e = event("bulk.import");
            e["metadata"] = json!({"i": i});
            e
        })
        .collect();
    let response = app
        .post(
            "/audit_logs/events/batch",
            &json!({"organization_id": organization, "events": thousand}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(body(response).await["data"][999]["sequence"], 999);

    let too_many: Vec<Value> = (0..1001).map(|_| event("bulk.import")).collect();
    let response = app
        .post(
            "/audit_logs/events/batch",
            &json!({"organization_id": organization, "events": too_many}),
        )
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(body(response).await["errors"][0]["field"], "events");
    let response = app
        .post(
            "/audit_logs/events/batch",
            &json!({"organization_id": organization, "events": []}),
        )
        .await;
    assert_eq!(response.status(), 422);
}

#[tokio::test]
async fn keys_are_checked_for_scope_and_organization() {
    let app = TestApp::spawn().await;
    let acme = app.create_organization("Acme").await;
    let globex = app.create_organization("Globex").await;
    let store = app.store();
    let mut keys = Vec::new();
    for (name, scope, organization) in [
        ("acme-ingest", Scope::Ingest, Some(acme.clone())),
        ("read", Scope::Read, None),
        ("acme-admin", Scope::Admin, Some(acme.clone())),
    ] {
        let secret = ApiKeySecret::new(format!("sk_test_{name}"));
        store
            .insert_api_key(ApiKeyRecord {
                id: format!("key_{name}"),
                hash: secret.hash(),
                scope,
                organization_id: organization,
                created_at: Timestamp::now(),
                name: format!("{} key", scope.as_str()),
                prefix: String::new(),
                expires_at: None,
                last_used_at: None,
            })
            .await
            .expect("insert key");
        keys.push(secret.expose().to_owned());
    }
    let (acme_ingest, read, acme_admin) = (&keys[0], &keys[1], &keys[2]);
    let ingest = |organization: &str| json!({"organization_id": organization, "event": event("user.signed_in")});

    assert_eq!(
        app.post_with_key("/audit_logs/events", acme_ingest, &ingest(&acme))
            .await
            .status(),
        200
    );
    let response = app
        .post_with_key("/audit_logs/events", acme_ingest, &ingest(&globex))
        .await;
    assert_eq!(response.status(), 403);
    assert_eq!(body(response).await["code"], "forbidden");
    assert_eq!(
        app.post_with_key("/audit_logs/events", read, &ingest(&acme))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.post_with_key("/organizations", acme_ingest, &json!({"name": "x"}))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.post_with_key("/organizations", acme_admin, &json!({"name": "x"}))
            .await
            .status(),
        403,
        "restricted admin keys cannot create organizations"
    );
    let response = app
        .client
        .get(app.url(&format!("/organizations/{globex}")))
        .bearer_auth(acme_admin)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 403);
    let listed = body(
        app.client
            .get(app.url("/organizations"))
            .bearer_auth(acme_admin)
            .send()
            .await
            .expect("request"),
    )
    .await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [acme.as_str()],
        "a restricted key lists only its organization"
    );

    let response = app
        .client
        .get(app.url("/organizations"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    assert_eq!(body(response).await["code"], "unauthorized");
    let response = app
        .client
        .get(app.url("/organizations"))
        .bearer_auth("sk_nope")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
}
