//! The command line used the wrong way: read-only commands never create anything, a missing
//! database, organization or key is an error naming it, exit statuses tell "verification failed"
//! (1) from "could not run" (2), only `serve` creates a data directory (0700, its database, WAL,
//! event log and exports 0600, whatever the umask), and a second `serve` on one SQLite database
//! is refused.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;

use crate::helpers::{
    ADMIN_KEY, LogTampering, ServerProcess, TestApp, TestDatabase, body, event, on_postgres,
    shell_then_trailmark,
};

fn trailmark(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args(args)
        .env_remove("TRAILMARK_DATABASE_URL")
        .env_remove("TRAILMARK_DATA_DIR")
        .output()
        .expect("run trailmark")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Issue 14: pointed at a directory that does not exist, every command but `serve` fails with
/// status 2 naming what is missing, and creates nothing.
#[test]
fn commands_other_than_serve_create_nothing_and_name_what_is_missing() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let missing = scratch.path().join("trailmark-dta");
    let dir = missing.to_str().unwrap_or_default();
    let database = format!("sqlite://{dir}/other.db");
    let out = scratch.path().join("out.csv");
    let out_arg = out.to_str().unwrap_or_default();
    let key = "trailmark+5b4b3c2a+AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
    for (args, named) in [
        (
            vec![
                "verify",
                "--database",
                "--data-dir",
                dir,
                "--public-key",
                key,
            ],
            format!("{dir}/trailmark.db"),
        ),
        (
            vec!["verify", "--database", &database, "--public-key", key],
            format!("{dir}/other.db"),
        ),
        (
            vec!["verify", "--database", "--data-dir", dir],
            format!("{dir}/trailmark.db"),
        ),
        (
            vec!["ledger", "public-key", "--data-dir", dir],
            format!("{dir}/ledger.key"),
        ),
        (
            vec!["keys", "create", "--data-dir", dir],
            format!("{dir}/trailmark.db"),
        ),
        (
            vec!["keys", "create", "--database", &database],
            format!("{dir}/other.db"),
        ),
        (
            vec![
                "export",
                "--organization",
                "org_1",
                "--out",
                out_arg,
                "--data-dir",
                dir,
            ],
            format!("{dir}/trailmark.db"),
        ),
        (
            vec!["migrate", "--data-dir", dir],
            format!("{dir}/trailmark.db"),
        ),
    ] {
        let output = trailmark(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(&named),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(!missing.exists(), "{args:?} created {dir}");
        assert!(!out.exists() && !out.with_extension("partial").exists());
    }
}

/// Issue 14: against a real database, an unknown organization is an error and no file;
/// `verify` exits 0 for a sound export or database, 1 when what it checks was altered, and 2
/// when it cannot check (no such file, a key that is not one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_statuses_tell_a_failed_verification_from_one_that_could_not_run() {
    let app = TestApp::spawn().await;
    let organization = app.create_organization("Acme").await;
    for n in 0..3 {
        let mut submitted = event("user.signed_in");
        submitted["metadata"] = json!({"n": n});
        assert_eq!(
            app.create_event(&organization, &submitted, None)
                .await
                .status(),
            200
        );
    }
    app.wait_for_checkpoint(&organization, 3).await;
    let key = body(app.get("/audit_logs/ledger/public_key").await).await["verifier_key"]
        .as_str()
        .expect("key")
        .to_owned();
    let dir = app.data_dir.path().to_str().unwrap_or_default().to_owned();
    let url = app.database.url();
    let out = app.data_dir.path().join("log.ndjson");
    let out_arg = out.to_str().unwrap_or_default();

    let unknown = trailmark(&[
        "export",
        "--organization",
        "org_nope",
        "--out",
        out_arg,
        "--data-dir",
        &dir,
        "--database",
        &url,
    ]);
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
    assert!(
        stderr(&unknown).contains("org_nope"),
        "{}",
        stderr(&unknown)
    );
    assert!(!out.exists() && !out.with_extension("partial").exists());

    let exported = trailmark(&[
        "export",
        "--organization",
        &organization,
        "--format",
        "ndjson",
        "--out",
        out_arg,
        "--data-dir",
        &dir,
        "--database",
        &url,
    ]);
    assert_eq!(exported.status.code(), Some(0), "{}", stderr(&exported));
    let verify = |path: &str, key: &str| trailmark(&["verify", path, "--public-key", key]);
    assert_eq!(verify(out_arg, &key).status.code(), Some(0));
    let database = trailmark(&[
        "verify",
        "--database",
        &url,
        "--data-dir",
        &dir,
        "--public-key",
        &key,
    ]);
    assert_eq!(database.status.code(), Some(0), "{}", stderr(&database));

    let missing = app.data_dir.path().join("nope.ndjson");
    let output = verify(missing.to_str().unwrap_or_default(), &key);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let output = verify(out_arg, "not-a-key");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));

    let altered =
        std::fs::read_to_string(&out)
            .expect("export")
            .replacen("Jon Smith", "Someone Else", 1);
    std::fs::write(&out, altered).expect("write");
    let output = verify(out_arg, &key);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("verification failed"),
        "{}",
        stderr(&output)
    );

    if app.database.has_log() {
        app.database.tamper_log(LogTampering::EditBody {
            sequence: 1,
            from: "Jon Smith",
            to: "Someone Else",
        });
    } else {
        app.database
            .tamper("UPDATE events SET body = replace(body, 'Jon Smith', 'Someone Else')")
            .await;
    }
    let output = trailmark(&[
        "verify",
        "--database",
        &url,
        "--data-dir",
        &dir,
        "--public-key",
        &key,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
}

/// Issue 14: one SQLite database serves one process; a second `serve` on it is refused with a
/// message saying why, and the lock goes with the first (even killed). Over PostgreSQL, many
/// instances share one data directory, as they should.
#[tokio::test]
async fn a_second_serve_on_one_sqlite_database_is_refused() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create(data_dir.path()).await;
    let mut first = ServerProcess::start(data_dir.path(), &database, &[]);
    if on_postgres() {
        let second = ServerProcess::start(data_dir.path(), &database, &[]);
        let health = reqwest::get(format!("{}/healthz", second.base))
            .await
            .expect("second instance");
        assert_eq!(health.status(), 200);
        return;
    }
    let output = Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir.path())
        .env("TRAILMARK_API_KEY", ADMIN_KEY)
        .env_remove("TRAILMARK_DATABASE_URL")
        .output()
        .expect("second serve");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("another Trailmark process is writing the log"),
        "{}",
        stderr(&output)
    );
    first.kill();
    let again = ServerProcess::start(data_dir.path(), &database, &[]);
    let health = reqwest::get(format!("{}/healthz", again.base))
        .await
        .expect("after the first is gone");
    assert_eq!(health.status(), 200);
}

