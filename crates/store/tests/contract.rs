//! The behaviour every storage backend must have. Each test is written once against the
//! storage traits (`&dyn Store`, or a [`Fixture`] for the tests that reopen the store) and
//! instantiated per backend by `contract_tests!`: SQLite in a temporary file, and PostgreSQL in
//! a schema of its own (see [`SHARED_DATABASE`]) on the server `TRAILMARK_TEST_POSTGRES_URL`
//! names (default: the local one), dropped afterwards. The tests name no table and no SQL, so a
//! new backend runs them
//! unchanged: add a fixture function and one `contract_tests!(backend_tests!(name));` line.
//!
//! [`COVERAGE`] says which tests cover each method of each trait; `every_store_method_is_covered`
//! fails when a trait in `src/lib.rs` gains a method the table does not list, or when a listed
//! test does not call its method.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::FutureExt;
use serde_json::json;
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::Scope;
use trailmark_domain::event::NewEvent;
use trailmark_domain::export::ExportFormat;
use trailmark_domain::organization::{Domain, DomainState, Organization, OrganizationChanges};
use trailmark_domain::portal::PortalIntent;
use trailmark_domain::query::{ActionPattern, EventFilter};
use trailmark_domain::schema::{ActionName, ActionSchema, SchemaDefinition};
use trailmark_ledger::LedgerError;
use trailmark_ledger::leaf::event_leaf_hash;
use trailmark_ledger::tree::{empty_root, node_hash, verify_consistency, verify_inclusion};
use trailmark_store::{
    ActionSummary, ApiKeyRecord, AppendOutcome, AppendRequest, ClusterConfig, ExportRecord,
    ExportState, Handover, Hash, IdempotencyClaim, IncidentKind, IncidentRecord, LegalHold,
    NewIncident, NewOperatorSession, NewPortalSession, Notice, OperatorRecord, Order,
    OrganizationFilter, Page, PageRequest, PendingEvent, PortalLink, PortalRedemption,
    PostgresStore, Receipt, Revocation, Rewrite, SchemaLookup, SearchPage, SearchRequest,
    SqliteStore, Store, StoreError, StoreObserver, StoredCheckpoint, StoredEvent, StreamFault,
    StreamRecord, StreamState, rules,
};

/// Which contract tests cover each method of each storage trait: one `Trait::method test` pair
/// a line. `every_store_method_is_covered` checks it against `src/lib.rs` and the tests.
const COVERAGE: &str = "
Health::ping                          a_store_answers_ping
ApiKeys::insert_api_key               api_keys_are_found_by_their_hash
ApiKeys::find_api_key                 api_keys_are_found_by_their_hash
ApiKeys::has_api_keys                 api_keys_are_found_by_their_hash
ApiKeys::list_api_keys                api_keys_list_oldest_first_with_every_field
ApiKeys::revoke_api_key               a_revocation_keeps_a_live_unrestricted_admin_key_unless_told_not_to
ApiKeys::revoke_api_key               racing_revocations_never_remove_the_last_admin_key
ApiKeys::touch_api_key                a_key_s_last_use_only_moves_forward
Organizations::insert_organization    organizations_keep_every_field
Organizations::insert_organization    external_ids_are_unique_among_live_organizations
Organizations::get_organization       organizations_keep_every_field
Organizations::get_organization       updates_replace_the_fields_of_live_organizations_only
Organizations::get_organization       deleted_organizations_disappear_but_keep_their_logs
Organizations::list_organizations     organization_lists_page_with_cursors_in_both_orders
Organizations::list_organizations     organization_lists_filter_by_domain_name_and_id
Organizations::list_organizations     deleted_organizations_disappear_but_keep_their_logs
Organizations::update_organization    updates_replace_the_fields_of_live_organizations_only
Organizations::update_organization    external_ids_are_unique_among_live_organizations
Organizations::delete_organization    deleted_organizations_disappear_but_keep_their_logs
Organizations::delete_organization    a_deletion_whose_caller_stops_waiting_still_stops_appends
Organizations::delete_organization    external_ids_are_unique_among_live_organizations
Organizations::set_retention          retention_periods_are_set_on_live_organizations_only
Schemas::latest_schema                schema_versions_are_immutable
Schemas::get_schema                   schema_versions_are_immutable
Schemas::insert_schema                schema_versions_are_immutable
Schemas::list_schemas                 schema_lists_page_by_version_in_both_orders
Schemas::list_schemas                 racing_schema_writers_create_each_version_once
Schemas::list_actions                 action_lists_page_by_name_with_first_and_latest_times
EventLog::append                      sequences_are_gap_free_per_organization
EventLog::append                      concurrent_appends_never_share_a_sequence
EventLog::append                      an_idempotent_append_is_stored_once
EventLog::append                      a_replay_answers_with_the_first_appends_receipts_and_outcome
EventLog::append                      expired_idempotency_records_no_longer_replay
EventLog::append                      an_expired_claim_is_replaced_by_the_next_append_with_its_identity
EventLog::append                      appends_to_unknown_or_deleted_organizations_fail_alone
EventLog::append                      acknowledged_writes_survive_reopening_the_store
EventLog::events_after                sequences_are_gap_free_per_organization
EventLog::events_after                searches_honour_both_sequence_bounds_in_both_orders
EventLog::search_events               searches_find_exactly_the_matching_events_of_a_long_log
EventLog::search_events               searches_honour_both_sequence_bounds_in_both_orders
EventLog::search_events               every_acknowledged_append_is_visible_at_once
EventLog::search_events               free_text_finds_case_insensitive_substrings_of_every_searched_field
EventLog::search_raw_events           raw_searches_return_the_stored_body_text_of_the_same_events
EventLog::search_raw_events           searches_honour_both_sequence_bounds_in_both_orders
EventLog::get_event                   appended_events_read_back_as_stored
EventLog::get_event                   every_acknowledged_append_is_visible_at_once
EventLog::log_size                    log_sizes_count_every_log_including_deleted_organizations
EventLog::log_sizes                   log_sizes_count_every_log_including_deleted_organizations
EventLog::purge_idempotency           purging_idempotency_removes_expired_records_only
EventLog::purge_idempotency           expired_idempotency_records_no_longer_replay
LedgerStore::tree_root                tree_roots_are_the_roots_of_the_appended_leaves
LedgerStore::inclusion_proofs         inclusion_proofs_verify_against_the_roots
LedgerStore::consistency_proof        consistency_proofs_verify_between_sizes
LedgerStore::subtree_hashes           subtree_hashes_are_the_roots_of_their_leaf_ranges
LedgerStore::insert_checkpoint        checkpoints_keep_the_first_of_each_size_and_the_latest_is_the_largest
LedgerStore::latest_checkpoint        checkpoints_keep_the_first_of_each_size_and_the_latest_is_the_largest
LedgerStore::add_cosignatures         cosignatures_are_added_to_the_checkpoint_of_their_size
LedgerStore::logs_needing_checkpoint  logs_needing_a_checkpoint_are_those_grown_past_their_latest
Retention::purgeable_organizations    purgeable_organizations_have_a_retention_period_and_no_legal_hold
Retention::purge_events               retention_purges_contents_but_keeps_stubs_in_the_log
Retention::purge_events               a_legal_hold_blocks_purging_and_is_recorded_in_the_same_commit
Retention::erase_events               an_erasure_rewrites_bodies_purges_the_rest_and_the_index_forgets_them
Retention::legal_hold                 a_legal_hold_blocks_purging_and_is_recorded_in_the_same_commit
Retention::legal_hold                 a_legal_hold_is_not_set_on_an_organization_that_is_not_live
Retention::set_legal_hold             a_legal_hold_blocks_purging_and_is_recorded_in_the_same_commit
Retention::set_legal_hold             a_legal_hold_is_not_set_on_an_organization_that_is_not_live
StreamStore::insert_stream            streams_keep_every_field_and_list_oldest_first
StreamStore::get_stream               streams_keep_every_field_and_list_oldest_first
StreamStore::list_streams             streams_keep_every_field_and_list_oldest_first
StreamStore::update_stream            updating_a_stream_replaces_its_settings_but_not_its_cursor
StreamStore::delete_stream            a_deleted_stream_is_gone
StreamStore::lease_stream             a_stream_lease_keeps_other_holders_out_until_it_expires
StreamStore::record_delivery          deliveries_are_recorded_only_by_the_lease_holder_from_the_expected_cursor
StreamStore::record_delivery          a_delivery_leaves_the_state_the_enabled_flag_gives
StreamStore::record_stream_failure    stream_failures_record_the_state_and_the_reason
StreamStore::set_stream_cursor        replays_move_a_stream_cursor
StreamStore::organization_cursors     an_operator_wide_stream_keeps_a_cursor_per_organization
StreamStore::set_organization_cursor  an_operator_wide_stream_keeps_a_cursor_per_organization
StreamStore::record_organization_delivery an_operator_wide_stream_keeps_a_cursor_per_organization
ExportStore::insert_export            exports_keep_every_field_and_list_by_state_oldest_first
ExportStore::get_export               exports_keep_every_field_and_list_by_state_oldest_first
ExportStore::exports_in_state         exports_keep_every_field_and_list_by_state_oldest_first
ExportStore::finish_export            exports_keep_every_field_and_list_by_state_oldest_first
ExportStore::finish_export            a_finished_export_stays_as_it_finished
ExportStore::revise_export            only_a_ready_export_is_revised
ExportStore::claim_export             one_runner_at_a_time_claims_a_pending_export
PortalStore::insert_portal_link       a_portal_link_opens_one_session_even_when_raced
PortalStore::redeem_portal_link       a_portal_link_opens_one_session_even_when_raced
PortalStore::touch_portal_session     portal_sessions_expire_after_inactivity_and_are_purged
PortalStore::portal_session_open      portal_sessions_expire_after_inactivity_and_are_purged
PortalStore::purge_portal             portal_sessions_expire_after_inactivity_and_are_purged
PortalStore::purge_portal             purging_the_portal_removes_only_what_expired
Operators::insert_operator            operators_are_found_by_email_which_is_unique
Operators::find_operator              operators_are_found_by_email_which_is_unique
Operators::insert_operator_session    operator_sessions_expire_after_inactivity_end_at_sign_out_and_are_purged
Operators::touch_operator_session     operator_sessions_expire_after_inactivity_end_at_sign_out_and_are_purged
Operators::operator_session_open      operator_sessions_expire_after_inactivity_end_at_sign_out_and_are_purged
Operators::delete_operator_session    operator_sessions_expire_after_inactivity_end_at_sign_out_and_are_purged
Operators::purge_operator_sessions    operator_sessions_expire_after_inactivity_end_at_sign_out_and_are_purged
Incidents::stream_faults              a_stream_fails_from_its_first_failure_until_it_delivers_or_is_disabled
Incidents::open_incident              an_incident_opens_once_per_streak_and_resolves_once
Incidents::resolve_incident           an_incident_opens_once_per_streak_and_resolves_once
Incidents::open_incidents             an_incident_opens_once_per_streak_and_resolves_once
Incidents::recent_incidents           an_incident_opens_once_per_streak_and_resolves_once
Incidents::claim_notice               an_incident_s_notifications_go_out_once_in_order_retried_until_acknowledged
Incidents::finish_notice              an_incident_s_notifications_go_out_once_in_order_retried_until_acknowledged
Incidents::purge_incidents            purging_incidents_removes_only_resolved_ones_that_owe_nothing
";

/// Every contract test, listed once. `stores` take the store; `fixtures` take the whole
/// fixture, to reopen it. `$then` receives the lists (one backend's tests, or their names).
macro_rules! contract_tests {
    ($then:ident!($($args:tt)*)) => {
        $then!($($args)*
            stores: [
                a_store_answers_ping,
                api_keys_are_found_by_their_hash,
                api_keys_list_oldest_first_with_every_field,
                a_revocation_keeps_a_live_unrestricted_admin_key_unless_told_not_to,
                racing_revocations_never_remove_the_last_admin_key,
                a_key_s_last_use_only_moves_forward,
                organizations_keep_every_field,
                external_ids_are_unique_among_live_organizations,
                updates_replace_the_fields_of_live_organizations_only,
                deleted_organizations_disappear_but_keep_their_logs,
                a_deletion_whose_caller_stops_waiting_still_stops_appends,
                organization_lists_page_with_cursors_in_both_orders,
                organization_lists_filter_by_domain_name_and_id,
                retention_periods_are_set_on_live_organizations_only,
                schema_versions_are_immutable,
                racing_schema_writers_create_each_version_once,
                an_equal_schema_returns_the_latest_version,
                schema_lists_page_by_version_in_both_orders,
                action_lists_page_by_name_with_first_and_latest_times,
                sequences_are_gap_free_per_organization,
                concurrent_appends_never_share_a_sequence,
                concurrent_appends_to_many_organizations_keep_each_log_gap_free,
                an_idempotent_append_is_stored_once,
                a_replay_answers_with_the_first_appends_receipts_and_outcome,
                expired_idempotency_records_no_longer_replay,
                an_expired_claim_is_replaced_by_the_next_append_with_its_identity,
                purging_idempotency_removes_expired_records_only,
                appends_to_unknown_or_deleted_organizations_fail_alone,
                appended_events_read_back_as_stored,
                every_acknowledged_append_is_visible_at_once,
                log_sizes_count_every_log_including_deleted_organizations,
                searches_honour_both_sequence_bounds_in_both_orders,
                free_text_finds_case_insensitive_substrings_of_every_searched_field,
                searches_find_exactly_the_matching_events_of_a_long_log,
                raw_searches_return_the_stored_body_text_of_the_same_events,
                tree_roots_are_the_roots_of_the_appended_leaves,
                inclusion_proofs_verify_against_the_roots,
                consistency_proofs_verify_between_sizes,
                subtree_hashes_are_the_roots_of_their_leaf_ranges,
                checkpoints_keep_the_first_of_each_size_and_the_latest_is_the_largest,
                cosignatures_are_added_to_the_checkpoint_of_their_size,
                logs_needing_a_checkpoint_are_those_grown_past_their_latest,
                purgeable_organizations_have_a_retention_period_and_no_legal_hold,
                retention_purges_contents_but_keeps_stubs_in_the_log,
                a_legal_hold_blocks_purging_and_is_recorded_in_the_same_commit,
                a_legal_hold_is_not_set_on_an_organization_that_is_not_live,
                streams_keep_every_field_and_list_oldest_first,
                updating_a_stream_replaces_its_settings_but_not_its_cursor,
                a_deleted_stream_is_gone,
                a_stream_lease_keeps_other_holders_out_until_it_expires,
                deliveries_are_recorded_only_by_the_lease_holder_from_the_expected_cursor,
                a_delivery_leaves_the_state_the_enabled_flag_gives,
                stream_failures_record_the_state_and_the_reason,
                replays_move_a_stream_cursor,
                an_operator_wide_stream_keeps_a_cursor_per_organization,
                exports_keep_every_field_and_list_by_state_oldest_first,
                a_finished_export_stays_as_it_finished,
                only_a_ready_export_is_revised,
                one_runner_at_a_time_claims_a_pending_export,
                a_portal_link_opens_one_session_even_when_raced,
                portal_sessions_expire_after_inactivity_and_are_purged,
                purging_the_portal_removes_only_what_expired,
                operators_are_found_by_email_which_is_unique,
                operator_sessions_expire_after_inactivity_end_at_sign_out_and_are_purged,
                a_stream_fails_from_its_first_failure_until_it_delivers_or_is_disabled,
                an_incident_opens_once_per_streak_and_resolves_once,
                an_incident_s_notifications_go_out_once_in_order_retried_until_acknowledged,
                purging_incidents_removes_only_resolved_ones_that_owe_nothing,
            ],
            fixtures: [
                acknowledged_writes_survive_reopening_the_store,
                an_erasure_rewrites_bodies_purges_the_rest_and_the_index_forgets_them,
            ],
        );
    };
}

/// One backend's module of `#[tokio::test]`s, each on a fresh database from `$backend()`.
macro_rules! backend_tests {
    ($backend:ident stores: [$($store:ident),* $(,)?], fixtures: [$($fixture:ident),* $(,)?] $(,)?) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $store() {
                    let fixture = super::$backend().await;
                    super::$store(fixture.store.as_ref()).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $fixture() {
                    super::$fixture(super::$backend().await).await;
                }
            )*
        }
    };
}

/// The names of the contract tests, for the coverage check.
macro_rules! test_names {
    (stores: [$($store:ident),* $(,)?], fixtures: [$($fixture:ident),* $(,)?] $(,)?) => {
        const CONTRACT_TESTS: &[&str] = &[$(stringify!($store),)* $(stringify!($fixture),)*];
    };
}

contract_tests!(backend_tests!(sqlite));
contract_tests!(backend_tests!(postgres));
contract_tests!(test_names!());

/// The methods of every `pub trait` in the store's `lib.rs`, as `(trait, method)`.
fn trait_methods(lib: &str) -> Vec<(String, String)> {
    let mut methods = Vec::new();
    let mut current: Option<String> = None;
    for line in lib.lines() {
        if let Some(rest) = line.strip_prefix("pub trait ") {
            let name = rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or_default();
            current = Some(name.to_owned());
        } else if line == "}" {
            current = None;
        } else if let (Some(name), Some((_, rest))) = (&current, line.split_once("async fn ")) {
            let method = rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or_default();
            methods.push((name.clone(), method.to_owned()));
        }
    }
    methods
}

/// The text of the top-level function `name` in this file, from its signature to its closing
/// brace (rustfmt puts that at the start of a line).
fn function_text<'a>(source: &'a str, name: &str) -> Option<&'a str> {
    let start = source.find(&format!("\nasync fn {name}("))?;
    let length = source[start..].find("\n}\n")?;
    Some(&source[start..start + length])
}

#[test]
fn every_store_method_is_covered() {
    let declared = trait_methods(include_str!("../src/lib.rs"));
    assert!(
        declared.len() >= 40,
        "lib.rs no longer reads as expected: {declared:?}"
    );
    let rows: Vec<(&str, &str)> = COVERAGE
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(method, test)| (method, test.trim()))
        .collect();
    let mut listed: Vec<(String, String)> = rows
        .iter()
        .map(|(method, _)| {
            let (name, method) = method.split_once("::").expect("Trait::method");
            (name.to_owned(), method.to_owned())
        })
        .collect();
    listed.sort();
    listed.dedup();
    let unlisted: Vec<_> = declared.iter().filter(|m| !listed.contains(m)).collect();
    let unknown: Vec<_> = listed.iter().filter(|m| !declared.contains(m)).collect();
    assert!(
        unlisted.is_empty(),
        "methods no COVERAGE row names (add a test, and a row): {unlisted:?}"
    );
    assert!(
        unknown.is_empty(),
        "COVERAGE rows for methods the traits no longer have: {unknown:?}"
    );
    let source = include_str!("contract.rs");
    for (method, test) in rows {
        assert!(
            CONTRACT_TESTS.contains(&test),
            "{test} (for {method}) is not in contract_tests!"
        );
        let text = function_text(source, test)
            .unwrap_or_else(|| panic!("{test} is not an async fn of this file"));
        let (_, name) = method.split_once("::").expect("Trait::method");
        assert!(
            text.contains(&format!("{name}(")),
            "{test} is listed for {method} but does not call it"
        );
    }
}

/// A store over a fresh database (a temporary file, or a schema of its own), and the guard that
/// deletes it.
struct Fixture {
    store: Arc<dyn Store>,
    location: Location,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<SchemaGuard>,
}

/// Where a fixture's database is, to open it again.
enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

/// Drops the named schema of the shared PostgreSQL database.
struct SchemaGuard(String);

async fn open(location: &Location) -> Arc<dyn Store> {
    match location {
        Location::Sqlite(path) => {
            // A store just dropped (a reopen) releases its log's lock when its threads end.
            for _ in 0..200 {
                match SqliteStore::open(path) {
                    Ok(store) => return Arc::new(store),
                    Err(trailmark_store::StoreError::Locked(_)) => {
                        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                    }
                    Err(error) => panic!("open: {error}"),
                }
            }
            panic!("the dropped store never released its log")
        }
        Location::Postgres(url) => Arc::new(PostgresStore::connect(url).await.expect("connect")),
    }
}

