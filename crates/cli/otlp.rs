//! OpenTelemetry traces over OTLP/HTTP (`--otlp-endpoint`, cargo feature `otlp`): Trailmark's
//! own `tracing` spans, exported as OTLP protobuf to `<endpoint>/v1/traces`.
//!
//! Spans exported (targets `trailmark…`, level info and above):
//! - `request` (middleware), as a SERVER span named `<METHOD> <route>` with
//!   `http.request.method`, `http.route`, `http.response.status_code` and
//!   `trailmark.request_id`; status ERROR for a 5xx;
//! - `store.commit` (ingest), a child of its request: the append and its group commit;
//! - `stream.delivery` (each request to a stream destination), a CLIENT span: a child of the
//!   request that sent it (`POST /audit_logs/streams/{id}/test`), or a root span of its own
//!   when the stream's background task sends it.
//!
//! The encoding is written here from OTLP's `trace.proto` (field numbers below), so the only
//! dependencies are the HTTP client and random source already built. Spans wait in a bounded
//! queue and leave in batches; when the collector is slow or away, spans beyond the queue are
//! dropped and counted in a warning, never blocking a request.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Spans that may wait for the exporter; more are dropped (and counted).
const QUEUE: usize = 4096;
/// Spans in one export request at most.
const BATCH: usize = 512;
/// How long a span waits for its batch to fill.
const LINGER: Duration = Duration::from_millis(500);

/// A value of a span attribute.
#[derive(Debug, Clone)]
enum Value {
    Text(String),
    Bool(bool),
    Int(i64),
    Double(f64),
}

/// What the layer keeps in a span's extensions while it is open.
struct OpenSpan {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
    start: u64,
    attributes: Vec<(String, Value)>,
}

/// A closed span, ready to encode.
struct FinishedSpan {
    name: String,
    kind: u64,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
    start: u64,
    end: u64,
    attributes: Vec<(String, Value)>,
    error: Option<String>,
}

enum Message {
    Span(FinishedSpan),
    Flush(oneshot::Sender<()>),
}

/// The `tracing` layer that records spans and hands them to the exporter.
pub struct OtlpLayer {
    spans: mpsc::Sender<Message>,
    dropped: std::sync::atomic::AtomicU64,
}

/// Sends what is queued before the process ends.
pub struct Flusher {
    messages: mpsc::Sender<Message>,
}

impl Flusher {
    /// Waits (at most `limit`) until every span closed so far has been sent.
    pub async fn flush(&self, limit: Duration) {
        let (done, sent) = oneshot::channel();
        if self.messages.send(Message::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(limit, sent).await;
        }
    }
}

/// The layer and its flusher, exporting to `endpoint` (a base URL; `/v1/traces` is added
/// unless it is there). Must be called inside the Tokio runtime.
///
/// # Errors
///
/// An endpoint that is no `http(s)://` URL, or an HTTP client that cannot be built.
pub fn layer(endpoint: &str) -> anyhow::Result<(OtlpLayer, Flusher)> {
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        anyhow::bail!("--otlp-endpoint must be an http:// or https:// URL, got {endpoint:?}");
    }
    let url = if endpoint.trim_end_matches('/').ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let (spans, queue) = mpsc::channel(QUEUE);
    tokio::spawn(export(client, url, queue));
    Ok((
        OtlpLayer {
            spans: spans.clone(),
            dropped: std::sync::atomic::AtomicU64::new(0),
        },
        Flusher { messages: spans },
    ))
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let Some(span) = context.span(id) else {
            return;
        };
        let parent = span.parent().and_then(|parent| {
            parent
                .extensions()
                .get::<OpenSpan>()
                .map(|open| (open.trace_id, open.span_id))
        });
        let mut open = OpenSpan {
            trace_id: parent.map_or_else(random, |(trace, _)| trace),
            span_id: random(),
            parent_span_id: parent.map(|(_, span)| span),
            start: now_nanos(),
            attributes: Vec::new(),
        };
        attributes.record(&mut FieldsInto(&mut open.attributes));
        span.extensions_mut().insert(open);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        if let Some(span) = context.span(id)
            && let Some(open) = span.extensions_mut().get_mut::<OpenSpan>()
        {
            values.record(&mut FieldsInto(&mut open.attributes));
        }
    }

    fn on_close(&self, id: Id, context: Context<'_, S>) {
        let Some(span) = context.span(&id) else {
            return;
        };
        let Some(open) = span.extensions_mut().remove::<OpenSpan>() else {
            return;
        };
        let finished = finish(span.name(), open);
        if self.spans.try_send(Message::Span(finished)).is_err() {
            let dropped = self
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if dropped.is_multiple_of(1000) {
                tracing::warn!(
                    dropped = dropped + 1,
                    "the OTLP exporter is behind; spans were dropped"
                );
            }
        }
    }
}

