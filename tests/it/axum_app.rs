//! The example axum app (`examples/axum-app`) against a real Trailmark: the tutorial's five
//! actions over HTTP, then the five events read back with their actor, targets and context.

use std::net::SocketAddr;

use serde_json::Value;
use trailmark_client::axum::TrustedProxies;
use trailmark_client::{Client, EventObject, Order, SearchQuery, Target};
use trailmark_example_axum_app::{Config, app};

use crate::helpers::{ADMIN_KEY, TestApp};

const USER_AGENT: &str = "Mozilla/5.0 (trailmark-test)";

/// Starts the example app on a free port and returns its base URL.
async fn spawn_example(client: Client, organization_id: &str, trusted: TrustedProxies) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let router = app(
        client,
        Config {
            organization_id: organization_id.to_owned(),
            trusted_proxies: trusted,
        },
    );
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    base
}

/// A browser that keeps the session cookie by hand and claims to come from `forwarded_for`.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
    forwarded_for: &'static str,
}

impl Browser {
    fn new(base: &str, forwarded_for: &'static str) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(USER_AGENT)
                .build()
                .expect("client"),
            base: base.to_owned(),
            cookie: None,
            forwarded_for,
        }
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("x-forwarded-for", self.forwarded_for)
            .form(form);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.expect("request");
        if let Some(set) = response.headers().get("set-cookie") {
            let pair = set.to_str().expect("ascii").split(';').next().unwrap_or("");
            self.cookie = Some(pair.to_owned());
        }
        response
    }
}

async fn events(client: &Client, organization_id: &str) -> Vec<EventObject> {
    client
        .search(&SearchQuery {
            order: Some(Order::Asc),
            limit: Some(100),
            ..SearchQuery::organization(organization_id)
        })
        .await
        .expect("search")
        .events
}

fn grace_teams() -> [Target; 2] {
    [
        Target::new("team", "team_engineering").named("Engineering"),
        Target::new("team", "team_platform").named("Platform"),
    ]
}

/// Sign in, invite, create a post, delete it, sign out: five events with Grace as the actor,
/// her teams as default targets, the peer's address (a forged `X-Forwarded-For` from an
/// untrusted peer is ignored) and the browser's user agent. Without a session, nothing.
#[tokio::test]
async fn the_five_tutorial_actions_are_audited_with_actor_targets_and_context() {
    let trailmark = TestApp::spawn().await;
    let client = Client::new(&trailmark.base, ADMIN_KEY).expect("client");
    let org = client.create_organization("Acme").await.expect("org").id;
    let base = spawn_example(client.clone(), &org, TrustedProxies::none()).await;
    let mut browser = Browser::new(&base, "198.51.100.77");

    let anonymous = browser.post("/posts", &[("title", "Hello")]).await;
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await.expect("json");
    assert_eq!(body["code"], "audit_no_user");
    assert!(events(&client, &org).await.is_empty(), "no user, no event");

    let login = browser
        .post(
            "/login",
            &[("email", "grace@example.com"), ("password", "x")],
        )
        .await;
    assert_eq!(login.status(), 303);
    let invite = browser
        .post("/invite", &[("email", "bob@example.com")])
        .await;
    assert_eq!(invite.status(), 201);
    let created = browser.post("/posts", &[("title", "Hello")]).await;
    assert_eq!(created.status(), 201);
    let post_id = created.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("post id")
        .to_owned();
    let deleted = browser.post(&format!("/posts/{post_id}/delete"), &[]).await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(browser.post("/logout", &[]).await.status(), 303);
    assert_eq!(
        browser.post("/posts", &[("title", "After")]).await.status(),
        401,
        "the session ended"
    );

    let events = events(&client, &org).await;
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "user.login",
            "user.invite",
            "post.create",
            "post.delete",
            "user.logout"
        ]
    );
    let with_teams = |first: Target| {
        let mut targets = vec![first];
        targets.extend(grace_teams());
        targets
    };
    let expected_targets = [
        with_teams(Target::new("user", "user_grace")),
        with_teams(Target::new("user", "bob@example.com")),
        with_teams(Target::new("post", &post_id)),
        with_teams(Target::new("post", &post_id)),
        with_teams(Target::new("user", "user_grace")),
    ];
    for (event, targets) in events.iter().zip(expected_targets) {
        assert_eq!(event.actor.id, "user_grace", "{}", event.action);
        assert_eq!(event.actor.kind, "user");
        assert_eq!(event.actor.name.as_deref(), Some("Grace Hopper"));
        assert_eq!(event.targets, targets, "{}", event.action);
        assert_eq!(
            event.context.location, "127.0.0.1",
            "the forged X-Forwarded-For is ignored"
        );
        assert_eq!(event.context.user_agent.as_deref(), Some(USER_AGENT));
    }
}

