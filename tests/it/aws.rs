//! S3 streams the way AWS users set them up, against moto (`moto[server]` from PyPI: IAM, STS
//! and S3 on one port; `./scripts/test` installs it and points `TRAILMARK_MOTO_SERVER` at its
//! `moto_server`). Each test builds its account first with IAM checks off, then turns moto's
//! IAM authentication on (`/moto-api/reset-auth`), from when moto recomputes every request's
//! SigV4 signature with botocore, checks a session token against the one it issued, evaluates
//! the caller's identity policies and, for `AssumeRole`, the role's trust policy with its
//! `sts:ExternalId` condition (moto's `iam/access_control.py`). Objects are read back with IAM
//! checks off again.
//!
//! moto does not check a web identity token (any token is exchanged), keeps no record of the
//! `bucket-owner-full-control` grant (it accepts the canned ACL and stores nothing for it), and
//! serves instance metadata only at 169.254.169.254 without requiring IMDSv2's token, and has
//! no container credentials endpoint; so those two tests use strict local stand-ins on loopback
//! (named so), which hand out credentials of a session moto issued, so moto still checks every
//! request signed with them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use trailmark_domain::Timestamp;
use trailmark_streams::s3::credentials::{DefaultChain, WebIdentity};

use crate::helpers::{ADMIN_KEY, Options, TestApp, body, event};

const ACCOUNT: &str = "123456789012";
const BUCKET: &str = "audit-bucket";
const ROLE: &str = "trailmark-audit-logs";
const EXTERNAL_ID: &str = "trailmark-org-7f3a9c";

/// An `Authorization` header that only tells moto which service a request is for, while its
/// IAM checks are off.
const S3_SETUP: &str = "AWS4-HMAC-SHA256 Credential=AKIDSETUP/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

/// A running moto server.
struct Moto {
    child: std::process::Child,
    url: String,
    client: reqwest::Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn moto() -> Moto {
    let binary = std::env::var("TRAILMARK_MOTO_SERVER").unwrap_or_else(|_| {
        panic!(
            "TRAILMARK_MOTO_SERVER must name moto's moto_server; ./scripts/test installs \
             moto[server] from PyPI into .venv and sets it"
        )
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("address")
        .port();
    let child = std::process::Command::new(&binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start moto_server at {binary}: {e}"));
    let moto = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
    };
    for _ in 0..800 {
        let up = moto
            .client
            .get(format!("{}/moto-api/data.json", moto.url))
            .send()
            .await;
        if up.is_ok_and(|r| r.status().is_success()) {
            return moto;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("moto_server did not start");
}

/// The text of `<name>…</name>` in `xml`.
fn xml_text(xml: &str, name: &str) -> String {
    xml.split(&format!("<{name}>"))
        .nth(1)
        .and_then(|rest| rest.split(&format!("</{name}>")).next())
        .unwrap_or_default()
        .to_owned()
}

impl Moto {
    /// An IAM Query API call (made while IAM checks are off; the header only routes it).
    async fn iam(&self, params: &[(&str, &str)]) -> String {
        let mut form = vec![("Version", "2010-05-08")];
        form.extend_from_slice(params);
        let response = self
            .client
            .post(format!("{}/", self.url))
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDSETUP/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
            )
            .form(&form)
            .send()
            .await
            .expect("moto IAM");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{params:?}: {status} {text}");
        text
    }

    /// A role with `trust` as its trust policy, allowed to write objects into the bucket.
    async fn role(&self, name: &str, trust: &Value) -> String {
        let created = self
            .iam(&[
                ("Action", "CreateRole"),
                ("RoleName", name),
                ("AssumeRolePolicyDocument", &trust.to_string()),
            ])
            .await;
        let write = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["s3:PutObject", "s3:PutObjectAcl"], "Resource": format!("arn:aws:s3:::{BUCKET}/*")}]});
        self.iam(&[
            ("Action", "PutRolePolicy"),
            ("RoleName", name),
            ("PolicyName", "write-audit-logs"),
            ("PolicyDocument", &write.to_string()),
        ])
        .await;
        xml_text(&created, "Arn")
    }

