//! The Admin Portal over HTTP: `POST /portal/generate_link` as WorkOS answers it, one-time links,
//! the session cookie and security headers, CSRF on every form, organization and intent scoping,
//! and the events the portal records. The browser tests (`tests/browser`) drive the same pages
//! in Chromium.

use reqwest::redirect::Policy;
use reqwest::{Client, Response};
use serde_json::{Value, json};

use crate::helpers::{TestApp, body, event};

/// A client that shows redirects instead of following them, and keeps no cookies.
fn browser() -> Client {
    Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

async fn link(app: &TestApp, organization: &str, intent: &str) -> String {
    made_link(
        app,
        &json!({"organization": organization, "intent": intent,
                "return_url": "https://app.example.com/settings",
                "admin_emails": ["it@acme.test"]}),
    )
    .await
}

/// The link `POST /portal/generate_link` makes for `request`.
async fn made_link(app: &TestApp, request: &Value) -> String {
    let response = app.post("/portal/generate_link", request).await;
    assert_eq!(response.status(), 201);
    body(response).await["link"]
        .as_str()
        .expect("link")
        .to_owned()
}

/// Opens a link and returns the session cookie (`name=value`).
async fn open(link: &str) -> String {
    let response = browser().get(link).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    set_cookie
        .split(';')
        .next()
        .expect("cookie pair")
        .to_owned()
}

async fn page(app: &TestApp, cookie: &str, path: &str) -> Response {
    browser()
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .expect("request")
}

/// The CSRF token in a page's forms.
async fn csrf(app: &TestApp, cookie: &str, path: &str) -> String {
    let html = page(app, cookie, path).await.text().await.expect("html");
    let start = html.find(r#"name="csrf" value=""#).expect("a csrf field") + 19;
    html[start..start + 64].to_owned()
}

async fn post_form(app: &TestApp, cookie: &str, path: &str, form: &str) -> Response {
    browser()
        .post(app.url(path))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .expect("request")
}

/// The id of an organization's newest event, through the API.
async fn newest_event_id(app: &TestApp, organization: &str) -> String {
    body(
        app.get(&format!(
            "/audit_logs/events?organization_id={organization}"
        ))
        .await,
    )
    .await["data"][0]["id"]
        .as_str()
        .expect("event id")
        .to_owned()
}

/// Creates a webhook stream through the API, with `config` beside its URL; returns its id.
async fn api_stream(app: &TestApp, organization: &str, name: &str, config: Value) -> String {
    let mut config = config;
    config["url"] = json!("http://127.0.0.1:9/hook");
    let response = app
        .post(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "http", "name": name,
                    "config": config}),
        )
        .await;
    assert_eq!(response.status(), 201);
    body(response).await["id"]
        .as_str()
        .expect("stream id")
        .to_owned()
}

fn is_html(response: &Response) -> bool {
    response.headers()["content-type"]
        .to_str()
        .is_ok_and(|v| v.starts_with("text/html"))
}

