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
    let metrics = app.metrics().await;
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

/// The first error's field and code of a 422, asserting the status.
async fn refused_field(response: reqwest::Response, what: &str) -> (String, String) {
    assert_eq!(response.status(), 422, "{what}");
    let refused = body(response).await;
    (
        refused["errors"][0]["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        refused["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Issue 5: a NUL character anywhere text enters (body strings and keys, query parameters, path
/// segments, form fields) is a 422 naming the field, before storage, so both backends answer
/// the same; a batch keeps its valid events.
#[tokio::test]
async fn issue_5_nul_characters_are_refused_naming_the_field_on_every_input() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let with = |pointer: &str, value: Value| {
        let mut submitted = event("user.signed_in");
        *submitted.pointer_mut(pointer).expect("pointer") = value;
        submitted
    };
    for (submitted, field) in [
        (with("/action", json!("user.\u{0}")), "event.action"),
        (with("/actor/id", json!("u\u{0}")), "event.actor.id"),
        (with("/actor/name", json!("\u{0}Jon")), "event.actor.name"),
        (with("/actor/type", json!("user\u{0}")), "event.actor.type"),
        (
            with("/targets/0/id", json!("t\u{0}")),
            "event.targets[0].id",
        ),
        (
            with("/targets/0/type", json!("\u{0}")),
            "event.targets[0].type",
        ),
        (
            with("/context/location", json!("1.2.3.4\u{0}")),
            "event.context.location",
        ),
        (
            with("/context/user_agent", json!("UA\u{0}")),
            "event.context.user_agent",
        ),
        (
            with("/metadata", json!({"note": "a\u{0}b"})),
            "event.metadata.note",
        ),
        (
            with("/metadata", json!({"k\u{0}": "v"})),
            "event.metadata.k\\u0000",
        ),
        (
            with("/occurred_at", json!("2026-08-01T10:00:00Z\u{0}")),
            "event.occurred_at",
        ),
    ] {
        let response = app.create_event(&organization, &submitted, None).await;
        assert_eq!(refused_field(response, field).await.0, field);
    }
    let response = app
        .post(
            "/audit_logs/events",
            &json!({"organization_id": format!("{organization}\u{0}"), "event": event("a.b")}),
        )
        .await;
    assert_eq!(
        refused_field(response, "organization_id").await.0,
        "organization_id"
    );

    // A batch with one NUL event stores the others.
    let mut bad = event("user.signed_in");
    bad["actor"]["name"] = json!("Jon\u{0}");
    let batch = body(
        app.post(
            "/audit_logs/events/batch",
            &json!({"organization_id": organization,
                    "events": [event("a.first"), bad, event("a.third")]}),
        )
        .await,
    )
    .await;
    assert_eq!(batch["data"][0]["success"], true, "{batch}");
    assert_eq!(batch["data"][1]["status"], 422, "{batch}");
    assert_eq!(
        batch["data"][1]["errors"][0]["field"],
        "events[1].actor.name"
    );
    assert_eq!(batch["data"][2]["success"], true, "{batch}");
    let stored = app.stored_events(&organization).await;
    let actions: Vec<&str> = stored
        .iter()
        .filter_map(|e| e.body["action"].as_str())
        .collect();
    assert_eq!(actions, ["a.first", "a.third"]);
    // Outside `events`, NUL refuses the whole batch, in a value or in a member's name.
    for (extra, field) in [
        (json!({"note": "a\u{0}b"}), "note"),
        (json!({"note\u{0}": 1}), "note\\u0000"),
    ] {
        let mut request = json!({"organization_id": organization, "events": [event("a.fourth")]});
        request
            .as_object_mut()
            .expect("an object")
            .extend(extra.as_object().expect("an object").clone());
        let response = app.post("/audit_logs/events/batch", &request).await;
        assert_eq!(refused_field(response, field).await.0, field);
    }
    assert_eq!(app.stored_events(&organization).await.len(), 2);

    // Query parameters, path segments and other bodies.
    let search = |query: &str| format!("/audit_logs/events?organization_id={organization}&{query}");
    for (path, field) in [
        (search("q=abc%00def"), "q"),
        (search("actions=user.%00"), "actions"),
        (search("actor_names=Jon%00"), "actor_names"),
        (search("range_start=2026-01-01T00:00:00Z%00"), "range_start"),
        (search("q%00=abc"), "q\\u0000"),
        ("/audit_logs/events/event_%00".to_owned(), "id"),
        ("/audit_logs/exports/audit_log_export_%00".to_owned(), "id"),
        ("/audit_logs/streams/log_stream_%00".to_owned(), "id"),
        (format!("/organizations/{organization}%00"), "id"),
        ("/audit_logs/actions/user.%00/schemas".to_owned(), "action"),
        (
            format!("/audit_logs/ledger/inclusion?organization_id={organization}&event_id=e%00"),
            "event_id",
        ),
        ("/organizations?search=Ac%00".to_owned(), "search"),
    ] {
        let response = app.get(&path).await;
        assert_eq!(refused_field(response, &path).await.0, field, "{path}");
    }
    for (path, request, field) in [
        (
            "/audit_logs/exports".to_owned(),
            json!({"organization_id": organization, "actions": ["user.\u{0}"]}),
            "actions[0]",
        ),
        (
            "/audit_logs/exports".to_owned(),
            json!({"organization_id": organization, "q": "ab\u{0}c"}),
            "q",
        ),
        (
            "/organizations".to_owned(),
            json!({"name": "Acme\u{0}"}),
            "name",
        ),
        (
            format!("/organizations/{organization}/legal_hold"),
            json!({"active": true, "reason": "court \u{0} order"}),
            "reason",
        ),
        (
            "/audit_logs/actions/user.signed_in/schemas".to_owned(),
            json!({"targets": [{"type": "team\u{0}"}]}),
            "targets[0].type",
        ),
        (
            "/audit_logs/streams".to_owned(),
            json!({"organization_id": organization, "type": "http", "name": "S\u{0}",
                   "config": {"url": "http://127.0.0.1:9/hook"}}),
            "name",
        ),
        (
            "/portal/generate_link".to_owned(),
            json!({"organization": organization, "intent": "audit_logs", "return_url": "https://a.test/\u{0}"}),
            "return_url",
        ),
    ] {
        let response = if path.ends_with("legal_hold") {
            app.put(&path, &request).await
        } else {
            app.post(&path, &request).await
        };
        assert_eq!(refused_field(response, &path).await.0, field, "{path}");
    }
    // Nothing of that reached storage, and the log still searches and exports.
    assert_eq!(app.stored_events(&organization).await.len(), 2);
    let found = body(app.get(&search("q=first")).await).await;
    assert_eq!(found["data"].as_array().map(Vec::len), Some(1), "{found}");
    let export = app
        .post(
            "/audit_logs/exports",
            &json!({"organization_id": organization, "q": "third"}),
        )
        .await;
    assert_eq!(export.status(), 201);
    assert_eq!(app.get("/healthz").await.status(), 200);
}

/// Issue 6: integer parameters out of range are a 422 naming the field, never wrapped or
/// clamped.
#[tokio::test]
async fn issue_6_out_of_range_integers_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    for n in 0..3 {
        let mut submitted = event("user.signed_in");
        submitted["metadata"] = json!({"n": n});
        app.create_event(&organization, &submitted, None).await;
    }
    let stream = body(
        app.post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "http", "name": "S",
                    "config": {"url": "http://127.0.0.1:9/hook"}}),
        )
        .await,
    )
    .await;
    let replay = format!(
        "/audit_logs/streams/{}/replay",
        stream["id"].as_str().unwrap_or_default()
    );
    // The log holds 4 events (the 3 and the record of the stream's creation): 4 names its end,
    // 5 is past it.
    for from in [
        json!(5),
        json!(9_223_372_036_854_775_808_u64),
        json!(u64::MAX),
        json!(-1),
        json!(1.5),
        json!("1"),
        json!(1e30),
    ] {
        let response = app.post(&replay, &json!({"from_sequence": from})).await;
        assert_eq!(
            refused_field(response, &from.to_string()).await.0,
            "from_sequence"
        );
    }
    for from in [0_u64, 3] {
        let replayed = body(app.post(&replay, &json!({"from_sequence": from})).await).await;
        assert_eq!(replayed["cursor"], json!(from.checked_sub(1)), "{replayed}");
    }

    let search = |query: &str| format!("/audit_logs/events?organization_id={organization}&{query}");
    let first = body(app.get(&search("order=asc&limit=1")).await).await["data"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for (path, field) in [
        (search("after=18446744073709551616"), "after"),
        (search("before=-1"), "before"),
        (search("limit=18446744073709551616"), "limit"),
        (
            format!(
                "/audit_logs/ledger/inclusion?organization_id={organization}&event_id={first}&tree_size=18446744073709551616"
            ),
            "tree_size",
        ),
        (
            format!(
                "/audit_logs/ledger/consistency?organization_id={organization}&first=0&second=3"
            ),
            "first",
        ),
        (
            format!(
                "/audit_logs/ledger/consistency?organization_id={organization}&first=1&second=9223372036854775808"
            ),
            "second",
        ),
    ] {
        let response = app.get(&path).await;
        assert_eq!(refused_field(response, &path).await.0, field, "{path}");
    }
    let beyond = body(
        app.get(&search("after=9223372036854775807&order=asc"))
            .await,
    )
    .await;
    assert_eq!(
        beyond["data"],
        json!([]),
        "a cursor past the end finds nothing"
    );

    for (path, request, field, put) in [
        (
            format!("/organizations/{organization}/audit_logs_retention"),
            json!({"retention_period_in_days": 18_446_744_073_709_551_615_u64}),
            "retention_period_in_days",
            true,
        ),
        (
            format!("/organizations/{organization}/audit_logs_retention"),
            json!({"retention_period_in_days": -30}),
            "retention_period_in_days",
            true,
        ),
        (
            "/audit_logs/streams".to_owned(),
            json!({"organization_id": organization, "type": "http", "name": "S",
                   "config": {"url": "http://127.0.0.1:9/hook", "batch": {"max_events": 1_000_000_000_000_u64}}}),
            "config.batch.max_events",
            false,
        ),
        (
            "/audit_logs/streams".to_owned(),
            json!({"organization_id": organization, "type": "http", "name": "S",
                   "config": {"url": "http://127.0.0.1:9/hook", "batch": {"max_wait_seconds": 1e300}}}),
            "config.batch.max_wait_seconds",
            false,
        ),
    ] {
        let response = if put {
            app.put(&path, &request).await
        } else {
            app.post(&path, &request).await
        };
        assert_eq!(refused_field(response, &path).await.0, field, "{request}");
    }
    let mut versioned = event("user.signed_in");
    versioned["version"] = json!(4_294_967_296_u64);
    let response = app.create_event(&organization, &versioned, None).await;
    assert_eq!(refused_field(response, "version").await.0, "event.version");
}

