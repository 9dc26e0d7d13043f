//! The server's logs, read from the real binary's standard error: JSON lines with the access
//! log's fields, a readable start line, filters in `RUST_LOG` syntax, no colour off a terminal,
//! and never a secret.

use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, LoggedServer};

/// Sends a request carrying our own request id, so its access line can be found.
async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    request_id: &str,
    key: Option<&str>,
    body: Option<Vec<u8>>,
) -> u16 {
    let mut request = client
        .request(method, url)
        .header("X-Request-ID", request_id);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body);
    }
    request.send().await.expect("request").status().as_u16()
}

/// A request to send and the status it must get: request id, method, path, key, body, status.
type Case<'a> = (
    &'a str,
    reqwest::Method,
    &'a str,
    Option<&'a str>,
    Option<Vec<u8>>,
    u16,
);

fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect()
}

#[tokio::test]
async fn json_logs_have_an_access_line_per_request_and_never_a_secret() {
    let server = LoggedServer::start(
        &[
            "--log-format",
            "json",
            "--log",
            "debug",
            "--max-body-bytes",
            "1000",
        ],
        &[],
    );
    let client = reqwest::Client::new();
    let base = server.base().to_owned();
    let ingest_key = {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_trailmark"))
            .args([
                "keys",
                "create",
                "--scope",
                "ingest",
                "--json",
                "--data-dir",
            ])
            .arg(server.data_dir.path())
            .env_remove("TRAILMARK_DATABASE_URL")
            .env_remove("TRAILMARK_DATABASE")
            .output()
            .expect("keys create");
        assert!(output.status.success(), "{output:?}");
        let created: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        created["key"].as_str().expect("key").to_owned()
    };

    let cases: Vec<Case> = vec![
        (
            "req_log_ok",
            reqwest::Method::GET,
            "/healthz",
            None,
            None,
            200,
        ),
        (
            "req_log_created",
            reqwest::Method::POST,
            "/organizations",
            Some(ADMIN_KEY),
            Some(json!({"name": "Acme"}).to_string().into_bytes()),
            201,
        ),
        (
            "req_log_401",
            reqwest::Method::GET,
            "/organizations",
            Some("sk_wrong"),
            None,
            401,
        ),
        (
            "req_log_403",
            reqwest::Method::GET,
            "/organizations",
            Some(&ingest_key),
            None,
            403,
        ),
        (
            "req_log_404",
            reqwest::Method::GET,
            "/nowhere",
            None,
            None,
            404,
        ),
        (
            "req_log_405",
            reqwest::Method::PUT,
            "/healthz",
            None,
            None,
            405,
        ),
        (
            "req_log_413",
            reqwest::Method::POST,
            "/organizations",
            Some(ADMIN_KEY),
            Some(vec![b' '; 5000]),
            413,
        ),
        (
            "req_log_422",
            reqwest::Method::POST,
            "/organizations",
            Some(ADMIN_KEY),
            Some(b"{}".to_vec()),
            422,
        ),
    ];
    for (id, method, path, key, body, status) in &cases {
        let answered = send(
            &client,
            method.clone(),
            format!("{base}{path}"),
            id,
            *key,
            body.clone(),
        )
        .await;
        assert_eq!(answered, *status, "{method} {path}");
    }
    // Every line is written before the answer leaves; give the writer a moment to reach the file.
    let mut log = String::new();
    for _ in 0..100 {
        log = server.log();
        if log.contains("req_log_422") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    assert!(!log.contains(ADMIN_KEY), "the admin key was logged");
    assert!(!log.contains(&ingest_key), "an API key was logged");
    assert!(!log.contains("\u{1b}["), "colour codes off a terminal");
    let lines = json_lines(&log);
    for line in &lines {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(line[field].is_string(), "no {field}: {line}");
        }
        let timestamp = line["timestamp"].as_str().unwrap_or_default();
        assert!(
            timestamp.len() == 24 && timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T',
            "timestamp {timestamp}"
        );
    }

    let start = lines
        .iter()
        .find(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.contains("serving on"))
        })
        .expect("a start line");
    assert_eq!(start["level"], "info");
    assert_eq!(start["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(start["listen"], base.trim_start_matches("http://"));
    assert!(
        start["database"]
            .as_str()
            .is_some_and(|d| d.starts_with("sqlite://")),
        "{start}"
    );
    assert_eq!(start["private_destinations"], "refused");
    assert!(
        !start.to_string().contains("secrets_key") && !start.to_string().contains("Debug"),
        "{start}"
    );

    for (id, method, path, _, _, status) in &cases {
        let access: Vec<&Value> = lines
            .iter()
            .filter(|line| line["target"] == "trailmark::access" && line["request_id"] == *id)
            .collect();
        assert_eq!(access.len(), 1, "one access line for {id}: {log}");
        let access = access[0];
        assert_eq!(access["level"], "info");
        assert_eq!(access["method"], method.as_str());
        assert_eq!(access["status"], *status, "{access}");
        assert!(access["latency_ms"].as_f64().is_some_and(|l| l >= 0.0));
        let route = access["route"].as_str().expect("route");
        if *status == 404 {
            assert_eq!(route, "unmatched");
        } else {
            assert_eq!(route, *path);
        }
    }
}

#[tokio::test]
async fn text_logs_honour_rust_log_filters_and_have_no_colour_off_a_terminal() {
    // RUST_LOG applies when neither --log nor TRAILMARK_LOG is given.
    let quiet = LoggedServer::start(&[], &[("RUST_LOG", "warn")]);
    let client = reqwest::Client::new();
    let ok = send(
        &client,
        reqwest::Method::GET,
        format!("{}/healthz", quiet.base()),
        "req_quiet",
        None,
        None,
    )
    .await;
    assert_eq!(ok, 200);
    // --log wins over RUST_LOG: only the access log, at info.
    let access_only = LoggedServer::start(
        &["--log", "warn,trailmark::access=info"],
        &[("RUST_LOG", "debug")],
    );
    let ok = send(
        &client,
        reqwest::Method::GET,
        format!("{}/healthz", access_only.base()),
        "req_access_only",
        None,
        None,
    )
    .await;
    assert_eq!(ok, 200);
    let mut log = String::new();
    for _ in 0..100 {
        log = access_only.log();
        if log.contains("req_access_only") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        log.contains("req_access_only") && log.contains("trailmark::access"),
        "{log}"
    );
    assert!(log.contains("status=200"), "{log}");
    assert!(
        !log.contains("serving on"),
        "the info start line passed a warn filter: {log}"
    );
    assert!(
        !log.contains("\u{1b}["),
        "colour codes off a terminal: {log}"
    );
    assert!(!quiet.log().contains("req_quiet"), "{}", quiet.log());
    assert!(!quiet.log().contains("serving on"), "{}", quiet.log());

    // An invalid filter stops the server with a message naming it.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log", "=[{"])
        .env_remove("RUST_LOG")
        .env_remove("TRAILMARK_LOG")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a valid log filter"), "{stderr}");
}
