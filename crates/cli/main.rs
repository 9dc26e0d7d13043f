//! The `trailmark` binary: command-line definitions and the glue that starts the library crates.
//! It is the only crate that reads environment variables (through clap) or uses `anyhow`.

mod args;
mod config;
mod export;
mod key_files;
mod keys;
mod ledger;
mod logging;
mod operators;
#[cfg(feature = "otlp")]
mod otlp;
mod serve;
mod verify;
mod witness;

use std::io::Write;

use clap::{CommandFactory, Parser};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `println!` for the subcommands' results: a reader that stops early (`trailmark verify … |
/// head`) ends the process quietly, with the status a shell gives a command killed by SIGPIPE,
/// instead of the panic `println!` raises.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::write_line(format_args!($($arg)*))
    };
}
pub(crate) use say;

pub(crate) fn write_line(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(error) = writeln!(out, "{line}") {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(128 + 13);
        }
        eprintln!("error: cannot write to standard output: {error}");
        std::process::exit(1);
    }
}

fn main() -> std::process::ExitCode {
    let argv = match config::arguments(std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(error) => {
            eprintln!("error: {error:#}");
            // The same status clap gives any other unusable command line or setting.
            return std::process::ExitCode::from(2);
        }
    };
    let cli = args::Cli::parse_from(argv);
    if let args::Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut args::Cli::command(),
            "trailmark",
            &mut std::io::stdout(),
        );
        return std::process::ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            args::Command::Serve(serve_args) => serve::run(*serve_args).await,
            args::Command::Keys(args::KeysCommand::Create(create_args)) => {
                keys::create(create_args).await
            }
            args::Command::Keys(args::KeysCommand::List(list_args)) => keys::list(list_args).await,
            args::Command::Keys(args::KeysCommand::Revoke(revoke_args)) => {
                keys::revoke(revoke_args).await
            }
            args::Command::Operators(args::OperatorsCommand::Create(create_args)) => {
                operators::create(create_args).await
            }
            args::Command::Export(export_args) => export::run(export_args).await,
            args::Command::Ledger(args::LedgerCommand::PublicKey(key_args)) => {
                ledger::public_key(&key_args)
            }
            args::Command::Verify(verify_args) => verify::run(verify_args).await,
            args::Command::Witness(witness_args) => witness::run(witness_args).await,
            args::Command::Migrate(storage) => serve::migrate(&storage).await,
            args::Command::Completions { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(exit_status(&error))
        }
    }
}

/// The exit status of a failed command: 1 when `verify` found the export or database altered or
/// incomplete, 2 when a command could not run (bad flags, as clap exits, a missing file,
/// database, organization or key, storage unavailable). README "Exit status".
fn exit_status(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<verify::VerificationFailed>().is_some() {
        1
    } else {
        2
    }
}
