//! The command line as scripts and shells meet it, through the real binary: `--version`,
//! completion scripts, `--json` output, the configuration file and the environment's names.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, LoggedServer, wait_for_checkpoint};

/// The binary with no inherited `TRAILMARK_*` or `RUST_LOG` variables.
fn trailmark() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trailmark"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TRAILMARK_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("run trailmark")
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn version_is_printed_by_the_binary_and_its_subcommands() {
    for (args, name) in [
        (vec!["--version"], "trailmark"),
        (vec!["serve", "--version"], "trailmark-serve"),
    ] {
        let output = run(trailmark().args(&args));
        assert!(output.status.success(), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn completion_scripts_complete_subcommands_and_flags() {
    let script = run(trailmark().args(["completions", "bash"]));
    assert!(script.status.success());
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("trailmark.bash");
    std::fs::write(&path, &script.stdout).expect("write");
    // bash itself loads the script and runs its completion function, as a shell does on TAB.
    let completions = |words: &str, current: usize| -> String {
        let program = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={current}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; _trailmark trailmark; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            path.display()
        );
        let output = run(Command::new("bash").args(["-c", &program]));
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let subcommands = completions("trailmark ''", 1);
    for expected in ["serve", "verify", "keys", "export", "completions"] {
        assert!(
            subcommands.lines().any(|l| l == expected),
            "{expected} in {subcommands}"
        );
    }
    let flags = completions("trailmark serve --log-f", 2);
    assert!(flags.lines().any(|l| l == "--log-format"), "{flags}");

    let zsh = run(trailmark().args(["completions", "zsh"]));
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef trailmark"));
    let fish = run(trailmark().args(["completions", "fish"]));
    assert!(String::from_utf8_lossy(&fish.stdout).contains("complete -c trailmark"));
    let unknown = run(trailmark().args(["completions", "tcsh"]));
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn database_names_its_variable_after_its_flag_and_keeps_the_old_name() {
    // `migrate` creates no database (only `serve` does): the one it was pointed at is the one
    // its refusal names.
    let dir = tempfile::tempdir().expect("temp dir");
    let old = dir.path().join("old.db");
    let new = dir.path().join("new.db");
    let output = run(trailmark().arg("migrate").env(
        "TRAILMARK_DATABASE_URL",
        format!("sqlite://{}", old.display()),
    ));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        stderr.contains(&old.display().to_string()),
        "TRAILMARK_DATABASE_URL is still read: {stderr}"
    );
    let output = run(trailmark()
        .arg("migrate")
        .env("TRAILMARK_DATABASE", format!("sqlite://{}", new.display()))
        .env(
            "TRAILMARK_DATABASE_URL",
            format!("sqlite://{}", old.display()),
        ));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        stderr.contains(&new.display().to_string()) && !stderr.contains("old.db"),
        "TRAILMARK_DATABASE wins over its old name: {stderr}"
    );
    assert!(!new.exists() && !old.exists(), "nothing was created");
}

#[tokio::test]
async fn a_configuration_file_sets_flags_and_the_environment_and_command_line_win() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("trailmark.toml");
    let data_dir = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "# Trailmark settings\nlog-format = \"json\"\nlog = \"info\"\ndata_dir = \"{}\"\nmax-body-bytes = 2000\nallow-private-destinations = true\n",
            data_dir.display()
        ),
    )
    .expect("write");
    let config_arg = config.display().to_string();
    // --data-dir is not on the command line: the file's comes in.
    let server = LoggedServer::start(&[], &[("TRAILMARK_CONFIG", config_arg.as_str())]);
    let log = server.log();
    let start: Value = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.contains("serving on"))
        })
        .unwrap_or_else(|| panic!("a JSON start line from the file's log-format: {log}"));
    assert_eq!(start["private_destinations"], "allowed", "{start}");
    let big = reqwest::Client::new()
        .post(format!("{}/organizations", server.base()))
        .bearer_auth(ADMIN_KEY)
        .header("Content-Type", "application/json")
        .body(vec![b' '; 3000])
        .send()
        .await
        .expect("request");
    assert_eq!(big.status(), 413, "max-body-bytes from the file");
    drop(server);

    // The environment wins over the file, and the command line over both.
    let text = LoggedServer::start(
        &["--config", &config_arg, "--max-body-bytes", "100000"],
        &[("TRAILMARK_LOG_FORMAT", "text")],
    );
    assert!(
        text.log().contains(" INFO trailmark::serve: "),
        "{}",
        text.log()
    );
    let big = reqwest::Client::new()
        .post(format!("{}/organizations", text.base()))
        .bearer_auth(ADMIN_KEY)
        .header("Content-Type", "application/json")
        .body(vec![b' '; 3000])
        .send()
        .await
        .expect("request");
    assert_ne!(big.status(), 413, "--max-body-bytes wins over the file");

    // A key that is no flag is refused, naming it.
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nlisten_port = 80\n").expect("write");
    let output = run(trailmark().args(["serve", "--config", &config_arg]));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown setting 'listen_port'"), "{stderr}");
    // A bad value is refused as clap refuses it on the command line.
    std::fs::write(&config, "listen = \"nowhere\"\n").expect("write");
    let output = run(trailmark().args(["serve", "--config", &config_arg]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--listen"),
        "{output:?}"
    );
}

