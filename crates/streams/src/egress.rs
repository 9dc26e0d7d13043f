//! Fixed egress: deliveries through an HTTP CONNECT proxy, so they leave from addresses a
//! customer can allowlist.
//!
//! **Which proxy.** The operator's `--egress-proxy http://[user:pass@]host:port` carries every
//! stream's traffic: the requests of every destination, the token requests some make (GCS
//! service-account and Entra ID tokens, an S3 role's STS `AssumeRole`), and syslog's TCP
//! connection. The operator's own AWS credential chain (instance metadata, container
//! credentials, web identity) is not a stream's traffic and goes direct. A stream may override it with its own
//! settings (in [`crate::destination::COMMON_FIELDS`], so every form shows them):
//! `egress_proxy` is another proxy's URL, with
//! `egress_proxy_username` and `egress_proxy_password` (a credential, sealed at rest), or
//! `"none"` to connect directly. With `--egress-proxy-required` the operator refuses both
//! overrides: every stream then leaves through the operator's proxy.
//!
//! **The guard.** A stream's own proxy is a network target like its destination, so unless
//! `--allow-private-destinations` it must be a globally routable address (checked when the
//! stream is saved and at every connection); the operator's proxy is trusted as configured.
//! The final destination is checked too, by Trailmark, not by the proxy: before each attempt
//! Trailmark resolves the destination's name, drops every address the guard refuses (and
//! refuses the attempt if none is left), and asks the proxy to `CONNECT` to the checked IP
//! address itself (`CONNECT 192.0.2.10:443`), never to the name: the proxy never resolves a
//! destination, so a name that changes its answer between the check and the connection (DNS
//! rebinding) cannot lead it inward. TLS is then made over the tunnel by Trailmark with the
//! destination's name (SNI and certificate check), as without a proxy. What is left to the
//! proxy is where it sends a `CONNECT` to an address: an operator whose proxy can reach
//! internal networks should still deny private destinations in the proxy itself (squid:
//! `http_access deny to_localhost`, `to_linklocal` and a `dst` ACL of the private ranges).
//!
//! Plain `http://` destinations are tunnelled too (`CONNECT` then HTTP/1.1 over the tunnel),
//! so the proxy sees the same `CONNECT` for every destination and never a request's contents.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::CertificateDer;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use trailmark_domain::FieldProblem;

use crate::Outcome;
use crate::destination::{Context, Target};
use crate::net::{self, DestinationError};
use crate::settings::problem;

const NONE: &str = "none";

/// How long connecting to the proxy, and its answer to `CONNECT`, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest `CONNECT` answer head read.
const MAX_ANSWER_HEAD: usize = 8 * 1024;

/// An HTTP proxy that takes `CONNECT`, and the credentials it asks for.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    host: String,
    port: u16,
    /// The `Proxy-Authorization` value (`Basic …`): a credential.
    authorization: Option<String>,
    user: Option<String>,
    /// Whether the proxy's own address must pass the private-destination guard: a stream's
    /// proxy must, the operator's is trusted.
    guarded: bool,
}

/// Never the password, nor the header made of it.
impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

/// Why a proxy URL is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyUrlError {
    #[error("the proxy must be an http:// URL with a host and a port (http://host:port)")]
    Malformed,
    #[error(
        "the proxy is reached over plain HTTP (http://host:port); the traffic inside its tunnel is TLS when the destination's is"
    )]
    NotHttp,
    #[error("the proxy URL takes no path, query or fragment")]
    HasPath,
}

