//! Reading events back: the event object, every search filter, never-miss cursor polling under
//! concurrent and back-dated ingest, and read-your-writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use crate::helpers::{TestApp, body, event};

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

/// Ingests a small, varied log and returns the organization.
async fn seed(app: &TestApp) -> String {
    let organization = app.create_organization("Acme").await;
    let events = [
        (
            "a",
            "user.signed_in",
            "2026-01-01T00:00:00Z",
            "user_1",
            "Jon Smith",
            "team",
            "team_1",
            "203.0.113.7",
        ),
        (
            "b",
            "user.signed_out",
            "2026-02-01T00:00:00Z",
            "user_2",
            "Ann Lee",
            "team",
            "team_2",
            "198.51.100.1",
        ),
        (
            "c",
            "document.updated",
            "2026-03-01T00:00:00Z",
            "user_1",
            "Jon Smith",
            "document",
            "doc_9",
            "203.0.113.7",
        ),
        (
            "d",
            "users.invited",
            "2026-04-01T00:00:00Z",
            "user_3",
            "Zed",
            "user",
            "user_4",
            "192.0.2.5",
        ),
    ];
    for (name, action, at, actor_id, actor_name, target_type, target_id, location) in events {
        let submitted = json!({
            "action": action, "occurred_at": at,
            "actor": {"id": actor_id, "type": "user", "name": actor_name},
            "targets": [{"id": target_id, "type": target_type, "name": format!("Target {target_id}")}],
            "context": {"location": location, "user_agent": "test"},
            "metadata": {"name": name, "reason": format!("because-{name}-happened")}
        });
        assert_eq!(
            app.create_event(&organization, &submitted, Some(name))
                .await
                .status(),
            200
        );
    }
    organization
}

