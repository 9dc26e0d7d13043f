//! Fixed egress (issue 16, part 9) through a real proxy: Debian's `tinyproxy`, run by each test
//! on a loopback port with its own configuration (Basic credentials, `Allow 127.0.0.1`, CONNECT
//! only to the test's ports, foreground). The proxy makes its outgoing connections from
//! 127.0.0.3 (`Bind`), the "fixed egress address" of these tests, and the receivers accept
//! connections from that address only: a delivery that did not go through the proxy is
//! refused and recorded, so a test sees it. Its log counts the `CONNECT`s it carried.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use trailmark_streams::egress::{Egress, Proxy};

use crate::helpers::{Options, TestApp, body, event};
use crate::pki::{CLIENT_EXTENSIONS, Pki, server_extensions};

/// Where the proxy's connections come from.
const PROXY_EGRESS: &str = "127.0.0.3";

/// tinyproxy in the foreground, stopped when dropped.
pub struct Tinyproxy {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _directory: tempfile::TempDir,
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tinyproxy {
    /// Starts tinyproxy asking for `user`/`password`, connecting out from `bind` and only to
    /// `ports`.
    pub async fn start(user: &str, password: &str, bind: &str, ports: &[u16]) -> Tinyproxy {
        let directory = tempfile::tempdir().expect("dir");
        let port = free_port();
        let log = directory.path().join("tinyproxy.log");
        let mut config = format!(
            "Port {port}\nListen 127.0.0.1\nBind {bind}\nTimeout 30\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 20\nAllow 127.0.0.1\nBasicAuth {user} {password}\n",
            log.display()
        );
        for allowed in ports {
            config.push_str(&format!("ConnectPort {allowed}\n"));
        }
        let path = directory.path().join("tinyproxy.conf");
        std::fs::write(&path, config).expect("write the configuration");
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy (Debian package tinyproxy)");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Tinyproxy {
            child,
            port,
            log,
            _directory: directory,
        }
    }

    /// The proxy's URL with credentials.
    pub fn url(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// How many `CONNECT`s to `127.0.0.1:port` it was asked for.
    pub fn connects_to(&self, port: u16) -> usize {
        let wanted = format!("CONNECT 127.0.0.1:{port} ");
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("Request (file descriptor") && line.contains(&wanted))
            .count()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A webhook receiver that takes connections from one address only, one request each.
struct Receiver {
    port: u16,
    bodies: Arc<Mutex<Vec<Value>>>,
    refused: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start(tls: Option<Arc<rustls::ServerConfig>>, from: &str) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let from: IpAddr = from.parse().expect("address");
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let (kept, refusals) = (Arc::clone(&bodies), Arc::clone(&refused));
        tokio::spawn(async move {
            while let Ok((socket, peer)) = listener.accept().await {
                if peer.ip() != from {
                    refusals
                        .lock()
                        .expect("refused")
                        .push(format!("a connection from {peer}"));
                    continue;
                }
                let (kept, tls) = (Arc::clone(&kept), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(config) => {
                            if let Ok(stream) =
                                tokio_rustls::TlsAcceptor::from(config).accept(socket).await
                            {
                                serve_one(stream, &kept).await;
                            }
                        }
                        None => serve_one(socket, &kept).await,
                    }
                });
            }
        });
        Receiver {
            port,
            bodies,
            refused,
        }
    }

    /// The events (envelopes' `event`) with `action`, received so far.
    fn events(&self, action: &str) -> Vec<Value> {
        self.bodies
            .lock()
            .expect("bodies")
            .iter()
            .filter_map(Value::as_array)
            .flatten()
            .map(|envelope| envelope["event"].clone())
            .filter(|event| event["action"] == action)
            .collect()
    }

    async fn wait_for(&self, action: &str, count: usize) -> Vec<Value> {
        for _ in 0..400 {
            if self.events(action).len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.events(action)
    }

    /// How many requests it took.
    fn requests(&self) -> usize {
        self.bodies.lock().expect("bodies").len()
    }

    fn refused(&self) -> Vec<String> {
        self.refused.lock().expect("refused").clone()
    }
}

/// Reads one request (head and `content-length` body), keeps its JSON body, answers 200.
async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(stream: S, kept: &Mutex<Vec<Value>>) {
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).await.is_err() {
        return;
    }
    kept.lock()
        .expect("bodies")
        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
    let mut stream = reader.into_inner();
    let _ = stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await;
    let _ = stream.shutdown().await;
}

