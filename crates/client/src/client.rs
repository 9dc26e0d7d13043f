//! [`Client`]: one method per Trailmark endpoint, each retried by the same rules.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, Response, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::Error;
use crate::retry::{RetryPolicy, retry_after, retryable_status};
use crate::wire::{
    Action, BatchOutcome, ConsistencyProof, Event, EventObject, Export, ExportRequest,
    InclusionProof, LedgerPublicKey, List, LogStream, LogStreamUpdate, NewLogStream, Receipt,
    ReplayFrom, Schema, SignedCheckpoint, StreamTest,
};

/// The most events Trailmark takes in one batch call.
pub const BATCH_MAX_EVENTS: usize = 1000;

/// A Trailmark API client. Cheap to clone; clones share one connection pool.
///
/// Every call that Trailmark may not have processed is retried by the client's
/// [`RetryPolicy`]: event calls always (each logical call carries one `Idempotency-Key`, reused by
/// all its retries, so a retry after a lost answer replays the first answer and stores
/// nothing), reads and idempotent writes always, and creations that are not idempotent
/// (exports, streams, replays, test events) only when the server refused them with 429 or the
/// connection was never made.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    api_key: String,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base.as_str())
            .field("api_key", &"sk_…")
            .field("retry", &self.inner.retry)
            .finish()
    }
}

/// Configures a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    api_key: String,
    retry: RetryPolicy,
    timeout: Duration,
    http: Option<reqwest::Client>,
}

impl ClientBuilder {
    /// Replaces the default [`RetryPolicy`] (5 attempts, 100 ms doubling to 10 s).
    #[must_use]
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The timeout of each attempt (default 30 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses this `reqwest` client (its own timeout then applies instead of [`Self::timeout`]).
    #[must_use]
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`Error::BaseUrl`] if the base URL is not an absolute http(s) URL; [`Error::Transport`]
    /// if the HTTP client cannot be created (its TLS roots cannot be loaded).
    pub fn build(self) -> Result<Client, Error> {
        let invalid = |reason: String| Error::BaseUrl {
            url: self.base_url.clone(),
            reason,
        };
        // A trailing slash lets `Url::join` keep any path prefix (Trailmark behind /audit/).
        let with_slash = format!("{}/", self.base_url.trim_end_matches('/'));
        let base = Url::parse(&with_slash).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".into()));
        }
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .timeout(self.timeout)
                .build()
                .map_err(|source| Error::Transport {
                    source,
                    attempts: 0,
                })?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                api_key: self.api_key,
                retry: self.retry,
            }),
        })
    }
}

/// Whether a request may be sent again, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Reads and idempotent writes: retried on every retryable failure.
    Safe,
    /// Event ingestion: retried on every retryable failure, with one `Idempotency-Key`.
    WithKey,
    /// Non-idempotent creations: retried only when nothing can have been processed.
    OnlyIfRefused,
}

/// Filters and cursor for [`Client::search`]. Empty fields are left out of the query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Required unless the key is restricted to one organization.
    pub organization_id: Option<String>,
    /// `occurred_at` ≥ this (ISO-8601).
    pub range_start: Option<String>,
    /// `occurred_at` ≤ this (ISO-8601).
    pub range_end: Option<String>,
    /// Exact names, or prefixes like `user.*`.
    pub actions: Vec<String>,
    pub actor_ids: Vec<String>,
    pub actor_names: Vec<String>,
    pub target_ids: Vec<String>,
    pub target_types: Vec<String>,
    /// Case-insensitive substring (3 characters at least).
    pub q: Option<String>,
    /// 1 to 100 (Trailmark's default is 10).
    pub limit: Option<u32>,
    pub order: Option<Order>,
    /// Only events with a greater sequence.
    pub after: Option<u64>,
    /// Only events with a smaller sequence.
    pub before: Option<u64>,
}

