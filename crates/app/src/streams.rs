//! Log streams: creating, changing, replaying, deleting and testing them. Delivery itself is
//! `trailmark_streams::worker`; every change here tells the workers at once, so a waiting batch
//! sees new settings immediately.

use serde_json::{Value, json};
use trailmark_domain::id::IdKind;
use trailmark_domain::query::EventFilter;
use trailmark_domain::{FieldProblem, Problems, Timestamp};
use trailmark_store::{Order, SearchRequest, StreamRecord, rules};
use trailmark_streams::Outcome;
use trailmark_streams::egress;
use trailmark_streams::net::DestinationError;
use trailmark_streams::settings::{Settings, StreamKind, new_signing_secret};

use crate::audit::{Change, Origin};
use crate::{AppError, NotFoundKind, Trailmark};

/// A stream to create.
#[derive(Debug, Clone)]
pub struct NewStream {
    /// The organization whose log it delivers; `None`: an operator-wide stream, which delivers
    /// every organization's log, each in its own order (only unrestricted admin keys make one).
    pub organization_id: Option<String>,
    pub kind: StreamKind,
    pub name: String,
    pub enabled: bool,
    /// The destination's settings as the API takes them (`config`), validated here.
    pub config: Value,
    pub start: StreamStart,
}

/// Where a new stream starts delivering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    /// After the last event already in the log.
    Now,
    /// From the first event.
    Beginning,
}

/// A change to a stream: fields given replace the stored ones; credentials a `config` patch
/// does not name are kept.
#[derive(Debug, Clone, Default)]
pub struct StreamChanges {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub config: Option<Value>,
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    Sequence(u64),
    /// The first event, in log order, that occurred at or after this time.
    Time(Timestamp),
}

/// How far behind its log a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLag {
    /// Events not yet delivered.
    pub events: u64,
    /// Age in seconds of the oldest of them.
    pub seconds: i64,
}

impl Trailmark {
    /// Validates a new stream's settings and destination, stores it and starts delivering.
    ///
    /// # Errors
    ///
    /// Problems naming `config.*` fields, [`AppError::OrganizationNotFound`], storage errors.
    pub async fn create_stream(
        &self,
        new: NewStream,
        origin: &Origin,
    ) -> Result<StreamRecord, AppError> {
        let settings = Settings::parse(new.kind, &new.config, || {
            new_signing_secret().unwrap_or_default()
        })
        .map_err(Problems::Malformed)?;
        self.check_destination(&settings).await?;
        if let Some(organization_id) = &new.organization_id {
            self.live_organization(organization_id).await?;
        }
        let id = IdKind::LogStream.generate().into_string();
        let now = Timestamp::now();
        let mut stream = StreamRecord {
            secrets: self.seal(&id, &settings)?,
            id,
            organization_id: new.organization_id,
            kind: new.kind.as_str().to_owned(),
            name: new.name,
            config: Value::Object(settings.public),
            enabled: new.enabled,
            state: rules::initial_stream_state(new.enabled),
            cursor: None,
            last_synced_at: None,
            last_error: None,
            created_at: now,
            updated_at: now,
        };
        let Some(organization_id) = stream.organization_id.clone() else {
            // An operator-wide stream from `now` starts after each log's last event; a log
            // that begins later is delivered from its first. Placed before the stream exists,
            // so its first attempt already finds them.
            if new.start == StreamStart::Now {
                for (organization_id, size) in self.store().log_sizes().await? {
                    if let Some(last) = size.checked_sub(1) {
                        self.store()
                            .set_organization_cursor(&stream.id, &organization_id, Some(last))
                            .await?;
                    }
                }
            }
            self.store().insert_stream(stream.clone()).await?;
            self.inner.streams.start_new_streams().await;
            return Ok(stream);
        };
        // Recorded before the cursor is placed: a stream from `now` starts after the record of
        // its own creation, one from the `beginning` delivers it with the rest of the log.
        self.audit(&organization_id, origin, Change::StreamCreated(&stream))
            .await?;
        stream.cursor = match new.start {
            StreamStart::Now => self
                .store()
                .log_size(&organization_id)
                .await?
                .checked_sub(1),
            StreamStart::Beginning => None,
        };
        self.store().insert_stream(stream.clone()).await?;
        self.inner.streams.start_new_streams().await;
        Ok(stream)
    }

