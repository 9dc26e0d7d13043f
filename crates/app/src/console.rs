//! The operators' console: operator accounts, sign-in and sessions, and Trailmark's own log.
//!
//! Operators are created with `trailmark operators create` (the password hashed with Argon2id,
//! OWASP's parameters: 19 MiB, 2 passes). Signing in checks the password on the blocking pool,
//! against a dummy hash when the e-mail is unknown, so the answer takes as long either way and
//! says the same ("wrong e-mail or password"). Failures are counted per e-mail and per address:
//! past [`FAILURES_PER_EMAIL`] or [`FAILURES_PER_ADDRESS`] in [`THROTTLE_WINDOW`], sign-ins are
//! refused without a check until the window has passed (per instance). An attempt is counted
//! before its password is checked (and taken back when it succeeds), so concurrent attempts
//! cannot slip past the limit together, and at most four checks run at once.
//!
//! A session ends after the idle timeout the adapter gives (`--console-idle-timeout-secs`, 30
//! minutes by default) without a request, and [`SESSION_MAX`] after it was opened however
//! busy. The adapter passes the time (`now`) in, so a test can move its clock.
//!
//! Every console action is recorded in **Trailmark's own log**, a log kept under the reserved
//! organization id [`TRAILMARK_LOG`], with the operator as actor (id, e-mail), the browser's
//! address as location and its user agent; a change to an organization is also recorded in that
//! organization's log ([`crate::audit`]). The reserved organization is made on the first record,
//! and is invisible to the API: not listed, not found, never written to by an app.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde_json::{Value, json};
use trailmark_domain::Problems;
use trailmark_domain::Timestamp;
use trailmark_domain::event::NewEvent;
use trailmark_domain::organization::{Organization, OrganizationChanges};
use trailmark_domain::schema::{ActionName, ActionSchema, CompiledSchema, SchemaDefinition};
use trailmark_store::{
    NewOperatorSession, OperatorRecord, OperatorSession, Operators, SearchPage, SearchRequest,
};

use crate::audit::Origin;
use crate::system::SystemEvent;
use crate::{AppError, Trailmark};

/// The organization id under which Trailmark keeps its own log. A well-formed id (the nil
/// ULID) that no generated id can be, since generated ids carry the time they were made.
pub const TRAILMARK_LOG: &str = "org_00000000000000000000000000";
/// A session ends this long after it was opened, however busy.
pub const SESSION_MAX: Duration = Duration::from_secs(12 * 3600);
/// Failed sign-ins for one e-mail within [`THROTTLE_WINDOW`] before it is refused.
pub const FAILURES_PER_EMAIL: u32 = 5;
/// Failed sign-ins from one address within [`THROTTLE_WINDOW`] before it is refused.
pub const FAILURES_PER_ADDRESS: u32 = 20;
/// How long failures are counted.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The shortest password `operators create` accepts (NIST SP 800-63B's minimum is 8; operators
/// hold every tenant's data).
pub const PASSWORD_MIN_CHARS: usize = 12;
/// The longest: Argon2 takes any length, but a megabyte password is a denial of service.
const PASSWORD_MAX_BYTES: usize = 1024;
/// RFC 5321's path limit.
const EMAIL_MAX_CHARS: usize = 320;
/// Failure counters kept at most; the oldest windows are dropped past it.
const THROTTLE_MAX_KEYS: usize = 10_000;

/// The console's state in the application: whether Trailmark's log exists, and the failure
/// counters.
pub(crate) struct Console {
    log_ready: AtomicBool,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    /// Password checks running at once: each takes Argon2's 19 MiB, and a burst of sign-ins
    /// must not take the blocking pool's every thread and that much memory each.
    checks: tokio::sync::Semaphore,
}

/// Password checks that may run at once; a sign-in finding none free is throttled.
const PASSWORD_CHECKS_AT_ONCE: usize = 4;

impl Default for Console {
    fn default() -> Self {
        Console {
            log_ready: AtomicBool::new(false),
            failures: Mutex::new(HashMap::new()),
            checks: tokio::sync::Semaphore::new(PASSWORD_CHECKS_AT_ONCE),
        }
    }
}

