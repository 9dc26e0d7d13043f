//! Runs the example app against a Trailmark server.
//!
//! `TRAILMARK_API_KEY=sk_… cargo run -p trailmark-example-axum-app`, with Trailmark on
//! `TRAILMARK_URL` (default `http://127.0.0.1:8080`). Events go to `TRAILMARK_ORG`, or to a new
//! organization "Example app" when it is unset. `LISTEN` (default `127.0.0.1:3000`);
//! `TRUSTED_PROXIES`: comma-separated addresses or CIDR blocks whose forwarding headers count.

use std::net::SocketAddr;

use trailmark_client::Client;
use trailmark_client::axum::TrustedProxies;
use trailmark_example_axum_app::{Config, USERS, app};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let api_key = std::env::var("TRAILMARK_API_KEY")
        .map_err(|_| "set TRAILMARK_API_KEY to a Trailmark admin or ingest key")?;
    let client = Client::new(env("TRAILMARK_URL", "http://127.0.0.1:8080"), api_key)?;
    let organization_id = match std::env::var("TRAILMARK_ORG") {
        Ok(id) => id,
        Err(_) => client.create_organization("Example app").await?.id,
    };
    let trusted_proxies = TrustedProxies::parse(
        env("TRUSTED_PROXIES", "")
            .split(',')
            .filter(|entry| !entry.trim().is_empty()),
    )?;
    let listener = tokio::net::TcpListener::bind(env("LISTEN", "127.0.0.1:3000")).await?;
    println!(
        "example app on http://{} (sign in as {}), events to {organization_id}",
        listener.local_addr()?,
        USERS.map(|u| u.email).join(" or ")
    );
    let router = app(
        client,
        Config {
            organization_id,
            trusted_proxies,
        },
    );
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