impl Fixture {
    /// Closes the store and opens its database again, as a restarted server does.
    async fn reopen(self) -> Fixture {
        let Fixture {
            store,
            location,
            _dir,
            _schema,
        } = self;
        drop(store);
        Fixture {
            store: open(&location).await,
            location,
            _dir,
            _schema,
        }
    }
}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let location = Location::Sqlite(dir.path().join("t.db"));
    Fixture {
        store: open(&location).await,
        location,
        _dir: Some(dir),
        _schema: None,
    }
}

fn postgres_admin_url() -> String {
    std::env::var("TRAILMARK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The database the PostgreSQL tests share, each in a schema of its own that its store's search
/// path names. A database per test cost over a second, mostly the checkpoint PostgreSQL forces
/// on every DROP DATABASE (which also stalls everyone else's writes); a schema is created and
/// dropped in milliseconds. The database is made on first use and left, empty, for the next run.
const SHARED_DATABASE: &str = "trailmark_contract";

/// The admin URL with `database` in place of its own, and `parameter` added to its query.
fn postgres_url(database: &str, parameter: Option<&str>) -> String {
    let admin = postgres_admin_url();
    let (server, rest) = admin.rsplit_once('/').expect("a URL with a database");
    let query = rest.split_once('?').map(|(_, query)| query);
    let query: Vec<&str> = query.into_iter().chain(parameter).collect();
    if query.is_empty() {
        format!("{server}/{database}")
    } else {
        format!("{server}/{database}?{}", query.join("&"))
    }
}

async fn run_sql(url: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute(sql).await
}

async fn postgres() -> Fixture {
    use tokio_postgres::error::SqlState;
    // Two runs creating it at once: one of them finds it taken, by name or in the catalog.
    if let Err(error) = run_sql(
        &postgres_admin_url(),
        &format!("CREATE DATABASE {SHARED_DATABASE}"),
    )
    .await
    {
        let code = error.code();
        assert!(
            code == Some(&SqlState::DUPLICATE_DATABASE)
                || code == Some(&SqlState::UNIQUE_VIOLATION),
            "PostgreSQL (TRAILMARK_TEST_POSTGRES_URL) creates the test database: {error}"
        );
    }
    let shared = postgres_url(SHARED_DATABASE, None);
    let schema = format!(
        "contract_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    run_sql(&shared, &format!("CREATE SCHEMA {schema}"))
        .await
        .expect("a schema for the test");
    let search_path = format!("options=-csearch_path%3D{schema}%2Cpublic");
    let location = Location::Postgres(postgres_url(SHARED_DATABASE, Some(&search_path)));
    Fixture {
        store: open(&location).await,
        location,
        _dir: None,
        _schema: Some(SchemaGuard(schema)),
    }
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        // The store is closed, but a session of its may still hold a lock on its tables until
        // its connection task (on the test's runtime, blocked here, or on the appender's thread)
        // sends a ROLLBACK: those sessions are ended first, as DROP DATABASE … WITH (FORCE)
        // would.
        let statement = format!(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l
               JOIN pg_class c ON c.oid = l.relation
               JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = '{0}' AND l.pid <> pg_backend_pid();
             DROP SCHEMA IF EXISTS {0} CASCADE",
            self.0
        );
        // The test's runtime cannot be blocked on from inside; a thread with its own can.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|runtime| {
                    runtime.block_on(run_sql(&postgres_url(SHARED_DATABASE, None), &statement))
                })
        })
        .join();
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A fixed instant the tests count from, so stored times compare exactly.
const T0: i64 = 1_780_000_000_000;

fn at(millis: i64) -> Timestamp {
    Timestamp::from_unix_millis(T0 + millis)
}

async fn organization(store: &dyn Store, name: &str) -> String {
    let new = OrganizationChanges::parse(&json!({"name": name}), true)
        .expect("valid")
        .into_new_organization(Timestamp::now());
    store.insert_organization(new).await.expect("insert").id
}

/// An organization made and deleted at once: appends to it must fail.
async fn deleted_organization(store: &dyn Store, name: &str) -> String {
    let id = organization(store, name).await;
    assert!(
        store
            .delete_organization(&id, Timestamp::now())
            .await
            .expect("delete")
    );
    id
}

/// The `n`-th organization of a test: ids sort as `n` does, as generated ids sort by time.
fn new_organization(n: u32, name: &str) -> Organization {
    Organization {
        id: format!("org_{n:026}"),
        name: name.to_owned(),
        domains: Vec::new(),
        metadata: BTreeMap::new(),
        external_id: None,
        allow_profiles_outside_organization: false,
        retention_period_in_days: None,
        created_at: at(i64::from(n)),
        updated_at: at(i64::from(n)),
    }
}

fn domain(n: u32, name: &str, state: DomainState) -> Domain {
    Domain {
        id: format!("org_domain_{n:026}"),
        domain: name.to_owned(),
        state,
    }
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

/// The `n`-th event of a test, with its own actor, target and search needle (`needle{n}x`,
/// which no other event's text contains), received at `received_at`.
fn described(n: u64, action: &str, received_at: Timestamp) -> PendingEvent {
    let event = NewEvent::parse(&json!({
        "action": action,
        "occurred_at": "2026-08-01T10:00:00Z",
        "actor": {"id": format!("actor_{n}"), "type": "user", "name": format!("Actor {n}")},
        "targets": [{"id": format!("doc_{n}"), "type": "document"}],
        "context": {"location": "192.0.2.1", "user_agent": "contract-test"},
        "metadata": {"needle": format!("needle{n}x")}
    }))
    .expect("valid event");
    PendingEvent {
        id: format!("event_{n:026}"),
        event,
        received_at,
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

async fn appended(
    store: &dyn Store,
    organization: &str,
    events: Vec<PendingEvent>,
) -> Vec<Receipt> {
    match append(store, organization, events).await.expect("append") {
        AppendOutcome::Appended { receipts } => receipts,
        replayed => panic!("expected an append, got {replayed:?}"),
    }
}

async fn whole_log(store: &dyn Store, organization: &str) -> Vec<StoredEvent> {
    store
        .events_after(organization, None, 100_000)
        .await
        .expect("read")
}

fn page(order: Order, limit: usize, before: Option<String>, after: Option<String>) -> PageRequest {
    PageRequest {
        limit,
        order,
        before,
        after,
    }
}

/// The page a cursor-paginated list must give for `request`, cut from the whole list: `all`
/// holds every item with its cursor, in ascending order, and the request's cursor is one of
/// them. `more_before`/`more_after` say whether any item lies before the first item of the
/// page or after its last, in the requested order (the cursor's own item counts).
fn expected_page<T: Clone>(all: &[(String, T)], request: &PageRequest) -> Page<T> {
    let mut ordered: Vec<&(String, T)> = all.iter().collect();
    if request.order == Order::Desc {
        ordered.reverse();
    }
    let position = |cursor: &String| {
        ordered
            .iter()
            .position(|(key, _)| key == cursor)
            .expect("cursors are items of the list")
    };
    let (items, more_before, more_after) = match (&request.before, &request.after) {
        (Some(before), _) => {
            let end = position(before);
            let start = end.saturating_sub(request.limit);
            (&ordered[start..end], start > 0, true)
        }
        (None, Some(after)) => {
            let start = position(after) + 1;
            let end = (start + request.limit).min(ordered.len());
            (&ordered[start..end], true, end < ordered.len())
        }
        (None, None) => {
            let end = request.limit.min(ordered.len());
            (&ordered[..end], false, end < ordered.len())
        }
    };
    Page {
        items: items.iter().map(|(_, item)| item.clone()).collect(),
        more_before,
        more_after,
    }
}

/// Checks every page of a list, in both orders, from the start and before and after each of
/// its items, against [`expected_page`].
async fn check_every_page<T, F, R>(all: &[(String, T)], list: F)
where
    T: Clone + PartialEq + Debug,
    F: Fn(PageRequest) -> R,
    R: Future<Output = Result<Page<T>, StoreError>>,
{
    for order in [Order::Asc, Order::Desc] {
        for limit in [1, 2, all.len()] {
            let mut requests = vec![page(order, limit, None, None)];
            for (key, _) in all {
                requests.push(page(order, limit, Some(key.clone()), None));
                requests.push(page(order, limit, None, Some(key.clone())));
            }
            for request in requests {
                assert_eq!(
                    list(request.clone()).await.expect("list"),
                    expected_page(all, &request),
                    "{request:?}"
                );
            }
        }
    }
}

/// RFC 6962's Merkle tree hash of `leaves`, straight from its definition.
fn merkle_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            // The largest power of two smaller than n.
            let split = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(
                &merkle_root(&leaves[..split]),
                &merkle_root(&leaves[split..]),
            )
        }
    }
}

/// The leaves of an organization's log, each checked to be the leaf hash of its event object.
async fn leaves(store: &dyn Store, organization: &str) -> Vec<Hash> {
    whole_log(store, organization)
        .await
        .iter()
        .map(|event| {
            if event.purged_at.is_none() {
                assert_eq!(
                    event.leaf_hash,
                    event_leaf_hash(&event.leaf_object()),
                    "event {}",
                    event.id
                );
            }
            event.leaf_hash
        })
        .collect()
}

/// A log of `batches.iter().sum()` events for a new organization, appended in batches of those
/// sizes with another organization's events between them; its id and leaves.
async fn ledger_log(store: &dyn Store, batches: &[u64]) -> (String, Vec<Hash>) {
    let acme = organization(store, "Acme").await;
    let other = organization(store, "Other").await;
    let mut n = 0;
    for (i, size) in batches.iter().enumerate() {
        let events = (n..n + size)
            .map(|n| described(n, "document.updated", Timestamp::now()))
            .collect();
        appended(store, &acme, events).await;
        n += size;
        let noise = described(10_000 + i as u64, "user.signed_in", Timestamp::now());
        appended(store, &other, vec![noise]).await;
    }
    let leaves = leaves(store, &acme).await;
    assert_eq!(leaves.len() as u64, n);
    (acme, leaves)
}

fn stream(n: u8, organization: &str, enabled: bool) -> StreamRecord {
    StreamRecord {
        id: format!("log_stream_{n:026}"),
        organization_id: Some(organization.to_owned()),
        kind: "http".into(),
        name: format!("Stream {n}"),
        config: json!({"url": format!("http://127.0.0.1:9/hook/{n}"), "batch_size": 100}),
        secrets: vec![n, 0, 255],
        enabled,
        state: rules::initial_stream_state(enabled),
        cursor: None,
        last_synced_at: None,
        last_error: None,
        created_at: at(i64::from(n)),
        updated_at: at(i64::from(n)),
    }
}

async fn get_stream(store: &dyn Store, id: &str) -> StreamRecord {
    store
        .get_stream(id)
        .await
        .expect("get")
        .expect("the stream exists")
}

fn export(n: u8, organization: &str, format: ExportFormat) -> ExportRecord {
    ExportRecord {
        id: format!("audit_log_export_{n:026}"),
        organization_id: organization.to_owned(),
        state: ExportState::Pending,
        format,
        filter: EventFilter::default(),
        row_count: None,
        error: None,
        created_at: at(i64::from(n)),
        updated_at: at(i64::from(n)),
    }
}

fn action_schema(action: &str, version: u32, target: &str, created_at: Timestamp) -> ActionSchema {
    ActionSchema {
        action: ActionName::parse(action).expect("valid"),
        version,
        definition: SchemaDefinition::parse(&json!({"targets": [{"type": target}]}))
            .expect("valid"),
        created_at,
    }
}

// ---------------------------------------------------------------------------------------------
// Health and API keys

async fn a_store_answers_ping(store: &dyn Store) {
    store.ping().await.expect("a live database answers");
}

fn api_key(n: u8, scope: Scope, organization_id: Option<&str>) -> ApiKeyRecord {
    ApiKeyRecord {
        id: format!("key_{n}"),
        hash: [n; 32],
        name: format!("key number {n}"),
        prefix: format!("sk_0{n}0{n}0{n}0{n}"),
        scope,
        organization_id: organization_id.map(str::to_owned),
        created_at: at(i64::from(n)),
        expires_at: None,
        last_used_at: None,
    }
}

async fn api_keys_are_found_by_their_hash(store: &dyn Store) {
    assert!(
        !store.has_api_keys().await.expect("has"),
        "a new store has none"
    );
    let mut expiring = api_key(3, Scope::Read, None);
    expiring.expires_at = Some(at(1_000));
    expiring.last_used_at = Some(at(500));
    let keys = [
        api_key(1, Scope::Admin, None),
        api_key(2, Scope::Ingest, Some("org_1")),
        expiring,
    ];
    for key in &keys {
        store.insert_api_key(key.clone()).await.expect("insert");
    }
    assert!(store.has_api_keys().await.expect("has"));
    for key in keys {
        assert_eq!(store.find_api_key(key.hash).await.expect("find"), Some(key));
    }
    assert_eq!(store.find_api_key([4; 32]).await.expect("find"), None);
}

async fn api_keys_list_oldest_first_with_every_field(store: &dyn Store) {
    assert_eq!(store.list_api_keys().await.expect("list"), Vec::new());
    let mut restricted = api_key(2, Scope::Read, Some("org_1"));
    restricted.expires_at = Some(at(9_000));
    restricted.last_used_at = Some(at(4_000));
    // Inserted newest first: the list is by creation, not insertion.
    let keys = vec![
        api_key(1, Scope::Admin, None),
        restricted,
        api_key(3, Scope::Ingest, None),
    ];
    for key in keys.iter().rev() {
        store.insert_api_key(key.clone()).await.expect("insert");
    }
    assert_eq!(store.list_api_keys().await.expect("list"), keys);
}

async fn a_revocation_keeps_a_live_unrestricted_admin_key_unless_told_not_to(store: &dyn Store) {
    let now = at(5_000);
    let mut expired_admin = api_key(3, Scope::Admin, None);
    expired_admin.expires_at = Some(now);
    for key in [
        api_key(1, Scope::Admin, None),
        api_key(2, Scope::Admin, Some("org_1")),
        expired_admin,
        api_key(4, Scope::Read, None),
        api_key(5, Scope::Admin, None),
    ] {
        store.insert_api_key(key).await.expect("insert");
    }
    assert_eq!(
        store
            .revoke_api_key("key_404", true, now)
            .await
            .expect("revoke"),
        Revocation::NotFound
    );
    assert_eq!(
        store
            .revoke_api_key("key_4", true, now)
            .await
            .expect("revoke"),
        Revocation::Revoked(api_key(4, Scope::Read, None))
    );
    assert_eq!(
        store
            .revoke_api_key("key_1", true, now)
            .await
            .expect("revoke"),
        Revocation::Revoked(api_key(1, Scope::Admin, None)),
        "key_5 is left"
    );
    // Neither a restricted nor an expired admin key counts as the one left.
    assert_eq!(
        store
            .revoke_api_key("key_5", true, now)
            .await
            .expect("revoke"),
        Revocation::LastAdminKey
    );
    assert!(store.find_api_key([5; 32]).await.expect("find").is_some());
    // Restricted and expired admin keys go freely.
    for id in ["key_2", "key_3"] {
        assert!(matches!(
            store.revoke_api_key(id, true, now).await.expect("revoke"),
            Revocation::Revoked(_)
        ));
    }
    assert_eq!(
        store
            .revoke_api_key("key_5", false, now)
            .await
            .expect("revoke"),
        Revocation::Revoked(api_key(5, Scope::Admin, None))
    );
    assert_eq!(store.find_api_key([5; 32]).await.expect("find"), None);
    assert_eq!(store.list_api_keys().await.expect("list"), Vec::new());
}

async fn racing_revocations_never_remove_the_last_admin_key(store: &dyn Store) {
    let now = at(5_000);
    for round in 0..5u8 {
        let (a, b) = (round * 2 + 1, round * 2 + 2);
        for n in [a, b] {
            store
                .insert_api_key(api_key(n, Scope::Admin, None))
                .await
                .expect("insert");
        }
        let (first, second) = (format!("key_{a}"), format!("key_{b}"));
        let (first, second) = futures_util::future::join(
            store.revoke_api_key(&first, true, now),
            store.revoke_api_key(&second, true, now),
        )
        .await;
        let outcomes = [first.expect("revoke"), second.expect("revoke")];
        let revoked = outcomes
            .iter()
            .filter(|o| matches!(o, Revocation::Revoked(_)))
            .count();
        assert_eq!(revoked, 1, "round {round}: {outcomes:?}");
        assert!(outcomes.contains(&Revocation::LastAdminKey));
        // The survivor goes with the flag, for the next round to start from none.
        for n in [a, b] {
            store
                .revoke_api_key(&format!("key_{n}"), false, now)
                .await
                .expect("revoke");
        }
    }
}

async fn a_key_s_last_use_only_moves_forward(store: &dyn Store) {
    store
        .insert_api_key(api_key(1, Scope::Ingest, None))
        .await
        .expect("insert");
    let last_use = || async {
        store
            .find_api_key([1; 32])
            .await
            .expect("find")
            .expect("key")
            .last_used_at
    };
    assert_eq!(last_use().await, None);
    assert!(
        store
            .touch_api_key("key_1", at(2_000))
            .await
            .expect("touch")
    );
    assert_eq!(last_use().await, Some(at(2_000)));
    assert!(
        store
            .touch_api_key("key_1", at(1_000))
            .await
            .expect("touch")
    );
    assert_eq!(last_use().await, Some(at(2_000)), "never moved back");
    assert!(
        store
            .touch_api_key("key_1", at(3_000))
            .await
            .expect("touch")
    );
    assert_eq!(last_use().await, Some(at(3_000)));
    assert!(
        !store
            .touch_api_key("key_2", at(3_000))
            .await
            .expect("touch")
    );
}

// ---------------------------------------------------------------------------------------------
// Organizations

async fn organizations_keep_every_field(store: &dyn Store) {
    let mut acme = new_organization(1, "Acme");
    acme.external_id = Some("crm-acme".into());
    acme.domains = vec![
        domain(1, "acme.test", DomainState::Verified),
        domain(2, "acme-labs.test", DomainState::Pending),
        domain(3, "acme-legacy.test", DomainState::LegacyVerified),
    ];
    acme.metadata = BTreeMap::from([
        ("tier".to_owned(), "gold".to_owned()),
        ("region".to_owned(), "eu-west".to_owned()),
    ]);
    acme.allow_profiles_outside_organization = true;
    acme.retention_period_in_days = Some(90);
    let plain = new_organization(2, "Plain");
    for organization in [acme, plain] {
        assert_eq!(
            store
                .insert_organization(organization.clone())
                .await
                .expect("insert"),
            organization
        );
        assert_eq!(
            store.get_organization(&organization.id).await.expect("get"),
            Some(organization)
        );
    }
    assert_eq!(
        store.get_organization("org_missing").await.expect("get"),
        None
    );
}

async fn external_ids_are_unique_among_live_organizations(store: &dyn Store) {
    let mut first = new_organization(1, "First");
    first.external_id = Some("crm-1".into());
    store
        .insert_organization(first.clone())
        .await
        .expect("insert");

    let mut second = new_organization(2, "Second");
    second.external_id = Some("crm-1".into());
    assert!(matches!(
        store.insert_organization(second.clone()).await,
        Err(StoreError::Conflict("external_id"))
    ));
    assert_eq!(
        store.get_organization(&second.id).await.expect("get"),
        None,
        "a refused organization is not stored"
    );
    second.external_id = Some("crm-2".into());
    store
        .insert_organization(second.clone())
        .await
        .expect("insert");

    let mut taking = second.clone();
    taking.external_id = Some("crm-1".into());
    assert!(matches!(
        store.update_organization(taking).await,
        Err(StoreError::Conflict("external_id"))
    ));
    assert_eq!(
        store.get_organization(&second.id).await.expect("get"),
        Some(second),
        "a refused update changes nothing"
    );
    first.name = "First, renamed".into();
    assert!(
        store
            .update_organization(first.clone())
            .await
            .expect("an organization keeps its own external id")
    );

    // Deleting an organization frees its external id.
    assert!(
        store
            .delete_organization(&first.id, at(10))
            .await
            .expect("delete")
    );
    let mut third = new_organization(3, "Third");
    third.external_id = Some("crm-1".into());
    assert_eq!(
        store
            .insert_organization(third.clone())
            .await
            .expect("insert"),
        third
    );
}

