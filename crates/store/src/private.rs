//! Files and directories for the owner only: an audit log is nobody else's to read. Directories
//! are created 0700 and files 0600 with the mode set exactly afterwards, since the umask may
//! have taken bits from what was asked.

use std::path::Path;

/// Creates `path` and any missing parent for the owner only (0700); an existing directory is
/// left as it is.
pub(crate) fn create_dir(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)?;
    set_mode(path, 0o700)
}

#[cfg(unix)]
pub(crate) fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
}

#[cfg(not(unix))]
pub(crate) fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}
