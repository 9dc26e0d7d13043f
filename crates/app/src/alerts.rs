//! Alerts: the operator hears when a stream has been `error` or `invalid` for longer than
//! `--alert-after`, or an export fails — once per incident, and once when a stream recovers.
//!
//! An incident is a stream's failing streak (the stream and the moment it began failing,
//! `streams.failing_since`) that outlasted the threshold, or a failed export. Every instance
//! looks for incidents every [`scan_interval`]; the database decides which instance opens and
//! resolves each ([`trailmark_store::Incidents`]: one incident per streak), so instances over
//! one PostgreSQL database open it once. Each incident then owes the operator's webhook its
//! notifications, opening first: an instance takes one under a lease, sends it, and records
//! the answer; anything but a 2xx is tried again later (1 s, doubling, at most 10 minutes,
//! `rules::notice_retry_delay`), by whichever instance is free, until a 2xx acknowledges it.
//!
//! A notification is a `POST` of a JSON object ([`notice_body`]), signed the way `http` streams
//! sign their requests (Standard Webhooks: `webhook-id` `<incident id>_<opened|resolved>`, the
//! same on every retry; `webhook-timestamp`; `webhook-signature`
//! `v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>`, by
//! `trailmark_streams::http::signature`). The webhook is the operator's own, so the
//! private-destination guard of streams does not apply to it: it may be on a private network.
//!
//! The instance that opens or resolves an incident also records it in Trailmark's own log
//! (`trailmark.alert.opened`, `trailmark.alert.resolved`; the console's "Trailmark log").
//!
//! What is decided when is pure ([`plan`], and the rules in `trailmark_store::rules`); this
//! module only reads, applies and sends.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;
use trailmark_domain::Timestamp;
use trailmark_domain::id::IdKind;
use trailmark_store::{
    ExportRecord, IncidentKind, IncidentRecord, NewIncident, Notice, StreamFault, rules,
};
use trailmark_streams::worker::Clock;

use crate::{AppError, Trailmark};

/// How long a stream fails before it is an incident, unless `--alert-after` says otherwise.
pub const DEFAULT_ALERT_AFTER: Duration = Duration::from_secs(300);

/// How long an instance holds a notification it is sending; should it die meanwhile, another
/// sends it after this. Longer than a request's timeout, so a slow answer is not sent twice.
const NOTICE_LEASE: Duration = Duration::from_secs(60);

/// How long a webhook has to answer a notification (well inside [`NOTICE_LEASE`]).
const NOTICE_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolved incidents are kept this long (the console shows them), then deleted.
const KEEP_RESOLVED: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where and how the operator is told (`--alert-webhook`, `--alert-webhook-secret`,
/// `--alert-after`).
#[derive(Clone)]
pub struct AlertConfig {
    /// The operator's webhook. Without one, incidents are still recorded, shown in the
    /// console and counted in `/metrics`, and their notifications count as told.
    pub webhook: Option<String>,
    /// The `whsec_…` secret notifications are signed with (required with a webhook).
    pub secret: Option<String>,
    /// How long a stream is `error` or `invalid` before it is an incident.
    pub after: Duration,
    /// What time it is for incidents (the wall clock; tests put it on tokio's paused clock).
    pub clock: Clock,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            webhook: None,
            secret: None,
            after: DEFAULT_ALERT_AFTER,
            clock: Clock::default(),
        }
    }
}

impl std::fmt::Debug for AlertConfig {
    /// The secret never appears.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertConfig")
            .field("webhook", &self.webhook)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

/// Whether `secret` can sign notifications: `whsec_` and the base64 of at least 16 bytes, as
/// an `http` stream's `signing_secret`.
pub fn is_webhook_secret(secret: &str) -> bool {
    use base64::Engine;
    secret.strip_prefix("whsec_").is_some_and(|key| {
        base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|key| key.len() >= 16)
    })
}

/// How often an instance looks for incidents: a tenth of `--alert-after`, between 1 and 10
/// seconds, so an incident opens within that much of its threshold.
pub fn scan_interval(after: Duration) -> Duration {
    (after / 10).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// What one look at the failing streams decides.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan<'a> {
    /// Streaks that outlasted the threshold and have no incident yet.
    pub open: Vec<&'a StreamFault>,
    /// Open stream incidents whose streak is over: the stream delivered, was disabled or
    /// deleted (a stream failing again since is a new streak, and in time a new incident).
    pub resolve: Vec<&'a IncidentRecord>,
}