async fn updates_replace_the_fields_of_live_organizations_only(store: &dyn Store) {
    let acme = new_organization(1, "Acme");
    store
        .insert_organization(acme.clone())
        .await
        .expect("insert");
    let mut changed = acme.clone();
    changed.name = "Acme Corporation".into();
    changed.external_id = Some("crm-7".into());
    changed.domains = vec![domain(9, "acme.test", DomainState::Pending)];
    changed.metadata = BTreeMap::from([("plan".to_owned(), "enterprise".to_owned())]);
    changed.allow_profiles_outside_organization = true;
    changed.updated_at = at(5_000);
    assert!(
        store
            .update_organization(changed.clone())
            .await
            .expect("update")
    );
    assert_eq!(
        store.get_organization(&acme.id).await.expect("get"),
        Some(changed.clone())
    );

    assert!(
        !store
            .update_organization(new_organization(2, "Never stored"))
            .await
            .expect("update"),
        "an unknown organization is not created by an update"
    );
    assert_eq!(
        store
            .get_organization(&new_organization(2, "").id)
            .await
            .expect("get"),
        None
    );
    assert!(
        store
            .delete_organization(&acme.id, at(6_000))
            .await
            .expect("delete")
    );
    changed.name = "Back from the dead".into();
    assert!(
        !store.update_organization(changed).await.expect("update"),
        "a deleted organization is not updated"
    );
    assert_eq!(store.get_organization(&acme.id).await.expect("get"), None);
}

async fn deleted_organizations_disappear_but_keep_their_logs(store: &dyn Store) {
    let gone = organization(store, "Gone").await;
    let stays = organization(store, "Stays").await;
    let events = (0..3)
        .map(|n| described(n, "user.signed_in", Timestamp::now()))
        .collect();
    appended(store, &gone, events).await;
    let before = whole_log(store, &gone).await;
    let root = store.tree_root(&gone, 3).await.expect("root");

    assert!(
        store
            .delete_organization(&gone, at(1))
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_organization(&gone, at(2))
            .await
            .expect("delete"),
        "deleted once"
    );
    assert!(
        !store
            .delete_organization("org_missing", at(2))
            .await
            .expect("delete")
    );
    assert_eq!(store.get_organization(&gone).await.expect("get"), None);
    // Its earlier appends made the writer know it live: the deletion must undo that.
    let refused = append(store, &gone, vec![described(3, "user.signed_in", at(3))]).await;
    assert!(
        matches!(refused, Err(StoreError::OrganizationNotFound(ref id)) if *id == gone),
        "a deleted organization takes no new events: {refused:?}"
    );
    appended(store, &stays, vec![described(4, "user.signed_in", at(4))]).await;
    let listed = store
        .list_organizations(
            OrganizationFilter::default(),
            page(Order::Asc, 10, None, None),
        )
        .await
        .expect("list");
    assert_eq!(
        listed
            .items
            .iter()
            .map(|o| o.id.as_str())
            .collect::<Vec<_>>(),
        [stays.as_str()]
    );

    // The audit trail outlives the tenant record.
    assert_eq!(whole_log(store, &gone).await, before);
    assert_eq!(
        store.get_event(&before[1].id).await.expect("get"),
        Some(before[1].clone())
    );
    assert_eq!(store.log_size(&gone).await.expect("size"), 3);
    assert_eq!(store.tree_root(&gone, 3).await.expect("root"), root);
}

/// A client that hangs up drops its handler's future; a deletion it had started still commits,
/// and must still stop appends (the embedded log's writer keeps the organizations it found live).
async fn a_deletion_whose_caller_stops_waiting_still_stops_appends(store: &dyn Store) {
    let abandoned = organization(store, "Abandoned").await;
    appended(
        store,
        &abandoned,
        vec![described(0, "user.signed_in", at(0))],
    )
    .await;

    // Polled once, then dropped. Deleting again, waited for, commits after it (or finds the
    // organization gone already): either way the deletion is committed when it answers.
    let _ = store.delete_organization(&abandoned, at(1)).now_or_never();
    store
        .delete_organization(&abandoned, at(2))
        .await
        .expect("delete");
    assert_eq!(store.get_organization(&abandoned).await.expect("get"), None);

    let refused = append(
        store,
        &abandoned,
        vec![described(1, "user.signed_in", at(3))],
    )
    .await;
    assert!(
        matches!(refused, Err(StoreError::OrganizationNotFound(ref id)) if *id == abandoned),
        "a deleted organization takes no new events: {refused:?}"
    );
}

async fn organization_lists_page_with_cursors_in_both_orders(store: &dyn Store) {
    // Inserted out of order: a list's order is its ids', not insertion's.
    let mut all = Vec::new();
    for n in [3, 1, 5, 2, 4] {
        let organization = new_organization(n, &format!("Organization {n}"));
        store
            .insert_organization(organization.clone())
            .await
            .expect("insert");
        all.push((organization.id.clone(), organization));
    }
    let deleted = new_organization(6, "Deleted");
    store
        .insert_organization(deleted.clone())
        .await
        .expect("insert");
    store
        .delete_organization(&deleted.id, at(100))
        .await
        .expect("delete");
    all.sort_by(|a, b| a.0.cmp(&b.0));
    check_every_page(&all, |request| {
        store.list_organizations(OrganizationFilter::default(), request)
    })
    .await;
}

async fn organization_lists_filter_by_domain_name_and_id(store: &dyn Store) {
    let named = |n: u32, name: &str, domains: &[&str]| {
        let mut organization = new_organization(n, name);
        organization.domains = domains
            .iter()
            .enumerate()
            .map(|(i, d)| domain(n * 10 + i as u32, d, DomainState::Verified))
            .collect();
        organization
    };
    let organizations = [
        named(1, "Acme", &["acme.test"]),
        {
            let mut pure = named(2, "100% Pure", &["pure.test", "pure-labs.test"]);
            pure.external_id = Some("pure-crm-2".into());
            pure
        },
        named(3, "Acme_Labs", &[]),
        named(4, "AcmeXLabs", &["xlabs.test"]),
        named(5, "Back\\slash Inc", &[]),
        named(6, "Globex", &["globex.test"]),
        named(7, "Ärzte am Ölberg", &[]),
    ];
    for organization in &organizations {
        store
            .insert_organization(organization.clone())
            .await
            .expect("insert");
    }
    let globex = &organizations[5].id;
    store
        .delete_organization(globex, at(100))
        .await
        .expect("delete");

    let strings = |values: &[&str]| values.iter().map(|v| (*v).to_owned()).collect::<Vec<_>>();
    let by_search = |text: &str| OrganizationFilter {
        search: Some(text.to_owned()),
        ..OrganizationFilter::default()
    };
    let by_domains = |domains: &[&str]| OrganizationFilter {
        domains: strings(domains),
        ..OrganizationFilter::default()
    };
    let cases: Vec<(OrganizationFilter, Vec<u32>)> = vec![
        (OrganizationFilter::default(), vec![1, 2, 3, 4, 5, 7]),
        (by_search("aCmE"), vec![1, 3, 4]),
        (by_search("labs"), vec![3, 4]),
        (by_search("äRZTE AM öl"), vec![7]),
        // `%`, `_` and `\` are text, not patterns.
        (by_search("%"), vec![2]),
        (by_search("_"), vec![3]),
        (by_search("e_l"), vec![3]),
        (by_search("\\"), vec![5]),
        (by_search("k\\s"), vec![5]),
        (by_search("globex"), vec![]),
        (by_domains(&["PURE-LABS.test"]), vec![2]),
        (
            by_domains(&["acme.test", "xlabs.test", "globex.test"]),
            vec![1, 4],
        ),
        (by_domains(&["nowhere.test"]), vec![]),
        (
            OrganizationFilter {
                only: Some(organizations[2].id.clone()),
                ..OrganizationFilter::default()
            },
            vec![3],
        ),
        (
            OrganizationFilter {
                only: Some(organizations[2].id.clone()),
                search: Some("pure".into()),
                ..OrganizationFilter::default()
            },
            vec![],
        ),
        (
            OrganizationFilter {
                only: Some(globex.clone()),
                ..OrganizationFilter::default()
            },
            vec![],
        ),
        (
            OrganizationFilter {
                search: Some("acme".into()),
                domains: strings(&["xlabs.test", "pure.test"]),
                only: None,
                external_id: None,
            },
            vec![4],
        ),
        (
            OrganizationFilter {
                external_id: Some("pure-crm-2".into()),
                ..OrganizationFilter::default()
            },
            vec![2],
        ),
        (
            OrganizationFilter {
                external_id: Some("pure-crm".into()),
                ..OrganizationFilter::default()
            },
            vec![],
        ),
    ];
    for (filter, expected) in cases {
        let found = store
            .list_organizations(filter.clone(), page(Order::Asc, 100, None, None))
            .await
            .expect("list");
        let expected: Vec<_> = expected
            .iter()
            .map(|n| organizations[*n as usize - 1].clone())
            .collect();
        assert_eq!(found.items, expected, "{filter:?}");
        assert!(!found.more_before && !found.more_after, "{filter:?}");
    }
}

async fn retention_periods_are_set_on_live_organizations_only(store: &dyn Store) {
    let acme = new_organization(1, "Acme");
    store
        .insert_organization(acme.clone())
        .await
        .expect("insert");
    let mut expected = acme.clone();
    expected.retention_period_in_days = Some(30);
    expected.updated_at = at(1_000);
    assert_eq!(
        store
            .set_retention(&acme.id, 30, at(1_000))
            .await
            .expect("set"),
        Some(expected.clone())
    );
    assert_eq!(
        store.get_organization(&acme.id).await.expect("get"),
        Some(expected)
    );
    assert_eq!(
        store
            .set_retention("org_missing", 30, at(1_000))
            .await
            .expect("set"),
        None
    );
    store
        .delete_organization(&acme.id, at(2_000))
        .await
        .expect("delete");
    assert_eq!(
        store
            .set_retention(&acme.id, 7, at(3_000))
            .await
            .expect("set"),
        None
    );
}

// ---------------------------------------------------------------------------------------------
// Schemas

async fn schema_versions_are_immutable(store: &dyn Store) {
    let action = "invoice.paid";
    assert_eq!(store.latest_schema(action).await.expect("latest"), None);
    let v1 = action_schema(action, 1, "invoice", at(1));
    let v2 = action_schema(action, 2, "team", at(2));
    store.insert_schema(v1.clone()).await.expect("insert");
    assert_eq!(
        store.latest_schema(action).await.expect("latest"),
        Some(v1.clone())
    );
    store.insert_schema(v2.clone()).await.expect("insert");
    assert!(matches!(
        store
            .insert_schema(action_schema(action, 2, "document", at(3)))
            .await,
        Err(StoreError::Conflict("version"))
    ));
    assert!(matches!(
        store
            .insert_schema(action_schema(action, 1, "document", at(3)))
            .await,
        Err(StoreError::Conflict("version"))
    ));
    assert_eq!(
        store.get_schema(action, 1).await.expect("get"),
        Some(v1),
        "the first writer's version stands"
    );
    assert_eq!(
        store.get_schema(action, 2).await.expect("get"),
        Some(v2.clone())
    );
    assert_eq!(store.latest_schema(action).await.expect("latest"), Some(v2));
    assert_eq!(store.get_schema(action, 3).await.expect("get"), None);
    assert_eq!(
        store.get_schema("invoice.sent", 1).await.expect("get"),
        None
    );
    assert_eq!(
        store.latest_schema("invoice.sent").await.expect("latest"),
        None
    );
}

