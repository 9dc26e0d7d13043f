//! `trailmark ledger public-key`: print the verifier key of this instance's checkpoints.

use crate::say;
use anyhow::Context;
use trailmark_ledger::checkpoint::NoteSigner;

use crate::args::LedgerKeyArgs;
use crate::key_files::load_or_create;

/// The signer the server uses, from the same key file and name. Read-only: a key file that does
/// not exist is an error naming it (only `serve` creates one).
pub fn signer(args: &LedgerKeyArgs) -> anyhow::Result<NoteSigner> {
    let path = args.signing_key_path();
    let seed = load_or_create(&path, false).with_context(|| {
        format!(
            "no signing key: `trailmark serve` creates {} on first start (check --data-dir, or give --signing-key)",
            path.display()
        )
    })?;
    NoteSigner::new(&args.ledger_name, seed).map_err(|e| anyhow::anyhow!("--ledger-name: {e}"))
}

pub fn public_key(args: &LedgerKeyArgs) -> anyhow::Result<()> {
    say!("{}", signer(args)?.verifier_key());
    Ok(())
}
