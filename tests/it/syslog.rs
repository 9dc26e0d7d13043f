//! Syslog streams against a real rsyslog (Debian's `rsyslog` and `rsyslog-gnutls` packages),
//! run by the test as an unprivileged daemon on a loopback port with its own configuration:
//! TLS only (its GnuTLS stream driver), a client certificate required (`x509/certvalid`), every
//! message written as JSON lines of the fields rsyslog parsed, so the test reads what rsyslog
//! understood of each RFC 5424 message, octet-counted over TLS. Certificates are made by the
//! test with the `openssl` CLI.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, TestApp, body, event};
use crate::pki::{CLIENT_EXTENSIONS, Pki, server_extensions};

/// rsyslogd, stopped when dropped.
pub struct Rsyslog {
    child: Child,
    pub port: u16,
    received: PathBuf,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Rsyslog {
    /// Starts rsyslogd with `pki`'s server certificate on a free loopback port.
    pub async fn start(pki: &Pki) -> Rsyslog {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let directory = pki.directory();
        let received = directory.join("received.jsonl");
        let config = format!(
            r#"global(
  workDirectory="{dir}"
  maxMessageSize="64k"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="{dir}/ca.pem"
  defaultNetstreamDriverCertFile="{dir}/server.pem"
  defaultNetstreamDriverKeyFile="{dir}/server.key"
)
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
input(type="imtcp" address="127.0.0.1" port="{port}")
template(name="fields" type="list" option.jsonf="on") {{
  property(outname="facility" name="syslogfacility" format="jsonf")
  property(outname="severity" name="syslogseverity" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}
action(type="omfile" file="{received}" template="fields")
"#,
            dir = directory.display(),
            received = received.display(),
        );
        let config_path = directory.join("rsyslog.conf");
        std::fs::write(&config_path, config).expect("write the configuration");
        let check = Command::new("/usr/sbin/rsyslogd")
            .args(["-N1", "-f"])
            .arg(&config_path)
            .output()
            .expect("rsyslogd (Debian packages rsyslog and rsyslog-gnutls)");
        assert!(
            check.status.success(),
            "rsyslogd refuses the configuration: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new("/usr/sbin/rsyslogd")
            .args(["-n", "-f"])
            .arg(&config_path)
            .arg("-i")
            .arg(directory.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsyslogd");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Rsyslog {
            child,
            port,
            received,
        }
    }

    /// What rsyslog wrote: one object per message, the fields it parsed.
    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.received)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits (up to 15 s) until `count` messages were written.
    pub async fn wait_for(&self, count: usize) -> Vec<Value> {
        for _ in 0..600 {
            if self.received().len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.received()
    }
}

async fn ingest(app: &TestApp, organization: &str, from: usize, count: usize) {
    for n in from..from + count {
        let mut submitted = event("user.signed_in");
        submitted["metadata"] = json!({"n": n});
        assert_eq!(
            app.create_event(organization, &submitted, None)
                .await
                .status(),
            200
        );
    }
}

async fn stream(app: &TestApp, id: &str) -> Value {
    body(app.get(&format!("/audit_logs/streams/{id}")).await).await
}

/// Issue 16 (syslog): a stream over TLS with a client certificate reaches a real rsyslog; each
/// event arrives as one RFC 5424 message (facility log audit, severity informational, the
/// event's time, HOSTNAME and APP-NAME, MSGID `audit_log_event`) whose message is the event
/// object, in log order; switched to CEF, the next event arrives as a CEF record; a stream
/// that does not trust the server's CA is `invalid`, saying why.
#[tokio::test]
async fn syslog_over_tls_reaches_a_real_rsyslog_as_rfc_5424_json_then_cef() {
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
    let rsyslog = Rsyslog::start(&pki).await;
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    ingest(&app, &organization, 0, 3).await;
    let response = app
        .post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "syslog", "name": "rsyslog",
                    "start": "beginning",
                    "config": {"host": "127.0.0.1", "port": rsyslog.port,
                               "hostname": "trailmark-test", "app_name": "audit",
                               "ca_certificate": pki.read("ca.pem"),
                               "client_certificate": pki.read("client.pem"),
                               "client_key": pki.read("client.key"),
                               "batch": {"max_wait_seconds": 0}}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let created = body(response).await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let shown_key = created["config"]["client_key"].as_str().unwrap_or_default();
    assert!(
        shown_key.starts_with("****") && !shown_key.contains("PRIVATE"),
        "the client key is a credential: {created}"
    );
    assert_eq!(created["config"]["format"], "json");

    // The 3 events (0 to 2), then the record of the stream's creation (3).
    let received = rsyslog.wait_for(4).await;
    let ingested: Vec<&Value> = received
        .iter()
        .filter(|m| {
            m["msg"]
                .as_str()
                .is_some_and(|m| m.contains("user.signed_in"))
        })
        .collect();
    assert_eq!(ingested.len(), 3, "{received:?}");
    let mut sequences = Vec::new();
    for message in &ingested {
        assert_eq!(
            (
                message["facility"].as_str(),
                message["severity"].as_str(),
                message["version"].as_str(),
                message["hostname"].as_str(),
                message["app_name"].as_str(),
                message["msgid"].as_str(),
            ),
            (
                Some("13"),
                Some("6"),
                Some("1"),
                Some("trailmark-test"),
                Some("audit"),
                Some("audit_log_event")
            ),
            "{message}"
        );
        assert!(
            message["timestamp"]
                .as_str()
                .is_some_and(|t| t.starts_with("2026-08-01T10:00:00")),
            "{message}"
        );
        let event: Value = serde_json::from_str(message["msg"].as_str().unwrap_or_default().trim())
            .expect("the message is the event object");
        assert_eq!(event["organization_id"], organization.as_str());
        sequences.push(event["sequence"].as_u64().unwrap_or(u64::MAX));
    }
    assert_eq!(sequences, [0, 1, 2], "in log order");

    let response = app
        .client
        .patch(app.url(&format!("/audit_logs/streams/{id}")))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"config": {"format": "cef"}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), 200);
    ingest(&app, &organization, 3, 1).await;
    let cef_records = || -> Vec<String> {
        rsyslog
            .received()
            .iter()
            .filter_map(|m| m["msg"].as_str().map(str::trim).map(str::to_owned))
            .filter(|m| m.starts_with("CEF:0|Trailmark|Trailmark|1|user.signed_in|"))
            .collect()
    };
    for _ in 0..600 {
        if !cef_records().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let cef = cef_records();
    assert_eq!(cef.len(), 1, "{:?}", rsyslog.received());
    assert!(
        cef[0].contains(&format!("cs3Label=organization_id cs3={organization}"))
            && cef[0].contains("cn1Label=sequence cn1=")
            && cef[0].contains("suid=user_1"),
        "{}",
        cef[0]
    );

    // A stream that trusts another CA refuses the server's certificate.
    let response = app
        .post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "syslog", "name": "untrusted",
                    "config": {"host": "127.0.0.1", "port": rsyslog.port,
                               "ca_certificate": pki.read("other-ca.pem"),
                               "client_certificate": pki.read("client.pem"),
                               "client_key": pki.read("client.key")}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let untrusted = body(response).await["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ingest(&app, &organization, 4, 1).await;
    let mut last = json!(null);
    for _ in 0..400 {
        last = stream(&app, &untrusted).await;
        if last["state"] == "invalid" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(last["state"], "invalid", "{last}");
    assert!(
        last["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate")),
        "{last}"
    );
}

/// Bad syslog settings are refused naming each field.
#[tokio::test]
async fn syslog_settings_are_checked_field_by_field() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let response = app
        .post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "syslog", "name": "rsyslog",
                    "config": {"host": "tls://siem.example.com:6514", "port": 70000,
                               "format": "leef", "ca_certificate": "not a certificate",
                               "client_certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let fields: Vec<String> = body(response).await["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["field"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        fields,
        [
            "config.host",
            "config.port",
            "config.format",
            "config.ca_certificate",
            "config.client_key"
        ]
    );
}