async fn racing_schema_writers_create_each_version_once(store: &dyn Store) {
    let action = || ActionName::parse("user.signed_in").expect("valid");
    let definition = |target: &str| {
        SchemaDefinition::parse(&json!({"targets": [{"type": target}]})).expect("valid")
    };
    let now = Timestamp::now();
    let same = (0..8).map(|_| rules::create_schema(store, action(), definition("team"), now));
    let created = futures_util::future::join_all(same).await;
    for schema in &created {
        assert_eq!(schema.as_ref().expect("create").version, 1, "{created:?}");
    }
    let targets = ["a", "b", "c", "d"];
    let different = targets
        .iter()
        .map(|target| rules::create_schema(store, action(), definition(target), now));
    let mut versions: Vec<u32> = futures_util::future::join_all(different)
        .await
        .into_iter()
        .map(|schema| schema.expect("create").version)
        .collect();
    versions.sort_unstable();
    assert_eq!(
        versions,
        [2, 3, 4, 5],
        "each writer got a version of its own"
    );
    let stored = store
        .list_schemas("user.signed_in", page(Order::Asc, 100, None, None))
        .await
        .expect("list");
    assert_eq!(
        stored.items.iter().map(|s| s.version).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
}

async fn schema_lists_page_by_version_in_both_orders(store: &dyn Store) {
    // More than nine versions: cursors are numbers, so "10" comes after "9".
    let mut all = Vec::new();
    for version in 1..=11 {
        let schema = action_schema("document.updated", version, "document", at(version.into()));
        store.insert_schema(schema.clone()).await.expect("insert");
        all.push((version.to_string(), schema));
    }
    for version in 1..=3 {
        store
            .insert_schema(action_schema("document.viewed", version, "team", at(50)))
            .await
            .expect("insert");
    }
    check_every_page(&all, |request| {
        store.list_schemas("document.updated", request)
    })
    .await;
    assert_eq!(
        store
            .list_schemas("document.deleted", page(Order::Desc, 10, None, None))
            .await
            .expect("list"),
        Page {
            items: Vec::new(),
            more_before: false,
            more_after: false,
        }
    );
    for cursor in ["abc", "", "1.5", "v2"] {
        for order in [Order::Asc, Order::Desc] {
            assert!(
                matches!(
                    store
                        .list_schemas(
                            "document.updated",
                            page(order, 5, None, Some(cursor.into()))
                        )
                        .await,
                    Err(StoreError::InvalidCursor("after"))
                ),
                "after={cursor:?}"
            );
            assert!(
                matches!(
                    store
                        .list_schemas(
                            "document.updated",
                            page(order, 5, Some(cursor.into()), None)
                        )
                        .await,
                    Err(StoreError::InvalidCursor("before"))
                ),
                "before={cursor:?}"
            );
        }
    }
}

async fn action_lists_page_by_name_with_first_and_latest_times(store: &dyn Store) {
    // (action, the times its versions were created at, in version order)
    let actions: [(&str, &[i64]); 5] = [
        ("user.signed_in", &[10, 50]),
        ("api_key.created", &[20]),
        ("user.signed_out", &[30, 40, 60]),
        ("document.updated", &[70]),
        ("user.invited", &[80, 90]),
    ];
    let mut all = Vec::new();
    for (action, times) in actions {
        let mut latest = None;
        for (i, time) in times.iter().enumerate() {
            let schema = action_schema(action, i as u32 + 1, "team", at(*time));
            store.insert_schema(schema.clone()).await.expect("insert");
            latest = Some(schema);
        }
        let latest = latest.expect("every action has a version");
        all.push((
            action.to_owned(),
            ActionSummary {
                created_at: at(times[0]),
                updated_at: latest.created_at,
                latest,
            },
        ));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    check_every_page(&all, |request| store.list_actions(request)).await;
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

// ---------------------------------------------------------------------------------------------
// Event log

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

async fn concurrent_appends_to_many_organizations_keep_each_log_gap_free(store: &dyn Store) {
    let mut tenants = Vec::new();
    for n in 0..8 {
        tenants.push(organization(store, &format!("Tenant {n}")).await);
    }
    let gone = deleted_organization(store, "Gone").await;
    // All at once, each naming one organization: appends of several organizations share a
    // commit where the backend groups them, and the deleted one's fail alone.
    let appends = (0..400u64).map(|n| {
        let target = if n % 50 == 49 {
            gone.clone()
        } else {
            tenants[(n % 8) as usize].clone()
        };
        async move {
            let outcome = append(store, &target, vec![pending(n)]).await;
            (target, outcome)
        }
    });
    let mut appended: BTreeMap<String, u64> = BTreeMap::new();
    for (target, outcome) in futures_util::future::join_all(appends).await {
        if target == gone {
            assert!(
                matches!(outcome, Err(StoreError::OrganizationNotFound(_))),
                "{outcome:?}"
            );
        } else {
            assert!(
                matches!(outcome, Ok(AppendOutcome::Appended { .. })),
                "{outcome:?}"
            );
            *appended.entry(target).or_default() += 1;
        }
    }
    for tenant in &tenants {
        assert_gap_free(store, tenant, appended[tenant]).await;
    }
    assert_eq!(appended.values().sum::<u64>(), 392);
}

/// Asserts that `organization`'s log, as `store` reads it, holds sequences `0..count` and no
/// other.
async fn assert_gap_free(store: &dyn Store, organization: &str, count: u64) {
    let stored = store
        .events_after(organization, None, 1000)
        .await
        .expect("read");
    assert_eq!(
        stored.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (0..count).collect::<Vec<_>>(),
        "{organization}"
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
    let gone = deleted_organization(store, "Gone").await;
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
    let acme = write_long_log(store).await;
    check_long_log_searches(store, &acme).await;
    // Without a filter, retention's stubs are still listed, in their place.
    let unfiltered = store
        .search_events(
            &acme,
            SearchRequest {
                filter: EventFilter::default(),
                after: None,
                before: None,
                order: Order::Asc,
                limit: 3,
            },
        )
        .await
        .expect("search");
    assert_eq!(
        unfiltered
            .events
            .iter()
            .map(|e| (e.sequence, e.purged_at.is_some()))
            .collect::<Vec<_>>(),
        vec![(0, true), (1, true), (2, true)]
    );
}

/// The long log in a new organization (returned), another's twins between its batches, and its
/// first [`PURGED`] events purged.
async fn write_long_log(store: &dyn Store) -> String {
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
    acme
}

/// Every filter, both orders, paged with cursors, finds exactly the events of the long log in
/// `acme` that a brute-force filter finds.
async fn check_long_log_searches(store: &dyn Store, acme: &str) {
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
                        acme,
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

async fn a_replay_answers_with_the_first_appends_receipts_and_outcome(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let later = Timestamp::now().plus_millis(600_000);
    let request = |events: Vec<PendingEvent>, identity: u8, outcome: &[u8]| AppendRequest {
        organization_id: acme.clone(),
        events,
        idempotency: Some(IdempotencyClaim {
            identity: [identity; 32],
            expires_at: later,
            outcome: outcome.to_vec(),
        }),
    };
    let first = (0..3)
        .map(|n| described(n, "user.signed_in", Timestamp::now()))
        .collect();
    let AppendOutcome::Appended { receipts } = store
        .append(request(first, 1, b"first"))
        .await
        .expect("append")
    else {
        panic!("the first append with an identity is stored");
    };
    assert_eq!(
        receipts.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        [0, 1, 2]
    );

    // The same identity with other events and another outcome: the first answer comes back.
    let retry = (3..5)
        .map(|n| described(n, "user.signed_in", Timestamp::now()))
        .collect();
    assert_eq!(
        store
            .append(request(retry, 1, b"second"))
            .await
            .expect("append"),
        AppendOutcome::Replayed {
            receipts: receipts.clone(),
            outcome: b"first".to_vec(),
        }
    );
    for n in 3..5 {
        assert_eq!(
            store
                .get_event(&described(n, "user.signed_in", at(0)).id)
                .await
                .expect("get"),
            None,
            "a replay stores nothing"
        );
    }
    // Another identity is another request.
    let other = vec![described(5, "user.signed_in", Timestamp::now())];
    assert!(matches!(
        store.append(request(other, 2, b"other")).await.expect("append"),
        AppendOutcome::Appended { receipts } if receipts[0].sequence == 3
    ));
    // The receipts are the stored events'.
    let log = whole_log(store, &acme).await;
    assert_eq!(log.len(), 4);
    for (receipt, event) in receipts.iter().zip(&log) {
        assert_eq!(
            (&receipt.id, receipt.sequence, receipt.leaf_hash),
            (&event.id, event.sequence, event.leaf_hash)
        );
    }
}

async fn an_expired_claim_is_replaced_by_the_next_append_with_its_identity(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let request = |n: u64, expires_at: Timestamp, outcome: &[u8]| AppendRequest {
        organization_id: acme.clone(),
        events: vec![described(n, "user.signed_in", Timestamp::now())],
        idempotency: Some(IdempotencyClaim {
            identity: [4; 32],
            expires_at,
            outcome: outcome.to_vec(),
        }),
    };
    let past = Timestamp::now().plus_millis(-1);
    let later = Timestamp::now().plus_millis(600_000);
    assert!(matches!(
        store
            .append(request(0, past, b"expired"))
            .await
            .expect("append"),
        AppendOutcome::Appended { .. }
    ));
    let AppendOutcome::Appended { receipts } = store
        .append(request(1, later, b"current"))
        .await
        .expect("append")
    else {
        panic!("an expired record does not answer");
    };
    assert_eq!(receipts[0].sequence, 1);
    assert_eq!(
        store
            .append(request(2, later, b"third"))
            .await
            .expect("append"),
        AppendOutcome::Replayed {
            receipts,
            outcome: b"current".to_vec(),
        },
        "the new claim answers from now on"
    );
    assert_eq!(store.log_size(&acme).await.expect("size"), 2);
}

async fn purging_idempotency_removes_expired_records_only(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let claimed = |n: u64, identity: u8, expires_at: Timestamp| AppendRequest {
        organization_id: acme.clone(),
        events: vec![pending(n)],
        idempotency: Some(claim(identity, expires_at)),
    };
    let expiry = Timestamp::now().plus_millis(600_000);
    let expired = Timestamp::now().plus_millis(-1);
    store.append(claimed(0, 1, expiry)).await.expect("append");
    store.append(claimed(1, 2, expired)).await.expect("append");
    assert_eq!(
        store
            .purge_idempotency(Timestamp::now())
            .await
            .expect("purge"),
        1,
        "only the expired record"
    );
    assert!(
        matches!(
            store.append(claimed(2, 1, expiry)).await.expect("append"),
            AppendOutcome::Replayed { .. }
        ),
        "a current record still answers after a purge"
    );
    // A record expires at its expiry: it no longer answers then, so it may go.
    assert_eq!(
        store
            .purge_idempotency(expiry.plus_millis(-1))
            .await
            .expect("purge"),
        0
    );
    assert_eq!(store.purge_idempotency(expiry).await.expect("purge"), 1);
    assert_eq!(store.purge_idempotency(expiry).await.expect("purge"), 0);
}

async fn appended_events_read_back_as_stored(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let globex = organization(store, "Globex").await;
    let acme_events: Vec<_> = (0..4)
        .map(|n| described(n, "document.updated", at(n as i64)))
        .collect();
    let globex_events: Vec<_> = (10..12)
        .map(|n| described(n, "user.signed_in", at(n as i64)))
        .collect();
    for (organization, events) in [(&acme, acme_events), (&globex, globex_events)] {
        let receipts = appended(store, organization, events.clone()).await;
        for (pending, receipt) in events.iter().zip(receipts) {
            let mut stored = store
                .get_event(&pending.id)
                .await
                .expect("get")
                .expect("an acknowledged event is there");
            let leaf_hash = event_leaf_hash(&stored.leaf_object());
            stored.body = unsalted(stored.body);
            assert_eq!(
                stored,
                StoredEvent {
                    id: pending.id.clone(),
                    organization_id: organization.clone(),
                    sequence: receipt.sequence,
                    received_at: pending.received_at,
                    leaf_hash: receipt.leaf_hash,
                    body: pending.event.to_json(),
                    purged_at: None,
                }
            );
            assert_eq!(receipt.id, pending.id);
            assert_eq!(
                stored.leaf_hash, leaf_hash,
                "the leaf is the event object's"
            );
        }
    }
    assert_eq!(store.get_event("event_missing").await.expect("get"), None);
}

/// Read-your-writes: each append, as soon as it is acknowledged, is found by id, by the cursor
/// read, by every kind of filter (the free-text index included) and counted in the log's size,
/// while other appends are under way.
async fn every_acknowledged_append_is_visible_at_once(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let writers = (0..24u64).map(|n| {
        let acme = acme.clone();
        async move {
            let event = described(n, "user.signed_in", Timestamp::now());
            let receipts = appended(store, &acme, vec![event.clone()]).await;
            let sequence = receipts[0].sequence;
            assert_eq!(
                store.get_event(&event.id).await.expect("get").map(|e| e.id),
                Some(event.id.clone())
            );
            assert!(store.log_size(&acme).await.expect("size") > sequence);
            let after = sequence.checked_sub(1);
            let next = store.events_after(&acme, after, 1).await.expect("read");
            assert_eq!(next.iter().map(|e| &e.id).collect::<Vec<_>>(), [&event.id]);
            let filters = [
                EventFilter {
                    text: Some(format!("NEEDLE{n}X")),
                    ..EventFilter::default()
                },
                EventFilter {
                    actor_ids: vec![format!("actor_{n}")],
                    ..EventFilter::default()
                },
                EventFilter {
                    actor_names: vec![format!("Actor {n}")],
                    target_types: vec!["document".into()],
                    ..EventFilter::default()
                },
                EventFilter {
                    target_ids: vec![format!("doc_{n}")],
                    actions: vec![ActionPattern::parse("user.*")],
                    ..EventFilter::default()
                },
            ];
            for filter in filters {
                let found = store
                    .search_events(
                        &acme,
                        SearchRequest {
                            filter: filter.clone(),
                            after: None,
                            before: None,
                            order: Order::Desc,
                            limit: 10,
                        },
                    )
                    .await
                    .expect("search");
                assert_eq!(
                    found.events.iter().map(|e| &e.id).collect::<Vec<_>>(),
                    [&event.id],
                    "{filter:?}"
                );
            }
        }
    });
    futures_util::future::join_all(writers).await;
    assert_eq!(store.log_size(&acme).await.expect("size"), 24);
}

async fn log_sizes_count_every_log_including_deleted_organizations(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let gone = organization(store, "Gone").await;
    let empty = organization(store, "Empty").await;
    appended(store, &acme, (0..3).map(pending).collect()).await;
    appended(store, &gone, vec![pending(3)]).await;
    appended(store, &acme, vec![pending(4)]).await;
    store
        .delete_organization(&gone, Timestamp::now())
        .await
        .expect("delete");
    for (organization, size) in [(&acme, 4), (&gone, 1), (&empty, 0)] {
        assert_eq!(store.log_size(organization).await.expect("size"), size);
    }
    assert_eq!(store.log_size("org_missing").await.expect("size"), 0);
    let mut sizes = store.log_sizes().await.expect("sizes");
    sizes.sort();
    let mut expected = vec![(acme, 4), (gone, 1)];
    expected.sort();
    assert_eq!(sizes, expected, "an organization without events has no log");
}

/// Both bounds are exclusive and apply in either order, with and without a filter; the raw
/// search returns the same page, and `events_after` is the ascending, unfiltered case.
async fn searches_honour_both_sequence_bounds_in_both_orders(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let action = |n: u64| {
        if n.is_multiple_of(3) {
            "user.signed_out"
        } else {
            "user.signed_in"
        }
    };
    let events = (0..20)
        .map(|n| described(n, action(n), Timestamp::now()))
        .collect();
    appended(store, &acme, events).await;
    let filters = [
        EventFilter::default(),
        EventFilter {
            actions: vec![ActionPattern::parse("user.signed_out")],
            ..EventFilter::default()
        },
    ];
    for filter in &filters {
        for order in [Order::Asc, Order::Desc] {
            for after in [None, Some(0), Some(4), Some(18), Some(19)] {
                for before in [None, Some(1), Some(5), Some(15), Some(20)] {
                    for limit in [1, 3, 50] {
                        let mut matching: Vec<u64> = (0..20)
                            .filter(|n| after.is_none_or(|a| *n > a))
                            .filter(|n| before.is_none_or(|b| *n < b))
                            .filter(|n| filter.actions.iter().all(|a| a.matches(action(*n))))
                            .collect();
                        if order == Order::Desc {
                            matching.reverse();
                        }
                        let request = SearchRequest {
                            filter: filter.clone(),
                            after,
                            before,
                            order,
                            limit,
                        };
                        let found = store
                            .search_events(&acme, request.clone())
                            .await
                            .expect("search");
                        let sequences: Vec<u64> = found.events.iter().map(|e| e.sequence).collect();
                        assert_eq!(
                            sequences,
                            &matching[..matching.len().min(limit)],
                            "{request:?}"
                        );
                        assert_eq!(found.more, matching.len() > limit, "{request:?}");
                        let raw = store
                            .search_raw_events(&acme, request.clone())
                            .await
                            .expect("raw search");
                        assert_eq!(raw.more, found.more, "{request:?}");
                        let decoded: Vec<StoredEvent> = raw
                            .events
                            .into_iter()
                            .map(|e| e.decode().expect("JSON"))
                            .collect();
                        assert_eq!(decoded, found.events, "{request:?}");
                        if *filter == EventFilter::default()
                            && order == Order::Asc
                            && before.is_none()
                        {
                            assert_eq!(
                                store.events_after(&acme, after, limit).await.expect("read"),
                                found.events,
                                "{request:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The free-text filter is a case-insensitive substring search over the action, the actor's and
/// targets' ids and names, the location and every metadata value (see
/// `trailmark_domain::query`); `%`, `_`, `\`, quotes and FTS or regex syntax are text.
async fn free_text_finds_case_insensitive_substrings_of_every_searched_field(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let bodies = [
        json!({
            "action": "invoice.paid",
            "actor": {"id": "user_Ada", "type": "user", "name": "O'Brien \"Bob\"",
                      "metadata": {"team": "Ärzte Büro"}},
            "targets": [{"id": "inv_100", "type": "invoice", "name": "Invoice one hundred",
                         "metadata": {"amount": 12345}}],
            "occurred_at": "2026-08-01T10:00:00Z",
            "context": {"location": "198.51.100.7"},
            "metadata": {"note": "50% off_sale"}
        }),
        json!({
            "action": "document.updated",
            "actor": {"id": "svc_backup", "type": "service"},
            "targets": [{"id": "doc_9", "type": "document"}],
            "occurred_at": "2026-08-01T10:00:00Z",
            "context": {"location": "10.0.0.1"},
            "metadata": {"path": "C:\\temp\\x", "query": "a*b (c:d) OR \"e\""}
        }),
        json!({
            "action": "user.signed_in",
            "actor": {"id": "user_Eve", "type": "user"},
            "targets": [],
            "occurred_at": "2026-08-01T10:00:00Z",
            "context": {"location": "::1"},
            "metadata": {"plain": "50 percent offXsale"}
        }),
    ];
    let events = bodies
        .iter()
        .enumerate()
        .map(|(n, body)| PendingEvent {
            id: format!("event_{n:026}"),
            event: NewEvent::parse(body).expect("valid event"),
            received_at: Timestamp::now(),
        })
        .collect();
    appended(store, &acme, events).await;
    let cases: [(&str, &[u64]); 20] = [
        ("VOICE.PA", &[0]),
        ("ument.upd", &[1]),
        ("USER_ada", &[0]),
        ("c_back", &[1]),
        ("o'brien \"bob\"", &[0]),
        ("ÄRZTE BÜRO", &[0]),
        ("inv_1", &[0]),
        ("one hundred", &[0]),
        ("2345", &[0]),
        ("51.100", &[0]),
        ("50% off_sale", &[0]),
        ("50%", &[0]),
        ("off_s", &[0]),
        ("C:\\temp", &[1]),
        ("a*b (c:d) OR \"e\"", &[1]),
        ("user", &[0, 2]),
        ("doc_9", &[1]),
        ("50 percent", &[2]),
        ("no such text", &[]),
        ("\"\"\"", &[]),
    ];
    for (text, expected) in cases {
        let found = store
            .search_events(
                &acme,
                SearchRequest {
                    filter: EventFilter {
                        text: Some(text.to_owned()),
                        ..EventFilter::default()
                    },
                    after: None,
                    before: None,
                    order: Order::Asc,
                    limit: 10,
                },
            )
            .await
            .expect("search");
        let sequences: Vec<u64> = found.events.iter().map(|e| e.sequence).collect();
        assert_eq!(sequences, expected, "{text:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Ledger

async fn tree_roots_are_the_roots_of_the_appended_leaves(store: &dyn Store) {
    let (acme, leaves) = ledger_log(store, &[1, 2, 5, 1, 8, 3, 13]).await;
    assert_eq!(store.tree_root(&acme, 0).await.expect("root"), empty_root());
    for size in 1..=leaves.len() {
        assert_eq!(
            store.tree_root(&acme, size as u64).await.expect("root"),
            merkle_root(&leaves[..size]),
            "size {size}"
        );
    }
    assert!(matches!(
        store.tree_root(&acme, leaves.len() as u64 + 1).await,
        Err(StoreError::Ledger(_))
    ));
}

/// A tlog tile's hashes: each is the root of its own range of leaves, straight from RFC 6962's
/// definition; a range not complete within the tree is refused.
async fn subtree_hashes_are_the_roots_of_their_leaf_ranges(store: &dyn Store) {
    let (acme, leaves) = ledger_log(store, &[200, 1, 300, 19]).await;
    let size = leaves.len() as u64;
    assert_eq!(size, 520);
    for (level, start, count) in [
        (0, 0, 256),
        (0, 256, 256),
        (0, 512, 8),
        (3, 0, 65),
        (8, 0, 2),
        (9, 0, 1),
    ] {
        let hashes = store
            .subtree_hashes(&acme, size, level, start, count)
            .await
            .expect("hashes");
        let expected: Vec<Hash> = (start..start + count)
            .map(|index| {
                let first = (index << level) as usize;
                merkle_root(&leaves[first..first + (1 << level)])
            })
            .collect();
        assert_eq!(hashes, expected, "level {level} from {start}, {count}");
    }
    // A smaller tree than the log's: only its complete subtrees.
    assert_eq!(
        store
            .subtree_hashes(&acme, 300, 0, 256, 44)
            .await
            .expect("hashes"),
        leaves[256..300]
    );
    for (tree, level, start, count) in [
        (300, 0, 256, 45),
        (520, 3, 0, 66),
        (520, 10, 0, 1),
        (521, 0, 0, 1),
    ] {
        assert!(
            matches!(
                store.subtree_hashes(&acme, tree, level, start, count).await,
                Err(StoreError::Ledger(_))
            ),
            "{tree}: level {level} from {start}, {count}"
        );
    }
}

async fn inclusion_proofs_verify_against_the_roots(store: &dyn Store) {
    let (acme, leaves) = ledger_log(store, &[3, 1, 16, 7, 6]).await;
    for size in [1, 2, 3, 4, 8, 17, 32, 33] {
        let root = merkle_root(&leaves[..size]);
        // Asked for in an order of their own: the proofs come back in that order.
        let indexes: Vec<u64> = (0..size as u64).rev().collect();
        let proofs = store
            .inclusion_proofs(&acme, indexes.clone(), size as u64)
            .await
            .expect("proofs");
        assert_eq!(proofs.len(), indexes.len());
        for (index, proof) in indexes.iter().zip(&proofs) {
            assert!(
                verify_inclusion(*index, size as u64, &leaves[*index as usize], proof, &root),
                "leaf {index} of {size}"
            );
        }
        if size > 1 {
            assert!(
                !verify_inclusion(0, size as u64, &leaves[1], &proofs[size - 1], &root),
                "a proof proves its own leaf only"
            );
        }
    }
    assert_eq!(
        store
            .inclusion_proofs(&acme, Vec::new(), 5)
            .await
            .expect("proofs"),
        Vec::<Vec<Hash>>::new()
    );
    assert!(matches!(
        store.inclusion_proofs(&acme, vec![1, 5], 5).await,
        Err(StoreError::Ledger(LedgerError::OutOfRange(_)))
    ));
    assert!(matches!(
        store.inclusion_proofs(&acme, vec![0], 34).await,
        Err(StoreError::Ledger(_))
    ));
}

async fn consistency_proofs_verify_between_sizes(store: &dyn Store) {
    let (acme, leaves) = ledger_log(store, &[2, 5, 1, 9, 14]).await;
    let size = leaves.len() as u64;
    let roots: Vec<Hash> = (0..=leaves.len())
        .map(|n| merkle_root(&leaves[..n]))
        .collect();
    for first in [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 30, 31] {
        for second in first..=size {
            let proof = store
                .consistency_proof(&acme, first, second)
                .await
                .expect("proof");
            assert!(
                verify_consistency(
                    first,
                    second,
                    &roots[first as usize],
                    &roots[second as usize],
                    &proof
                ),
                "{first} → {second}"
            );
        }
    }
    for (first, second) in [(0, 5), (6, 5)] {
        assert!(
            matches!(
                store.consistency_proof(&acme, first, second).await,
                Err(StoreError::Ledger(LedgerError::OutOfRange(_)))
            ),
            "{first} → {second}"
        );
    }
    assert!(matches!(
        store.consistency_proof(&acme, 3, size + 1).await,
        Err(StoreError::Ledger(_))
    ));
}

/// Witnesses' cosignatures join the note of the checkpoint of their size, and only that one.
async fn cosignatures_are_added_to_the_checkpoint_of_their_size(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    appended(store, &acme, (0..3).map(pending).collect()).await;
    for size in [2, 3] {
        store
            .insert_checkpoint(StoredCheckpoint {
                root: store.tree_root(&acme, size).await.expect("root"),
                organization_id: acme.clone(),
                tree_size: size,
                note: format!("note {size}\n\n— log sig\n"),
                created_at: at(size as i64),
            })
            .await
            .expect("insert");
    }
    let cosigned = "note 3\n\n— log sig\n— witness cosig\n".to_owned();
    store
        .add_cosignatures(&acme, 3, cosigned.clone())
        .await
        .expect("add");
    let latest = store.latest_checkpoint(&acme).await.expect("latest");
    assert_eq!(latest.map(|c| c.note), Some(cosigned));
    store
        .add_cosignatures(&acme, 9, "no such checkpoint".into())
        .await
        .expect("a size without a checkpoint changes nothing");
    assert_eq!(
        store
            .latest_checkpoint(&acme)
            .await
            .expect("latest")
            .map(|c| c.tree_size),
        Some(3)
    );
}

async fn checkpoints_keep_the_first_of_each_size_and_the_latest_is_the_largest(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let globex = organization(store, "Globex").await;
    appended(store, &acme, (0..5).map(pending).collect()).await;
    let checkpoint = |size: u64, note: &str| {
        let acme = acme.clone();
        let note = note.to_owned();
        async move {
            StoredCheckpoint {
                root: store.tree_root(&acme, size).await.expect("root"),
                organization_id: acme,
                tree_size: size,
                note,
                created_at: at(size as i64),
            }
        }
    };
    assert_eq!(store.latest_checkpoint(&acme).await.expect("latest"), None);
    let three = checkpoint(3, "signed note of size 3").await;
    store
        .insert_checkpoint(three.clone())
        .await
        .expect("insert");
    store
        .insert_checkpoint(checkpoint(3, "another signer's note").await)
        .await
        .expect("a second checkpoint of a size is no error");
    assert_eq!(
        store.latest_checkpoint(&acme).await.expect("latest"),
        Some(three),
        "the first checkpoint of a size stands"
    );
    let five = checkpoint(5, "signed note of size 5").await;
    store.insert_checkpoint(five.clone()).await.expect("insert");
    store
        .insert_checkpoint(checkpoint(4, "a late signer").await)
        .await
        .expect("insert");
    assert_eq!(
        store.latest_checkpoint(&acme).await.expect("latest"),
        Some(five),
        "the largest tree, not the last stored"
    );
    assert_eq!(
        store.latest_checkpoint(&globex).await.expect("latest"),
        None
    );
}

async fn logs_needing_a_checkpoint_are_those_grown_past_their_latest(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let globex = organization(store, "Globex").await;
    let _empty = organization(store, "Empty").await;
    appended(store, &acme, (0..5).map(pending).collect()).await;
    appended(store, &globex, (5..8).map(pending).collect()).await;
    let needing = || async {
        let mut logs = store.logs_needing_checkpoint().await.expect("logs");
        logs.sort();
        logs
    };
    let sorted = |mut logs: Vec<(String, u64)>| {
        logs.sort();
        logs
    };
    let sign = |organization: String, size: u64| async move {
        store
            .insert_checkpoint(StoredCheckpoint {
                root: store.tree_root(&organization, size).await.expect("root"),
                organization_id: organization,
                tree_size: size,
                note: format!("note {size}"),
                created_at: Timestamp::now(),
            })
            .await
            .expect("insert");
    };
    assert_eq!(
        needing().await,
        sorted(vec![(acme.clone(), 5), (globex.clone(), 3)])
    );
    sign(acme.clone(), 5).await;
    assert_eq!(needing().await, [(globex.clone(), 3)]);
    appended(store, &acme, vec![pending(8)]).await;
    assert_eq!(
        needing().await,
        sorted(vec![(acme.clone(), 6), (globex.clone(), 3)])
    );
    // A deleted organization's log still gets its checkpoints.
    store
        .delete_organization(&globex, Timestamp::now())
        .await
        .expect("delete");
    sign(acme.clone(), 6).await;
    assert_eq!(needing().await, [(globex.clone(), 3)]);
    sign(globex, 3).await;
    assert_eq!(needing().await, []);
}

// ---------------------------------------------------------------------------------------------
// Retention

async fn purgeable_organizations_have_a_retention_period_and_no_legal_hold(store: &dyn Store) {
    let kept = organization(store, "Kept forever").await;
    let monthly = organization(store, "Monthly").await;
    let held = organization(store, "Held").await;
    for (organization, days) in [(&monthly, 30), (&held, 7)] {
        store
            .set_retention(organization, days, Timestamp::now())
            .await
            .expect("set");
    }
    let hold = |reason: Option<&str>, n: u64| {
        store.set_legal_hold(
            &held,
            reason.map(str::to_owned),
            described(n, "legal_hold.changed", Timestamp::now()),
            Timestamp::now(),
        )
    };
    hold(Some("litigation"), 1).await.expect("hold");
    let purgeable = || async {
        let mut organizations = store.purgeable_organizations().await.expect("purgeable");
        organizations.sort();
        organizations
    };
    assert_eq!(purgeable().await, [(monthly.clone(), 30)]);
    hold(None, 2).await.expect("lift");
    let mut expected = vec![(monthly, 30), (held, 7)];
    expected.sort();
    assert_eq!(purgeable().await, expected);
    assert!(!expected.iter().any(|(id, _)| *id == kept));
}

async fn retention_purges_contents_but_keeps_stubs_in_the_log(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let globex = organization(store, "Globex").await;
    // Events 0..=5 are received before the cut at 1_006; 6 at the cut itself; 7..=9 after.
    let events: Vec<_> = (0..10)
        .map(|n| {
            let received = if n <= 6 { 1_000 + n as i64 } else { 10_000 };
            described(n, "document.updated", at(received))
        })
        .collect();
    appended(store, &acme, events.clone()).await;
    appended(
        store,
        &globex,
        vec![described(20, "document.updated", at(1_000))],
    )
    .await;
    let before = whole_log(store, &acme).await;
    let leaves_before = leaves(store, &acme).await;
    let root = store.tree_root(&acme, 10).await.expect("root");

    let purged_at = at(50_000);
    let cut = at(1_006);
    // Up to `limit` at a time, until none is left.
    assert_eq!(
        store
            .purge_events(&acme, cut, 4, purged_at)
            .await
            .expect("purge"),
        4
    );
    assert_eq!(
        store
            .purge_events(&acme, cut, 4, purged_at)
            .await
            .expect("purge"),
        2
    );
    assert_eq!(
        store
            .purge_events(&acme, cut, 4, purged_at)
            .await
            .expect("purge"),
        0
    );

    let after = whole_log(store, &acme).await;
    assert_eq!(after.len(), 10, "stubs stay in the log, in place");
    for (old, new) in before.iter().zip(&after) {
        if new.sequence <= 5 {
            assert_eq!(
                (
                    &new.id,
                    &new.organization_id,
                    new.sequence,
                    new.received_at,
                    new.leaf_hash
                ),
                (
                    &old.id,
                    &old.organization_id,
                    old.sequence,
                    old.received_at,
                    old.leaf_hash
                ),
                "a stub keeps what the log needs"
            );
            assert_eq!(new.purged_at, Some(purged_at));
            assert!(
                new.body.as_object().is_none_or(|o| o.is_empty()),
                "a stub's contents are gone: {}",
                new.body
            );
            assert_eq!(
                store.get_event(&new.id).await.expect("get").as_ref(),
                Some(new)
            );
        } else {
            assert_eq!(new, old, "events received at or after the cut stay whole");
        }
    }
    // Purged contents are no longer found; the other organization's event is untouched.
    for n in [0, 5] {
        let found = store
            .search_events(
                &acme,
                SearchRequest {
                    filter: EventFilter {
                        text: Some(format!("needle{n}x")),
                        ..EventFilter::default()
                    },
                    after: None,
                    before: None,
                    order: Order::Desc,
                    limit: 10,
                },
            )
            .await
            .expect("search");
        assert!(found.events.is_empty(), "event {n}: {found:?}");
    }
    assert_eq!(
        whole_log(store, &globex).await[0].purged_at,
        None,
        "a purge is one organization's"
    );
    // The ledger is unchanged: the same leaves, the same root, proofs for stubs.
    assert_eq!(leaves(store, &acme).await, leaves_before);
    assert_eq!(store.tree_root(&acme, 10).await.expect("root"), root);
    let proofs = store
        .inclusion_proofs(&acme, vec![0, 5], 10)
        .await
        .expect("proofs");
    assert!(verify_inclusion(
        0,
        10,
        &after[0].leaf_hash,
        &proofs[0],
        &root
    ));
    assert!(verify_inclusion(
        5,
        10,
        &after[5].leaf_hash,
        &proofs[1],
        &root
    ));
}

async fn a_legal_hold_blocks_purging_and_is_recorded_in_the_same_commit(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let globex = organization(store, "Globex").await;
    let old: Vec<_> = (0..3)
        .map(|n| described(n, "document.updated", at(1_000)))
        .collect();
    appended(store, &acme, old).await;
    let record = |n: u64, at: Timestamp| described(n, "legal_hold.changed", at);

    let set = store
        .set_legal_hold(
            &acme,
            Some("litigation".into()),
            record(10, at(2_000)),
            at(2_000),
        )
        .await
        .expect("hold");
    assert_eq!(
        (set.id.as_str(), set.sequence),
        (record(10, at(0)).id.as_str(), 3)
    );
    let stored = store
        .get_event(&set.id)
        .await
        .expect("get")
        .expect("the record is in the log");
    assert_eq!((stored.sequence, stored.leaf_hash), (3, set.leaf_hash));
    assert_eq!(unsalted(stored.body), record(10, at(2_000)).event.to_json());
    assert_eq!(
        store.legal_hold(&acme).await.expect("hold"),
        Some(LegalHold {
            organization_id: acme.clone(),
            reason: "litigation".into(),
            set_at: at(2_000),
        })
    );
    assert_eq!(store.legal_hold(&globex).await.expect("hold"), None);

    assert_eq!(
        store
            .purge_events(&acme, at(1_000_000), 100, at(3_000))
            .await
            .expect("purge"),
        0,
        "nothing is purged under a hold"
    );
    assert!(
        whole_log(store, &acme)
            .await
            .iter()
            .all(|e| e.purged_at.is_none())
    );

    // A new reason replaces the old one, and is recorded too.
    let changed = store
        .set_legal_hold(
            &acme,
            Some("regulator".into()),
            record(11, at(4_000)),
            at(4_000),
        )
        .await
        .expect("hold");
    assert_eq!(changed.sequence, 4);
    assert_eq!(
        store
            .legal_hold(&acme)
            .await
            .expect("hold")
            .map(|h| (h.reason, h.set_at)),
        Some(("regulator".to_owned(), at(4_000)))
    );

    let lifted = store
        .set_legal_hold(&acme, None, record(12, at(5_000)), at(5_000))
        .await
        .expect("lift");
    assert_eq!(lifted.sequence, 5);
    assert_eq!(store.legal_hold(&acme).await.expect("hold"), None);
    assert_eq!(
        store
            .purge_events(&acme, at(1_500), 100, at(6_000))
            .await
            .expect("purge"),
        3,
        "once lifted, retention purges again"
    );
    let ids: Vec<String> = whole_log(store, &acme)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids[3..], [set.id, changed.id, lifted.id]);
}

async fn a_legal_hold_is_not_set_on_an_organization_that_is_not_live(store: &dyn Store) {
    let gone = organization(store, "Gone").await;
    appended(store, &gone, (0..2).map(pending).collect()).await;
    store
        .delete_organization(&gone, Timestamp::now())
        .await
        .expect("delete");
    for (n, organization) in [(10, gone.as_str()), (11, "org_missing")] {
        let record = described(n, "legal_hold.changed", Timestamp::now());
        let outcome = store
            .set_legal_hold(
                organization,
                Some("litigation".into()),
                record.clone(),
                Timestamp::now(),
            )
            .await;
        assert!(
            matches!(outcome, Err(StoreError::OrganizationNotFound(ref id)) if id == organization),
            "{outcome:?}"
        );
        // The hold and its record share one commit: neither is there.
        assert_eq!(store.legal_hold(organization).await.expect("hold"), None);
        assert_eq!(store.get_event(&record.id).await.expect("get"), None);
    }
    assert_eq!(store.log_size(&gone).await.expect("size"), 2);
}

// ---------------------------------------------------------------------------------------------
// Streams

async fn streams_keep_every_field_and_list_oldest_first(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let globex = organization(store, "Globex").await;
    let mut delivered = stream(4, &acme, true);
    delivered.cursor = Some(7);
    delivered.last_synced_at = Some(at(40));
    delivered.state = StreamState::Error;
    delivered.last_error = Some("503 from the destination".into());
    let streams = [
        stream(3, &acme, true),
        stream(1, &acme, false),
        stream(2, &globex, true),
        delivered,
    ];
    // Inserted out of order: the lists' order is the streams' age.
    for record in &streams {
        store.insert_stream(record.clone()).await.expect("insert");
    }
    for record in &streams {
        assert_eq!(get_stream(store, &record.id).await, *record);
    }
    let [three, one, two, four] = streams;
    assert_eq!(
        store.list_streams(Some(&acme)).await.expect("list"),
        [one.clone(), three.clone(), four.clone()]
    );
    assert_eq!(
        store.list_streams(Some(&globex)).await.expect("list"),
        std::slice::from_ref(&two)
    );
    assert_eq!(
        store.list_streams(None).await.expect("list"),
        [one, two, three, four]
    );
    assert_eq!(
        store.list_streams(Some("org_missing")).await.expect("list"),
        []
    );
    assert_eq!(
        store.get_stream("log_stream_missing").await.expect("get"),
        None
    );
}

async fn updating_a_stream_replaces_its_settings_but_not_its_cursor(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let original = stream(1, &acme, true);
    store.insert_stream(original.clone()).await.expect("insert");
    assert!(
        store
            .lease_stream(&original.id, "worker", at(60_000), at(0))
            .await
            .expect("lease")
    );
    assert!(
        store
            .record_delivery(&original.id, "worker", None, 4, at(50))
            .await
            .expect("deliver")
    );
    let delivered = get_stream(store, &original.id).await;

    // An update made from a copy read before the delivery.
    let update = StreamRecord {
        name: "Renamed".into(),
        config: json!({"url": "http://127.0.0.1:9/other", "batch_size": 10}),
        secrets: vec![9, 9, 9],
        enabled: false,
        state: StreamState::Inactive,
        updated_at: at(60),
        kind: "datadog".into(),
        organization_id: Some("org_other".into()),
        created_at: at(999),
        cursor: None,
        last_synced_at: None,
        ..original.clone()
    };
    assert!(store.update_stream(update.clone()).await.expect("update"));
    assert_eq!(
        get_stream(store, &original.id).await,
        StreamRecord {
            name: update.name,
            config: update.config,
            secrets: update.secrets,
            enabled: false,
            state: StreamState::Inactive,
            updated_at: at(60),
            ..delivered
        },
        "the settings change; the cursor, sync time, type, organization and age stay"
    );
    assert!(
        !store
            .update_stream(stream(2, &acme, true))
            .await
            .expect("update"),
        "an unknown stream is not created by an update"
    );
    assert_eq!(
        store
            .get_stream(&stream(2, &acme, true).id)
            .await
            .expect("get"),
        None
    );
}

async fn a_deleted_stream_is_gone(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let (first, second) = (stream(1, &acme, true), stream(2, &acme, true));
    for record in [&first, &second] {
        store.insert_stream(record.clone()).await.expect("insert");
    }
    assert!(store.delete_stream(&first.id).await.expect("delete"));
    assert!(
        !store.delete_stream(&first.id).await.expect("delete"),
        "deleted once"
    );
    assert_eq!(store.get_stream(&first.id).await.expect("get"), None);
    assert_eq!(
        store.list_streams(Some(&acme)).await.expect("list"),
        [second]
    );
    assert!(
        !store
            .delete_stream("log_stream_missing")
            .await
            .expect("delete")
    );
}

async fn a_stream_lease_keeps_other_holders_out_until_it_expires(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let id = stream(1, &acme, true).id;
    store
        .insert_stream(stream(1, &acme, true))
        .await
        .expect("insert");
    let lease = |holder: &'static str, until: i64, now: i64| {
        let id = id.clone();
        async move {
            store
                .lease_stream(&id, holder, at(until), at(now))
                .await
                .expect("lease")
        }
    };
    assert!(lease("a", 30_000, 0).await, "a free stream is leased");
    assert!(
        !lease("b", 40_000, 1_000).await,
        "a running lease keeps others out"
    );
    assert!(lease("a", 60_000, 29_000).await, "the holder renews");
    assert!(
        !lease("b", 90_000, 59_999).await,
        "until the renewed expiry"
    );
    assert!(
        lease("b", 90_000, 60_001).await,
        "an expired lease is taken over"
    );
    assert!(!lease("a", 120_000, 60_002).await, "the old holder is out");
    assert!(
        !store
            .lease_stream("log_stream_missing", "a", at(1), at(0))
            .await
            .expect("lease")
    );
}

async fn deliveries_are_recorded_only_by_the_lease_holder_from_the_expected_cursor(
    store: &dyn Store,
) {
    let acme = organization(store, "Acme").await;
    let id = stream(1, &acme, true).id;
    store
        .insert_stream(stream(1, &acme, true))
        .await
        .expect("insert");
    let deliver = |holder: &'static str, from: Option<u64>, to: u64, now: i64| {
        let id = id.clone();
        async move {
            store
                .record_delivery(&id, holder, from, to, at(now))
                .await
                .expect("deliver")
        }
    };
    assert!(!deliver("a", None, 3, 1).await, "nobody holds the lease");
    assert!(
        store
            .lease_stream(&id, "a", at(10_000), at(0))
            .await
            .expect("lease")
    );
    assert!(!deliver("b", None, 3, 2).await, "b does not hold the lease");
    assert!(!deliver("a", Some(2), 3, 3).await, "the cursor is not at 2");
    assert_eq!(
        get_stream(store, &id).await,
        stream(1, &acme, true),
        "untouched"
    );

    assert!(deliver("a", None, 3, 100).await);
    let after = get_stream(store, &id).await;
    assert_eq!(
        (
            after.cursor,
            after.last_synced_at,
            after.state,
            after.last_error
        ),
        (Some(3), Some(at(100)), StreamState::Active, None)
    );
    assert!(!deliver("a", None, 5, 101).await, "the cursor moved on");
    assert!(deliver("a", Some(3), 8, 102).await);

    // Another holder takes over once the lease ran out; the old one can no longer record.
    assert!(
        store
            .lease_stream(&id, "b", at(40_000), at(10_001))
            .await
            .expect("lease")
    );
    assert!(!deliver("a", Some(8), 9, 10_002).await);
    assert!(deliver("b", Some(8), 9, 10_003).await);
    assert_eq!(get_stream(store, &id).await.cursor, Some(9));
}

async fn a_delivery_leaves_the_state_the_enabled_flag_gives(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    // (enabled, state before the delivery)
    let cases = [
        (true, StreamState::Active),
        (true, StreamState::Error),
        (true, StreamState::Invalid),
        (false, StreamState::Inactive),
        (false, StreamState::Error),
    ];
    for (n, (enabled, state)) in cases.into_iter().enumerate() {
        let record = StreamRecord {
            state,
            last_error: Some("refused".into()),
            ..stream(n as u8, &acme, enabled)
        };
        store.insert_stream(record.clone()).await.expect("insert");
        assert!(
            store
                .lease_stream(&record.id, "w", at(10_000), at(0))
                .await
                .expect("lease")
        );
        assert!(
            store
                .record_delivery(&record.id, "w", None, 1, at(5))
                .await
                .expect("deliver")
        );
        let after = get_stream(store, &record.id).await;
        assert_eq!(
            (after.state, after.last_error),
            (rules::stream_state_after_delivery(enabled), None),
            "enabled {enabled}, was {state:?}"
        );
    }
    // Disabled while a delivery was under way: the delivery counts, the stream stays off.
    let record = stream(9, &acme, true);
    store.insert_stream(record.clone()).await.expect("insert");
    assert!(
        store
            .lease_stream(&record.id, "w", at(10_000), at(0))
            .await
            .expect("lease")
    );
    let disabled = StreamRecord {
        enabled: false,
        state: StreamState::Inactive,
        ..record.clone()
    };
    assert!(store.update_stream(disabled).await.expect("update"));
    assert!(
        store
            .record_delivery(&record.id, "w", None, 2, at(6))
            .await
            .expect("deliver")
    );
    let after = get_stream(store, &record.id).await;
    assert_eq!(
        (after.state, after.cursor),
        (StreamState::Inactive, Some(2))
    );
}

async fn stream_failures_record_the_state_and_the_reason(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let record = stream(1, &acme, true);
    store.insert_stream(record.clone()).await.expect("insert");
    for (state, reason, time) in [
        (StreamState::Error, "connection refused", 10),
        (StreamState::Invalid, "401: bad API key", 20),
    ] {
        store
            .record_stream_failure(&record.id, state, reason, at(time))
            .await
            .expect("record");
        let after = get_stream(store, &record.id).await;
        assert_eq!(
            after,
            StreamRecord {
                state,
                last_error: Some(reason.to_owned()),
                updated_at: at(time),
                ..record.clone()
            }
        );
    }
    // A disabled stream is inactive, whatever an attempt that was under way reports.
    let disabled = stream(2, &acme, false);
    store.insert_stream(disabled.clone()).await.expect("insert");
    store
        .record_stream_failure(&disabled.id, StreamState::Error, "timeout", at(30))
        .await
        .expect("record");
    assert_eq!(
        get_stream(store, &disabled.id).await.state,
        StreamState::Inactive
    );
    store
        .record_stream_failure("log_stream_missing", StreamState::Error, "x", at(40))
        .await
        .expect("an unknown stream records nothing");
}

async fn replays_move_a_stream_cursor(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let id = stream(1, &acme, true).id;
    store
        .insert_stream(stream(1, &acme, true))
        .await
        .expect("insert");
    store
        .lease_stream(&id, "w", at(60_000), at(0))
        .await
        .expect("lease");
    assert!(
        store
            .record_delivery(&id, "w", None, 5, at(1))
            .await
            .expect("deliver")
    );
    assert!(
        store
            .set_stream_cursor(&id, Some(2), at(2))
            .await
            .expect("replay")
    );
    let after = get_stream(store, &id).await;
    assert_eq!((after.cursor, after.updated_at), (Some(2), at(2)));
    assert!(
        !store
            .record_delivery(&id, "w", Some(5), 6, at(3))
            .await
            .expect("deliver"),
        "a delivery from before the replay is not recorded"
    );
    assert!(
        store
            .record_delivery(&id, "w", Some(2), 6, at(4))
            .await
            .expect("deliver")
    );
    assert!(
        store
            .set_stream_cursor(&id, None, at(5))
            .await
            .expect("replay")
    );
    assert_eq!(get_stream(store, &id).await.cursor, None, "from the start");
    assert!(
        !store
            .set_stream_cursor("log_stream_missing", Some(1), at(6))
            .await
            .expect("replay")
    );
}

// ---------------------------------------------------------------------------------------------
// Exports

async fn exports_keep_every_field_and_list_by_state_oldest_first(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let filtered = ExportRecord {
        filter: EventFilter {
            range_start: Some(at(-86_400_000)),
            range_end: Some(at(0)),
            actions: vec![
                ActionPattern::parse("user.*"),
                ActionPattern::parse("document.updated"),
            ],
            actor_ids: vec!["user_1".into()],
            actor_names: vec!["Ada".into()],
            target_ids: vec!["doc_1".into(), "doc_2".into()],
            target_types: vec!["document".into()],
            text: Some("invoice 42".into()),
        },
        ..export(1, &acme, ExportFormat::Csv)
    };
    let exports = [
        export(3, &acme, ExportFormat::Ndjson),
        filtered,
        export(2, &acme, ExportFormat::Csv),
    ];
    for record in &exports {
        store.insert_export(record.clone()).await.expect("insert");
    }
    for record in &exports {
        assert_eq!(
            store.get_export(&record.id).await.expect("get").as_ref(),
            Some(record)
        );
    }
    let [three, one, two] = exports;
    assert_eq!(
        store
            .exports_in_state(ExportState::Pending)
            .await
            .expect("list"),
        [one.clone(), two.clone(), three.clone()]
    );

    store
        .finish_export(&two.id, Ok(42), at(500))
        .await
        .expect("finish");
    store
        .finish_export(&three.id, Err("disk full".into()), at(600))
        .await
        .expect("finish");
    let ready = ExportRecord {
        state: ExportState::Ready,
        row_count: Some(42),
        updated_at: at(500),
        ..two
    };
    let failed = ExportRecord {
        state: ExportState::Error,
        error: Some("disk full".into()),
        updated_at: at(600),
        ..three
    };
    assert_eq!(
        store.get_export(&ready.id).await.expect("get"),
        Some(ready.clone())
    );
    assert_eq!(
        store.get_export(&failed.id).await.expect("get"),
        Some(failed.clone())
    );
    for (state, expected) in [
        (ExportState::Pending, vec![one]),
        (ExportState::Ready, vec![ready]),
        (ExportState::Error, vec![failed]),
    ] {
        assert_eq!(
            store.exports_in_state(state).await.expect("list"),
            expected,
            "{state:?}"
        );
    }
    assert_eq!(
        store
            .get_export("audit_log_export_missing")
            .await
            .expect("get"),
        None
    );
}

async fn a_finished_export_stays_as_it_finished(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let (ready, failed) = (
        export(1, &acme, ExportFormat::Csv),
        export(2, &acme, ExportFormat::Ndjson),
    );
    for record in [&ready, &failed] {
        store.insert_export(record.clone()).await.expect("insert");
    }
    store
        .finish_export(&ready.id, Ok(7), at(100))
        .await
        .expect("finish");
    store
        .finish_export(&failed.id, Err("timeout".into()), at(100))
        .await
        .expect("finish");
    let finished = [
        store.get_export(&ready.id).await.expect("get"),
        store.get_export(&failed.id).await.expect("get"),
    ];
    // A late runner's outcome changes nothing.
    for id in [&ready.id, &failed.id] {
        store
            .finish_export(id, Err("late".into()), at(200))
            .await
            .expect("finish");
        store
            .finish_export(id, Ok(99), at(300))
            .await
            .expect("finish");
    }
    assert_eq!(
        [
            store.get_export(&ready.id).await.expect("get"),
            store.get_export(&failed.id).await.expect("get"),
        ],
        finished
    );
    assert_eq!(
        store
            .exports_in_state(ExportState::Pending)
            .await
            .expect("list"),
        []
    );
}

/// A rewritten file gives a ready export its new row count; a withdrawn one fails it with the
/// reason; a pending or failed export is left as it is.
async fn only_a_ready_export_is_revised(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let [ready, pending, failed] = [1, 2, 3].map(|n| export(n, &acme, ExportFormat::Csv));
    for record in [&ready, &pending, &failed] {
        store.insert_export(record.clone()).await.expect("insert");
    }
    store
        .finish_export(&ready.id, Ok(7), at(100))
        .await
        .expect("finish");
    store
        .finish_export(&failed.id, Err("timeout".into()), at(100))
        .await
        .expect("finish");
    assert!(
        store
            .revise_export(&ready.id, Ok(5), at(200))
            .await
            .expect("revise")
    );
    let revised = store
        .get_export(&ready.id)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(
        (
            revised.state,
            revised.row_count,
            revised.error,
            revised.updated_at
        ),
        (ExportState::Ready, Some(5), None, at(200))
    );
    assert!(
        store
            .revise_export(&ready.id, Err("withdrawn".into()), at(300))
            .await
            .expect("revise")
    );
    let withdrawn = store
        .get_export(&ready.id)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(
        (withdrawn.state, withdrawn.row_count, withdrawn.error),
        (ExportState::Error, None, Some("withdrawn".to_owned()))
    );
    let before = [
        store.get_export(&pending.id).await.expect("get"),
        store.get_export(&failed.id).await.expect("get"),
    ];
    for id in [&ready.id, &pending.id, &failed.id] {
        assert!(
            !store
                .revise_export(id, Ok(1), at(400))
                .await
                .expect("revise")
        );
    }
    assert_eq!(
        [
            store.get_export(&pending.id).await.expect("get"),
            store.get_export(&failed.id).await.expect("get"),
        ],
        before
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

// ---------------------------------------------------------------------------------------------
// Admin Portal

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
    // Checking a session does not renew it.
    let renewed = later.plus_millis(idle);
    for (secret, now, open) in [
        ([40; 32], renewed.plus_millis(-1), true),
        ([40; 32], renewed, false),
        ([41; 32], later, false),
    ] {
        assert_eq!(
            store.portal_session_open(secret, now).await.expect("check"),
            open
        );
    }
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

async fn purging_the_portal_removes_only_what_expired(store: &dyn Store) {
    let org = organization(store, "Acme").await;
    let link = |token: u8, expires: i64| PortalLink {
        expires_at: at(expires),
        ..portal_link(&org, token, at(0))
    };
    for (token, expires) in [(1, 1_000), (2, 5_000), (3, 10_000)] {
        store
            .insert_portal_link(link(token, expires))
            .await
            .expect("insert");
    }
    assert!(matches!(
        store
            .redeem_portal_link([3; 32], at(0), portal_session(30, at(2_000)))
            .await
            .expect("redeem"),
        PortalRedemption::Opened(_)
    ));
    assert_eq!(
        store.purge_portal(at(1_000)).await.expect("purge"),
        0,
        "expired *before* the instant"
    );
    assert_eq!(store.purge_portal(at(1_001)).await.expect("purge"), 1);
    assert_eq!(
        store
            .redeem_portal_link([1; 32], at(1_002), portal_session(31, at(9_000)))
            .await
            .expect("redeem"),
        PortalRedemption::Unknown,
        "the purged link"
    );
    assert!(matches!(
        store
            .redeem_portal_link([2; 32], at(1_500), portal_session(32, at(9_000)))
            .await
            .expect("redeem"),
        PortalRedemption::Opened(_)
    ));
    assert_eq!(
        store.purge_portal(at(2_001)).await.expect("purge"),
        1,
        "the first session"
    );
    assert_eq!(
        store
            .touch_portal_session([32; 32], at(2_002), at(3_000))
            .await
            .expect("touch")
            .map(|s| s.id),
        Some(portal_session(32, at(0)).id),
        "the second session is still open"
    );
    assert_eq!(
        store
            .redeem_portal_link([2; 32], at(2_003), portal_session(33, at(9_000)))
            .await
            .expect("redeem"),
        PortalRedemption::AlreadyUsed,
        "a used link is kept until it expires"
    );
    assert_eq!(
        store.purge_portal(at(10_001)).await.expect("purge"),
        3,
        "two links and the renewed session"
    );
}

// ---------------------------------------------------------------------------------------------
// Durability

/// What a store acknowledged is there after it is closed and opened again, and the log goes on
/// from where it was: the next sequence, a tree that extends the old one, replays that still
/// answer.
async fn acknowledged_writes_survive_reopening_the_store(fixture: Fixture) {
    let store = fixture.store.as_ref();
    let acme = organization(store, "Acme").await;
    let claimed = |events: Vec<PendingEvent>| AppendRequest {
        organization_id: acme.clone(),
        events,
        idempotency: Some(claim(1, Timestamp::now().plus_millis(600_000))),
    };
    let AppendOutcome::Appended { receipts } = store
        .append(claimed((0..3).map(pending).collect()))
        .await
        .expect("append")
    else {
        panic!("stored");
    };
    appended(store, &acme, (3..5).map(pending).collect()).await;
    let organization_before = store.get_organization(&acme).await.expect("get");
    let log = whole_log(store, &acme).await;
    let root = store.tree_root(&acme, 5).await.expect("root");
    let checkpoint = StoredCheckpoint {
        organization_id: acme.clone(),
        tree_size: 5,
        root,
        note: "signed".into(),
        created_at: at(0),
    };
    store
        .insert_checkpoint(checkpoint.clone())
        .await
        .expect("insert");

    let fixture = fixture.reopen().await;
    let store = fixture.store.as_ref();
    assert_eq!(
        store.get_organization(&acme).await.expect("get"),
        organization_before
    );
    assert_eq!(whole_log(store, &acme).await, log);
    assert_eq!(store.log_size(&acme).await.expect("size"), 5);
    assert_eq!(store.tree_root(&acme, 5).await.expect("root"), root);
    assert_eq!(
        store.latest_checkpoint(&acme).await.expect("latest"),
        Some(checkpoint)
    );
    assert_eq!(
        store
            .append(claimed(vec![pending(9)]))
            .await
            .expect("append"),
        AppendOutcome::Replayed {
            receipts,
            outcome: claim(1, at(0)).outcome,
        }
    );
    let next = appended(store, &acme, vec![pending(5)]).await;
    assert_eq!(next[0].sequence, 5);
    let leaves = leaves(store, &acme).await;
    let new_root = store.tree_root(&acme, 6).await.expect("root");
    assert_eq!(new_root, merkle_root(&leaves));
    let proof = store.consistency_proof(&acme, 5, 6).await.expect("proof");
    assert!(verify_consistency(5, 6, &root, &new_root, &proof));
}

/// A stored body without the seed of its salts (leaf version 2), which every append adds: a
/// 16-byte random value, different for every event.
fn unsalted(mut body: serde_json::Value) -> serde_json::Value {
    let seed = body
        .as_object_mut()
        .and_then(|map| map.remove("salt"))
        .expect("every appended event carries the seed of its salts");
    let seed = seed.as_str().expect("the seed is text");
    assert_eq!(seed.len(), 24, "16 bytes in base64: {seed}");
    body
}

async fn an_erasure_rewrites_bodies_purges_the_rest_and_the_index_forgets_them(fixture: Fixture) {
    let store = fixture.store.as_ref();
    let acme = organization(store, "Acme").await;
    let events: Vec<_> = (0..6)
        .map(|n| described(n, "document.updated", at(1_000 + n as i64)))
        .collect();
    appended(store, &acme, events).await;
    let before = whole_log(store, &acme).await;
    let root = store.tree_root(&acme, 6).await.expect("root");
    let search = |filter: EventFilter| SearchRequest {
        filter,
        after: None,
        before: None,
        order: Order::Asc,
        limit: 100,
    };
    let found = |page: SearchPage| -> Vec<u64> { page.events.iter().map(|e| e.sequence).collect() };

    // Event 1 loses its actor's id and name; event 3 is purged whole; event 1 again (erasing
    // an erased event replaces its body once more); sequence 40 is not in the log.
    let mut erased = before[1].body.clone();
    erased["actor"]["id"] = json!("[erased]");
    erased["actor"]["name"] = json!("[erased]");
    erased["erased"] = json!({"/actor/id": "c1", "/actor/name": "c2"});
    let rewrites = vec![
        Rewrite {
            sequence: 1,
            body: Some(erased.clone()),
        },
        Rewrite {
            sequence: 3,
            body: None,
        },
        Rewrite {
            sequence: 40,
            body: None,
        },
    ];
    store
        .set_legal_hold(
            &acme,
            Some("Case 7".into()),
            described(70, "legal_hold.changed", at(2_000)),
            at(2_000),
        )
        .await
        .expect("hold");
    assert!(
        !store
            .erase_events(&acme, rewrites.clone(), false, at(5_000))
            .await
            .expect("erase"),
        "a legal hold blocks an erasure that is not forced"
    );
    assert_eq!(
        &whole_log(store, &acme).await[..6],
        &before[..],
        "nothing changed"
    );
    assert!(
        store
            .erase_events(&acme, rewrites, true, at(5_000))
            .await
            .expect("erase"),
        "forced past the hold"
    );

    let check = |log: Vec<StoredEvent>| {
        assert_eq!(
            log.len(),
            7,
            "the log keeps every event and the hold's record"
        );
        assert_eq!(log[1].body, erased);
        assert_eq!(log[1].leaf_hash, before[1].leaf_hash);
        assert_eq!(log[3].purged_at, Some(at(5_000)));
        assert_eq!(log[3].leaf_hash, before[3].leaf_hash);
        for n in [0, 2, 4, 5] {
            assert_eq!(log[n], before[n], "event {n} is untouched");
        }
    };
    check(whole_log(store, &acme).await);
    let searches = |store: Arc<dyn Store>, acme: String| async move {
        let by_actor = |ids: &[&str]| EventFilter {
            actor_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            ..EventFilter::default()
        };
        let text = |needle: &str| EventFilter {
            text: Some(needle.to_owned()),
            ..EventFilter::default()
        };
        let run = |filter| {
            let store = Arc::clone(&store);
            let acme = acme.clone();
            async move {
                store
                    .search_events(&acme, search(filter))
                    .await
                    .expect("search")
            }
        };
        assert_eq!(
            found(run(by_actor(&["actor_1", "actor_3"])).await),
            Vec::<u64>::new()
        );
        assert_eq!(found(run(by_actor(&["[erased]"])).await), vec![1]);
        assert_eq!(found(run(text("Actor 1")).await), Vec::<u64>::new());
        assert_eq!(found(run(text("needle3x")).await), Vec::<u64>::new());
        assert_eq!(
            found(run(text("needle1x")).await),
            vec![1],
            "what was not erased is found"
        );
        assert_eq!(found(run(by_actor(&["actor_2"])).await), vec![2]);
        let raw = store
            .search_raw_events(&acme, search(EventFilter::default()))
            .await
            .expect("raw");
        assert!(
            raw.events[1].body.contains("[erased]"),
            "{}",
            raw.events[1].body
        );
        let single = store
            .get_event(&format!("event_{:026}", 1))
            .await
            .expect("get")
            .expect("there");
        assert_eq!(single.body["actor"]["id"], "[erased]");
    };
    searches(Arc::clone(&fixture.store), acme.clone()).await;
    assert_eq!(store.tree_root(&acme, 6).await.expect("root"), root);

    let fixture = fixture.reopen().await;
    check(whole_log(fixture.store.as_ref(), &acme).await);
    searches(Arc::clone(&fixture.store), acme.clone()).await;
}

/// An operator-wide stream (no organization) is stored and read back as such, and keeps one
/// cursor per organization's log: placed outright (creation, replay), moved by a delivery only
/// under the lease and from the expected place, and gone with the stream.
async fn an_operator_wide_stream_keeps_a_cursor_per_organization(store: &dyn Store) {
    let mut wide = stream(7, "unused", true);
    wide.organization_id = None;
    let id = wide.id.clone();
    store.insert_stream(wide.clone()).await.expect("insert");
    assert_eq!(get_stream(store, &id).await, wide);
    assert!(
        store
            .list_streams(None)
            .await
            .expect("list")
            .iter()
            .any(|s| s.id == id)
    );
    let acme = organization(store, "Acme").await;
    assert!(
        store
            .list_streams(Some(&acme))
            .await
            .expect("list")
            .is_empty(),
        "no organization's list holds it"
    );
    assert!(
        store
            .organization_cursors(&id)
            .await
            .expect("cursors")
            .is_empty()
    );
    store
        .set_organization_cursor(&id, "org_b", Some(4))
        .await
        .expect("place");
    store
        .set_organization_cursor(&id, "org_a", Some(1))
        .await
        .expect("place");
    store
        .set_organization_cursor(&id, "org_a", Some(2))
        .await
        .expect("move");
    assert_eq!(
        store.organization_cursors(&id).await.expect("cursors"),
        [("org_a".to_owned(), 2), ("org_b".to_owned(), 4)]
    );

    let deliver = |holder: &'static str, organization: &'static str, from, to, now| {
        let id = id.clone();
        async move {
            store
                .record_organization_delivery(&id, holder, organization, from, to, at(now))
                .await
                .expect("deliver")
        }
    };
    assert!(
        !deliver("a", "org_c", None, 3, 1).await,
        "nobody holds the lease"
    );
    assert!(
        store
            .lease_stream(&id, "a", at(10_000), at(0))
            .await
            .expect("lease")
    );
    assert!(
        !deliver("b", "org_c", None, 3, 2).await,
        "b does not hold the lease"
    );
    assert!(
        !deliver("a", "org_a", Some(1), 3, 3).await,
        "org_a's cursor is at 2"
    );
    assert!(deliver("a", "org_c", None, 3, 40).await);
    assert!(deliver("a", "org_a", Some(2), 9, 50).await);
    assert_eq!(
        store.organization_cursors(&id).await.expect("cursors"),
        [
            ("org_a".to_owned(), 9),
            ("org_b".to_owned(), 4),
            ("org_c".to_owned(), 3)
        ]
    );
    let delivered = get_stream(store, &id).await;
    assert_eq!(
        (delivered.state, delivered.last_synced_at, delivered.cursor),
        (StreamState::Active, Some(at(50)), None),
        "the stream's own cursor is not used"
    );

    store
        .set_organization_cursor(&id, "org_b", None)
        .await
        .expect("back to the start");
    assert_eq!(
        store.organization_cursors(&id).await.expect("cursors"),
        [("org_a".to_owned(), 9), ("org_c".to_owned(), 3)]
    );
    assert!(store.delete_stream(&id).await.expect("delete"));
    assert!(
        store
            .organization_cursors(&id)
            .await
            .expect("cursors")
            .is_empty(),
        "a deleted stream's cursors go with it"
    );
}

fn operator(n: u8, email: &str) -> OperatorRecord {
    OperatorRecord {
        id: format!("operator_{n:026}"),
        email: email.to_owned(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$salt{n}$hash{n}"),
        created_at: at(i64::from(n)),
    }
}

async fn operators_are_found_by_email_which_is_unique(store: &dyn Store) {
    store
        .insert_operator(operator(1, "ops@example.test"))
        .await
        .expect("insert");
    store
        .insert_operator(operator(2, "sre@example.test"))
        .await
        .expect("insert");
    assert_eq!(
        store.find_operator("ops@example.test").await.expect("find"),
        Some(operator(1, "ops@example.test"))
    );
    assert_eq!(
        store
            .find_operator("nobody@example.test")
            .await
            .expect("find"),
        None
    );
    // Two racing inserts of one e-mail: one wins, the other is a conflict naming the field.
    let racing = futures_util::future::join_all(
        (3..7).map(|n| store.insert_operator(operator(n, "twin@example.test"))),
    )
    .await;
    assert_eq!(racing.iter().filter(|r| r.is_ok()).count(), 1, "{racing:?}");
    assert!(
        racing
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, StoreError::Conflict("email")))
    );
}

async fn operator_sessions_expire_after_inactivity_end_at_sign_out_and_are_purged(
    store: &dyn Store,
) {
    store
        .insert_operator(operator(1, "ops@example.test"))
        .await
        .expect("insert");
    let idle = 1_800_000;
    let session = |n: u8, opened: i64| NewOperatorSession {
        id: format!("console_session_{n:026}"),
        secret_hash: [n; 32],
        operator_id: operator(1, "").id,
        csrf_token: format!("csrf-{n}"),
        created_at: at(opened),
        expires_at: at(opened + idle),
    };
    store
        .insert_operator_session(session(10, 0))
        .await
        .expect("insert");
    store
        .insert_operator_session(session(11, 0))
        .await
        .expect("insert");
    // Within the idle period: found, with the operator's e-mail, and pushed forward.
    let touched = store
        .touch_operator_session([10; 32], at(idle - 1), at(2 * idle - 1))
        .await
        .expect("touch")
        .expect("open");
    assert_eq!(touched.id, session(10, 0).id);
    assert_eq!(touched.email, "ops@example.test");
    assert_eq!(touched.csrf_token, "csrf-10");
    assert_eq!(touched.created_at, at(0));
    assert_eq!(touched.expires_at, at(2 * idle - 1));
    // Checking a session does not renew it.
    for (secret, now, open) in [
        ([10; 32], at(2 * idle - 2), true),
        ([10; 32], at(2 * idle - 1), false),
        ([12; 32], at(1), false),
    ] {
        assert_eq!(
            store
                .operator_session_open(secret, now)
                .await
                .expect("check"),
            open
        );
    }
    assert!(
        store
            .touch_operator_session([12; 32], at(1), at(idle))
            .await
            .expect("touch")
            .is_none(),
        "an unknown secret opens nothing"
    );
    // The other session was not touched: idle too long, it is gone.
    assert!(
        store
            .touch_operator_session([11; 32], at(idle + 1), at(2 * idle))
            .await
            .expect("touch")
            .is_none()
    );
    // Sign-out ends the touched one at once.
    assert!(
        store
            .delete_operator_session([10; 32])
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_operator_session([10; 32])
            .await
            .expect("delete")
    );
    assert!(
        store
            .touch_operator_session([10; 32], at(idle), at(2 * idle))
            .await
            .expect("touch")
            .is_none()
    );
    // Purging removes what expired before the cutoff only.
    store
        .insert_operator_session(session(13, 10 * idle))
        .await
        .expect("insert");
    assert_eq!(
        store
            .purge_operator_sessions(at(5 * idle))
            .await
            .expect("purge"),
        1,
        "the expired one"
    );
    assert!(
        store
            .touch_operator_session([13; 32], at(10 * idle), at(11 * idle))
            .await
            .expect("touch")
            .is_some()
    );
}

// ---------------------------------------------------------------------------------------------
// Alert incidents

/// A stream incident opened at `opened` (milliseconds after T0) for a streak since `since`.
fn stream_incident(n: u8, organization: &str, since: i64, opened: i64) -> IncidentRecord {
    rules::new_incident(
        NewIncident {
            id: format!("incident_{n:026}"),
            kind: IncidentKind::Stream,
            subject_id: format!("log_stream_{n:026}"),
            organization_id: Some(organization.to_owned()),
            state: "invalid".into(),
            last_error: Some("401: bad token".into()),
            since: at(since),
        },
        at(opened),
    )
}

async fn stream_fault(store: &dyn Store, id: &str) -> Option<StreamFault> {
    store
        .stream_faults()
        .await
        .expect("faults")
        .into_iter()
        .find(|fault| fault.stream_id == id)
}

async fn a_stream_fails_from_its_first_failure_until_it_delivers_or_is_disabled(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let record = stream(1, &acme, true);
    store.insert_stream(record.clone()).await.expect("insert");
    assert!(store.stream_faults().await.expect("faults").is_empty());
    for (state, reason, time) in [
        (StreamState::Error, "connection refused", 10),
        (StreamState::Invalid, "401: bad token", 20),
    ] {
        store
            .record_stream_failure(&record.id, state, reason, at(time))
            .await
            .expect("record");
        assert_eq!(
            stream_fault(store, &record.id).await,
            Some(StreamFault {
                stream_id: record.id.clone(),
                organization_id: Some(acme.clone()),
                state,
                last_error: Some(reason.into()),
                failing_since: at(10),
            }),
            "the streak began with the first failure"
        );
    }
    // New settings do not end the streak: only a delivery tells the destination took them.
    let changed = StreamRecord {
        name: "Renamed".into(),
        state: StreamState::Active,
        updated_at: at(25),
        ..get_stream(store, &record.id).await
    };
    assert!(store.update_stream(changed).await.expect("update"));
    assert_eq!(
        stream_fault(store, &record.id)
            .await
            .map(|f| f.failing_since),
        Some(at(10))
    );
    assert!(
        store
            .lease_stream(&record.id, "a", at(10_000), at(30))
            .await
            .expect("lease")
    );
    assert!(
        store
            .record_delivery(&record.id, "a", None, 0, at(30))
            .await
            .expect("deliver")
    );
    assert_eq!(stream_fault(store, &record.id).await, None, "delivered");
    store
        .record_stream_failure(&record.id, StreamState::Error, "timeout", at(40))
        .await
        .expect("record");
    assert_eq!(
        stream_fault(store, &record.id)
            .await
            .map(|f| f.failing_since),
        Some(at(40)),
        "a new streak"
    );
    let disabled = StreamRecord {
        enabled: false,
        state: StreamState::Inactive,
        updated_at: at(50),
        ..get_stream(store, &record.id).await
    };
    assert!(store.update_stream(disabled.clone()).await.expect("update"));
    assert_eq!(stream_fault(store, &record.id).await, None, "disabled");
    assert!(
        store
            .update_stream(StreamRecord {
                enabled: true,
                state: StreamState::Active,
                ..disabled
            })
            .await
            .expect("update")
    );
    assert_eq!(
        stream_fault(store, &record.id).await,
        None,
        "enabled again, it has not failed yet"
    );
    // An operator-wide stream's delivery from one organization's log ends its streak too.
    let wide = StreamRecord {
        organization_id: None,
        ..stream(2, &acme, true)
    };
    store.insert_stream(wide.clone()).await.expect("insert");
    store
        .record_stream_failure(&wide.id, StreamState::Error, "timeout", at(60))
        .await
        .expect("record");
    assert_eq!(
        stream_fault(store, &wide.id)
            .await
            .map(|f| f.organization_id),
        Some(None)
    );
    assert!(
        store
            .lease_stream(&wide.id, "a", at(10_000), at(70))
            .await
            .expect("lease")
    );
    assert!(
        store
            .record_organization_delivery(&wide.id, "a", &acme, None, 0, at(70))
            .await
            .expect("deliver")
    );
    assert_eq!(stream_fault(store, &wide.id).await, None);
}

async fn an_incident_opens_once_per_streak_and_resolves_once(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let first = stream_incident(1, &acme, 10, 1_000);
    // Instances racing to open the same incident (same subject and streak): one stores it.
    let racers = futures_like_join(
        store.open_incident(first.clone()),
        store.open_incident(IncidentRecord {
            id: "incident_racer".into(),
            ..first.clone()
        }),
    )
    .await;
    assert_eq!(
        [racers.0.expect("open"), racers.1.expect("open")]
            .iter()
            .filter(|opened| **opened)
            .count(),
        1
    );
    let stored = store.open_incidents().await.expect("open incidents");
    assert_eq!(stored.len(), 1);
    let stored = stored[0].clone();
    assert!(stored.id == first.id || stored.id == "incident_racer");
    assert_eq!(
        IncidentRecord {
            id: first.id.clone(),
            ..stored.clone()
        },
        first,
        "every field kept"
    );
    // A later streak of the same stream is another incident.
    let second = stream_incident(1, &acme, 5_000, 9_000);
    let second = IncidentRecord {
        id: "incident_second".into(),
        ..second
    };
    assert!(store.open_incident(second.clone()).await.expect("open"));
    let export = rules::new_incident(
        NewIncident {
            id: "incident_export".into(),
            kind: IncidentKind::Export,
            subject_id: "audit_log_export_1".into(),
            organization_id: Some(acme.clone()),
            state: "error".into(),
            last_error: Some("disk full".into()),
            since: at(2_000),
        },
        at(2_000),
    );
    assert!(store.open_incident(export.clone()).await.expect("open"));
    assert_eq!(
        store
            .open_incidents()
            .await
            .expect("open")
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>(),
        [stored.id.as_str(), "incident_second"],
        "oldest first; an export incident is closed as it opens"
    );
    assert!(
        store
            .resolve_incident(&stored.id, "active", at(3_000))
            .await
            .expect("resolve")
    );
    assert!(
        !store
            .resolve_incident(&stored.id, "deleted", at(4_000))
            .await
            .expect("resolve"),
        "resolved once"
    );
    assert!(
        !store
            .resolve_incident("incident_missing", "active", at(4_000))
            .await
            .expect("resolve")
    );
    let recent = store.recent_incidents(10).await.expect("recent");
    assert_eq!(
        recent.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["incident_second", "incident_export", stored.id.as_str()],
        "newest first"
    );
    assert_eq!(recent[2].resolved_at, Some(at(3_000)));
    assert_eq!(recent[2].resolution.as_deref(), Some("active"));
    assert_eq!(store.recent_incidents(1).await.expect("recent").len(), 1);
}

/// Both futures, polled together (the store's calls race as two instances' would).
async fn futures_like_join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    tokio::join!(a, b)
}

async fn an_incident_s_notifications_go_out_once_in_order_retried_until_acknowledged(
    store: &dyn Store,
) {
    let acme = organization(store, "Acme").await;
    let incident = stream_incident(1, &acme, 0, 1_000);
    assert!(store.open_incident(incident.clone()).await.expect("open"));
    let claim = |holder: &'static str, now: i64| async move {
        store
            .claim_notice(holder, at(now + 60_000), at(now))
            .await
            .expect("claim")
            .map(|(incident, notice)| (incident.id, notice))
    };
    assert_eq!(
        claim("a", 1_000).await,
        Some((incident.id.clone(), Notice::Opened))
    );
    assert_eq!(claim("b", 1_000).await, None, "a holds it");
    assert!(
        !store
            .finish_notice(&incident.id, Notice::Opened, "b", Ok(()), at(1_100))
            .await
            .expect("finish"),
        "only the holder records an outcome"
    );
    assert!(
        store
            .finish_notice(
                &incident.id,
                Notice::Opened,
                "a",
                Err("503".into()),
                at(1_100)
            )
            .await
            .expect("finish")
    );
    let failed = &store.open_incidents().await.expect("open")[0];
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.last_delivery_error.as_deref(), Some("503"));
    assert_eq!(failed.next_attempt_at, at(2_100));
    assert_eq!(failed.lease_holder, None);
    assert_eq!(claim("b", 2_000).await, None, "not due yet");
    assert_eq!(
        claim("b", 2_100).await,
        Some((incident.id.clone(), Notice::Opened))
    );
    assert!(
        store
            .finish_notice(&incident.id, Notice::Opened, "b", Ok(()), at(2_200))
            .await
            .expect("finish")
    );
    assert!(
        !store
            .finish_notice(&incident.id, Notice::Opened, "b", Ok(()), at(2_300))
            .await
            .expect("finish"),
        "sent once"
    );
    assert_eq!(
        claim("a", 2_300).await,
        None,
        "nothing owed while it is open"
    );
    assert!(
        store
            .resolve_incident(&incident.id, "active", at(3_000))
            .await
            .expect("resolve")
    );
    assert_eq!(
        claim("a", 3_000).await,
        Some((incident.id.clone(), Notice::Resolved))
    );
    assert!(
        store
            .finish_notice(&incident.id, Notice::Resolved, "a", Ok(()), at(3_100))
            .await
            .expect("finish")
    );
    assert_eq!(claim("a", 3_200).await, None);
    let done = &store.recent_incidents(1).await.expect("recent")[0];
    assert_eq!(done.opened_notified_at, Some(at(2_200)));
    assert_eq!(done.resolved_notified_at, Some(at(3_100)));
    // A lease that lapsed (its holder died) is taken over.
    let export = rules::new_incident(
        NewIncident {
            id: "incident_export".into(),
            kind: IncidentKind::Export,
            subject_id: "audit_log_export_1".into(),
            organization_id: Some(acme.clone()),
            state: "error".into(),
            last_error: None,
            since: at(4_000),
        },
        at(4_000),
    );
    assert!(store.open_incident(export.clone()).await.expect("open"));
    assert_eq!(
        claim("a", 4_000).await,
        Some((export.id.clone(), Notice::Opened))
    );
    assert_eq!(
        claim("b", 4_000 + 60_000).await,
        Some((export.id.clone(), Notice::Opened))
    );
    assert!(
        store
            .finish_notice(&export.id, Notice::Opened, "b", Ok(()), at(70_000))
            .await
            .expect("finish")
    );
    assert_eq!(
        claim("a", 70_000).await,
        None,
        "an export incident owes its opening only"
    );
}

async fn purging_incidents_removes_only_resolved_ones_that_owe_nothing(store: &dyn Store) {
    let acme = organization(store, "Acme").await;
    let done = stream_incident(1, &acme, 0, 1_000);
    let owing = stream_incident(2, &acme, 0, 1_000);
    let open = stream_incident(3, &acme, 0, 1_000);
    for incident in [&done, &owing, &open] {
        assert!(store.open_incident(incident.clone()).await.expect("open"));
    }
    for incident in [&done, &owing] {
        assert!(
            store
                .resolve_incident(&incident.id, "active", at(2_000))
                .await
                .expect("resolve")
        );
    }
    for notice in [Notice::Opened, Notice::Resolved] {
        let (claimed, got) = store
            .claim_notice("a", at(100_000), at(3_000))
            .await
            .expect("claim")
            .expect("owed");
        assert_eq!((claimed.id.as_str(), got), (done.id.as_str(), notice));
        assert!(
            store
                .finish_notice(&done.id, notice, "a", Ok(()), at(3_000))
                .await
                .expect("finish")
        );
    }
    assert_eq!(
        store.purge_incidents(at(2_000)).await.expect("purge"),
        0,
        "resolved at the cut-off, not before"
    );
    assert_eq!(store.purge_incidents(at(5_000)).await.expect("purge"), 1);
    let left: Vec<String> = store
        .recent_incidents(10)
        .await
        .expect("recent")
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&owing.id) && left.contains(&open.id));
}

/// Two instances over one database, writing some of the same organizations at once: each
/// commits the organizations whose heads the other does not hold and comes back for the others,
/// so every append is committed, once, and every log stays gap-free (a deadlock or an
/// organization skipped for ever would hang: the timeout turns that into a failure).
#[tokio::test]
async fn postgres_instances_writing_the_same_organizations_share_them_gap_free() {
    let fixture = postgres().await;
    let first = Arc::clone(&fixture.store);
    let second = open(&fixture.location).await;
    let mut tenants = Vec::new();
    for n in 0..9 {
        tenants.push(organization(first.as_ref(), &format!("Tenant {n}")).await);
    }
    // The first instance writes tenants 0-5 and the second 3-8, in rounds of ten appends at
    // once: where their turns overlap, one holds heads the other wants while the other's
    // remaining heads are free.
    let write = |store: Arc<dyn Store>, tenants: Vec<String>, seed: u64| async move {
        let mut outcomes = Vec::new();
        for round in 0..30u64 {
            let appends = (0..10u64).map(|k| {
                let n = seed + round * 10 + k;
                let target = tenants[(n % 6) as usize].clone();
                let events = (0..1 + n % 3).map(|i| pending(n * 10 + i)).collect();
                let store = Arc::clone(&store);
                async move {
                    let outcome = append(store.as_ref(), &target, events).await;
                    (target, outcome)
                }
            });
            outcomes.extend(futures_util::future::join_all(appends).await);
        }
        outcomes
    };
    let (one, two) = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        futures_util::future::join(
            write(Arc::clone(&first), tenants[..6].to_vec(), 0),
            write(Arc::clone(&second), tenants[3..].to_vec(), 100_000),
        ),
    )
    .await
    .expect("every append is committed");
    let mut appended: BTreeMap<String, u64> = BTreeMap::new();
    for (target, outcome) in one.into_iter().chain(two) {
        let Ok(AppendOutcome::Appended { receipts }) = outcome else {
            panic!("{outcome:?}")
        };
        *appended.entry(target).or_default() += receipts.len() as u64;
    }
    for tenant in &tenants {
        for store in [&first, &second] {
            assert_gap_free(store.as_ref(), tenant, appended[tenant]).await;
        }
    }
    assert_eq!(appended.values().sum::<u64>(), 1_200);
}

/// An organization is created with its log head, so no group commit has to make one while it
/// holds other organizations' heads (where waiting for another instance making the same head
/// could deadlock): the head is there before the first append, and an append to a new
/// organization commits while another organization's head is updated in an open transaction
/// elsewhere, as a turn holding it would. An organization a previous version created without a
/// head is given one at its first append.
#[tokio::test]
async fn postgres_an_organization_is_created_with_its_log_head() {
    let fixture = postgres().await;
    let store = Arc::clone(&fixture.store);
    let held = organization(store.as_ref(), "Held").await;
    appended(store.as_ref(), &held, vec![pending(1)]).await;
    let mut other = sql_client(&fixture.location).await;
    let elsewhere = other.transaction().await.expect("begin");
    elsewhere
        .execute(
            "UPDATE log_heads SET size = size WHERE organization_id = $1",
            &[&held],
        )
        .await
        .expect("hold a head");
    let new = organization(store.as_ref(), "New").await;
    let head = elsewhere
        .query_one(
            "SELECT size, frontier FROM log_heads WHERE organization_id = $1",
            &[&new],
        )
        .await
        .expect("the new organization's head");
    assert_eq!(head.get::<_, i64>(0), 0);
    assert!(head.get::<_, Vec<u8>>(1).is_empty());
    let first = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        appended(store.as_ref(), &new, vec![pending(2), pending(3)]),
    )
    .await
    .expect("a first append waits for no other organization's head");
    assert_eq!(first.len(), 2);
    elsewhere.commit().await.expect("commit");
    appended(store.as_ref(), &held, vec![pending(4)]).await;
    assert_gap_free(store.as_ref(), &new, 2).await;
    assert_gap_free(store.as_ref(), &held, 2).await;

    // An organization a previous version created (without a head) gets one at its first append.
    let earlier = organization(store.as_ref(), "Earlier").await;
    other
        .execute(
            "DELETE FROM log_heads WHERE organization_id = $1",
            &[&earlier],
        )
        .await
        .expect("an organization as a previous version made it");
    appended(store.as_ref(), &earlier, vec![pending(5)]).await;
    assert_gap_free(store.as_ref(), &earlier, 1).await;
}

/// A group whose write fails stores none of it. Its `COMMIT` goes behind its writes in the same
/// round trip, so it must not overtake them: the events are inserted first, the claim that a
/// trigger refuses after them aborts the transaction, and the `COMMIT` rolls it back. The append
/// fails with the server's message, the head has not moved, and the next appends continue
/// gap-free.
#[tokio::test]
async fn postgres_a_group_whose_write_fails_stores_nothing() {
    let fixture = postgres().await;
    let store = fixture.store.as_ref();
    let acme = organization(store, "Acme").await;
    appended(store, &acme, vec![pending(1)]).await;
    let sql = sql_client(&fixture.location).await;
    sql.batch_execute(
        "CREATE FUNCTION refuse_claim() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
         CREATE TRIGGER refuse_claim BEFORE INSERT ON idempotency FOR EACH ROW
             WHEN (NEW.outcome = 'refuse'::BYTEA) EXECUTE FUNCTION refuse_claim();",
    )
    .await
    .expect("a trigger that refuses one claim");
    let refused = store
        .append(AppendRequest {
            organization_id: acme.clone(),
            events: vec![pending(2), pending(3)],
            idempotency: Some(IdempotencyClaim {
                identity: [9; 32],
                expires_at: Timestamp::now().plus_millis(60_000),
                outcome: b"refuse".to_vec(),
            }),
        })
        .await;
    let refused = refused.expect_err("a refused claim fails its group");
    assert!(
        refused.to_string().contains("refused by the test"),
        "{refused}"
    );
    let count = |table: &'static str| {
        let sql = &sql;
        let acme = acme.clone();
        async move {
            sql.query_one(
                &format!("SELECT count(*) FROM {table} WHERE organization_id = $1"),
                &[&acme],
            )
            .await
            .expect("count")
            .get::<_, i64>(0)
        }
    };
    assert_eq!(count("events").await, 1, "the refused group's events");
    assert_eq!(count("idempotency").await, 0);
    let head = sql
        .query_one(
            "SELECT size FROM log_heads WHERE organization_id = $1",
            &[&acme],
        )
        .await
        .expect("the head")
        .get::<_, i64>(0);
    assert_eq!(head, 1);
    appended(store, &acme, vec![pending(4)]).await;
    assert_gap_free(store, &acme, 2).await;
}

/// A turn that fails before its `COMMIT` is sent (here: creating the head of an organization a
/// previous version made without one) leaves no transaction open on its connection: the next
/// append, which the pool gives the same idle connection, succeeds once the cause is gone (left
/// inside the aborted transaction, the connection would fail it). The contract tests share one
/// database, so which sessions are the appender's cannot be told apart here.
#[tokio::test]
async fn postgres_a_turn_that_fails_before_its_commit_leaves_its_connection_usable() {
    let fixture = postgres().await;
    let store = fixture.store.as_ref();
    let earlier = organization(store, "Earlier").await;
    let sql = sql_client(&fixture.location).await;
    sql.batch_execute(&format!(
        "DELETE FROM log_heads WHERE organization_id = '{earlier}';
         CREATE FUNCTION refuse_head() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'no heads today'; END $$;
         CREATE TRIGGER refuse_head BEFORE INSERT ON log_heads FOR EACH ROW
             EXECUTE FUNCTION refuse_head();"
    ))
    .await
    .expect("an organization without a head, whose head cannot be made");
    let refused = append(store, &earlier, vec![pending(1)])
        .await
        .expect_err("its head cannot be made");
    assert!(refused.to_string().contains("no heads today"), "{refused}");
    sql.batch_execute("DROP TRIGGER refuse_head ON log_heads")
        .await
        .expect("drop the trigger");
    appended(store, &earlier, vec![pending(2)]).await;
    assert_gap_free(store, &earlier, 1).await;
}

/// A connection of its own to a PostgreSQL fixture's database, to look at the tables.
async fn sql_client(location: &Location) -> tokio_postgres::Client {
    let Location::Postgres(url) = location else {
        panic!("a PostgreSQL fixture")
    };
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// The sequences of the first hundred events of `organization_id`'s log that `filter` finds,
/// oldest first.
async fn found(store: &dyn Store, organization_id: &str, filter: EventFilter) -> Vec<u64> {
    let request = SearchRequest {
        filter,
        after: None,
        before: None,
        order: Order::Asc,
        limit: 100,
    };
    store
        .search_events(organization_id, request)
        .await
        .expect("search")
        .events
        .iter()
        .map(|e| e.sequence)
        .collect()
}

/// On PostgreSQL the filters are answered from the blocks' term postings once a block is built:
/// the long log's searches find exactly the matching events through them, and an erasure that
/// changes a value rewrites the postings, so the event is found by its new value alone.
#[tokio::test]
async fn postgres_filters_read_block_terms_and_find_exactly_the_matching_events() {
    let fixture = postgres().await;
    let store = fixture.store.as_ref();
    let client = sql_client(&fixture.location).await;
    let acme = write_long_log(store).await;
    let terms = || async {
        client
            .query_one(
                "SELECT count(*) FROM search_block_terms t JOIN search_blocks b ON b.block = t.block
                 WHERE b.organization_id = $1",
                &[&acme],
            )
            .await
            .expect("terms")
            .get::<_, i64>(0)
    };
    // Built by the store's own task, within a second or two of the appends.
    for _ in 0..600 {
        if terms().await > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(terms().await > 0, "the first block was built");
    check_long_log_searches(store, &acme).await;

    let by_actor = |actor: &str| {
        let filter = EventFilter {
            actor_ids: vec![actor.to_owned()],
            ..EventFilter::default()
        };
        found(store, &acme, filter)
    };
    assert_eq!(
        by_actor("rare_actor").await,
        vec![997, 1_994, 2_991, 3_988, 4_985, 5_982]
    );
    let mut body = long_log_event(1_994).event.to_json();
    body["actor"]["id"] = json!("renamed_actor");
    assert!(
        store
            .erase_events(
                &acme,
                vec![Rewrite {
                    sequence: 1_994,
                    body: Some(body),
                }],
                false,
                Timestamp::now(),
            )
            .await
            .expect("erase")
    );
    assert_eq!(by_actor("renamed_actor").await, vec![1_994]);
    assert_eq!(
        by_actor("rare_actor").await,
        vec![997, 2_991, 3_988, 4_985, 5_982]
    );
}

/// PostgreSQL only (the embedded log's blocks are tested in its own module): free text is
/// searched through trigram filters built per block of 4,096 events behind the appends. They
/// prune — text slipped into an event's stored search text behind the store's back is found in
/// the tail past the last block, not in a block whose filter lacks it — and an erasure rewrites
/// its block's filter, so the erased text's trigrams leave it.
#[tokio::test]
async fn postgres_text_filters_prune_blocks_and_forget_erased_text() {
    const EVENTS: u64 = 2 * 4_096 + 500;
    let fixture = postgres().await;
    let store = fixture.store.as_ref();
    let client = sql_client(&fixture.location).await;
    let acme = organization(store, "Acme").await;
    let secret = |i: u64| {
        let mut event = long_log_event(i);
        event.event = NewEvent::parse(&json!({
            "action": "user.signed_in",
            "occurred_at": Timestamp::from_unix_millis(LOG_START_MS).to_string(),
            "actor": {"id": "user_zq", "name": "Zygmunt Quixote", "type": "user"},
            "targets": [],
            "context": {"location": "192.0.2.1"},
            "metadata": {"n": format!("needle{i}")}
        }))
        .expect("valid event");
        event
    };
    for batch in (0..EVENTS).collect::<Vec<_>>().chunks(1_000) {
        let events = batch
            .iter()
            .map(|&i| if i == 0 { secret(i) } else { long_log_event(i) })
            .collect();
        append(store, &acme, events).await.expect("append");
    }
    let blocks = || async {
        client
            .query(
                "SELECT first_sequence, end_sequence, version FROM search_blocks ORDER BY 1",
                &[],
            )
            .await
            .expect("blocks")
            .iter()
            .map(|row| {
                (
                    row.get::<_, i64>(0),
                    row.get::<_, i64>(1),
                    row.get::<_, i64>(2),
                )
            })
            .collect::<Vec<_>>()
    };
    // Built by the store's own task, within a second or two of the appends.
    let mut built = Vec::new();
    for _ in 0..600 {
        built = blocks().await;
        if built.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(built, vec![(0, 4_096, 1), (4_096, 8_192, 1)]);

    let acme = acme.as_str();
    let search = |text: &str| {
        let filter = EventFilter {
            text: Some(text.to_owned()),
            ..EventFilter::default()
        };
        found(store, acme, filter)
    };
    assert_eq!(
        search("NEEDLE1234").await,
        vec![1_234],
        "in the first block"
    );
    assert_eq!(
        search("needle5000").await,
        vec![5_000],
        "in the second block"
    );
    assert_eq!(search("needle8600").await, vec![8_600], "in the tail");
    assert_eq!(search("zygmunt").await, vec![0]);
    assert_eq!(search("needle8692").await, Vec::<u64>::new());
    let blocks_holding = |text: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT count(*) FROM search_blocks WHERE position($1::BYTEA IN text_values) > 0",
                    &[&text.as_bytes()],
                )
                .await
                .expect("text values")
                .get::<_, i64>(0)
        }
    };
    assert_eq!(
        blocks_holding("zygmunt quixote").await,
        1,
        "the first block's text values hold the name, lower-cased"
    );

    let slip = |sequence: i64, text: &'static str| {
        let client = &client;
        async move {
            client
                .execute(
                    "UPDATE events SET body = jsonb_set(body::jsonb, '{context,location}', to_jsonb($2::TEXT))::TEXT
                     WHERE sequence = $1",
                    &[&sequence, &text],
                )
                .await
                .expect("update");
        }
    };
    slip(10, "qqxxzzyy").await;
    slip(8_600, "qqxxzzyy").await;
    assert_eq!(
        search("qqxxzzyy").await,
        vec![8_600],
        "the first block's filter rules it out; the tail is read row by row"
    );
    slip(12, "needle4321").await;
    assert_eq!(
        search("needle4321").await,
        vec![4_321],
        "the first block's text values name the events a text search reads there"
    );

    store
        .erase_events(
            acme,
            vec![Rewrite {
                sequence: 0,
                body: None,
            }],
            false,
            Timestamp::now(),
        )
        .await
        .expect("erase");
    assert_eq!(search("zygmunt").await, Vec::<u64>::new());
    assert_eq!(
        blocks().await[0],
        (0, 4_096, 2),
        "the first block's filter was rewritten"
    );
    assert_eq!(
        blocks_holding("zygmunt").await,
        0,
        "the erased name left the block's text values"
    );
    slip(11, "zygmunt quixote").await;
    assert_eq!(
        search("zygmunt").await,
        Vec::<u64>::new(),
        "the rewritten filter no longer holds the erased name's trigrams"
    );
    assert_eq!(search("needle1234").await, vec![1_234]);
}

/// What a store reports of its hand-overs (`--cluster-listen`).
#[derive(Default)]
struct Handovers(std::sync::Mutex<Vec<Handover>>);

impl StoreObserver for Handovers {
    fn handover(&self, handover: Handover) {
        self.0.lock().expect("lock").push(handover);
    }
}

impl Handovers {
    fn count(&self, kind: Handover) -> usize {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .filter(|&&h| h == kind)
            .count()
    }
}

/// What a [`lossy_link`] does with the owner's answers once the handshake has crossed.
#[derive(Clone, Copy)]
enum Loss {
    /// Closes the connection as the first answer arrives, as a killed owner would.
    ClosesAtTheFirstAnswer,
    /// Keeps the connection open and never delivers an answer, as a hung owner would.
    SwallowsAnswers,
}

/// A TCP link to an owner's `--cluster-listen` address that carries the handshake both ways and
/// every frame towards the owner, then loses what the owner answers (`loss`): the owner commits
/// each append it is handed, and its answer never reaches the instance that handed it over.
/// Returns the link's address and the connections it took.
async fn lossy_link(
    owner: std::net::SocketAddr,
    loss: Loss,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let server = tokio::net::TcpStream::connect(owner)
                    .await
                    .expect("the owner listens");
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let upstream = tokio::io::copy(&mut from_client, &mut to_server);
                let downstream = async {
                    // The owner's greeting (magic and nonce), then its proof after the
                    // client's; then the first byte of an answer.
                    for length in [40, 32] {
                        let mut handshake = vec![0u8; length];
                        from_server.read_exact(&mut handshake).await?;
                        to_client.write_all(&handshake).await?;
                    }
                    let mut first = [0u8; 1];
                    from_server.read_exact(&mut first).await?;
                    match loss {
                        Loss::ClosesAtTheFirstAnswer => Ok(0),
                        Loss::SwallowsAnswers => {
                            tokio::io::copy(&mut from_server, &mut tokio::io::sink()).await
                        }
                    }
                };
                tokio::select! {
                    _ = upstream => {}
                    _ = downstream => {}
                }
            });
        }
    });
    (address, connections)
}

