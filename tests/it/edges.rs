//! Bad input of every kind gets a 4xx JSON error that says what is wrong, and the server stays
//! healthy; operational endpoints answer without a key.

use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Options, TestApp, body, event};

async fn raw_post(
    app: &TestApp,
    path: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn malformed_bodies_get_json_errors_and_the_server_stays_healthy() {
    let app = TestApp::spawn_with(Options {
        max_body_bytes: 64 * 1024,
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "application/json",
            b"{\"organization_id\": ".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "application/json",
            b"{\"a\": \"\xff\xfe\"}".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "application/json",
            deep.into_bytes(),
            400,
            "recursion limit",
        ),
        ("application/json", b"".to_vec(), 400, "not valid JSON"),
        ("text/plain", b"{}".to_vec(), 415, "Content-Type"),
        (
            "application/x-www-form-urlencoded",
            b"a=b".to_vec(),
            415,
            "Content-Type",
        ),
        (
            "application/json",
            vec![b' '; 70 * 1024],
            413,
            "larger than",
        ),
        (
            "application/json",
            b"[1, 2, 3]".to_vec(),
            422,
            "organization_id",
        ),
        ("application/json", b"null".to_vec(), 422, "organization_id"),
    ];
    for (content_type, bytes, status, needle) in cases {
        let response = raw_post(&app, "/audit_logs/events", content_type, bytes).await;
        assert_eq!(response.status(), status, "{content_type} {needle}");
        let error = body(response).await;
        let text = error.to_string();
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }

    let wrong_types = json!({"organization_id": organization, "event": {
        "action": ["x"], "occurred_at": 5, "version": "2", "actor": "me", "targets": {"id": 1}, "context": {"location": 7}
    }});
    let error = body(app.post("/audit_logs/events", &wrong_types).await).await;
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
            "event.version",
            "event.actor",
            "event.targets",
            "event.context.location"
        ]
    );

    let mut huge = event("user.signed_in");
    huge["actor"]["id"] = json!("x".repeat(501));
    huge["targets"] = Value::Array(
        (0..150)
            .map(|i| json!({"id": format!("t{i}"), "type": "team"}))
            .collect(),
    );
    huge["context"]["user_agent"] = json!("u".repeat(2001));
    huge["action"] = json!("a".repeat(201));
    let response = app.create_event(&organization, &huge, None).await;
    assert_eq!(response.status(), 422);
    let error = body(response).await;
    let codes: Vec<(String, String)> = error["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["field"].as_str().unwrap_or_default().to_owned(),
                e["code"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            ("event.action".to_owned(), "too_long".to_owned()),
            ("event.actor.id".to_owned(), "too_long".to_owned()),
            ("event.targets".to_owned(), "too_many".to_owned()),
            ("event.context.user_agent".to_owned(), "too_long".to_owned()),
        ]
    );

    assert_eq!(
        body(
            app.client
                .get(app.url("/healthz"))
                .send()
                .await
                .expect("healthz")
        )
        .await["status"],
        "ok"
    );
    assert_eq!(
        app.create_event(&organization, &event("still.works"), None)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn out_of_range_query_parameters_are_named_never_clamped() {
    let app = TestApp::spawn().await;
    for (query, field) in [
        ("limit=-1", "limit"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("order=sideways", "order"),
        ("before=a&after=b", "before"),
    ] {
        let response = app.get(&format!("/organizations?{query}")).await;
        assert_eq!(response.status(), 422, "{query}");
        assert_eq!(body(response).await["errors"][0]["field"], field, "{query}");
    }
    let response = app
        .get("/audit_logs/actions/x/schemas?after=notanumber")
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(body(response).await["errors"][0]["field"], "after");
    assert_eq!(app.get("/organizations?search=%ZZ").await.status(), 400);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_json() {
    let app = TestApp::spawn().await;
    let response = app.get("/no/such/path").await;
    assert_eq!(response.status(), 404);
    assert!(
        body(response).await["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/no/such/path")
    );
    let response = app
        .client
        .delete(app.url("/audit_logs/events"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 405);
    assert!(body(response).await["message"].is_string());
}

#[tokio::test]
async fn a_client_request_id_is_echoed_and_one_is_made_otherwise() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-123")
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["x-request-id"], "trace-123");
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .expect("request");
    assert!(
        response.headers()["x-request-id"]
            .to_str()
            .unwrap_or_default()
            .starts_with("req_")
    );
}

#[tokio::test]
async fn operational_endpoints_need_no_key() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    app.create_event(&organization, &event("user.signed_in"), None)
        .await;

    assert_eq!(
        body(
            app.client
                .get(app.url("/readyz"))
                .send()
                .await
                .expect("readyz")
        )
        .await["status"],
        "ready"
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("trailmark_events_ingested_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("trailmark_http_requests_total{method=\"POST\",route=\"/audit_logs/events\",status=\"200\"} 1"), "{metrics}");
    assert!(
        metrics.contains("trailmark_http_request_duration_seconds_count{route=\"/organizations\"}"),
        "{metrics}"
    );

    let openapi = body(
        app.client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .expect("openapi"),
    )
    .await;
    assert_eq!(openapi["openapi"], "3.1.0");
    // Every documented path answers with something other than the 404 for unknown routes.
    for (path, operations) in openapi["paths"].as_object().into_iter().flatten() {
        let concrete = path
            .replace("{id}", &organization)
            .replace("{action}", "user.signed_in");
        for method in operations
            .as_object()
            .into_iter()
            .flatten()
            .map(|(m, _)| m.to_ascii_uppercase())
        {
            let response = app
                .client
                .request(method.parse().expect("method"), app.url(&concrete))
                .bearer_auth(ADMIN_KEY)
                .json(&json!({}))
                .send()
                .await
                .expect("request");
            let text = response.text().await.unwrap_or_default();
            assert!(
                !text.contains("could not be found"),
                "{method} {path} is documented but not routed"
            );
        }
    }
}