/// A sign-in attempt as the sign-in form gave it.
pub struct SignInAttempt {
    pub email: String,
    pub password: String,
    pub address: String,
    pub user_agent: Option<String>,
}

/// What a sign-in came to.
#[derive(Debug)]
pub enum SignIn {
    Opened(OperatorSession),
    /// Wrong e-mail or password (which one is not said).
    Refused,
    /// Too many failures lately for this e-mail or address.
    Throttled,
}

/// An operator's e-mail, trimmed and lower-cased.
///
/// # Errors
///
/// A problem naming `email` if it does not look like an address.
pub fn normalize_email(text: &str) -> Result<String, AppError> {
    let email = text.trim().to_lowercase();
    let looks_right = email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && email.chars().count() <= EMAIL_MAX_CHARS
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if looks_right {
        Ok(email)
    } else {
        Err(AppError::field(
            "invalid_value",
            "email",
            format!("email must be an e-mail address of at most {EMAIL_MAX_CHARS} characters"),
        ))
    }
}

/// Creates an operator account (`trailmark operators create`, which opens the store beside a
/// running server rather than a whole application).
///
/// # Errors
///
/// A problem naming `email` or `password`, [`AppError::Conflict`] (`email`) if an operator has
/// that e-mail, or storage errors.
pub async fn create_operator(
    store: &dyn Operators,
    email: &str,
    password: String,
) -> Result<OperatorRecord, AppError> {
    let email = normalize_email(email)?;
    if password.chars().count() < PASSWORD_MIN_CHARS || password.len() > PASSWORD_MAX_BYTES {
        return Err(AppError::field(
            "invalid_value",
            "password",
            format!(
                "the password must have at least {PASSWORD_MIN_CHARS} characters (and at most {PASSWORD_MAX_BYTES} bytes)"
            ),
        ));
    }
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AppError::Internal(format!("password hashing failed: {e}")))??;
    let operator = OperatorRecord {
        id: trailmark_domain::id::IdKind::Operator
            .generate()
            .into_string(),
        email,
        password_hash,
        created_at: Timestamp::now(),
    };
    store.insert_operator(operator.clone()).await?;
    Ok(operator)
}

fn hash_password(password: &str) -> Result<String, AppError> {
    let hash: PasswordHash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| AppError::Internal(format!("cannot hash a password: {e}")))?;
    Ok(hash.to_string())
}

/// Whether `password` is the one `phc` was made from; a PHC string that does not parse never
/// matches.
fn password_matches(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A hash of a random password, checked when the e-mail is unknown so that the answer takes as
/// long as for a known one.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        // An event id carries 80 random bits: a password no one knows.
        let password = trailmark_domain::id::IdKind::Event.generate().into_string();
        hash_password(&password).unwrap_or_default()
    })
}

impl Console {
    /// Counts an attempt as a failure before its password is checked, unless one of `keys`
    /// already reached its limit (then `false`): counted first, so that concurrent attempts
    /// cannot all pass the check before any of them failed.
    fn attempt(&self, keys: &[String]) -> bool {
        let Ok(mut failures) = self.failures.lock() else {
            return false;
        };
        let throttled = keys.iter().any(|key| {
            failures.get(key).is_some_and(|(count, since)| {
                since.elapsed() < THROTTLE_WINDOW && *count >= limit_of(key)
            })
        });
        if throttled {
            return false;
        }
        if failures.len() >= THROTTLE_MAX_KEYS {
            failures.retain(|_, (_, since)| since.elapsed() < THROTTLE_WINDOW);
        }
        // Still full of live counters: the oldest go, so the table stays bounded.
        while failures.len() >= THROTTLE_MAX_KEYS {
            let oldest = failures
                .iter()
                .min_by_key(|(_, (_, since))| *since)
                .map(|(key, _)| key.clone());
            match oldest {
                Some(key) => failures.remove(&key),
                None => break,
            };
        }
        for key in keys {
            let entry = failures.entry(key.clone()).or_insert((0, Instant::now()));
            if entry.1.elapsed() >= THROTTLE_WINDOW {
                *entry = (0, Instant::now());
            }
            entry.0 += 1;
        }
        true
    }