impl Proxy {
    /// The operator's proxy, `http://[user:pass@]host:port` (user and password
    /// percent-encoded), trusted as given.
    ///
    /// # Errors
    ///
    /// [`ProxyUrlError`] saying what is wrong with the URL.
    pub fn operator(url: &str) -> Result<Proxy, ProxyUrlError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| ProxyUrlError::Malformed)?;
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = Some(decode(parsed.username())).filter(|u| !u.is_empty());
        let password = parsed.password().map(decode);
        let mut proxy = Self::address(&parsed)?;
        if let Some(user) = user {
            proxy = proxy.with_credentials(user, password.unwrap_or_default());
        }
        Ok(proxy)
    }

    /// A stream's proxy: `http://host:port`, its credentials given apart; guarded.
    fn stream(url: &str) -> Result<Proxy, ProxyUrlError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| ProxyUrlError::Malformed)?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(ProxyUrlError::Malformed);
        }
        Ok(Proxy {
            guarded: true,
            ..Self::address(&parsed)?
        })
    }

    fn address(parsed: &reqwest::Url) -> Result<Proxy, ProxyUrlError> {
        if parsed.scheme() != "http" {
            return Err(if parsed.cannot_be_a_base() {
                ProxyUrlError::Malformed
            } else {
                ProxyUrlError::NotHttp
            });
        }
        if !matches!(parsed.path(), "" | "/")
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(ProxyUrlError::HasPath);
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(ProxyUrlError::Malformed)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = parsed.port().ok_or(ProxyUrlError::Malformed)?;
        Ok(Proxy {
            host,
            port,
            authorization: None,
            user: None,
            guarded: false,
        })
    }

    fn with_credentials(mut self, user: String, password: String) -> Proxy {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.authorization = Some(format!("Basic {token}"));
        self.user = Some(user);
        self
    }

    /// `http://host:port`, as messages name it.
    pub fn url(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("http://[{v6}]:{}", self.port),
            _ => format!("http://{}:{}", self.host, self.port),
        }
    }

    /// The URL with its user and the password masked, as logs show it.
    pub fn shown(&self) -> String {
        match &self.user {
            Some(user) => self
                .url()
                .replacen("http://", &format!("http://{user}:****@"), 1),
            None => self.url(),
        }
    }
}

/// The egress the operator set (`--egress-proxy`, `--egress-proxy-required`).
#[derive(Debug, Clone, Default)]
pub struct Egress {
    pub proxy: Option<Arc<Proxy>>,
    /// Streams may not set `egress_proxy` (neither another proxy nor `none`).
    pub required: bool,
}

/// How a stream's traffic reaches the proxy it goes through: the proxy, and the CA certificates
/// trusted besides Mozilla's roots (`--stream-ca-file`) for TLS made through it.
#[derive(Debug, Clone, Copy)]
pub struct Via<'a> {
    pub proxy: &'a Proxy,
    pub trusted: &'a [CertificateDer<'static>],
}

/// A stream's `egress_proxy` setting.
enum Choice<'a> {
    /// Not set: the operator's proxy, if any.
    Default,
    Direct,
    Own(&'a str),
}

fn choice(public: &Map<String, Value>) -> Result<Choice<'_>, String> {
    match public.get("egress_proxy") {
        None | Some(Value::Null) => Ok(Choice::Default),
        Some(Value::String(text)) if text.trim() == NONE => Ok(Choice::Direct),
        Some(Value::String(text)) => Ok(Choice::Own(text.trim())),
        Some(_) => Err("egress_proxy must be a proxy URL (http://host:port) or 'none'".into()),
    }
}

