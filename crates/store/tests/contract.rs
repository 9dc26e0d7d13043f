//! The behaviour every `Store` implementation must have. Each test is written once against
//! `&dyn Store` and instantiated per backend by `store_tests!`: SQLite in a temporary file, and
//! PostgreSQL in a database of its own on the server `TRAILMARK_TEST_POSTGRES_URL` names
//! (default: the local one), dropped afterwards.

use std::sync::Arc;

use serde_json::json;
use trailmark_domain::Timestamp;
use trailmark_domain::event::NewEvent;
use trailmark_domain::organization::OrganizationChanges;
use trailmark_domain::portal::PortalIntent;
use trailmark_domain::query::{ActionPattern, EventFilter};
use trailmark_domain::schema::{ActionName, SchemaDefinition};
use trailmark_store::{
    AppendOutcome, AppendRequest, IdempotencyClaim, NewPortalSession, Order, PendingEvent,
    PortalLink, PortalRedemption, PostgresStore, SchemaLookup, SearchRequest, SqliteStore, Store,
    StoreError, rules,
};

/// A store over a fresh temporary database, and the guard that deletes it.
struct Fixture {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    _database: Option<DatabaseGuard>,
}

/// Drops the named PostgreSQL database.
struct DatabaseGuard(String);

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("t.db")).expect("open");
    Fixture {
        store: Arc::new(store),
        _dir: Some(dir),
        _database: None,
    }
}

fn postgres_admin_url() -> String {
    std::env::var("TRAILMARK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn admin_statement(sql: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) =
        tokio_postgres::connect(&postgres_admin_url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute(sql).await
}

async fn postgres() -> Fixture {
    let name = format!(
        "trailmark_contract_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    admin_statement(&format!("CREATE DATABASE {name}"))
        .await
        .expect("PostgreSQL (TRAILMARK_TEST_POSTGRES_URL) creates a test database");
    let admin = postgres_admin_url();
    let (server, _) = admin.rsplit_once('/').expect("a URL with a database");
    let store = PostgresStore::connect(&format!("{server}/{name}"))
        .await
        .expect("open");
    Fixture {
        store: Arc::new(store),
        _dir: None,
        _database: Some(DatabaseGuard(name)),
    }
}

impl Drop for DatabaseGuard {
    fn drop(&mut self) {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0);
        // The test's runtime cannot be blocked on from inside; a thread with its own can.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|runtime| runtime.block_on(admin_statement(&statement)))
        })
        .join();
    }
}

macro_rules! store_tests {
    ($backend:ident: $($name:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $name() {
                    let fixture = super::$backend().await;
                    super::$name(fixture.store.as_ref()).await;
                }
            )*
        }
    };
}

macro_rules! contract {
    ($($backend:ident),*) => {
        $(
            store_tests!($backend:
                sequences_are_gap_free_per_organization,
                concurrent_appends_never_share_a_sequence,
                an_idempotent_append_is_stored_once,
                expired_idempotency_records_no_longer_replay,
                appends_to_unknown_or_deleted_organizations_fail_alone,
                an_equal_schema_returns_the_latest_version,
                one_runner_at_a_time_claims_a_pending_export,
                searches_find_exactly_the_matching_events_of_a_long_log,
                raw_searches_return_the_stored_body_text_of_the_same_events,
                a_portal_link_opens_one_session_even_when_raced,
                portal_sessions_expire_after_inactivity_and_are_purged,
            );
        )*
    };
}

contract!(sqlite, postgres);

async fn organization(store: &dyn Store, name: &str) -> String {
    let new = OrganizationChanges::parse(&json!({"name": name}), true)
        .expect("valid")
        .into_new_organization(Timestamp::now());
    store.insert_organization(new).await.expect("insert").id
}

fn pending(n: u64) -> PendingEvent {
    let event = NewEvent::parse(&json!({
        "action": "user.signed_in",
        "occurred_at": "2026-08-01T10:00:00Z",
        "actor": {"id": "u", "type": "user"},
        "targets": [],
        "context": {"location": "::1"},
        "metadata": {"n": n}
    }))
    .expect("valid event");
    PendingEvent {
        id: format!("event_{n:026}"),
        event,
        received_at: Timestamp::now(),
    }
}

fn claim(identity: u8, expires_at: Timestamp) -> IdempotencyClaim {
    IdempotencyClaim {
        identity: [identity; 32],
        expires_at,
        outcome: vec![identity, 1, 2],
    }
}