    /// Takes back a successful attempt: the e-mail's failures are forgotten, and the address
    /// is not charged for it.
    fn succeeded(&self, keys: &[String]) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&keys[0]);
            for key in &keys[1..] {
                if let Some(entry) = failures.get_mut(key) {
                    entry.0 = entry.0.saturating_sub(1);
                }
            }
        }
    }
}

fn limit_of(key: &str) -> u32 {
    if key.starts_with("email:") {
        FAILURES_PER_EMAIL
    } else {
        FAILURES_PER_ADDRESS
    }
}

impl Trailmark {
    /// Signs an operator in: on the right e-mail and password (and no throttle), opens `session`
    /// (whose `operator_id` is filled in here) and records `trailmark.console.signed_in`; on a
    /// wrong one, records `trailmark.console.sign_in_failed` with the e-mail tried.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn sign_in(
        &self,
        attempt: SignInAttempt,
        mut session: NewOperatorSession,
    ) -> Result<SignIn, AppError> {
        let email = attempt.email.trim().to_lowercase();
        // Cut to what an e-mail address may be, so a counter's key stays small.
        let counted: String = email.chars().take(EMAIL_MAX_CHARS).collect();
        let keys = [
            format!("email:{counted}"),
            format!("address:{}", attempt.address),
        ];
        let Ok(_check) = self.inner.console.checks.try_acquire() else {
            return Ok(SignIn::Throttled);
        };
        if !self.inner.console.attempt(&keys) {
            return Ok(SignIn::Throttled);
        }
        let operator = match normalize_email(&email) {
            Ok(email) => self.store().find_operator(&email).await?,
            Err(_) => None,
        };
        let phc = operator
            .as_ref()
            .map_or_else(|| dummy_hash().to_owned(), |o| o.password_hash.clone());
        let password = attempt.password;
        let matches = tokio::task::spawn_blocking(move || password_matches(&password, &phc))
            .await
            .map_err(|e| AppError::Internal(format!("password check failed: {e}")))?;
        let origin = |operator_id: String, name: String| Origin::Operator {
            operator_id,
            email: name,
            address: attempt.address.clone(),
            user_agent: attempt.user_agent.clone(),
        };
        match operator.filter(|_| matches) {
            Some(operator) => {
                self.inner.console.succeeded(&keys);
                session.operator_id = operator.id.clone();
                self.store()
                    .insert_operator_session(session.clone())
                    .await?;
                let origin = origin(operator.id.clone(), operator.email.clone());
                self.record_operator_action(
                    &origin,
                    "trailmark.console.signed_in",
                    json!({"id": session.id, "type": "console_session"}),
                    json!({}),
                )
                .await?;
                Ok(SignIn::Opened(OperatorSession {
                    id: session.id,
                    operator_id: operator.id,
                    email: operator.email,
                    csrf_token: session.csrf_token,
                    created_at: session.created_at,
                    expires_at: session.expires_at,
                }))
            }
            None => {
                let tried: String = email.chars().take(EMAIL_MAX_CHARS).collect();
                let origin = origin("unknown".into(), tried.clone());
                self.record_operator_action(
                    &origin,
                    "trailmark.console.sign_in_failed",
                    json!({"id": "console", "type": "console"}),
                    json!({"email": tried}),
                )
                .await?;
                Ok(SignIn::Refused)
            }
        }
    }

    /// The open session whose cookie secret hashes to `secret_hash` at `now`, renewed for
    /// `idle`; `None` once it was idle too long or opened [`SESSION_MAX`] ago.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn operator_session(
        &self,
        secret_hash: [u8; 32],
        now: Timestamp,
        idle: Duration,
    ) -> Result<Option<OperatorSession>, AppError> {
        let renew_until = now.plus_millis(idle.as_millis() as i64);
        let Some(session) = self
            .store()
            .touch_operator_session(secret_hash, now, renew_until)
            .await?
        else {
            return Ok(None);
        };
        if session
            .created_at
            .plus_millis(SESSION_MAX.as_millis() as i64)
            < now
        {
            self.store().delete_operator_session(secret_hash).await?;
            return Ok(None);
        }
        Ok(Some(session))
    }

    /// Ends the session whose cookie secret hashes to `secret_hash`, recording
    /// `trailmark.console.signed_out`.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn sign_out(
        &self,
        secret_hash: [u8; 32],
        session: &OperatorSession,
        origin: &Origin,
    ) -> Result<(), AppError> {
        self.store().delete_operator_session(secret_hash).await?;
        self.record_operator_action(
            origin,
            "trailmark.console.signed_out",
            json!({"id": session.id, "type": "console_session"}),
            json!({}),
        )
        .await
    }

    /// Creates an organization from the console, recording `trailmark.organization.created`.
    ///
    /// # Errors
    ///
    /// As [`Trailmark::create_organization`].
    pub async fn console_create_organization(
        &self,
        changes: OrganizationChanges,
        origin: &Origin,
    ) -> Result<Organization, AppError> {
        let organization = self.create_organization(changes).await?;
        self.record_operator_action(
            origin,
            "trailmark.organization.created",
            organization_target(&organization),
            json!({}),
        )
        .await?;
        Ok(organization)
    }

    /// Changes an organization from the console, recording `trailmark.organization.updated`.
    ///
    /// # Errors
    ///
    /// As [`Trailmark::update_organization`].
    pub async fn console_update_organization(
        &self,
        id: &str,
        changes: OrganizationChanges,
        origin: &Origin,
    ) -> Result<Organization, AppError> {
        let fields: Vec<&str> = [
            ("name", changes.name.is_some()),
            ("domains", changes.domains.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect();
        let organization = self.update_organization(id, changes).await?;
        self.record_operator_action(
            origin,
            "trailmark.organization.updated",
            organization_target(&organization),
            json!({"fields": fields.join(",")}),
        )
        .await?;
        Ok(organization)
    }

    /// Deletes an organization from the console, recording `trailmark.organization.deleted`.
    ///
    /// # Errors
    ///
    /// As [`Trailmark::delete_organization`].
    pub async fn console_delete_organization(
        &self,
        id: &str,
        origin: &Origin,
    ) -> Result<(), AppError> {
        let organization = self.live_organization(id).await?;
        self.delete_organization(id).await?;
        self.record_operator_action(
            origin,
            "trailmark.organization.deleted",
            organization_target(&organization),
            json!({}),
        )
        .await
    }

    /// Creates a schema version from the console, recording `trailmark.schema.created`.
    ///
    /// # Errors
    ///
    /// As [`Trailmark::create_schema`].
    pub async fn console_create_schema(
        &self,
        action: ActionName,
        definition: SchemaDefinition,
        origin: &Origin,
    ) -> Result<ActionSchema, AppError> {
        let schema = self.create_schema(action, definition).await?;
        self.record_operator_action(
            origin,
            "trailmark.schema.created",
            json!({"id": schema.action.as_str(), "type": "event_schema"}),
            json!({"version": schema.version}),
        )
        .await?;
        Ok(schema)
    }

    /// What would become of `sample` (an event object, as an app sends it) under `definition`
    /// as `action`'s schema: every problem, as `path: message` lines; none if it passes. The
    /// console checks a sample before a version is saved, with ingest's own checks.
    ///
    /// # Errors
    ///
    /// [`AppError::Internal`] if the definition does not compile (it was parsed, so it does).
    pub async fn check_sample(
        &self,
        action: &ActionName,
        definition: &SchemaDefinition,
        sample: &Value,
    ) -> Result<Vec<String>, AppError> {
        let event = match NewEvent::parse(sample) {
            Ok(event) => event,
            Err(problems) => return Ok(describe(problems)),
        };
        let mut problems = Vec::new();
        if event.action() != action.as_str() {
            problems.push(format!(
                "/action: the sample's action is '{}', not '{}'",
                event.action(),
                action.as_str()
            ));
        }
        let schema = ActionSchema {
            action: action.clone(),
            version: 1,
            definition: definition.clone(),
            created_at: Timestamp::now(),
        };
        let compiled = CompiledSchema::compile(&schema).map_err(AppError::Internal)?;
        let found = tokio::task::spawn_blocking(move || compiled.check(&event))
            .await
            .map_err(|e| AppError::Internal(format!("a schema check failed: {e}")))?;
        problems.extend(
            found
                .into_iter()
                .map(|p| format!("{}: {}", p.instance_path, p.message)),
        );
        Ok(problems)
    }

    /// One page of Trailmark's own log.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn trailmark_log(&self, request: SearchRequest) -> Result<SearchPage, AppError> {
        if !self.trailmark_log_exists().await? {
            return Ok(SearchPage {
                events: Vec::new(),
                more: false,
            });
        }
        Ok(self.store().search_events(TRAILMARK_LOG, request).await?)
    }

    /// Records something an operator did in Trailmark's own log.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub(crate) async fn record_operator_action(
        &self,
        origin: &Origin,
        action: &str,
        target: Value,
        metadata: Value,
    ) -> Result<(), AppError> {
        let Some(recorded) = origin.recorded() else {
            return Ok(());
        };
        self.record_in_trailmark_log(SystemEvent {
            action: action.to_owned(),
            actor: recorded.actor,
            target,
            location: recorded.location.to_owned(),
            user_agent: recorded.user_agent,
            metadata,
        })
        .await
    }

    /// Appends `event` to Trailmark's own log, making the log on its first event.
    pub(crate) async fn record_in_trailmark_log(&self, event: SystemEvent) -> Result<(), AppError> {
        if !self.inner.console.log_ready.load(Ordering::Acquire) {
            if !self.trailmark_log_exists().await? {
                let now = Timestamp::now();
                let organization = Organization {
                    id: TRAILMARK_LOG.to_owned(),
                    name: "Trailmark".to_owned(),
                    domains: Vec::new(),
                    metadata: Default::default(),
                    external_id: None,
                    allow_profiles_outside_organization: false,
                    retention_period_in_days: None,
                    created_at: now,
                    updated_at: now,
                };
                // Another instance may make it first: then it exists, which is all we need.
                if let Err(error) = self.store().insert_organization(organization).await
                    && !self.trailmark_log_exists().await?
                {
                    return Err(error.into());
                }
            }
            self.inner.console.log_ready.store(true, Ordering::Release);
        }
        self.record(TRAILMARK_LOG, event).await?;
        Ok(())
    }

    async fn trailmark_log_exists(&self) -> Result<bool, AppError> {
        Ok(self
            .store()
            .get_organization(TRAILMARK_LOG)
            .await?
            .is_some())
    }
}