/// Issue 13: under a umask that would leave everything readable by all (000), the data
/// directory `serve` creates is 0700 and the database, its WAL and shared memory, its event log
/// (directories 0700), the key files and every export 0600; a CLI export too.
#[tokio::test]
async fn files_are_private_whatever_the_umask() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let data_dir = scratch.path().join("data");
    let database = TestDatabase::create(&data_dir).await;
    let server = ServerProcess::start_after("umask 000", &data_dir, &database, &[]);
    let client = reqwest::Client::new();
    let organization = crate::helpers::organization(&client, &server.base).await;
    let created = crate::helpers::post(
        &client,
        &server.base,
        "/audit_logs/events",
        json!({"organization_id": organization, "event": event("user.signed_in")}),
    )
    .await;
    assert_eq!(created.status(), 200);
    let export = crate::helpers::post(
        &client,
        &server.base,
        "/audit_logs/exports",
        json!({"organization_id": organization, "format": "ndjson"}),
    )
    .await;
    let id = body(export).await["id"].as_str().expect("id").to_owned();
    let mut state = String::new();
    for _ in 0..200 {
        state = crate::helpers::get(&client, &server.base, &format!("/audit_logs/exports/{id}"))
            .await["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if state != "pending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(state, "ready");

    assert_eq!(mode(&data_dir), 0o700, "the data directory");
    let mut private = vec![
        data_dir.join("ledger.key"),
        data_dir.join("secrets.key"),
        data_dir.join("exports").join(format!("{id}.ndjson")),
    ];
    if !on_postgres() {
        for name in ["trailmark.db", "trailmark.db-wal", "trailmark.db-shm"] {
            private.push(data_dir.join(name));
        }
        // The event log beside the database: every directory 0700, every file 0600.
        let mut directories = vec![data_dir.join("trailmark.log")];
        while let Some(directory) = directories.pop() {
            assert_eq!(mode(&directory), 0o700, "{}", directory.display());
            for entry in std::fs::read_dir(&directory).expect("log directory") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    directories.push(path);
                } else {
                    private.push(path);
                }
            }
        }
    }
    for file in &private {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    assert_eq!(
        mode(&data_dir.join("exports")),
        0o700,
        "the exports directory"
    );

    let out = scratch.path().join("cli.csv");
    let exported = shell_then_trailmark("umask 000")
        .args(["export", "--organization", &organization, "--out"])
        .arg(&out)
        .arg("--data-dir")
        .arg(&data_dir)
        .env("TRAILMARK_DATABASE_URL", database.url())
        .output()
        .expect("export");
    assert!(exported.status.success(), "{}", stderr(&exported));
    assert_eq!(mode(&out), 0o600, "the CLI's export");
}
