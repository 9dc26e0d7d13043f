//! The tamper-evident ledger through the API and the CLI: leaf hashes anyone can recompute,
//! signed checkpoints, RFC 9162 proofs, verifiable exports and database audits that catch edits.

use std::process::Command;

use serde_json::{Value, json};
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::{ApiKeySecret, Scope};
use trailmark_ledger::checkpoint::{Checkpoint, NoteSigner, NoteVerifier};
use trailmark_ledger::leaf::event_leaf_hash;
use trailmark_ledger::tree::{Frontier, verify_consistency, verify_inclusion};
use trailmark_ledger::{decode_hash, encode_hash};
use trailmark_store::ApiKeyRecord;

use crate::helpers::{LogTampering, Options, TestApp, body, event, proof_hashes};
use crate::receivers::{self, Kind};

/// Ingests events numbered `from..from + count` (distinct content, so none is deduplicated).
async fn ingest_from(app: &TestApp, organization: &str, from: usize, count: usize) -> Vec<Value> {
    let mut receipts = Vec::new();
    for n in from..from + count {
        let mut submitted = event(if n % 3 == 0 {
            "user.signed_in"
        } else {
            "document.updated"
        });
        submitted["metadata"] = json!({"n": n, "float": 0.1 + n as f64});
        receipts.push(body(app.create_event(organization, &submitted, None).await).await);
    }
    receipts
}

async fn ingest(app: &TestApp, organization: &str, count: usize) -> Vec<Value> {
    ingest_from(app, organization, 0, count).await
}

async fn verifier(app: &TestApp) -> (String, NoteVerifier) {
    let key = body(
        app.client
            .get(app.url("/audit_logs/ledger/public_key"))
            .send()
            .await
            .expect("key"),
    )
    .await;
    let text = key["verifier_key"].as_str().unwrap_or_default().to_owned();
    let verifier = NoteVerifier::parse(&text).expect("a valid verifier key");
    (text, verifier)
}

#[tokio::test]
async fn every_event_carries_a_leaf_hash_anyone_can_recompute() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let receipts = ingest(&app, &organization, 5).await;
    let listed = body(
        app.get(&format!(
            "/audit_logs/events?organization_id={organization}&order=asc"
        ))
        .await,
    )
    .await;
    for (receipt, listed) in receipts
        .iter()
        .zip(listed["data"].as_array().into_iter().flatten())
    {
        assert_eq!(
            receipt["leaf_hash"], listed["leaf_hash"],
            "the receipt's leaf hash is the event's"
        );
        let recomputed = encode_hash(&event_leaf_hash(listed));
        assert_eq!(
            listed["leaf_hash"],
            json!(recomputed),
            "the leaf is the event object without leaf_hash"
        );
    }
}

#[tokio::test]
async fn checkpoints_are_signed_and_proofs_verify_against_them() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let receipts = ingest(&app, &organization, 7).await;
    let (_, verifier) = verifier(&app).await;

    let first = body(
        app.get(&format!(
            "/audit_logs/ledger/checkpoint?organization_id={organization}"
        ))
        .await,
    )
    .await;
    let first_checkpoint = verifier
        .verify(first["checkpoint"].as_str().unwrap_or_default())
        .expect("the signature verifies");
    assert_eq!(
        first_checkpoint.origin,
        format!("trailmark.test/{organization}")
    );
    assert_eq!(first["tree_size"], first_checkpoint.size);

    ingest_from(&app, &organization, 7, 6).await;
    let latest = app.wait_for_checkpoint(&organization, 13).await;
    let checkpoint = verifier
        .verify(latest["checkpoint"].as_str().unwrap_or_default())
        .expect("verifies");
    assert_eq!(
        checkpoint.size, 13,
        "the signer checkpoints a grown log on its own"
    );

    for receipt in &receipts {
        let id = receipt["id"].as_str().unwrap_or_default();
        let proof = body(app.get(&format!("/audit_logs/ledger/inclusion?organization_id={organization}&event_id={id}&tree_size=13")).await).await;
        let leaf = decode_hash(receipt["leaf_hash"].as_str().unwrap_or_default()).expect("hash");
        let index = receipt["sequence"].as_u64().unwrap_or_default();
        assert!(
            verify_inclusion(
                index,
                13,
                &leaf,
                &proof_hashes(&proof["proof"]),
                &checkpoint.root
            ),
            "event {index}"
        );
    }

    let consistency = body(
        app.get(&format!(
            "/audit_logs/ledger/consistency?organization_id={organization}&first={}&second=13",
            first_checkpoint.size
        ))
        .await,
    )
    .await;
    assert!(verify_consistency(
        first_checkpoint.size,
        13,
        &first_checkpoint.root,
        &checkpoint.root,
        &proof_hashes(&consistency["proof"])
    ));

    for (query, field) in [
        ("first=0&second=3", "first"),
        ("first=5&second=99", "second"),
        ("second=3", "first"),
    ] {
        let response = app
            .get(&format!(
                "/audit_logs/ledger/consistency?organization_id={organization}&{query}"
            ))
            .await;
        assert_eq!(response.status(), 422, "{query}");
        assert_eq!(body(response).await["errors"][0]["field"], field);
    }
    let id = receipts[5]["id"].as_str().unwrap_or_default();
    let response = app
        .get(&format!(
            "/audit_logs/ledger/inclusion?organization_id={organization}&event_id={id}&tree_size=5"
        ))
        .await;
    assert_eq!(
        response.status(),
        422,
        "an event is not in a tree smaller than its sequence"
    );
}

