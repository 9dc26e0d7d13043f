//! API key lifecycle (issue 14): `POST/GET/DELETE /api_keys`, expiry, scopes, the last-admin
//! guard, coarse `last_used_at`, `trailmark keys list|revoke`, and a revocation seen by a second
//! instance over one PostgreSQL within 5 seconds.

use std::time::{Duration, Instant};

use reqwest::Response;
use serde_json::{Value, json};
use trailmark_app::console::TRAILMARK_LOG;
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::{ApiKeySecret, Scope};
use trailmark_store::ApiKeyRecord;

use crate::helpers::{ADMIN_KEY, ServerProcess, TestApp, TestDatabase, body, event};

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: &str,
    json: Option<Value>,
) -> Response {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(key);
    if let Some(json) = json {
        request = request.json(&json);
    }
    request.send().await.expect("request")
}

async fn create_key(app: &TestApp, key: &str, asked: Value) -> Response {
    send(app, reqwest::Method::POST, "/api_keys", key, Some(asked)).await
}

async fn created(app: &TestApp, asked: Value) -> Value {
    let response = create_key(app, ADMIN_KEY, asked).await;
    assert_eq!(response.status(), 201);
    body(response).await
}

async fn list(app: &TestApp, key: &str) -> Response {
    send(app, reqwest::Method::GET, "/api_keys", key, None).await
}

async fn revoke(app: &TestApp, key: &str, id_and_query: &str) -> Response {
    let path = format!("/api_keys/{id_and_query}");
    send(app, reqwest::Method::DELETE, &path, key, None).await
}

async fn status_with(app: &TestApp, key: &str) -> u16 {
    send(app, reqwest::Method::GET, "/organizations", key, None)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked_by_unrestricted_admin_keys_only() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;

    let reader = created(
        &app,
        json!({"name": "  dashboard  ", "scope": "read", "organization_id": organization}),
    )
    .await;
    let secret = reader["key"].as_str().expect("the key, once").to_owned();
    assert!(secret.starts_with("sk_") && secret.len() == 67);
    assert_eq!(reader["name"], "dashboard");
    assert_eq!(reader["scope"], "read");
    assert_eq!(reader["organization_id"], organization.as_str());
    assert_eq!(reader["prefix"], &secret[..11]);
    assert!(reader["expires_at"].is_null() && reader["last_used_at"].is_null());
    let id = reader["id"].as_str().expect("id").to_owned();

    let response = list(&app, ADMIN_KEY).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    assert!(
        !text.contains(&secret[11..]),
        "the list shows no key text: {text}"
    );
    let listed: Value = serde_json::from_str(&text).expect("json");
    let entry = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|k| k["id"] == id.as_str())
        .expect("listed");
    let mut fields: Vec<&str> = entry
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "created_at",
            "expires_at",
            "id",
            "last_used_at",
            "name",
            "object",
            "organization_id",
            "prefix",
            "scope"
        ]
    );

    // A read key, and an admin key restricted to one organization, manage no keys.
    let restricted_admin = created(
        &app,
        json!({"name": "acme admin", "scope": "admin", "organization_id": organization}),
    )
    .await;
    let restricted_admin = restricted_admin["key"].as_str().expect("key").to_owned();
    for key in [secret.as_str(), restricted_admin.as_str()] {
        assert_eq!(list(&app, key).await.status(), 403);
        let asked = json!({"name": "x", "scope": "admin"});
        assert_eq!(create_key(&app, key, asked).await.status(), 403);
        assert_eq!(revoke(&app, key, &id).await.status(), 403);
    }

    assert_eq!(status_with(&app, &secret).await, 200);
    let response = revoke(&app, ADMIN_KEY, &id).await;
    assert_eq!(response.status(), 200);
    let revoked = body(response).await;
    assert_eq!(
        (revoked["id"].as_str(), revoked["revoked"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    assert_eq!(
        status_with(&app, &secret).await,
        401,
        "refused at once here"
    );
    assert_eq!(revoke(&app, ADMIN_KEY, &id).await.status(), 404);
    let listed = body(list(&app, ADMIN_KEY).await).await;
    assert!(
        listed["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|k| k["id"] != id.as_str())
    );

    // Both changes are recorded in the organization's log, naming the key and who did it.
    let recorded = body(
        app.get(&format!(
            "/audit_logs/events?organization_id={organization}&actions=trailmark.api_key.*&order=asc"
        ))
        .await,
    )
    .await;
    let recorded: Vec<(String, String, String, String)> = recorded["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|e| e["targets"][0]["id"] == id.as_str())
        .map(|e| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                text(&e["action"]),
                text(&e["targets"][0]["name"]),
                text(&e["actor"]["id"]),
                text(&e["metadata"]["prefix"]),
            )
        })
        .collect();
    let expected = |action: &str| {
        (
            action.to_owned(),
            "dashboard".to_owned(),
            "key_bootstrap".to_owned(),
            secret[..11].to_owned(),
        )
    };
    assert_eq!(
        recorded,
        [
            expected("trailmark.api_key.created"),
            expected("trailmark.api_key.revoked")
        ]
    );

    // An unrestricted key belongs to no organization: its changes are in Trailmark's own log.
    let unrestricted = created(&app, json!({"name": "deploy bot", "scope": "ingest"})).await;
    let unrestricted_id = unrestricted["id"].as_str().expect("id").to_owned();
    assert_eq!(
        revoke(&app, ADMIN_KEY, &unrestricted_id).await.status(),
        200
    );
    let own: Vec<(String, String, String)> = app
        .stored_events(TRAILMARK_LOG)
        .await
        .into_iter()
        .filter(|e| e.body["targets"][0]["id"] == unrestricted_id.as_str())
        .map(|e| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                text(&e.body["action"]),
                text(&e.body["targets"][0]["name"]),
                text(&e.body["actor"]["id"]),
            )
        })
        .collect();
    let expected = |action: &str| {
        (
            action.to_owned(),
            "deploy bot".to_owned(),
            "key_bootstrap".to_owned(),
        )
    };
    assert_eq!(
        own,
        [
            expected("trailmark.api_key.created"),
            expected("trailmark.api_key.revoked")
        ]
    );
}