#[tokio::test]
async fn events_read_back_as_the_event_object() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let receipt = body(
        app.create_event(&organization, &event("user.signed_in"), None)
            .await,
    )
    .await;
    let id = receipt["id"].as_str().unwrap_or_default();
    let fetched = body(app.get(&format!("/audit_logs/events/{id}")).await).await;
    let keys: Vec<&str> = fetched
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .collect();
    for key in [
        "object",
        "id",
        "organization_id",
        "sequence",
        "action",
        "occurred_at",
        "received_at",
        "version",
        "actor",
        "targets",
        "context",
        "metadata",
    ] {
        assert!(keys.contains(&key), "missing {key} in {fetched}");
    }
    assert_eq!(fetched["object"], "audit_log_event");
    assert_eq!(
        (
            fetched["sequence"].clone(),
            fetched["organization_id"].clone()
        ),
        (json!(0), json!(organization))
    );
    assert_eq!(fetched["actor"], event("user.signed_in")["actor"]);
    let listed = body(
        app.get(&format!(
            "/audit_logs/events?organization_id={organization}"
        ))
        .await,
    )
    .await;
    assert_eq!(listed["data"][0], fetched);
    assert_eq!(
        app.get("/audit_logs/events/event_01HZZZZZZZZZZZZZZZZZZZZZZZ")
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn every_filter_kind_narrows_the_search() {
    let app = TestApp::spawn().await;
    let organization = seed(&app).await;
    let search = |query: &str| {
        let path = format!("/audit_logs/events?organization_id={organization}&order=asc&{query}");
        let app = &app;
        async move {
            let response = app.get(&path).await;
            assert_eq!(response.status(), 200, "{path}");
            ids(&body(response).await)
        }
    };
    assert_eq!(search("").await, ["a", "b", "c", "d"]);
    assert_eq!(
        search("range_start=2026-02-01T00:00:00Z&range_end=2026-03-01T00:00:00Z").await,
        ["b", "c"]
    );
    assert_eq!(
        search("actions=user.*").await,
        ["a", "b"],
        "a prefix pattern stops at the dot"
    );
    assert_eq!(
        search("actions=document.updated,users.invited").await,
        ["c", "d"]
    );
    assert_eq!(
        search("actions=user.signed_in&actions=users.invited").await,
        ["a", "d"]
    );
    assert_eq!(search("actor_ids=user_1").await, ["a", "c"]);
    assert_eq!(search("actor_names=Ann%20Lee").await, ["b"]);
    assert_eq!(search("target_ids=doc_9,team_2").await, ["b", "c"]);
    assert_eq!(search("target_types=team").await, ["a", "b"]);
    assert_eq!(
        search("q=jon%20smi").await,
        ["a", "c"],
        "free text matches a name, case-insensitively"
    );
    assert_eq!(
        search("q=113.7").await,
        ["a", "c"],
        "free text matches the location"
    );
    assert_eq!(
        search("q=because-d").await,
        ["d"],
        "free text matches metadata values"
    );
    assert_eq!(
        search("q=Target%20doc").await,
        ["c"],
        "free text matches target names"
    );
    assert_eq!(
        search("actor_ids=user_1&target_types=document").await,
        ["c"],
        "filters combine with AND"
    );
    assert_eq!(search("order=desc").await, ["d", "c", "b", "a"]);

    for (query, field) in [
        ("q=ab", "q"),
        ("range_start=yesterday", "range_start"),
        ("after=-1", "after"),
        ("limit=0", "limit"),
    ] {
        let response = app
            .get(&format!(
                "/audit_logs/events?organization_id={organization}&{query}"
            ))
            .await;
        assert_eq!(response.status(), 422, "{query}");
        assert_eq!(body(response).await["errors"][0]["field"], field);
    }
    assert_eq!(
        app.get("/audit_logs/events").await.status(),
        422,
        "organization_id is required"
    );
    assert_eq!(
        app.get("/audit_logs/events?organization_id=org_01HZZZZZZZZZZZZZZZZZZZZZZZ")
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn cursors_are_sequences_in_both_directions() {
    let app = TestApp::spawn().await;
    let organization = seed(&app).await;
    let organization = organization.as_str();
    let page = |query: String| {
        let app = &app;
        async move {
            body(
                app.get(&format!(
                    "/audit_logs/events?organization_id={organization}&{query}"
                ))
                .await,
            )
            .await
        }
    };
    let first = page("order=asc&limit=3".into()).await;
    assert_eq!(ids(&first), ["a", "b", "c"]);
    assert_eq!(
        first["list_metadata"],
        json!({"before": null, "after": "2"})
    );
    let rest = page("order=asc&limit=3&after=2".into()).await;
    assert_eq!(ids(&rest), ["d"]);
    assert_eq!(rest["list_metadata"], json!({"before": "3", "after": null}));

    let newest = page("limit=3".into()).await;
    assert_eq!(ids(&newest), ["d", "c", "b"]);
    assert_eq!(
        newest["list_metadata"],
        json!({"before": "1", "after": null})
    );
    let older = page("limit=3&before=1".into()).await;
    assert_eq!(ids(&older), ["a"]);
    assert_eq!(
        older["list_metadata"],
        json!({"before": null, "after": "0"})
    );
    assert_eq!(
        ids(&page("order=asc&after=0&before=3".into()).await),
        ["b", "c"],
        "both bounds make a range"
    );
}

#[tokio::test]
async fn a_poller_sees_every_event_once_in_log_order_despite_concurrency_and_back_dating() {
    let app = Arc::new(TestApp::spawn().await);
    let organization = app.create_organization("Acme").await;
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let (app, organization) = (Arc::clone(&app), organization.clone());
            tokio::spawn(async move {
                for n in 0..60 {
                    let mut submitted = event("user.signed_in");
                    // Every third event claims to have happened long ago.
                    let day = if n % 3 == 0 { 1 } else { 20 + (n % 5) };
                    submitted["occurred_at"] =
                        json!(format!("2026-01-{day:02}T00:00:00.{writer}{n:02}Z"));
                    submitted["metadata"] = json!({"name": format!("{writer}-{n}")});
                    assert_eq!(
                        app.create_event(&organization, &submitted, None)
                            .await
                            .status(),
                        200
                    );
                }
            })
        })
        .collect();
    let poller = {
        let (app, organization, done) = (Arc::clone(&app), organization.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            let mut seen: Vec<u64> = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let after = seen
                    .last()
                    .map(|s| format!("&after={s}"))
                    .unwrap_or_default();
                let page = body(
                    app.get(&format!(
                        "/audit_logs/events?organization_id={organization}&order=asc&limit=7{after}"
                    ))
                    .await,
                )
                .await;
                let sequences: Vec<u64> = page["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["sequence"].as_u64())
                    .collect();
                if sequences.is_empty() && finished {
                    return seen;
                }
                seen.extend(sequences);
            }
        })
    };
    for writer in writers {
        writer.await.expect("writer");
    }
    done.store(true, Ordering::SeqCst);
    let seen = poller.await.expect("poller");
    assert_eq!(
        seen,
        (0..240).collect::<Vec<u64>>(),
        "every sequence exactly once, in order"
    );
}

#[tokio::test]
async fn an_acknowledged_event_is_immediately_readable() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    for n in 0..50 {
        let mut submitted = event("user.signed_in");
        submitted["metadata"] = json!({"name": format!("n{n}"), "unique": format!("marker{n}x")});
        let receipt = body(app.create_event(&organization, &submitted, None).await).await;
        let id = receipt["id"].as_str().unwrap_or_default();
        assert_eq!(
            app.get(&format!("/audit_logs/events/{id}")).await.status(),
            200
        );
        let found = body(
            app.get(&format!(
                "/audit_logs/events?organization_id={organization}&q=marker{n}x"
            ))
            .await,
        )
        .await;
        assert_eq!(found["data"][0]["id"], id);
    }
}
