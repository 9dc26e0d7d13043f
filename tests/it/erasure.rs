//! Erasure: a person's data leaves every event, every read, the index, the store's files and
//! exports made afterwards, while every leaf hash, inclusion and consistency proof and the
//! offline audit still verify; a legal hold blocks it unless forced with a reason; the erasure
//! is itself recorded, without the erased value.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use trailmark_ledger::checkpoint::NoteVerifier;
use trailmark_ledger::leaf::event_leaf_hash;

use crate::helpers::{TestApp, TestDatabase, body, event};

/// What each of Ada's events says about her, which the erasure must remove everywhere.
const ADA_SECRETS: [&str; 4] = [
    "user_ada_71",
    "Ada Lovelace",
    "AnalyticalEngine/1843",
    "198.51.100.77",
];

fn adas_event(n: usize) -> Value {
    json!({
        "action": "document.viewed",
        "occurred_at": "2026-08-01T10:00:00.000Z",
        "actor": {"id": "user_ada_71", "name": "Ada Lovelace", "type": "user",
                  "metadata": {"department": "Mathematics"}},
        "targets": [{"id": format!("doc_{n}"), "type": "document", "name": format!("Notes {n}")}],
        "context": {"location": "198.51.100.77", "user_agent": "AnalyticalEngine/1843"},
        "metadata": {"page": n}
    })
}

async fn erase(app: &TestApp, request: &Value) -> reqwest::Response {
    app.post("/audit_logs/erasures", request).await
}

/// Every file under `dir`, concatenated (the SQLite database, its WAL and the log's segments).
fn files_under(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            bytes.extend(files_under(&path));
        } else {
            bytes.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    bytes
}