#[tokio::test]
async fn bad_key_requests_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({}), vec!["name", "scope"]),
        (json!({"name": "", "scope": "root"}), vec!["scope"]),
        (json!({"name": " ", "scope": "read"}), vec!["name"]),
        (
            json!({"name": 7, "scope": "read", "expires_at": "soon"}),
            vec!["name", "expires_at"],
        ),
        (
            json!({"name": "old", "scope": "read", "expires_at": "2020-01-01T00:00:00Z"}),
            vec!["expires_at"],
        ),
        (
            json!({"name": "x", "scope": "read", "organization_id": 5}),
            vec!["organization_id"],
        ),
    ];
    for (asked, fields) in cases {
        let response = create_key(&app, ADMIN_KEY, asked.clone()).await;
        assert_eq!(response.status(), 422, "{asked}");
        let refused = body(response).await;
        let named: Vec<&str> = refused["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert_eq!(named, fields, "{asked}: {refused}");
    }
    let unknown =
        json!({"name": "x", "scope": "read", "organization_id": "org_01J0000000000000000000000"});
    assert_eq!(create_key(&app, ADMIN_KEY, unknown).await.status(), 404);
    assert_eq!(
        revoke(&app, ADMIN_KEY, "key_nope?force=maybe")
            .await
            .status(),
        422
    );
    assert_eq!(list(&app, "sk_not_a_key").await.status(), 401);
}