#[tokio::test]
async fn generate_link_answers_as_workos_and_serves_two_intents() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let cases = [
        (json!({"intent": "audit_logs"}), "organization"),
        (json!({"organization": organization}), "intent"),
        (
            json!({"organization": organization, "intent": "sso"}),
            "intent",
        ),
        (
            json!({"organization": organization, "intent": "audit_logs", "return_url": "javascript:alert(1)"}),
            "return_url",
        ),
    ];
    for (request, field) in cases {
        let response = app.post("/portal/generate_link", &request).await;
        assert_eq!(response.status(), 422, "{request}");
        let answer = body(response).await;
        assert_eq!(answer["errors"][0]["field"], field, "{answer}");
    }
    let refused = body(
        app.post(
            "/portal/generate_link",
            &json!({"organization": organization, "intent": "dsync"}),
        )
        .await,
    )
    .await;
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("audit_logs, log_streams")),
        "{refused}"
    );
    let unknown = app
        .post(
            "/portal/generate_link",
            &json!({"organization": "org_01HZZZZZZZZZZZZZZZZZZZZZZZ", "intent": "audit_logs"}),
        )
        .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        body(unknown).await["message"],
        "Could not find an organization with the id, org_01HZZZZZZZZZZZZZZZZZZZZZZZ."
    );
    // Keys WorkOS's SDKs add are accepted and ignored.
    let response = app
        .post(
            "/portal/generate_link",
            &json!({"organization": organization, "intent": "log_streams", "success_url": "https://app.example.com/done",
                    "intent_options": {"sso": {"bookmark_slug": "x"}}, "it_contact_emails": ["a@b.test"], "extra": 1}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let link = body(response).await["link"]
        .as_str()
        .expect("link")
        .to_owned();
    let token = link
        .strip_prefix(&format!("{}/portal?token=", app.base))
        .expect("a link to this server's portal");
    assert_eq!(token.len(), 64);
}

#[tokio::test]
async fn a_link_opens_one_session_once_with_a_strict_cookie_and_security_headers() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let link = link(&app, &organization, "audit_logs").await;

    let opened = browser().get(&link).send().await.expect("request");
    assert_eq!(opened.status(), 200);
    let headers = opened.headers();
    let cookie = headers["set-cookie"].to_str().expect("ascii");
    assert!(cookie.starts_with("trailmark_portal="), "{cookie}");
    assert!(
        cookie.ends_with("; Path=/portal; HttpOnly; SameSite=Strict"),
        "{cookie}"
    );
    assert_eq!(
        headers["content-security-policy"],
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-content-type-options"], "nosniff");

    let again = browser().get(&link).send().await.expect("request");
    assert_eq!(again.status(), 410);
    assert!(is_html(&again));
    assert!(again.headers().get("set-cookie").is_none());
    assert!(again.text().await.expect("html").contains("already used"));

    let forged = format!("{}/portal?token={}", app.base, "ab".repeat(32));
    let response = browser().get(&forged).send().await.expect("request");
    assert_eq!(response.status(), 404);
    assert!(is_html(&response));
    let garbage = browser()
        .get(app.url("/portal?token=<script>"))
        .send()
        .await
        .expect("request");
    assert_eq!(garbage.status(), 404);
    let no_session = browser()
        .get(app.url("/portal/events"))
        .send()
        .await
        .expect("request");
    assert_eq!(no_session.status(), 401);
    assert!(is_html(&no_session));
}

#[tokio::test]
async fn every_portal_form_needs_the_sessions_csrf_token() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let cookie = open(&link(&app, &organization, "audit_logs").await).await;
    let token = csrf(&app, &cookie, "/portal/events").await;

    for form in [
        "format=csv",
        "format=csv&csrf=",
        &format!("format=csv&csrf={}", "0".repeat(64)),
    ] {
        let refused = post_form(&app, &cookie, "/portal/exports", form).await;
        assert_eq!(refused.status(), 403, "{form}");
        assert!(is_html(&refused));
    }
    // Another session's token is no good either.
    let other_cookie = open(&link(&app, &organization, "audit_logs").await).await;
    let other_token = csrf(&app, &other_cookie, "/portal/events").await;
    assert_ne!(token, other_token);
    let crossed = post_form(
        &app,
        &cookie,
        "/portal/exports",
        &format!("format=csv&csrf={other_token}"),
    )
    .await;
    assert_eq!(crossed.status(), 403);

    let accepted = post_form(
        &app,
        &cookie,
        "/portal/exports",
        &format!("format=csv&csrf={token}"),
    )
    .await;
    assert_eq!(accepted.status(), 303);
    let location = accepted.headers()["location"].to_str().expect("ascii");
    assert!(location.starts_with("/portal/exports/audit_log_export_"));
}