/// Checks a stream's egress settings (pure), collecting problems named `config.<field>`:
/// `egress_proxy` is `none` or `http://host:port` without credentials (they have fields of
/// their own, so the password is sealed). Credentials without a proxy URL are dropped.
pub fn validate(
    public: &mut Map<String, Value>,
    secrets: &mut Map<String, Value>,
    problems: &mut Vec<FieldProblem>,
) {
    let own = match choice(public) {
        Ok(Choice::Own(url)) => match Proxy::stream(url) {
            Ok(_) => true,
            Err(error) => {
                let message = if url.contains('@') {
                    "egress_proxy takes no credentials in its URL; give them as egress_proxy_username and egress_proxy_password".to_owned()
                } else {
                    format!("egress_proxy: {error}, or 'none'")
                };
                problems.push(problem("invalid_url", "config.egress_proxy", &message));
                true
            }
        },
        Ok(_) => false,
        Err(message) => {
            problems.push(problem("invalid_value", "config.egress_proxy", &message));
            true
        }
    };
    if !own {
        public.remove("egress_proxy_username");
        secrets.remove("egress_proxy_password");
        return;
    }
    for (key, map) in [
        ("egress_proxy_username", &*public),
        ("egress_proxy_password", &*secrets),
    ] {
        if map.get(key).is_some_and(|v| !v.is_string()) {
            problems.push(problem(
                "invalid_value",
                &format!("config.{key}"),
                &format!("{key} must be a string"),
            ));
        }
    }
    if secrets.contains_key("egress_proxy_password")
        && !public.contains_key("egress_proxy_username")
    {
        problems.push(problem(
            "required",
            "config.egress_proxy_username",
            "egress_proxy_password needs egress_proxy_username",
        ));
    }
}

/// The stream's own proxy as a target of the private-destination guard (checked when it is
/// saved, like its destination).
pub fn targets(public: &Map<String, Value>) -> Vec<Target> {
    match choice(public) {
        Ok(Choice::Own(url)) => vec![Target {
            field: "config.egress_proxy",
            url: url.to_owned(),
        }],
        _ => Vec::new(),
    }
}

/// Refuses an `egress_proxy` setting when the operator requires its own proxy.
///
/// # Errors
///
/// A problem naming `config.egress_proxy`.
pub fn check_allowed(public: &Map<String, Value>, egress: &Egress) -> Result<(), FieldProblem> {
    match choice(public) {
        Ok(Choice::Default) => Ok(()),
        _ if egress.required => Err(problem(
            "forbidden_egress",
            "config.egress_proxy",
            "this server sends every stream through its own egress proxy (--egress-proxy-required); egress_proxy cannot be set",
        )),
        _ => Ok(()),
    }
}

/// The proxy a stream's traffic goes through; `None`: it connects directly.
pub type Route = Option<Arc<Proxy>>;

/// The proxy a stream's traffic goes through, if any: its own, none, or the operator's.
///
/// # Errors
///
/// Why its stored settings name no usable proxy (the stream is then `invalid`).
pub fn route(
    public: &Map<String, Value>,
    password: Option<&str>,
    egress: &Egress,
) -> Result<Route, String> {
    check_allowed(public, egress).map_err(|p| format!("{}: {}", p.field, p.message))?;
    match choice(public)? {
        Choice::Default => Ok(egress.proxy.clone()),
        Choice::Direct => Ok(None),
        Choice::Own(url) => {
            let proxy =
                Proxy::stream(url).map_err(|error| format!("config.egress_proxy: {error}"))?;
            let user = public
                .get("egress_proxy_username")
                .and_then(Value::as_str)
                .map(str::to_owned);
            Ok(Some(Arc::new(match user {
                Some(user) => proxy.with_credentials(user, password.unwrap_or("").to_owned()),
                None => proxy,
            })))
        }
    }
}

/// Why a request or connection did not reach its destination (or got no answer).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Sent without a proxy, by the HTTP client.
    #[error(transparent)]
    Client(#[from] reqwest::Error),
    /// The guard refused the destination (before anything was sent to the proxy).
    #[error(transparent)]
    Refused(DestinationError),
    #[error("the destination host {host} cannot be resolved: {error}")]
    Unresolvable { host: String, error: std::io::Error },
    #[error("the egress proxy {proxy} is refused: {error}")]
    ProxyRefused {
        proxy: String,
        error: DestinationError,
    },
    #[error("cannot reach the egress proxy {proxy}: {error}")]
    ProxyUnreachable {
        proxy: String,
        error: std::io::Error,
    },
    #[error("the egress proxy {proxy} refused the credentials Trailmark sent ({status})")]
    ProxyCredentials { proxy: String, status: String },
    #[error("the egress proxy {proxy} asks for credentials ({status})")]
    ProxyNeedsCredentials { proxy: String, status: String },
    #[error("the egress proxy {proxy} answered CONNECT {target} with {status}")]
    ProxyAnswer {
        proxy: String,
        target: SocketAddr,
        status: String,
        code: u16,
    },
    #[error("TLS through the egress proxy with {host} failed: {error}")]
    Tls { host: String, error: std::io::Error },
    #[error("HTTP through the egress proxy failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("the request could not be sent through the egress proxy: {0}")]
    Request(String),
    #[error("no answer through the egress proxy within {} s", net::REQUEST_TIMEOUT.as_secs())]
    Timeout,
}

