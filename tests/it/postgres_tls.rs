//! PostgreSQL over TLS, against a private cluster that accepts only TLS (`hostssl`, and
//! `hostnossl … reject`) with a certificate from a CA this test makes with the `openssl` CLI:
//! every `sslmode` does what libpq's does, through the real `trailmark` binary, and a
//! certificate or host name the mode rejects stops it at startup with a message saying so.
//!
//! Like the scale-out tests these always run on PostgreSQL; they run in the PostgreSQL pass.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{PrivateCluster, ServerProcess, TestDatabase, event, get, organization, post};
use crate::pki::{Pki, server_extensions};

const PASSWORD: &str = "tls-test-password";

/// A cluster serving `pki`'s certificate that refuses unencrypted TCP connections and wants the
/// superuser's password (SCRAM) over encrypted ones.
fn tls_only_cluster(pki: &Pki) -> PrivateCluster {
    let cluster = PrivateCluster::create_configured(|data: &Path| {
        for file in ["server.pem", "server.key"] {
            std::fs::copy(pki.path(file), data.join(file)).expect("copy");
        }
        // PostgreSQL refuses a private key others can read.
        set_mode(&data.join("server.key"), 0o600);
        append(
            &data.join("postgresql.conf"),
            "ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n",
        );
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n\
             hostnossl all all 127.0.0.1/32 reject\n",
        )
        .expect("pg_hba.conf");
    });
    cluster.sql(&format!("ALTER USER postgres PASSWORD '{PASSWORD}'"));
    cluster
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open");
    file.write_all(text.as_bytes()).expect("append");
}

/// The cluster's URL for `host`, with `parameters` as the query string.
fn url(cluster: &PrivateCluster, host: &str, parameters: &str) -> String {
    format!(
        "postgres://postgres:{PASSWORD}@{host}:{}/postgres?{parameters}",
        cluster.port
    )
}