fn describe(problems: Problems) -> Vec<String> {
    match problems {
        Problems::Malformed(fields) => fields
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect(),
        Problems::Invalid(paths) => paths
            .into_iter()
            .map(|p| format!("{}: {}", p.instance_path, p.message))
            .collect(),
    }
}

/// Whether `id` is Trailmark's own log, which the API neither shows nor writes to.
pub fn is_trailmark_log(id: &str) -> bool {
    id == TRAILMARK_LOG
}

fn organization_target(organization: &Organization) -> Value {
    json!({"id": organization.id, "type": "organization", "name": organization.name})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_counted_before_their_check_so_a_burst_cannot_pass_the_limit_together() {
        let console = Console::default();
        let keys = |email: &str| [format!("email:{email}"), "address:192.0.2.1".to_owned()];
        // No attempt has failed yet (none was checked): each is counted as it starts.
        let started = (0..10)
            .filter(|_| console.attempt(&keys("a@x.test")))
            .count();
        assert_eq!(started, FAILURES_PER_EMAIL as usize);
        // A success takes its attempt back: the e-mail starts over, the address is not charged.
        console.succeeded(&keys("a@x.test"));
        assert!(console.attempt(&keys("a@x.test")));
        let charged = console
            .failures
            .lock()
            .map(|f| f["address:192.0.2.1"].0)
            .unwrap_or_default();
        assert_eq!(charged, FAILURES_PER_EMAIL);
    }

    #[test]
    fn emails_are_trimmed_lowercased_and_must_look_like_addresses() {
        assert_eq!(
            normalize_email("  Ops@Example.COM ").ok(),
            Some("ops@example.com".to_owned())
        );
        for bad in ["", "ops", "@example.com", "ops@", "o ps@example.com"] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_password_matches_only_its_own_argon2id_hash() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(password_matches("correct horse battery", &hash));
        assert!(!password_matches("correct horse battery!", &hash));
        assert!(!password_matches(
            "correct horse battery",
            "not a phc string"
        ));
    }
}
