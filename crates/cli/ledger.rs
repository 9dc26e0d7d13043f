//! `trailmark ledger public-key`: print the verifier key of this instance's checkpoints.

use crate::say;
use trailmark_ledger::checkpoint::NoteSigner;

use crate::args::LedgerKeyArgs;
use crate::key_files::load_or_create;

/// The signer the server uses, from the same key file and name.
pub fn signer(args: &LedgerKeyArgs) -> anyhow::Result<NoteSigner> {
    let path = args.signing_key_path();
    let seed = load_or_create(&path, args.signing_key.is_none())?;
    NoteSigner::new(&args.ledger_name, seed).map_err(|e| anyhow::anyhow!("--ledger-name: {e}"))
}

pub fn public_key(args: &LedgerKeyArgs) -> anyhow::Result<()> {
    say!("{}", signer(args)?.verifier_key());
    Ok(())
}