async fn append(
    store: &dyn Store,
    organization: &str,
    events: Vec<PendingEvent>,
) -> Result<AppendOutcome, StoreError> {
    store
        .append(AppendRequest {
            organization_id: organization.to_owned(),
            events,
            idempotency: None,
        })
        .await
}

async fn sequences_are_gap_free_per_organization(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let globex = organization(store, "Globex").await;
    append(store, &acme, vec![pending(0), pending(1)])
        .await
        .expect("append");
    append(store, &globex, vec![pending(2)])
        .await
        .expect("append");
    append(store, &acme, vec![pending(3)])
        .await
        .expect("append");
    let sequences = |events: Vec<trailmark_store::StoredEvent>| {
        events.iter().map(|e| e.sequence).collect::<Vec<_>>()
    };
    assert_eq!(
        sequences(store.events_after(&acme, None, 100).await.expect("read")),
        [0, 1, 2]
    );
    assert_eq!(
        sequences(store.events_after(&globex, None, 100).await.expect("read")),
        [0]
    );
    assert_eq!(
        sequences(store.events_after(&acme, Some(0), 1).await.expect("read")),
        [1]
    );
    assert_eq!(
        store.events_after(&acme, Some(2), 100).await.expect("read"),
        []
    );
}

async fn concurrent_appends_never_share_a_sequence(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let appends = (0..100).map(|n| append(store, &acme, vec![pending(n)]));
    for outcome in futures_util::future::join_all(appends).await {
        assert!(matches!(outcome, Ok(AppendOutcome::Appended { .. })));
    }
    let stored = store.events_after(&acme, None, 1000).await.expect("read");
    assert_eq!(
        stored.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (0..100).collect::<Vec<_>>()
    );
}

async fn an_idempotent_append_is_stored_once(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let later = Timestamp::now().plus_millis(60_000);
    let racers = (0..10).map(|n| {
        store.append(AppendRequest {
            organization_id: acme.clone(),
            events: vec![pending(n)],
            idempotency: Some(claim(7, later)),
        })
    });
    let outcomes = futures_util::future::join_all(racers).await;
    let mut appended = Vec::new();
    let mut replayed = Vec::new();
    for outcome in outcomes {
        match outcome.expect("append") {
            AppendOutcome::Appended { receipts } => appended.push(receipts),
            AppendOutcome::Replayed { receipts, outcome } => {
                assert_eq!(outcome, [7, 1, 2], "the first claim's outcome comes back");
                replayed.push(receipts);
            }
        }
    }
    assert_eq!(appended.len(), 1, "one racer stored its event");
    assert_eq!(replayed.len(), 9);
    assert!(
        replayed.iter().all(|r| *r == appended[0]),
        "every racer saw the first append's receipts"
    );
    assert_eq!(
        store
            .events_after(&acme, None, 100)
            .await
            .expect("read")
            .len(),
        1
    );
}

async fn expired_idempotency_records_no_longer_replay(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let past = Timestamp::now().plus_millis(-1);
    let request = |n| AppendRequest {
        organization_id: acme.clone(),
        events: vec![pending(n)],
        idempotency: Some(claim(9, past)),
    };
    assert!(matches!(
        store.append(request(0)).await,
        Ok(AppendOutcome::Appended { .. })
    ));
    assert!(matches!(
        store.append(request(1)).await,
        Ok(AppendOutcome::Appended { .. })
    ));
    assert_eq!(
        store
            .purge_idempotency(Timestamp::now())
            .await
            .expect("purge"),
        1
    );
}

async fn appends_to_unknown_or_deleted_organizations_fail_alone(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let gone = organization(store, "Gone").await;
    assert!(
        store
            .delete_organization(&gone, Timestamp::now())
            .await
            .expect("delete")
    );
    // Failing appends share group commits with succeeding ones; only they fail.
    let mixed = (0..20).map(|n| {
        let target = match n % 3 {
            0 => acme.clone(),
            1 => gone.clone(),
            _ => "org_missing".to_owned(),
        };
        async move {
            (
                target.clone(),
                append(store, &target, vec![pending(n)]).await,
            )
        }
    });
    for (target, outcome) in futures_util::future::join_all(mixed).await {
        if target == acme {
            assert!(matches!(outcome, Ok(AppendOutcome::Appended { .. })));
        } else {
            assert!(
                matches!(outcome, Err(StoreError::OrganizationNotFound(ref id)) if *id == target)
            );
        }
    }
    assert_eq!(
        store
            .events_after(&acme, None, 100)
            .await
            .expect("read")
            .len(),
        7
    );
    assert!(
        store
            .events_after(&gone, None, 100)
            .await
            .expect("read")
            .is_empty()
    );
}

