//! Who may do what, as a whole matrix: every route of the API (checked against the OpenAPI
//! document, so a new route cannot be left out) × every key scope (`ingest`, `read`, `admin`) ×
//! every restriction (none, the organization concerned, another one), plus no key at all. The
//! expected answer comes from one rule per route, written as the README states it.

use serde_json::{Value, json};
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::{ApiKeySecret, Scope};
use trailmark_store::ApiKeyRecord;

use crate::helpers::{ADMIN_KEY, TestApp, body, event};

/// Who a route lets through.
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// Anyone, no key needed.
    Public,
    /// A key of this scope, unrestricted or restricted to the organization concerned. A key
    /// restricted to another organization gets 403, or 404 when the route names a resource by
    /// id (`hidden`), so its existence does not leak.
    Organization { scope: Scope, hidden: bool },
    /// A key of this scope that concerns the environment, not one organization: a restricted key
    /// may not, even for its own organization (creating organizations or schemas, renaming or
    /// deleting an organization).
    Unrestricted { scope: Scope },
    /// A key of this scope, whatever its restriction (reads across the environment, such as the
    /// schemas, which every organization shares, or the list of organizations, filtered to a
    /// restricted key's own).
    Any { scope: Scope },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Restriction {
    None,
    /// Restricted to the organization the request concerns.
    Own,
    /// Restricted to another organization.
    Other,
}

struct Key {
    scope: Scope,
    restriction: Restriction,
    secret: String,
}

/// What the route answers a caller holding `key` (`None`: no key).
fn expected(rule: Rule, key: Option<&Key>, ok: u16) -> u16 {
    let Some(key) = key else {
        return if matches!(rule, Rule::Public) {
            ok
        } else {
            401
        };
    };
    match rule {
        Rule::Public => ok,
        Rule::Any { scope } => {
            if key.scope.allows(scope) {
                ok
            } else {
                403
            }
        }
        Rule::Unrestricted { scope } => {
            if key.scope.allows(scope) && key.restriction == Restriction::None {
                ok
            } else {
                403
            }
        }
        Rule::Organization { scope, hidden } => match (key.scope.allows(scope), key.restriction) {
            (false, _) => 403,
            (true, Restriction::Other) if hidden => 404,
            (true, Restriction::Other) => 403,
            (true, _) => ok,
        },
    }
}

/// One request of the matrix.
struct Case {
    method: &'static str,
    /// The route's template, as in the OpenAPI document.
    template: &'static str,
    rule: Rule,
    ok: u16,
}

const fn case(method: &'static str, template: &'static str, rule: Rule, ok: u16) -> Case {
    Case {
        method,
        template,
        rule,
        ok,
    }
}

const fn org(scope: Scope) -> Rule {
    Rule::Organization {
        scope,
        hidden: false,
    }
}

const fn hidden(scope: Scope) -> Rule {
    Rule::Organization {
        scope,
        hidden: true,
    }
}

