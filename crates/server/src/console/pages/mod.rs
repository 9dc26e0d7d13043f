//! One file per section of the console, plus its embedded assets.

pub(crate) mod alerts;
pub(crate) mod assets;
pub(crate) mod keys;
pub(crate) mod log;
pub(crate) mod organizations;
pub(crate) mod schemas;
pub(crate) mod sign_in;