async fn an_equal_schema_returns_the_latest_version(store: &dyn Store) {
    let action = || ActionName::parse("user.signed_in").expect("valid");
    let v1 = SchemaDefinition::parse(&json!({"targets": [{"type": "team"}]})).expect("valid");
    let v2 = SchemaDefinition::parse(&json!({"targets": [{"type": "invoice"}]})).expect("valid");
    let now = Timestamp::now();
    assert_eq!(
        rules::create_schema(store, action(), v1.clone(), now)
            .await
            .expect("create")
            .version,
        1
    );
    assert_eq!(
        rules::create_schema(store, action(), v1.clone(), now)
            .await
            .expect("create")
            .version,
        1
    );
    assert_eq!(
        rules::create_schema(store, action(), v2, now)
            .await
            .expect("create")
            .version,
        2
    );
    assert_eq!(
        rules::create_schema(store, action(), v1, now)
            .await
            .expect("create")
            .version,
        3,
        "equal to an older version is new"
    );
    assert!(
        matches!(rules::schema_for_event(store, "user.signed_in", None).await.expect("lookup"), SchemaLookup::Found(s) if s.version == 1)
    );
    assert_eq!(
        rules::schema_for_event(store, "user.signed_in", Some(4))
            .await
            .expect("lookup"),
        SchemaLookup::UnknownVersion { latest: 3 }
    );
    assert_eq!(
        rules::schema_for_event(store, "other", None)
            .await
            .expect("lookup"),
        SchemaLookup::NoSchema
    );
}

async fn one_runner_at_a_time_claims_a_pending_export(store: &dyn Store) {
    let organization = organization(store, "Acme").await;
    let now = Timestamp::now();
    store
        .insert_export(trailmark_store::ExportRecord {
            id: "audit_log_export_1".into(),
            organization_id: organization,
            state: trailmark_store::ExportState::Pending,
            format: trailmark_domain::export::ExportFormat::Csv,
            filter: Default::default(),
            row_count: None,
            error: None,
            created_at: now,
            updated_at: now,
        })
        .await
        .expect("insert");
    let id = "audit_log_export_1";
    let until = now.plus_millis(30_000);
    assert!(
        store
            .claim_export(id, "a", until, now)
            .await
            .expect("claim")
    );
    assert!(
        !store
            .claim_export(id, "b", until, now)
            .await
            .expect("claim"),
        "a live lease keeps others out"
    );
    assert!(
        store
            .claim_export(id, "a", until, now)
            .await
            .expect("renew"),
        "the holder renews"
    );
    let later = now.plus_millis(31_000);
    assert!(
        store
            .claim_export(id, "b", later.plus_millis(30_000), later)
            .await
            .expect("claim"),
        "an expired lease is taken over"
    );
    store.finish_export(id, Ok(0), later).await.expect("finish");
    assert!(
        !store
            .claim_export(id, "c", later, later.plus_millis(60_000))
            .await
            .expect("claim"),
        "a finished export is not claimed"
    );
}

/// Events of the long log below: the `i`-th gets sequence `i`.
const LONG_LOG: u64 = 6_000;
/// The first events are received long ago, and retention purges them.
const PURGED: u64 = 100;
const MINUTE_MS: i64 = 60_000;
const LOG_START_MS: i64 = 1_780_000_000_000;