/// Where the store keeps events, as an attacker reading its files or tables would see it.
async fn stored_text(app: &TestApp) -> String {
    match &app.database {
        TestDatabase::Sqlite(_) => {
            String::from_utf8_lossy(&files_under(app.data_dir.path())).into_owned()
        }
        TestDatabase::Postgres { .. } => {
            let (client, connection) =
                tokio_postgres::connect(&app.database.url(), tokio_postgres::NoTls)
                    .await
                    .expect("connect");
            tokio::spawn(connection);
            let rows = client
                .query(
                    "SELECT body FROM events
                     UNION ALL SELECT value FROM search_block_terms
                     UNION ALL SELECT encode(text_values, 'escape') FROM search_blocks",
                    &[],
                )
                .await
                .expect("read events");
            rows.iter().map(|row| row.get::<_, String>(0)).collect()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_actor_is_gone_everywhere_and_every_proof_still_verifies() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let mut adas = Vec::new();
    for n in 0..3 {
        let response = app.create_event(&organization, &adas_event(n), None).await;
        assert_eq!(response.status(), 200);
        adas.push(
            body(response).await["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        // Identical events without an idempotency key count as one retried request.
        let mut other = event("user.signed_in");
        other["metadata"] = json!({"attempt": n});
        let response = app.create_event(&organization, &other, None).await;
        assert_eq!(response.status(), 200, "{}", body(response).await);
    }
    let key = body(app.get("/audit_logs/ledger/public_key").await).await;
    let verifier =
        NoteVerifier::parse(key["verifier_key"].as_str().unwrap_or_default()).expect("key");
    let before = verifier
        .verify(
            app.wait_for_checkpoint(&organization, 6).await["checkpoint"]
                .as_str()
                .unwrap_or_default(),
        )
        .expect("verifies");
    let original: Vec<Value> = {
        let mut events = Vec::new();
        for id in &adas {
            events.push(body(app.get(&format!("/audit_logs/events/{id}")).await).await);
        }
        events
    };
    assert!(
        original.iter().all(|e| e["salt"].is_string()),
        "leaf version 2"
    );

    let response = erase(
        &app,
        &json!({"organization_id": organization, "subject": {"actor_id": "user_ada_71"}}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let done = body(response).await;
    assert_eq!(
        done,
        json!({"object": "audit_log_erasure", "organization_id": organization,
               "subject": "actor", "fields": ["id", "name", "metadata", "location", "user_agent"],
               "erased_events": 3, "purged_events": 0})
    );

    // Every read shows the values erased and the rest intact; the leaf hash still matches.
    for (id, original) in adas.iter().zip(&original) {
        let erased = body(app.get(&format!("/audit_logs/events/{id}")).await).await;
        for pointer in [
            "/actor/id",
            "/actor/name",
            "/actor/metadata/department",
            "/context/location",
            "/context/user_agent",
        ] {
            assert_eq!(
                erased.pointer(pointer),
                Some(&json!("[erased]")),
                "{erased}"
            );
        }
        for pointer in [
            "/targets/0/id",
            "/targets/0/name",
            "/metadata/page",
            "/action",
        ] {
            assert_eq!(erased.pointer(pointer), original.pointer(pointer));
        }
        assert_eq!(erased["leaf_hash"], original["leaf_hash"]);
        assert!(
            erased.get("salt").is_none(),
            "the seed would reveal the erased values' salts"
        );
        let mut object = erased.clone();
        object.as_object_mut().map(|o| o.remove("leaf_hash"));
        assert_eq!(
            trailmark_ledger::encode_hash(&event_leaf_hash(&object)),
            erased["leaf_hash"].as_str().unwrap_or_default(),
            "anyone can recompute the leaf from the erased event"
        );
    }
    for query in [
        "actor_ids=user_ada_71".to_owned(),
        "q=lovelace".to_owned(),
        "q=analyticalengine".to_owned(),
        "q=mathematics".to_owned(),
    ] {
        let found = body(
            app.get(&format!(
                "/audit_logs/events?organization_id={organization}&{query}"
            ))
            .await,
        )
        .await;
        assert_eq!(found["data"], json!([]), "{query}");
    }
    let stored = stored_text(&app).await;
    for secret in ADA_SECRETS {
        assert!(!stored.contains(secret), "{secret} is still stored");
    }

    // The erasure is in the log, without the value it erased.
    let all = body(
        app.get(&format!(
            "/audit_logs/events?organization_id={organization}&limit=100&order=desc"
        ))
        .await,
    )
    .await;
    let record = &all["data"][0];
    assert_eq!(record["action"], "trailmark.erasure.completed");
    assert_eq!(record["metadata"]["subject"], "actor");
    assert_eq!(record["metadata"]["erased_events"], 3);
    assert!(!record.to_string().contains("user_ada_71"), "{record}");

    // Proofs: the old checkpoint is extended consistently, every event is included.
    let after = verifier
        .verify(
            app.wait_for_checkpoint(&organization, 7).await["checkpoint"]
                .as_str()
                .unwrap_or_default(),
        )
        .expect("verifies");
    app.assert_consistent(&organization, (6, &before.root), (7, &after.root))
        .await;
    for id in &adas {
        app.assert_included(&organization, id, 7, &after.root).await;
    }

    // An export made afterwards holds no erased value and verifies offline.
    let created = body(
        app.post(
            "/audit_logs/exports",
            &json!({"organization_id": organization, "format": "ndjson"}),
        )
        .await,
    )
    .await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let mut export = created;
    for _ in 0..200 {
        if export["state"] != "pending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        export = body(app.get(&format!("/audit_logs/exports/{id}")).await).await;
    }
    assert_eq!(export["state"], "ready", "{export}");
    let ndjson = app
        .client
        .get(export["url"].as_str().unwrap_or_default())
        .send()
        .await
        .expect("download")
        .text()
        .await
        .expect("text");
    for secret in ADA_SECRETS {
        assert!(!ndjson.contains(secret), "{secret} is in the export");
    }
    let file = app.data_dir.path().join("after-erasure.ndjson");
    std::fs::write(&file, &ndjson).expect("write");
    let public_key = key["verifier_key"].as_str().unwrap_or_default();
    let verified = Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args([
            "verify",
            file.to_str().unwrap_or_default(),
            "--public-key",
            public_key,
        ])
        .output()
        .expect("verify");
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    let audited = Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args([
            "verify",
            &format!("--database={}", app.database.url()),
            "--data-dir",
            app.data_dir.path().to_str().unwrap_or_default(),
            "--public-key",
            public_key,
        ])
        .output()
        .expect("verify");
    assert!(
        audited.status.success(),
        "{}",
        String::from_utf8_lossy(&audited.stdout)
    );

    // A restart reads the erased bodies back.
    let app = app.restart().await;
    let erased = body(app.get(&format!("/audit_logs/events/{}", adas[0])).await).await;
    assert_eq!(erased["actor"]["id"], "[erased]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_and_a_target_are_erased_wherever_they_appear() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let mut submitted = event("invoice.sent");
    submitted["metadata"] = json!({"recipient": "grace@navy.test", "amount": 12});
    submitted["targets"] = json!([
        {"id": "invoice_9", "type": "invoice"},
        {"id": "customer_grace", "type": "customer", "name": "Grace Hopper"}
    ]);
    let receipt = body(app.create_event(&organization, &submitted, None).await).await;
    let id = receipt["id"].as_str().unwrap_or_default();

    let by_value = body(
        erase(
            &app,
            &json!({"organization_id": organization, "subject": {"value": "grace@navy.test"}}),
        )
        .await,
    )
    .await;
    assert_eq!(by_value["erased_events"], 1, "{by_value}");
    let by_target = body(
        erase(
            &app,
            &json!({"organization_id": organization, "subject": {"target_id": "customer_grace"},
                    "fields": ["name"]}),
        )
        .await,
    )
    .await;
    assert_eq!(by_target["erased_events"], 1, "{by_target}");

    let erased = body(app.get(&format!("/audit_logs/events/{id}")).await).await;
    assert_eq!(erased["metadata"]["recipient"], "[erased]");
    assert_eq!(erased["metadata"]["amount"], 12);
    assert_eq!(erased["targets"][1]["name"], "[erased]");
    assert_eq!(
        erased["targets"][1]["id"], "customer_grace",
        "only the fields asked for"
    );
    assert_eq!(erased["targets"][0]["id"], "invoice_9");
    assert_eq!(erased["actor"]["name"], "Jon Smith");
    assert_eq!(erased["leaf_hash"], receipt["leaf_hash"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legal_hold_blocks_an_erasure_unless_forced_with_a_reason() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let receipt = body(app.create_event(&organization, &adas_event(0), None).await).await;
    let id = receipt["id"].as_str().unwrap_or_default();
    app.put(
        &format!("/organizations/{organization}/legal_hold"),
        &json!({"active": true, "reason": "Case 2026-41"}),
    )
    .await;
    let request = json!({"organization_id": organization, "subject": {"actor_id": "user_ada_71"}});

    let held = erase(&app, &request).await;
    assert_eq!(held.status(), 409);
    let held = body(held).await;
    assert_eq!(held["code"], "legal_hold");
    assert_eq!(held["errors"][0]["field"], "force");
    assert!(
        held["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Case 2026-41")
    );
    let unchanged = body(app.get(&format!("/audit_logs/events/{id}")).await).await;
    assert_eq!(
        unchanged["actor"]["id"], "user_ada_71",
        "nothing was erased"
    );

    let mut forced = request.clone();
    forced["force"] = json!(true);
    let no_reason = erase(&app, &forced).await;
    assert_eq!(no_reason.status(), 422);
    assert_eq!(body(no_reason).await["errors"][0]["field"], "reason");

    forced["reason"] = json!("Court order 17 overrides the hold");
    let done = erase(&app, &forced).await;
    assert_eq!(done.status(), 200);
    assert_eq!(body(done).await["erased_events"], 1);
    let all = body(
        app.get(&format!(
            "/audit_logs/events?organization_id={organization}&order=desc&limit=1"
        ))
        .await,
    )
    .await;
    let record = &all["data"][0];
    assert_eq!(record["action"], "trailmark.erasure.completed");
    assert_eq!(record["metadata"]["forced_under_legal_hold"], true);
    assert_eq!(
        record["metadata"]["reason"],
        "Court order 17 overrides the hold"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_request_names_each_bad_field() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let cases = [
        (json!({"subject": {"actor_id": "a"}}), "organization_id"),
        (json!({"organization_id": organization}), "subject"),
        (
            json!({"organization_id": organization, "subject": {"actor_id": "a", "value": "b"}}),
            "subject",
        ),
        (
            json!({"organization_id": organization, "subject": {"actor_id": ""}}),
            "subject.actor_id",
        ),
        (
            json!({"organization_id": organization, "subject": {"actor_id": "a"}, "fields": ["shoe"]}),
            "fields[0]",
        ),
        (
            json!({"organization_id": organization, "subject": {"value": "a"}, "fields": ["id"]}),
            "fields",
        ),
        (
            json!({"organization_id": organization, "subject": {"target_id": "a"}, "fields": ["location"]}),
            "fields",
        ),
        (
            json!({"organization_id": organization, "subject": {"actor_id": "a"}, "force": "yes"}),
            "force",
        ),
    ];
    for (request, field) in cases {
        let response = erase(&app, &request).await;
        assert_eq!(response.status(), 422, "{request}");
        let problem = body(response).await;
        assert_eq!(problem["errors"][0]["field"], field, "{request}: {problem}");
    }
    let unknown = erase(
        &app,
        &json!({"organization_id": "org_01ARZ3NDEKTSV4RRFFQ69G5FAV", "subject": {"actor_id": "a"}}),
    )
    .await;
    assert_eq!(unknown.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_rewrites_exports_made_before_it_and_their_links_serve_the_new_file() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    for n in 0..2 {
        let response = app.create_event(&organization, &adas_event(n), None).await;
        assert_eq!(response.status(), 200);
    }
    let created = body(
        app.post(
            "/audit_logs/exports",
            &json!({"organization_id": organization}),
        )
        .await,
    )
    .await;
    let path = format!(
        "/audit_logs/exports/{}",
        created["id"].as_str().unwrap_or_default()
    );
    let mut before = created;
    for _ in 0..200 {
        if before["state"] != "pending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        before = body(app.get(&path).await).await;
    }
    assert_eq!(before["state"], "ready", "{before}");
    let link = before["url"].as_str().unwrap_or_default().to_owned();
    let csv = app
        .client
        .get(&link)
        .send()
        .await
        .expect("download")
        .text()
        .await
        .expect("text");
    assert!(csv.contains("Ada Lovelace"), "{csv}");

    let done = erase(
        &app,
        &json!({"organization_id": organization, "subject": {"actor_id": "user_ada_71"}}),
    )
    .await;
    assert_eq!(done.status(), 200);
    // The erasure answers once its exports are rewritten.
    let after = body(app.get(&path).await).await;
    assert_ne!(after["updated_at"], before["updated_at"], "{after}");
    assert_eq!(after["state"], "ready");
    assert_eq!(after["row_count"], before["row_count"]);
    let response = app.client.get(&link).send().await.expect("download");
    assert_eq!(response.status(), 200, "the link issued before still works");
    let csv = response.text().await.expect("text");
    for secret in ADA_SECRETS {
        assert!(
            !csv.contains(secret),
            "{secret} is in the rewritten export: {csv}"
        );
    }
    assert!(
        csv.contains("Notes 1"),
        "the rest of the event stays: {csv}"
    );
}
