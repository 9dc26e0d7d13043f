//! The operators' console over HTTP: operators made with the real binary's `operators create`,
//! sign-in (a strict cookie, one answer for a wrong e-mail or password, throttling), CSRF on
//! every form including sign-in, idle expiry on the server's injectable clock, sign-out,
//! organizations, schemas, and the record of every action in the organization's log and in
//! Trailmark's own. The browser tests (`tests/browser/console.test.mjs`) drive the same pages
//! in Chromium.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::redirect::Policy;
use reqwest::{Client, Response};
use serde_json::{Value, json};
use trailmark_app::console::TRAILMARK_LOG;

use crate::helpers::{Options, TestApp, body, event};

const PASSWORD: &str = "correct horse battery staple";

/// Creates an operator through the real binary, the password on standard input, beside the
/// running server.
fn create_operator(app: &TestApp, email: &str, password: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args(["operators", "create", "--email", email, "--database"])
        .arg(app.database.url())
        .arg("--data-dir")
        .arg(app.data_dir.path())
        .env_remove("TRAILMARK_DATABASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run trailmark");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    child.wait_with_output().expect("trailmark ends")
}

/// A browser: no redirects followed, the console's cookie kept by hand.
struct Browser<'a> {
    app: &'a TestApp,
    client: Client,
    cookie: String,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        Browser {
            app,
            client: Client::builder()
                .redirect(Policy::none())
                .user_agent("console-test/1.0")
                .build()
                .expect("client"),
            cookie: String::new(),
        }
    }

    async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.app.url(path))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("request")
    }

    /// Posts a form as is (no CSRF token added).
    async fn post_raw(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.client
            .post(self.app.url(path))
            .header("cookie", &self.cookie)
            .form(form)
            .send()
            .await
            .expect("request")
    }

    /// Posts a form with the session's CSRF token, read from a page as a browser would.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        let token = self.csrf().await;
        let mut fields = vec![("csrf", token.as_str())];
        fields.extend_from_slice(form);
        self.post_raw(path, &fields).await
    }

    async fn csrf(&self) -> String {
        let html = self
            .get("/console/organizations")
            .await
            .text()
            .await
            .expect("html");
        csrf_in(&html)
    }

    /// Signs in; returns the answer to the form's post.
    async fn sign_in(&mut self, email: &str, password: &str) -> Response {
        let form = self
            .client
            .get(self.app.url("/console/sign_in"))
            .send()
            .await
            .expect("request");
        assert_eq!(form.status(), 200);
        let pre = cookie_pair(&form, "trailmark_console_sign_in").expect("a sign-in cookie");
        let token = csrf_in(&form.text().await.expect("html"));
        let response = self
            .client
            .post(self.app.url("/console/sign_in"))
            .header("cookie", &pre)
            .form(&[
                ("csrf", token.as_str()),
                ("email", email),
                ("password", password),
            ])
            .send()
            .await
            .expect("request");
        if let Some(session) = cookie_pair(&response, "trailmark_console") {
            self.cookie = session;
        }
        response
    }
}