/// What the `i`-th event of the long log is: action, actor, targets, minute it occurred at.
struct Shape {
    action: &'static str,
    actor: String,
    targets: Vec<(String, &'static str)>,
    minute: i64,
}

fn shape(i: u64) -> Shape {
    let action = match i % 10 {
        0..=2 => "user.signed_in",
        3 | 4 => "user.signed_out",
        5..=8 => "document.updated",
        _ if i % 100 == 9 => "api_key.created",
        _ => "document.viewed",
    };
    let actor = if i.is_multiple_of(997) {
        "rare_actor".to_owned()
    } else {
        format!("user_{}", i % 7)
    };
    let mut targets = vec![(format!("doc_{}", i % 300), "document")];
    if i.is_multiple_of(50) {
        targets.push(("team_1".to_owned(), "team"));
    }
    // Mostly in order, one in a hundred back-dated by two days.
    let minute = i as i64 - if i % 100 == 42 { 2 * 24 * 60 } else { 0 };
    Shape {
        action,
        actor,
        targets,
        minute,
    }
}

fn long_log_event(i: u64) -> PendingEvent {
    let shape = shape(i);
    let targets: Vec<_> = shape
        .targets
        .iter()
        .map(|(id, kind)| json!({"id": id, "type": kind}))
        .collect();
    let event = NewEvent::parse(&json!({
        "action": shape.action,
        "occurred_at": Timestamp::from_unix_millis(LOG_START_MS + shape.minute * MINUTE_MS).to_string(),
        "actor": {"id": shape.actor, "type": "user"},
        "targets": targets,
        "context": {"location": "192.0.2.1"},
        "metadata": {"n": format!("needle{i}")}
    }))
    .expect("valid event");
    PendingEvent {
        id: format!("event_{i:026}"),
        event,
        received_at: if i < PURGED {
            Timestamp::from_unix_millis(1_000)
        } else {
            Timestamp::now()
        },
    }
}

/// Whether the `i`-th event matches `filter`, by the filter semantics, checked by brute force.
fn long_log_matches(i: u64, filter: &EventFilter) -> bool {
    let shape = shape(i);
    let occurred = LOG_START_MS + shape.minute * MINUTE_MS;
    let any_or_empty = |values: &[String], found: &dyn Fn(&String) -> bool| {
        values.is_empty() || values.iter().any(found)
    };
    i >= PURGED
        && filter
            .range_start
            .is_none_or(|s| occurred >= s.unix_millis())
        && filter.range_end.is_none_or(|e| occurred <= e.unix_millis())
        && (filter.actions.is_empty() || filter.actions.iter().any(|a| a.matches(shape.action)))
        && any_or_empty(&filter.actor_ids, &|a| *a == shape.actor)
        && any_or_empty(&filter.target_ids, &|t| {
            shape.targets.iter().any(|(id, _)| id == t)
        })
        && any_or_empty(&filter.target_types, &|t| {
            shape.targets.iter().any(|(_, kind)| kind == t)
        })
        && filter
            .text
            .as_ref()
            .is_none_or(|q| format!("needle{i}").contains(&q.to_lowercase()))
}

/// Longer than the stretch a search tests event by event, with other organizations' events
/// between its batches and retention's stubs at its start: every filter, both orders, paged
/// with cursors, finds exactly the events a brute-force filter finds.
async fn searches_find_exactly_the_matching_events_of_a_long_log(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let globex = organization(store, "Globex").await;
    let mut noise = 0;
    for batch in (0..LONG_LOG).collect::<Vec<_>>().chunks(1_000) {
        let events = batch.iter().map(|i| long_log_event(*i)).collect();
        append(store, &acme, events).await.expect("append");
        // Same search text in another organization: it must never show up.
        let twins = [12, 1_234].map(|i| PendingEvent {
            id: format!("event_globex_{noise}_{i}"),
            ..long_log_event(i)
        });
        append(store, &globex, twins.into()).await.expect("append");
        noise += 2;
    }
    assert_eq!(store.log_size(&globex).await.expect("size"), noise);
    let purged = store
        .purge_events(
            &acme,
            Timestamp::from_unix_millis(2_000),
            1_000,
            Timestamp::now(),
        )
        .await
        .expect("purge");
    assert_eq!(purged, PURGED);

    let at = |minute: i64| {
        Some(Timestamp::from_unix_millis(
            LOG_START_MS + minute * MINUTE_MS,
        ))
    };
    let actions = |patterns: &[&str]| patterns.iter().map(|p| ActionPattern::parse(p)).collect();
    let strings = |values: &[&str]| values.iter().map(|v| (*v).to_owned()).collect();
    let filters = [
        EventFilter {
            actions: actions(&["user.*"]),
            ..EventFilter::default()
        },
        EventFilter {
            actions: actions(&["api_key.*"]),
            ..EventFilter::default()
        },
        EventFilter {
            actions: actions(&["document.viewed", "api_key.created"]),
            ..EventFilter::default()
        },
        EventFilter {
            actor_ids: strings(&["rare_actor"]),
            ..EventFilter::default()
        },
        EventFilter {
            target_ids: strings(&["doc_5"]),
            ..EventFilter::default()
        },
        EventFilter {
            target_types: strings(&["team"]),
            ..EventFilter::default()
        },
        EventFilter {
            target_types: strings(&["team"]),
            target_ids: strings(&["doc_0", "doc_50"]),
            ..EventFilter::default()
        },
        EventFilter {
            target_ids: strings(&["doc_7"]),
            actions: actions(&["document.updated"]),
            ..EventFilter::default()
        },
        EventFilter {
            target_types: strings(&["team"]),
            actions: actions(&["user.*"]),
            ..EventFilter::default()
        },
        EventFilter {
            range_start: at(2_000),
            range_end: at(2_300),
            ..EventFilter::default()
        },
        EventFilter {
            range_end: at(400),
            ..EventFilter::default()
        },
        EventFilter {
            range_start: at(1_000),
            range_end: at(3_000),
            actions: actions(&["user.*"]),
            ..EventFilter::default()
        },
        EventFilter {
            range_start: at(1_000),
            range_end: at(5_000),
            actions: actions(&["user.*"]),
            actor_ids: strings(&["user_3"]),
            ..EventFilter::default()
        },
        EventFilter {
            text: Some("needle12".into()),
            ..EventFilter::default()
        },
        EventFilter {
            text: Some("NEEDLE".into()),
            actions: actions(&["api_key.*"]),
            ..EventFilter::default()
        },
        EventFilter {
            text: Some("needle5999".into()),
            ..EventFilter::default()
        },
    ];
    for filter in filters {
        for order in [Order::Desc, Order::Asc] {
            let mut all: Vec<u64> = (0..LONG_LOG)
                .filter(|i| long_log_matches(*i, &filter))
                .collect();
            if order == Order::Desc {
                all.reverse();
            }
            assert!(!all.is_empty(), "{filter:?} matches nothing");
            // Long lists are compared over their first pages.
            let expected = &all[..all.len().min(7 * 40)];
            let mut found = Vec::new();
            let mut cursor = None;
            loop {
                let (after, before) = match order {
                    Order::Desc => (None, cursor),
                    Order::Asc => (cursor, None),
                };
                let page = store
                    .search_events(
                        &acme,
                        SearchRequest {
                            filter: filter.clone(),
                            after,
                            before,
                            order,
                            limit: 7,
                        },
                    )
                    .await
                    .expect("search");
                found.extend(page.events.iter().map(|e| e.sequence));
                assert!(
                    page.events.iter().all(|e| e.purged_at.is_none()),
                    "{filter:?}: a stub"
                );
                if !page.more || found.len() >= expected.len() {
                    assert_eq!(
                        page.more,
                        found.len() < all.len(),
                        "{filter:?} {order:?}: more"
                    );
                    break;
                }
                cursor = page.events.last().map(|e| e.sequence);
            }
            found.truncate(expected.len());
            assert_eq!(found, expected, "{filter:?} {order:?}");
        }
    }
}

/// `search_raw_events` is `search_events` with each body as the stored text: the same events,
/// pages and cursors, and text that parses to the same body, stubs included.
async fn raw_searches_return_the_stored_body_text_of_the_same_events(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let events = (0..40).map(long_log_event).collect();
    append(store, &acme, events).await.expect("append");
    let purged = store
        .purge_events(
            &acme,
            Timestamp::from_unix_millis(2_000),
            5,
            Timestamp::now(),
        )
        .await
        .expect("purge");
    assert_eq!(purged, 5);
    let filters = [
        EventFilter::default(),
        EventFilter {
            actions: vec![ActionPattern::parse("user.*")],
            ..EventFilter::default()
        },
    ];
    for filter in filters {
        for order in [Order::Asc, Order::Desc] {
            for after in [None, Some(3), Some(20)] {
                let request = SearchRequest {
                    filter: filter.clone(),
                    after,
                    before: None,
                    order,
                    limit: 6,
                };
                let parsed = store
                    .search_events(&acme, request.clone())
                    .await
                    .expect("search");
                let raw = store
                    .search_raw_events(&acme, request)
                    .await
                    .expect("raw search");
                assert_eq!(raw.more, parsed.more, "{filter:?} {order:?} {after:?}");
                assert!(!raw.events.is_empty());
                let texts: Vec<String> = raw.events.iter().map(|e| e.body.clone()).collect();
                let decoded = raw
                    .events
                    .into_iter()
                    .map(|e| e.decode().expect("a JSON body"))
                    .collect::<Vec<_>>();
                assert_eq!(decoded, parsed.events, "{filter:?} {order:?} {after:?}");
                for (text, event) in texts.iter().zip(&parsed.events) {
                    assert_eq!(*text, event.body.to_string(), "compact as stored");
                }
            }
        }
    }
}

fn portal_link(organization_id: &str, token: u8, issued: Timestamp) -> PortalLink {
    PortalLink {
        token_hash: [token; 32],
        organization_id: organization_id.to_owned(),
        intent: PortalIntent::LogStreams,
        email: Some("it@acme.test".into()),
        return_url: Some("https://app.example.com".into()),
        success_url: Some("https://app.example.com/streams/done".into()),
        created_at: issued,
        expires_at: issued.plus_millis(300_000),
    }
}

fn portal_session(n: u8, expires_at: Timestamp) -> NewPortalSession {
    NewPortalSession {
        id: format!("portal_session_{n:026}"),
        secret_hash: [n; 32],
        csrf_token: format!("csrf-{n}"),
        expires_at,
    }
}

async fn a_portal_link_opens_one_session_even_when_raced(store: &dyn Store) {
    let org = organization(store, "Acme").await;
    let issued = Timestamp::now();
    store
        .insert_portal_link(portal_link(&org, 1, issued))
        .await
        .expect("insert");
    let now = issued.plus_millis(1_000);
    let session_expiry = now.plus_millis(1_800_000);
    let attempts =
        (10..18).map(|n| store.redeem_portal_link([1; 32], now, portal_session(n, session_expiry)));
    let outcomes = futures_util::future::join_all(attempts).await;
    let opened: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            Ok(PortalRedemption::Opened(session)) => Some(session.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(opened.len(), 1, "{outcomes:?}");
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Ok(PortalRedemption::AlreadyUsed)))
            .count(),
        7
    );
    let session = &opened[0];
    assert_eq!(session.organization_id, org);
    assert_eq!(session.intent, PortalIntent::LogStreams);
    assert_eq!(session.email.as_deref(), Some("it@acme.test"));
    assert_eq!(
        session.return_url.as_deref(),
        Some("https://app.example.com")
    );
    assert_eq!(
        session.success_url.as_deref(),
        Some("https://app.example.com/streams/done")
    );

    assert_eq!(
        store
            .redeem_portal_link([9; 32], now, portal_session(30, session_expiry))
            .await
            .expect("redeem"),
        PortalRedemption::Unknown
    );
    store
        .insert_portal_link(portal_link(&org, 2, issued))
        .await
        .expect("insert");
    assert_eq!(
        store
            .redeem_portal_link(
                [2; 32],
                issued.plus_millis(300_001),
                portal_session(31, session_expiry)
            )
            .await
            .expect("redeem"),
        PortalRedemption::Expired
    );
}