/// Which incidents to open and resolve, given the streams failing now and the incidents not yet
/// resolved. Pure.
pub fn plan<'a>(
    faults: &'a [StreamFault],
    open: &'a [IncidentRecord],
    after: Duration,
    now: Timestamp,
) -> Plan<'a> {
    let same_streak = |incident: &IncidentRecord, fault: &StreamFault| {
        incident.kind == IncidentKind::Stream
            && incident.subject_id == fault.stream_id
            && incident.since == fault.failing_since
    };
    Plan {
        open: faults
            .iter()
            .filter(|fault| rules::stream_incident_opens(fault.failing_since, after, now))
            .filter(|fault| !open.iter().any(|incident| same_streak(incident, fault)))
            .collect(),
        resolve: open
            .iter()
            .filter(|incident| incident.kind == IncidentKind::Stream)
            .filter(|incident| !faults.iter().any(|fault| same_streak(incident, fault)))
            .collect(),
    }
}

/// The webhook's `type` for a notification.
pub fn notice_type(kind: IncidentKind, notice: Notice) -> &'static str {
    match (kind, notice) {
        (IncidentKind::Stream, Notice::Opened) => "stream.failing",
        (IncidentKind::Stream, Notice::Resolved) => "stream.recovered",
        (IncidentKind::Export, _) => "export.failed",
    }
}

/// The body of a notification: `{"type", "incident_id", "organization_id", "stream_id" or
/// "export_id", "state", "last_error", "since", "at"}`. `state` is the subject's state when the
/// incident opened (`error`, `invalid`) or, for `stream.recovered`, when it resolved (`active`,
/// `inactive`, `deleted`); `since` is when the failure began, `at` when the incident opened or
/// resolved.
pub fn notice_body(incident: &IncidentRecord, notice: Notice) -> Value {
    let subject = match incident.kind {
        IncidentKind::Stream => "stream_id",
        IncidentKind::Export => "export_id",
    };
    let (state, at) = match notice {
        Notice::Opened => (incident.state.as_str(), incident.opened_at),
        Notice::Resolved => (
            incident.resolution.as_deref().unwrap_or("active"),
            incident.resolved_at.unwrap_or(incident.opened_at),
        ),
    };
    let mut body = json!({
        "type": notice_type(incident.kind, notice),
        "incident_id": incident.id,
        "organization_id": incident.organization_id,
        "state": state,
        "last_error": incident.last_error,
        "since": incident.since.to_string(),
        "at": at.to_string(),
    });
    body[subject] = Value::from(incident.subject_id.as_str());
    body
}

/// The alerts' part of the application: the client notifications go out with, and the signal
/// that wakes the notifier when an incident opens or resolves.
pub(crate) struct Alerts {
    client: reqwest::Client,
    wake: Notify,
}

impl Alerts {
    /// # Errors
    ///
    /// If the TLS backend cannot be initialized.
    pub(crate) fn new() -> Result<Self, reqwest::Error> {
        // The operator's own endpoint: no private-address guard, no stream egress proxy; no
        // redirects followed (a signed notification goes where the operator said).
        let client = reqwest::Client::builder()
            .timeout(NOTICE_TIMEOUT)
            .user_agent(concat!("trailmark/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Alerts {
            client,
            wake: Notify::new(),
        })
    }
}

/// Incidents for the console: the open ones and the latest.
#[derive(Debug, Clone)]
pub struct IncidentList {
    pub open: Vec<IncidentRecord>,
    pub recent: Vec<IncidentRecord>,
}

impl Trailmark {
    fn alert_config(&self) -> &AlertConfig {
        &self.inner.config.alerts
    }

