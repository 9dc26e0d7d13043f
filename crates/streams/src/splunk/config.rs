//! A `splunk` stream's settings: `{url, token, index?, source?}`; `url` is the HEC base URL (the
//! full event endpoint's URL is accepted too).

use serde_json::{Map, Value};
use trailmark_domain::FieldProblem;

use crate::settings::Reader;

/// A validated `splunk` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub url: String,
    pub token: String,
    pub index: Option<String>,
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
        let url = r.url("url", true);
        let index = r.text("index", false);
        let token = r.secret("token", true);
        let config = (|| {
            Some(Config {
                url: url?,
                token: token?,
                index,
                source: source.unwrap_or_else(|| "trailmark".into()),
            })
        })();
        r.finish(config)
    }
}