/// Issue 8: a filter that would do nothing is refused: an unknown search parameter or export
/// field (`action`, `actor_name`) and an empty value (`actions=`, `q=`, `[""]`) are a 422
/// naming it; WorkOS's export names, `actors` included, work.
#[tokio::test]
async fn issue_8_unknown_and_empty_filters_are_refused_never_ignored() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    app.create_event(&organization, &event("user.signed_in"), None)
        .await;
    let mut other = event("team.created");
    other["actor"]["name"] = json!("Ann Lee");
    app.create_event(&organization, &other, None).await;

    let search = |query: &str| format!("/audit_logs/events?organization_id={organization}&{query}");
    for (query, field, code) in [
        ("action=user.signed_in", "action", "unknown_parameter"),
        ("actor_name=Jon", "actor_name", "unknown_parameter"),
        ("target=team_1", "target", "unknown_parameter"),
        ("actions=", "actions", "empty"),
        ("actions=user.signed_in,", "actions", "empty"),
        ("actor_ids=", "actor_ids", "empty"),
        ("target_types[]=", "target_types", "empty"),
        ("q=", "q", "empty"),
        ("range_start=", "range_start", "empty"),
    ] {
        let response = app.get(&search(query)).await;
        assert_eq!(
            refused_field(response, query).await,
            (field.to_owned(), code.to_owned()),
            "{query}"
        );
    }
    let filtered = body(app.get(&search("actions=team.created")).await).await;
    assert_eq!(filtered["data"].as_array().map(Vec::len), Some(1));
    let listed = body(app.get(&search("actions[]=team.created&limit=5")).await).await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));

    let export = |extra: Value| {
        let mut request = json!({"organization_id": organization});
        if let (Some(request), Some(extra)) = (request.as_object_mut(), extra.as_object()) {
            request.extend(extra.clone());
        }
        request
    };
    for (extra, field, code) in [
        (
            json!({"action": ["user.signed_in"]}),
            "action",
            "unknown_field",
        ),
        (
            json!({"actor_name": ["Jon Smith"]}),
            "actor_name",
            "unknown_field",
        ),
        (
            json!({"target_type": ["team"]}),
            "target_type",
            "unknown_field",
        ),
        (json!({"actions": [""]}), "actions", "empty"),
        (json!({"actor_names": [" "]}), "actor_names", "empty"),
        (json!({"q": ""}), "q", "empty"),
    ] {
        let response = app
            .post("/audit_logs/exports", &export(extra.clone()))
            .await;
        assert_eq!(
            refused_field(response, &extra.to_string()).await,
            (field.to_owned(), code.to_owned()),
            "{extra}"
        );
    }
    for extra in [
        json!({"actors": ["Ann Lee"]}),
        json!({"actor_names": ["Ann Lee"], "actions": [], "targets": null}),
    ] {
        let created = app
            .post("/audit_logs/exports", &export(extra.clone()))
            .await;
        assert_eq!(created.status(), 201, "{extra}");
        let id = body(created).await["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut ready = json!(null);
        for _ in 0..200 {
            ready = body(app.get(&format!("/audit_logs/exports/{id}")).await).await;
            if ready["state"] != "pending" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(ready["row_count"], 1, "{extra}: {ready}");
    }
}

/// Issue 9: the batch endpoint's 413 names its own limit (16 times the normal one).
#[tokio::test]
async fn issue_9_the_batch_413_names_the_batch_limit() {
    let app = TestApp::spawn_with(Options {
        max_body_bytes: 1024,
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    let events: Vec<Value> = (0..120).map(|_| event("bulk.import")).collect();
    let request = json!({"organization_id": organization, "events": events});
    assert!(request.to_string().len() > 16 * 1024);
    let response = app.post("/audit_logs/events/batch", &request).await;
    assert_eq!(response.status(), 413);
    let refused = body(response).await;
    assert_eq!(refused["code"], "payload_too_large");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("16384"),
        "{refused}"
    );
    let response = app
        .post(
            "/audit_logs/events",
            &json!({"organization_id": organization, "event": event("x.y"), "pad": "x".repeat(2000)}),
        )
        .await;
    assert_eq!(response.status(), 413);
    assert!(
        body(response).await["message"]
            .as_str()
            .unwrap_or_default()
            .contains("1024"),
    );
}
