//! Action schemas: versions, idempotent creation, listing and refusal of invalid JSON Schema.

use serde_json::json;

use crate::helpers::{TestApp, body};

#[tokio::test]
async fn schema_versions_are_immutable_and_identical_bodies_return_the_latest() {
    let app = TestApp::spawn().await;
    // The Node SDK always sends an empty actor schema.
    let v1 = json!({"targets": [{"type": "team", "metadata": {"type": "object", "properties": {"plan": {"type": "string"}}}}], "actor": {"metadata": {"type": "object", "properties": {}}}});
    let created = app
        .post("/audit_logs/actions/user.signed_in/schemas", &v1)
        .await;
    assert_eq!(created.status(), 201);
    let created = body(created).await;
    assert_eq!(created["object"], "audit_log_schema");
    assert_eq!(created["version"], 1);
    assert_eq!(created["targets"], v1["targets"]);
    assert_eq!(created["actor"], v1["actor"]);
    assert!(created["created_at"].is_string());

    assert_eq!(
        body(
            app.post("/audit_logs/actions/user.signed_in/schemas", &v1)
                .await
        )
        .await,
        created
    );
    let v2 = json!({"targets": [{"type": "team"}], "metadata": {"type": "object", "required": ["reason"]}});
    assert_eq!(
        body(
            app.post("/audit_logs/actions/user.signed_in/schemas", &v2)
                .await
        )
        .await["version"],
        2
    );

    let listed = body(app.get("/audit_logs/actions/user.signed_in/schemas").await).await;
    let versions: Vec<u64> = listed["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["version"].as_u64())
        .collect();
    assert_eq!(versions, [2, 1]);
    assert_eq!(
        listed["list_metadata"],
        json!({"before": null, "after": null})
    );
    let page = body(
        app.get("/audit_logs/actions/user.signed_in/schemas?order=asc&limit=1")
            .await,
    )
    .await;
    assert_eq!(
        (
            page["data"][0]["version"].clone(),
            page["list_metadata"]["after"].clone()
        ),
        (json!(1), json!("1"))
    );
    let next = body(
        app.get("/audit_logs/actions/user.signed_in/schemas?order=asc&limit=1&after=1")
            .await,
    )
    .await;
    assert_eq!(
        (
            next["data"][0]["version"].clone(),
            next["list_metadata"]["after"].clone()
        ),
        (json!(2), json!(null))
    );

    app.post(
        "/audit_logs/actions/a.first/schemas",
        &json!({"targets": [{"type": "x"}]}),
    )
    .await;
    let actions = body(app.get("/audit_logs/actions?order=asc").await).await;
    let names: Vec<&str> = actions["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["a.first", "user.signed_in"]);
    let action = &actions["data"][1];
    assert_eq!(
        (
            action["object"].clone(),
            action["schema"]["version"].clone()
        ),
        (json!("audit_log_action"), json!(2))
    );
    assert!(action["created_at"].is_string() && action["updated_at"].is_string());
}

#[tokio::test]
async fn invalid_schemas_are_a_422_naming_the_field() {
    let app = TestApp::spawn().await;
    for (schema, field) in [
        (json!({"targets": []}), "targets"),
        (
            json!({"targets": [{"type": "team", "metadata": {"type": "not-a-type"}}]}),
            "targets[0].metadata",
        ),
        (
            json!({"targets": [{"type": "team"}], "metadata": {"$ref": "https://example.com/remote.json"}}),
            "metadata",
        ),
        (
            json!({"targets": [{"type": "team"}], "actor": {"metadata": []}}),
            "actor.metadata",
        ),
    ] {
        let response = app
            .post("/audit_logs/actions/user.signed_in/schemas", &schema)
            .await;
        assert_eq!(response.status(), 422, "{schema}");
        assert_eq!(
            body(response).await["errors"][0]["field"],
            field,
            "{schema}"
        );
    }
    let response = app
        .post(
            "/audit_logs/actions/has%20space/schemas",
            &json!({"targets": [{"type": "t"}]}),
        )
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(
        app.get("/audit_logs/actions/never.defined/schemas")
            .await
            .status(),
        404
    );
}

/// Issue 7: `format` is asserted (WorkOS validates with Ajv and its formats): a value declared
/// an IPv4 address, e-mail, date-time, URI or UUID must be one, in single and batch ingest; an
/// unknown format is refused when the schema is created.
#[tokio::test]
async fn issue_7_json_schema_formats_are_asserted() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let schema = json!({"targets": [{"type": "team"}], "metadata": {"type": "object", "properties": {
        "ip": {"type": "string", "format": "ipv4"},
        "email": {"type": "string", "format": "email"},
        "at": {"type": "string", "format": "date-time"},
        "link": {"type": "string", "format": "uri"},
        "request": {"type": "string", "format": "uuid"}}}});
    assert_eq!(
        app.post("/audit_logs/actions/user.signed_in/schemas", &schema)
            .await
            .status(),
        201
    );
    let send = |metadata: serde_json::Value| {
        let mut event = crate::helpers::event("user.signed_in");
        event["metadata"] = metadata;
        event
    };
    let valid = send(
        json!({"ip": "192.0.2.8", "email": "jon@acme.test", "at": "2026-08-01T10:00:00Z",
                            "link": "https://acme.test/x", "request": "0f8fad5b-d9cb-469f-a165-70867728950e"}),
    );
    assert_eq!(
        app.create_event(&organization, &valid, None).await.status(),
        200
    );
    for (key, bad) in [
        ("ip", "not-an-ip"),
        ("ip", "999.1.1.1"),
        ("email", "jon"),
        ("at", "yesterday"),
        ("link", "::"),
        ("request", "1234"),
    ] {
        let response = app
            .create_event(&organization, &send(json!({key: bad})), None)
            .await;
        assert_eq!(response.status(), 400, "{key}={bad}");
        let refused = body(response).await;
        assert_eq!(refused["code"], "invalid_audit_log_event");
        assert_eq!(
            refused["errors"][0]["instancePath"],
            format!("/metadata/{key}"),
            "{refused}"
        );
    }
    let batch = body(
        app.post(
            "/audit_logs/events/batch",
            &json!({"organization_id": organization,
                    "events": [send(json!({"ip": "10.0.0.1"})), send(json!({"ip": "ten"}))]}),
        )
        .await,
    )
    .await;
    assert_eq!(batch["data"][0]["success"], true, "{batch}");
    assert_eq!(
        batch["data"][1]["errors"][0]["instancePath"],
        "/metadata/ip"
    );

    let unknown = app
        .post(
            "/audit_logs/actions/user.other/schemas",
            &json!({"targets": [{"type": "team", "metadata": {"properties": {"x": {"format": "ip-address"}}}}]}),
        )
        .await;
    assert_eq!(unknown.status(), 422);
    assert_eq!(
        body(unknown).await["errors"][0]["field"],
        "targets[0].metadata"
    );
}

/// A schema's `pattern` that backtracks to the regex engine's limit (about a quarter of a
/// second here) on a run of `a`s ending in `b`: the lookahead makes it a backtracking regex, and
/// `(a|aa)+` splits the run in exponentially many ways before failing.
const CATASTROPHIC: &str = "^(a|aa)+(?!x)$";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_catastrophic_patterns_are_checked() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let schema = json!({"targets": [{"type": "team"}], "metadata": {"type": "object",
        "properties": {"note": {"type": "string", "pattern": CATASTROPHIC}}}});
    assert_eq!(
        app.post("/audit_logs/actions/user.signed_in/schemas", &schema)
            .await
            .status(),
        201
    );
    let mut slow = crate::helpers::event("user.signed_in");
    slow["metadata"] = json!({"note": format!("{}b", "a".repeat(40))});
    let batch = json!({"organization_id": organization, "events": vec![slow; 10]});
    let batches: Vec<_> = (0..2)
        .map(|_| {
            let (client, url, batch) = (
                app.client.clone(),
                app.url("/audit_logs/events/batch"),
                batch.clone(),
            );
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(crate::helpers::ADMIN_KEY)
                    .json(&batch)
                    .send()
                    .await
                    .expect("batch")
                    .text()
                    .await
                    .expect("batch answer")
            })
        })
        .collect();
    // Every probe is answered promptly, and at least one while both batches are still being
    // checked (without that overlap the test would prove nothing).
    let mut answered_during_checks = 0;
    while batches.iter().any(|batch| !batch.is_finished()) {
        let asked = std::time::Instant::now();
        let probe = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            app.client.get(app.url("/healthz")).send(),
        )
        .await;
        assert!(
            probe.is_ok_and(|answer| answer.is_ok_and(|answer| answer.status() == 200)),
            "/healthz did not answer within 2 s while patterns were checked"
        );
        if batches.iter().all(|batch| !batch.is_finished()) {
            answered_during_checks += 1;
        }
        assert!(asked.elapsed() < std::time::Duration::from_secs(2));
    }
    for batch in batches {
        let answer = batch.await.expect("batch task");
        assert!(
            answer.contains("Max limit for backtracking count exceeded"),
            "the pattern was checked: {answer}"
        );
    }
    assert!(
        answered_during_checks > 0,
        "the batches were checked too fast to test anything"
    );
}