    /// Looks for incidents and sends what they owe, every [`scan_interval`] and whenever an
    /// incident opens or resolves on this instance.
    pub(crate) async fn watch_incidents_forever(&self) {
        let mut looks = tokio::time::interval(scan_interval(self.alert_config().after));
        looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = looks.tick() => {
                    if let Err(error) = self.look_for_incidents().await {
                        tracing::warn!(%error, "could not look for alert incidents");
                    }
                }
                () = self.inner.alerts.wake.notified() => {}
            }
            self.send_notices().await;
        }
    }

    /// Opens an incident for each stream failing longer than `--alert-after`, resolves those
    /// whose stream's streak ended, and updates the open-incidents gauge.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn look_for_incidents(&self) -> Result<(), AppError> {
        let config = self.alert_config();
        let now = config.clock.now();
        let faults = self.store().stream_faults().await?;
        let open = self.store().open_incidents().await?;
        let plan = plan(&faults, &open, config.after, now);
        let mut changed = false;
        for fault in plan.open {
            let incident = rules::new_incident(
                NewIncident {
                    id: IdKind::Incident.generate().into_string(),
                    kind: IncidentKind::Stream,
                    subject_id: fault.stream_id.clone(),
                    organization_id: fault.organization_id.clone(),
                    state: fault.state.as_str().into(),
                    last_error: fault.last_error.clone(),
                    since: fault.failing_since,
                },
                now,
            );
            if self.store().open_incident(incident.clone()).await? {
                changed = true;
                self.metrics().incident_opened(IncidentKind::Stream);
                self.record_incident("trailmark.alert.opened", &incident, None)
                    .await;
                tracing::warn!(
                    incident = %incident.id,
                    stream = %fault.stream_id,
                    state = fault.state.as_str(),
                    since = %fault.failing_since,
                    error = fault.last_error.as_deref().unwrap_or_default(),
                    "a stream has been failing for longer than --alert-after-secs"
                );
            }
        }
        for incident in plan.resolve {
            // The streak ended: by a delivery unless the stream is disabled or gone.
            let resolution = match self.store().get_stream(&incident.subject_id).await? {
                None => "deleted",
                Some(stream) if !stream.enabled => "inactive",
                Some(_) => "active",
            };
            if self
                .store()
                .resolve_incident(&incident.id, resolution, now)
                .await?
            {
                changed = true;
                self.record_incident("trailmark.alert.resolved", incident, Some(resolution))
                    .await;
                tracing::info!(
                    incident = %incident.id,
                    stream = %incident.subject_id,
                    resolution,
                    "a failing stream's incident is resolved"
                );
            }
        }
        let open = if changed {
            self.store().open_incidents().await?
        } else {
            open
        };
        let count = |kind| open.iter().filter(|i| i.kind == kind).count() as i64;
        self.metrics().incidents_open(&[
            (IncidentKind::Stream, count(IncidentKind::Stream)),
            (IncidentKind::Export, count(IncidentKind::Export)),
        ]);
        if changed {
            self.inner.alerts.wake.notify_one();
        }
        Ok(())
    }

    /// Records a failed export as an incident (closed as it opens: it owes one notification).
    pub(crate) async fn export_failed(&self, export: &ExportRecord, reason: &str) {
        let now = self.alert_config().clock.now();
        let incident = rules::new_incident(
            NewIncident {
                id: IdKind::Incident.generate().into_string(),
                kind: IncidentKind::Export,
                subject_id: export.id.clone(),
                organization_id: Some(export.organization_id.clone()),
                state: "error".into(),
                last_error: Some(reason.to_owned()),
                since: now,
            },
            now,
        );
        match self.store().open_incident(incident.clone()).await {
            Ok(true) => {
                self.metrics().incident_opened(IncidentKind::Export);
                self.record_incident("trailmark.alert.opened", &incident, None)
                    .await;
                self.inner.alerts.wake.notify_one();
            }
            Ok(false) => {}
            Err(error) => {
                tracing::error!(export = %export.id, %error, "could not record a failed export's incident");
            }
        }
    }

    /// Records an incident's opening or resolution in Trailmark's own log (by the instance that
    /// made it, so once), with this instance as actor. A failure to record is logged: the
    /// incident itself is stored, shown and notified regardless.
    async fn record_incident(
        &self,
        action: &str,
        incident: &IncidentRecord,
        resolution: Option<&str>,
    ) {
        let mut metadata = json!({
            "incident_id": incident.id,
            "state": resolution.unwrap_or(&incident.state),
            "since": incident.since.to_string(),
        });
        if let Some(organization) = &incident.organization_id {
            metadata["organization_id"] = json!(organization);
        }
        if let Some(error) = &incident.last_error {
            let limit = trailmark_domain::limits::METADATA_VALUE_MAX_CHARS;
            metadata["last_error"] = json!(error.chars().take(limit).collect::<String>());
        }
        let target_type = match incident.kind {
            IncidentKind::Stream => "log_stream",
            IncidentKind::Export => "audit_log_export",
        };
        let event = crate::system::SystemEvent {
            action: action.to_owned(),
            actor: crate::system::SystemActor {
                id: self.instance_id().to_owned(),
                kind: "trailmark",
                name: Some("Trailmark alerts".to_owned()),
            },
            target: json!({"id": incident.subject_id, "type": target_type}),
            location: "trailmark".to_owned(),
            user_agent: None,
            metadata,
        };
        if let Err(error) = self.record_in_trailmark_log(event).await {
            tracing::warn!(incident = %incident.id, %error, "could not record an alert incident in Trailmark's log");
        }
    }

    /// Sends every notification due now that no other instance is sending, one at a time.
    async fn send_notices(&self) {
        let config = self.alert_config();
        loop {
            let now = config.clock.now();
            let until = now.plus_millis(NOTICE_LEASE.as_millis() as i64);
            let claimed = match self
                .store()
                .claim_notice(self.instance_id(), until, now)
                .await
            {
                Ok(Some(claimed)) => claimed,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "could not take an alert notification");
                    return;
                }
            };
            let (incident, notice) = claimed;
            let outcome = match (&config.webhook, &config.secret) {
                (Some(url), Some(secret)) => {
                    let outcome = self.deliver(url, secret, &incident, notice).await;
                    let kind = notice_type(incident.kind, notice);
                    self.metrics().alert_notification(kind, outcome.is_ok());
                    if let Err(reason) = &outcome {
                        tracing::warn!(incident = %incident.id, r#type = kind, %reason, "the alert webhook did not acknowledge a notification; it will be sent again");
                    }
                    outcome
                }
                // Nobody to tell: the console and the metrics are all there is.
                _ => Ok(()),
            };
            if let Err(error) = self
                .store()
                .finish_notice(
                    &incident.id,
                    notice,
                    self.instance_id(),
                    outcome,
                    config.clock.now(),
                )
                .await
            {
                tracing::warn!(incident = %incident.id, %error, "could not record an alert notification");
                return;
            }
        }
    }

    /// One signed `POST` of a notification; `Ok` when the webhook answered 2xx.
    async fn deliver(
        &self,
        url: &str,
        secret: &str,
        incident: &IncidentRecord,
        notice: Notice,
    ) -> Result<(), String> {
        let body = notice_body(incident, notice).to_string().into_bytes();
        let message_id = format!("{}_{}", incident.id, notice.as_str());
        // The receiver checks this against its own clock, so it is the wall clock's.
        let timestamp = Timestamp::now().unix_millis() / 1000;
        let mut request = self
            .inner
            .alerts
            .client
            .post(url)
            .header("Content-Type", "application/json")
            .header("webhook-id", &message_id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(signature) =
            trailmark_streams::http::signature(secret, &message_id, timestamp, &body)
        {
            request = request.header("webhook-signature", signature);
        }
        match request.body(body).send().await {
            Ok(answer) if answer.status().is_success() => Ok(()),
            Ok(answer) => Err(format!("the webhook answered {}", answer.status())),
            Err(error) => Err(match trailmark_streams::net::network_failure(&error) {
                trailmark_streams::Outcome::Retry { reason, .. } => reason,
                _ => error.to_string(),
            }),
        }
    }

    /// The open incidents and the `limit` latest, for the console.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn incidents(&self, limit: usize) -> Result<IncidentList, AppError> {
        Ok(IncidentList {
            open: self.store().open_incidents().await?,
            recent: self.store().recent_incidents(limit).await?,
        })
    }

    /// Deletes incidents resolved longer than [`KEEP_RESOLVED`] ago that owe nothing.
    pub(crate) async fn purge_incidents(&self) {
        let before = Timestamp::now().plus_millis(-(KEEP_RESOLVED.as_millis() as i64));
        match self.store().purge_incidents(before).await {
            Ok(purged) => tracing::debug!(purged, "old alert incidents deleted"),
            Err(error) => tracing::warn!(%error, "could not purge alert incidents"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use trailmark_domain::organization::Organization;
    use trailmark_store::{SqliteStore, Store, StreamRecord, StreamState};

    use super::*;

    const MINUTE: i64 = 60_000;

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_700_000_000_000 + millis)
    }

    fn fault(stream: &str, since: i64) -> StreamFault {
        StreamFault {
            stream_id: stream.into(),
            organization_id: Some("org_1".into()),
            state: StreamState::Invalid,
            last_error: Some("401: bad token".into()),
            failing_since: at(since),
        }
    }

    fn incident(stream: &str, since: i64) -> IncidentRecord {
        rules::new_incident(
            NewIncident {
                id: format!("incident_{stream}_{since}"),
                kind: IncidentKind::Stream,
                subject_id: stream.into(),
                organization_id: Some("org_1".into()),
                state: "invalid".into(),
                last_error: None,
                since: at(since),
            },
            at(since + 5 * MINUTE),
        )
    }

    const AFTER: Duration = Duration::from_secs(300);

    #[test]
    fn a_streak_becomes_an_incident_once_it_lasts_alert_after() {
        let faults = [fault("a", 0)];
        let early = plan(&faults, &[], AFTER, at(5 * MINUTE - 1));
        assert!(early.open.is_empty(), "not yet");
        let due = plan(&faults, &[], AFTER, at(5 * MINUTE));
        assert_eq!(due.open, [&faults[0]]);
        assert!(due.resolve.is_empty());
    }

    #[test]
    fn a_streak_with_an_incident_opens_no_other() {
        let faults = [fault("a", 0)];
        let open = [incident("a", 0)];
        let later = plan(&faults, &open, AFTER, at(60 * MINUTE));
        assert_eq!(
            later,
            Plan {
                open: vec![],
                resolve: vec![]
            }
        );
    }

    #[test]
    fn an_incident_resolves_when_its_streak_ends() {
        let open = [incident("a", 0)];
        let healthy = plan(&[], &open, AFTER, at(10 * MINUTE));
        assert_eq!(
            healthy.resolve,
            [&open[0]],
            "delivered, disabled or deleted"
        );
        // Failing again since: the old streak ended (resolve), the new one is not an incident
        // until it too lasts the threshold.
        let faults = [fault("a", 9 * MINUTE)];
        let again = plan(&faults, &open, AFTER, at(10 * MINUTE));
        assert_eq!(again.resolve, [&open[0]]);
        assert!(again.open.is_empty());
        let later = plan(&faults, &open, AFTER, at(14 * MINUTE));
        assert_eq!(later.open, [&faults[0]]);
    }

    #[test]
    fn export_incidents_are_left_alone() {
        let export = rules::new_incident(
            NewIncident {
                id: "incident_x".into(),
                kind: IncidentKind::Export,
                subject_id: "audit_log_export_1".into(),
                organization_id: None,
                state: "error".into(),
                last_error: None,
                since: at(0),
            },
            at(0),
        );
        assert!(plan(&[], &[export], AFTER, at(MINUTE)).resolve.is_empty());
    }

    #[test]
    fn the_body_names_the_subject_and_the_moments() {
        let mut stream = incident("log_stream_1", 0);
        stream.last_error = Some("401: bad token".into());
        assert_eq!(
            notice_body(&stream, Notice::Opened),
            json!({
                "type": "stream.failing",
                "incident_id": "incident_log_stream_1_0",
                "organization_id": "org_1",
                "stream_id": "log_stream_1",
                "state": "invalid",
                "last_error": "401: bad token",
                "since": at(0).to_string(),
                "at": at(5 * MINUTE).to_string(),
            })
        );
        let resolved = rules::incident_resolved(&stream, "active", at(7 * MINUTE)).expect("open");
        let body = notice_body(&resolved, Notice::Resolved);
        assert_eq!(body["type"], "stream.recovered");
        assert_eq!(body["state"], "active");
        assert_eq!(body["at"], at(7 * MINUTE).to_string());
        assert_eq!(
            notice_type(IncidentKind::Export, Notice::Opened),
            "export.failed"
        );
    }

    #[test]
    fn looks_come_often_enough_for_the_threshold() {
        assert_eq!(
            scan_interval(Duration::from_secs(300)),
            Duration::from_secs(10)
        );
        assert_eq!(
            scan_interval(Duration::from_secs(30)),
            Duration::from_secs(3)
        );
        assert_eq!(
            scan_interval(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert!(is_webhook_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        assert!(!is_webhook_secret("whsec_c2hvcnQ="));
        assert!(!is_webhook_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    }

    /// Two instances over one database, on tokio's paused clock: a stream that starts failing
    /// becomes one incident when (and not before) it has failed for `--alert-after`, owes one
    /// opening notification however often both look, and resolves once when it delivers.
    #[tokio::test(start_paused = true)]
    async fn two_instances_open_and_resolve_a_stream_incident_once_on_the_paused_clock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("t.db")).expect("store"));
        let base = Timestamp::now();
        let start = tokio::time::Instant::now();
        let clock = Clock::new(move || base.plus_millis(start.elapsed().as_millis() as i64));
        let instance = || {
            let config = crate::AppConfig {
                alerts: AlertConfig {
                    clock: clock.clone(),
                    ..AlertConfig::default()
                },
                ..crate::AppConfig::for_tests(dir.path())
            };
            Trailmark::new(Arc::clone(&store), config).expect("app")
        };
        let instances = [instance(), instance()];
        let organization = store
            .insert_organization(Organization {
                id: IdKind::Organization.generate().into_string(),
                name: "Acme".into(),
                domains: Vec::new(),
                metadata: BTreeMap::new(),
                external_id: None,
                allow_profiles_outside_organization: false,
                retention_period_in_days: None,
                created_at: base,
                updated_at: base,
            })
            .await
            .expect("organization");
        let stream = StreamRecord {
            id: IdKind::LogStream.generate().into_string(),
            organization_id: Some(organization.id.clone()),
            kind: "http".into(),
            name: "SIEM".into(),
            config: json!({}),
            secrets: Vec::new(),
            enabled: true,
            state: StreamState::Active,
            cursor: None,
            last_synced_at: None,
            last_error: None,
            created_at: base,
            updated_at: base,
        };
        store.insert_stream(stream.clone()).await.expect("stream");
        store
            .record_stream_failure(&stream.id, StreamState::Invalid, "401", clock.now())
            .await
            .expect("failure");
        let look = || async {
            for app in &instances {
                app.look_for_incidents().await.expect("look");
                app.send_notices().await;
            }
            store.recent_incidents(10).await.expect("incidents")
        };
        let step = scan_interval(DEFAULT_ALERT_AFTER);
        while tokio::time::Instant::now() - start + step < DEFAULT_ALERT_AFTER {
            tokio::time::advance(step).await;
            assert!(look().await.is_empty(), "not before --alert-after");
            // The stream keeps failing: its streak is the same one.
            store
                .record_stream_failure(&stream.id, StreamState::Error, "503", clock.now())
                .await
                .expect("failure");
        }
        tokio::time::advance(step).await;
        let opened = look().await;
        assert_eq!(opened.len(), 1, "one incident for two instances");
        assert_eq!(opened[0].since, base);
        assert_eq!(opened[0].state, "error");
        assert!(
            opened[0].opened_notified_at.is_some(),
            "told (nobody to tell)"
        );
        for _ in 0..10 {
            tokio::time::advance(step).await;
            assert_eq!(look().await, opened, "nothing more while it lasts");
        }
        assert!(
            store
                .lease_stream(
                    &stream.id,
                    "worker",
                    clock.now().plus_millis(MINUTE),
                    clock.now()
                )
                .await
                .expect("lease")
        );
        assert!(
            store
                .record_delivery(&stream.id, "worker", None, 0, clock.now())
                .await
                .expect("delivered")
        );
        tokio::time::advance(step).await;
        let resolved = look().await;
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].resolution.as_deref(), Some("active"));
        assert!(resolved[0].resolved_notified_at.is_some());
        assert!(store.open_incidents().await.expect("open").is_empty());
    }
}