impl SendError {
    /// What the failure means for the stream: the guard's refusals and the proxy's refusals of
    /// credentials or destination are its configuration (`invalid`); the rest may pass.
    pub fn outcome(&self) -> Outcome {
        match self {
            SendError::Client(error) => net::network_failure(error),
            SendError::Refused(_)
            | SendError::ProxyRefused { .. }
            | SendError::ProxyCredentials { .. }
            | SendError::ProxyNeedsCredentials { .. }
            | SendError::Request(_) => Outcome::Invalid(self.to_string()),
            SendError::ProxyAnswer { code, .. }
                if (400..500).contains(code) && !matches!(code, 408 | 429) =>
            {
                Outcome::Invalid(self.to_string())
            }
            _ => Outcome::Retry {
                reason: self.to_string(),
                after: None,
            },
        }
    }
}

impl Context<'_> {
    /// Sends `request`: through a tunnel of the stream's proxy if it has one, else with
    /// the client (whose resolver applies the guard). Every request a sink makes goes through
    /// here, so none leaves by another way.
    ///
    /// # Errors
    ///
    /// [`SendError`] when no answer came.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SendError> {
        match self.proxy {
            None => Ok(request.send().await?),
            Some(via) => {
                let request = request.build()?;
                tokio::time::timeout(
                    net::REQUEST_TIMEOUT,
                    send_through(via, request, self.allow_private),
                )
                .await
                .unwrap_or(Err(SendError::Timeout))
            }
        }
    }

    /// A TCP connection to `host:port` (syslog): a tunnel through the stream's proxy, or a
    /// direct connection; under the guard either way.
    ///
    /// # Errors
    ///
    /// [`SendError`] saying why no connection was made.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, SendError> {
        match self.proxy {
            Some(via) => tunnel(via.proxy, host, port, self.allow_private).await,
            None => net::connect_tcp(host, port, self.allow_private)
                .await
                .map_err(|error| match error {
                    net::ConnectError::Refused(refused) => SendError::Refused(refused),
                    net::ConnectError::Io(error) => SendError::Unresolvable {
                        host: host.to_owned(),
                        error,
                    },
                }),
        }
    }
}

/// Why no address of a name may be connected to.
enum Lookup {
    /// The guard refused every address the name has.
    Refused(DestinationError),
    Failed(std::io::Error),
}

/// The addresses of `host` the guard lets through (all of them if `allow_private`).
async fn allowed_addresses(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, Lookup> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(Lookup::Failed)?
        .collect();
    let allowed: Vec<SocketAddr> = resolved
        .iter()
        .copied()
        .filter(|a| allow_private || !net::is_private(a.ip()))
        .collect();
    match (allowed.is_empty(), resolved.first()) {
        (false, _) => Ok(allowed),
        (true, Some(first)) => Err(Lookup::Refused(net::refusal(first.ip()))),
        (true, None) => Err(Lookup::Failed(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} resolves to no address"),
        ))),
    }
}

