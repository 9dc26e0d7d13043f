//! The official Rust SDK (`workos` on crates.io), pointed at Trailmark with its base-URL
//! override, drives the audit-log calls unchanged.

use serde_json::json;
use workos::audit_logs::{
    CreateEventParams, CreateSchemaParams, Retention, UpdateOrganizationAuditLogsRetentionParams,
    UpdateOrganizationAuditLogsRetentionParamsBody,
};
use workos::organizations::CreateOrganizationParams;
use workos::{Client, Error, RequestOptions};

use crate::helpers::{ADMIN_KEY, TestApp, event};

fn client(app: &TestApp, key: &str) -> Client {
    Client::builder()
        .api_key(key)
        .base_url(app.base.clone())
        .build()
}

fn api_status(error: Error) -> u16 {
    match error {
        Error::Api(api) => api.status,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn the_official_rust_sdk_creates_organizations_schemas_and_events() {
    let app = TestApp::spawn().await;
    let workos = client(&app, ADMIN_KEY);

    let organization = workos
        .organizations()
        .create_organization(CreateOrganizationParams::new(
            serde_json::from_value(json!({"name": "Acme"})).expect("input"),
        ))
        .await
        .expect("create organization");
    assert!(organization.id.starts_with("org_"));
    assert_eq!(
        workos
            .organizations()
            .get_organization(&organization.id)
            .await
            .expect("get")
            .name,
        "Acme"
    );

    let schema_input = json!({"targets": [{"type": "team"}], "actor": {"metadata": {"type": "object", "properties": {"role": {"type": "string"}}}}});
    let first = workos
        .audit_logs()
        .create_schema(
            "user.signed_in",
            CreateSchemaParams::new(serde_json::from_value(schema_input.clone()).expect("schema")),
        )
        .await
        .expect("create schema");
    assert_eq!(first.version, 1);
    let again = workos
        .audit_logs()
        .create_schema(
            "user.signed_in",
            CreateSchemaParams::new(serde_json::from_value(schema_input).expect("schema")),
        )
        .await
        .expect("create the same schema");
    assert_eq!(
        again.version, 1,
        "an identical schema returns the latest version"
    );

    let ingestion = |event_json| {
        serde_json::from_value(json!({"organization_id": organization.id, "event": event_json}))
            .expect("event")
    };
    let created = workos
        .audit_logs()
        .create_event(CreateEventParams::new(ingestion(event("user.signed_in"))))
        .await
        .expect("event");
    assert!(created.success);
    let options = RequestOptions {
        idempotency_key: Some("rust-sdk-key".into()),
        ..RequestOptions::default()
    };
    for _ in 0..2 {
        workos
            .audit_logs()
            .create_event_with_options(
                CreateEventParams::new(ingestion(event("user.signed_in"))),
                Some(&options),
            )
            .await
            .expect("idempotent event");
    }
    // The SDK sends its own key on the first call, so that is one event; the two calls with
    // "rust-sdk-key" are one more.
    assert_eq!(app.stored_events(&organization.id).await.len(), 2);

    let mut wrong_target = event("user.signed_in");
    wrong_target["targets"][0]["type"] = json!("invoice");
    let error = workos
        .audit_logs()
        .create_event(CreateEventParams::new(ingestion(wrong_target)))
        .await
        .expect_err("invalid");
    assert_eq!(api_status(error), 400);

    let unknown = serde_json::from_value(
        json!({"organization_id": "org_01HZZZZZZZZZZZZZZZZZZZZZZZ", "event": event("x.y")}),
    )
    .expect("event");
    assert_eq!(
        api_status(
            workos
                .audit_logs()
                .create_event(CreateEventParams::new(unknown))
                .await
                .expect_err("404")
        ),
        404
    );

    let retention = workos
        .audit_logs()
        .update_organization_audit_logs_retention(
            &organization.id,
            UpdateOrganizationAuditLogsRetentionParams::new(
                UpdateOrganizationAuditLogsRetentionParamsBody::new(Retention::PeriodInDays {
                    retention_period_in_days: 365,
                }),
            ),
        )
        .await
        .expect("set retention");
    assert_eq!(retention.retention_period_in_days, Some(365));
    let read_back = workos
        .audit_logs()
        .get_organization_audit_logs_retention(&organization.id)
        .await
        .expect("get retention");
    assert_eq!(read_back.retention_period_in_days, Some(365));

    let error = client(&app, "sk_wrong")
        .organizations()
        .get_organization(&organization.id)
        .await
        .expect_err("401");
    assert_eq!(api_status(error), 401);
}
