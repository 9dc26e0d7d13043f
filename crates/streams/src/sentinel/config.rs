//! A `sentinel` stream's settings: `{endpoint, dcr_immutable_id, stream_name, tenant_id,
//! client_id, client_secret, authority?}`: where the Logs Ingestion API takes the records (a
//! data collection endpoint, or the rule's own logs ingestion endpoint), which data collection
//! rule and which of its input streams, and the Microsoft Entra application that may write to
//! it (client credentials). `authority` is the Entra sign-in host: the public cloud's unless a
//! sovereign cloud (or a test) says otherwise.

use serde_json::{Map, Value};
use trailmark_domain::FieldProblem;

use crate::settings::Reader;

/// Microsoft Entra ID's sign-in host in the public cloud.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// A validated `sentinel` configuration.
pub struct Config {
    /// The ingestion endpoint, without a trailing `/`.
    pub endpoint: String,
    pub dcr_immutable_id: String,
    pub stream_name: String,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// The Entra sign-in host, without a trailing `/`.
    pub authority: String,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("endpoint", &self.endpoint)
            .field("dcr_immutable_id", &self.dcr_immutable_id)
            .field("stream_name", &self.stream_name)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Parses a `sentinel` configuration; `authority` is stored with its default so it is
    /// shown.
    ///
    /// # Errors
    ///
    /// Every problem, naming its field.
    pub fn parse(
        public: &mut Map<String, Value>,
        secrets: &mut Map<String, Value>,
    ) -> Result<Self, Vec<FieldProblem>> {
        let mut r = Reader::new(public, secrets);
        let endpoint = r.url("endpoint", true);
        let dcr_immutable_id = r.text("dcr_immutable_id", true);
        if let Some(id) = &dcr_immutable_id
            && !(id.starts_with("dcr-") && id.len() > 4 && path_safe(id))
        {
            r.problem(
                "invalid_value",
                "dcr_immutable_id",
                "dcr_immutable_id is the rule's immutable id: 'dcr-' and letters and digits",
            );
        }
        let stream_name = r.text("stream_name", true);
        if let Some(name) = &stream_name
            && !((name.starts_with("Custom-") || name.starts_with("Microsoft-")) && path_safe(name))
        {
            r.problem(
                "invalid_value",
                "stream_name",
                "stream_name is an input stream of the rule: 'Custom-' (or 'Microsoft-') and letters, digits, '_' or '-'",
            );
        }
        let tenant_id = r.text("tenant_id", true);
        if let Some(tenant) = &tenant_id
            && !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            r.problem(
                "invalid_value",
                "tenant_id",
                "tenant_id is the directory (tenant) id, or its domain name",
            );
        }
        let client_id = r.text("client_id", true);
        let client_secret = r.secret("client_secret", true);
        let authority = match r.url("authority", false) {
            Some(authority) => Some(authority),
            None if r.public.get("authority").is_some_and(|v| !v.is_null()) => None,
            None => {
                r.public
                    .insert("authority".into(), Value::from(DEFAULT_AUTHORITY));
                Some(DEFAULT_AUTHORITY.to_owned())
            }
        };
        let config = (|| {
            Some(Config {
                endpoint: endpoint?.trim_end_matches('/').to_owned(),
                dcr_immutable_id: dcr_immutable_id?,
                stream_name: stream_name?,
                tenant_id: tenant_id?,
                client_id: client_id?,
                client_secret: client_secret?,
                authority: authority?.trim_end_matches('/').to_owned(),
            })
        })();
        r.finish(config)
    }

    /// Where records are POSTed (Logs Ingestion API, `api-version=2023-01-01`).
    pub fn ingestion_url(&self) -> String {
        format!(
            "{}/dataCollectionRules/{}/streams/{}?api-version={}",
            self.endpoint,
            self.dcr_immutable_id,
            self.stream_name,
            super::API_VERSION
        )
    }

    /// Where tokens are asked for (Microsoft identity platform v2.0 token endpoint).
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.authority, self.tenant_id)
    }
}

/// Letters, digits, `_` and `-`: safe in a URL path as they are.
fn path_safe(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(config: Value) -> Result<Config, Vec<String>> {
        let mut public = config.as_object().cloned().unwrap_or_default();
        let mut secrets = Map::new();
        if let Some(secret) = public.remove("client_secret") {
            secrets.insert("client_secret".into(), secret);
        }
        Config::parse(&mut public, &mut secrets)
            .map_err(|problems| problems.into_iter().map(|p| p.field).collect())
    }

    #[test]
    fn settings_are_checked_field_by_field_and_urls_built_from_them() {
        let config = parse(json!({
            "endpoint": "https://audit-abcd.westeurope-1.ingest.monitor.azure.com/",
            "dcr_immutable_id": "dcr-0123456789abcdef0123456789abcdef",
            "stream_name": "Custom-TrailmarkAudit",
            "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "client_id": "0b8c1c1e-5d6f-4a43-9a8d-000000000000",
            "client_secret": "s3cret",
        }))
        .expect("valid");
        assert_eq!(
            config.ingestion_url(),
            "https://audit-abcd.westeurope-1.ingest.monitor.azure.com/dataCollectionRules/dcr-0123456789abcdef0123456789abcdef/streams/Custom-TrailmarkAudit?api-version=2023-01-01"
        );
        assert_eq!(
            config.token_url(),
            "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token"
        );
        // The default authority is stored, so the stream's settings show it.
        let mut public = json!({"endpoint": "https://audit-abcd.westeurope-1.ingest.monitor.azure.com/", "dcr_immutable_id": "dcr-0",
                                "stream_name": "Custom-T", "tenant_id": "t", "client_id": "c"})
        .as_object()
        .cloned()
        .unwrap_or_default();
        let mut secrets = json!({"client_secret": "s"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        Config::parse(&mut public, &mut secrets).expect("valid");
        assert_eq!(public["authority"], DEFAULT_AUTHORITY);
        assert_eq!(
            parse(json!({"endpoint": "ftp://x", "dcr_immutable_id": "rule", "stream_name": "Trailmark",
                         "tenant_id": "a/b", "client_id": "c", "authority": "nope"}))
            .err(),
            Some(
                [
                    "config.endpoint",
                    "config.dcr_immutable_id",
                    "config.stream_name",
                    "config.tenant_id",
                    "config.client_secret",
                    "config.authority"
                ]
                .map(String::from)
                .to_vec()
            )
        );
    }
}