async fn portal_sessions_expire_after_inactivity_and_are_purged(store: &dyn Store) {
    let org = organization(store, "Acme").await;
    let issued = Timestamp::now();
    store
        .insert_portal_link(portal_link(&org, 3, issued))
        .await
        .expect("insert");
    let idle = 1_800_000;
    let PortalRedemption::Opened(opened) = store
        .redeem_portal_link(
            [3; 32],
            issued,
            portal_session(40, issued.plus_millis(idle)),
        )
        .await
        .expect("redeem")
    else {
        panic!("the link should open");
    };
    // A request within the idle period finds the session and pushes its expiry forward.
    let later = issued.plus_millis(idle - 1);
    let touched = store
        .touch_portal_session([40; 32], later, later.plus_millis(idle))
        .await
        .expect("touch")
        .expect("the session is open");
    assert_eq!(touched.id, opened.id);
    assert_eq!(touched.csrf_token, "csrf-40");
    assert_eq!(touched.expires_at, later.plus_millis(idle));
    assert!(
        store
            .touch_portal_session([41; 32], later, later.plus_millis(idle))
            .await
            .expect("touch")
            .is_none(),
        "an unknown secret opens nothing"
    );
    // Past the renewed expiry, the session is gone.
    let idle_too_long = later.plus_millis(idle + 1);
    assert!(
        store
            .touch_portal_session([40; 32], idle_too_long, idle_too_long.plus_millis(idle))
            .await
            .expect("touch")
            .is_none()
    );
    assert_eq!(
        store.purge_portal(idle_too_long).await.expect("purge"),
        2,
        "the link and the session"
    );
    assert_eq!(
        store
            .redeem_portal_link([3; 32], idle_too_long, portal_session(42, idle_too_long))
            .await
            .expect("redeem"),
        PortalRedemption::Unknown
    );
}