/// A tunnel to `host:port` through `proxy`: the proxy's address checked if it is a stream's,
/// the destination resolved and checked here, the proxy asked to `CONNECT` to a checked
/// address (each in turn while the proxy cannot reach one).
async fn tunnel(
    proxy: &Proxy,
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<TcpStream, SendError> {
    let proxy_addresses =
        allowed_addresses(&proxy.host, proxy.port, allow_private || !proxy.guarded)
            .await
            .map_err(|lookup| match lookup {
                Lookup::Refused(refused) => SendError::ProxyRefused {
                    proxy: proxy.url(),
                    error: refused,
                },
                Lookup::Failed(error) => SendError::ProxyUnreachable {
                    proxy: proxy.url(),
                    error,
                },
            })?;
    let targets =
        allowed_addresses(host, port, allow_private)
            .await
            .map_err(|lookup| match lookup {
                Lookup::Refused(refused) => SendError::Refused(refused),
                Lookup::Failed(error) => SendError::Unresolvable {
                    host: host.to_owned(),
                    error,
                },
            })?;
    let mut last = None;
    for target in targets {
        match connect_through(proxy, &proxy_addresses, target).await {
            Ok(stream) => return Ok(stream),
            // The proxy could not reach this address: another may answer.
            Err(
                error @ SendError::ProxyAnswer {
                    code: 500..=599, ..
                },
            ) => last = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap_or(SendError::Request("no address to connect to".into())))
}

/// One `CONNECT target` through `proxy` (at the first of `addresses` that answers), with its
/// credentials.
async fn connect_through(
    proxy: &Proxy,
    addresses: &[SocketAddr],
    target: SocketAddr,
) -> Result<TcpStream, SendError> {
    let unreachable = |error| SendError::ProxyUnreachable {
        proxy: proxy.url(),
        error,
    };
    let mut stream = None;
    let mut failure = None;
    for &address in addresses {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(connected)) => {
                stream = Some(connected);
                break;
            }
            Ok(Err(error)) => failure = Some(error),
            Err(_) => {
                failure = Some(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                ));
            }
        }
    }
    let Some(mut stream) = stream else {
        return Err(unreachable(failure.unwrap_or_else(|| {
            std::io::Error::other("no address to connect to")
        })));
    };
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(authorization) = &proxy.authorization {
        head.push_str("Proxy-Authorization: ");
        head.push_str(authorization);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let answer = tokio::time::timeout(CONNECT_TIMEOUT, async {
        stream.write_all(head.as_bytes()).await?;
        read_answer_head(&mut stream).await
    })
    .await
    .unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no answer to CONNECT within {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        ))
    })
    .map_err(unreachable)?;
    let status_line = answer.lines().next().unwrap_or("");
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .unwrap_or(0);
    let status: String = status_line
        .split_once(' ')
        .map_or(status_line, |(_, status)| status)
        .trim()
        .chars()
        .take(100)
        .collect();
    let proxy_url = proxy.url();
    // 407 is the standard refusal; some proxies (tinyproxy 1.11) answer 401 instead.
    match code {
        200..=299 => Ok(stream),
        401 | 407 if proxy.authorization.is_some() => Err(SendError::ProxyCredentials {
            proxy: proxy_url,
            status,
        }),
        401 | 407 => Err(SendError::ProxyNeedsCredentials {
            proxy: proxy_url,
            status,
        }),
        _ => Err(SendError::ProxyAnswer {
            proxy: proxy_url,
            target,
            status,
            code,
        }),
    }
}

/// The proxy's answer up to its blank line, read byte by byte: what follows it belongs to the
/// tunnel.
async fn read_answer_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_ANSWER_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the answer to CONNECT is too long",
            ));
        }
        let byte = stream.read_u8().await?;
        head.push(byte);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The TLS client of requests through a proxy: the roots and protocols of the HTTP client