impl SearchQuery {
    /// A query over one organization's log, with Trailmark's defaults otherwise.
    pub fn organization(organization_id: impl Into<String>) -> Self {
        SearchQuery {
            organization_id: Some(organization_id.into()),
            ..SearchQuery::default()
        }
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        let mut one = |name: &'static str, value: Option<String>| {
            if let Some(value) = value {
                pairs.push((name, value));
            }
        };
        one("organization_id", self.organization_id.clone());
        one("range_start", self.range_start.clone());
        one("range_end", self.range_end.clone());
        for (name, values) in [
            ("actions", &self.actions),
            ("actor_ids", &self.actor_ids),
            ("actor_names", &self.actor_names),
            ("target_ids", &self.target_ids),
            ("target_types", &self.target_types),
        ] {
            // Repeated rather than comma-joined: a value may itself contain a comma.
            for value in values {
                one(name, Some(value.clone()));
            }
        }
        one("q", self.q.clone());
        one("limit", self.limit.map(|l| l.to_string()));
        one("order", self.order.map(|o| o.as_str().to_owned()));
        one("after", self.after.map(|s| s.to_string()));
        one("before", self.before.map(|s| s.to_string()));
        pairs
    }
}

/// Sequence order of a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Oldest first: the order to poll in.
    Asc,
    /// Newest first (Trailmark's default).
    Desc,
}

impl Order {
    fn as_str(self) -> &'static str {
        match self {
            Order::Asc => "asc",
            Order::Desc => "desc",
        }
    }
}

/// One page of a search, with the sequence cursors of its neighbours.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<EventObject>,
    /// With `order=desc`: pass as `before` for older events (None when none remain).
    pub before: Option<u64>,
    /// With `order=asc`: pass as `after` for the next page (None when caught up).
    pub after: Option<u64>,
}

/// Reads an organization's log in order, exactly once, from a sequence cursor.
///
/// Each [`Poller::next_batch`] asks for `order=asc&after=<cursor>`; an empty batch means caught
/// up. Keep [`Poller::cursor`] somewhere durable to resume after a restart.
#[derive(Debug, Clone)]
pub struct Poller {
    client: Client,
    organization_id: String,
    cursor: Option<u64>,
    limit: u32,
}

impl Poller {
    /// The next events after the cursor (up to 100), advancing the cursor past them.
    ///
    /// # Errors
    ///
    /// As [`Client::search`]; the cursor does not move.
    pub async fn next_batch(&mut self) -> Result<Vec<EventObject>, Error> {
        let page = self
            .client
            .search(&SearchQuery {
                organization_id: Some(self.organization_id.clone()),
                order: Some(Order::Asc),
                after: self.cursor,
                limit: Some(self.limit),
                ..SearchQuery::default()
            })
            .await?;
        if let Some(last) = page.events.last() {
            self.cursor = Some(last.sequence);
        }
        Ok(page.events)
    }

    /// The last sequence returned so far (None before the first event).
    pub fn cursor(&self) -> Option<u64> {
        self.cursor
    }
}

/// An organization, as far as this client needs one.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Organization {
    pub id: String,
    pub name: String,
}

impl Client {
    /// A client with the default retry policy and a 30 s timeout per attempt.
    ///
    /// # Errors
    ///
    /// As [`ClientBuilder::build`].
    pub fn new(base_url: impl Into<String>, api_key: impl Into<String>) -> Result<Client, Error> {
        Client::builder(base_url, api_key).build()
    }

    /// A builder, to change the retry policy, timeout or HTTP client.
    pub fn builder(base_url: impl Into<String>, api_key: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            api_key: api_key.into(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            http: None,
        }
    }

    /// Sends one event and returns when Trailmark has stored it durably.
    ///
    /// # Errors
    ///
    /// [`Error::Api`] with 400/422 (naming each bad field) if the event is invalid, 404 for an
    /// unknown organization; [`Error::Transport`] if Trailmark stayed unreachable.
    pub async fn create_event(
        &self,
        organization_id: &str,
        event: &Event,
    ) -> Result<Receipt, Error> {
        let body = json!({"organization_id": organization_id, "event": event});
        self.call(
            Method::POST,
            "audit_logs/events",
            &[],
            Some(&body),
            Repeat::WithKey,
        )
        .await
    }