/// Names, kinds and OpenTelemetry attribute names for a closed span.
fn finish(name: &str, open: OpenSpan) -> FinishedSpan {
    let mut attributes: HashMap<String, Value> = HashMap::new();
    for (key, value) in open.attributes {
        attributes.insert(key, value);
    }
    let text = |attributes: &HashMap<String, Value>, key: &str| match attributes.get(key) {
        Some(Value::Text(text)) => text.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    let mut error = None;
    let (name, kind) = match name {
        "request" => {
            let method = text(&attributes, "method");
            let route = text(&attributes, "route");
            for (from, to) in [
                ("method", "http.request.method"),
                ("route", "http.route"),
                ("status", "http.response.status_code"),
                ("request_id", "trailmark.request_id"),
            ] {
                if let Some(value) = attributes.remove(from) {
                    attributes.insert(to.to_owned(), value);
                }
            }
            if let Some(Value::Int(status)) = attributes.get("http.response.status_code")
                && *status >= 500
            {
                error = Some(format!("answered {status}"));
            }
            (format!("{method} {route}"), SPAN_KIND_SERVER)
        }
        "stream.delivery" => {
            if let Some(Value::Text(outcome)) = attributes.get("outcome")
                && outcome != "delivered"
            {
                error = Some(format!("delivery {outcome}"));
            }
            (name.to_owned(), SPAN_KIND_CLIENT)
        }
        other => (other.to_owned(), SPAN_KIND_INTERNAL),
    };
    let mut attributes: Vec<(String, Value)> = attributes.into_iter().collect();
    attributes.sort_by(|a, b| a.0.cmp(&b.0));
    FinishedSpan {
        name,
        kind,
        trace_id: open.trace_id,
        span_id: open.span_id,
        parent_span_id: open.parent_span_id,
        start: open.start,
        end: now_nanos(),
        attributes,
        error,
    }
}

/// Collects a span's fields as attributes.
struct FieldsInto<'a>(&'a mut Vec<(String, Value)>);

impl Visit for FieldsInto<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.push((field.name().into(), Value::Double(value)));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push((field.name().into(), Value::Int(value)));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((
            field.name().into(),
            Value::Int(i64::try_from(value).unwrap_or(i64::MAX)),
        ));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push((field.name().into(), Value::Bool(value)));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .push((field.name().into(), Value::Text(value.into())));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .push((field.name().into(), Value::Text(format!("{value:?}"))));
    }
}

/// What the exporter does next.
enum Next {
    Message(Message),
    /// The open batch waited long enough: send it.
    LingerOver,
    /// Every sender is gone.
    Closed,
}

