//! Exports: WorkOS's create/get shapes, CSV, NDJSON and OCSF files matching what was ingested,
//! signed links, resumption after a restart, `trailmark export`, and isolation between
//! organizations.

use std::process::Command;

use serde_json::{Value, json};
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::{ApiKeySecret, Scope};
use trailmark_store::ApiKeyRecord;

use crate::helpers::{ADMIN_KEY, TestApp, body, event};

async fn ingest(app: &TestApp, organization: &str, count: usize) -> Vec<Value> {
    let mut sent = Vec::new();
    for n in 0..count {
        let mut submitted = event(if n % 2 == 0 {
            "user.signed_in"
        } else {
            "user.signed_out"
        });
        submitted["occurred_at"] = json!(format!("2026-05-01T00:00:{:02}.000Z", n % 60));
        submitted["actor"]["name"] = json!(if n == 0 {
            "=HYPERLINK(\"http://evil\")".to_owned()
        } else {
            format!("Person, {n}")
        });
        submitted["metadata"] = json!({"n": n});
        assert_eq!(
            app.create_event(organization, &submitted, Some(&format!("k{n}")))
                .await
                .status(),
            200
        );
        sent.push(submitted);
    }
    sent
}

/// Polls the export until it leaves `pending`; returns the last object.
async fn wait_ready(app: &TestApp, id: &str) -> Value {
    for _ in 0..200 {
        let export = body(app.get(&format!("/audit_logs/exports/{id}")).await).await;
        if export["state"] != "pending" {
            return export;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("export {id} stayed pending");
}

async fn export(app: &TestApp, request: Value) -> Value {
    let response = app.post("/audit_logs/exports", &request).await;
    assert_eq!(response.status(), 201);
    let created = body(response).await;
    assert_eq!(created["object"], "audit_log_export");
    assert_eq!(created["state"], "pending");
    assert!(
        created["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("audit_log_export_"))
    );
    wait_ready(app, created["id"].as_str().unwrap_or_default()).await
}

fn range(organization: &str) -> Value {
    json!({"organization_id": organization, "range_start": "2026-01-01T00:00:00Z", "range_end": "2026-12-31T00:00:00Z"})
}

#[tokio::test]
async fn a_csv_export_holds_every_ingested_event_in_log_order() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let sent = ingest(&app, &organization, 25).await;
    let ready = export(&app, range(&organization)).await;
    // The 25 events, then the record of this export's creation (sequence 25), which its range
    // covers: an export is recorded before it is written.
    assert_eq!(
        (ready["state"].clone(), ready["row_count"].clone()),
        (json!("ready"), json!(26))
    );
    let url = ready["url"].as_str().unwrap_or_default();
    assert!(url.starts_with(&app.base), "{url}");

    let response = app.client.get(url).send().await.expect("download");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/csv")
    );
    let csv = response.text().await.expect("csv");
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], trailmark_domain::export::CSV_COLUMNS.join(","));
    assert_eq!(lines.len(), 27);
    assert!(
        lines[1].contains("\"'=HYPERLINK(\"\"http://evil\"\")\""),
        "formula neutralized: {}",
        lines[1]
    );
    assert!(
        lines[2].contains(",\"Person, 1\","),
        "commas quoted: {}",
        lines[2]
    );
    for (n, line) in lines[1..26].iter().enumerate() {
        assert!(
            line.contains(&format!(",{n},2026-05-01T00:00:")),
            "row {n} out of order: {line}"
        );
        assert!(line.contains(sent[n]["action"].as_str().unwrap_or_default()));
    }
    assert!(
        lines[26].contains("trailmark.export.created") && lines[26].contains(",25,"),
        "the record of the export, last: {}",
        lines[26]
    );
}