    /// Sends up to [`BATCH_MAX_EVENTS`] events in one call (`POST /audit_logs/events/batch`).
    /// Each gets its own outcome, in order; valid events are stored even when others are not.
    ///
    /// # Errors
    ///
    /// As [`Client::create_event`] for the call as a whole (e.g. 422 for an empty or oversized
    /// batch); per-event refusals are [`BatchOutcome::Rejected`], not errors.
    pub async fn create_events(
        &self,
        organization_id: &str,
        events: &[Event],
    ) -> Result<Vec<BatchOutcome>, Error> {
        let body = json!({"organization_id": organization_id, "events": events});
        let list: List<BatchOutcome> = self
            .call(
                Method::POST,
                "audit_logs/events/batch",
                &[],
                Some(&body),
                Repeat::WithKey,
            )
            .await?;
        Ok(list.data)
    }

    /// Searches one organization's log (`GET /audit_logs/events`).
    ///
    /// # Errors
    ///
    /// [`Error::Api`] 422 naming a bad filter.
    pub async fn search(&self, query: &SearchQuery) -> Result<EventPage, Error> {
        let list: List<EventObject> = self
            .call(
                Method::GET,
                "audit_logs/events",
                &query.pairs(),
                None::<&()>,
                Repeat::Safe,
            )
            .await?;
        let cursor = |text: Option<String>| -> Result<Option<u64>, Error> {
            text.map(|t| {
                t.parse()
                    .map_err(|_| Error::Decode(format!("cursor {t:?} is not a sequence")))
            })
            .transpose()
        };
        Ok(EventPage {
            events: list.data,
            before: cursor(list.list_metadata.before)?,
            after: cursor(list.list_metadata.after)?,
        })
    }

    /// A poller over one organization's log, starting after `after` (None: from the start).
    pub fn poll(&self, organization_id: impl Into<String>, after: Option<u64>) -> Poller {
        Poller {
            client: self.clone(),
            organization_id: organization_id.into(),
            cursor: after,
            limit: 100,
        }
    }

    /// One event by id (`GET /audit_logs/events/{id}`).
    ///
    /// # Errors
    ///
    /// [`Error::Api`] 404 if there is no such event for this key.
    pub async fn get_event(&self, id: &str) -> Result<EventObject, Error> {
        self.call(
            Method::GET,
            &format!("audit_logs/events/{}", segment(id)),
            &[],
            None::<&()>,
            Repeat::Safe,
        )
        .await
    }

    /// Creates a schema version for `action` (WorkOS's body: `targets`, `actor`, `metadata`
    /// JSON Schemas). Posting a body equal to the latest version returns it.
    ///
    /// # Errors
    ///
    /// [`Error::Api`] 422 naming the bad part of the schema.
    pub async fn create_schema(&self, action: &str, schema: &Value) -> Result<Schema, Error> {
        self.call(
            Method::POST,
            &format!("audit_logs/actions/{}/schemas", segment(action)),
            &[],
            Some(schema),
            Repeat::Safe,
        )
        .await
    }

    /// The schema versions of `action`, newest first.
    ///
    /// # Errors
    ///
    /// [`Error::Api`] for a bad key.
    pub async fn list_schemas(&self, action: &str) -> Result<Vec<Schema>, Error> {
        let list: List<Schema> = self
            .call(
                Method::GET,
                &format!("audit_logs/actions/{}/schemas", segment(action)),
                &[("limit", "100".into())],
                None::<&()>,
                Repeat::Safe,
            )
            .await?;
        Ok(list.data)
    }

    /// Actions with their latest schema (first 100).
    ///
    /// # Errors
    ///
    /// [`Error::Api`] for a bad key.
    pub async fn list_actions(&self) -> Result<Vec<Action>, Error> {
        let list: List<Action> = self
            .call(
                Method::GET,
                "audit_logs/actions",
                &[("limit", "100".into())],
                None::<&()>,
                Repeat::Safe,
            )
            .await?;
        Ok(list.data)
    }