/// Runs `trailmark <args>` over a fresh data directory until it exits (at most a minute).
fn trailmark(args: &[&str], database: &str) -> Output {
    let data_dir = tempfile::tempdir().expect("dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("TRAILMARK_DATABASE_URL", database)
        .env("TRAILMARK_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start trailmark");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("trailmark {args:?} still runs after a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// `trailmark serve` over `database` must exit at startup; returns what it printed.
fn refused_at_startup(database: &str) -> String {
    let output = trailmark(&["serve", "--listen", "127.0.0.1:0"], database);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "started: {stderr}");
    assert!(
        !stderr.contains("panicked"),
        "a message, not a panic: {stderr}"
    );
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_right_root_serves_events_over_encrypted_connections_only() {
    let pki = Pki::with_cas();
    pki.issue(
        "server",
        "/CN=localhost",
        &server_extensions("DNS:localhost"),
    );
    let cluster = tls_only_cluster(&pki);
    let database = TestDatabase::Postgres {
        dropped_as: None,
        url: url(
            &cluster,
            "localhost",
            // The password exchange must be bound to the TLS session (SCRAM-SHA-256-PLUS).
            &format!(
                "sslmode=verify-full&sslrootcert={}&channel_binding=require",
                pki.path("ca.pem").display()
            ),
        ),
    };
    let data_dir = tempfile::tempdir().expect("dir");
    let server = ServerProcess::start(data_dir.path(), &database, &[]);
    let client = reqwest::Client::new();

    let organization = organization(&client, &server.base).await;
    let appended = post(
        &client,
        &server.base,
        "/audit_logs/events",
        json!({"organization_id": organization, "event": event("user.signed_in")}),
    )
    .await;
    assert_eq!(appended.status(), 200);
    let receipt: Value = appended.json().await.expect("receipt");
    let page = get(
        &client,
        &server.base,
        &format!("/audit_logs/events?organization_id={organization}"),
    )
    .await;
    assert_eq!(page["data"][0]["id"], receipt["id"], "{page}");
    assert_eq!(page["data"][0]["action"], "user.signed_in");

    // Every backend serving the application is encrypted, and the view can say otherwise: the
    // psql session asking (over the Unix socket) is not.
    let application = cluster.sql(
        "SELECT count(*) || ' ' || bool_and(s.ssl) || ' ' || min(s.version) \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = 'trailmark' AND a.client_addr IS NOT NULL",
    );
    let fields: Vec<&str> = application.split_whitespace().collect();
    assert!(
        fields[0].parse::<u32>().expect("count") >= 1,
        "{application}"
    );
    assert_eq!(fields[1..], ["true", "TLSv1.3"], "{application}");
    let asking = cluster.sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    assert_eq!(asking.trim(), "f");
}

#[test]
fn verify_full_refuses_a_certificate_from_another_ca_at_startup() {
    let pki = Pki::with_cas();
    pki.issue(
        "server",
        "/CN=localhost",
        &server_extensions("DNS:localhost"),
    );
    let cluster = tls_only_cluster(&pki);
    let stderr = refused_at_startup(&url(
        &cluster,
        "localhost",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            pki.path("other-ca.pem").display()
        ),
    ));
    let target = format!(
        "localhost:{} (sslmode=verify-full, sslrootcert={})",
        cluster.port,
        pki.path("other-ca.pem").display()
    );
    assert!(stderr.contains(&target), "{stderr}");
    assert!(stderr.contains("TLS handshake"), "{stderr}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert!(
        !stderr.contains(PASSWORD),
        "the password is not printed: {stderr}"
    );
}

#[test]
fn verify_full_refuses_a_host_name_the_certificate_does_not_name_but_verify_ca_accepts_it() {
    let pki = Pki::with_cas();
    pki.issue(
        "server",
        "/CN=localhost",
        &server_extensions("DNS:localhost"),
    );
    let cluster = tls_only_cluster(&pki);
    let root = format!("sslrootcert={}", pki.path("ca.pem").display());
    let stderr = refused_at_startup(&url(
        &cluster,
        "127.0.0.1",
        &format!("sslmode=verify-full&{root}"),
    ));
    assert!(
        stderr.contains(&format!("127.0.0.1:{} (sslmode=verify-full,", cluster.port)),
        "{stderr}"
    );
    assert!(
        stderr.contains("certificate not valid for name \"127.0.0.1\""),
        "{stderr}"
    );

    // verify-ca checks the chain only, so the same URL works for another subcommand.
    let migrated = trailmark(
        &["migrate"],
        &url(&cluster, "127.0.0.1", &format!("sslmode=verify-ca&{root}")),
    );
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert!(String::from_utf8_lossy(&migrated.stdout).contains("schema is up to date"));
    // …but not a chain to a root it was not given.
    let other = format!("sslrootcert={}", pki.path("other-ca.pem").display());
    let stderr = refused_at_startup(&url(
        &cluster,
        "127.0.0.1",
        &format!("sslmode=verify-ca&{other}"),
    ));
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
}

#[test]
fn sslmode_disable_is_refused_by_a_server_that_accepts_only_tls() {
    let pki = Pki::with_cas();
    pki.issue(
        "server",
        "/CN=localhost",
        &server_extensions("DNS:localhost"),
    );
    let cluster = tls_only_cluster(&pki);
    let stderr = refused_at_startup(&url(&cluster, "127.0.0.1", "sslmode=disable"));
    assert!(
        stderr.contains(&format!("127.0.0.1:{} (sslmode=disable)", cluster.port)),
        "{stderr}"
    );
    assert!(stderr.contains("no encryption"), "{stderr}");
}

#[test]
fn require_and_the_default_prefer_encrypt_without_a_root_certificate_and_require_checks_a_given_one()
 {
    let pki = Pki::with_cas();
    pki.issue(
        "server",
        "/CN=localhost",
        &server_extensions("DNS:localhost"),
    );
    let cluster = tls_only_cluster(&pki);
    // Neither mode checks the certificate, so an address the certificate does not name is fine.
    for parameters in [
        "sslmode=require&channel_binding=require",
        "connect_timeout=10",
    ] {
        let created = trailmark(
            &["keys", "create", "--scope", "read"],
            &url(&cluster, "127.0.0.1", parameters),
        );
        assert!(
            created.status.success(),
            "{parameters}: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        assert!(
            String::from_utf8_lossy(&created.stdout).contains("sk_"),
            "{parameters}"
        );
    }
    let keys = cluster.sql("SELECT count(*) FROM api_keys WHERE scope = 'read'");
    assert_eq!(keys.trim(), "2");

    // Given a root certificate, `require` checks the chain against it, as libpq does.
    let stderr = refused_at_startup(&url(
        &cluster,
        "127.0.0.1",
        &format!(
            "sslmode=require&sslrootcert={}",
            pki.path("other-ca.pem").display()
        ),
    ));
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
}

#[test]
fn a_bad_sslmode_or_a_missing_root_file_stops_every_subcommand_naming_the_parameter() {
    // Checked before any connection is tried: no server is needed.
    let unreachable = "postgres://postgres@127.0.0.1:9/postgres";
    for args in [
        &["serve", "--listen", "127.0.0.1:0"][..],
        &["migrate"],
        &["keys", "create"],
    ] {
        let output = trailmark(args, &format!("{unreachable}?sslmode=verify_full"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr.contains("sslmode=\"verify_full\" is not one of"),
            "{args:?}: {stderr}"
        );
        let output = trailmark(
            args,
            &format!("{unreachable}?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr.contains("sslrootcert=/nonexistent/ca.pem: No such file"),
            "{args:?}: {stderr}"
        );
    }
}