#[tokio::test]
async fn an_ndjson_export_with_filters_holds_exactly_the_matching_event_objects() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    ingest(&app, &organization, 10).await;
    let mut request = range(&organization);
    request["format"] = json!("ndjson");
    request["actions"] = json!(["user.signed_out"]);
    let ready = export(&app, request).await;
    let text = app
        .client
        .get(ready["url"].as_str().unwrap_or_default())
        .send()
        .await
        .expect("download")
        .text()
        .await
        .expect("text");
    let mut events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let manifest = events.pop().expect("a manifest line");
    assert_eq!(manifest["object"], "audit_log_export_manifest");
    assert_eq!(manifest["event_count"], 5);
    assert_eq!(events.len(), 5);
    for (i, exported) in events.iter_mut().enumerate() {
        let proof = exported
            .as_object_mut()
            .and_then(|o| o.remove("inclusion_proof"));
        assert!(
            proof.is_some_and(|p| p.is_array()),
            "a filtered export proves each event"
        );
        let fetched = body(
            app.get(&format!(
                "/audit_logs/events/{}",
                exported["id"].as_str().unwrap_or_default()
            ))
            .await,
        )
        .await;
        assert_eq!(*exported, fetched, "an exported event is the event object");
        assert_eq!(exported["metadata"]["n"], 2 * i + 1);
    }

    let mut by_actor = range(&organization);
    by_actor["actors"] = json!(["Person, 3"]);
    by_actor["format"] = json!("ndjson");
    assert_eq!(
        export(&app, by_actor).await["row_count"],
        1,
        "the deprecated `actors` filters by name"
    );
}

/// The OCSF export (format `ocsf`) through the API and the CLI: one OCSF API Activity event per
/// matching event, each holding the event object the search API returns in `unmapped`. The
/// events are checked against the OCSF schema itself in `tests/operate/test_ocsf.py`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ocsf_export_holds_an_api_activity_event_per_event_with_the_event_object_unmapped() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    ingest(&app, &organization, 6).await;
    let mut request = range(&organization);
    request["format"] = json!("ocsf");
    request["actions"] = json!(["user.signed_out"]);
    let ready = export(&app, request).await;
    assert_eq!(ready["format"], "ocsf");
    assert_eq!(ready["row_count"], 3);
    let response = app
        .client
        .get(ready["url"].as_str().unwrap_or_default())
        .send()
        .await
        .expect("download");
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .is_ok_and(|d| d.ends_with(".ocsf.ndjson\"")),
        "{:?}",
        response.headers()["content-disposition"]
    );
    let text = response.text().await.expect("text");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(
        lines.len(),
        3,
        "no manifest: an OCSF export is not verifiable"
    );
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["class_uid"], 6003);
        assert_eq!(line["type_uid"], 600_399, "signed_out is no CRUD verb");
        assert_eq!(line["api"]["operation"], "user.signed_out");
        let id = line["metadata"]["uid"].as_str().unwrap_or_default();
        let fetched = body(app.get(&format!("/audit_logs/events/{id}")).await).await;
        assert_eq!(line["unmapped"], fetched, "the event object, whole");
        assert_eq!(fetched["metadata"]["n"], 2 * i + 1);
    }

    // From the database, `trailmark export` stops at the latest checkpoint the server signed,
    // which can trail the last append by one signing interval (the export's own audit events
    // follow the six, so the size to wait for is "at least").
    for attempt in 0.. {
        let checkpoint = body(
            app.get(&format!(
                "/audit_logs/ledger/checkpoint?organization_id={organization}"
            ))
            .await,
        )
        .await;
        if checkpoint["tree_size"]
            .as_u64()
            .is_some_and(|size| size >= 6)
        {
            break;
        }
        assert!(
            attempt < 200,
            "no checkpoint of 6 events or more was signed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let out = app.data_dir.path().join("events.ocsf.ndjson");
    let status = Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args([
            "export",
            "--organization",
            &organization,
            "--format",
            "ocsf",
        ])
        .args(["--actions", "user.signed_out", "--out"])
        .arg(&out)
        .arg("--data-dir")
        .arg(app.data_dir.path())
        .arg("--database")
        .arg(app.database.url())
        .output()
        .expect("run trailmark export");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&out).expect("read"),
        text,
        "the CLI writes the same lines"
    );
}

