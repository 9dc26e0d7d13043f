//! `serve`'s logs: a `RUST_LOG`-style filter (`--log` / `TRAILMARK_LOG`, else `RUST_LOG`, else
//! `info`), written to standard error as human-readable text (coloured only on a terminal, and
//! never when `NO_COLOR` is set) or as JSON lines (`--log-format json`).
//!
//! A JSON line is one object: `timestamp` (UTC, milliseconds), `level` (`error` … `trace`),
//! `target` (the module, or `trailmark::access` for the access log), `message`, the event's own
//! fields, and the fields of every span it happened in, outermost first — so every line logged
//! while a request is handled carries its `request_id`, `method` and `route` (the `store.commit`
//! span inside it is left to traces: see [`logged`]). The access log
//! line (`trailmark::access`, one per request, whatever its status) adds `status` and
//! `latency_ms`:
//!
//! ```json
//! {"timestamp":"2026-08-01T10:00:00.123Z","level":"info","target":"trailmark::access","request_id":"req_01…","method":"POST","route":"/audit_logs/events","message":"answered","status":200,"latency_ms":3.1}
//! ```

use std::fmt;
use std::io::IsTerminal;

use anyhow::Context;
use clap::ValueEnum;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};
use trailmark_domain::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// What else than logs the subscriber sends: spans to an OTLP collector.
pub type Traces = Option<Box<dyn Layer<Registry> + Send + Sync>>;

/// Installs the process's log subscriber. `filter` is `--log` (or `TRAILMARK_LOG`) if given;
/// `traces` sees Trailmark's spans whatever the log filter lets through.
pub fn init(filter: Option<&str>, format: LogFormat, traces: Traces) -> anyhow::Result<()> {
    let from_rust_log = std::env::var("RUST_LOG").ok().filter(|f| !f.is_empty());
    let (directives, origin) = match (filter, from_rust_log.as_deref()) {
        (Some(filter), _) => (filter, "--log"),
        (None, Some(filter)) => (filter, "RUST_LOG"),
        (None, None) => ("info", "the default"),
    };
    let filter = EnvFilter::try_new(directives)
        .with_context(|| format!("{origin} is not a valid log filter: {directives:?}"))?
        .and(filter_fn(logged));
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(colour)
                .with_filter(filter)
                .boxed()
        }
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_filter(filter)
            .boxed(),
    };
    let mut layers = vec![logs];
    layers.extend(traces);
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

/// Whether the logs see `metadata`: every event and span the filter lets through, but the
/// `store.commit` span, which is for traces. It wraps each append inside its request, whose
/// span already names the request in every line; formatting its fields for the logs at each
/// append was ~5% of the instructions of a single-event request (`bench/instructions`), for
/// lines that are almost never written inside it.
fn logged(metadata: &tracing::Metadata<'_>) -> bool {
    !(metadata.is_span() && metadata.name() == "store.commit")
}

/// Formats each event as one JSON object on its own line (see the module docs).
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), Timestamp::now().to_string().into());
        line.insert(
            "level".into(),
            metadata.level().as_str().to_ascii_lowercase().into(),
        );
        line.insert("target".into(), metadata.target().into());
        if let Some(scope) = context.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                // Span fields were stored as a JSON object by `JsonFields` when the span opened.
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    line.extend(fields);
                }
            }
        }
        event.record(&mut Fields(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Copies an event's fields into the line, keeping numbers and booleans typed.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}