/// A loopback address no one listens on yet.
fn free_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

const CLUSTER_KEY: [u8; 32] = [7; 32];

/// An owner reached through a [`lossy_link`], an instance that hands it appends (`sender`),
/// what the sender reports of its hand-overs, the link's connections, and 16 organizations:
/// both are sequencers, so some organizations are the owner's and the others the sender's.
struct LossyCluster {
    sender: Arc<dyn Store>,
    handovers: Arc<Handovers>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    tenants: Vec<String>,
    _owner: PostgresStore,
}

async fn lossy_cluster(
    fixture: &Fixture,
    loss: Loss,
    answer_timeout: std::time::Duration,
) -> LossyCluster {
    let Location::Postgres(url) = &fixture.location else {
        unreachable!("a PostgreSQL fixture")
    };
    let listen = free_address();
    let (link, connections) = lossy_link(listen, loss).await;
    let owner = PostgresStore::connect_in_cluster(
        url,
        Arc::new(Handovers::default()),
        Some(ClusterConfig {
            advertise: Some(link.to_string()),
            sequencers: 2,
            ..ClusterConfig::new(listen, CLUSTER_KEY)
        }),
    )
    .await
    .expect("the owner starts");
    let handovers = Arc::new(Handovers::default());
    // Started second, its first heartbeat reads the owner's row: it knows the owner at once.
    let sender = PostgresStore::connect_in_cluster(
        url,
        Arc::clone(&handovers) as Arc<dyn StoreObserver>,
        Some(ClusterConfig {
            answer_timeout,
            sequencers: 2,
            ..ClusterConfig::new("127.0.0.1:0".parse().expect("an address"), CLUSTER_KEY)
        }),
    )
    .await
    .expect("the sender starts");
    let mut tenants = Vec::new();
    for n in 0..16 {
        tenants.push(organization(&owner, &format!("Tenant {n}")).await);
    }
    LossyCluster {
        sender: Arc::new(sender),
        handovers,
        connections,
        tenants,
        _owner: owner,
    }
}

