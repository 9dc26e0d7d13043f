//! Where settings come from besides the command line, in order: the command line, then each
//! flag's environment variable (or its older name), then the configuration file (`--config` /
//! `TRAILMARK_CONFIG`), then the built-in default.
//!
//! The file is TOML whose keys are the long flags without their dashes (`data-dir`, or
//! `data_dir`), for every flag that has an environment variable: the file is one more place
//! for the settings the environment can hold, so `TRAILMARK_LISTEN` and `listen = …` mean the
//! same. A key applies to every subcommand that has that flag (`database` to `serve`, `keys`,
//! `export`, `migrate`); a key no subcommand has is an error naming it. The file and the older
//! variable names are turned into `--flag=value` arguments, so clap checks their values exactly
//! as it checks the command line's.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};

use crate::args::Cli;

/// Older environment variable names, still read, and the flag each now belongs to.
const OLDER_NAMES: &[(&str, &str)] = &[
    ("TRAILMARK_DATABASE_URL", "database"),
    ("TRAILMARK_SECRETS_KEY_FILE", "secrets-key"),
    ("TRAILMARK_SIGNING_KEY_FILE", "signing-key"),
];

/// The command line, completed with the older variables and the configuration file.
///
/// # Errors
///
/// An unreadable or invalid configuration file, or a key in it that is no flag.
pub fn arguments(mut argv: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let command = Cli::command();
    // A command line clap refuses (or `--help`) is reported by the real parse that follows.
    let Ok(matches) = command.clone().try_get_matches_from(&argv) else {
        return Ok(argv);
    };
    let mut leaf_command = &command;
    let mut leaf = &matches;
    while let Some((name, sub)) = leaf.subcommand() {
        match leaf_command.find_subcommand(name) {
            Some(found) => leaf_command = found,
            None => return Ok(argv),
        }
        leaf = sub;
    }
    // Flags this subcommand has that the command line and environment left unset.
    let mut unset: BTreeSet<String> = leaf_command
        .get_arguments()
        .filter(|arg| arg.get_env().is_some())
        .filter(|arg| is_unset(leaf, arg.get_id().as_str()))
        .filter_map(|arg| arg.get_long().map(str::to_owned))
        .collect();

    let mut extra = Vec::new();
    for (variable, flag) in OLDER_NAMES {
        if let Some(value) = std::env::var_os(variable)
            && unset.remove(*flag)
        {
            extra.push(flag_with(flag, value));
        }
    }

    let file = leaf
        .try_get_one::<PathBuf>("config")
        .ok()
        .flatten()
        .or_else(|| matches.try_get_one::<PathBuf>("config").ok().flatten());
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        let table: toml::Table = text
            .parse()
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        let known = configurable_flags(&command);
        for (key, value) in table {
            let flag = key.replace('_', "-");
            if !known.contains(&flag) {
                bail!(
                    "{}: unknown setting '{key}' (settings are the flags of `trailmark serve --help` and the other subcommands, without their dashes)",
                    path.display()
                );
            }
            let value = match value {
                toml::Value::String(text) => text,
                toml::Value::Integer(number) => number.to_string(),
                toml::Value::Float(number) => number.to_string(),
                toml::Value::Boolean(flag) => flag.to_string(),
                _ => bail!(
                    "{}: '{key}' must be a string, a number or a boolean",
                    path.display()
                ),
            };
            if unset.remove(&flag) {
                extra.push(flag_with(&flag, value.into()));
            }
        }
    }
    argv.extend(extra);
    Ok(argv)
}

fn is_unset(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        None | Some(ValueSource::DefaultValue)
    )
}

fn flag_with(flag: &str, value: OsString) -> OsString {
    let mut argument = OsString::from(format!("--{flag}="));
    argument.push(value);
    argument
}

/// Every long flag, in any subcommand, that has an environment variable.
fn configurable_flags(command: &clap::Command) -> BTreeSet<String> {
    let mut flags: BTreeSet<String> = command
        .get_arguments()
        .filter(|arg| arg.get_env().is_some() && arg.get_id() != "config")
        .filter_map(|arg| arg.get_long().map(str::to_owned))
        .collect();
    for sub in command.get_subcommands() {
        flags.extend(configurable_flags(sub));
    }
    flags
}