#[tokio::test]
async fn an_expired_key_is_refused_with_401() {
    let app = TestApp::spawn().await;
    let tomorrow = Timestamp::now().plus_millis(24 * 3600 * 1000);
    let fresh = created(
        &app,
        json!({"name": "temp", "scope": "read", "expires_at": tomorrow.to_string()}),
    )
    .await;
    assert_eq!(fresh["expires_at"], tomorrow.to_string());
    assert_eq!(
        status_with(&app, fresh["key"].as_str().expect("key")).await,
        200
    );

    // A key that expired a moment ago, stored as any key is.
    let secret = ApiKeySecret::from_entropy([3; 32]);
    let now = Timestamp::now();
    app.store()
        .insert_api_key(ApiKeyRecord {
            id: "key_expired".into(),
            hash: secret.hash(),
            name: "expired".into(),
            prefix: secret.prefix(),
            scope: Scope::Admin,
            organization_id: None,
            created_at: now.plus_millis(-60_000),
            expires_at: Some(now.plus_millis(-1)),
            last_used_at: None,
        })
        .await
        .expect("insert");
    let response = send(
        &app,
        reqwest::Method::GET,
        "/organizations",
        secret.expose(),
        None,
    )
    .await;
    assert_eq!(response.status(), 401);
    assert_eq!(body(response).await["code"], "unauthorized");
}

#[tokio::test]
async fn the_last_unrestricted_admin_key_is_kept_unless_forced() {
    // The TRAILMARK_API_KEY key does not count: it is configuration, not a stored key.
    let app = TestApp::spawn().await;
    let first = created(&app, json!({"name": "first", "scope": "admin"})).await;
    let first_id = first["id"].as_str().expect("id").to_owned();
    let reader = created(&app, json!({"name": "reader", "scope": "read"})).await;

    let response = revoke(&app, ADMIN_KEY, &first_id).await;
    assert_eq!(response.status(), 409);
    let refused = body(response).await;
    assert_eq!(refused["code"], "last_admin_key");
    assert_eq!(refused["errors"][0]["field"], "force");
    assert_eq!(
        status_with(&app, first["key"].as_str().expect("key")).await,
        200
    );

    // With a second admin key, the first goes (revoked by itself: keys may revoke themselves).
    let second = created(&app, json!({"name": "second", "scope": "admin"})).await;
    let first_key = first["key"].as_str().expect("key");
    assert_eq!(revoke(&app, first_key, &first_id).await.status(), 200);
    let second_id = second["id"].as_str().expect("id");
    assert_eq!(revoke(&app, ADMIN_KEY, second_id).await.status(), 409);
    // Other keys go freely meanwhile.
    let reader_id = reader["id"].as_str().expect("id");
    assert_eq!(revoke(&app, ADMIN_KEY, reader_id).await.status(), 200);
    let forced = format!("{second_id}?force=true");
    assert_eq!(revoke(&app, ADMIN_KEY, &forced).await.status(), 200);
    assert_eq!(
        status_with(&app, second["key"].as_str().expect("key")).await,
        401
    );
}