/// Appends one claimed event (the `first`-th on) to each of `tenants` through the cluster's
/// sender, and checks each is stored once and answered as a first commit with its own receipt.
/// Returns the tenants whose append the sender committed after handing it over.
async fn append_claimed_once_each(
    cluster: &LossyCluster,
    tenants: &[String],
    first: u64,
) -> Vec<String> {
    let mut handed_over = Vec::new();
    for (n, tenant) in tenants.iter().enumerate() {
        let n = first + n as u64;
        let before = cluster.handovers.count(Handover::CommittedHere);
        let outcome = cluster
            .sender
            .append(AppendRequest {
                organization_id: tenant.clone(),
                events: vec![pending(n)],
                idempotency: Some(claim(n as u8, Timestamp::now().plus_millis(3_600_000))),
            })
            .await
            .expect("append");
        let AppendOutcome::Appended { receipts } = outcome else {
            panic!("{tenant}: {outcome:?}")
        };
        assert_eq!(receipts.len(), 1);
        assert_eq!(receipts[0].id, format!("event_{n:026}"));
        let stored = cluster
            .sender
            .events_after(tenant, None, 100)
            .await
            .expect("read");
        assert_eq!(
            stored.iter().filter(|e| e.id == receipts[0].id).count(),
            1,
            "{tenant}: stored once"
        );
        assert_eq!(
            stored.last().map(|e| e.sequence),
            Some(receipts[0].sequence)
        );
        if cluster.handovers.count(Handover::CommittedHere) > before {
            handed_over.push(tenant.clone());
        }
    }
    handed_over
}

