//! Upgrades (issue 13, part 5): a data directory and a PostgreSQL database written by
//! Trailmark 0.1.0 (commit 368fb94, before the embedded log) open with this version, are
//! migrated, and verify — with `trailmark verify --database` before the first server start (it
//! makes the upgrade itself) and after it, and with the old checkpoints still proving the new
//! logs extend them. `tests/fixtures/make-upgrade-fixture` made the fixture with that version,
//! whose own `verify` passed on it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{ADMIN_KEY, ServerProcess, TestDatabase};

const FIXTURE: &str = "tests/fixtures/v0.1.0-368fb94";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(FIXTURE)
        .join(name)
}

fn expected(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(name)).expect("fixture")).expect("JSON")
}

/// The fixture's idempotent request, byte for byte what the old server answered.
fn keyed_event(organization: &str) -> Value {
    json!({"organization_id": organization, "event": {"action": "invoice.paid",
        "occurred_at": "2026-11-20T10:00:00.000Z", "actor": {"id": "user_1", "type": "user"},
        "targets": [{"id": "invoice_1", "type": "invoice"}], "context": {"location": "192.0.2.200"}}})
}

/// The fixture's idempotency records expired a day after it was made; an upgrade happens at
/// any time, so the test moves their expiry to the future, as if it came within the day.
const KEEP_IDEMPOTENCY: &str = "UPDATE idempotency SET expires_at = 4102444800000";

