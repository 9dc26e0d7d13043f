//! The behaviour every `Store` implementation must have. Each test is written once against
//! `&dyn Store` and instantiated per backend by `store_tests!` (SQLite today; PostgreSQL joins
//! when it exists).

use std::sync::Arc;

use serde_json::json;
use trailmark_domain::Timestamp;
use trailmark_domain::event::NewEvent;
use trailmark_domain::organization::OrganizationChanges;
use trailmark_domain::portal::PortalIntent;
use trailmark_domain::schema::{ActionName, SchemaDefinition};
use trailmark_store::{
    AppendOutcome, AppendRequest, IdempotencyClaim, NewPortalSession, PendingEvent, PortalLink,
    PortalRedemption, SchemaLookup, SqliteStore, Store, StoreError, StoredResponse,
};

/// A store over a fresh temporary database, and the guard that deletes it.
struct Fixture {
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("t.db")).expect("open");
    Fixture {
        store: Arc::new(store),
        _dir: dir,
    }
}

macro_rules! store_tests {
    ($backend:ident: $($name:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $name() {
                    let fixture = super::$backend();
                    super::$name(fixture.store.as_ref()).await;
                }
            )*
        }
    };
}

store_tests!(sqlite:
    sequences_are_gap_free_per_organization,
    concurrent_appends_never_share_a_sequence,
    an_idempotent_append_is_stored_once,
    expired_idempotency_records_no_longer_replay,
    appends_to_unknown_or_deleted_organizations_fail_alone,
    an_equal_schema_returns_the_latest_version,
    a_portal_link_opens_one_session_even_when_raced,
    portal_sessions_expire_after_inactivity_and_are_purged,
);

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
        render: Box::new(|receipts| StoredResponse {
            status: 200,
            body: receipts[0].id.clone().into_bytes(),
        }),
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
    let bodies: std::collections::BTreeSet<Vec<u8>> = outcomes
        .into_iter()
        .map(|outcome| match outcome.expect("append") {
            AppendOutcome::Appended { response, .. } => response.expect("rendered").body,
            AppendOutcome::Replayed(response) => response.body,
        })
        .collect();
    assert_eq!(bodies.len(), 1, "every racer saw the first response");
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
        store
            .create_schema(action(), v1.clone(), now)
            .await
            .expect("create")
            .version,
        1
    );
    assert_eq!(
        store
            .create_schema(action(), v1.clone(), now)
            .await
            .expect("create")
            .version,
        1
    );
    assert_eq!(
        store
            .create_schema(action(), v2, now)
            .await
            .expect("create")
            .version,
        2
    );
    assert_eq!(
        store
            .create_schema(action(), v1, now)
            .await
            .expect("create")
            .version,
        3,
        "equal to an older version is new"
    );
    assert!(
        matches!(store.schema_for_event("user.signed_in", None).await.expect("lookup"), SchemaLookup::Found(s) if s.version == 1)
    );
    assert_eq!(
        store
            .schema_for_event("user.signed_in", Some(4))
            .await
            .expect("lookup"),
        SchemaLookup::UnknownVersion { latest: 3 }
    );
    assert_eq!(
        store.schema_for_event("other", None).await.expect("lookup"),
        SchemaLookup::NoSchema
    );
}

fn portal_link(organization_id: &str, token: u8, issued: Timestamp) -> PortalLink {
    PortalLink {
        token_hash: [token; 32],
        organization_id: organization_id.to_owned(),
        intent: PortalIntent::LogStreams,
        email: Some("it@acme.test".into()),
        return_url: Some("https://app.example.com".into()),
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
