//! Signing in and out. The sign-in form is CSRF-protected before any session exists by a
//! double-submit token: a short-lived cookie (`trailmark_console_sign_in`, `SameSite=Strict`)
//! and a hidden field that must match it, so another site cannot sign a browser in to an
//! account of its choosing. A wrong e-mail and a wrong password get the same answer.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use trailmark_app::console::{SignIn, SignInAttempt};
use trailmark_domain::id::IdKind;
use trailmark_store::NewOperatorSession;

use crate::console::ConsoleError;
use crate::console::html::page;
use crate::console::session::{COOKIE_NAME, COOKIE_PATH, Operator, OperatorForm, whence};
use crate::extract::QueryPairs;
use crate::state::AppState;
use crate::web::{
    self, CSRF_FIELD, FormRefusal, cleared_cookie, random_token, see_other, session_cookie,
    token_hash, with_cookie,
};

/// The sign-in form's double-submit cookie.
const SIGN_IN_COOKIE: &str = "trailmark_console_sign_in";

/// `GET /console`: the organizations when signed in, else the sign-in page.
pub async fn home(operator: Result<Operator, ConsoleError>) -> Response {
    match operator {
        Ok(_) => see_other("/console/organizations"),
        Err(_) => see_other("/console/sign_in"),
    }
}

/// `GET /console/sign_in`.
pub async fn form(
    State(state): State<AppState>,
    query: QueryPairs,
    operator: Result<Operator, ConsoleError>,
) -> Result<Response, ConsoleError> {
    if operator.is_ok() {
        return Ok(see_other("/console/organizations"));
    }
    let notice = if query.get("ended").is_some() {
        Some("Your session has ended. Sign in again.")
    } else if query.get("signed_out").is_some() {
        Some("You are signed out.")
    } else {
        None
    };
    sign_in_page(&state, StatusCode::OK, notice, None, "")
}

/// The sign-in page with a fresh double-submit token.
fn sign_in_page(
    state: &AppState,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
    email: &str,
) -> Result<Response, ConsoleError> {
    let token = random_token()?;
    let body = html! {
        @if let Some(notice) = notice { p class="notice ok" role="status" { (notice) } }
        @if let Some(error) = error { p class="notice error" role="alert" id="sign-in-error" { (error) } }
        form class="card" method="post" action="/console/sign_in" {
            input type="hidden" name=(CSRF_FIELD) value=(token);
            label { "E-mail" input type="email" name="email" value=(email) autocomplete="username" required autofocus; }
            label { "Password" input type="password" name="password" autocomplete="current-password" required; }
            div class="actions" { button type="submit" { "Sign in" } }
        }
        p class="muted" {
            "Operator accounts are made on the server with "
            code { "trailmark operators create --email …" } "."
        }
    };
    let response = page(status, "Sign in", None, body);
    let cookie = format!(
        "{}; Max-Age=3600",
        session_cookie(
            SIGN_IN_COOKIE,
            COOKIE_PATH,
            &token,
            &state.config.public_url
        )
    );
    Ok(with_cookie(response, &cookie))
}

/// `POST /console/sign_in` with `email`, `password` and the double-submit token.
pub async fn submit(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ConsoleError> {
    let (parts, body) = request.into_parts();
    let expected = web::cookie_token(&parts, SIGN_IN_COOKIE).ok_or(ConsoleError::Csrf)?;
    let (address, user_agent) = whence(&parts);
    let fields = web::csrf_checked_form(parts, body, &state, &expected)
        .await
        .map_err(|refusal| match refusal {
            FormRefusal::Csrf => ConsoleError::Csrf,
            FormRefusal::Api(error) => ConsoleError::Api(error),
        })?;
    let email = fields.get("email").unwrap_or_default().to_owned();
    let attempt = SignInAttempt {
        email: email.clone(),
        password: fields.get("password").unwrap_or_default().to_owned(),
        address,
        user_agent,
    };
    let secret = random_token()?;
    let now = state.clock.now();
    let session = NewOperatorSession {
        id: IdKind::ConsoleSession.generate().into_string(),
        secret_hash: token_hash(&secret),
        // Filled in by the application once the password matched.
        operator_id: String::new(),
        csrf_token: random_token()?,
        created_at: now,
        expires_at: now.plus_millis(state.console_idle_timeout.as_millis() as i64),
    };
    match state
        .app
        .sign_in(attempt, session)
        .await
        .map_err(crate::error::ApiError::from)?
    {
        SignIn::Opened(_) => {
            let response = see_other("/console/organizations");
            let response = with_cookie(
                response,
                &session_cookie(COOKIE_NAME, COOKIE_PATH, &secret, &state.config.public_url),
            );
            Ok(with_cookie(
                response,
                &cleared_cookie(SIGN_IN_COOKIE, COOKIE_PATH),
            ))
        }
        SignIn::Refused => sign_in_page(
            &state,
            StatusCode::UNAUTHORIZED,
            None,
            Some("Wrong e-mail or password."),
            &email,
        ),
        SignIn::Throttled => sign_in_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            None,
            Some("Too many failed sign-ins. Try again in 15 minutes."),
            &email,
        ),
    }
}

/// `POST /console/sign_out`: ends the session here and in the browser.
pub async fn sign_out(
    State(state): State<AppState>,
    OperatorForm { operator, .. }: OperatorForm,
) -> Result<Response, ConsoleError> {
    state
        .app
        .sign_out(operator.secret_hash, &operator.session, &operator.origin)
        .await?;
    Ok(with_cookie(
        see_other("/console/sign_in?signed_out=1"),
        &cleared_cookie(COOKIE_NAME, COOKIE_PATH),
    ))
}