fn csrf_in(html: &str) -> String {
    let start = html.find(r#"name="csrf" value=""#).expect("a csrf field") + 19;
    html[start..start + 64].to_owned()
}

/// The `name=value` pair of the cookie `name` a response sets.
fn cookie_pair(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

fn set_cookie(response: &Response, name: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_default()
        .to_owned()
}

fn location(response: &Response) -> String {
    response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

async fn signed_in<'a>(app: &'a TestApp, email: &str) -> Browser<'a> {
    let created = create_operator(app, email, PASSWORD);
    assert!(created.status.success(), "{created:?}");
    let mut browser = Browser::new(app);
    let response = browser.sign_in(email, PASSWORD).await;
    assert_eq!(response.status(), 303, "{:?}", response.text().await);
    browser
}

/// Trailmark's own log, as `(action, actor id, actor name)`.
async fn trailmark_log(app: &TestApp) -> Vec<Value> {
    app.stored_events(TRAILMARK_LOG)
        .await
        .into_iter()
        .map(|e| e.body)
        .collect()
}

fn actions(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn an_operator_signs_in_with_a_strict_cookie_and_a_wrong_password_gets_the_generic_answer() {
    let app = TestApp::spawn().await;
    let created = create_operator(&app, "Ops@Example.test", PASSWORD);
    assert!(created.status.success(), "{created:?}");
    let again = create_operator(&app, "ops@example.test", PASSWORD);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists"),
        "{again:?}"
    );
    let short = create_operator(&app, "short@example.test", "too short");
    assert!(!short.status.success());
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("at least 12"),
        "{short:?}"
    );

    let mut browser = Browser::new(&app);
    let home = browser.get("/console").await;
    assert_eq!(home.status(), 303);
    assert_eq!(location(&home), "/console/sign_in");
    let page = browser.get("/console/organizations").await;
    assert_eq!(page.status(), 303, "no session, no page");

    // A wrong password and an unknown e-mail get the same answer.
    for (email, password) in [
        ("ops@example.test", "not the password"),
        ("nobody@example.test", PASSWORD),
    ] {
        let refused = browser.sign_in(email, password).await;
        assert_eq!(refused.status(), 401);
        assert!(cookie_pair(&refused, "trailmark_console").is_none());
        let html = refused.text().await.expect("html");
        assert!(html.contains("Wrong e-mail or password."), "{html}");
    }
    // A sign-in form posted without its double-submit cookie (from another site) is refused.
    let forged = browser
        .client
        .post(app.url("/console/sign_in"))
        .form(&[
            ("csrf", "a".repeat(64).as_str()),
            ("email", "ops@example.test"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("request");
    assert_eq!(forged.status(), 403);

    let opened = browser.sign_in("OPS@example.test", PASSWORD).await;
    assert_eq!(opened.status(), 303);
    assert_eq!(location(&opened), "/console/organizations");
    let cookie = set_cookie(&opened, "trailmark_console");
    assert!(
        cookie.ends_with("; Path=/console; HttpOnly; SameSite=Strict") && cookie.len() > 80,
        "{cookie}"
    );
    let page = browser.get("/console/organizations").await;
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.expect("html");
    assert!(html.contains("ops@example.test"));
    assert!(html.contains(r#"name="viewport""#));

    // Trailmark's own log holds the failures and the sign-in, with the browser's address and
    // user agent.
    let log = trailmark_log(&app).await;
    assert_eq!(
        actions(&log),
        [
            "trailmark.console.sign_in_failed",
            "trailmark.console.sign_in_failed",
            "trailmark.console.signed_in"
        ]
    );
    assert_eq!(log[1]["metadata"]["email"], "nobody@example.test");
    assert_eq!(log[2]["actor"]["type"], "operator");
    assert_eq!(log[2]["actor"]["name"], "ops@example.test");
    assert!(
        log[2]["actor"]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("operator_"))
    );
    assert_eq!(log[2]["context"]["location"], "127.0.0.1");
    assert_eq!(log[2]["context"]["user_agent"], "console-test/1.0");
    let shown = browser
        .get("/console/log")
        .await
        .text()
        .await
        .expect("html");
    assert!(shown.contains("trailmark.console.signed_in"), "{shown}");

    // The log is Trailmark's: the API neither lists it, finds it, nor writes to it.
    let listed = body(app.get("/organizations").await).await;
    assert!(!listed.to_string().contains(TRAILMARK_LOG), "{listed}");
    assert_eq!(
        app.get(&format!("/organizations/{TRAILMARK_LOG}"))
            .await
            .status(),
        404
    );
    let written = app
        .create_event(TRAILMARK_LOG, &event("user.login"), None)
        .await;
    assert_eq!(written.status(), 404);
    let deleted = app
        .client
        .delete(app.url(&format!("/organizations/{TRAILMARK_LOG}")))
        .bearer_auth(crate::helpers::ADMIN_KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(deleted.status(), 404);
}

#[tokio::test]
async fn sign_ins_are_throttled_after_repeated_failures_even_with_the_right_password() {
    let app = TestApp::spawn().await;
    let created = create_operator(&app, "ops@example.test", PASSWORD);
    assert!(created.status.success(), "{created:?}");
    let mut browser = Browser::new(&app);
    for _ in 0..trailmark_app::console::FAILURES_PER_EMAIL {
        assert_eq!(
            browser
                .sign_in("ops@example.test", "wrong password")
                .await
                .status(),
            401
        );
    }
    let throttled = browser.sign_in("ops@example.test", PASSWORD).await;
    assert_eq!(throttled.status(), 429);
    assert!(cookie_pair(&throttled, "trailmark_console").is_none());
}

#[tokio::test]
async fn every_console_form_needs_the_sessions_csrf_token() {
    let app = TestApp::spawn().await;
    let browser = signed_in(&app, "ops@example.test").await;
    for form in [
        vec![("name", "Forged Inc")],
        vec![
            ("csrf", "0".repeat(64).leak() as &str),
            ("name", "Forged Inc"),
        ],
    ] {
        let refused = browser.post_raw("/console/organizations", &form).await;
        assert_eq!(refused.status(), 403);
        assert!(
            refused
                .text()
                .await
                .expect("html")
                .contains("This form has expired")
        );
    }
    // A JSON body with the right token is no form either.
    let token = browser.csrf().await;
    let json_post = browser
        .client
        .post(app.url("/console/organizations"))
        .header("cookie", &browser.cookie)
        .json(&json!({"csrf": token, "name": "Forged Inc"}))
        .send()
        .await
        .expect("request");
    assert_eq!(json_post.status(), 403);
    let listed = body(app.get("/organizations").await).await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(0), "{listed}");
}

#[tokio::test]
async fn a_console_session_ends_after_idle_time_and_at_sign_out() {
    let app = TestApp::spawn().await;
    let mut browser = signed_in(&app, "ops@example.test").await;
    // Activity keeps it open: 20 minutes, a request, 20 more.
    app.clock.advance(Duration::from_secs(20 * 60));
    assert_eq!(browser.get("/console/organizations").await.status(), 200);
    app.clock.advance(Duration::from_secs(20 * 60));
    assert_eq!(browser.get("/console/organizations").await.status(), 200);
    // 31 idle minutes end it.
    app.clock.advance(Duration::from_secs(31 * 60));
    let ended = browser.get("/console/organizations").await;
    assert_eq!(ended.status(), 303);
    assert_eq!(location(&ended), "/console/sign_in?ended=1");

    let opened = browser.sign_in("ops@example.test", PASSWORD).await;
    assert_eq!(opened.status(), 303);
    let old_cookie = browser.cookie.clone();
    let signed_out = browser.post("/console/sign_out", &[]).await;
    assert_eq!(signed_out.status(), 303);
    assert!(set_cookie(&signed_out, "trailmark_console").contains("Max-Age=0"));
    // The old cookie, replayed, opens nothing.
    browser.cookie = old_cookie;
    assert_eq!(browser.get("/console/organizations").await.status(), 303);
    let log = actions(&trailmark_log(&app).await);
    assert_eq!(
        log.last().map(String::as_str),
        Some("trailmark.console.signed_out"),
        "{log:?}"
    );
}

#[tokio::test]
async fn organizations_are_managed_from_the_console_and_every_action_is_recorded() {
    let app = TestApp::spawn().await;
    let browser = signed_in(&app, "ops@example.test").await;

    let refused = browser
        .post("/console/organizations", &[("name", "")])
        .await;
    assert_eq!(refused.status(), 422);
    let created = browser
        .post(
            "/console/organizations",
            &[
                ("name", "Acme <b>Corp</b>"),
                ("domains", "acme.test, acme.example"),
            ],
        )
        .await;
    assert_eq!(created.status(), 303);
    let page_path = location(&created);
    let id = page_path
        .trim_start_matches("/console/organizations/")
        .split('?')
        .next()
        .expect("id")
        .to_owned();
    let organization = body(app.get(&format!("/organizations/{id}")).await).await;
    assert_eq!(organization["name"], "Acme <b>Corp</b>");
    assert_eq!(organization["domains"].as_array().map(Vec::len), Some(2));
    // Listed and found by search, the name escaped.
    let listed = browser
        .get("/console/organizations?search=acme")
        .await
        .text()
        .await
        .expect("html");
    assert!(listed.contains("Acme &lt;b&gt;Corp&lt;/b&gt;"), "{listed}");

    for n in 0..3 {
        let mut e = event("user.login");
        e["metadata"] = json!({"n": n});
        assert_eq!(app.create_event(&id, &e, None).await.status(), 200);
    }
    let path = format!("/console/organizations/{id}");
    let shown = browser.get(&format!("{path}?actions=user.login")).await;
    assert_eq!(shown.status(), 200);
    let html = shown.text().await.expect("html");
    assert_eq!(html.matches("<code>user.login</code>").count(), 3, "{html}");
    for format in ["csv", "ndjson", "ocsf"] {
        assert!(
            html.contains(&format!("name=\"format\" value=\"{format}\"")),
            "the console offers {format} exports"
        );
    }
    let bad_filter = browser.get(&format!("{path}?range_start=yesterday")).await;
    assert_eq!(bad_filter.status(), 422);

    let renamed = browser
        .post(&path, &[("name", "Acme Corp"), ("domains", "acme.test")])
        .await;
    assert_eq!(renamed.status(), 303);
    assert_eq!(
        body(app.get(&format!("/organizations/{id}")).await).await["name"],
        "Acme Corp"
    );
    assert_eq!(
        browser
            .post(&format!("{path}/retention"), &[("days", "30")])
            .await
            .status(),
        303
    );
    assert_eq!(
        browser
            .post(&format!("{path}/retention"), &[("days", "-3")])
            .await
            .status(),
        422
    );
    assert_eq!(
        browser
            .post(
                &format!("{path}/legal_hold"),
                &[("active", "true"), ("reason", "Case 12")]
            )
            .await
            .status(),
        303
    );
    assert_eq!(
        browser
            .post(&format!("{path}/legal_hold"), &[("active", "false")])
            .await
            .status(),
        303
    );
    let export = browser
        .post(
            &format!("{path}/export"),
            &[("format", "csv"), ("actions", "user.login")],
        )
        .await;
    assert_eq!(export.status(), 303);
    let export_page = location(&export);
    let mut ready = String::new();
    for _ in 0..100 {
        ready = browser.get(&export_page).await.text().await.expect("html");
        if ready.contains("id=\"download\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready.contains("3 events"), "{ready}");
    let linked = browser
        .post(&format!("{path}/portal_link"), &[("intent", "audit_logs")])
        .await;
    assert_eq!(linked.status(), 200);
    let html = linked.text().await.expect("html");
    let start = html
        .find(&format!("{}/portal?token=", app.base))
        .expect("a portal link");
    let link = &html[start..start + app.base.len() + 78];
    let opened = Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
        .get(link)
        .send()
        .await
        .expect("request");
    assert_eq!(opened.status(), 200, "the link opens the portal");
    let configure = browser
        .post(&format!("{path}/configure_streams"), &[])
        .await;
    assert_eq!(configure.status(), 303);
    assert!(location(&configure).starts_with(&format!("{}/portal?token=", app.base)));

    // The organization's log names the operator for its changes.
    let own: Vec<Value> = app
        .stored_events(&id)
        .await
        .into_iter()
        .map(|e| e.body)
        .collect();
    let recorded: Vec<&Value> = own
        .iter()
        .filter(|e| e["actor"]["type"] == "operator")
        .collect();
    assert_eq!(
        actions(&recorded.iter().map(|v| (*v).clone()).collect::<Vec<_>>()),
        [
            "trailmark.retention.set",
            "trailmark.legal_hold.set",
            "trailmark.legal_hold.lifted",
            "trailmark.export.created",
            "trailmark.portal_link.created",
            "trailmark.portal_link.created"
        ]
    );
    assert!(
        recorded
            .iter()
            .all(|e| e["actor"]["name"] == "ops@example.test"
                && e["context"]["location"] == "127.0.0.1"
                && e["context"]["user_agent"] == "console-test/1.0")
    );

    let deleted = browser.post(&format!("{path}/delete"), &[]).await;
    assert_eq!(deleted.status(), 303);
    assert_eq!(app.get(&format!("/organizations/{id}")).await.status(), 404);

    // Trailmark's own log holds every action, each naming its organization.
    let log = trailmark_log(&app).await;
    assert_eq!(
        actions(&log),
        [
            "trailmark.console.signed_in",
            "trailmark.organization.created",
            "trailmark.organization.updated",
            "trailmark.retention.set",
            "trailmark.legal_hold.set",
            "trailmark.legal_hold.lifted",
            "trailmark.export.created",
            "trailmark.portal_link.created",
            "trailmark.portal_link.created",
            "trailmark.organization.deleted"
        ]
    );
    assert!(
        log[3..9]
            .iter()
            .all(|e| e["metadata"]["organization_id"] == id.as_str())
    );
    assert!(log.iter().all(|e| e["actor"]["name"] == "ops@example.test"));
}

#[tokio::test]
async fn event_schemas_are_checked_saved_and_versioned_from_the_console() {
    let app = TestApp::spawn().await;
    let browser = signed_in(&app, "ops@example.test").await;
    let metadata =
        r#"{"type":"object","properties":{"plan":{"type":"string"}},"required":["plan"]}"#;
    let sample = |plan: Value| {
        json!({
            "action": "user.login", "occurred_at": "2026-01-01T00:00:00.000Z",
            "actor": {"id": "u1", "type": "user"},
            "targets": [{"id": "t1", "type": "team"}],
            "context": {"location": "203.0.113.7"},
            "metadata": {"plan": plan}
        })
        .to_string()
    };
    let form = |intent: &'static str, sample: String| {
        vec![
            ("action", "user.login".to_owned()),
            ("targets", "user, team".to_owned()),
            ("metadata", metadata.to_owned()),
            ("sample", sample),
            ("intent", intent.to_owned()),
        ]
    };
    let post = |fields: Vec<(&'static str, String)>| {
        let browser = &browser;
        async move {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            browser.post("/console/schemas", &pairs).await
        }
    };
    let failing = post(form("check", sample(json!(7)))).await;
    assert_eq!(failing.status(), 200);
    let html = failing.text().await.expect("html");
    assert!(
        html.contains("does not pass") && html.contains("/metadata/plan"),
        "{html}"
    );
    let passing = post(form("check", sample(json!("pro"))))
        .await
        .text()
        .await
        .expect("html");
    assert!(passing.contains("passes this definition"), "{passing}");
    assert_eq!(app.get("/audit_logs/actions").await.status(), 200);
    assert_eq!(
        body(app.get("/audit_logs/actions").await).await["data"]
            .as_array()
            .map(Vec::len),
        Some(0),
        "checking saves nothing"
    );
    let bad = post(vec![
        ("action", "user.login".to_owned()),
        ("targets", "user".to_owned()),
        ("metadata", "{not json".to_owned()),
        ("intent", "save".to_owned()),
    ])
    .await;
    assert_eq!(bad.status(), 422);

    let saved = post(form("save", String::new())).await;
    assert_eq!(saved.status(), 303);
    assert_eq!(location(&saved), "/console/schemas/user.login?notice=saved");
    // Editing saves version 2, shown beside version 1.
    let edited = post(vec![
        ("action", "user.login".to_owned()),
        ("targets", "user, team, document".to_owned()),
        ("metadata", metadata.to_owned()),
        ("intent", "save".to_owned()),
    ])
    .await;
    assert_eq!(edited.status(), 303);
    let shown = browser
        .get("/console/schemas/user.login")
        .await
        .text()
        .await
        .expect("html");
    assert!(
        shown.contains("Version 2") && shown.contains("Version 1"),
        "{shown}"
    );
    let listed = browser
        .get("/console/schemas")
        .await
        .text()
        .await
        .expect("html");
    assert!(
        listed.contains("user.login") && listed.contains("<td>2</td>"),
        "{listed}"
    );

    // Ingest enforces what the console saved.
    let organization = app.create_organization("Schema Co").await;
    let mut refused = event("user.login");
    refused["metadata"] = json!({"plan": 7});
    assert_eq!(
        app.create_event(&organization, &refused, None)
            .await
            .status(),
        400
    );
    let log = actions(&trailmark_log(&app).await);
    assert_eq!(
        log.iter()
            .filter(|a| *a == "trailmark.schema.created")
            .count(),
        2,
        "{log:?}"
    );
}

/// A value that would be markup if a page did not escape it.
fn hostile(tag: &str) -> String {
    format!(r#"{tag}" onfocus="x"><script>{tag}</script>"#)
}

/// Every console page shows hostile values (an organization's name, an event's actor, action
/// and location, a sample's problems, the operator's e-mail in the layout) as text, never as
/// markup: the templates escape each value, in text and in attributes.
#[tokio::test]
async fn hostile_values_are_shown_escaped_on_every_console_page() {
    let app = TestApp::spawn().await;
    let browser = signed_in(&app, "o<u>ps@example.test").await;
    let created = browser
        .post(
            "/console/organizations",
            &[("name", hostile("org").as_str())],
        )
        .await;
    let page_path = location(&created);
    let path = page_path.split('?').next().expect("path").to_owned();
    let id = path
        .trim_start_matches("/console/organizations/")
        .to_owned();
    let mut e = event("user.login");
    e["actor"]["name"] = json!(hostile("actor"));
    e["context"]["location"] = json!(hostile("location"));
    assert_eq!(app.create_event(&id, &e, None).await.status(), 200);
    let check = browser
        .post(
            "/console/schemas",
            &[
                ("action", "user.login"),
                ("targets", "team"),
                ("metadata", r#"{"type":"object","required":["x"]}"#),
                ("sample", &json!({"action": hostile("sample")}).to_string()),
                ("intent", "check"),
            ],
        )
        .await;
    for (response, tags) in [
        (browser.get("/console/organizations").await, vec!["org"]),
        (browser.get(&path).await, vec!["org", "actor", "location"]),
        (
            browser.get(&format!("{path}?q={}", hostile("q"))).await,
            vec!["org"],
        ),
        (check, vec!["sample"]),
    ] {
        let url = response.url().clone();
        let html = response.text().await.expect("html");
        assert!(!html.contains("<script>"), "{url}: {html}");
        assert!(!html.contains(r#"onfocus="x""#), "{url}: {html}");
        assert!(!html.contains("<u>"), "{url}: {html}");
        assert!(html.contains("o&lt;u&gt;ps@example.test"), "{url}: {html}");
        for tag in tags {
            assert!(
                html.contains(&format!("&gt;&lt;script&gt;{tag}&lt;/script&gt;")),
                "{url} does not show {tag}: {html}"
            );
        }
    }
    let log = browser
        .get("/console/log")
        .await
        .text()
        .await
        .expect("html");
    assert!(
        !log.contains("<u>") && log.contains("o&lt;u&gt;ps@example.test"),
        "{log}"
    );
}

#[tokio::test]
async fn api_keys_are_created_shown_once_listed_and_revoked_from_the_console() {
    let app = TestApp::spawn().await;
    let browser = signed_in(&app, "ops@example.test").await;
    let organization = app.create_organization("Keyed Co").await;
    let refused = browser
        .post("/console/keys", &[("name", ""), ("scope", "read")])
        .await;
    assert_eq!(refused.status(), 422);
    let created = browser
        .post(
            "/console/keys",
            &[
                ("name", "Reporting"),
                ("scope", "read"),
                ("organization_id", organization.as_str()),
                ("expires_in_days", "30"),
            ],
        )
        .await;
    assert_eq!(created.status(), 201);
    let html = created.text().await.expect("html");
    let start = html.find(r#"<code id="new-key">"#).expect("the key, once") + 19;
    let key = html[start..].split('<').next().expect("key").to_owned();
    assert!(key.starts_with("sk_"), "{key}");
    let works = app
        .client
        .get(app.url(&format!("/organizations/{organization}")))
        .bearer_auth(&key)
        .send()
        .await
        .expect("request");
    assert_eq!(works.status(), 200);
    // The list names it, but never shows its text again.
    let listed = browser
        .get("/console/keys")
        .await
        .text()
        .await
        .expect("html");
    assert!(
        listed.contains("Reporting") && !listed.contains(&key),
        "{listed}"
    );
    let id_start = listed.find("/console/keys/key_").expect("a revoke form") + 14;
    let id = listed[id_start..].split('/').next().expect("id").to_owned();
    let revoked = browser
        .post(&format!("/console/keys/{id}/revoke"), &[])
        .await;
    assert_eq!(revoked.status(), 303);
    let refused = app
        .client
        .get(app.url(&format!("/organizations/{organization}")))
        .bearer_auth(&key)
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 401);

    // Recorded in the organization's log and in Trailmark's, the operator as actor.
    let own = actions(
        &app.stored_events(&organization)
            .await
            .into_iter()
            .map(|e| e.body)
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        own,
        ["trailmark.api_key.created", "trailmark.api_key.revoked"]
    );
    let log = trailmark_log(&app).await;
    assert_eq!(
        actions(&log[1..]),
        ["trailmark.api_key.created", "trailmark.api_key.revoked"]
    );
    assert!(
        log[1..]
            .iter()
            .all(|e| e["actor"]["name"] == "ops@example.test")
    );
    assert_eq!(log[1]["targets"][0]["name"], "Reporting", "{}", log[1]);
}

#[tokio::test]
async fn an_organizations_page_follows_new_events_live() {
    let app = TestApp::spawn().await;
    let browser = signed_in(&app, "ops@example.test").await;
    let organization = app.create_organization("Live Co").await;
    let mut first = event("user.login");
    first["metadata"] = json!({"n": 0});
    assert_eq!(
        app.create_event(&organization, &first, None).await.status(),
        200
    );
    let html = browser
        .get(&format!(
            "/console/organizations/{organization}?actions=user.*"
        ))
        .await
        .text()
        .await
        .expect("html");
    // The page says where its live view starts: after the events it shows.
    let start = html.find(r#"data-live=""#).expect("a live table") + 11;
    let live = html[start..]
        .split('"')
        .next()
        .expect("url")
        .replace("&amp;", "&");
    assert_eq!(
        live,
        format!("/console/organizations/{organization}/events/stream?actions=user.%2A&after=0")
    );
    // Without a session, no stream.
    let anonymous = Browser::new(&app);
    assert_eq!(anonymous.get(&live).await.status(), 303);

    let mut stream = browser.get(&live).await;
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut other = event("document.opened");
    other["metadata"] = json!({"n": 1});
    app.create_event(&organization, &other, None).await;
    let mut second = event("user.logout");
    second["metadata"] = json!({"n": 2});
    app.create_event(&organization, &second, None).await;
    let mut received = String::new();
    while !received.contains("user.logout") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await
            .expect("an event within 10 s")
            .expect("chunk")
            .expect("the stream stays open");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(received.contains("id: 2\n"), "{received}");
    assert!(
        !received.contains("document.opened"),
        "the filter applies: {received}"
    );
}

#[tokio::test]
async fn a_live_view_ends_with_its_session_and_its_reconnect_is_refused() {
    let app = TestApp::spawn_with(Options {
        console_idle_timeout: Some(Duration::from_secs(2)),
        ..Options::default()
    })
    .await;
    let browser = signed_in(&app, "ops@example.test").await;
    let organization = app.create_organization("Live Co").await;
    let live = format!("/console/organizations/{organization}/events/stream?after=0");
    let mut stream = browser.get(&live).await;
    assert_eq!(stream.status(), 200);
    let opened = std::time::Instant::now();
    // Idle: the stream ends when the session would, and nothing renews it.
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await
            .expect("the stream ends within 10 s")
            .expect("chunk");
        if chunk.is_none() {
            break;
        }
    }
    let lasted = opened.elapsed();
    assert!(
        lasted >= Duration::from_millis(1500) && lasted < Duration::from_secs(5),
        "{lasted:?}"
    );
    // The page's reconnect goes through the session check, which the idle time ended.
    app.clock.advance(Duration::from_secs(3));
    assert_eq!(browser.get(&live).await.status(), 303);
}

#[tokio::test]
async fn signing_out_ends_the_live_view_s_stream_at_once() {
    let app = TestApp::spawn().await;
    let browser = signed_in(&app, "ops@example.test").await;
    let organization = app.create_organization("Live Co").await;
    let live = format!("/console/organizations/{organization}/events/stream?after=0");
    let mut stream = browser.get(&live).await;
    assert_eq!(stream.status(), 200);
    assert_eq!(browser.post("/console/sign_out", &[]).await.status(), 303);
    let signed_out = std::time::Instant::now();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await
            .expect("the stream ends within 10 s")
            .expect("chunk");
        if chunk.is_none() {
            break;
        }
    }
    // The session is checked every second, without renewing it.
    assert!(
        signed_out.elapsed() < Duration::from_secs(3),
        "{:?}",
        signed_out.elapsed()
    );
}

/// The alerts page lists open incidents and the latest ones, with when they began, opened and
/// resolved; an incident's values (a destination's error text) are shown escaped.
#[tokio::test]
async fn alert_incidents_are_listed_open_first_with_their_moments() {
    let app = TestApp::spawn().await;
    let browser = signed_in(&app, "ops@example.test").await;
    let organization = app.create_organization("Acme").await;
    let store = app.store();
    let now = trailmark_domain::Timestamp::now();
    let open = trailmark_store::rules::new_incident(
        trailmark_store::NewIncident {
            id: "incident_open".into(),
            kind: trailmark_store::IncidentKind::Stream,
            subject_id: "log_stream_failing".into(),
            organization_id: Some(organization.clone()),
            state: "invalid".into(),
            last_error: Some(hostile("error")),
            since: now.plus_millis(-600_000),
        },
        now.plus_millis(-300_000),
    );
    let resolved = trailmark_store::rules::new_incident(
        trailmark_store::NewIncident {
            id: "incident_resolved".into(),
            kind: trailmark_store::IncidentKind::Stream,
            subject_id: "log_stream_recovered".into(),
            organization_id: None,
            state: "error".into(),
            last_error: Some("503".into()),
            since: now.plus_millis(-900_000),
        },
        now.plus_millis(-800_000),
    );
    let export = trailmark_store::rules::new_incident(
        trailmark_store::NewIncident {
            id: "incident_export".into(),
            kind: trailmark_store::IncidentKind::Export,
            subject_id: "audit_log_export_failed".into(),
            organization_id: Some(organization.clone()),
            state: "error".into(),
            last_error: Some("disk full".into()),
            since: now,
        },
        now,
    );
    for incident in [&open, &resolved, &export] {
        assert!(store.open_incident(incident.clone()).await.expect("open"));
    }
    assert!(
        store
            .resolve_incident("incident_resolved", "active", now.plus_millis(-700_000))
            .await
            .expect("resolve")
    );
    let response = browser.get("/console/alerts").await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.expect("html");
    let open_table = &html[html.find(r#"id="open-incidents""#).expect("open table")
        ..html.find(r#"id="recent-incidents""#).expect("recent table")];
    assert!(open_table.contains("log_stream_failing"), "{open_table}");
    assert!(!open_table.contains("log_stream_recovered"), "{open_table}");
    assert!(
        !open_table.contains("audit_log_export_failed"),
        "{open_table}"
    );
    for shown in [
        "log_stream_recovered",
        "audit_log_export_failed",
        &now.plus_millis(-700_000).to_string(),
        "(active)",
        &now.plus_millis(-600_000).to_string(),
        "&gt;&lt;script&gt;error&lt;/script&gt;",
    ] {
        assert!(html.contains(shown), "{shown} in {html}");
    }
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains(r#"href="/console/alerts""#), "in the menu");
}