#[tokio::test]
async fn export_requests_are_validated_like_workos() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let mut reversed = range(&organization);
    reversed["range_start"] = json!("2027-01-01T00:00:00Z");
    let response = app.post("/audit_logs/exports", &reversed).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        body(response).await["code"],
        "invalid_audit_log_export_range_date"
    );

    let response = app
        .post(
            "/audit_logs/exports",
            &json!({"organization_id": organization, "range_start": "2026-01-01T00:00:00Z", "range_end": 20261231}),
        )
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(body(response).await["errors"][0]["field"], "range_end");
    let response = app
        .post(
            "/audit_logs/exports",
            &json!({"organization_id": organization, "q": "ab"}),
        )
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(body(response).await["errors"][0]["field"], "q");
    let mut bad_format = range(&organization);
    bad_format["format"] = json!("xlsx");
    assert_eq!(
        body(app.post("/audit_logs/exports", &bad_format).await).await["errors"][0]["field"],
        "format"
    );
    assert_eq!(
        app.post(
            "/audit_logs/exports",
            &range("org_01HZZZZZZZZZZZZZZZZZZZZZZZ")
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        app.get("/audit_logs/exports/audit_log_export_01HZZZZZZZZZZZZZZZZZZZZZZZ")
            .await
            .status(),
        404
    );

    let limited = TestApp::spawn_with(crate::helpers::Options {
        export_max_range_days: Some(90),
        ..Default::default()
    })
    .await;
    let organization = limited.create_organization("Acme").await;
    let response = limited
        .post("/audit_logs/exports", &range(&organization))
        .await;
    assert_eq!(response.status(), 400, "the operator's limit applies");
    let response = limited
        .post(
            "/audit_logs/exports",
            &json!({"organization_id": organization, "range_start": "2026-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(
        body(response).await["errors"][0]["field"],
        "range_end",
        "a limited server needs both ends"
    );
}

#[tokio::test]
async fn beyond_workos_an_export_may_leave_out_its_range_and_filter_by_target_id_and_text() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    ingest(&app, &organization, 6).await;
    let mut odd_one = event("document.shared");
    odd_one["targets"] = json!([{"id": "doc_7", "type": "document"}]);
    odd_one["metadata"] = json!({"note": "quarterly-review"});
    assert_eq!(
        app.create_event(&organization, &odd_one, None)
            .await
            .status(),
        200
    );
    let whole = export(&app, json!({"organization_id": organization})).await;
    // The 7 events and the record of this export's creation.
    assert_eq!(whole["row_count"], 8, "no range: the whole log");
    for (filter, value) in [("target_ids", json!(["doc_7"])), ("q", json!("QUARTERLY"))] {
        let request = json!({"organization_id": organization, filter: value});
        assert_eq!(export(&app, request).await["row_count"], 1, "{filter}");
    }
}

#[tokio::test]
async fn links_are_renewed_by_every_get_and_refused_when_altered() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    ingest(&app, &organization, 3).await;
    let ready = export(&app, range(&organization)).await;
    let url = ready["url"].as_str().unwrap_or_default().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let again = body(
        app.get(&format!(
            "/audit_logs/exports/{}",
            ready["id"].as_str().unwrap_or_default()
        ))
        .await,
    )
    .await;
    assert_ne!(again["url"], json!(url), "every GET signs a new link");

    let tampered = [
        url.replace("signature=", "signature=00"),
        url.replace("expires=", "expires=9"),
        url.split("&signature")
            .next()
            .unwrap_or_default()
            .to_owned(),
    ];
    for link in tampered {
        let response = app.client.get(&link).send().await.expect("download");
        assert_eq!(response.status(), 403, "{link}");
        assert!(
            body(response).await["message"]
                .as_str()
                .unwrap_or_default()
                .contains("invalid")
        );
    }
}