    /// Creates an organization (admin keys).
    ///
    /// # Errors
    ///
    /// [`Error::Api`] 422 naming a bad field.
    pub async fn create_organization(&self, name: &str) -> Result<Organization, Error> {
        self.call(
            Method::POST,
            "organizations",
            &[],
            Some(&json!({"name": name})),
            Repeat::OnlyIfRefused,
        )
        .await
    }

    /// Starts an export; poll [`Client::get_export`] until `state` is `ready`.
    ///
    /// # Errors
    ///
    /// [`Error::Api`] 422 naming a bad field.
    pub async fn create_export(&self, request: &ExportRequest) -> Result<Export, Error> {
        self.call(
            Method::POST,
            "audit_logs/exports",
            &[],
            Some(request),
            Repeat::OnlyIfRefused,
        )
        .await
    }

    /// An export's state, with a fresh signed `url` once ready.
    ///
    /// # Errors
    ///
    /// [`Error::Api`] 404 for an unknown export.
    pub async fn get_export(&self, id: &str) -> Result<Export, Error> {
        self.call(
            Method::GET,
            &format!("audit_logs/exports/{}", segment(id)),
            &[],
            None::<&()>,
            Repeat::Safe,
        )
        .await
    }

    /// Downloads a ready export's file through its signed link (no API key is sent).
    ///
    /// # Errors
    ///
    /// As [`Client::download_export_to`].
    pub async fn download_export(&self, export: &Export) -> Result<Vec<u8>, Error> {
        let mut file = Vec::new();
        self.download_export_to(export, &mut file).await?;
        Ok(file)
    }

    /// Writes a ready export's file to `out` as it arrives (flat memory whatever its size),
    /// through its signed link. The link's signature is sent to this client's base URL, not to
    /// the server's public URL the link names, so a client that reaches Trailmark by another
    /// address (an internal one, a proxy) downloads from the same server it talks to.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if the export has no `url` yet; [`Error::Api`] 403 for an expired link;
    /// [`Error::Write`] if `out` refuses the bytes.
    pub async fn download_export_to(
        &self,
        export: &Export,
        out: &mut impl std::io::Write,
    ) -> Result<(), Error> {
        let link = export
            .url
            .as_deref()
            .ok_or_else(|| Error::Decode(format!("export {} has no url yet", export.id)))?;
        let link = Url::parse(link).map_err(|e| Error::Decode(format!("export url: {e}")))?;
        let mut url = self.url(
            &format!("audit_logs/exports/{}/download", segment(&export.id)),
            &[],
        )?;
        url.set_query(link.query());
        let mut response = self
            .send(Method::GET, url, None, Repeat::Safe, false)
            .await?;
        while let Some(chunk) = response.chunk().await.map_err(|source| Error::Transport {
            source,
            attempts: 1,
        })? {
            out.write_all(&chunk).map_err(Error::Write)?;
        }
        out.flush().map_err(Error::Write)
    }

    /// Creates a log stream.
    ///
    /// # Errors
    ///
    /// [`Error::Api`] 422 naming a bad setting (a private address, a missing credential).
    pub async fn create_stream(&self, stream: &NewLogStream) -> Result<LogStream, Error> {
        self.call(
            Method::POST,
            "audit_logs/streams",
            &[],
            Some(stream),
            Repeat::OnlyIfRefused,
        )
        .await
    }

    /// An organization's log streams and their health.
    ///
    /// # Errors
    ///
    /// [`Error::Api`] for a bad key or organization.
    pub async fn list_streams(&self, organization_id: &str) -> Result<Vec<LogStream>, Error> {
        let list: List<LogStream> = self
            .call(
                Method::GET,
                "audit_logs/streams",
                &[("organization_id", organization_id.to_owned())],
                None::<&()>,
                Repeat::Safe,
            )
            .await?;
        Ok(list.data)
    }