    /// Records a change to `stream` in its organization's log; an operator-wide stream belongs
    /// to no log, and its changes are recorded in none.
    async fn audit_stream(
        &self,
        stream: &StreamRecord,
        origin: &Origin,
        change: Change<'_>,
    ) -> Result<(), AppError> {
        match &stream.organization_id {
            Some(organization_id) => self.audit(organization_id, origin, change).await,
            None => Ok(()),
        }
    }

    /// The stream `id`, if it belongs to `organization` (any organization when `None`):
    /// another organization's stream is reported as not found, so its existence does not leak.
    ///
    /// # Errors
    ///
    /// [`AppError::NotFound`], or storage errors.
    pub async fn stream(
        &self,
        id: &str,
        organization: Option<&str>,
    ) -> Result<StreamRecord, AppError> {
        self.store()
            .get_stream(id)
            .await?
            .filter(|stream| {
                organization.is_none_or(|own| stream.organization_id.as_deref() == Some(own))
            })
            .ok_or_else(|| AppError::not_found(NotFoundKind::LogStream, id))
    }

    /// The streams of one organization, oldest first.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn streams(&self, organization_id: &str) -> Result<Vec<StreamRecord>, AppError> {
        Ok(self.store().list_streams(Some(organization_id)).await?)
    }

    /// The operator-wide streams, oldest first.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn operator_streams(&self) -> Result<Vec<StreamRecord>, AppError> {
        let mut streams = self.store().list_streams(None).await?;
        streams.retain(|stream| stream.organization_id.is_none());
        Ok(streams)
    }

    /// Applies `changes` to `stream` and stores it.
    ///
    /// # Errors
    ///
    /// Problems naming `config.*` fields, storage errors.
    pub async fn update_stream(
        &self,
        mut stream: StreamRecord,
        changes: StreamChanges,
        origin: &Origin,
    ) -> Result<StreamRecord, AppError> {
        let mut settings_changed = false;
        if let Some(patch) = changes.config.filter(|c| !c.is_null()) {
            let current = self
                .inner
                .streams
                .open_settings(&stream)
                .map_err(AppError::Internal)?;
            let settings = Settings::merge(
                current.kind,
                &current.public,
                &current.secrets,
                &patch,
                || new_signing_secret().unwrap_or_default(),
            )
            .map_err(Problems::Malformed)?;
            self.check_destination(&settings).await?;
            stream.secrets = self.seal(&stream.id, &settings)?;
            stream.config = Value::Object(settings.public);
            // New settings deserve a fresh verdict from the destination.
            stream.last_error = None;
            settings_changed = true;
        }
        if let Some(name) = changes.name {
            stream.name = name;
        }
        if let Some(enabled) = changes.enabled {
            stream.enabled = enabled;
        }
        stream.state =
            rules::stream_state_after_change(stream.state, changes.enabled, settings_changed);
        stream.updated_at = Timestamp::now();
        self.store().update_stream(stream.clone()).await?;
        // Recorded before the worker hears of the change, so the record is in the log it reads
        // next: with new settings, what waited and the record go out together.
        self.audit_stream(&stream, origin, Change::StreamUpdated(&stream))
            .await?;
        self.inner.effects.stream_changed();
        Ok(stream)
    }

    /// Deletes a stream; its worker stops.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn delete_stream(
        &self,
        stream: &StreamRecord,
        origin: &Origin,
    ) -> Result<(), AppError> {
        self.store().delete_stream(&stream.id).await?;
        self.inner.effects.stream_changed();
        self.audit_stream(stream, origin, Change::StreamDeleted(stream))
            .await
    }

    /// Moves `stream`'s cursor back so delivery starts again at `from`; returns the first
    /// sequence that will be delivered again.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn replay_stream(
        &self,
        stream: &StreamRecord,
        from: ReplayFrom,
        origin: &Origin,
    ) -> Result<u64, AppError> {
        let Some(organization_id) = stream.organization_id.as_deref() else {
            return self.replay_operator_stream(stream, from).await;
        };
        let from = match from {
            ReplayFrom::Sequence(sequence) => {
                // The cursor moves to just before `sequence`: past the log's end it would
                // silently skip the events still to come, so it must name an event of the log,
                // or its end (replay nothing, deliver what comes next).
                let size = self.store().log_size(organization_id).await?;
                if sequence > size {
                    return Err(AppError::field(
                        "invalid_value",
                        "from_sequence",
                        format!(
                            "from_sequence must be an integer from 0 to {size} (the log holds {size} events)"
                        ),
                    ));
                }
                sequence
            }
            ReplayFrom::Time(start) => self.first_at_or_after(organization_id, start).await?,
        };
        self.store()
            .set_stream_cursor(&stream.id, from.checked_sub(1), Timestamp::now())
            .await?;
        // Recorded before the worker hears of the replay, so the replay ends with its record.
        self.audit(
            organization_id,
            origin,
            Change::StreamReplayed {
                stream,
                from_sequence: from,
            },
        )
        .await?;
        self.inner.effects.stream_changed();
        Ok(from)
    }

    /// The sequence of the first event of `organization_id`'s log, in log order, that occurred
    /// at or after `start` (the log's size if none did).
    async fn first_at_or_after(
        &self,
        organization_id: &str,
        start: Timestamp,
    ) -> Result<u64, AppError> {
        let first = SearchRequest {
            filter: EventFilter {
                range_start: Some(start),
                ..EventFilter::default()
            },
            after: None,
            before: None,
            order: Order::Asc,
            limit: 1,
        };
        let page = self.store().search_events(organization_id, first).await?;
        Ok(match page.events.first() {
            Some(event) => event.sequence,
            None => self.store().log_size(organization_id).await?,
        })
    }

    /// Replays an operator-wide stream from a time: every organization's log from its first
    /// event at or after it. A sequence names a place in one log only, so it is refused.
    async fn replay_operator_stream(
        &self,
        stream: &StreamRecord,
        from: ReplayFrom,
    ) -> Result<u64, AppError> {
        let ReplayFrom::Time(start) = from else {
            return Err(AppError::field(
                "invalid_value",
                "from_sequence",
                "an operator-wide stream delivers every organization's log, whose sequences differ: replay it from_time",
            ));
        };
        for (organization_id, _) in self.store().log_sizes().await? {
            let from = self.first_at_or_after(&organization_id, start).await?;
            self.store()
                .set_organization_cursor(&stream.id, &organization_id, from.checked_sub(1))
                .await?;
        }
        self.inner.effects.stream_changed();
        Ok(0)
    }

    /// Sends one made-up event (`trailmark.stream.test`, by `actor`) to `stream`'s destination,
    /// outside its cursor, and returns what the destination answered.
    pub async fn test_stream(&self, stream: &StreamRecord, actor: Value) -> Outcome {
        let now = Timestamp::now().to_string();
        let event = json!({
            "object": "audit_log_event",
            "id": IdKind::Event.generate().into_string(),
            "organization_id": stream.organization_id,
            "sequence": null,
            "action": "trailmark.stream.test",
            "occurred_at": now,
            "received_at": now,
            "version": null,
            "actor": actor,
            "targets": [{"id": stream.id, "type": "log_stream"}],
            "context": {"location": "trailmark"},
            "metadata": {"test": true},
        });
        self.inner.streams.send(stream, &[event]).await
    }

    /// How far behind its log `stream` is.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn stream_lag(&self, stream: &StreamRecord) -> Result<StreamLag, AppError> {
        let cursors: Vec<(String, Option<u64>)> = match &stream.organization_id {
            Some(organization_id) => vec![(organization_id.clone(), stream.cursor)],
            None => {
                let placed: std::collections::HashMap<String, u64> = self
                    .store()
                    .organization_cursors(&stream.id)
                    .await?
                    .into_iter()
                    .collect();
                self.store()
                    .log_sizes()
                    .await?
                    .into_iter()
                    .map(|(organization_id, _)| {
                        let cursor = placed.get(&organization_id).copied();
                        (organization_id, cursor)
                    })
                    .collect()
            }
        };
        let mut lag = StreamLag {
            events: 0,
            seconds: 0,
        };
        for (organization_id, cursor) in cursors {
            let size = self.store().log_size(&organization_id).await?;
            let delivered = cursor.map_or(0, |c| c + 1);
            if size <= delivered {
                continue;
            }
            let oldest_waiting = self
                .store()
                .events_after(&organization_id, cursor, 1)
                .await?;
            let seconds = oldest_waiting.first().map_or(0, |event| {
                (Timestamp::now().unix_millis() - event.received_at.unix_millis()).max(0) / 1000
            });
            lag.events += size - delivered;
            lag.seconds = lag.seconds.max(seconds);
        }
        Ok(lag)
    }

    /// Every stream of every organization, for the metrics endpoint.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn all_streams(&self) -> Result<Vec<StreamRecord>, AppError> {
        Ok(self.store().list_streams(None).await?)
    }

    /// The credential Trailmark generated for a stream (an `http` stream's signing secret) in
    /// clear, to show once in the answer that made it.
    pub fn stream_generated_secret(&self, stream: &StreamRecord) -> Option<String> {
        let settings = self.inner.streams.open_settings(stream).ok()?;
        settings.generated_secret().map(str::to_owned)
    }

    /// Gives an `http` stream a new signing secret, the old one signing beside it until
    /// `grace_until`; returns the stored stream and the new secret.
    ///
    /// # Errors
    ///
    /// A problem naming `type` for a stream that is not `http`, storage errors.
    pub async fn rotate_stream_secret(
        &self,
        mut stream: StreamRecord,
        grace_until: Timestamp,
        origin: &Origin,
    ) -> Result<(StreamRecord, String), AppError> {
        let mut settings = self
            .inner
            .streams
            .open_settings(&stream)
            .map_err(AppError::Internal)?;
        let secret = new_signing_secret().map_err(|e| AppError::Internal(e.to_string()))?;
        settings
            .rotate_signing_secret(secret.clone(), grace_until)
            .map_err(|problem| Problems::Malformed(vec![problem]))?;
        stream.secrets = self.seal(&stream.id, &settings)?;
        stream.updated_at = Timestamp::now();
        self.store().update_stream(stream.clone()).await?;
        self.inner.effects.stream_changed();
        self.audit_stream(&stream, origin, Change::StreamSecretRotated(&stream))
            .await?;
        Ok((stream, secret))
    }

    /// A stream's settings as shown: credentials masked, batching in effect (the stored public
    /// part if the credentials cannot be opened).
    pub fn shown_stream_config(&self, stream: &StreamRecord) -> Value {
        self.inner
            .streams
            .open_settings(stream)
            .map(|settings| settings.masked())
            .unwrap_or_else(|_| stream.config.clone())
    }

    /// Refuses a destination that is not allowed (a private address without
    /// `--allow-private-destinations`), naming the setting it came from; a stream's own egress
    /// proxy is such a target too, and is refused outright under `--egress-proxy-required`.
    async fn check_destination(&self, settings: &Settings) -> Result<(), AppError> {
        let sink = settings.sink().map_err(Problems::Malformed)?;
        egress::check_allowed(&settings.public, self.inner.streams.egress())
            .map_err(|problem| Problems::Malformed(vec![problem]))?;
        // The stream's own proxy first: it is the first hop of every request.
        for target in egress::targets(&settings.public)
            .into_iter()
            .chain(sink.targets())
        {
            trailmark_streams::net::check_destination(
                &target.url,
                self.inner.streams.allow_private(),
            )
            .await
            .map_err(|error| {
                // A name that does not resolve may be a typo or a DNS outage, not an attempt
                // to reach inside: it gets its own code, so a client can tell the two apart.
                let code = match error {
                    DestinationError::Unresolvable { .. } => "unresolvable_destination",
                    DestinationError::BadUrl => "invalid_url",
                    DestinationError::Private { .. } => "forbidden_destination",
                };
                Problems::Malformed(vec![FieldProblem {
                    code,
                    field: target.field.into(),
                    message: error.to_string(),
                }])
            })?;
        }
        Ok(())
    }

    fn seal(&self, id: &str, settings: &Settings) -> Result<Vec<u8>, AppError> {
        self.inner
            .streams
            .sealer()
            .seal(id, &settings.secrets.to_bytes())
            .map_err(|e| AppError::Internal(e.to_string()))
    }
}
