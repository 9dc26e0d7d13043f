//! Exports write each event from its stored body text (`line.rs`); the result must be byte for
//! byte what writing each event object (`StoredEvent::to_object`) gives, over a real store, for
//! events with unicode, quotes, commas, line breaks, control characters, formulas, actor and
//! target metadata, a schema version or none, and retention's stubs, across pages.

use serde_json::{Value, json};
use trailmark_domain::Timestamp;
use trailmark_domain::event::NewEvent;
use trailmark_domain::export::ExportFormat;
use trailmark_domain::organization::OrganizationChanges;
use trailmark_domain::query::{ActionPattern, EventFilter};
use trailmark_export::{PAGE_SIZE, Snapshot, write_export};
use trailmark_ledger::encode_hash;
use trailmark_store::{
    AppendRequest, EventLog, LedgerStore, Order, Organizations, PendingEvent, Retention,
    SearchRequest, SqliteStore, Store, StoredCheckpoint,
};

const TRICKY: [&str; 14] = [
    "plain",
    "naïve — 東京 😀 \u{fb33}",
    "quote \" inside",
    "comma, separated",
    "line\nbreak and\r\nCRLF",
    "tab\there",
    "=HYPERLINK(\"http://x\",\"y\")",
    "-3",
    "@SUM(A1)",
    "back\\slash /slash",
    "\u{1}control\u{1f}",
    "\u{7f}del \u{85}next-line \u{2028}separator",
    "",
    "\"",
];

const EVENTS: usize = PAGE_SIZE + 230;
/// Events received long ago, which retention turns into stubs.
const OLD: usize = 7;

fn tricky(i: usize, shift: usize) -> &'static str {
    TRICKY[(i + shift) % TRICKY.len()]
}

/// For the fields that must not be empty.
fn named(i: usize, shift: usize) -> &'static str {
    Some(tricky(i, shift))
        .filter(|text| !text.is_empty())
        .unwrap_or("x")
}

fn event(i: usize) -> PendingEvent {
    let mut event = json!({
        "action": if i.is_multiple_of(3) { "user.signed_in" } else { "document.updated" },
        "occurred_at": Timestamp::from_unix_millis(1_785_000_000_000 + i as i64 * 1_000).to_string(),
        "actor": {"id": format!("user_{}", tricky(i, 0)), "type": "user", "name": named(i, 1),
                  "metadata": {"role": tricky(i, 2), "level": i, "admin": i.is_multiple_of(2)}},
        "targets": [
            {"id": format!("doc_{i}"), "type": "document", "name": named(i, 3),
             "metadata": {"k": tricky(i, 4), "n": -(i as i64)}},
            {"id": named(i, 5), "type": "team"}
        ],
        "context": {"location": named(i, 6)},
        "metadata": {"note": tricky(i, 7), "n": i, "ratio": 0.5 + i as f64, "tiny": 1e-7, "flag": true, "dash-key_1": tricky(i, 8)}
    });
    if !i.is_multiple_of(4) {
        event["context"]["user_agent"] = json!(named(i, 9));
    }
    if i.is_multiple_of(5) {
        event["version"] = json!(i % 3 + 1);
    }
    if i.is_multiple_of(6) {
        event.as_object_mut().map(|e| e.remove("metadata"));
        event["actor"].as_object_mut().map(|a| a.remove("name"));
        event["targets"] = json!([]);
    }
    PendingEvent {
        id: format!("event_{i:026}"),
        event: NewEvent::parse(&event).expect("a valid event"),
        received_at: if i < OLD {
            Timestamp::from_unix_millis(1_000)
        } else {
            Timestamp::from_unix_millis(1_785_000_000_000 + i as i64)
        },
    }
}

/// What an export held before bodies were copied as text: each event object written whole.
async fn written_from_objects(
    store: &dyn Store,
    organization: &str,
    filter: &EventFilter,
    format: ExportFormat,
    proofs_against: Option<u64>,
) -> String {
    let mut out = format.preamble();
    let page = store
        .search_events(
            organization,
            SearchRequest {
                filter: filter.clone(),
                after: None,
                before: None,
                order: Order::Asc,
                limit: EVENTS + 1,
            },
        )
        .await
        .expect("search");
    for event in page.events {
        let mut object = event.to_object();
        if let Some(size) = proofs_against {
            let proof = store
                .inclusion_proofs(organization, vec![event.sequence], size)
                .await
                .expect("proof");
            object["inclusion_proof"] =
                Value::Array(proof[0].iter().map(|h| json!(encode_hash(h))).collect());
        }
        format.write(&object, &mut out);
    }
    out
}

#[tokio::test]
async fn exports_from_stored_text_equal_exports_of_event_objects() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("t.db")).expect("open");
    let organization = store
        .insert_organization(
            OrganizationChanges::parse(&json!({"name": "Acme"}), true)
                .expect("valid")
                .into_new_organization(Timestamp::now()),
        )
        .await
        .expect("insert")
        .id;
    store
        .append(AppendRequest {
            organization_id: organization.clone(),
            events: (0..EVENTS).map(event).collect(),
            idempotency: None,
        })
        .await
        .expect("append");
    let purged = store
        .purge_events(
            &organization,
            Timestamp::from_unix_millis(2_000),
            100,
            Timestamp::now(),
        )
        .await
        .expect("purge");
    assert_eq!(purged, OLD as u64);
    let size = EVENTS as u64;
    let snapshot = Snapshot {
        checkpoint: StoredCheckpoint {
            organization_id: organization.clone(),
            tree_size: size,
            root: store.tree_root(&organization, size).await.expect("root"),
            note: "a note".into(),
            created_at: Timestamp::now(),
        },
    };
    let filtered = EventFilter {
        actions: vec![ActionPattern::parse("user.*")],
        ..EventFilter::default()
    };
    for format in [ExportFormat::Csv, ExportFormat::Ndjson, ExportFormat::Ocsf] {
        for filter in [EventFilter::default(), filtered.clone()] {
            let complete = filter == EventFilter::default();
            let verifiable = format == ExportFormat::Ndjson;
            let mut written = Vec::new();
            let count = write_export(
                &store,
                &organization,
                &filter,
                format,
                verifiable.then_some(&snapshot),
                &mut written,
                |_| {},
            )
            .await
            .expect("export");
            let mut written = String::from_utf8(written).expect("utf-8");
            if verifiable {
                let manifest_start = written.trim_end().rfind('\n').expect("lines") + 1;
                let manifest: Value =
                    serde_json::from_str(&written[manifest_start..]).expect("a manifest");
                assert_eq!(manifest["event_count"], count);
                written.truncate(manifest_start);
            }
            let expected = written_from_objects(
                &store,
                &organization,
                &filter,
                format,
                (verifiable && !complete).then_some(size),
            )
            .await;
            assert!(
                expected.contains("東京")
                    && expected.contains("\"purged\":")
                        == (complete && format != ExportFormat::Csv)
            );
            assert_eq!(written, expected, "{format:?} {filter:?}");
        }
    }
}
