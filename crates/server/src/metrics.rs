//! Prometheus metrics, rendered in the text exposition format at `GET /metrics`.
//!
//! A handful of series is all Trailmark exports, so they are kept here with plain atomics and a
//! mutex-guarded map rather than through a metrics framework:
//! - `trailmark_http_requests_total{method,route,status}`
//! - `trailmark_http_request_duration_seconds{route}` (histogram)
//! - `trailmark_events_ingested_total` and `trailmark_idempotent_replays_total`

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use trailmark_app::metrics::AppMetrics;

/// Histogram bucket upper bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
}

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    pub(crate) fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests
                .entry((method.to_owned(), route.to_owned(), status))
                .or_default() += 1;
        }
        if let Ok(mut durations) = self.durations.lock() {
            let histogram = durations.entry(route.to_owned()).or_default();
            let seconds = elapsed.as_secs_f64();
            for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
            histogram.count += 1;
            histogram.sum += seconds;
        }
    }

    /// The HTTP series, then the application's counters.
    pub(crate) fn render(&self, app: &AppMetrics) -> String {
        let mut out = String::new();
        out.push_str("# HELP trailmark_http_requests_total HTTP requests answered.\n# TYPE trailmark_http_requests_total counter\n");
        if let Ok(requests) = self.requests.lock() {
            for ((method, route, status), count) in requests.iter() {
                let _ = writeln!(
                    out,
                    "trailmark_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {count}",
                    escape(route)
                );
            }
        }
        out.push_str("# HELP trailmark_http_request_duration_seconds Time to answer a request.\n# TYPE trailmark_http_request_duration_seconds histogram\n");
        if let Ok(durations) = self.durations.lock() {
            for (route, histogram) in durations.iter() {
                let route = escape(route);
                for (bound, count) in BUCKETS.iter().zip(histogram.buckets) {
                    let _ = writeln!(
                        out,
                        "trailmark_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                    );
                }
                let _ = writeln!(
                    out,
                    "trailmark_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    histogram.count
                );
                let _ = writeln!(
                    out,
                    "trailmark_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                    histogram.sum
                );
                let _ = writeln!(
                    out,
                    "trailmark_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    histogram.count
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP trailmark_events_ingested_total Events durably stored.\n# TYPE trailmark_events_ingested_total counter\ntrailmark_events_ingested_total {}",
            app.events_ingested()
        );
        let _ = writeln!(
            out,
            "# HELP trailmark_idempotent_replays_total Requests answered from a stored idempotent response.\n# TYPE trailmark_idempotent_replays_total counter\ntrailmark_idempotent_replays_total {}",
            app.idempotent_replays()
        );
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
