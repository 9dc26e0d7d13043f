//! Retention removes expired events' contents but never their leaves, so proofs and the
//! database audit still verify; a legal hold stops it, and setting or lifting a hold is itself
//! recorded in the organization's log.

use std::process::Command;

use serde_json::{Value, json};
use trailmark_domain::Timestamp;
use trailmark_domain::event::NewEvent;
use trailmark_ledger::checkpoint::NoteVerifier;
use trailmark_store::{AppendRequest, PendingEvent};

use crate::helpers::{TestApp, body, event};

const DAY: i64 = 86_400_000;

/// Appends events received `days_ago` days ago, straight through the store (the API always
/// stamps the current time).
async fn append_old(app: &TestApp, organization: &str, count: usize, days_ago: i64) -> Vec<String> {
    let store = app.store();
    let received_at = Timestamp::now().plus_millis(-days_ago * DAY);
    let events = (0..count)
        .map(|n| {
            let mut submitted = event("user.signed_in");
            submitted["metadata"] = json!({"old": n, "secret": "personal data"});
            PendingEvent {
                id: trailmark_domain::id::IdKind::Event.generate().into_string(),
                event: NewEvent::parse(&submitted).expect("valid"),
                received_at,
            }
        })
        .collect();
    let outcome = store
        .append(AppendRequest {
            organization_id: organization.to_owned(),
            events,
            idempotency: None,
        })
        .await
        .expect("append");
    match outcome {
        trailmark_store::AppendOutcome::Appended { receipts, .. } => {
            receipts.into_iter().map(|r| r.id).collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

async fn is_purged(app: &TestApp, id: &str) -> bool {
    body(app.get(&format!("/audit_logs/events/{id}")).await).await["purged"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_contents_but_every_proof_still_verifies() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let old = append_old(&app, &organization, 4, 40).await;
    let mut recent = Vec::new();
    for n in 0..3 {
        let mut submitted = event("user.signed_out");
        submitted["metadata"] = json!({"recent": n});
        recent.push(body(app.create_event(&organization, &submitted, None).await).await);
    }
    let key = body(
        app.client
            .get(app.url("/audit_logs/ledger/public_key"))
            .send()
            .await
            .expect("key"),
    )
    .await;
    let verifier =
        NoteVerifier::parse(key["verifier_key"].as_str().unwrap_or_default()).expect("key");
    let before = verifier
        .verify(
            app.wait_for_checkpoint(&organization, 7).await["checkpoint"]
                .as_str()
                .unwrap_or_default(),
        )
        .expect("verifies");

    let response = app
        .put(
            &format!("/organizations/{organization}/audit_logs_retention"),
            &json!({"retention_period_in_days": 30}),
        )
        .await;
    assert_eq!(response.status(), 200);
    for _ in 0..100 {
        if is_purged(&app, &old[3]).await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for id in &old {
        let stub = body(app.get(&format!("/audit_logs/events/{id}")).await).await;
        assert_eq!(stub["purged"], true, "{stub}");
        assert!(stub["leaf_hash"].is_string() && stub["sequence"].is_u64());
        assert!(
            stub.get("metadata").is_none() && stub.get("actor").is_none(),
            "contents are gone: {stub}"
        );
    }
    for receipt in &recent {
        assert!(
            !is_purged(&app, receipt["id"].as_str().unwrap_or_default()).await,
            "recent events stay"
        );
    }
    let matching = body(
        app.get(&format!(
            "/audit_logs/events?organization_id={organization}&q=personal"
        ))
        .await,
    )
    .await;
    assert_eq!(
        matching["data"].as_array().map(Vec::len),
        Some(0),
        "purged text is no longer searchable"
    );
    let all = body(
        app.get(&format!(
            "/audit_logs/events?organization_id={organization}&limit=100"
        ))
        .await,
    )
    .await;
    assert_eq!(
        all["data"].as_array().map(Vec::len),
        Some(7),
        "stubs keep their place in the log"
    );

    // A new event grows the log past the purge; proofs and consistency still hold.
    app.create_event(&organization, &event("after.purge"), None)
        .await;
    let after = verifier
        .verify(
            app.wait_for_checkpoint(&organization, 8).await["checkpoint"]
                .as_str()
                .unwrap_or_default(),
        )
        .expect("verifies");
    app.assert_consistent(&organization, (7, &before.root), (8, &after.root))
        .await;
    for id in old.iter().chain(
        recent
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
            .iter(),
    ) {
        app.assert_included(&organization, id, 8, &after.root).await;
    }

    let output = Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args([
            "verify",
            &format!("--database={}", app.database.url()),
            "--data-dir",
            app.data_dir.path().to_str().unwrap_or_default(),
            "--public-key",
        ])
        .arg(key["verifier_key"].as_str().unwrap_or_default())
        .output()
        .expect("verify");
    assert!(
        output.status.success(),
        "the audit accepts purged stubs: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legal_hold_stops_purging_and_is_recorded_in_the_log() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let path = format!("/organizations/{organization}/legal_hold");
    assert_eq!(body(app.get(&path).await).await["active"], false);
    let missing_reason = app.put(&path, &json!({"active": true})).await;
    assert_eq!(missing_reason.status(), 422);
    assert_eq!(body(missing_reason).await["errors"][0]["field"], "reason");

    let held = body(
        app.put(
            &path,
            &json!({"active": true, "reason": "Litigation 2026-17"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (held["active"].clone(), held["reason"].clone()),
        (json!(true), json!("Litigation 2026-17"))
    );
    let old = append_old(&app, &organization, 3, 400).await;
    app.put(
        &format!("/organizations/{organization}/audit_logs_retention"),
        &json!({"retention_period": "1_YEAR"}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(
        !is_purged(&app, &old[0]).await,
        "nothing is purged under a legal hold"
    );

    let lifted = body(
        app.put(&path, &json!({"active": false, "reason": "Case closed"}))
            .await,
    )
    .await;
    assert_eq!(lifted["active"], false);
    for _ in 0..100 {
        if is_purged(&app, &old[2]).await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        is_purged(&app, &old[0]).await,
        "lifting the hold lets retention run"
    );

    let log = body(app.get(&format!("/audit_logs/events?organization_id={organization}&actions=trailmark.legal_hold.*&order=asc")).await).await;
    let records: Vec<(String, String)> = log["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["metadata"]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        records,
        [
            (
                "trailmark.legal_hold.set".to_owned(),
                "Litigation 2026-17".to_owned()
            ),
            (
                "trailmark.legal_hold.lifted".to_owned(),
                "Case closed".to_owned()
            )
        ]
    );
    assert_eq!(
        log["data"][0]["actor"],
        json!({"id": "key_bootstrap", "type": "api_key"})
    );
}

/// Polls the export until it leaves `pending`; returns the last object.
async fn ready_export(app: &TestApp, request: Value) -> Value {
    let created = body(app.post("/audit_logs/exports", &request).await).await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    for _ in 0..200 {
        let export = body(app.get(&format!("/audit_logs/exports/{id}")).await).await;
        if export["state"] != "pending" {
            assert_eq!(export["state"], "ready", "{export}");
            return export;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("export {id} stayed pending");
}

async fn download(app: &TestApp, url: &str) -> (u16, String) {
    let response = app.client.get(url).send().await.expect("download");
    let status = response.status().as_u16();
    (status, response.text().await.expect("text"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_rewrites_every_ready_export_and_old_links_serve_the_new_file() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let old = append_old(&app, &organization, 3, 40).await;
    let mut recent = event("user.signed_out");
    recent["metadata"] = json!({"kept": "recent data"});
    app.create_event(&organization, &recent, None).await;
    let whole_csv = ready_export(&app, json!({"organization_id": organization})).await;
    let whole_ndjson = ready_export(
        &app,
        json!({"organization_id": organization, "format": "ndjson"}),
    )
    .await;
    let personal = ready_export(
        &app,
        json!({"organization_id": organization, "q": "personal"}),
    )
    .await;
    assert_eq!(personal["row_count"], 3);
    let exports = [&whole_csv, &whole_ndjson, &personal];
    // Links issued before the purge, and what they serve now.
    let links: Vec<String> = exports
        .iter()
        .map(|export| export["url"].as_str().unwrap_or_default().to_owned())
        .collect();
    for link in &links {
        let (status, text) = download(&app, link).await;
        assert_eq!(status, 200);
        assert!(text.contains("personal data"), "{text}");
    }

    app.put(
        &format!("/organizations/{organization}/audit_logs_retention"),
        &json!({"retention_period_in_days": 30}),
    )
    .await;
    let mut rewritten = Vec::new();
    for export in exports {
        let path = format!(
            "/audit_logs/exports/{}",
            export["id"].as_str().unwrap_or_default()
        );
        let mut now = body(app.get(&path).await).await;
        for _ in 0..200 {
            if now["updated_at"] != export["updated_at"] {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            now = body(app.get(&path).await).await;
        }
        assert_ne!(now["updated_at"], export["updated_at"], "rewritten: {now}");
        rewritten.push(now);
    }
    assert!(is_purged(&app, &old[0]).await);
    // Each export keeps its id, format and filters: the whole log still has its four rows (three
    // of them stubs), the text search finds nothing any more.
    assert_eq!(
        rewritten
            .iter()
            .map(|export| (export["state"].clone(), export["row_count"].clone()))
            .collect::<Vec<_>>(),
        [
            (json!("ready"), json!(4)),
            (json!("ready"), json!(4)),
            (json!("ready"), json!(0)),
        ]
    );
    for link in links.iter().chain(
        rewritten
            .iter()
            .map(|export| export["url"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
            .iter(),
    ) {
        let (status, text) = download(&app, link).await;
        assert_eq!(status, 200, "{text}");
        assert!(!text.contains("personal data"), "{link}: {text}");
    }
    let (_, whole) = download(&app, &links[0]).await;
    assert!(whole.contains("recent data"), "{whole}");
    let (_, proof) = download(&app, &links[1]).await;
    assert!(
        proof.lines().count() > 4 && proof.contains("recent data"),
        "the NDJSON export is written again with its manifest: {proof}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(app.data_dir.path().join("exports"))
        .expect("exports")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".partial"))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_that_cannot_be_written_again_after_a_purge_is_withdrawn() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    append_old(&app, &organization, 3, 40).await;
    let export = ready_export(&app, json!({"organization_id": organization})).await;
    let id = export["id"].as_str().unwrap_or_default().to_owned();
    let file = app
        .data_dir
        .path()
        .join("exports")
        .join(format!("{id}.csv"));
    let size = std::fs::metadata(&file).expect("file").len();
    // Room for this file but not for a second one beside it while it is written again.
    let app = app
        .restart_with(crate::helpers::Options {
            export_max_disk_bytes: size + 16,
            ..Default::default()
        })
        .await;
    let path = export["url"].as_str().unwrap_or_default();
    let link = app.url(&path[path.find("/audit_logs").unwrap_or(0)..]);
    assert_eq!(
        app.client
            .get(&link)
            .send()
            .await
            .expect("download")
            .status(),
        200
    );

    app.put(
        &format!("/organizations/{organization}/audit_logs_retention"),
        &json!({"retention_period_in_days": 30}),
    )
    .await;
    let mut withdrawn = json!(null);
    for _ in 0..200 {
        withdrawn = body(app.get(&format!("/audit_logs/exports/{id}")).await).await;
        if withdrawn["state"] != "ready" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(withdrawn["state"], "error", "{withdrawn}");
    assert!(
        withdrawn["error"].as_str().is_some_and(
            |error| error.starts_with("withdrawn") && error.contains("--export-max-disk-bytes")
        ),
        "{withdrawn}"
    );
    assert!(
        !file.exists(),
        "the file holding purged contents is deleted"
    );
    assert_eq!(
        app.client
            .get(&link)
            .send()
            .await
            .expect("download")
            .status(),
        404
    );
}
