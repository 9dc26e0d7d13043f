//! A `datadog` stream's settings: `{site, api_key, source?, endpoint?}`. `site` is one of
//! [`SITES`]; `endpoint` overrides the logs-intake URL derived from it (for proxies and tests).

use serde_json::{Map, Value};
use trailmark_domain::FieldProblem;

use crate::settings::Reader;

/// Datadog sites, whose logs intake is `http-intake.logs.<site>` (Datadog "Send logs" API).
pub const SITES: [&str; 7] = [
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "ddog-gov.com",
];

/// A validated `datadog` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where logs go: the `endpoint` override, or the site's intake.
    pub intake: String,
    /// Which setting named `intake` (`config.endpoint` or `config.site`).
    pub intake_field: &'static str,
    pub api_key: String,
    pub source: String,
}

impl Config {
    /// # Errors
    ///
    /// Every problem, naming its field.
    pub fn parse(
        public: &mut Map<String, Value>,
        secrets: &mut Map<String, Value>,
    ) -> Result<Self, Vec<FieldProblem>> {
        let mut r = Reader::new(public, secrets);
        let source = r.text("source", false);
        let site = match r.text("site", true) {
            Some(site) if SITES.contains(&site.as_str()) => Some(site),
            Some(_) => {
                r.problem(
                    "invalid_value",
                    "site",
                    &format!("site must be one of {}", SITES.join(", ")),
                );
                None
            }
            None => None,
        };
        let endpoint = r.url("endpoint", false);
        let api_key = r.secret("api_key", true);
        let config = (|| {
            let (intake, intake_field) = match endpoint {
                Some(endpoint) => (endpoint, "config.endpoint"),
                None => (super::encode::intake_url(site.as_deref()?), "config.site"),
            };
            Some(Config {
                intake,
                intake_field,
                api_key: api_key?,
                source: source.unwrap_or_else(|| "trailmark".into()),
            })
        })();
        r.finish(config)
    }
}
