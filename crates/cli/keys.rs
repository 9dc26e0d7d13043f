//! `trailmark keys create`: mint an API key in the same database the server uses.

use crate::say;
use anyhow::{Context, bail};
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::{ApiKeySecret, Scope};
use trailmark_domain::id::IdKind;
use trailmark_store::ApiKeyRecord;

use crate::args::{KeyCreateArgs, ScopeArg, entropy};
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
    let secret = ApiKeySecret::from_entropy(entropy()?);
    let id = IdKind::ApiKey.generate().into_string();
    let created_at = Timestamp::now();
    store
        .insert_api_key(ApiKeyRecord {
            id: id.clone(),
            hash: secret.hash(),
            scope,
            organization_id: args.organization.clone(),
            created_at,
        })
        .await
        .context("cannot store the new key")?;
    if args.json {
        say!(
            "{}",
            serde_json::json!({
                "id": id,
                "key": secret.expose(),
                "scope": scope.as_str(),
                "organization_id": args.organization,
                "created_at": created_at.to_string(),
            })
        );
        return Ok(());
    }
    say!("{}", secret.expose());
    let restriction = args
        .organization
        .map(|o| format!(", restricted to {o}"))
        .unwrap_or_default();
    eprintln!(
        "Created a '{}' key{restriction}. It is shown only this once; store it safely.",
        scope.as_str()
    );
    Ok(())
}
