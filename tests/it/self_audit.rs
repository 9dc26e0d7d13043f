//! The audit log audits itself: what an API key changes — exports, retention, legal holds, log
//! streams, replays, portal links — is recorded in the organization's own log, with the key as
//! actor and the caller's address as the location; what the portal changes is recorded once,
//! by the portal.

use serde_json::{Value, json};
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::{ApiKeySecret, Scope};
use trailmark_store::ApiKeyRecord;

use crate::helpers::{TestApp, body};

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: &str,
    request: Value,
) -> Value {
    let response = app
        .client
        .request(method, app.url(path))
        .bearer_auth(key)
        .json(&request)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let answer = if status == 204 {
        Value::Null
    } else {
        body(response).await
    };
    assert!(status.is_success(), "{path}: {status} {answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_with_an_api_key_are_recorded_in_the_organization_s_log() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let other = app.create_organization("Globex").await;
    let secret = ApiKeySecret::new("sk_test_acme_admin");
    app.store()
        .insert_api_key(ApiKeyRecord {
            id: "key_acme_admin".into(),
            hash: secret.hash(),
            scope: Scope::Admin,
            organization_id: Some(organization.clone()),
            created_at: Timestamp::now(),
            name: "admin key".into(),
            prefix: String::new(),
            expires_at: None,
            last_used_at: None,
        })
        .await
        .expect("key");
    let key = secret.expose();
    use reqwest::Method;

    let export = send(
        &app,
        Method::POST,
        "/audit_logs/exports",
        key,
        json!({"organization_id": organization, "format": "ndjson"}),
    )
    .await;
    send(
        &app,
        Method::PUT,
        &format!("/organizations/{organization}/audit_logs_retention"),
        key,
        json!({"retention_period_in_days": 90}),
    )
    .await;
    let hold_path = format!("/organizations/{organization}/legal_hold");
    send(
        &app,
        Method::PUT,
        &hold_path,
        key,
        json!({"active": true, "reason": "Case 17"}),
    )
    .await;
    send(&app, Method::PUT, &hold_path, key, json!({"active": false})).await;
    let stream = send(
        &app,
        Method::POST,
        "/audit_logs/streams",
        key,
        json!({"organization_id": organization, "type": "http", "name": "SIEM",
               "config": {"url": "http://127.0.0.1:9/hook"}}),
    )
    .await;
    let stream_id = stream["id"].as_str().unwrap_or_default().to_owned();
    let stream_path = format!("/audit_logs/streams/{stream_id}");
    send(
        &app,
        Method::PATCH,
        &stream_path,
        key,
        json!({"enabled": false}),
    )
    .await;
    send(
        &app,
        Method::POST,
        &format!("{stream_path}/rotate_secret"),
        key,
        json!({}),
    )
    .await;
    send(
        &app,
        Method::POST,
        &format!("{stream_path}/replay"),
        key,
        json!({"from_sequence": 0}),
    )
    .await;
    send(&app, Method::DELETE, &stream_path, key, json!({})).await;
    send(
        &app,
        Method::POST,
        "/portal/generate_link",
        key,
        json!({"organization": organization, "intent": "audit_logs"}),
    )
    .await;

    let log = body(
        app.get(&format!(
            "/audit_logs/events?organization_id={organization}&actions=trailmark.*&order=asc&limit=100"
        ))
        .await,
    )
    .await;
    let recorded: Vec<(String, String, Value)> = log["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|event| {
            (
                event["action"].as_str().unwrap_or_default().to_owned(),
                event["targets"][0]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                event["metadata"].clone(),
            )
        })
        .collect();
    let export_id = export["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        recorded,
        [
            (
                "trailmark.export.created".to_owned(),
                export_id,
                json!({"format": "ndjson"})
            ),
            (
                "trailmark.retention.set".into(),
                organization.clone(),
                json!({"retention_period_in_days": 90})
            ),
            (
                "trailmark.legal_hold.set".into(),
                organization.clone(),
                json!({"reason": "Case 17"})
            ),
            (
                "trailmark.legal_hold.lifted".into(),
                organization.clone(),
                json!({})
            ),
            (
                "trailmark.stream.created".into(),
                stream_id.clone(),
                json!({"type": "http"})
            ),
            (
                "trailmark.stream.updated".into(),
                stream_id.clone(),
                json!({"enabled": false})
            ),
            (
                "trailmark.stream.secret_rotated".into(),
                stream_id.clone(),
                json!({})
            ),
            (
                "trailmark.stream.replayed".into(),
                stream_id.clone(),
                json!({"from_sequence": 0})
            ),
            (
                "trailmark.stream.deleted".into(),
                stream_id.clone(),
                json!({})
            ),
            (
                "trailmark.portal_link.created".into(),
                organization.clone(),
                json!({"intent": "audit_logs"})
            ),
        ]
    );
    for event in log["data"].as_array().into_iter().flatten() {
        assert_eq!(
            event["actor"],
            json!({"id": "key_acme_admin", "type": "api_key", "name": "admin key"}),
            "{event}"
        );
        assert_eq!(event["context"]["location"], "127.0.0.1", "{event}");
    }
    let elsewhere = body(
        app.get(&format!(
            "/audit_logs/events?organization_id={other}&actions=trailmark.*"
        ))
        .await,
    )
    .await;
    assert_eq!(
        elsewhere["data"],
        json!([]),
        "only the organization's own log"
    );
}

#[tokio::test]
async fn the_bootstrap_key_is_recorded_by_its_variable_s_name() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    app.put(
        &format!("/organizations/{organization}/audit_logs_retention"),
        &json!({"retention_period_in_days": 30}),
    )
    .await;
    let log = body(
        app.get(&format!(
            "/audit_logs/events?organization_id={organization}&actions=trailmark.retention.set"
        ))
        .await,
    )
    .await;
    assert_eq!(
        log["data"][0]["actor"],
        json!({"id": "key_bootstrap", "type": "api_key", "name": "TRAILMARK_API_KEY"})
    );
}