    /// An IAM user that may call `sts:AssumeRole` (Trailmark's own identity), and its keys.
    async fn trailmark_user(&self) -> (String, String, String) {
        let created = self
            .iam(&[("Action", "CreateUser"), ("UserName", "trailmark")])
            .await;
        let assume = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "sts:AssumeRole", "Resource": "*"}]});
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", "trailmark"),
            ("PolicyName", "assume-customer-roles"),
            ("PolicyDocument", &assume.to_string()),
        ])
        .await;
        let key = self
            .iam(&[("Action", "CreateAccessKey"), ("UserName", "trailmark")])
            .await;
        (
            xml_text(&created, "Arn"),
            xml_text(&key, "AccessKeyId"),
            xml_text(&key, "SecretAccessKey"),
        )
    }

    async fn create_bucket(&self) {
        let response = self
            .client
            .put(format!("{}/{BUCKET}", self.url))
            .header("authorization", S3_SETUP)
            .send()
            .await
            .expect("create bucket");
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// Turns IAM authentication on (every request checked) or off.
    async fn iam_checks(&self, on: bool) {
        let response = self
            .client
            .post(format!("{}/moto-api/reset-auth", self.url))
            .body(if on { "0" } else { "inf" })
            .send()
            .await
            .expect("reset-auth");
        assert!(response.status().is_success());
    }

    /// The bucket's event objects (not checkpoints), as (key, headers it is served with), sorted.
    async fn objects(&self) -> Vec<(String, HeaderMap)> {
        let listing = self
            .client
            .get(format!("{}/{BUCKET}?list-type=2", self.url))
            .header("authorization", S3_SETUP)
            .send()
            .await
            .expect("list")
            .text()
            .await
            .unwrap_or_default();
        let mut keys: Vec<String> = listing
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next())
            .filter(|key| !key.starts_with("checkpoints/"))
            .map(str::to_owned)
            .collect();
        keys.sort();
        let mut found = Vec::new();
        for key in keys {
            // A GET, not a HEAD: moto answers HEAD of an encrypted object written under IAM
            // checks with 403.
            let got = self
                .client
                .get(format!("{}/{BUCKET}/{key}", self.url))
                .header("authorization", S3_SETUP)
                .send()
                .await
                .expect("get");
            assert!(got.status().is_success(), "GET {key}: {}", got.status());
            found.push((key, got.headers().clone()));
        }
        found
    }

    /// The sessions moto's STS issued: (role ARN, session name, external id).
    async fn sessions(&self) -> Vec<(String, String, Value)> {
        let data: Value = self
            .client
            .get(format!("{}/moto-api/data.json", self.url))
            .send()
            .await
            .expect("data")
            .json()
            .await
            .unwrap_or_default();
        data["sts"]["AssumedRole"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|role| {
                (
                    role["role_arn"].as_str().unwrap_or_default().to_owned(),
                    role["session_name"].as_str().unwrap_or_default().to_owned(),
                    role["external_id"].clone(),
                )
            })
            .collect()
    }
}

/// The customer's trust policy: Trailmark's principal, with the external id required.
fn trust_policy(principal: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": principal}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}}}]})
}

async fn create_stream(app: &TestApp, organization: &str, config: Value) -> String {
    let response = app
        .post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "s3", "name": "S3", "config": config}),
        )
        .await;
    let status = response.status();
    let created = body(response).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap_or_default().to_owned()
}

/// Submits `count` events, each its own object (keys are named after `occurred_at` and id).
async fn ingest(app: &TestApp, organization: &str, count: usize) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    for _ in 0..count {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let mut submitted = event("user.signed_in");
        submitted["occurred_at"] = json!(format!(
            "2026-08-01T{:02}:{:02}:{:02}.000Z",
            n / 3600 % 24,
            n / 60 % 60,
            n % 60
        ));
        assert_eq!(
            app.create_event(organization, &submitted, None)
                .await
                .status(),
            200
        );
    }
}