#[tokio::test]
async fn a_key_for_one_organization_cannot_read_or_export_another() {
    let app = TestApp::spawn().await;
    let acme = app.create_organization("Acme").await;
    let globex = app.create_organization("Globex").await;
    ingest(&app, &acme, 2).await;
    ingest(&app, &globex, 2).await;
    let store = app.store();
    let secret = ApiKeySecret::new("sk_test_acme_reader");
    store
        .insert_api_key(ApiKeyRecord {
            id: "key_acme".into(),
            hash: secret.hash(),
            scope: Scope::Read,
            organization_id: Some(acme.clone()),
            created_at: Timestamp::now(),
            name: "read key".into(),
            prefix: String::new(),
            expires_at: None,
            last_used_at: None,
        })
        .await
        .expect("key");
    let acme_key = secret.expose();
    let as_acme = |path: String| app.client.get(app.url(&path)).bearer_auth(acme_key).send();

    assert_eq!(
        as_acme(format!("/audit_logs/events?organization_id={globex}"))
            .await
            .expect("search")
            .status(),
        403
    );
    let own = body(as_acme("/audit_logs/events".into()).await.expect("search")).await;
    assert_eq!(
        own["data"].as_array().map(Vec::len),
        Some(2),
        "a restricted key searches its organization by default"
    );
    let globex_event = body(
        app.get(&format!("/audit_logs/events?organization_id={globex}"))
            .await,
    )
    .await["data"][0]["id"]
        .clone();
    let response = as_acme(format!(
        "/audit_logs/events/{}",
        globex_event.as_str().unwrap_or_default()
    ))
    .await
    .expect("get");
    assert_eq!(response.status(), 404);

    let response = app
        .client
        .post(app.url("/audit_logs/exports"))
        .bearer_auth(acme_key)
        .json(&range(&globex))
        .send()
        .await
        .expect("export");
    assert_eq!(response.status(), 403);

    let acme_export = {
        let response = app
            .client
            .post(app.url("/audit_logs/exports"))
            .bearer_auth(acme_key)
            .json(&range(&acme))
            .send()
            .await
            .expect("export");
        assert_eq!(response.status(), 201);
        wait_ready(
            &app,
            body(response).await["id"].as_str().unwrap_or_default(),
        )
        .await
    };
    let globex_export = export(&app, range(&globex)).await;
    let globex_id = globex_export["id"].as_str().unwrap_or_default();
    assert_eq!(
        as_acme(format!("/audit_logs/exports/{globex_id}"))
            .await
            .expect("get")
            .status(),
        404
    );

    // Acme's link, pointed at Globex's export, is refused.
    let acme_url = acme_export["url"].as_str().unwrap_or_default();
    let acme_id = acme_export["id"].as_str().unwrap_or_default();
    let forged = acme_url.replace(acme_id, globex_id);
    assert_eq!(
        app.client
            .get(&forged)
            .send()
            .await
            .expect("download")
            .status(),
        403
    );
    let traversal = acme_url.replace(acme_id, "..%2F..%2Ftrailmark.db");
    assert_eq!(
        app.client
            .get(&traversal)
            .send()
            .await
            .expect("download")
            .status(),
        403
    );
}

#[tokio::test]
async fn a_pending_export_is_finished_after_a_restart() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    ingest(&app, &organization, 4).await;
    let store = app.store();
    let now = Timestamp::now();
    store
        .insert_export(trailmark_store::ExportRecord {
            id: "audit_log_export_01JDAAAAAAAAAAAAAAAAAAAAAA".into(),
            organization_id: organization.clone(),
            state: trailmark_store::ExportState::Pending,
            format: trailmark_domain::export::ExportFormat::Ndjson,
            filter: Default::default(),
            row_count: None,
            error: None,
            created_at: now,
            updated_at: now,
        })
        .await
        .expect("insert");
    drop(store);
    let app = app.restart().await;
    let ready = wait_ready(&app, "audit_log_export_01JDAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!(
        (ready["state"].clone(), ready["row_count"].clone()),
        (json!("ready"), json!(4))
    );
}