    /// One log stream and its health.
    ///
    /// # Errors
    ///
    /// [`Error::Api`] 404 for an unknown stream.
    pub async fn get_stream(&self, id: &str) -> Result<LogStream, Error> {
        self.call(
            Method::GET,
            &stream_path(id, ""),
            &[],
            None::<&()>,
            Repeat::Safe,
        )
        .await
    }

    /// Changes a stream's name, enabled flag or settings.
    ///
    /// # Errors
    ///
    /// [`Error::Api`] 422 naming a bad setting, 404 for an unknown stream.
    pub async fn update_stream(
        &self,
        id: &str,
        update: &LogStreamUpdate,
    ) -> Result<LogStream, Error> {
        self.call(
            Method::PATCH,
            &stream_path(id, ""),
            &[],
            Some(update),
            Repeat::Safe,
        )
        .await
    }

    /// Deletes a stream.
    ///
    /// # Errors
    ///
    /// [`Error::Api`] 404 for an unknown stream.
    pub async fn delete_stream(&self, id: &str) -> Result<(), Error> {
        let url = self.url(&stream_path(id, ""), &[])?;
        self.send(Method::DELETE, url, None, Repeat::Safe, true)
            .await?;
        Ok(())
    }

    /// Delivers again from a sequence or a time.
    ///
    /// # Errors
    ///
    /// [`Error::Api`] 422 for a bad starting point.
    pub async fn replay_stream(&self, id: &str, from: &ReplayFrom) -> Result<LogStream, Error> {
        let body = match from {
            ReplayFrom::Sequence(sequence) => json!({"from_sequence": sequence}),
            ReplayFrom::Time(time) => json!({"from_time": time}),
        };
        self.call(
            Method::POST,
            &stream_path(id, "/replay"),
            &[],
            Some(&body),
            Repeat::OnlyIfRefused,
        )
        .await
    }

    /// Sends one test event to the stream's destination and reports what it said.
    ///
    /// # Errors
    ///
    /// [`Error::Api`] 404 for an unknown stream.
    pub async fn test_stream(&self, id: &str) -> Result<StreamTest, Error> {
        self.call(
            Method::POST,
            &stream_path(id, "/test"),
            &[],
            None::<&()>,
            Repeat::OnlyIfRefused,
        )
        .await
    }

    /// This instance's checkpoint verifier key. Fetch it once and keep it: verifying against a
    /// key fetched at verification time proves less.
    ///
    /// # Errors
    ///
    /// [`Error::Transport`] if Trailmark is unreachable.
    pub async fn ledger_public_key(&self) -> Result<LedgerPublicKey, Error> {
        self.call(
            Method::GET,
            "audit_logs/ledger/public_key",
            &[],
            None::<&()>,
            Repeat::Safe,
        )
        .await
    }

    /// The latest signed checkpoint of an organization's log.
    ///
    /// # Errors
    ///
    /// [`Error::Api`] 404 for an unknown organization.
    pub async fn checkpoint(&self, organization_id: &str) -> Result<SignedCheckpoint, Error> {
        self.call(
            Method::GET,
            "audit_logs/ledger/checkpoint",
            &[("organization_id", organization_id.to_owned())],
            None::<&()>,
            Repeat::Safe,
        )
        .await
    }

    /// The inclusion proof of an event in the tree of `tree_size` events, or (None) in the
    /// latest checkpoint's tree, whose signed note the answer then carries.
    ///
    /// # Errors
    ///
    /// [`Error::Api`] 404 for an unknown event, 422 for a tree that does not hold it.
    pub async fn inclusion_proof(
        &self,
        organization_id: &str,
        event_id: &str,
        tree_size: Option<u64>,
    ) -> Result<InclusionProof, Error> {
        let mut query = vec![
            ("organization_id", organization_id.to_owned()),
            ("event_id", event_id.to_owned()),
        ];
        if let Some(size) = tree_size {
            query.push(("tree_size", size.to_string()));
        }
        self.call(
            Method::GET,
            "audit_logs/ledger/inclusion",
            &query,
            None::<&()>,
            Repeat::Safe,
        )
        .await
    }