#[tokio::test]
async fn a_session_sees_only_its_organization_and_its_intent() {
    let app = TestApp::spawn().await;
    let acme = app.create_organization("Acme").await;
    let globex = app.create_organization("Globex").await;
    app.create_event(&globex, &event("user.signed_in"), None)
        .await;
    let globex_event = newest_event_id(&app, &globex).await;
    let stream = api_stream(&app, &globex, "Globex SIEM", json!({})).await;

    let events_session = open(&link(&app, &acme, "audit_logs").await).await;
    let streams_session = open(&link(&app, &acme, "log_streams").await).await;
    for (cookie, path) in [
        (&events_session, format!("/portal/events/{globex_event}")),
        (&streams_session, format!("/portal/streams/{stream}")),
    ] {
        let response = page(&app, cookie, &path).await;
        assert_eq!(response.status(), 404, "{path}");
        let html = response.text().await.expect("html");
        assert!(!html.contains("Globex"), "{html}");
    }
    let token = csrf(&app, &streams_session, "/portal/streams/new").await;
    let delete = post_form(
        &app,
        &streams_session,
        &format!("/portal/streams/{stream}/delete"),
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(delete.status(), 404);
    assert_eq!(
        app.get(&format!("/audit_logs/streams/{stream}"))
            .await
            .status(),
        200
    );

    assert_eq!(
        page(&app, &events_session, "/portal/streams")
            .await
            .status(),
        403
    );
    assert_eq!(
        page(&app, &streams_session, "/portal/events")
            .await
            .status(),
        403
    );
}

#[tokio::test]
async fn stream_forms_show_the_apis_validation_beside_the_fields_and_changes_are_audited() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let cookie = open(&link(&app, &organization, "log_streams").await).await;
    let token = csrf(&app, &cookie, "/portal/streams/new?type=splunk").await;

    let invalid = post_form(
        &app,
        &cookie,
        "/portal/streams",
        &format!("csrf={token}&type=splunk&name=SIEM&config.url=ftp%3A%2F%2Fx&config.token=secret-hec-token&config.filters.actions=us*er&config.egress_proxy=socks5%3A%2F%2Fx%3A1&config.egress_proxy_username=u&config.egress_proxy_password=secret-proxy-pass"),
    )
    .await;
    assert_eq!(invalid.status(), 422);
    let html = invalid.text().await.expect("html");
    assert!(html.contains(r#"id="config.url-error""#), "{html}");
    assert!(
        html.contains(r#"id="config.filters.actions-error""#),
        "a bad filter is shown beside its field: {html}"
    );
    // The egress settings every stream takes are in every form, checked like the others.
    assert!(html.contains(r#"id="config.egress_proxy-error""#), "{html}");
    assert!(!html.contains("secret-hec-token"), "a secret was echoed");
    assert!(!html.contains("secret-proxy-pass"), "a secret was echoed");

    let created = post_form(
        &app,
        &cookie,
        "/portal/streams",
        &format!("csrf={token}&type=http&name=Webhook&config.url=http%3A%2F%2F127.0.0.1%3A9%2Fhook&config.format=ndjson&config.filters.actions=user.*%2C+document.deleted&config.filters.actor_types=user"),
    )
    .await;
    // The webhook signing secret the server made is shown on the answer, once, and the page
    // goes on to the stream.
    assert_eq!(created.status(), 200);
    let html = created.text().await.expect("html");
    let secret = html
        .split(r#"<code id="signing-secret">"#)
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the secret is shown")
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let id = html
        .split(r#"href="/portal/streams/"#)
        .nth(1)
        .and_then(|rest| rest.split('?').next())
        .expect("the way on to the stream")
        .to_owned();
    let shown = page(
        &app,
        &cookie,
        &format!("/portal/streams/{id}?notice=created"),
    )
    .await;
    assert!(
        !shown.text().await.expect("html").contains(&secret[6..]),
        "shown once"
    );
    let rotated = post_form(
        &app,
        &cookie,
        &format!("/portal/streams/{id}/rotate_secret"),
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(rotated.status(), 200);
    let html = rotated.text().await.expect("html");
    assert!(
        html.contains(r#"<code id="signing-secret">whsec_"#),
        "{html}"
    );
    assert!(!html.contains(&secret), "a new secret");
    let paused = post_form(
        &app,
        &cookie,
        &format!("/portal/streams/{id}/pause"),
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(paused.status(), 303);
    let stream = body(app.get(&format!("/audit_logs/streams/{id}")).await).await;
    assert_eq!(stream["enabled"], false);
    assert_eq!(stream["state"], "inactive");
    assert_eq!(
        stream["config"]["filters"],
        json!({"actions": ["user.*", "document.deleted"], "actor_types": ["user"]}),
        "the form's comma-separated filters"
    );

    let recorded = body(
        app.get(&format!(
            "/audit_logs/events?organization_id={organization}&actions=trailmark.portal.*&order=asc"
        ))
        .await,
    )
    .await;
    let actions: Vec<&str> = recorded["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "trailmark.portal.session.opened",
            "trailmark.portal.stream.created",
            "trailmark.portal.stream.secret_rotated",
            "trailmark.portal.stream.paused"
        ]
    );
    let actor: &Value = &recorded["data"][3]["actor"];
    assert_eq!(actor["type"], "portal_session");
    assert_eq!(actor["name"], "it@acme.test");
    assert_eq!(recorded["data"][3]["targets"][0]["id"], id);
}

#[tokio::test]
async fn a_stream_set_up_in_the_portal_sends_the_admin_to_the_links_success_url() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let response = app
        .post(
            "/portal/generate_link",
            &json!({"organization": organization, "intent": "log_streams",
                    "success_url": "https://app.example.com/streams/done"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let with_success = body(response).await["link"]
        .as_str()
        .expect("link")
        .to_owned();
    let cookie = open(&with_success).await;
    let token = csrf(&app, &cookie, "/portal/streams/new").await;
    // A signing secret of the admin's own: none is made, so nothing is shown before moving on.
    let form = |token: &str| {
        format!(
            "csrf={token}&type=http&name=Webhook&config.url=http%3A%2F%2F127.0.0.1%3A9%2Fhook&config.format=ndjson&config.signing_secret=whsec_c2VjcmV0c2VjcmV0c2VjcmV0"
        )
    };
    // A refused form stays in the portal, with its problems shown.
    let refused = post_form(
        &app,
        &cookie,
        "/portal/streams",
        &format!("csrf={token}&type=http&name=Webhook&config.url=ftp%3A%2F%2Fx"),
    )
    .await;
    assert_eq!(refused.status(), 422);
    let created = post_form(&app, &cookie, "/portal/streams", &form(&token)).await;
    assert_eq!(created.status(), 303);
    assert_eq!(
        created.headers()["location"],
        "https://app.example.com/streams/done"
    );
    // A secret the server made is shown once first, and the way on is the success_url.
    let made = post_form(
        &app,
        &cookie,
        "/portal/streams",
        &format!(
            "csrf={token}&type=http&name=Webhook&config.url=http%3A%2F%2F127.0.0.1%3A9%2Fhook"
        ),
    )
    .await;
    assert_eq!(made.status(), 200);
    let html = made.text().await.expect("html");
    assert!(
        html.contains(r#"<code id="signing-secret">whsec_"#),
        "{html}"
    );
    assert!(
        html.contains(r#"href="https://app.example.com/streams/done""#),
        "{html}"
    );

    // Without a success_url, the new stream's own page says it was created.
    let cookie = open(&link(&app, &organization, "log_streams").await).await;
    let token = csrf(&app, &cookie, "/portal/streams/new").await;
    let created = post_form(&app, &cookie, "/portal/streams", &form(&token)).await;
    assert_eq!(created.status(), 303);
    let location = created.headers()["location"].to_str().expect("ascii");
    assert!(
        location.starts_with("/portal/streams/log_stream_")
            && location.ends_with("?notice=created"),
        "{location}"
    );

    // A success_url that is no web URL is refused when the link is made.
    let response = app
        .post(
            "/portal/generate_link",
            &json!({"organization": organization, "intent": "log_streams",
                    "success_url": "javascript:alert(1)"}),
        )
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(body(response).await["errors"][0]["field"], "success_url");
}

/// Text that becomes markup, or ends an attribute and adds one, if a page writes it unescaped;
/// `tag` tells the values apart.
fn hostile(tag: &str) -> String {
    format!(r#"{tag}" onfocus="x"><script>{tag}</script>"#)
}

/// A page shows every hostile value among `tags`, as text, and none of them as markup: the
/// templates escape each value by construction, in text and in attributes alike.
async fn assert_escaped(response: Response, status: u16, tags: &[&str]) {
    let url = response.url().clone();
    assert_eq!(response.status(), status, "{url}");
    let html = response.text().await.expect("html");
    // The layout's only script is an external one: `<script>` is never the page's own.
    assert!(!html.contains("<script>"), "{url}: {html}");
    assert!(!html.contains(r#"onfocus="x""#), "{url}: {html}");
    for tag in tags {
        // Also inside the event's JSON, where its own escaping precedes the page's.
        assert!(
            html.contains(&format!("&gt;&lt;script&gt;{tag}&lt;/script&gt;")),
            "{url} does not show {tag}: {html}"
        );
    }
}

#[tokio::test]
async fn hostile_values_are_shown_escaped_on_every_portal_page() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization(&hostile("org")).await;
    let mut event = event("user.signed_in");
    event["actor"] =
        json!({"id": hostile("actor_id"), "name": hostile("actor_name"), "type": "user"});
    event["targets"] =
        json!([{"id": "team_1", "type": hostile("target_type"), "name": hostile("target_name")}]);
    event["context"]["location"] = json!(hostile("location"));
    event["metadata"] = json!({"note": hostile("metadata")});
    assert_eq!(
        app.create_event(&organization, &event, None).await.status(),
        200
    );
    let event_id = newest_event_id(&app, &organization).await;
    let stream = api_stream(
        &app,
        &organization,
        &hostile("stream"),
        json!({"source": hostile("source")}),
    )
    .await;
    let link_with_urls = |intent: &str| {
        json!({"organization": organization, "intent": intent,
               "return_url": format!("https://app.test/{}", hostile("return_url")),
               "success_url": format!("https://app.test/{}", hostile("success_url"))})
    };

    let events = open(&made_link(&app, &link_with_urls("audit_logs")).await).await;
    let layout = ["org", "return_url"];
    let row = [
        "actor_id",
        "actor_name",
        "target_type",
        "target_name",
        "location",
    ];
    assert_escaped(
        page(&app, &events, "/portal/events").await,
        200,
        &[&layout[..], &row[..]].concat(),
    )
    .await;
    let filtered = browser()
        .get(app.url("/portal/events"))
        .query(&[
            ("actor_names", hostile("actor_name")),
            ("q", hostile("query")),
        ])
        .header("cookie", &events)
        .send()
        .await
        .expect("request");
    assert_escaped(
        filtered,
        200,
        &[&layout[..], &["actor_name", "query"]].concat(),
    )
    .await;
    let refused = browser()
        .get(app.url("/portal/events"))
        .query(&[("range_start", hostile("range"))])
        .header("cookie", &events)
        .send()
        .await
        .expect("request");
    assert_escaped(refused, 422, &[&layout[..], &["range"]].concat()).await;
    assert_escaped(
        page(&app, &events, &format!("/portal/events/{event_id}")).await,
        200,
        &[&layout[..], &["metadata", "actor_name", "location"]].concat(),
    )
    .await;

    let streams = open(&made_link(&app, &link_with_urls("log_streams")).await).await;
    assert_escaped(
        page(&app, &streams, "/portal/streams").await,
        200,
        &[&layout[..], &["stream"]].concat(),
    )
    .await;
    for path in [
        format!("/portal/streams/{stream}"),
        format!("/portal/streams/{stream}/edit"),
    ] {
        assert_escaped(
            page(&app, &streams, &path).await,
            200,
            &[&layout[..], &["stream", "source"]].concat(),
        )
        .await;
    }
    let notice = browser()
        .get(app.url(&format!("/portal/streams/{stream}")))
        .query(&[
            ("notice", "invalid".to_owned()),
            ("detail", hostile("notice")),
        ])
        .header("cookie", &streams)
        .send()
        .await
        .expect("request");
    assert_escaped(notice, 200, &[&layout[..], &["notice", "stream"]].concat()).await;

    // The typed values of a refused form, shown again; then the page showing a made secret,
    // whose way on is the link's success_url.
    let token = csrf(&app, &streams, "/portal/streams/new").await;
    let post = |url: &'static str| {
        let form = [
            ("csrf", token.clone()),
            ("type", "http".to_owned()),
            ("name", hostile("typed_name")),
            ("config.url", url.to_owned()),
            ("config.source", hostile("typed_source")),
        ];
        browser()
            .post(app.url("/portal/streams"))
            .header("cookie", &streams)
            .form(&form)
            .send()
    };
    assert_escaped(
        post("ftp://x").await.expect("request"),
        422,
        &[&layout[..], &["typed_name", "typed_source"]].concat(),
    )
    .await;
    assert_escaped(
        post("http://127.0.0.1:9/hook").await.expect("request"),
        200,
        &[&layout[..], &["typed_name", "success_url"]].concat(),
    )
    .await;
}

/// The events page's live stream: the session's organization only, for an `audit_logs` session
/// only, with the page's filters; the page names where it starts.
#[tokio::test]
async fn the_events_page_follows_its_organization_s_new_events_through_the_session() {
    let app = TestApp::spawn().await;
    let acme = app.create_organization("Acme").await;
    let globex = app.create_organization("Globex").await;
    let events_session = open(&link(&app, &acme, "audit_logs").await).await;
    let streams_session = open(&link(&app, &acme, "log_streams").await).await;

    let html = page(&app, &events_session, "/portal/events?actions=user.*")
        .await
        .text()
        .await
        .expect("html");
    let size = app.stored_events(&acme).await.len();
    let expected = format!(
        r#"data-live="/portal/events/stream?actions=user.%2A&amp;after={}""#,
        size - 1
    );
    assert!(html.contains(&expected), "{expected} in {html}");
    let older = page(&app, &events_session, "/portal/events?before=1")
        .await
        .text()
        .await
        .expect("html");
    assert!(!older.contains("data-live"), "an older page stays still");

    let path = format!("/portal/events/stream?actions=user.*&after={}", size - 1);
    assert_eq!(page(&app, &streams_session, &path).await.status(), 403);
    assert_eq!(
        browser()
            .get(app.url(&path))
            .send()
            .await
            .expect("request")
            .status(),
        401
    );
    let response = page(&app, &events_session, &path).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    // The session's organization is the stream's, whatever the query says.
    let response = page(
        &app,
        &events_session,
        &format!("{path}&organization_id={globex}"),
    )
    .await;
    let mut stream = crate::live::SseClient::from_response(response);
    app.create_event(&globex, &event("user.signed_in"), None)
        .await;
    app.create_event(&acme, &event("document.viewed"), None)
        .await;
    let mut mine = event("user.signed_out");
    mine["metadata"] = json!({"mine": true});
    app.create_event(&acme, &mine, None).await;
    let message = stream.next_event().await.expect("an event");
    let data: Value = serde_json::from_str(&message.data).expect("json");
    assert_eq!(data["action"], "user.signed_out");
    assert_eq!(data["organization_id"], acme.as_str());
    assert_eq!(message.id, Some((size + 1).to_string()));
}

#[tokio::test]
async fn the_s3_form_offers_a_role_with_an_external_id_and_optional_encryption() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let cookie = open(&link(&app, &organization, "log_streams").await).await;
    let html = page(&app, &cookie, "/portal/streams/new?type=s3")
        .await
        .text()
        .await
        .expect("html");
    for field in [
        "config.role_arn",
        "config.external_id",
        "config.sts_endpoint",
        "config.server_side_encryption",
        "config.kms_key_id",
        "config.acl",
    ] {
        assert!(html.contains(&format!(r#"name="{field}""#)), "{field}");
    }
    assert!(
        html.contains(r#"name="config.secret_access_key" autocomplete="off""#)
            && html.contains(r#"<input type="password" name="config.secret_access_key""#),
        "the secret key stays a write-only credential"
    );
    let token = csrf(&app, &cookie, "/portal/streams/new?type=s3").await;
    // The optional choices left at "—" send nothing: no encryption header, no ACL.
    let created = post_form(
        &app,
        &cookie,
        "/portal/streams",
        &format!(
            "csrf={token}&type=s3&name=Bucket&config.bucket=acme-audit&config.region=eu-west-1\
             &config.endpoint=http%3A%2F%2F127.0.0.1%3A9&config.access_key_id=AKIAEXAMPLE\
             &config.secret_access_key=secret&config.server_side_encryption=&config.acl=&config.layout="
        ),
    )
    .await;
    assert_eq!(created.status(), 303, "{:?}", created.text().await);
    let streams = body(
        app.get(&format!(
            "/audit_logs/streams?organization_id={organization}"
        ))
        .await,
    )
    .await;
    let config = &streams["data"][0]["config"];
    assert_eq!(config["layout"], "object_per_event");
    assert_eq!(config.get("server_side_encryption"), None, "{config}");
    assert_eq!(config.get("acl"), None, "{config}");
}

/// The Admin Portal's stream form is built from what each destination declares: Microsoft
/// Sentinel's settings and the event format every stream takes appear without page code of their
/// own, and a Sentinel stream made through the form keeps its format.
#[tokio::test]
async fn issue_16_stream_forms_offer_sentinel_settings_and_the_event_format() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    let cookie = open(&link(&app, &organization, "log_streams").await).await;
    let html = page(&app, &cookie, "/portal/streams/new?type=sentinel")
        .await
        .text()
        .await
        .expect("html");
    for name in [
        "endpoint",
        "dcr_immutable_id",
        "stream_name",
        "tenant_id",
        "client_id",
        "client_secret",
        "authority",
        "event_format",
    ] {
        assert!(
            html.contains(&format!(r#"name="config.{name}""#)),
            "{name}: {html}"
        );
    }
    assert!(html.contains("<option>ocsf</option>"), "{html}");
    let token = csrf(&app, &cookie, "/portal/streams/new?type=sentinel").await;
    let created = post_form(
        &app,
        &cookie,
        "/portal/streams",
        &format!("csrf={token}&type=sentinel&name=Sentinel&config.endpoint=http%3A%2F%2F127.0.0.1%3A9&config.dcr_immutable_id=dcr-00112233445566778899aabbccddeeff&config.stream_name=Custom-TrailmarkAudit&config.tenant_id=contoso.onmicrosoft.com&config.client_id=client-1&config.client_secret=s3cret&config.authority=http%3A%2F%2F127.0.0.1%3A9&config.event_format=ocsf"),
    )
    .await;
    // On to the stream's page.
    assert_eq!(
        created.status(),
        303,
        "{}",
        created.text().await.unwrap_or_default()
    );
    let streams = body(
        app.get(&format!(
            "/audit_logs/streams?organization_id={organization}"
        ))
        .await,
    )
    .await;
    let stream = &streams["data"][0];
    assert_eq!(stream["type"], "sentinel", "{streams}");
    assert_eq!(stream["config"]["event_format"], "ocsf");
    // The stream delivers its own creation's record: its token endpoint is loopback too, so
    // the test never reaches Entra ID (the default authority is config.rs's unit tests').
    assert_eq!(stream["config"]["authority"], "http://127.0.0.1:9");
}