fn verify(database: &str, data_dir: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args(["verify", "--database", database, "--data-dir"])
        .arg(data_dir)
        .arg("--public-key")
        .arg(fixture("public_key.txt"))
        .output()
        .expect("run trailmark verify");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

async fn get(base: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON")
}

/// What both backends must show after the upgrade, through a running server.
async fn check_upgraded(base: &str, expected: &Value) {
    let client = reqwest::Client::new();
    let (acme, globex) = (
        expected["acme"].as_str().unwrap_or_default(),
        expected["globex"].as_str().unwrap_or_default(),
    );
    for (organization, count) in [
        (acme, expected["acme_events"].as_u64()),
        (globex, expected["globex_events"].as_u64()),
    ] {
        let size = get(
            base,
            &format!("/audit_logs/ledger/checkpoint?organization_id={organization}"),
        )
        .await;
        assert_eq!(size["tree_size"].as_u64(), count, "{organization}");
    }
    let searched = get(
        base,
        &format!("/audit_logs/events?organization_id={acme}&actions=invoice.*&limit=5"),
    )
    .await;
    assert_eq!(searched["data"][0]["id"], expected["receipt"]["id"]);
    assert_eq!(
        searched["data"][0]["leaf_hash"],
        expected["receipt"]["leaf_hash"]
    );
    // Targets moved (on PostgreSQL from a table of their own into each event's row).
    let by_target = get(
        base,
        &format!(
            "/audit_logs/events?organization_id={acme}&target_ids=invoice_1&target_types=invoice&limit=5"
        ),
    )
    .await;
    assert_eq!(
        by_target["data"][0]["id"], expected["receipt"]["id"],
        "{by_target}"
    );
    let text = get(
        base,
        &format!("/audit_logs/events?organization_id={acme}&q=jon%20smith%2037"),
    )
    .await;
    assert_eq!(text["data"].as_array().map(Vec::len), Some(1), "{text}");

    // The request the old server answered is answered the same, and stores nothing.
    let replay = client
        .post(format!("{base}/audit_logs/events"))
        .bearer_auth(ADMIN_KEY)
        .header("Idempotency-Key", "fixture-key-1")
        .json(&keyed_event(acme))
        .send()
        .await
        .expect("replay");
    assert_eq!(
        replay
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let replayed: Value = replay.json().await.expect("JSON");
    assert_eq!(replayed, expected["receipt"]);

    // The log goes on where it stopped, and extends the old checkpoint.
    let old_size = expected["acme_events"].as_u64().unwrap_or_default();
    let appended: Value = client
        .post(format!("{base}/audit_logs/events"))
        .bearer_auth(ADMIN_KEY)
        .json(
            &json!({"organization_id": acme, "event": {"action": "user.signed_out",
            "occurred_at": "2026-12-01T10:00:00.000Z", "actor": {"id": "user_9", "type": "user"},
            "targets": [], "context": {"location": "192.0.2.1"}}}),
        )
        .send()
        .await
        .expect("append")
        .json()
        .await
        .expect("JSON");
    assert_eq!(appended["sequence"], old_size);
    let proof = get(
        base,
        &format!(
            "/audit_logs/ledger/consistency?organization_id={acme}&first={old_size}&second={}",
            old_size + 1
        ),
    )
    .await;
    assert_eq!(proof["object"], "consistency_proof", "{proof}");
}

#[tokio::test]
async fn a_sqlite_data_directory_from_0_1_0_moves_into_the_log_and_still_verifies() {
    let data_dir = TempDir::new().expect("temp dir");
    for file in ["trailmark.db", "ledger.key", "secrets.key"] {
        std::fs::copy(fixture(file), data_dir.path().join(file)).expect("copy the fixture");
    }
    let path = data_dir.path().join("trailmark.db");
    rusqlite::Connection::open(&path)
        .and_then(|c| c.execute_batch(KEEP_IDEMPOTENCY))
        .expect("keep the idempotency records");
    let database = format!("sqlite://{}", path.display());
    let expected = expected("expected.json");

    // Before any server ran, `verify` finds the old layout, upgrades it and verifies it.
    let (passed, output) = verify(&database, data_dir.path());
    assert!(passed, "{output}");
    for (organization, count) in [("acme", 191), ("globex", 26)] {
        let id = expected[organization].as_str().unwrap_or_default();
        assert!(
            output.contains(&format!("{id}: {count} events re-hashed")),
            "{organization}: {output}"
        );
    }
    let tables: Vec<String> = rusqlite::Connection::open(&path)
        .and_then(|c| {
            c.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
                .query_map([], |row| row.get(0))?
                .collect()
        })
        .expect("list tables");
    assert!(
        !tables.iter().any(|t| t == "events" || t == "merkle_nodes"),
        "the old tables are gone: {tables:?}"
    );
    assert!(data_dir.path().join("trailmark.log").is_dir());

    let mut server =
        ServerProcess::start(data_dir.path(), &TestDatabase::Sqlite(path.clone()), &[]);
    check_upgraded(&server.base, &expected).await;
    server.kill();
    let (passed, output) = verify(&database, data_dir.path());
    assert!(passed, "after the upgrade and one more event: {output}");
}

#[tokio::test]
async fn a_postgresql_database_from_0_1_0_migrates_and_still_verifies() {
    let data_dir = TempDir::new().expect("temp dir");
    for file in ["ledger.key", "secrets.key"] {
        std::fs::copy(fixture(file), data_dir.path().join(file)).expect("copy the fixture");
    }
    let database = TestDatabase::create_postgres().await;
    let url = database.url();
    let restored = Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", &url, "-f"])
        .arg(fixture("postgres.sql"))
        .output()
        .expect("run psql");
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let keep = Command::new("psql")
        .args(["-q", &url, "-c", KEEP_IDEMPOTENCY])
        .output()
        .expect("run psql");
    assert!(keep.status.success());
    // 0.1.0 made an organization's log head at its first append: one never written has none.
    let unwritten = Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", &url, "-c"])
        .arg(format!(
            "INSERT INTO organizations (id, name, domains, metadata, \
             allow_profiles_outside_organization, created_at, updated_at) \
             VALUES ('{UNWRITTEN}', 'Initech', '[]', '{{}}', false, 1796545171300, 1796545171300)"
        ))
        .output()
        .expect("run psql");
    assert!(
        unwritten.status.success(),
        "{}",
        String::from_utf8_lossy(&unwritten.stderr)
    );
    let expected = expected("expected-postgres.json");

    let (passed, output) = verify(&url, data_dir.path());
    assert!(passed, "{output}");
    assert!(output.contains("191 events re-hashed"), "{output}");

    let mut server = ServerProcess::start(data_dir.path(), &database, &[]);
    check_upgraded(&server.base, &expected).await;
    server.kill();
    let (passed, output) = verify(&url, data_dir.path());
    assert!(passed, "after the upgrade and one more event: {output}");
    // Migration 13 gave it its head, as organizations are now created with theirs.
    let head = Command::new("psql")
        .args(["-tA", &url, "-c"])
        .arg(format!(
            "SELECT size FROM log_heads WHERE organization_id = '{UNWRITTEN}'"
        ))
        .output()
        .expect("run psql");
    assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), "0");
}

/// An organization the 0.1.0 PostgreSQL database holds without a log head (never written).
const UNWRITTEN: &str = "org_01M956ZKT0INITECH000000000";