/// Behind a trusted proxy (here: loopback), the forwarded client address is the location.
#[tokio::test]
async fn a_trusted_proxy_forwarded_address_is_the_location() {
    let trailmark = TestApp::spawn().await;
    let client = Client::new(&trailmark.base, ADMIN_KEY).expect("client");
    let org = client.create_organization("Acme").await.expect("org").id;
    let trusted = TrustedProxies::parse(["127.0.0.0/8", "::1"]).expect("valid");
    let base = spawn_example(client.clone(), &org, trusted).await;
    let mut browser = Browser::new(&base, "198.51.100.77, 127.0.0.1");

    let login = browser
        .post("/login", &[("email", "ada@example.com")])
        .await;
    assert_eq!(login.status(), 303);

    let events = events(&client, &org).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor.id, "user_ada");
    assert_eq!(events[0].context.location, "198.51.100.77");
    assert_eq!(
        events[0].targets,
        [
            Target::new("user", "user_ada"),
            Target::new("team", "team_engineering").named("Engineering")
        ]
    );
}

/// Trailmark unreachable: the audited action answers 503 rather than pretend it was recorded.
#[tokio::test]
async fn an_unreachable_trailmark_is_a_503() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let client = Client::builder(dead, ADMIN_KEY)
        .retry_policy(trailmark_client::RetryPolicy::none())
        .build()
        .expect("client");
    let base = spawn_example(client, "org_unused", TrustedProxies::none()).await;
    let mut browser = Browser::new(&base, "198.51.100.77");
    let login = browser
        .post("/login", &[("email", "ada@example.com")])
        .await;
    assert_eq!(login.status(), 503);
    let body: Value = login.json().await.expect("json");
    assert_eq!(body["code"], "audit_unavailable");
}

/// With a background queue, `send()` returns once queued and the queue delivers on shutdown.
#[tokio::test]
async fn the_middleware_can_send_through_the_background_queue() {
    use axum::extract::Request;
    use axum::middleware::{self, Next};
    use std::sync::Arc;
    use trailmark_client::BackgroundConfig;
    use trailmark_client::axum::{Audit, AuditActor, AuditError, AuditLayer};

    let trailmark = TestApp::spawn().await;
    let client = Client::new(&trailmark.base, ADMIN_KEY).expect("client");
    let org = client.create_organization("Acme").await.expect("org").id;
    let queue = Arc::new(client.background(BackgroundConfig::default()));
    let actor = AuditActor::user(&org, "user_1", "Jon Smith").team("team_1", "Team");
    let sign_in = move |mut request: Request, next: Next| {
        request.extensions_mut().insert(actor.clone());
        next.run(request)
    };
    let router = axum::Router::new()
        .route(
            "/documents/{id}",
            axum::routing::get(
                |audit: Audit, axum::extract::Path(id): axum::extract::Path<String>| async move {
                    let receipt = audit
                        .log("document.read")
                        .target("document", id)
                        .send()
                        .await?;
                    Ok::<_, AuditError>(format!("queued: {}", receipt.is_none()))
                },
            ),
        )
        .layer(middleware::from_fn(sign_in))
        .layer(AuditLayer::new(client.clone()).background(Arc::clone(&queue)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let answer = reqwest::get(format!("{base}/documents/doc_7"))
        .await
        .expect("request");
    assert_eq!(answer.text().await.expect("body"), "queued: true");
    queue.flush().await;
    assert_eq!(queue.stats().sent(), 1);
    let events = events(&client, &org).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, "document.read");
    assert_eq!(
        events[0].targets,
        [
            Target::new("document", "doc_7"),
            Target::new("team", "team_1").named("Team")
        ]
    );
}