/// The stream once it is `state` with nothing left to deliver (`active`), or in `state`.
async fn wait_for(app: &TestApp, id: &str, state: &str) -> Value {
    let mut last = json!(null);
    for _ in 0..600 {
        last = body(app.get(&format!("/audit_logs/streams/{id}")).await).await;
        if last["state"] == state && (state != "active" || last["lag_events"] == 0) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("stream {id} never became {state}: {last}");
}

/// Waits until the bucket holds `count` event objects.
async fn wait_objects(moto: &Moto, count: usize) -> Vec<(String, HeaderMap)> {
    let mut found = Vec::new();
    for _ in 0..400 {
        found = moto.objects().await;
        if found.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    found
}

/// moto with Trailmark's IAM user, the customer's role trusting it with [`EXTERNAL_ID`], and
/// the bucket; IAM checks on. Answers the user's keys and the role's ARN.
async fn customer_account(moto: &Moto) -> (String, String, String) {
    let (user_arn, key_id, secret) = moto.trailmark_user().await;
    let role_arn = moto.role(ROLE, &trust_policy(&user_arn)).await;
    assert_eq!(role_arn, format!("arn:aws:iam::{ACCOUNT}:role/{ROLE}"));
    moto.create_bucket().await;
    moto.iam_checks(true).await;
    (key_id, secret, role_arn)
}

#[tokio::test]
async fn s3_assumes_the_customers_role_with_its_external_id_and_writes_encrypted_objects() {
    let moto = moto().await;
    let (key_id, secret, role_arn) = customer_account(&moto).await;
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let id = create_stream(
        &app,
        &organization,
        json!({"bucket": BUCKET, "region": "us-east-1", "endpoint": moto.url, "sts_endpoint": moto.url,
               "access_key_id": key_id, "secret_access_key": secret,
               "role_arn": role_arn, "external_id": EXTERNAL_ID,
               "server_side_encryption": "aws:kms", "kms_key_id": "alias/audit-logs",
               "acl": "bucket-owner-full-control"}),
    )
    .await;
    ingest(&app, &organization, 5).await;
    let shown = wait_for(&app, &id, "active").await;
    assert_eq!(shown["config"]["role_arn"], role_arn.as_str());
    assert_eq!(shown["config"]["external_id"], EXTERNAL_ID);
    moto.iam_checks(false).await;
    let objects = moto.objects().await;
    assert_eq!(
        objects.len(),
        5,
        "{:?}",
        objects.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    for (key, headers) in &objects {
        assert_eq!(
            headers
                .get("x-amz-server-side-encryption")
                .and_then(|v| v.to_str().ok()),
            Some("aws:kms"),
            "{key}"
        );
        assert_eq!(
            headers
                .get("x-amz-server-side-encryption-aws-kms-key-id")
                .and_then(|v| v.to_str().ok()),
            Some("alias/audit-logs"),
            "{key}"
        );
    }
    assert_eq!(
        moto.sessions().await,
        [(
            role_arn.clone(),
            format!("trailmark-{id}"),
            json!(EXTERNAL_ID)
        )],
        "one AssumeRole, its credentials cached for every PUT"
    );
}

#[tokio::test]
async fn s3_a_wrong_external_id_is_invalid_naming_the_refusal_and_the_fix_loses_nothing() {
    let moto = moto().await;
    let (key_id, secret, role_arn) = customer_account(&moto).await;
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let id = create_stream(
        &app,
        &organization,
        json!({"bucket": BUCKET, "region": "us-east-1", "endpoint": moto.url, "sts_endpoint": moto.url,
               "access_key_id": key_id, "secret_access_key": secret,
               "role_arn": role_arn, "external_id": "someone-elses-id",
               "server_side_encryption": "AES256"}),
    )
    .await;
    ingest(&app, &organization, 4).await;
    let invalid = wait_for(&app, &id, "invalid").await;
    let error = invalid["last_error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("AssumeRole refused: AccessDenied: ") && error.contains(&role_arn),
        "{invalid}"
    );
    assert!(moto.sessions().await.is_empty(), "moto refused the session");

    let fixed = app
        .client
        .patch(app.url(&format!("/audit_logs/streams/{id}")))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"config": {"external_id": EXTERNAL_ID}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(fixed.status(), 200);
    wait_for(&app, &id, "active").await;
    moto.iam_checks(false).await;
    // From `now`: the 4 events and the record of the PATCH, each an object.
    let objects = wait_objects(&moto, 5).await;
    assert_eq!(objects.len(), 5, "every event delivered once fixed");
    assert!(objects.iter().all(|(_, headers)| {
        headers
            .get("x-amz-server-side-encryption")
            .is_some_and(|v| v == "AES256")
    }));
}

#[tokio::test]
async fn s3_assumed_credentials_are_replaced_five_minutes_before_they_expire() {
    let moto = moto().await;
    let (key_id, secret, role_arn) = customer_account(&moto).await;
    // The streams' clock: moved forward instead of waiting out moto's hour-long credentials.
    let ahead = Arc::new(AtomicI64::new(0));
    let clock = {
        let ahead = Arc::clone(&ahead);
        trailmark_streams::worker::Clock::new(move || {
            Timestamp::now().plus_millis(ahead.load(Ordering::SeqCst))
        })
    };
    let app = TestApp::spawn_with(Options {
        stream_clock: clock,
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    let id = create_stream(
        &app,
        &organization,
        json!({"bucket": BUCKET, "region": "us-east-1", "endpoint": moto.url, "sts_endpoint": moto.url,
               "access_key_id": key_id, "secret_access_key": secret,
               "role_arn": role_arn, "external_id": EXTERNAL_ID}),
    )
    .await;
    ingest(&app, &organization, 2).await;
    wait_for(&app, &id, "active").await;
    ingest(&app, &organization, 2).await;
    wait_for(&app, &id, "active").await;
    assert_eq!(moto.sessions().await.len(), 1, "still fresh: cached");

    // 54 minutes on: six minutes left, still used.
    ahead.store(54 * 60 * 1000, Ordering::SeqCst);
    ingest(&app, &organization, 2).await;
    wait_for(&app, &id, "active").await;
    assert_eq!(moto.sessions().await.len(), 1);
    // 56 minutes on: within five minutes of expiry, replaced before the next PUT.
    ahead.store(56 * 60 * 1000, Ordering::SeqCst);
    ingest(&app, &organization, 2).await;
    wait_for(&app, &id, "active").await;
    assert_eq!(moto.sessions().await.len(), 2, "a new AssumeRole");
    moto.iam_checks(false).await;
    assert_eq!(moto.objects().await.len(), 8);
}

#[tokio::test]
async fn s3_without_keys_is_invalid_unless_the_operator_lends_trailmarks_credentials() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let id = create_stream(
        &app,
        &organization,
        json!({"bucket": BUCKET, "region": "us-east-1", "endpoint": "http://127.0.0.1:9",
               "sts_endpoint": "http://127.0.0.1:9",
               "role_arn": format!("arn:aws:iam::{ACCOUNT}:role/{ROLE}"), "external_id": EXTERNAL_ID}),
    )
    .await;
    ingest(&app, &organization, 1).await;
    let invalid = wait_for(&app, &id, "invalid").await;
    assert!(
        invalid["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("--aws-default-credentials"),
        "{invalid}"
    );
    let refused = app
        .post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "s3", "name": "S3",
                    "config": {"bucket": BUCKET, "region": "us-east-1", "access_key_id": "AKIDONLY",
                               "role_arn": "arn:aws:s3:::not-a-role", "kms_key_id": "k", "acl": "public-read"}}),
        )
        .await;
    assert_eq!(refused.status(), 422);
    let problems = body(refused).await;
    let fields: Vec<&str> = problems["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["field"].as_str())
        .collect();
    for field in [
        "config.secret_access_key",
        "config.role_arn",
        "config.kms_key_id",
        "config.acl",
    ] {
        assert!(fields.contains(&field), "{field} in {problems}");
    }
}

#[tokio::test]
async fn s3_default_chain_web_identity_token_file_is_exchanged_for_the_role() {
    let moto = moto().await;
    let role_arn = moto
        .role(
            "trailmark-pod",
            &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.example")},
                "Action": "sts:AssumeRoleWithWebIdentity"}]}),
        )
        .await;
    moto.create_bucket().await;
    let dir = tempfile::tempdir().expect("dir");
    let token_file = dir.path().join("token");
    std::fs::write(
        &token_file,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0cmFpbG1hcmsifQ.c2ln\n",
    )
    .expect("token file");
    let chain = DefaultChain {
        web_identity: Some(WebIdentity {
            token_file,
            role_arn: role_arn.clone(),
            session_name: "trailmark-host".into(),
            sts_endpoint: moto.url.clone(),
            region: "us-east-1".into(),
        }),
        ..DefaultChain::default()
    };
    let app = TestApp::spawn_with(Options {
        aws_default_chain: Some(chain),
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    let id = create_stream(
        &app,
        &organization,
        json!({"bucket": BUCKET, "region": "us-east-1", "endpoint": moto.url}),
    )
    .await;
    ingest(&app, &organization, 2).await;
    wait_for(&app, &id, "active").await;
    assert_eq!(
        moto.sessions().await,
        [(role_arn, "trailmark-host".to_owned(), Value::Null)]
    );
    // From here moto checks each PUT's signature and session token against the session it
    // issued, and the role's policy: the cached web identity credentials pass.
    moto.iam_checks(true).await;
    ingest(&app, &organization, 3).await;
    let state = wait_for(&app, &id, "active").await;
    assert_eq!(state["last_error"], Value::Null, "{state}");
    moto.iam_checks(false).await;
    assert_eq!(moto.objects().await.len(), 5);
}

/// What the IMDSv2 stand-in issued and saw.
#[derive(Default)]
struct Imds {
    tokens: Mutex<Vec<String>>,
    refused: Mutex<Vec<String>>,
    credentials: Mutex<Value>,
}

/// A strict IMDSv2 stand-in: `PUT /latest/api/token` with a TTL header issues a token; every
/// `GET` must carry an issued token in `X-aws-ec2-metadata-token`, else 401 (as an instance
/// that requires IMDSv2 answers).
async fn imds_stand_in(state: Arc<Imds>) -> String {
    async fn token(State(state): State<Arc<Imds>>, headers: HeaderMap) -> (StatusCode, String) {
        let ttl = headers
            .get("x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok());
        if !ttl.is_some_and(|ttl| (1..=21_600).contains(&ttl)) {
            return (StatusCode::BAD_REQUEST, String::new());
        }
        let issued = format!("imds-token-{}", state.tokens.lock().map_or(0, |t| t.len()));
        if let Ok(mut tokens) = state.tokens.lock() {
            tokens.push(issued.clone());
        }
        (StatusCode::OK, issued)
    }
    async fn metadata(
        State(state): State<Arc<Imds>>,
        uri: axum::http::Uri,
        headers: HeaderMap,
    ) -> (StatusCode, String) {
        let presented = headers
            .get("x-aws-ec2-metadata-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if !state.tokens.lock().is_ok_and(|t| t.contains(&presented)) {
            if let Ok(mut refused) = state.refused.lock() {
                refused.push(uri.path().to_owned());
            }
            return (StatusCode::UNAUTHORIZED, String::new());
        }
        match uri.path() {
            "/latest/meta-data/iam/security-credentials/" => {
                (StatusCode::OK, "trailmark-instance\n".into())
            }
            "/latest/meta-data/iam/security-credentials/trailmark-instance" => (
                StatusCode::OK,
                state
                    .credentials
                    .lock()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
            ),
            _ => (StatusCode::NOT_FOUND, String::new()),
        }
    }
    let router = axum::Router::new()
        .route("/latest/api/token", axum::routing::put(token))
        .fallback(axum::routing::get(metadata))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

#[tokio::test]
async fn s3_default_chain_imdsv2_stand_in_credentials_assume_the_customers_role() {
    let moto = moto().await;
    // The instance's role, and a session of it as EC2 would hand it out through metadata.
    let instance_role = moto
        .role(
            "trailmark-instance",
            &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
        )
        .await;
    let assume = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "sts:AssumeRole", "Resource": "*"}]});
    moto.iam(&[
        ("Action", "PutRolePolicy"),
        ("RoleName", "trailmark-instance"),
        ("PolicyName", "assume-customer-roles"),
        ("PolicyDocument", &assume.to_string()),
    ])
    .await;
    let session = moto
        .client
        .post(format!("{}/", moto.url))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDSETUP/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0",
        )
        .form(&[
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", instance_role.as_str()),
            ("RoleSessionName", "i-0123456789abcdef0"),
        ])
        .send()
        .await
        .expect("instance session")
        .text()
        .await
        .unwrap_or_default();
    let imds = Arc::new(Imds::default());
    if let Ok(mut credentials) = imds.credentials.lock() {
        *credentials = json!({"Code": "Success", "Type": "AWS-HMAC",
            "AccessKeyId": xml_text(&session, "AccessKeyId"),
            "SecretAccessKey": xml_text(&session, "SecretAccessKey"),
            "Token": xml_text(&session, "SessionToken"),
            "Expiration": xml_text(&session, "Expiration")});
    }
    let customer_role = moto
        .role(
            ROLE,
            &trust_policy(&format!(
                "arn:aws:sts::{ACCOUNT}:assumed-role/trailmark-instance/i-0123456789abcdef0"
            )),
        )
        .await;
    moto.create_bucket().await;
    moto.iam_checks(true).await;

    let chain = DefaultChain {
        instance_metadata: Some(imds_stand_in(Arc::clone(&imds)).await),
        ..DefaultChain::default()
    };
    let app = TestApp::spawn_with(Options {
        aws_default_chain: Some(chain),
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    let id = create_stream(
        &app,
        &organization,
        json!({"bucket": BUCKET, "region": "us-east-1", "endpoint": moto.url, "sts_endpoint": moto.url,
               "role_arn": customer_role, "external_id": EXTERNAL_ID}),
    )
    .await;
    ingest(&app, &organization, 3).await;
    wait_for(&app, &id, "active").await;
    assert_eq!(
        imds.tokens.lock().map_or(0, |t| t.len()),
        1,
        "one IMDSv2 session"
    );
    assert!(imds.refused.lock().is_ok_and(|r| r.is_empty()));
    moto.iam_checks(false).await;
    assert_eq!(moto.objects().await.len(), 3);
    let sessions = moto.sessions().await;
    assert!(
        sessions.contains(&(customer_role, format!("trailmark-{id}"), json!(EXTERNAL_ID))),
        "{sessions:?}"
    );
}

/// The binary, as an operator runs it inside AWS: `--aws-default-credentials` makes the CLI read
/// the web identity variables (EKS sets them in the pod) and lend the credentials to streams.
#[tokio::test]
async fn the_server_reads_the_web_identity_environment_when_the_operator_lends_it() {
    let moto = moto().await;
    let role_arn = moto
        .role(
            "trailmark-pod",
            &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.example")},
                "Action": "sts:AssumeRoleWithWebIdentity"}]}),
        )
        .await;
    moto.create_bucket().await;
    let data_dir = tempfile::tempdir().expect("dir");
    let token_file = data_dir.path().join("eks-token");
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln").expect("token file");
    let database = crate::helpers::TestDatabase::create(data_dir.path()).await;
    let token_path = token_file.display().to_string();
    let server = crate::helpers::ServerProcess::start(
        data_dir.path(),
        &database,
        &[
            ("TRAILMARK_AWS_DEFAULT_CREDENTIALS", "true"),
            // Whatever the test runner's environment holds, these come first in the chain.
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", ""),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", ""),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", &token_path),
            ("AWS_ROLE_ARN", &role_arn),
            ("AWS_ROLE_SESSION_NAME", "trailmark-pod-1"),
            ("AWS_ENDPOINT_URL_STS", &moto.url),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    let client = reqwest::Client::new();
    let organization = crate::helpers::organization(&client, &server.base).await;
    let created: Value = crate::helpers::post(
        &client,
        &server.base,
        "/audit_logs/streams",
        json!({"organization_id": organization, "type": "s3", "name": "S3",
               "config": {"bucket": BUCKET, "region": "us-east-1", "endpoint": moto.url}}),
    )
    .await
    .json()
    .await
    .expect("json");
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    for n in 0..3 {
        let mut submitted = event("user.signed_in");
        submitted["occurred_at"] = json!(format!("2026-08-02T10:00:0{n}.000Z"));
        crate::helpers::post(
            &client,
            &server.base,
            "/audit_logs/events",
            json!({"organization_id": organization, "event": submitted}),
        )
        .await;
    }
    let mut state = json!(null);
    for _ in 0..600 {
        state =
            crate::helpers::get(&client, &server.base, &format!("/audit_logs/streams/{id}")).await;
        if state["state"] == "active" && state["lag_events"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        (state["state"].clone(), state["lag_events"].clone()),
        (json!("active"), json!(0)),
        "{state}"
    );
    assert_eq!(moto.objects().await.len(), 3);
    assert_eq!(
        moto.sessions().await,
        [(role_arn, "trailmark-pod-1".to_owned(), Value::Null)]
    );
}

#[tokio::test]
async fn s3_an_unreachable_sts_is_retried_not_invalid() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    // Nothing listens on the discard port: a network failure, as an STS outage looks.
    let id = create_stream(
        &app,
        &organization,
        json!({"bucket": BUCKET, "region": "us-east-1", "endpoint": "http://127.0.0.1:9",
               "sts_endpoint": "http://127.0.0.1:9", "access_key_id": "AKIAEXAMPLE", "secret_access_key": "secret",
               "role_arn": format!("arn:aws:iam::{ACCOUNT}:role/{ROLE}"), "external_id": EXTERNAL_ID}),
    )
    .await;
    ingest(&app, &organization, 1).await;
    let failing = wait_for(&app, &id, "error").await;
    assert!(
        failing["last_error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("AssumeRole: STS cannot be reached"),
        "{failing}"
    );
}

/// A strict stand-in for the container credentials endpoint (ECS, EKS Pod Identity): `GET`
/// answers the credentials only with the `Authorization` value it was given, else 401.
async fn container_stand_in(authorization: &'static str, credentials: Value) -> String {
    let router = axum::Router::new().route(
        "/v2/credentials",
        axum::routing::get(move |headers: HeaderMap| async move {
            if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(authorization) {
                (StatusCode::OK, credentials.to_string())
            } else {
                (StatusCode::UNAUTHORIZED, String::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/v2/credentials",
        listener.local_addr().expect("address")
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

#[tokio::test]
async fn s3_default_chain_container_credentials_stand_in_with_its_authorization_token() {
    let moto = moto().await;
    let task_role = moto
        .role(
            "trailmark-task",
            &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
        )
        .await;
    let session = moto
        .client
        .post(format!("{}/", moto.url))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDSETUP/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0",
        )
        .form(&[
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", task_role.as_str()),
            ("RoleSessionName", "ecs-task-1"),
        ])
        .send()
        .await
        .expect("task session")
        .text()
        .await
        .unwrap_or_default();
    moto.create_bucket().await;
    moto.iam_checks(true).await;
    let url = container_stand_in(
        "pod-identity-token",
        json!({"AccessKeyId": xml_text(&session, "AccessKeyId"),
               "SecretAccessKey": xml_text(&session, "SecretAccessKey"),
               "Token": xml_text(&session, "SessionToken"),
               "Expiration": xml_text(&session, "Expiration")}),
    )
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let token_file = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, "pod-identity-token\n").expect("token file");
    let chain = DefaultChain {
        container: Some(trailmark_streams::s3::credentials::Container {
            url,
            authorization: None,
            authorization_file: Some(token_file),
        }),
        ..DefaultChain::default()
    };
    let app = TestApp::spawn_with(Options {
        aws_default_chain: Some(chain),
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    let id = create_stream(
        &app,
        &organization,
        json!({"bucket": BUCKET, "region": "us-east-1", "endpoint": moto.url}),
    )
    .await;
    ingest(&app, &organization, 2).await;
    wait_for(&app, &id, "active").await;
    moto.iam_checks(false).await;
    assert_eq!(moto.objects().await.len(), 2);
}

/// Issue 16 (fixed egress): with `--egress-proxy`, an S3 stream's `AssumeRole` and every PUT
/// go through the proxy (Debian's tinyproxy, tests/it/egress.rs): one `CONNECT` to moto per
/// request, so one more than the objects written.
#[tokio::test]
async fn s3_assume_role_and_puts_go_through_the_egress_proxy() {
    let moto = moto().await;
    let (key_id, secret, role_arn) = customer_account(&moto).await;
    let port: u16 = moto
        .url
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("moto's port");
    let proxy = crate::egress::Tinyproxy::start("trailmark", "s3cret", "127.0.0.1", &[port]).await;
    let app = TestApp::spawn_with(Options {
        egress: trailmark_streams::egress::Egress {
            proxy: Some(Arc::new(
                trailmark_streams::egress::Proxy::operator(&proxy.url("trailmark", "s3cret"))
                    .expect("proxy URL"),
            )),
            required: false,
        },
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    let id = create_stream(
        &app,
        &organization,
        json!({"bucket": BUCKET, "region": "us-east-1", "endpoint": moto.url, "sts_endpoint": moto.url,
               "access_key_id": key_id, "secret_access_key": secret,
               "role_arn": role_arn, "external_id": EXTERNAL_ID}),
    )
    .await;
    ingest(&app, &organization, 3).await;
    wait_for(&app, &id, "active").await;
    moto.iam_checks(false).await;
    let objects = moto.objects().await;
    assert!(objects.len() >= 3, "{}", objects.len());
    assert_eq!(moto.sessions().await.len(), 1, "one AssumeRole");
    assert!(
        proxy.connects_to(port) > objects.len(),
        "{} CONNECTs for {} objects and an AssumeRole",
        proxy.connects_to(port),
        objects.len()
    );
}