/// The TLS server configuration of `pki`'s `server` certificate.
fn server_tls(pki: &Pki) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(pki.path("server.pem"))
        .expect("certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate");
    let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server certificate");
    Arc::new(config)
}

fn trusted(pki: &Pki) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    trailmark_streams::net::certificates(&pki.read("ca.pem")).expect("the test CA")
}

fn operator_proxy(url: &str) -> Egress {
    Egress {
        proxy: Some(Arc::new(Proxy::operator(url).expect("proxy URL"))),
        required: false,
    }
}

async fn ingest(app: &TestApp, organization: &str, count: usize) {
    for n in 0..count {
        let mut submitted = event("user.signed_in");
        submitted["metadata"] = json!({"n": n});
        let response = app.create_event(organization, &submitted, None).await;
        assert_eq!(response.status(), 200);
    }
}

async fn create_stream(app: &TestApp, organization: &str, config: Value) -> Value {
    let response = app
        .post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "http", "name": "SIEM",
                    "start": "beginning", "config": config}),
        )
        .await;
    let status = response.status();
    let created = body(response).await;
    assert_eq!(status, 201, "{created}");
    created
}

/// Waits (up to 20 s: a restarted server takes a stream once its lease ran out) until the
/// stream is in `state`, and returns it.
async fn wait_for_state(app: &TestApp, id: &str, state: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..800 {
        last = body(app.get(&format!("/audit_logs/streams/{id}")).await).await;
        if last["state"] == state {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    last
}

/// Issue 16 (fixed egress): with `--egress-proxy`, an http and an https stream deliver through
/// tinyproxy with its credentials — the receivers take connections from the proxy's address
/// only, and tinyproxy's log holds a `CONNECT` for each — and TLS is made through the tunnel
/// with the destination's name.
#[tokio::test]
async fn http_and_https_streams_deliver_through_the_operators_proxy() {
    let pki = Pki::with_cas();
    pki.issue(
        "server",
        "/CN=localhost",
        &server_extensions("DNS:localhost"),
    );
    let plain = Receiver::start(None, PROXY_EGRESS).await;
    let tls = Receiver::start(Some(server_tls(&pki)), PROXY_EGRESS).await;
    let proxy =
        Tinyproxy::start("trailmark", "s3cret", PROXY_EGRESS, &[plain.port, tls.port]).await;
    let app = TestApp::spawn_with(Options {
        egress: operator_proxy(&proxy.url("trailmark", "s3cret")),
        stream_trusted: trusted(&pki),
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    ingest(&app, &organization, 3).await;
    for port in [plain.port, tls.port] {
        let scheme = if port == plain.port {
            "http://127.0.0.1"
        } else {
            "https://localhost"
        };
        create_stream(
            &app,
            &organization,
            json!({"url": format!("{scheme}:{port}/in"), "batch": {"max_wait_seconds": 0}}),
        )
        .await;
    }
    for receiver in [&plain, &tls] {
        assert_eq!(receiver.wait_for("user.signed_in", 3).await.len(), 3);
        assert!(receiver.refused().is_empty(), "{:?}", receiver.refused());
        assert!(proxy.connects_to(receiver.port) >= 1);
    }
}

/// Issue 16 (fixed egress): a stream's own proxy overrides the operator's: wrong credentials
/// make the stream `invalid` naming the proxy and its refusal (tinyproxy 1.11 answers 401
/// where RFC 9110 says 407; both are read as refused credentials), never the password; fixed, it
/// delivers everything through its proxy, none through the operator's; `none` goes direct.
#[tokio::test]
async fn a_streams_own_proxy_with_wrong_credentials_is_invalid_until_fixed() {
    let receiver = Receiver::start(None, PROXY_EGRESS).await;
    let direct = Receiver::start(None, "127.0.0.1").await;
    let operators = Tinyproxy::start("operator", "op-pass", "127.0.0.4", &[receiver.port]).await;
    let own = Tinyproxy::start("customer", "right-pass", PROXY_EGRESS, &[receiver.port]).await;
    let app = TestApp::spawn_with(Options {
        egress: operator_proxy(&operators.url("operator", "op-pass")),
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    ingest(&app, &organization, 2).await;
    let created = create_stream(
        &app,
        &organization,
        json!({"url": format!("http://127.0.0.1:{}/in", receiver.port),
               "egress_proxy": format!("http://127.0.0.1:{}", own.port),
               "egress_proxy_username": "customer", "egress_proxy_password": "wrong-pass",
               "batch": {"max_wait_seconds": 0}}),
    )
    .await;
    assert_eq!(created["config"]["egress_proxy_password"], "****pass");
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let failing = wait_for_state(&app, &id, "invalid").await;
    let reason = failing["last_error"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("http://127.0.0.1:{}", own.port))
            && reason.contains("refused the credentials"),
        "{failing}"
    );
    assert!(!reason.contains("wrong-pass"), "{failing}");
    assert!(receiver.events("user.signed_in").is_empty());

    let response = app
        .client
        .patch(app.url(&format!("/audit_logs/streams/{id}")))
        .bearer_auth(crate::helpers::ADMIN_KEY)
        .json(&json!({"config": {"egress_proxy_password": "right-pass"}}))
        .send()
        .await
        .expect("patch");
    let status = response.status();
    assert_eq!(status, 200, "{}", body(response).await);
    assert_eq!(receiver.wait_for("user.signed_in", 2).await.len(), 2);
    assert_eq!(wait_for_state(&app, &id, "active").await["state"], "active");
    assert!(own.connects_to(receiver.port) >= 1);
    assert_eq!(operators.connects_to(receiver.port), 0);
    assert!(receiver.refused().is_empty(), "{:?}", receiver.refused());

    create_stream(
        &app,
        &organization,
        json!({"url": format!("http://127.0.0.1:{}/in", direct.port), "egress_proxy": "none",
               "batch": {"max_wait_seconds": 0}}),
    )
    .await;
    assert_eq!(direct.wait_for("user.signed_in", 2).await.len(), 2);
    assert!(direct.refused().is_empty(), "{:?}", direct.refused());
    assert_eq!(operators.connects_to(direct.port), 0);
}

/// Issue 16 (fixed egress): a syslog stream's TLS connection goes through the proxy's tunnel
/// to a real rsyslog (tests/it/syslog.rs), the CONNECT in tinyproxy's log.
#[tokio::test]
async fn a_syslog_stream_over_tls_goes_through_the_proxy() {
    let pki = Pki::with_cas();
    pki.issue(
        "server",
        "/CN=trailmark syslog test server",
        &server_extensions("IP:127.0.0.1"),
    );
    pki.issue(
        "client",
        "/CN=trailmark syslog test client",
        CLIENT_EXTENSIONS,
    );
    let rsyslog = crate::syslog::Rsyslog::start(&pki).await;
    let proxy = Tinyproxy::start("trailmark", "s3cret", PROXY_EGRESS, &[rsyslog.port]).await;
    let app = TestApp::spawn_with(Options {
        egress: operator_proxy(&proxy.url("trailmark", "s3cret")),
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    ingest(&app, &organization, 2).await;
    let response = app
        .post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "syslog", "name": "rsyslog",
                    "start": "beginning",
                    "config": {"host": "127.0.0.1", "port": rsyslog.port,
                               "ca_certificate": pki.read("ca.pem"),
                               "client_certificate": pki.read("client.pem"),
                               "client_key": pki.read("client.key"),
                               "batch": {"max_wait_seconds": 0}}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let received = rsyslog.wait_for(2).await;
    let delivered = received
        .iter()
        .filter(|m| {
            m["msg"]
                .as_str()
                .is_some_and(|m| m.contains("user.signed_in"))
        })
        .count();
    assert_eq!(delivered, 2, "{received:?}");
    assert!(proxy.connects_to(rsyslog.port) >= 1);
}

/// Set when this test binary runs again inside a network namespace of its own.
const INSIDE_NETNS: &str = "TRAILMARK_TEST_INSIDE_NETNS";

/// Issue 16 (fixed egress): the private-destination guard still holds with a proxy. Inside a
/// network namespace with loopback only (`unshare -n`, the test runs itself again there), with
/// `--allow-private-destinations` off and the operator's proxy on loopback (trusted as
/// configured): a stream to a private address is refused when saved; a stream saved while
/// private addresses were allowed is refused at its next attempt, before the proxy is asked
/// for anything; a stream's own proxy on loopback is refused as any private target.
#[tokio::test]
async fn the_private_destination_guard_holds_through_the_proxy() {
    const NAME: &str = "egress::the_private_destination_guard_holds_through_the_proxy";
    if std::env::var_os(INSIDE_NETNS).is_none() {
        let output = Command::new("unshare")
            .args(["-n", "sh", "-c", r#"ip link set lo up && exec "$0" "$@""#])
            .arg(std::env::current_exe().expect("the test binary"))
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(INSIDE_NETNS, "1")
            // PostgreSQL is outside the namespace; the guard needs no particular backend.
            .env_remove("TRAILMARK_TEST_BACKEND")
            .output()
            .expect("unshare -n (needs root or CAP_SYS_ADMIN)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("egress guard checked"),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
    let receiver = Receiver::start(None, PROXY_EGRESS).await;
    let proxy = Tinyproxy::start("trailmark", "s3cret", PROXY_EGRESS, &[receiver.port]).await;
    let egress = operator_proxy(&proxy.url("trailmark", "s3cret"));
    let url = format!("http://localhost:{}/in", receiver.port);
    // Saved while private destinations were allowed (its creation's record delivered)…
    let app = TestApp::spawn_with(Options {
        egress: egress.clone(),
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    let created = create_stream(
        &app,
        &organization,
        json!({"url": url, "batch": {"max_wait_seconds": 0}}),
    )
    .await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    for _ in 0..400 {
        if receiver.requests() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(receiver.requests(), 1, "the creation's record arrived");
    let carried = proxy.connects_to(receiver.port);
    assert!(carried >= 1);
    // …then the server runs with the guard on.
    let app = app
        .restart_with(Options {
            egress,
            allow_private_destinations: false,
            ..Options::default()
        })
        .await;
    ingest(&app, &organization, 1).await;
    let stored = wait_for_state(&app, &id, "invalid").await;
    let reason = stored["last_error"].as_str().unwrap_or_default();
    assert!(reason.contains("--allow-private-destinations"), "{stored}");
    assert_eq!(proxy.connects_to(receiver.port), carried);
    assert!(receiver.events("user.signed_in").is_empty());

    let refused = app
        .post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "http", "name": "inward",
                    "config": {"url": url}}),
        )
        .await;
    assert_eq!(refused.status(), 422);
    let problem = body(refused).await["errors"][0].clone();
    assert_eq!(problem["code"], "forbidden_destination", "{problem}");
    let own_proxy = app
        .post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "http", "name": "own proxy",
                    "config": {"url": "http://192.0.2.1/in",
                               "egress_proxy": format!("http://127.0.0.1:{}", proxy.port)}}),
        )
        .await;
    assert_eq!(own_proxy.status(), 422);
    let problem = body(own_proxy).await["errors"][0].clone();
    assert_eq!(
        (&problem["code"], &problem["field"]),
        (
            &json!("forbidden_destination"),
            &json!("config.egress_proxy")
        ),
        "{problem}"
    );
    println!("egress guard checked");
}

/// `--egress-proxy` is set like every flag (here from the configuration file); its password
/// is a credential: the start line shows the proxy with the password masked, and a URL the
/// server refuses is named by its flag, not echoed.
#[test]
fn the_egress_proxy_setting_never_shows_its_password() {
    let directory = tempfile::tempdir().expect("dir");
    let config = directory.path().join("trailmark.toml");
    std::fs::write(
        &config,
        "egress-proxy = \"http://operator:hunter2-secret@127.0.0.1:9\"\n",
    )
    .expect("write the configuration");
    let config = config.display().to_string();
    let server = crate::helpers::LoggedServer::start(&[], &[("TRAILMARK_CONFIG", config.as_str())]);
    let log = server.log();
    assert!(log.contains("operator:****@127.0.0.1:9"), "{log}");
    assert!(!log.contains("hunter2-secret"), "{log}");

    let refused = Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(directory.path().join("data"))
        .args([
            "--egress-proxy",
            "https://operator:hunter2-secret@127.0.0.1:9",
        ])
        .env("TRAILMARK_API_KEY", crate::helpers::ADMIN_KEY)
        .env_remove("TRAILMARK_EGRESS_PROXY")
        .output()
        .expect("run trailmark");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--egress-proxy"), "{stderr}");
    assert!(!stderr.contains("hunter2-secret"), "{stderr}");
}
