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
