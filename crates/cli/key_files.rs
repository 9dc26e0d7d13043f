//! Key files in the data directory: created on first start with mode 0600, or given by the
//! operator. Instances sharing a PostgreSQL database must be given the same files.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};

use crate::args::entropy;

/// Reads the 32-byte key at `path`, creating it (mode 0600) with fresh random bytes if absent
/// and `create` is true.
pub fn load_or_create(path: &Path, create: bool) -> anyhow::Result<[u8; 32]> {
    match std::fs::read(path) {
        Ok(bytes) => bytes.try_into().map_err(|bytes: Vec<u8>| {
            anyhow::anyhow!(
                "{} holds {} bytes; a key file holds exactly 32",
                path.display(),
                bytes.len()
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && create => {
            let key = entropy()?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            // Instances sharing a data directory may start at once: the key is written whole
            // under a private name, then linked into place, which fails if another instance got
            // there first. Nobody ever reads a half-written key, and all use the first one.
            let draft = path.with_extension(format!("{}.new", hex_suffix(&entropy()?)));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(&draft)
                .with_context(|| format!("cannot create the key file {}", draft.display()))?;
            file.write_all(&key)?;
            file.sync_all()?;
            let linked = std::fs::hard_link(&draft, path);
            let _ = std::fs::remove_file(&draft);
            match linked {
                Ok(()) => Ok(key),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    load_or_create(path, false)
                }
                Err(error) => Err(error)
                    .with_context(|| format!("cannot create the key file {}", path.display())),
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            bail!("the key file {} does not exist", path.display())
        }
        Err(error) => {
            Err(error).with_context(|| format!("cannot read the key file {}", path.display()))
        }
    }
}

/// Eight hex digits from `bytes`, to name a draft file no other process uses.
fn hex_suffix(bytes: &[u8; 32]) -> String {
    bytes[..4].iter().map(|b| format!("{b:02x}")).collect()
}