/// Every route; `DELETE /organizations/{id}` comes last because its success removes the
/// organization the other cases concern.
const CASES: &[Case] = &[
    case("POST", "/audit_logs/events", org(Scope::Ingest), 200),
    case("POST", "/audit_logs/events/batch", org(Scope::Ingest), 200),
    case("GET", "/audit_logs/events", org(Scope::Read), 200),
    case("GET", "/audit_logs/events/{id}", hidden(Scope::Read), 200),
    case("GET", "/audit_logs/events/stream", org(Scope::Read), 200),
    case("POST", "/audit_logs/exports", org(Scope::Read), 201),
    case("POST", "/audit_logs/erasures", org(Scope::Admin), 200),
    case("GET", "/audit_logs/exports/{id}", hidden(Scope::Read), 200),
    case(
        "GET",
        "/audit_logs/exports/{id}/download",
        Rule::Public,
        200,
    ),
    case(
        "POST",
        "/audit_logs/actions/{action}/schemas",
        Rule::Unrestricted {
            scope: Scope::Admin,
        },
        201,
    ),
    case(
        "GET",
        "/audit_logs/actions/{action}/schemas",
        Rule::Any { scope: Scope::Read },
        200,
    ),
    case(
        "GET",
        "/audit_logs/actions",
        Rule::Any { scope: Scope::Read },
        200,
    ),
    case(
        "POST",
        "/organizations",
        Rule::Unrestricted {
            scope: Scope::Admin,
        },
        201,
    ),
    case(
        "GET",
        "/organizations",
        Rule::Any { scope: Scope::Read },
        200,
    ),
    case("GET", "/organizations/{id}", org(Scope::Read), 200),
    case(
        "GET",
        "/organizations/external_id/{external_id}",
        hidden(Scope::Read),
        200,
    ),
    case(
        "PUT",
        "/organizations/{id}",
        Rule::Unrestricted {
            scope: Scope::Admin,
        },
        200,
    ),
    case(
        "GET",
        "/organizations/{id}/audit_logs_retention",
        org(Scope::Read),
        200,
    ),
    case(
        "PUT",
        "/organizations/{id}/audit_logs_retention",
        org(Scope::Admin),
        200,
    ),
    case(
        "GET",
        "/organizations/{id}/audit_log_configuration",
        org(Scope::Read),
        200,
    ),
    case(
        "GET",
        "/organizations/{id}/legal_hold",
        org(Scope::Read),
        200,
    ),
    case(
        "PUT",
        "/organizations/{id}/legal_hold",
        org(Scope::Admin),
        200,
    ),
    case("POST", "/audit_logs/streams", org(Scope::Admin), 201),
    case("GET", "/audit_logs/streams", org(Scope::Read), 200),
    case("GET", "/audit_logs/streams/{id}", hidden(Scope::Read), 200),
    case(
        "PATCH",
        "/audit_logs/streams/{id}",
        hidden(Scope::Admin),
        200,
    ),
    case(
        "DELETE",
        "/audit_logs/streams/{id}",
        hidden(Scope::Admin),
        204,
    ),
    case(
        "POST",
        "/audit_logs/streams/{id}/replay",
        hidden(Scope::Admin),
        200,
    ),
    case(
        "POST",
        "/audit_logs/streams/{id}/test",
        hidden(Scope::Admin),
        200,
    ),
    case(
        "POST",
        "/audit_logs/streams/{id}/rotate_secret",
        hidden(Scope::Admin),
        200,
    ),
    case("GET", "/audit_logs/ledger/public_key", Rule::Public, 200),
    case(
        "GET",
        "/audit_logs/ledger/checkpoint",
        org(Scope::Read),
        200,
    ),
    case("GET", "/audit_logs/ledger/inclusion", org(Scope::Read), 200),
    case(
        "GET",
        "/audit_logs/ledger/consistency",
        org(Scope::Read),
        200,
    ),
    case(
        "GET",
        "/audit_logs/ledger/tlog/{organization_id}/checkpoint",
        org(Scope::Read),
        200,
    ),
    case(
        "GET",
        "/audit_logs/ledger/tlog/{organization_id}/tile/{path}",
        org(Scope::Read),
        200,
    ),
    case(
        "POST",
        "/api_keys",
        Rule::Unrestricted {
            scope: Scope::Admin,
        },
        201,
    ),
    case(
        "GET",
        "/api_keys",
        Rule::Unrestricted {
            scope: Scope::Admin,
        },
        200,
    ),
    case(
        "DELETE",
        "/api_keys/{id}",
        Rule::Unrestricted {
            scope: Scope::Admin,
        },
        200,
    ),
    case("GET", "/healthz", Rule::Public, 200),
    case("GET", "/readyz", Rule::Public, 200),
    case("GET", "/metrics", Rule::Public, 200),
    case("GET", "/openapi.json", Rule::Public, 200),
    // An `audit_logs` link needs `read`; the `log_streams` case is below.
    case("POST", "/portal/generate_link", org(Scope::Read), 201),
    case(
        "DELETE",
        "/organizations/{id}",
        Rule::Unrestricted {
            scope: Scope::Admin,
        },
        204,
    ),
];