fn trailmark(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args(args)
        .output()
        .expect("run trailmark")
}

/// Creates an NDJSON export through the API and downloads it to `path`.
async fn export_to(app: &TestApp, request: Value, path: &std::path::Path) {
    let created = body(app.post("/audit_logs/exports", &request).await).await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    for _ in 0..200 {
        let export = body(app.get(&format!("/audit_logs/exports/{id}")).await).await;
        if export["state"] == "ready" {
            let text = app
                .client
                .get(export["url"].as_str().unwrap_or_default())
                .send()
                .await
                .expect("download")
                .text()
                .await
                .expect("text");
            std::fs::write(path, text).expect("write");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("export {id} never became ready");
}

/// Exports the organization's whole log as NDJSON with the CLI, straight from the database.
fn export_complete(app: &TestApp, organization: &str) -> std::path::PathBuf {
    let dir = app.data_dir.path();
    let complete = dir.join("complete.ndjson");
    let output = trailmark(&[
        "export",
        "--organization",
        organization,
        "--format",
        "ndjson",
        "--out",
        complete.to_str().unwrap_or_default(),
        "--data-dir",
        dir.to_str().unwrap_or_default(),
        "--database",
        &app.database.url(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    complete
}

// Multi-threaded: the CLI runs while the in-process server keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_verify_offline_and_tampering_is_named() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let receipts = ingest(&app, &organization, 30).await;
    let (key, _) = verifier(&app).await;
    let dir = app.data_dir.path();

    // A filtered export: every event carries its inclusion proof.
    let filtered = dir.join("filtered.ndjson");
    let request = json!({"organization_id": organization, "range_start": "2026-01-01T00:00:00Z", "range_end": "2026-12-31T00:00:00Z",
                         "actions": ["document.updated"], "format": "ndjson"});
    export_to(&app, request, &filtered).await;
    let output = trailmark(&[
        "verify",
        filtered.to_str().unwrap_or_default(),
        "--public-key",
        &key,
    ]);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("20 events re-hashed; each proved included")
    );

    // A reader that goes away (`trailmark verify … | head -0`) ends it quietly, as SIGPIPE
    // ends any Unix tool, not with a panic.
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args([
            "verify",
            filtered.to_str().unwrap_or_default(),
            "--public-key",
            &key,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run trailmark verify");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        output.status.success() || output.status.code() == Some(141),
        "{:?} {stderr}",
        output.status
    );

    // An altered field is caught and the event is named.
    let text = std::fs::read_to_string(&filtered).expect("read");
    let victim = receipts[4]["id"].as_str().unwrap_or_default();
    let altered: String = text
        .lines()
        .map(|line| if line.contains(victim) { line.replace("\"Jon Smith\"", "\"Someone Else\"") } else { line.to_owned() } + "\n")
        .collect();
    let tampered = dir.join("tampered.ndjson");
    std::fs::write(&tampered, altered).expect("write");
    let output = trailmark(&[
        "verify",
        tampered.to_str().unwrap_or_default(),
        "--public-key",
        &key,
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(victim) && stderr.contains("altered"),
        "{stderr}"
    );

    // A removed line is caught.
    let removed: String = text
        .lines()
        .filter(|line| !line.contains(victim))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&tampered, removed).expect("write");
    let output = trailmark(&[
        "verify",
        tampered.to_str().unwrap_or_default(),
        "--public-key",
        &key,
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("removed"));

    // A wrong key is refused.
    let other = "other+01020304+AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB";
    assert!(
        !trailmark(&[
            "verify",
            filtered.to_str().unwrap_or_default(),
            "--public-key",
            other
        ])
        .status
        .success()
    );

    // A complete export (the CLI, no filter) rebuilds the root; a missing event is named. The log
    // holds the 30 events and the record of the filtered export's creation (sequence 30).
    app.wait_for_checkpoint(&organization, 31).await;
    let complete = export_complete(&app, &organization);
    let output = trailmark(&[
        "verify",
        complete.to_str().unwrap_or_default(),
        "--public-key",
        &key,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("sequences 0…30 all present"));
    let text = std::fs::read_to_string(&complete).expect("read");
    let gap: String = text
        .lines()
        .filter(|line| !line.contains("\"sequence\":7,"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&tampered, gap).expect("write");
    let output = trailmark(&[
        "verify",
        tampered.to_str().unwrap_or_default(),
        "--public-key",
        &key,
    ]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("sequence 7 is missing"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A rewrite of an export line.
type Rewrite = dyn Fn(&str) -> String;

/// `line`'s members written in reverse key order, each value as serde_json writes it.
fn reversed_keys(line: &str) -> String {
    let object: serde_json::Map<String, Value> = serde_json::from_str(line).expect("an object");
    let members: Vec<String> = object
        .iter()
        .rev()
        .map(|(key, value)| format!("{}:{value}", Value::from(key.as_str())))
        .collect();
    format!("{{{}}}", members.join(","))
}

// Verify hashes a line in canonical form from its text, and parses any other form whole: a
// line rewritten without changing its content verifies either way, and a changed content is
// caught either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_an_edit_whatever_form_the_line_takes() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let receipts = ingest(&app, &organization, 12).await;
    let (key, _) = verifier(&app).await;
    let dir = app.data_dir.path();
    app.wait_for_checkpoint(&organization, 12).await;
    let complete = export_complete(&app, &organization);
    let text = std::fs::read_to_string(&complete).expect("read");
    let victim = receipts[5]["id"].as_str().unwrap_or_default();
    assert!(text.contains("\"Jon Smith\"") && text.contains("\"float\":5.1"));
    let verify = |rewrite: &Rewrite| {
        let rewritten: String = text
            .lines()
            .map(|line| {
                if line.contains(victim) {
                    rewrite(line)
                } else {
                    line.to_owned()
                }
            } + "\n")
            .collect();
        assert_ne!(rewritten, text);
        let path = dir.join("rewritten.ndjson");
        std::fs::write(&path, rewritten).expect("write");
        trailmark(&[
            "verify",
            path.to_str().unwrap_or_default(),
            "--public-key",
            &key,
        ])
    };
    let same_content: [(&str, &Rewrite); 4] = [
        ("whitespace", &|line| {
            line.replace("\":", "\": ").replace(",\"", ", \"")
        }),
        ("reordered keys", &|line| reversed_keys(line)),
        ("an escaped letter", &|line| {
            line.replace("\"Jon Smith\"", "\"J\\u006fn Smith\"")
        }),
        ("another number form", &|line| {
            line.replace("\"float\":5.1", "\"float\":5.10e0")
        }),
    ];
    for (form, rewrite) in same_content {
        let output = verify(rewrite);
        assert!(
            output.status.success(),
            "{form}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let edits: [(&str, &Rewrite); 6] = [
        ("an edited name", &|line| {
            line.replace("\"Jon Smith\"", "\"Jon Smyth\"")
        }),
        ("an edited number", &|line| {
            line.replace("\"float\":5.1", "\"float\":5.2")
        }),
        ("an added member", &|line| {
            line.replacen('{', "{\"extra\":1,", 1)
        }),
        ("an edit beside whitespace", &|line| {
            line.replace("\"Jon Smith\"", "\"Jon Smyth\"")
                .replace("\":", "\": ")
        }),
        ("an edit beside reordered keys", &|line| {
            reversed_keys(&line.replace("\"Jon Smith\"", "\"Jon Smyth\""))
        }),
        ("an edit hidden in an escape", &|line| {
            line.replace("\"Jon Smith\"", "\"J\\u006Fn Smyth\"")
        }),
    ];
    for (form, rewrite) in edits {
        let output = verify(rewrite);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(victim) && stderr.contains("altered"),
            "{form}: {stderr}"
        );
    }
}

/// A server with 12 events whose latest checkpoint covers them all; returns it, the
/// organization, the receipts and the verifier key.
async fn audited_app() -> (TestApp, String, Vec<Value>, String) {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let receipts = ingest(&app, &organization, 12).await;
    app.wait_for_checkpoint(&organization, 12).await;
    let (key, _) = verifier(&app).await;
    (app, organization, receipts, key)
}

fn audit(app: &TestApp, key: &str) -> std::process::Output {
    trailmark(&[
        "verify",
        &format!("--database={}", app.database.url()),
        "--data-dir",
        app.data_dir.path().to_str().unwrap_or_default(),
        "--public-key",
        key,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_audit_passes_untouched_and_names_each_kind_of_tampering() {
    let (app, _, _, key) = audited_app().await;
    let output = audit(&app, &key);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(
            "12 events re-hashed, tree rebuilt, matches the signed checkpoint of 12 events"
        )
    );

    // Each kind of tampering, in the tables (PostgreSQL) or in the log's files (the embedded
    // store), by an attacker who also recomputes every checksum the files carry.
    let cases = [
        (
            "UPDATE events SET body = replace(body, 'Jon Smith', 'Mallory') WHERE sequence = 3",
            LogTampering::EditBody {
                sequence: 3,
                from: "Jon Smith",
                to: "Mallory",
            },
            "(sequence 3)",
            "(sequence 3)",
        ),
        (
            "DELETE FROM events WHERE sequence = 5",
            LogTampering::Remove(5),
            "sequence 5 is missing",
            "sequence 5 is missing",
        ),
        (
            "UPDATE events SET sequence = -1 WHERE sequence = 8; UPDATE events SET sequence = 8 WHERE sequence = 9; \
             UPDATE events SET sequence = 9 WHERE sequence = -1",
            LogTampering::Swap(8, 9),
            "(sequence 8)",
            "(sequence 8)",
        ),
    ];
    for (sql, in_log, named_in_tables, named_in_log) in cases {
        let (app, _, receipts, key) = audited_app().await;
        let named = if app.database.has_log() {
            app.database.tamper_log(in_log);
            named_in_log
        } else {
            app.database.tamper(sql).await;
            named_in_tables
        };
        let output = audit(&app, &key);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{sql}: {stdout}");
        assert!(stdout.contains(named), "{sql}: {named:?} not in {stdout}");
        if named == "(sequence 3)" {
            assert!(
                stdout.contains(receipts[3]["id"].as_str().unwrap_or_default()),
                "the altered event is named: {stdout}"
            );
        }
    }
}

/// A key that reads `organization`'s log and nothing more, as a customer would hold.
async fn read_key(app: &TestApp, organization: &str) -> String {
    let secret = ApiKeySecret::new("sk_test_customer_read");
    app.store()
        .insert_api_key(ApiKeyRecord {
            id: "key_customer_read".into(),
            hash: secret.hash(),
            scope: Scope::Read,
            organization_id: Some(organization.to_owned()),
            created_at: Timestamp::now(),
            name: "read key".into(),
            prefix: String::new(),
            expires_at: None,
            last_used_at: None,
        })
        .await
        .expect("insert key");
    secret.expose().to_owned()
}

/// What the operator holds: the server's signing key (`TestApp` signs with this seed).
fn operator_signer() -> NoteSigner {
    NoteSigner::new("trailmark.test", [7; 32]).expect("signer")
}

/// `export` (a complete NDJSON export) with the event at `sequence` rewritten as a dishonest
/// operator would: new content, its leaf hash recomputed, the tree rebuilt and the manifest's
/// checkpoint re-signed with the server's own key, so the file checks by itself.
fn rewritten_export(export: &str, sequence: u64) -> String {
    let mut lines: Vec<Value> = export
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    let mut manifest = lines.pop().expect("manifest");
    let mut frontier = Frontier::empty();
    for line in &mut lines {
        if line["sequence"] == sequence {
            line["actor"]["name"] = json!("Someone Else");
            line["leaf_hash"] = json!(encode_hash(&event_leaf_hash(line)));
        }
        frontier.append(decode_hash(line["leaf_hash"].as_str().unwrap_or_default()).expect("hash"));
    }
    let honest = NoteVerifier::parse(&operator_signer().verifier_key())
        .expect("key")
        .verify(manifest["checkpoint"].as_str().unwrap_or_default())
        .expect("the honest checkpoint");
    let forged = Checkpoint {
        root: frontier.root(),
        ..honest
    };
    manifest["root_hash"] = json!(encode_hash(&forged.root));
    manifest["checkpoint"] = json!(operator_signer().sign(&forged));
    lines
        .iter()
        .chain([&manifest])
        .map(|line| format!("{line}\n"))
        .collect()
}

fn says(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// The dishonest operator: it holds the signing key, so it can rewrite an event, rebuild the
/// tree and sign the rewritten log. The rewritten export then verifies by itself; what catches
/// it is a checkpoint the customer kept from before, which the rewritten log cannot be shown to
/// extend, and `verify` names that checkpoint and exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_checkpoint_catches_a_rewritten_and_re_signed_history() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    ingest(&app, &organization, 12).await;
    let dir = app.data_dir.path();
    // The customer keeps the checkpoint answer as it was when 12 events were logged.
    let held = dir.join("held-12.json");
    let answer = app.wait_for_checkpoint(&organization, 12).await;
    std::fs::write(&held, answer.to_string()).expect("write");
    ingest_from(&app, &organization, 12, 6).await;
    app.wait_for_checkpoint(&organization, 18).await;
    let (key, _) = verifier(&app).await;
    let held = held.to_str().unwrap_or_default();

    // Honest: the complete export, rebuilt from its leaves, extends the held checkpoint.
    let complete = export_complete(&app, &organization);
    let output = trailmark(&[
        "verify",
        complete.to_str().unwrap_or_default(),
        "--public-key",
        &key,
        "--checkpoint",
        held,
    ]);
    assert!(output.status.success(), "{}", says(&output));
    assert!(
        says(&output).contains(&format!(
            "checkpoint {held} (12 events): consistent with the log of 18 events ✓"
        )),
        "{}",
        says(&output)
    );

    // The operator rewrites event 3 and re-signs: alone, the export checks…
    let forged = dir.join("forged.ndjson");
    let text = std::fs::read_to_string(&complete).expect("read");
    std::fs::write(&forged, rewritten_export(&text, 3)).expect("write");
    let forged = forged.to_str().unwrap_or_default();
    let output = trailmark(&["verify", forged, "--public-key", &key]);
    assert!(output.status.success(), "{}", says(&output));
    // …but not against the checkpoint the customer held.
    let output = trailmark(&["verify", forged, "--public-key", &key, "--checkpoint", held]);
    assert_eq!(output.status.code(), Some(1), "{}", says(&output));
    assert!(
        says(&output).contains(&format!("the log contradicts checkpoint {held} (12 events"))
            && says(&output).contains("rewritten"),
        "{}",
        says(&output)
    );
    // A checkpoint from before the rewritten event is still extended.
    let early = dir.join("held-3.txt");
    let honest = NoteVerifier::parse(&key)
        .expect("key")
        .verify(answer["checkpoint"].as_str().unwrap_or_default())
        .expect("checkpoint");
    let events: Vec<Value> = text
        .lines()
        .take(3)
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    let mut frontier = Frontier::empty();
    for event in &events {
        frontier.append(event_leaf_hash(event));
    }
    let three = Checkpoint {
        size: 3,
        root: frontier.root(),
        ..honest
    };
    std::fs::write(&early, operator_signer().sign(&three)).expect("write");
    let output = trailmark(&[
        "verify",
        forged,
        "--public-key",
        &key,
        "--checkpoint",
        early.to_str().unwrap_or_default(),
    ]);
    assert!(output.status.success(), "{}", says(&output));
}

/// The customer's checkpoint need not be fetched: its own log stream delivered it. The operator
/// then rewrites an event and re-signs; the checkpoint the stream delivered before catches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_the_stream_delivered_catches_a_rewritten_history_strict_local_receiver() {
    const SECRET: &str = "whsec_dHJhaWxtYXJrLXRlc3Qtc2lnbmluZw==";
    let app = TestApp::spawn_with(Options {
        stream_checkpoint_every: std::time::Duration::from_millis(200),
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    let receiver = receivers::start(Kind::Http, SECRET, 0).await;
    let created = app
        .post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "http", "name": "SIEM",
                    "config": {"url": receiver.url, "signing_secret": SECRET}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    ingest(&app, &organization, 12).await;
    // The log: the record of the stream's creation (0), then the 12 events.
    let mut delivered = None;
    for _ in 0..400 {
        delivered = receiver
            .events()
            .into_iter()
            .find(|e| e["object"] == "ledger_checkpoint" && e["tree_size"] == 13);
        if delivered.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let delivered = delivered.expect("the stream delivered the checkpoint of 13 events");
    let dir = app.data_dir.path();
    let held = dir.join("from-the-stream.json");
    std::fs::write(&held, delivered.to_string()).expect("write");
    let held = held.to_str().unwrap_or_default();
    ingest_from(&app, &organization, 12, 4).await;
    app.wait_for_checkpoint(&organization, 17).await;
    let (key, _) = verifier(&app).await;
    let complete = export_complete(&app, &organization);
    let honest = trailmark(&[
        "verify",
        complete.to_str().unwrap_or_default(),
        "--public-key",
        &key,
        "--checkpoint",
        held,
    ]);
    assert!(honest.status.success(), "{}", says(&honest));

    let forged = dir.join("forged.ndjson");
    let text = std::fs::read_to_string(&complete).expect("read");
    std::fs::write(&forged, rewritten_export(&text, 5)).expect("write");
    let forged = forged.to_str().unwrap_or_default();
    let caught = trailmark(&["verify", forged, "--public-key", &key, "--checkpoint", held]);
    assert_eq!(caught.status.code(), Some(1), "{}", says(&caught));
    assert!(
        says(&caught).contains(&format!("the log contradicts checkpoint {held} (13 events")),
        "{}",
        says(&caught)
    );
}

/// `verify --server` proves, with the server's consistency proofs and a read key, that the
/// server's current log extends each held checkpoint; a held checkpoint of another history
/// signed with the same key (what a rewrite leaves the customer holding) is named and fails
/// with status 1. A filtered export fetches the proofs it cannot give itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_against_a_server_proves_the_log_extends_held_checkpoints() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    ingest(&app, &organization, 5).await;
    let dir = app.data_dir.path();
    let answer = app.wait_for_checkpoint(&organization, 5).await;
    let held = dir.join("held-5.txt");
    let note = answer["checkpoint"].as_str().unwrap_or_default();
    std::fs::write(&held, note).expect("write");
    let held = held.to_str().unwrap_or_default();
    ingest_from(&app, &organization, 5, 9).await;
    app.wait_for_checkpoint(&organization, 14).await;
    let (key, verifier) = verifier(&app).await;
    let read = read_key(&app, &organization).await;
    let server = |checkpoint: &str| {
        trailmark(&[
            "verify",
            "--server",
            &app.base,
            "--api-key",
            &read,
            "--public-key",
            &key,
            "--checkpoint",
            checkpoint,
        ])
    };

    let output = server(held);
    assert!(output.status.success(), "{}", says(&output));
    assert!(
        says(&output).contains(&format!(
            "checkpoint {held} (5 events): consistent with the log of 14 events ✓"
        )),
        "{}",
        says(&output)
    );

    let other_history = dir.join("other-history.txt");
    let honest = verifier.verify(note).expect("checkpoint");
    let rewritten = Checkpoint {
        root: trailmark_ledger::tree::leaf_hash(b"another history"),
        ..honest.clone()
    };
    std::fs::write(&other_history, operator_signer().sign(&rewritten)).expect("write");
    let other = other_history.to_str().unwrap_or_default();
    let output = server(other);
    assert_eq!(output.status.code(), Some(1), "{}", says(&output));
    assert!(
        says(&output).contains(&format!("the log contradicts checkpoint {other} (5 events"))
            && says(&output).contains("consistency proof from 5 to 14 events does not hold"),
        "{}",
        says(&output)
    );

    // A checkpoint signed by another key is not one to check: status 2.
    let stranger = NoteSigner::new("trailmark.test", [9; 32]).expect("signer");
    let foreign = dir.join("foreign.txt");
    std::fs::write(&foreign, stranger.sign(&honest)).expect("write");
    let output = server(foreign.to_str().unwrap_or_default());
    assert_eq!(output.status.code(), Some(2), "{}", says(&output));

    // A filtered export proves consistency through the server, and only through it.
    let filtered = dir.join("filtered.ndjson");
    let request = json!({"organization_id": organization, "actions": ["document.updated"], "format": "ndjson"});
    export_to(&app, request, &filtered).await;
    let filtered = filtered.to_str().unwrap_or_default();
    let output = trailmark(&[
        "verify",
        filtered,
        "--public-key",
        &key,
        "--checkpoint",
        held,
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", says(&output));
    assert!(says(&output).contains("--server"), "{}", says(&output));
    for (checkpoint, status) in [(held, Some(0)), (other, Some(1))] {
        let output = trailmark(&[
            "verify",
            filtered,
            "--public-key",
            &key,
            "--checkpoint",
            checkpoint,
            "--server",
            &app.base,
            "--api-key",
            &read,
        ]);
        assert_eq!(output.status.code(), status, "{}", says(&output));
    }
}

/// Tiles fetched over HTTP, for `tlog_tiles` to read: it authenticates every tile it uses
/// against the checkpoint's root before trusting a hash in it.
struct FetchedTiles(std::collections::HashMap<tlog_tiles::Tile, Vec<u8>>);

impl tlog_tiles::TileReader for FetchedTiles {
    fn height(&self) -> u8 {
        8
    }

    fn read_tiles(&self, tiles: &[tlog_tiles::Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        tiles
            .iter()
            .map(|tile| {
                self.0
                    .get(tile)
                    .cloned()
                    .ok_or(tlog_tiles::Error::InvalidTile)
            })
            .collect()
    }

    fn save_tiles(&self, _: &[tlog_tiles::Tile], _: &[Vec<u8>]) {}
}

/// The C2SP path of a tile, which `tlog_tiles` names in Go's sumdb form (`tile/8/…`).
fn c2sp_path(tile: &tlog_tiles::Tile) -> String {
    tile.path().replacen("tile/8/", "tile/", 1)
}

/// The log served as C2SP tlog-tiles, read by an independent client: `tlog_tiles` fetches the
/// tiles of the signed checkpoint's tree, builds inclusion proofs from them and checks them
/// against the checkpoint's root; the entry bundles hash to the leaves the tiles hold.
#[tokio::test]
async fn the_log_is_served_as_tlog_tiles_a_generic_client_verifies() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let other = app.create_organization("Globex").await;
    let mut receipts = Vec::new();
    for chunk in 0..6 {
        let events: Vec<Value> = (chunk * 50..chunk * 50 + 50)
            .map(|n| {
                let mut submitted = event("document.updated");
                submitted["metadata"] = json!({"n": n});
                submitted
            })
            .collect();
        let answer = body(
            app.post(
                "/audit_logs/events/batch",
                &json!({"organization_id": organization, "events": events}),
            )
            .await,
        )
        .await;
        receipts.extend(answer["data"].as_array().cloned().unwrap_or_default());
    }
    assert_eq!(receipts.len(), 300);
    app.wait_for_checkpoint(&organization, 300).await;
    let read = read_key(&app, &organization).await;
    let base = format!("{}/audit_logs/ledger/tlog/{organization}", app.base);
    let get = |path: String| {
        app.client
            .get(format!("{base}/{path}"))
            .bearer_auth(&read)
            .send()
    };

    let note = get("checkpoint".into()).await.expect("checkpoint");
    assert_eq!(note.status(), 200);
    let note = note.text().await.expect("text");
    let (_, verifier) = verifier(&app).await;
    verifier.verify(&note).expect("a signed checkpoint");
    let (body_text, _) = note.split_once("\n\n").expect("a signed note");
    let checkpoint =
        tlog_tiles::Checkpoint::from_bytes(format!("{body_text}\n").as_bytes()).expect("parses");
    assert_eq!(checkpoint.size(), 300);

    let mut tiles = std::collections::HashMap::new();
    for tile in tlog_tiles::Tile::new_tiles(8, 0, checkpoint.size()) {
        let answer = get(c2sp_path(&tile)).await.expect("tile");
        assert_eq!(answer.status(), 200, "{}", c2sp_path(&tile));
        tiles.insert(tile, answer.bytes().await.expect("bytes").to_vec());
    }
    let fetched = FetchedTiles(tiles);
    let reader = tlog_tiles::TileHashReader::new(checkpoint.size(), *checkpoint.hash(), &fetched);
    for n in [0, 1, 200, 255, 256, 299] {
        let leaf =
            decode_hash(receipts[n]["leaf_hash"].as_str().unwrap_or_default()).expect("hash");
        let proof = tlog_tiles::prove_record(300, n as u64, &reader).expect("proof");
        tlog_tiles::check_record(
            &proof,
            300,
            *checkpoint.hash(),
            n as u64,
            tlog_tiles::Hash(leaf),
        )
        .expect("the event is in the signed tree");
        let other_leaf = tlog_tiles::Hash(
            decode_hash(
                receipts[(n + 1) % 300]["leaf_hash"]
                    .as_str()
                    .unwrap_or_default(),
            )
            .expect("hash"),
        );
        assert!(
            tlog_tiles::check_record(&proof, 300, *checkpoint.hash(), n as u64, other_leaf)
                .is_err()
        );
    }

    // Entry bundles: each entry is its event's leaf bytes, hashing to the leaf in the tiles.
    let mut leaves = Vec::new();
    for path in ["tile/entries/000", "tile/entries/001.p/44"] {
        let answer = get(path.into()).await.expect("bundle");
        assert_eq!(answer.status(), 200, "{path}");
        let bundle = answer.bytes().await.expect("bytes");
        let mut rest = &bundle[..];
        while let [high, low, tail @ ..] = rest {
            let length = usize::from(u16::from_be_bytes([*high, *low]));
            let (entry, after) = tail.split_at(length);
            serde_json::from_slice::<Value>(entry).expect("an entry is an event object");
            leaves.push(tlog_tiles::record_hash(entry));
            rest = after;
        }
    }
    let expected: Vec<tlog_tiles::Hash> = receipts
        .iter()
        .map(|r| {
            tlog_tiles::Hash(
                decode_hash(r["leaf_hash"].as_str().unwrap_or_default()).expect("hash"),
            )
        })
        .collect();
    assert_eq!(leaves, expected);

    // Beyond the signed tree, a malformed path, another organization, no key.
    for (path, status) in [
        ("tile/0/001", 404),
        ("tile/entries/002.p/1", 404),
        ("tile/1/000", 404),
        ("tile/0/1", 422),
        ("tile/0/000.p/300", 422),
    ] {
        assert_eq!(
            get(path.into()).await.expect("answer").status(),
            status,
            "{path}"
        );
    }
    let foreign = app
        .client
        .get(format!(
            "{}/audit_logs/ledger/tlog/{other}/checkpoint",
            app.base
        ))
        .bearer_auth(&read)
        .send()
        .await
        .expect("answer");
    assert!(
        matches!(foreign.status().as_u16(), 403 | 404),
        "{}",
        foreign.status()
    );
    let anonymous = app
        .client
        .get(format!("{base}/checkpoint"))
        .send()
        .await
        .expect("answer");
    assert_eq!(anonymous.status(), 401);
}