// Multi-threaded: the CLI blocks this thread while the in-process server answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_exports_from_the_database_and_from_a_server() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    ingest(&app, &organization, 12).await;
    // The server's export is made against a checkpoint covering everything committed, the record
    // of its own creation too (it asked for user.signed_in only, so the record is not in it).
    let remote_out = app.data_dir.path().join("remote.ndjson");
    let remote = Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args([
            "export",
            "--organization",
            &organization,
            "--format",
            "ndjson",
            "--actions",
            "user.signed_in",
            "--server",
            &app.base,
            "--api-key",
            ADMIN_KEY,
            "--out",
        ])
        .arg(&remote_out)
        .output()
        .expect("run trailmark export --server");
    assert!(
        remote.status.success(),
        "{}",
        String::from_utf8_lossy(&remote.stderr)
    );
    assert!(String::from_utf8_lossy(&remote.stderr).contains("Exported 6 events"));
    // A local NDJSON export covers what the latest checkpoint covers: once the server's export
    // was recorded (sequence 12), the checkpoint of 13 events the server's export was made against.
    app.wait_for_checkpoint(&organization, 13).await;
    let out = app.data_dir.path().join("local.ndjson");
    let status = Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args([
            "export",
            "--organization",
            &organization,
            "--format",
            "ndjson",
            "--actions",
            "user.signed_in",
            "--out",
        ])
        .arg(&out)
        .arg("--data-dir")
        .arg(app.data_dir.path())
        .arg("--database")
        .arg(app.database.url())
        .output()
        .expect("run trailmark export");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(String::from_utf8_lossy(&status.stderr).contains("Exported 6 events"));
    let local = std::fs::read_to_string(&out).expect("read");
    let lines: Vec<Value> = local
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 7, "6 events and the manifest");
    assert_eq!(
        lines[6]["object"],
        trailmark_export::MANIFEST_OBJECT,
        "a local NDJSON export ends with the manifest of the latest checkpoint"
    );

    // The same file either way: the events with their inclusion proofs, then the manifest of
    // the same checkpoint (the log did not grow after the server's export was recorded).
    let parsed = |text: &str| -> Vec<Value> {
        text.lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("JSON line"))
            .collect()
    };
    let remote = std::fs::read_to_string(&remote_out).expect("read");
    let (remote, local) = (parsed(&remote), parsed(&local));
    assert_eq!(remote.len(), 7, "6 events and the manifest");
    assert_eq!(remote[..6], local[..6], "both paths export the same events");
    assert!(remote[0]["inclusion_proof"].is_array(), "{}", remote[0]);
    assert_eq!(
        remote[6]["checkpoint"], local[6]["checkpoint"],
        "both end with the same signed checkpoint"
    );
    let key = body(app.get("/audit_logs/ledger/public_key").await).await;
    let verified = Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .arg("verify")
        .arg(&remote_out)
        .args([
            "--public-key",
            key["verifier_key"].as_str().unwrap_or_default(),
        ])
        .output()
        .expect("run trailmark verify");
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );

    let refused = Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args([
            "export",
            "--organization",
            "org_01HZZZZZZZZZZZZZZZZZZZZZZZ",
            "--server",
            &app.base,
            "--api-key",
            ADMIN_KEY,
            "--out",
        ])
        .arg(app.data_dir.path().join("refused.csv"))
        .output()
        .expect("run trailmark export --server");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("the server answered 404"),
        "the server's refusal reaches the user: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(
        !app.data_dir.path().join("refused.partial").exists(),
        "a failed export leaves no partial file"
    );
}

fn record(id: &str, organization: &str, created_at: Timestamp) -> trailmark_store::ExportRecord {
    trailmark_store::ExportRecord {
        id: id.into(),
        organization_id: organization.into(),
        state: trailmark_store::ExportState::Pending,
        format: trailmark_domain::export::ExportFormat::Csv,
        filter: Default::default(),
        row_count: None,
        error: None,
        created_at,
        updated_at: created_at,
    }
}

#[tokio::test]
async fn an_organization_s_pending_exports_are_limited_and_the_refusal_names_the_limit() {
    let app = TestApp::spawn_with(crate::helpers::Options {
        export_max_pending: 2,
        ..Default::default()
    })
    .await;
    let acme = app.create_organization("Acme").await;
    let globex = app.create_organization("Globex").await;
    let store = app.store();
    let now = Timestamp::now();
    // Two exports another instance is writing (its lease holds them pending). This server's
    // sweep for unclaimed exports may take one between its insert and its claim; it then runs
    // it to the end, so another is made in its place.
    let mut held = 0;
    for n in 0..10 {
        let id = format!("audit_log_export_01JDAAAAAAAAAAAAAAAAAAAAA{n}");
        store
            .insert_export(record(&id, &acme, now))
            .await
            .expect("insert");
        if store
            .claim_export(&id, "another_instance", now.plus_millis(3_600_000), now)
            .await
            .expect("claim")
        {
            held += 1;
        } else {
            wait_ready(&app, &id).await;
        }
        if held == 2 {
            break;
        }
    }
    assert_eq!(held, 2, "another instance holds two pending exports");
    let refused = app
        .post("/audit_logs/exports", &json!({"organization_id": acme}))
        .await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "10");
    let refused = body(refused).await;
    assert_eq!(refused["code"], "too_many_exports", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|message| message.contains("--export-max-pending")),
        "{refused}"
    );
    // Per organization: another's exports go on.
    let other = app
        .post("/audit_logs/exports", &json!({"organization_id": globex}))
        .await;
    assert_eq!(other.status(), 201);
}