/// With `--cluster-listen`, an append handed to its organization's owner whose answer is lost
/// (the owner committed it; the connection closed before the answer crossed) is committed by
/// the instance that took it: its claim, found under the head's lock, makes that commit a
/// replay of the owner's, which is answered as the request's first commit, with the owner's
/// receipt. One event each, whoever committed it.
#[tokio::test]
async fn postgres_a_hand_over_whose_answer_is_lost_is_stored_once_and_answered_as_a_first_commit() {
    let fixture = postgres().await;
    let cluster = lossy_cluster(
        &fixture,
        Loss::ClosesAtTheFirstAnswer,
        std::time::Duration::from_secs(10),
    )
    .await;
    append_claimed_once_each(&cluster, &cluster.tenants, 0).await;
    // Some organizations are the owner's (each of those hand-overs lost its answer), the rest
    // the sender's: 16 organizations all on one side would be a broken hash.
    let lost = cluster.handovers.count(Handover::CommittedHere);
    assert!(lost > 0 && lost < 16, "{lost} of 16 handed over");
    assert_eq!(cluster.handovers.count(Handover::Answered), 0);
    assert!(
        cluster
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
}

/// An owner that takes appends and never answers is given up on after the answer timeout:
/// its connection is closed and it is left alone for a second (a connection that stays open but
/// answers nothing would otherwise cost every later append the whole timeout), then tried on a
/// new connection; each append is committed by the instance that took it, once. Appends without
/// an idempotency claim are never handed over: nothing would make committing one twice safe.
#[tokio::test]
async fn postgres_an_owner_that_never_answers_is_given_up_on_and_its_connection_replaced() {
    let fixture = postgres().await;
    let cluster = lossy_cluster(
        &fixture,
        Loss::SwallowsAnswers,
        std::time::Duration::from_millis(300),
    )
    .await;
    let connections = || {
        cluster
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let owners = append_claimed_once_each(&cluster, &cluster.tenants, 0).await;
    assert!(
        !owners.is_empty() && owners.len() < 16,
        "{} of 16 handed over",
        owners.len()
    );
    // One connection, given up on; the owner's other organizations' appends, within the second
    // after, did not try it again.
    assert_eq!(connections(), 1);
    assert_eq!(
        cluster.handovers.count(Handover::CommittedHere),
        owners.len()
    );

    // A second later it is tried again, on a new connection.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let before = connections();
    let again = append_claimed_once_each(&cluster, &owners[..1], 100).await;
    assert_eq!(again, owners[..1]);
    assert_eq!(connections(), before + 1, "a new connection");

    let handed_over = cluster.handovers.count(Handover::CommittedHere);
    for (n, tenant) in cluster.tenants.iter().enumerate() {
        appended(
            cluster.sender.as_ref(),
            tenant,
            vec![pending(200 + n as u64)],
        )
        .await;
    }
    assert_eq!(
        cluster.handovers.count(Handover::CommittedHere),
        handed_over,
        "claimless appends are committed here without a hand-over"
    );
}

/// A store opened beside the server (`trailmark export`, `verify`, `keys`) could not tell the
/// server's log writer that an organization is gone, so it does not delete one.
#[tokio::test]
async fn sqlite_a_store_opened_beside_the_server_refuses_to_delete_organizations() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let serving = open(&Location::Sqlite(path.clone())).await;
    let kept = organization(serving.as_ref(), "Kept").await;
    appended(
        serving.as_ref(),
        &kept,
        vec![described(0, "user.signed_in", at(0))],
    )
    .await;

    let beside = SqliteStore::open_beside(&path).expect("open beside");
    let refused = trailmark_store::Organizations::delete_organization(&beside, &kept, at(1)).await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "{refused:?}"
    );
    assert!(
        serving
            .get_organization(&kept)
            .await
            .expect("get")
            .is_some()
    );
    appended(
        serving.as_ref(),
        &kept,
        vec![described(1, "user.signed_in", at(2))],
    )
    .await;
}
