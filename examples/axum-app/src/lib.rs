//! A small app with sign-in, invitations and posts, audited the way the WorkOS tutorial audits
//! its Express app: every action is one `audit.log(…).target(…).send().await` line, and the
//! actor, the user's teams, the client IP and user agent come from the request.
//!
//! Sign-in is a local form over a fixed directory of users (the tutorial uses SSO); a session
//! is a random cookie. [`authenticate`] is the app's authentication middleware: it finds the
//! session's user and inserts an [`AuditActor`] for the audit extractor.
//!
//! | route | event | targets |
//! |---|---|---|
//! | `POST /login` (form `email`) | `user.login` | the user, their teams |
//! | `POST /logout` | `user.logout` | the user, their teams |
//! | `POST /invite` (form `email`) | `user.invite` | the invited user, the inviter's teams |
//! | `POST /posts` (form `title`) | `post.create` | the post, the author's teams |
//! | `POST /posts/{id}/delete` | `post.delete` | the post, the user's teams |

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, Request, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;
use trailmark_client::Client;
use trailmark_client::axum::{Audit, AuditActor, AuditError, AuditLayer, TrustedProxies};

const SESSION_COOKIE: &str = "session";

/// A user of the example's fixed directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: &'static str,
    pub email: &'static str,
    pub name: &'static str,
    pub teams: &'static [(&'static str, &'static str)],
}

/// The users who can sign in (any password: this is a demo of auditing, not of sign-in).
pub const USERS: [User; 2] = [
    User {
        id: "user_ada",
        email: "ada@example.com",
        name: "Ada Lovelace",
        teams: &[("team_engineering", "Engineering")],
    },
    User {
        id: "user_grace",
        email: "grace@example.com",
        name: "Grace Hopper",
        teams: &[
            ("team_engineering", "Engineering"),
            ("team_platform", "Platform"),
        ],
    },
];

/// Where the app sends its events and whose forwarding headers it believes.
#[derive(Debug, Clone)]
pub struct Config {
    pub organization_id: String,
    pub trusted_proxies: TrustedProxies,
}

#[derive(Clone)]
struct AppState {
    organization_id: String,
    /// Session id → user.
    sessions: Arc<Mutex<HashMap<String, &'static User>>>,
    /// Post id → title.
    posts: Arc<Mutex<HashMap<String, String>>>,
}

impl AppState {
    fn actor(&self, user: &User) -> AuditActor {
        user.teams.iter().fold(
            AuditActor::user(&self.organization_id, user.id, user.name),
            |actor, (id, name)| actor.team(*id, *name),
        )
    }
}

/// The app's router. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: the
/// audit context needs the peer address.
pub fn app(client: Client, config: Config) -> Router {
    let state = AppState {
        organization_id: config.organization_id,
        sessions: Arc::default(),
        posts: Arc::default(),
    };
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/invite", post(invite))
        .route("/posts", post(create_post))
        .route("/posts/{id}/delete", post(delete_post))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(AuditLayer::new(client).trust_proxies(config.trusted_proxies))
        .with_state(state)
}

/// Finds the session's user and hands it to the audit extractor as an [`AuditActor`].
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let user = session_id(request.headers()).and_then(|id| {
        state
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .copied()
    });
    if let Some(user) = user {
        request.extensions_mut().insert(state.actor(user));
        request.extensions_mut().insert(user);
    }
    next.run(request).await
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE).then(|| value.to_owned())
        })
}

async fn home(audit: Audit) -> Html<String> {
    let body = match audit.actor() {
        Some(actor) => format!(
            "<p>Signed in as {}.</p>\
             <form method=post action=/posts><input name=title><button>Post</button></form>\
             <form method=post action=/invite><input name=email><button>Invite</button></form>\
             <form method=post action=/logout><button>Sign out</button></form>",
            actor.actor.name.as_deref().unwrap_or(&actor.actor.id)
        ),
        None => "<form method=post action=/login><input name=email placeholder=ada@example.com>\
                 <input name=password type=password><button>Sign in</button></form>"
            .to_owned(),
    };
    Html(body)
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
}

async fn login(
    State(state): State<AppState>,
    audit: Audit,
    Form(form): Form<LoginForm>,
) -> Result<Response, AuditError> {
    let Some(user) = USERS.iter().find(|user| user.email == form.email.trim()) else {
        return Ok((StatusCode::UNAUTHORIZED, "unknown user").into_response());
    };
    // The request has no session yet: the actor is the user who just proved who they are.
    audit
        .log_as(&state.actor(user), "user.login")
        .target("user", user.id)
        .send()
        .await?;
    let session = new_session_id();
    state
        .sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(session.clone(), user);
    Ok((
        StatusCode::SEE_OTHER,
        [
            (LOCATION, "/".to_owned()),
            (
                SET_COOKIE,
                format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Lax"),
            ),
        ],
    )
        .into_response())
}

async fn logout(
    State(state): State<AppState>,
    audit: Audit,
    headers: HeaderMap,
) -> Result<Response, AuditError> {
    let user_id = audit
        .actor()
        .map(|a| a.actor.id.clone())
        .unwrap_or_default();
    audit
        .log("user.logout")
        .target("user", user_id)
        .send()
        .await?;
    if let Some(session) = session_id(&headers) {
        state
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&session);
    }
    Ok((
        StatusCode::SEE_OTHER,
        [
            (LOCATION, "/".to_owned()),
            (SET_COOKIE, format!("{SESSION_COOKIE}=; Path=/; Max-Age=0")),
        ],
    )
        .into_response())
}

#[derive(Deserialize)]
struct InviteForm {
    email: String,
}

async fn invite(audit: Audit, Form(form): Form<InviteForm>) -> Result<Response, AuditError> {
    let email = form.email.trim();
    if !email.contains('@') {
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, "email is not an address").into_response());
    }
    audit
        .log("user.invite")
        .target("user", email)
        .send()
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"invited": email}))).into_response())
}

#[derive(Deserialize)]
struct PostForm {
    title: String,
}

async fn create_post(
    State(state): State<AppState>,
    audit: Audit,
    Form(form): Form<PostForm>,
) -> Result<Response, AuditError> {
    // Check the user before changing anything: no user, no post and no event.
    if audit.actor().is_none() {
        return Err(AuditError::NoUser);
    }
    let id = format!("post_{}", new_session_id().get(..12).unwrap_or_default());
    state
        .posts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id.clone(), form.title);
    audit.log("post.create").target("post", &id).send().await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

async fn delete_post(
    State(state): State<AppState>,
    audit: Audit,
    Path(id): Path<String>,
) -> Result<Response, AuditError> {
    if audit.actor().is_none() {
        return Err(AuditError::NoUser);
    }
    let removed = state
        .posts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id);
    if removed.is_none() {
        return Ok((StatusCode::NOT_FOUND, "no such post").into_response());
    }
    audit.log("post.delete").target("post", &id).send().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// 128 random bits, hex: an unguessable session id.
fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    // Without an OS random source no session can be safe; the process cannot serve.
    getrandom::fill(&mut bytes).expect("the OS random source works");
    hex::encode(bytes)
}