/// What the cases act on: two organizations and, in the first, an event, a ready export, a
/// stream and a signed checkpoint.
struct Fixture {
    acme: String,
    event_id: String,
    export_id: String,
    download: String,
    stream_id: String,
}

async fn fixture(app: &TestApp) -> Fixture {
    let created = body(
        app.post(
            "/organizations",
            &json!({"name": "Acme", "external_id": "acme-ext"}),
        )
        .await,
    )
    .await;
    let acme = created["id"].as_str().expect("organization id").to_owned();
    let receipt = body(
        app.create_event(&acme, &event("user.signed_in"), None)
            .await,
    )
    .await;
    let event_id = receipt["id"].as_str().expect("event id").to_owned();
    assert_eq!(
        app.post(
            "/audit_logs/actions/user.signed_in/schemas",
            &json!({"targets": [{"type": "team"}]}),
        )
        .await
        .status(),
        201
    );
    let export = body(
        app.post("/audit_logs/exports", &json!({"organization_id": acme}))
            .await,
    )
    .await;
    let export_id = export["id"].as_str().expect("export id").to_owned();
    let mut download = String::new();
    for _ in 0..200 {
        let read = body(app.get(&format!("/audit_logs/exports/{export_id}")).await).await;
        if let Some(url) = read["url"].as_str() {
            download = url.trim_start_matches(&app.base).to_owned();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(!download.is_empty(), "the export never became ready");
    let stream_id = new_stream(app, &acme).await;
    // The event, then the records of the export's and the stream's creation.
    app.wait_for_checkpoint(&acme, 3).await;
    Fixture {
        acme,
        event_id,
        export_id,
        download,
        stream_id,
    }
}

async fn new_stream(app: &TestApp, organization: &str) -> String {
    let created = body(
        app.post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "http", "name": "SIEM",
                    "config": {"url": "http://127.0.0.1:9/hook"}}),
        )
        .await,
    )
    .await;
    created["id"].as_str().expect("stream id").to_owned()
}