/// (Mozilla's roots and `trusted`, TLS 1.2 and 1.3), HTTP/1.1.
fn tls(trusted: &[CertificateDer<'static>]) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for certificate in trusted {
        roots.add(certificate.clone())?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `request` through a tunnel of `via`'s proxy, HTTP/1.1, TLS for `https://` with the URL's
/// host.
async fn send_through(
    via: Via<'_>,
    request: reqwest::Request,
    allow_private: bool,
) -> Result<reqwest::Response, SendError> {
    let url = request.url().clone();
    let bad_url = || SendError::Refused(DestinationError::BadUrl);
    let host = url.host_str().ok_or_else(bad_url)?.to_owned();
    let port = url.port_or_known_default().ok_or_else(bad_url)?;
    let stream = tunnel(via.proxy, &host, port, allow_private).await?;
    match url.scheme() {
        "https" => {
            let name = rustls::pki_types::ServerName::try_from(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
            )
            .map_err(|_| bad_url())?;
            let config = tls(via.trusted)
                .map_err(|error| SendError::Request(format!("TLS cannot be set up: {error}")))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|error| SendError::Tls {
                    host: host.clone(),
                    error,
                })?;
            exchange(tls, request).await
        }
        "http" => exchange(stream, request).await,
        _ => Err(bad_url()),
    }
}

/// One HTTP/1.1 exchange of `request` over `io`.
async fn exchange<IO>(io: IO, request: reqwest::Request) -> Result<reqwest::Response, SendError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let url = request.url();
    let mut target = url.path().to_owned();
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    let authority = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => return Err(SendError::Refused(DestinationError::BadUrl)),
    };
    let body = match request.body() {
        None => bytes::Bytes::new(),
        Some(body) => match body.as_bytes() {
            Some(bytes) => bytes::Bytes::copy_from_slice(bytes),
            None => {
                return Err(SendError::Request(
                    "a streamed body cannot be sent through the egress proxy".into(),
                ));
            }
        },
    };
    let mut outgoing = http::Request::new(Full::new(body));
    *outgoing.method_mut() = request.method().clone();
    *outgoing.uri_mut() = target
        .parse()
        .map_err(|_| SendError::Refused(DestinationError::BadUrl))?;
    *outgoing.headers_mut() = request.headers().clone();
    let headers = outgoing.headers_mut();
    let value = |text: &str| {
        http::HeaderValue::from_str(text).map_err(|_| SendError::Refused(DestinationError::BadUrl))
    };
    headers.insert(http::header::HOST, value(&authority)?);
    headers
        .entry(http::header::USER_AGENT)
        .or_insert(value(net::USER_AGENT)?);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
    // The connection is driven beside the exchange and ends with it.
    tokio::spawn(connection);
    let response = sender.send_request(outgoing).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(reqwest::Response::from(http::Response::from_parts(
        parts, body,
    )))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tokio::io::AsyncBufReadExt;

    use super::*;
    use crate::destination::Shared;
    use crate::settings::{Settings, StreamKind};

    #[test]
    fn an_operator_proxy_url_gives_basic_credentials_and_never_shows_the_password() {
        let proxy = Proxy::operator("http://us%40er:p%3Ass@127.0.0.1:3128").expect("proxy");
        assert_eq!(
            proxy.authorization.as_deref(),
            Some(
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("us@er:p:ss")
                )
                .as_str()
            )
        );
        assert_eq!(proxy.shown(), "http://us@er:****@127.0.0.1:3128");
        assert!(!format!("{proxy:?}").contains("p:ss"));
        assert!(!proxy.guarded);
        assert_eq!(
            Proxy::operator("http://[::1]:8888").expect("v6").url(),
            "http://[::1]:8888"
        );
        for (url, error) in [
            ("https://proxy.test:443", ProxyUrlError::NotHttp),
            ("http://proxy.test", ProxyUrlError::Malformed),
            ("http://proxy.test:3128/path", ProxyUrlError::HasPath),
            ("proxy.test:3128", ProxyUrlError::Malformed),
        ] {
            assert_eq!(Proxy::operator(url), Err(error), "{url}");
        }
    }

    fn settings(config: serde_json::Value) -> Result<Settings, Vec<String>> {
        let kind = StreamKind::parse("http").expect("http");
        Settings::parse(kind, &config, || {
            crate::settings::new_signing_secret().expect("random")
        })
        .map_err(|problems| problems.into_iter().map(|p| p.field).collect())
    }

    #[test]
    fn a_stream_names_its_own_proxy_with_sealed_credentials_or_none() {
        let own = settings(json!({"url": "https://siem.test/in", "egress_proxy": "http://proxy.test:3128",
                                  "egress_proxy_username": "u", "egress_proxy_password": "secret-pass"}))
        .expect("valid");
        assert!(!own.public.contains_key("egress_proxy_password"));
        assert_eq!(
            own.secrets.get("egress_proxy_password"),
            Some("secret-pass")
        );
        assert_eq!(own.masked()["egress_proxy_password"], "****pass");
        let egress = Egress {
            proxy: Some(Arc::new(
                Proxy::operator("http://10.0.0.1:3128").expect("proxy"),
            )),
            required: false,
        };
        let route_of =
            |s: &Settings, e: &Egress| route(&s.public, s.secrets.get("egress_proxy_password"), e);
        let chosen = route_of(&own, &egress).expect("route").expect("a proxy");
        assert_eq!(chosen.url(), "http://proxy.test:3128");
        assert!(chosen.guarded);
        assert_eq!(chosen.shown(), "http://u:****@proxy.test:3128");
        assert_eq!(targets(&own.public)[0].field, "config.egress_proxy");

        let direct = settings(
            json!({"url": "https://siem.test/in", "egress_proxy": "none",
                                     "egress_proxy_username": "left-over"}),
        )
        .expect("valid");
        assert!(!direct.public.contains_key("egress_proxy_username"));
        assert_eq!(route_of(&direct, &egress), Ok(None));
        assert!(targets(&direct.public).is_empty());

        let default = settings(json!({"url": "https://siem.test/in"})).expect("valid");
        assert_eq!(route_of(&default, &egress).expect("route"), egress.proxy);

        let required = Egress {
            required: true,
            ..egress.clone()
        };
        for refused in [&own, &direct] {
            assert!(check_allowed(&refused.public, &required).is_err());
            let reason = route_of(refused, &required).expect_err("required");
            assert!(reason.contains("--egress-proxy-required"), "{reason}");
        }
        assert!(check_allowed(&default.public, &required).is_ok());

        for (config, field) in [
            (
                json!({"egress_proxy": "http://u:p@proxy.test:3128"}),
                "config.egress_proxy",
            ),
            (
                json!({"egress_proxy": "socks5://proxy.test:1080"}),
                "config.egress_proxy",
            ),
            (json!({"egress_proxy": 3128}), "config.egress_proxy"),
            (
                json!({"egress_proxy": "http://proxy.test:3128", "egress_proxy_password": "p"}),
                "config.egress_proxy_username",
            ),
        ] {
            let mut config = config;
            config["url"] = json!("https://siem.test/in");
            assert_eq!(
                settings(config.clone()),
                Err(vec![field.to_owned()]),
                "{config}"
            );
        }
    }

    /// A fake proxy on loopback: answers each `CONNECT` with `answer`, records the heads it
    /// was sent, and then serves one HTTP request in the tunnel with `200 OK`.
    async fn fake_proxy(answer: &'static str) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let mut reader = tokio::io::BufReader::new(socket);
                    let mut head = String::new();
                    while !head.ends_with("\r\n\r\n") {
                        if reader.read_line(&mut head).await.unwrap_or(0) == 0 {
                            return;
                        }
                    }
                    seen.lock().expect("heads").push(head);
                    let _ = reader.get_mut().write_all(answer.as_bytes()).await;
                    if !answer.starts_with("HTTP/1.1 200") {
                        return;
                    }
                    let mut request = String::new();
                    while !request.ends_with("\r\n\r\n") {
                        if reader.read_line(&mut request).await.unwrap_or(0) == 0 {
                            return;
                        }
                    }
                    seen.lock().expect("heads").push(request);
                    let _ = reader
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                });
            }
        });
        (port, heads)
    }

    async fn send_via(
        proxy: &Proxy,
        url: &str,
        allow_private: bool,
    ) -> Result<reqwest::Response, SendError> {
        let client = net::client(true, &[]).expect("client");
        let shared = Shared::default();
        let cx = Context {
            stream_id: "ls_test",
            client: &client,
            allow_private,
            shared: &shared,
            proxy: Some(Via {
                proxy,
                trusted: &[],
            }),
            clock: &crate::worker::Clock::default(),
            aws_default_chain: None,
            format: crate::format::EventFormat::Workos,
        };
        cx.send(client.get(url)).await
    }

    /// The proxy is asked to CONNECT to the address Trailmark resolved and checked, never to
    /// the name, with the credentials; the request inside names the host.
    #[tokio::test]
    async fn the_proxy_connects_to_the_checked_address_with_the_credentials() {
        let (port, heads) = fake_proxy("HTTP/1.1 200 Connection established\r\n\r\n").await;
        let proxy = Proxy::operator(&format!("http://user:pass@127.0.0.1:{port}")).expect("proxy");
        let response = send_via(&proxy, "http://localhost:4711/in?x=1", true)
            .await
            .expect("an answer");
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.expect("body"), "ok");
        let heads = heads.lock().expect("heads").clone();
        let connect = heads[0].to_ascii_lowercase();
        assert!(
            connect.starts_with("connect 127.0.0.1:4711 http/1.1\r\n")
                || connect.starts_with("connect [::1]:4711 http/1.1\r\n"),
            "{connect}"
        );
        assert!(
            connect.contains("proxy-authorization: basic dxnlcjpwyxnz\r\n"),
            "{connect}"
        );
        assert!(
            heads[1].starts_with("GET /in?x=1 HTTP/1.1\r\n"),
            "{}",
            heads[1]
        );
        assert!(
            heads[1]
                .to_ascii_lowercase()
                .contains("host: localhost:4711\r\n"),
            "{}",
            heads[1]
        );
    }

    #[tokio::test]
    async fn a_proxy_refusing_the_credentials_makes_the_stream_invalid_naming_it() {
        let (port, _) = fake_proxy("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
        let proxy = Proxy::operator(&format!("http://user:wrong@127.0.0.1:{port}")).expect("proxy");
        let error = send_via(&proxy, "http://127.0.0.1:4711/in", true)
            .await
            .expect_err("refused");
        let Outcome::Invalid(reason) = error.outcome() else {
            panic!("{error}");
        };
        assert!(
            reason.contains(&format!("http://127.0.0.1:{port}")),
            "{reason}"
        );
        assert!(reason.contains("407"), "{reason}");
        assert!(!reason.contains("wrong"), "{reason}");
    }

    /// With the guard on, a destination that resolves privately is refused before the proxy
    /// hears of it, even though the operator's proxy itself is on loopback; a stream's own
    /// proxy on loopback is refused as any private target.
    #[tokio::test]
    async fn the_guard_refuses_a_private_destination_before_the_proxy_hears_of_it() {
        let (port, heads) = fake_proxy("HTTP/1.1 200 Connection established\r\n\r\n").await;
        let operator = Proxy::operator(&format!("http://127.0.0.1:{port}")).expect("proxy");
        for url in [
            "http://localhost:4711/in",
            "https://127.0.0.1/in",
            "http://[::ffff:10.0.0.1]/",
        ] {
            let error = send_via(&operator, url, false).await.expect_err(url);
            assert!(
                matches!(error, SendError::Refused(DestinationError::Private { .. })),
                "{url}: {error}"
            );
            assert!(matches!(error.outcome(), Outcome::Invalid(_)));
        }
        assert!(heads.lock().expect("heads").is_empty());
        let own = Proxy::stream(&format!("http://localhost:{port}")).expect("proxy");
        let error = send_via(&own, "http://127.0.0.1:4711/in", false)
            .await
            .expect_err("refused");
        assert!(matches!(error, SendError::ProxyRefused { .. }), "{error}");
        assert!(
            error.to_string().contains("--allow-private-destinations"),
            "{error}"
        );
        assert!(heads.lock().expect("heads").is_empty());
    }
}
