//! Signing in and out. The sign-in form is CSRF-protected before any session exists by a
//! double-submit token: a short-lived cookie (`trailmark_console_sign_in`, `SameSite=Strict`)
//! and a hidden field that must match it, so another site cannot sign a browser in to an
//! account of its choosing. A wrong e-mail and a wrong password get the same answer.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use trailmark_app::console::{SignIn, SignInAttempt};
use trailmark_app::oidc::OidcAttempt;
use trailmark_domain::id::IdKind;
use trailmark_store::NewOperatorSession;

use crate::console::ConsoleError;
use crate::console::html::{moving_on, page};
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
        @if state.console_oidc.is_some() {
            p { a class="button" id="oidc" href="/console/sign_in/oidc" { "Sign in with OpenID Connect" } }
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

/// The cookie that carries an OpenID Connect attempt's state, nonce and PKCE verifier from its
/// start to the callback. `SameSite=Lax`: the callback is a top-level navigation from the
/// provider's site, which a `Strict` cookie would not follow.
const OIDC_COOKIE: &str = "trailmark_console_oidc";

/// `GET /console/sign_in/oidc`: sends the browser to the provider.
pub async fn oidc_start(State(state): State<AppState>) -> Result<Response, ConsoleError> {
    let settings = state.console_oidc.clone().ok_or(ConsoleError::NotFound)?;
    let attempt = OidcAttempt {
        state: random_token()?,
        nonce: random_token()?,
        verifier: random_token()?,
    };
    let url = state
        .app
        .oidc_authorization_url(&settings, &attempt)
        .await
        .map_err(crate::error::ApiError::from)?;
    let secure = if state.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{OIDC_COOKIE}={}.{}.{}; Path={COOKIE_PATH}; HttpOnly; SameSite=Lax; Max-Age=600{secure}",
        attempt.state, attempt.nonce, attempt.verifier
    );
    Ok(with_cookie(see_other(&url), &cookie))
}

/// `GET /console/oidc/callback?code=…&state=…`: the provider's answer. The state must be the
/// one this browser's cookie holds; the application checks the rest.
pub async fn oidc_callback(
    State(state): State<AppState>,
    query: QueryPairs,
    request: Request,
) -> Result<Response, ConsoleError> {
    let settings = state.console_oidc.clone().ok_or(ConsoleError::NotFound)?;
    let (parts, _) = request.into_parts();
    let attempt = parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == OIDC_COOKIE)
        .and_then(|(_, value)| {
            // Exactly the three tokens `oidc_start` wrote, each 64 hex digits: a cookie planted
            // with empty parts would otherwise match an empty `state`.
            let token = |t: &&str| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit());
            let mut tokens = value.split('.');
            match (
                tokens.next().filter(token),
                tokens.next().filter(token),
                tokens.next().filter(token),
                tokens.next(),
            ) {
                (Some(state), Some(nonce), Some(verifier), None) => Some(OidcAttempt {
                    state: state.to_owned(),
                    nonce: nonce.to_owned(),
                    verifier: verifier.to_owned(),
                }),
                _ => None,
            }
        })
        .ok_or(ConsoleError::Csrf)?;
    let presented = query.get("state").unwrap_or_default();
    if !web::constant_time_eq(presented.as_bytes(), attempt.state.as_bytes()) {
        return Err(ConsoleError::Csrf);
    }
    let Some(code) = query.get("code").filter(|code| !code.is_empty()) else {
        return sign_in_page(
            &state,
            StatusCode::UNAUTHORIZED,
            None,
            Some("The provider did not sign you in."),
            "",
        );
    };
    let secret = random_token()?;
    let now = state.clock.now();
    let session = NewOperatorSession {
        id: IdKind::ConsoleSession.generate().into_string(),
        secret_hash: token_hash(&secret),
        operator_id: String::new(),
        csrf_token: random_token()?,
        created_at: now,
        expires_at: now.plus_millis(state.console_idle_timeout.as_millis() as i64),
    };
    let outcome = state
        .app
        .sign_in_with_oidc(&settings, &attempt, code, whence(&parts), session)
        .await
        .map_err(crate::error::ApiError::from)?;
    let cleared = format!("{OIDC_COOKIE}=; Path={COOKIE_PATH}; HttpOnly; SameSite=Lax; Max-Age=0");
    match outcome {
        SignIn::Opened(_) => {
            // A page that moves on, not a redirect: the browser came from the provider's site,
            // and it withholds a `SameSite=Strict` cookie from a redirect chain that began
            // cross-site, so the next page would not see the session.
            let response = moving_on("Signed in", "/console/organizations");
            let response = with_cookie(
                response,
                &session_cookie(COOKIE_NAME, COOKIE_PATH, &secret, &state.config.public_url),
            );
            Ok(with_cookie(response, &cleared))
        }
        SignIn::Refused | SignIn::Throttled => Ok(with_cookie(
            sign_in_page(
                &state,
                StatusCode::UNAUTHORIZED,
                None,
                Some("No operator has the e-mail address your provider gave."),
                "",
            )?,
            &cleared,
        )),
    }
}
