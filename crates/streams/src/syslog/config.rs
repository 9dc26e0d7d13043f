//! A `syslog` stream's settings: `{host, port?: 6514, format?: "json"|"cef", hostname?,
//! app_name?, ca_certificate?, client_certificate?, client_key?}`. Messages go over TLS (RFC
//! 5425) to `host:port`; the server's certificate is checked against `ca_certificate` (PEM, one
//! or more certificates) or else the Mozilla roots, for the name `host`. `client_certificate`
//! (PEM chain) and `client_key` (PEM, PKCS#8, PKCS#1 or SEC1) authenticate Trailmark to a server
//! that asks for a certificate; `client_key` is a credential.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use serde_json::{Map, Value};
use trailmark_domain::FieldProblem;

use super::encode::{Format, Header};
use crate::net::certificates;
use crate::settings::Reader;

/// The IANA port of syslog over TLS (RFC 5425).
pub const DEFAULT_PORT: u16 = 6514;

/// A validated `syslog` configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub format: Format,
    pub header: Header,
    /// TLS as configured: the roots the server is checked against, and the client
    /// certificate if any.
    pub tls: Arc<ClientConfig>,
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
        let host = match r.text("host", true) {
            Some(host)
                if host.contains(['/', ':', ' '])
                    && host.parse::<std::net::Ipv6Addr>().is_err() =>
            {
                r.problem(
                    "invalid_value",
                    "host",
                    "host must be a host name or an IP address, without a scheme, port or path",
                );
                None
            }
            other => other,
        };
        let port = match r.public.get("port") {
            None => DEFAULT_PORT,
            Some(value) => match value.as_u64().and_then(|p| u16::try_from(p).ok()) {
                Some(port) if port > 0 => port,
                _ => {
                    r.problem(
                        "invalid_value",
                        "port",
                        "port must be a whole number from 1 to 65535",
                    );
                    DEFAULT_PORT
                }
            },
        };
        let format = match r.choice("format", &["json", "cef"], "json").as_str() {
            "cef" => Format::Cef,
            _ => Format::Json,
        };
        // A CEF record is its own mapping of the event; an OCSF event is a JSON message.
        if format == Format::Cef
            && r.public.get(crate::format::KEY).and_then(Value::as_str) == Some("ocsf")
        {
            r.problem(
                "conflict",
                crate::format::KEY,
                "event_format 'ocsf' sends the OCSF event as a JSON message: it takes format 'json', not 'cef'",
            );
        }
        let hostname = r
            .text("hostname", false)
            .unwrap_or_else(|| "trailmark".into());
        let app_name = r
            .text("app_name", false)
            .unwrap_or_else(|| "trailmark".into());
        let roots = match r.text("ca_certificate", false) {
            None => Some(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            }),
            Some(pem) => match certificates(&pem) {
                Some(certificates) => {
                    let mut roots = RootCertStore::empty();
                    let (_, ignored) = roots.add_parsable_certificates(certificates);
                    if ignored > 0 || roots.is_empty() {
                        r.problem(
                            "invalid_value",
                            "ca_certificate",
                            "ca_certificate holds a certificate that cannot be used as a root",
                        );
                    }
                    Some(roots)
                }
                None => {
                    r.problem(
                        "invalid_value",
                        "ca_certificate",
                        "ca_certificate must be one or more PEM certificates",
                    );
                    None
                }
            },
        };
        let client = match (
            r.text("client_certificate", false),
            r.secret("client_key", false),
        ) {
            (None, None) => Some(None),
            (Some(chain), Some(key)) => {
                let chain = certificates(&chain);
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).ok();
                if chain.is_none() {
                    r.problem(
                        "invalid_value",
                        "client_certificate",
                        "client_certificate must be one or more PEM certificates",
                    );
                }
                if key.is_none() {
                    r.problem(
                        "invalid_value",
                        "client_key",
                        "client_key must be a PEM private key (PKCS#8, PKCS#1 or SEC1)",
                    );
                }
                chain.zip(key).map(Some)
            }
            (Some(_), None) => {
                r.problem(
                    "required",
                    "client_key",
                    "client_certificate needs its client_key",
                );
                None
            }
            (None, Some(_)) => {
                r.problem(
                    "required",
                    "client_certificate",
                    "client_key needs its client_certificate",
                );
                None
            }
        };
        let tls = match (roots, client) {
            (Some(roots), Some(client)) => match tls(roots, client) {
                Ok(tls) => Some(tls),
                Err(reason) => {
                    r.problem("invalid_value", "client_key", &reason);
                    None
                }
            },
            _ => None,
        };
        let config = (|| {
            Some(Config {
                host: host?,
                port,
                format,
                header: Header { hostname, app_name },
                tls: tls?,
            })
        })();
        r.finish(config)
    }
}

/// The rustls client configuration (ring, TLS 1.2 and 1.3).
fn tls(
    roots: RootCertStore,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, String> {
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("client_key does not go with client_certificate: {e}"))?,
    };
    Ok(Arc::new(config))
}
