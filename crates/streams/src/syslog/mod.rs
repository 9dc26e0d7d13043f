//! Syslog over TLS (`syslog`): each event an RFC 5424 message, octet-counted (RFC 6587), as
//! JSON or CEF ([`encode`]), over TLS to the server (RFC 5425). Settings in [`config`].
//!
//! Each attempt opens a connection (resolved addresses pass the private-destination guard as
//! the HTTP client's do), writes its batch, closes its side (TLS `close_notify`, then the
//! socket's) and waits for the server to close too: syslog has no acknowledgement, and a server
//! that closes after our close has read everything before it. A refused certificate (either
//! side's) makes the stream `invalid`; a connection that fails or breaks is retried, and the
//! batch sent again (a receiver may then hold some messages twice: delivery is at-least-once).

pub mod config;
pub mod encode;

use std::time::Duration;

use async_trait::async_trait;
use rustls::pki_types::ServerName;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trailmark_domain::FieldProblem;

pub use config::{Config, DEFAULT_PORT};
pub use encode::{Format, Header, MAX_EVENTS};

use crate::Outcome;
use crate::destination::{BatchDefaults, Context, Destination, Field, FieldKind, Sink, Target};
use crate::egress::SendError;

/// How long one attempt (connect, handshake, write, close) may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The `syslog` destination.
pub struct Syslog;

const FIELDS: &[Field] = &[
    Field::new("host", "Server host", FieldKind::Text).required(),
    Field::new("port", "Port (TLS)", FieldKind::Number).help("6514 unless given."),
    Field::new("format", "Message", FieldKind::Select(&["json", "cef"]))
        .help("json: the event object as the message; cef: a CEF record."),
    Field::new("hostname", "HOSTNAME field", FieldKind::Text),
    Field::new("app_name", "APP-NAME field", FieldKind::Text),
    Field::new(
        "ca_certificate",
        "Server CA certificate (PEM)",
        FieldKind::LongText,
    )
    .help("Empty: the server's certificate must chain to a public root."),
    Field::new(
        "client_certificate",
        "Client certificate (PEM)",
        FieldKind::LongText,
    )
    .help("For servers that ask for one."),
    Field::new("client_key", "Client key (PEM)", FieldKind::SecretText),
];

impl Destination for Syslog {
    fn name(&self) -> &'static str {
        "syslog"
    }

    fn label(&self) -> &'static str {
        "Syslog (TLS)"
    }

    /// WorkOS has no syslog stream; the type is Trailmark's.
    fn workos_name(&self) -> &'static str {
        "Syslog"
    }

    fn fields(&self) -> &'static [Field] {
        FIELDS
    }

    /// Fewer, fuller connections for the cost of a second.
    fn batching(&self, _public: &Map<String, Value>) -> BatchDefaults {
        BatchDefaults {
            max_events: MAX_EVENTS,
            max_wait_seconds: 1.0,
        }
    }

    fn configure(
        &self,
        public: &mut Map<String, Value>,
        secrets: &mut Map<String, Value>,
        _generate_secret: &mut dyn FnMut() -> String,
    ) -> Result<Box<dyn Sink>, Vec<FieldProblem>> {
        Ok(Box::new(SyslogSink(Config::parse(public, secrets)?)))
    }
}

struct SyslogSink(Config);

#[async_trait]
impl Sink for SyslogSink {
    fn targets(&self) -> Vec<Target> {
        let host = match self.0.host.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("[{}]", self.0.host),
            Err(_) => self.0.host.clone(),
        };
        vec![Target {
            field: "config.host",
            url: format!("syslog-tls://{host}:{}", self.0.port),
        }]
    }

    async fn send(&self, cx: &Context<'_>, events: &[Value]) -> Outcome {
        let (frames, count) = encode::encode(events, &self.0.header, self.0.format, cx.format);
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.write(cx, &frames)).await {
            Ok(Ok(())) => Outcome::Delivered(count),
            Ok(Err(failure)) => failure,
            Err(_) => Outcome::Retry {
                reason: format!(
                    "the syslog server did not take the batch within {} s",
                    ATTEMPT_TIMEOUT.as_secs()
                ),
                after: None,
            },
        }
    }
}

impl SyslogSink {
    /// One connection: handshake, the frames, both sides closed.
    async fn write(&self, cx: &Context<'_>, frames: &[u8]) -> Result<(), Outcome> {
        let config = &self.0;
        let retry = |what: &str, error: &dyn std::fmt::Display| Outcome::Retry {
            reason: format!("{what} {}:{}: {error}", config.host, config.port),
            after: None,
        };
        let tcp = cx
            .connect(&config.host, config.port)
            .await
            .map_err(|error| match error {
                SendError::Unresolvable { error, .. } => retry("cannot connect to", &error),
                other => other.outcome(),
            })?;
        let name = ServerName::try_from(config.host.clone())
            .map_err(|error| Outcome::Invalid(format!("host: {error}")))?;
        let connector = tokio_rustls::TlsConnector::from(config.tls.clone());
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|error| tls_failure(config, &error))?;
        tls.write_all(frames)
            .await
            .map_err(|error| retry("lost the connection to", &error))?;
        tls.shutdown()
            .await
            .map_err(|error| retry("lost the connection to", &error))?;
        // The server closes once it has read up to our close.
        let mut rest = [0u8; 512];
        loop {
            match tls.read(&mut rest).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                // A server may close the socket without a close_notify of its own.
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(error) => return Err(retry("lost the connection to", &error)),
            }
        }
    }
}

/// A failed handshake: a certificate either side refused is the stream's configuration
/// (`invalid`); anything else may pass.
fn tls_failure(config: &Config, error: &std::io::Error) -> Outcome {
    let reason = format!("TLS with {}:{} failed: {error}", config.host, config.port);
    let refused = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|tls| {
            matches!(
                tls,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::AlertReceived(
                        rustls::AlertDescription::BadCertificate
                            | rustls::AlertDescription::CertificateRequired
                            | rustls::AlertDescription::UnknownCA
                            | rustls::AlertDescription::AccessDenied
                            | rustls::AlertDescription::CertificateUnknown
                    )
            )
        });
    if refused {
        Outcome::Invalid(reason)
    } else {
        Outcome::Retry {
            reason,
            after: None,
        }
    }
}