async fn export(client: reqwest::Client, url: String, mut queue: mpsc::Receiver<Message>) {
    let mut batch: Vec<FinishedSpan> = Vec::with_capacity(BATCH);
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    let mut failures = 0u64;
    loop {
        // An open batch waits at most LINGER for more spans; an empty one waits for the first.
        let next = if batch.is_empty() {
            queue.recv().await.map_or(Next::Closed, Next::Message)
        } else {
            match tokio::time::timeout(LINGER, queue.recv()).await {
                Ok(Some(message)) => Next::Message(message),
                Ok(None) => Next::Closed,
                Err(_) => Next::LingerOver,
            }
        };
        match next {
            Next::Closed => return,
            Next::Message(Message::Span(span)) => {
                batch.push(span);
                if batch.len() < BATCH {
                    continue;
                }
            }
            Next::Message(Message::Flush(done)) => flushes.push(done),
            Next::LingerOver => {}
        }
        if !batch.is_empty() {
            let body = encode_request(&batch);
            batch.clear();
            let outcome = match client
                .post(&url)
                .header("Content-Type", "application/x-protobuf")
                .body(body)
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(format!("the collector answered {}", response.status())),
                Err(error) => Err(error.to_string()),
            };
            match outcome {
                Ok(()) => failures = 0,
                Err(reason) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(100) {
                        tracing::warn!(%reason, url = %url, failures, "cannot send spans to the OTLP collector");
                    }
                }
            }
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // An all-zero id is invalid in OTLP; the OS random source failing is as unlikely.
    if getrandom::fill(&mut bytes).is_err() || bytes.iter().all(|&b| b == 0) {
        bytes[N - 1] = 1;
    }
    bytes
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

// OTLP's protobuf messages (opentelemetry/proto/collector/trace/v1/trace_service.proto,
// trace/v1/trace.proto, common/v1/common.proto, resource/v1/resource.proto): field numbers.
const SPAN_KIND_INTERNAL: u64 = 1;
const SPAN_KIND_SERVER: u64 = 2;
const SPAN_KIND_CLIENT: u64 = 3;
const STATUS_CODE_ERROR: u64 = 2;

/// `ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }`
fn encode_request(spans: &[FinishedSpan]) -> Vec<u8> {
    // ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
    let mut resource = Vec::new();
    for (key, value) in [
        ("service.name", "trailmark"),
        ("service.version", env!("CARGO_PKG_VERSION")),
    ] {
        // Resource { repeated KeyValue attributes = 1; }
        message(
            &mut resource,
            1,
            &key_value(key, &Value::Text(value.into())),
        );
    }
    // ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }
    let mut scope_spans = Vec::new();
    let mut scope = Vec::new();
    string(&mut scope, 1, "trailmark");
    string(&mut scope, 2, env!("CARGO_PKG_VERSION"));
    message(&mut scope_spans, 1, &scope);
    for span in spans {
        message(&mut scope_spans, 2, &encode_span(span));
    }
    let mut resource_spans = Vec::new();
    message(&mut resource_spans, 1, &resource);
    message(&mut resource_spans, 2, &scope_spans);
    let mut request = Vec::new();
    message(&mut request, 1, &resource_spans);
    request
}

/// `Span { bytes trace_id = 1; bytes span_id = 2; bytes parent_span_id = 4; string name = 5;
/// SpanKind kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
/// repeated KeyValue attributes = 9; Status status = 15; }`
fn encode_span(span: &FinishedSpan) -> Vec<u8> {
    let mut out = Vec::new();
    bytes(&mut out, 1, &span.trace_id);
    bytes(&mut out, 2, &span.span_id);
    if let Some(parent) = &span.parent_span_id {
        bytes(&mut out, 4, parent);
    }
    string(&mut out, 5, &span.name);
    varint_field(&mut out, 6, span.kind);
    fixed64(&mut out, 7, span.start);
    fixed64(&mut out, 8, span.end.max(span.start));
    for (key, value) in &span.attributes {
        message(&mut out, 9, &key_value(key, value));
    }
    if let Some(reason) = &span.error {
        // Status { string message = 2; StatusCode code = 3; }
        let mut status = Vec::new();
        string(&mut status, 2, reason);
        varint_field(&mut status, 3, STATUS_CODE_ERROR);
        message(&mut out, 15, &status);
    }
    out
}

/// `KeyValue { string key = 1; AnyValue value = 2; }`, `AnyValue { string_value = 1;
/// bool_value = 2; int_value = 3; double_value = 4; }`
fn key_value(key: &str, value: &Value) -> Vec<u8> {
    let mut any = Vec::new();
    match value {
        Value::Text(text) => string(&mut any, 1, text),
        Value::Bool(flag) => varint_field(&mut any, 2, u64::from(*flag)),
        // int64 is encoded as the two's-complement varint of its 64 bits.
        Value::Int(number) => varint_field(&mut any, 3, *number as u64),
        Value::Double(number) => {
            tag(&mut any, 4, 1);
            any.extend_from_slice(&number.to_le_bytes());
        }
    }
    let mut out = Vec::new();
    string(&mut out, 1, key);
    message(&mut out, 2, &any);
    out
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn tag(out: &mut Vec<u8>, field: u64, wire_type: u64) {
    varint(out, (field << 3) | wire_type);
}

fn varint_field(out: &mut Vec<u8>, field: u64, value: u64) {
    tag(out, field, 0);
    varint(out, value);
}

fn fixed64(out: &mut Vec<u8>, field: u64, value: u64) {
    tag(out, field, 1);
    out.extend_from_slice(&value.to_le_bytes());
}

fn bytes(out: &mut Vec<u8>, field: u64, value: &[u8]) {
    tag(out, field, 2);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn string(out: &mut Vec<u8>, field: u64, value: &str) {
    bytes(out, field, value.as_bytes());
}

fn message(out: &mut Vec<u8>, field: u64, value: &[u8]) {
    bytes(out, field, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_protobufs() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        let mut out = Vec::new();
        varint_field(&mut out, 3, (-1i64) as u64);
        assert_eq!(
            out.len(),
            11,
            "a negative int64 takes ten bytes after its tag"
        );
    }
}