#[tokio::test]
async fn a_key_s_last_use_is_recorded_without_a_write_per_request() {
    let app = TestApp::spawn().await;
    let key = created(&app, json!({"name": "busy", "scope": "read"})).await;
    let (id, secret) = (
        key["id"].clone(),
        key["key"].as_str().expect("key").to_owned(),
    );
    let last_use = || async {
        let listed = body(list(&app, ADMIN_KEY).await).await;
        listed["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|k| k["id"] == id)
            .expect("listed")["last_used_at"]
            .clone()
    };
    for _ in 0..5 {
        assert_eq!(status_with(&app, &secret).await, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let seen = last_use().await;
        if let Some(at) = seen.as_str() {
            break at.to_owned();
        }
        assert!(Instant::now() < deadline, "last_used_at never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Within the minute, more requests write nothing more.
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..5 {
        assert_eq!(status_with(&app, &secret).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(last_use().await, first.as_str());
}

#[tokio::test]
async fn the_cli_lists_and_revokes_keys_beside_the_server() {
    let app = TestApp::spawn().await;
    let key = created(&app, json!({"name": "from the api", "scope": "ingest"})).await;
    let cli = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_trailmark"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TRAILMARK_") {
                command.env_remove(name);
            }
        }
        command
            .args(["keys"])
            .args(args)
            .arg("--data-dir")
            .arg(app.data_dir.path())
            .arg("--database")
            .arg(app.database.url())
            .output()
            .expect("run trailmark")
    };
    let listed = cli(&["list", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(listed["data"][0]["name"], "from the api");
    assert_eq!(listed["data"][0]["prefix"], key["prefix"]);
    assert!(
        !String::from_utf8_lossy(&cli(&["list"]).stdout)
            .contains(&key["key"].as_str().expect("key")[11..])
    );

    let made = cli(&["create", "--name", "deploy", "--scope", "admin", "--json"]);
    assert!(made.status.success(), "{made:?}");
    let made: Value = serde_json::from_slice(&made.stdout).expect("json");
    assert_eq!(made["name"], "deploy");
    let made_id = made["id"].as_str().expect("id");
    let refused = cli(&["revoke", made_id]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "the last admin key: {refused:?}"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));

    let id = key["id"].as_str().expect("id");
    assert!(cli(&["revoke", id]).status.success());
    assert_eq!(cli(&["revoke", id]).status.code(), Some(2), "already gone");
    let secret = key["key"].as_str().expect("key");
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_with(&app, secret).await != 401 {
        assert!(
            Instant::now() < deadline,
            "the server never refused the revoked key"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cli(&["revoke", made_id, "--force"]).status.success());
}

/// Two `trailmark serve` processes over one PostgreSQL: an event acknowledged by one reaches a
/// stream on the other within a second; a key revoked through one is refused by the other within
/// 5 seconds, and its open stream there ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_instance_is_refused_by_another_within_5_seconds() {
    let data_dir = tempfile::tempdir().expect("dir");
    let database = TestDatabase::create_postgres().await;
    let first = ServerProcess::start(data_dir.path(), &database, &[]);
    let second = ServerProcess::start(data_dir.path(), &database, &[]);
    let client = reqwest::Client::new();
    let organization = crate::helpers::organization(&client, &first.base).await;
    let response = client
        .post(format!("{}/api_keys", first.base))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "leaked", "scope": "read"}))
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), 201);
    let key: Value = response.json().await.expect("json");
    let (id, secret) = (
        key["id"].as_str().expect("id"),
        key["key"].as_str().expect("key"),
    );

    let read_on_second = || async {
        client
            .get(format!(
                "{}/audit_logs/events?organization_id={organization}",
                second.base
            ))
            .bearer_auth(secret)
            .send()
            .await
            .expect("read")
            .status()
            .as_u16()
    };
    // The second instance now has the key cached.
    assert_eq!(read_on_second().await, 200);
    let mut stream = crate::live::SseClient::open(
        &client,
        &format!(
            "{}/audit_logs/events/stream?organization_id={organization}",
            second.base
        ),
        secret,
        None,
    )
    .await;
    // An event acknowledged by the first instance reaches the second's stream within a second.
    let posted = crate::helpers::post(
        &client,
        &first.base,
        "/audit_logs/events",
        json!({"organization_id": organization, "event": event("user.signed_in")}),
    )
    .await;
    assert_eq!(posted.status(), 200);
    let acknowledged = Instant::now();
    assert_eq!(
        stream.next_event().await.expect("the event").id.as_deref(),
        Some("0")
    );
    let delay = acknowledged.elapsed();
    eprintln!("another instance's event arrived {delay:?} after its acknowledgement");
    assert!(delay < Duration::from_secs(1), "{delay:?}");

    let revoked = client
        .delete(format!("{}/api_keys/{id}", first.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    let since = Instant::now();
    while read_on_second().await != 401 {
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "the second instance still accepts the revoked key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "the second instance refused the revoked key {:?} after the revocation",
        since.elapsed()
    );
    assert!(
        stream.next_event().await.is_none(),
        "the revoked key's open stream ends"
    );
    let reopened = client
        .get(format!(
            "{}/audit_logs/events/stream?organization_id={organization}",
            second.base
        ))
        .bearer_auth(secret)
        .send()
        .await
        .expect("stream");
    assert_eq!(reopened.status(), 401);
}
