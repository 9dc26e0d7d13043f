//! `trailmark keys create|list|revoke`: manage API keys in the same database the server uses,
//! also while it runs. The rules are the application's and the store's (`new_key_record`, the
//! last-admin guard inside `revoke_api_key`); these commands act as the operator, who holds the
//! database itself, so they are not recorded in an organization's log as the API's are.

use anyhow::{Context, bail};
use serde_json::json;
use trailmark_app::keys::{NewApiKey, new_key_record};
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::Scope;
use trailmark_server::key_object as key_json;
use trailmark_store::Revocation;

use crate::args::{KeyCreateArgs, KeyListArgs, KeyRevokeArgs, ScopeArg, entropy};
use crate::say;
use crate::serve::{Access, open_store};

pub async fn create(args: KeyCreateArgs) -> anyhow::Result<()> {
    let store = open_store(&args.storage, Access::Beside).await?;
    if let Some(organization) = &args.organization
        && store.get_organization(organization).await?.is_none()
    {
        bail!("organization '{organization}' does not exist");
    }
    let scope = match args.scope {
        ScopeArg::Ingest => Scope::Ingest,
        ScopeArg::Read => Scope::Read,
        ScopeArg::Admin => Scope::Admin,
    };
    let expires_at = args
        .expires_at
        .as_deref()
        .map(|text| {
            Timestamp::parse(text).map_err(|e| anyhow::anyhow!("--expires-at {text:?}: {e}"))
        })
        .transpose()?;
    let new = NewApiKey {
        name: args
            .name
            .unwrap_or_else(|| format!("{} key", scope.as_str())),
        scope,
        organization_id: args.organization.clone(),
        expires_at,
    };
    let created = new_key_record(new, Timestamp::now(), entropy()?)
        .map_err(|problems| anyhow::anyhow!("{problems}"))?;
    store
        .insert_api_key(created.record.clone())
        .await
        .context("cannot store the new key")?;
    if args.json {
        let mut object = key_json(&created.record);
        object["key"] = json!(created.secret.expose());
        say!("{object}");
        return Ok(());
    }
    say!("{}", created.secret.expose());
    let restriction = args
        .organization
        .map(|o| format!(", restricted to {o}"))
        .unwrap_or_default();
    eprintln!(
        "Created the '{}' key {} ({}{restriction}). It is shown only this once; store it safely.",
        scope.as_str(),
        created.record.id,
        created.record.name,
    );
    Ok(())
}

pub async fn list(args: KeyListArgs) -> anyhow::Result<()> {
    let store = open_store(&args.storage, Access::Beside).await?;
    let keys = store.list_api_keys().await?;
    if args.json {
        say!(
            "{}",
            json!({"object": "list", "data": keys.iter().map(key_json).collect::<Vec<_>>()})
        );
        return Ok(());
    }
    say!("ID\tNAME\tSCOPE\tORGANIZATION\tPREFIX\tCREATED\tEXPIRES\tLAST USED");
    let or_dash = |at: Option<Timestamp>| at.map_or_else(|| "-".to_owned(), |at| at.to_string());
    for key in keys {
        say!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            key.id,
            key.name,
            key.scope.as_str(),
            key.organization_id.as_deref().unwrap_or("-"),
            key.prefix,
            key.created_at,
            or_dash(key.expires_at),
            or_dash(key.last_used_at),
        );
    }
    Ok(())
}

pub async fn revoke(args: KeyRevokeArgs) -> anyhow::Result<()> {
    let store = open_store(&args.storage, Access::Beside).await?;
    match store
        .revoke_api_key(&args.id, !args.force, Timestamp::now())
        .await?
    {
        Revocation::Revoked(key) => {
            eprintln!(
                "Revoked {} ({}). Servers refuse it within 5 seconds.",
                key.id, key.name
            );
            Ok(())
        }
        Revocation::NotFound => bail!("there is no key '{}'", args.id),
        Revocation::LastAdminKey => bail!(
            "'{}' is the last unrestricted admin key; create another first, or pass --force",
            args.id
        ),
    }
}