/// The request for `case` against the fixture: its path and body.
async fn request(app: &TestApp, f: &Fixture, case: &Case) -> (String, Option<Value>) {
    let acme = &f.acme;
    let stream = |tail: &str| format!("/audit_logs/streams/{}{tail}", f.stream_id);
    match (case.method, case.template) {
        ("POST", "/audit_logs/events") => (
            case.template.into(),
            Some(json!({"organization_id": acme, "event": event("user.signed_in")})),
        ),
        ("POST", "/audit_logs/events/batch") => (
            case.template.into(),
            Some(json!({"organization_id": acme, "events": [event("user.signed_in")]})),
        ),
        ("GET", "/audit_logs/events") => {
            (format!("{}?organization_id={acme}", case.template), None)
        }
        ("GET", "/audit_logs/events/{id}") => (format!("/audit_logs/events/{}", f.event_id), None),
        ("GET", "/audit_logs/events/stream") => {
            (format!("{}?organization_id={acme}", case.template), None)
        }
        ("POST", "/api_keys") => (
            case.template.into(),
            Some(json!({"name": "matrix", "scope": "read"})),
        ),
        // Each revocation gets a key of its own: a successful one removes it.
        ("DELETE", "/api_keys/{id}") => {
            let created = app
                .post("/api_keys", &json!({"name": "to revoke", "scope": "read"}))
                .await;
            let id = body(created).await["id"]
                .as_str()
                .expect("key id")
                .to_owned();
            (format!("/api_keys/{id}"), None)
        }
        ("POST", "/audit_logs/exports") => {
            (case.template.into(), Some(json!({"organization_id": acme})))
        }
        ("GET", "/audit_logs/exports/{id}") => {
            (format!("/audit_logs/exports/{}", f.export_id), None)
        }
        ("POST", "/audit_logs/erasures") => (
            case.template.into(),
            Some(json!({"organization_id": acme, "subject": {"actor_id": "user_nobody"}})),
        ),
        ("GET", "/audit_logs/exports/{id}/download") => (f.download.clone(), None),
        ("POST", "/audit_logs/actions/{action}/schemas") => (
            "/audit_logs/actions/user.signed_in/schemas".into(),
            Some(json!({"targets": [{"type": "team"}]})),
        ),
        ("GET", "/audit_logs/actions/{action}/schemas") => {
            ("/audit_logs/actions/user.signed_in/schemas".into(), None)
        }
        ("POST", "/organizations") => (case.template.into(), Some(json!({"name": "New"}))),
        ("GET", "/organizations/external_id/{external_id}") => {
            ("/organizations/external_id/acme-ext".into(), None)
        }
        ("PUT", "/organizations/{id}") => (
            format!("/organizations/{acme}"),
            Some(json!({"name": "Acme"})),
        ),
        ("PUT", "/organizations/{id}/audit_logs_retention") => (
            format!("/organizations/{acme}/audit_logs_retention"),
            Some(json!({"retention_period_in_days": 365})),
        ),
        ("PUT", "/organizations/{id}/legal_hold") => (
            format!("/organizations/{acme}/legal_hold"),
            Some(json!({"active": false})),
        ),
        ("POST", "/audit_logs/streams") => (
            case.template.into(),
            Some(
                json!({"organization_id": acme, "type": "http", "name": "SIEM",
                        "config": {"url": "http://127.0.0.1:9/hook"}}),
            ),
        ),
        ("GET", "/audit_logs/streams") => {
            (format!("{}?organization_id={acme}", case.template), None)
        }
        ("GET", "/audit_logs/streams/{id}") => (stream(""), None),
        ("PATCH", "/audit_logs/streams/{id}") => (stream(""), Some(json!({"name": "SIEM"}))),
        // Each deletion gets a stream of its own: a successful one removes it.
        ("DELETE", "/audit_logs/streams/{id}") => (
            format!("/audit_logs/streams/{}", new_stream(app, acme).await),
            None,
        ),
        ("POST", "/audit_logs/streams/{id}/replay") => {
            (stream("/replay"), Some(json!({"from_sequence": 0})))
        }
        ("POST", "/audit_logs/streams/{id}/test") => (stream("/test"), Some(json!({}))),
        ("POST", "/audit_logs/streams/{id}/rotate_secret") => {
            (stream("/rotate_secret"), Some(json!({})))
        }
        ("GET", "/audit_logs/ledger/checkpoint") => {
            (format!("{}?organization_id={acme}", case.template), None)
        }
        ("GET", "/audit_logs/ledger/inclusion") => (
            format!(
                "{}?organization_id={acme}&event_id={}",
                case.template, f.event_id
            ),
            None,
        ),
        ("GET", "/audit_logs/ledger/consistency") => (
            format!("{}?organization_id={acme}&first=1&second=1", case.template),
            None,
        ),
        ("GET", "/audit_logs/ledger/tlog/{organization_id}/checkpoint") => {
            (format!("/audit_logs/ledger/tlog/{acme}/checkpoint"), None)
        }
        // The fixture's log has its first event, so the leaf tile of width 1 exists.
        ("GET", "/audit_logs/ledger/tlog/{organization_id}/tile/{path}") => (
            format!("/audit_logs/ledger/tlog/{acme}/tile/0/000.p/1"),
            None,
        ),
        ("POST", "/portal/generate_link") => (
            case.template.into(),
            Some(json!({"organization": acme, "intent": "audit_logs"})),
        ),
        (_, template) if template.contains("{id}") => (template.replace("{id}", acme), None),
        _ => (case.template.into(), None),
    }
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    key: Option<&str>,
    json: Option<&Value>,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = app.client.request(method, app.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(json) = json {
        request = request.json(json);
    }
    request.send().await.expect("request")
}

/// Issue 11: the whole scope × restriction × route matrix, through HTTP. In particular a key
/// restricted to an organization cannot rename, re-domain or delete it, even with `admin`.
#[tokio::test]
async fn issue_11_every_route_checks_scope_and_restriction_as_documented() {
    let app = TestApp::spawn().await;
    let fixture = fixture(&app).await;
    let globex = app.create_organization("Globex").await;

    let store = app.store();
    let mut keys = Vec::new();
    for scope in [Scope::Ingest, Scope::Read, Scope::Admin] {
        for restriction in [Restriction::Other, Restriction::Own, Restriction::None] {
            let secret = format!("sk_test_{}_{restriction:?}", scope.as_str());
            let organization_id = match restriction {
                Restriction::None => None,
                Restriction::Own => Some(fixture.acme.clone()),
                Restriction::Other => Some(globex.clone()),
            };
            store
                .insert_api_key(ApiKeyRecord {
                    id: format!("key_{}_{restriction:?}", scope.as_str()),
                    hash: ApiKeySecret::new(&secret).hash(),
                    scope,
                    organization_id,
                    created_at: Timestamp::now(),
                    name: format!("{} key", scope.as_str()),
                    prefix: String::new(),
                    expires_at: None,
                    last_used_at: None,
                })
                .await
                .expect("insert key");
            keys.push(Key {
                scope,
                restriction,
                secret,
            });
        }
    }

    // Every documented route is in the matrix, and every case is a documented route.
    let document: Value =
        serde_json::from_str(include_str!("../../crates/server/src/openapi.json"))
            .expect("openapi.json");
    let mut documented: Vec<(String, String)> = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .into_iter()
                .flatten()
                .map(move |(method, _)| (method.to_ascii_uppercase(), path.clone()))
        })
        .collect();
    let mut covered: Vec<(String, String)> = CASES
        .iter()
        .map(|c| (c.method.to_owned(), c.template.to_owned()))
        .collect();
    documented.sort();
    covered.sort();
    assert_eq!(
        covered, documented,
        "the matrix covers exactly the documented routes"
    );

    let mut checked = 0;
    let mut wrong = Vec::new();
    for case in CASES {
        // No key first and the unrestricted admin last: its success may change what the
        // others would meet (a deleted organization).
        let callers = std::iter::once(None).chain(keys.iter().map(Some));
        for key in callers {
            let (path, json) = request(&app, &fixture, case).await;
            let response = send(
                &app,
                case.method,
                &path,
                key.map(|k| k.secret.as_str()),
                json.as_ref(),
            )
            .await;
            let status = response.status().as_u16();
            let want = expected(case.rule, key, case.ok);
            let who = key.map_or("no key".to_owned(), |k| {
                format!("{} key, {:?}", k.scope.as_str(), k.restriction)
            });
            if status != want {
                let text = response.text().await.unwrap_or_default();
                wrong.push(format!(
                    "{} {path} with {who}: {status}, expected {want}: {text}",
                    case.method
                ));
            } else if status >= 400 {
                let refused = body(response).await;
                assert!(refused["message"].is_string(), "{refused}");
            }
            checked += 1;
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} answers were wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // The `log_streams` portal link needs `admin`.
    for key in &keys {
        let response = send(
            &app,
            "POST",
            "/portal/generate_link",
            Some(&key.secret),
            Some(&json!({"organization": globex, "intent": "log_streams"})),
        )
        .await;
        let want = match (key.scope, key.restriction) {
            (Scope::Admin, Restriction::Other | Restriction::None) => 201,
            _ => 403,
        };
        assert_eq!(
            response.status().as_u16(),
            want,
            "{:?} {:?}",
            key.scope,
            key.restriction
        );
    }
    // The bootstrap key is an unrestricted admin.
    assert_eq!(
        send(&app, "GET", "/organizations", Some(ADMIN_KEY), None)
            .await
            .status(),
        200
    );
}