/// `trailmark verify --json` on a file; returns the parsed output and the exit status.
fn verify_json(file: &Path, public_key: &str) -> (Value, Option<i32>) {
    let output =
        run(trailmark()
            .arg("verify")
            .arg(file)
            .args(["--public-key", public_key, "--json"]));
    (stdout_json(&output), output.status.code())
}

#[tokio::test]
async fn keys_export_and_verify_print_json_for_scripts() {
    let server = LoggedServer::start(&["--checkpoint-interval-ms", "50"], &[]);
    let data_dir = server.data_dir.path().to_owned();
    let client = reqwest::Client::new();
    let base = server.base().to_owned();

    let created = run(trailmark()
        .args(["keys", "create", "--scope", "read", "--json", "--data-dir"])
        .arg(&data_dir));
    assert!(created.status.success(), "{created:?}");
    let key = stdout_json(&created);
    assert_eq!(key["scope"], "read");
    assert!(key["id"].as_str().is_some_and(|id| id.starts_with("key_")));
    assert!(key["key"].as_str().is_some_and(|k| k.starts_with("sk_")));
    assert!(key["organization_id"].is_null());
    assert!(key["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    // The printed key works.
    let listed = client
        .get(format!("{base}/organizations"))
        .bearer_auth(key["key"].as_str().expect("key"))
        .send()
        .await
        .expect("request");
    assert_eq!(listed.status(), 200);

    let organization = crate::helpers::organization(&client, &base).await;
    for n in 0..3 {
        let stored = crate::helpers::post(
            &client,
            &base,
            "/audit_logs/events",
            json!({"organization_id": organization, "event": crate::helpers::event(&format!("user.n{n}"))}),
        )
        .await;
        assert_eq!(stored.status(), 200);
    }
    wait_for_checkpoint(&client, &base, &organization, 3).await;

    let file = data_dir.join("all.ndjson");
    let exported = run(trailmark()
        .args([
            "export",
            "--organization",
            &organization,
            "--format",
            "ndjson",
            "--json",
            "--out",
        ])
        .arg(&file)
        .arg("--data-dir")
        .arg(&data_dir));
    assert!(exported.status.success(), "{exported:?}");
    let summary = stdout_json(&exported);
    assert_eq!(summary["events"], 3);
    assert_eq!(summary["format"], "ndjson");
    assert_eq!(summary["organization_id"], organization.as_str());
    assert_eq!(
        summary["bytes"],
        std::fs::metadata(&file).expect("file").len()
    );

    let public_key =
        crate::helpers::get(&client, &base, "/audit_logs/ledger/public_key").await["verifier_key"]
            .as_str()
            .expect("verifier key")
            .to_owned();
    let (report, status) = verify_json(&file, &public_key);
    assert_eq!(status, Some(0), "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["events"], 3);
    assert_eq!(report["complete"], true);
    assert_eq!(report["checkpoint"]["size"], 3);
    assert_eq!(report["organization_id"], organization.as_str());

    let altered = std::fs::read_to_string(&file)
        .expect("read")
        .replace("Jon Smith", "Someone Else");
    std::fs::write(&file, altered).expect("write");
    let (report, status) = verify_json(&file, &public_key);
    assert_ne!(status, Some(0));
    assert_eq!(report["ok"], false);
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("altered")),
        "{report}"
    );

    let database = run(trailmark()
        .args([
            "verify",
            "--database",
            "--json",
            "--public-key",
            &public_key,
            "--data-dir",
        ])
        .arg(&data_dir));
    assert!(database.status.success(), "{database:?}");
    let report = stdout_json(&database);
    assert_eq!(report["ok"], true);
    assert_eq!(
        report["organizations"][0]["organization_id"],
        organization.as_str()
    );
    assert_eq!(report["organizations"][0]["events"], 3);
}