    /// The consistency proof between the trees of `first` and `second` events.
    ///
    /// # Errors
    ///
    /// [`Error::Api`] 422 for sizes outside the log.
    pub async fn consistency_proof(
        &self,
        organization_id: &str,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyProof, Error> {
        self.call(
            Method::GET,
            "audit_logs/ledger/consistency",
            &[
                ("organization_id", organization_id.to_owned()),
                ("first", first.to_string()),
                ("second", second.to_string()),
            ],
            None::<&()>,
            Repeat::Safe,
        )
        .await
    }

    fn url(&self, path: &str, query: &[(&'static str, String)]) -> Result<Url, Error> {
        let mut url = self.inner.base.join(path).map_err(|e| Error::BaseUrl {
            url: self.inner.base.to_string(),
            reason: e.to_string(),
        })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&'static str, String)],
        body: Option<&(impl Serialize + ?Sized)>,
        repeat: Repeat,
    ) -> Result<T, Error> {
        let url = self.url(path, query)?;
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Error::Decode(format!("cannot encode the request: {e}")))?;
        let response = self.send(method, url, body, repeat, true).await?;
        let bytes = response.bytes().await.map_err(|source| Error::Transport {
            source,
            attempts: 1,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::Decode(format!(
                "{e}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))
        })
    }

    /// Sends until a 2xx, a non-retryable answer, or the attempts run out.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        repeat: Repeat,
        authorize: bool,
    ) -> Result<Response, Error> {
        let retry = &self.inner.retry;
        let idempotency_key = match repeat {
            Repeat::WithKey => Some(new_idempotency_key()?),
            Repeat::Safe | Repeat::OnlyIfRefused => None,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.inner.http.request(method.clone(), url.clone());
            if authorize {
                request = request.bearer_auth(&self.inner.api_key);
            }
            if let Some(key) = &idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            if let Some(body) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let (retryable, wait_at_least, failure) = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status();
                    let retryable = match repeat {
                        Repeat::Safe | Repeat::WithKey => retryable_status(status),
                        Repeat::OnlyIfRefused => status == reqwest::StatusCode::TOO_MANY_REQUESTS,
                    };
                    let asked = retry_after(response.headers());
                    (retryable, asked, api_error(response, attempt).await)
                }
                Err(source) => {
                    let retryable = match repeat {
                        Repeat::Safe | Repeat::WithKey => true,
                        Repeat::OnlyIfRefused => source.is_connect(),
                    };
                    (
                        retryable,
                        None,
                        Error::Transport {
                            source,
                            attempts: attempt,
                        },
                    )
                }
            };
            if !retryable || attempt >= retry.max_attempts {
                return Err(failure);
            }
            let delay = retry.delay(attempt, wait_at_least, random_u64()?);
            tracing::debug!(%url, attempt, ?delay, error = %failure, "retrying a Trailmark call");
            tokio::time::sleep(delay).await;
        }
    }
}

async fn api_error(response: Response, attempts: u32) -> Error {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| text.clone(), str::to_owned);
    Error::Api {
        status,
        message,
        body,
        attempts,
    }
}

/// `trailmark-client-` and 128 random bits: unique per logical call, within WorkOS's 255 limit.
fn new_idempotency_key() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(format!("trailmark-client-{}", hex::encode(bytes)))
}

fn random_u64() -> Result<u64, Error> {
    getrandom::u64().map_err(|e| Error::Random(e.to_string()))
}

/// A value as one URL path segment (ids and actions never need more than this).
fn segment(value: &str) -> String {
    let mut url = Url::parse("http://x/").expect("a constant URL parses");
    url.path_segments_mut()
        .expect("an http URL has path segments")
        .push(value);
    url.path().trim_start_matches('/').to_owned()
}

fn stream_path(id: &str, suffix: &str) -> String {
    format!("audit_logs/streams/{}{suffix}", segment(id))
}