#[tokio::test]
async fn export_files_are_deleted_once_expired_and_their_links_refused() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    ingest(&app, &organization, 3).await;
    let fresh = export(&app, json!({"organization_id": organization})).await;
    // An export requested two days ago (the files' TTL is a day), its file still on disk.
    let old_id = "audit_log_export_01JDBBBBBBBBBBBBBBBBBBBBBB";
    let store = app.store();
    let two_days_ago = Timestamp::now().plus_millis(-2 * 86_400_000);
    store
        .insert_export(record(old_id, &organization, two_days_ago))
        .await
        .expect("insert");
    store
        .finish_export(old_id, Ok(3), two_days_ago)
        .await
        .expect("finish");
    let old_file = app
        .data_dir
        .path()
        .join("exports")
        .join(format!("{old_id}.csv"));
    std::fs::write(&old_file, "old contents").expect("file");
    // Links name the server's address, which a restart changes: keep their path and query.
    let path_of = |link: &Value| {
        let link = link.as_str().unwrap_or_default();
        link[link.find("/audit_logs").unwrap_or(0)..].to_owned()
    };
    let old_link =
        path_of(&body(app.get(&format!("/audit_logs/exports/{old_id}")).await).await["url"]);
    let fresh_link = path_of(&fresh["url"]);
    drop(store);
    // The sweep runs when the server starts, then every 10 s.
    let app = app.restart().await;
    let mut expired = json!(null);
    for _ in 0..200 {
        expired = body(app.get(&format!("/audit_logs/exports/{old_id}")).await).await;
        if expired["state"] != "ready" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(expired["state"], "error", "{expired}");
    assert!(
        expired["error"].as_str().is_some_and(
            |error| error.starts_with("expired") && error.contains("--export-file-ttl-hours")
        ),
        "{expired}"
    );
    assert!(!old_file.exists(), "the expired file is deleted");
    let refused = app
        .client
        .get(app.url(&old_link))
        .send()
        .await
        .expect("download");
    assert_eq!(refused.status(), 404);
    // The fresh export is kept.
    let kept = app
        .client
        .get(app.url(&fresh_link))
        .send()
        .await
        .expect("download");
    assert_eq!(kept.status(), 200);
}

#[tokio::test]
async fn export_files_are_bounded_on_disk() {
    let app = TestApp::spawn_with(crate::helpers::Options {
        export_max_disk_bytes: 2_000,
        ..Default::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    ingest(&app, &organization, 25).await;
    let failed = export(&app, json!({"organization_id": organization})).await;
    assert_eq!(failed["state"], "error", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|error| error.contains("--export-max-disk-bytes")),
        "{failed}"
    );
    let exports = app.data_dir.path().join("exports");
    let left: Vec<_> = std::fs::read_dir(&exports)
        .expect("exports")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name())
        .collect();
    assert!(left.is_empty(), "a failed export leaves no file: {left:?}");

    // At the bound, no new export starts.
    std::fs::write(exports.join("filler"), vec![b'x'; 2_000]).expect("filler");
    let refused = app
        .post(
            "/audit_logs/exports",
            &json!({"organization_id": organization}),
        )
        .await;
    assert_eq!(refused.status(), 429);
    let refused = body(refused).await;
    assert_eq!(refused["code"], "export_storage_full", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|message| message.contains("--export-max-disk-bytes")),
        "{refused}"
    );
}
