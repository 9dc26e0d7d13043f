//! Witnesses (C2SP tlog-witness, tlog-cosignature): `serve` asks `trailmark witness` to cosign
//! each new checkpoint and serves the cosigned checkpoint; `verify --witness-key` requires the
//! cosignatures; the witness cosigns only consistent growth. Cosignatures are checked with an
//! independent implementation (the `signed_note` crate).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::{ApiKeySecret, Scope};
use trailmark_ledger::checkpoint::{Checkpoint, NoteSigner, NoteVerifier};
use trailmark_ledger::cosignature::CosignatureVerifier;
use trailmark_store::ApiKeyRecord;

use crate::helpers::{Options, TestApp, body, event};

/// `trailmark witness` on a free loopback port, stopped when dropped.
struct Witness {
    child: Child,
    url: String,
    key: String,
    _dir: tempfile::TempDir,
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Witness {
    fn start(name: &str, log_key: &str) -> Witness {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_trailmark"))
            .args([
                "witness",
                "--listen",
                "127.0.0.1:0",
                "--name",
                name,
                "--log-key",
                log_key,
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the witness");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut line = || lines.next().expect("a line").expect("text");
        let listening = line();
        let url = listening
            .rsplit_once(' ')
            .map(|(_, url)| url.to_owned())
            .expect("the address");
        let key = line()
            .strip_prefix("verifier key: ")
            .expect("the verifier key")
            .to_owned();
        Witness {
            child,
            url,
            key,
            _dir: dir,
        }
    }

    fn config(&self) -> trailmark_app::WitnessConfig {
        trailmark_app::WitnessConfig {
            url: self.url.clone(),
            key: CosignatureVerifier::parse(&self.key).expect("key"),
        }
    }
}

/// The log's own key (`TestApp` signs with this seed): what the operator holds.
fn operator() -> NoteSigner {
    NoteSigner::new("trailmark.test", [7; 32]).expect("signer")
}

/// A cosignature/v1 verifier for `signed_note`, written from the spec: the key ID over
/// `name ‖ "\n" ‖ 0x04 ‖ key`, the message `cosignature/v1\ntime <t>\n` ‖ note text.
struct CosignatureV1 {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl CosignatureV1 {
    fn new(vkey: &str) -> CosignatureV1 {
        let parts: Vec<&str> = vkey.splitn(3, '+').collect();
        let material = STANDARD.decode(parts[2]).expect("base64");
        assert_eq!(material[0], 0x04, "a cosignature/v1 key");
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&material[1..].try_into().expect("32 bytes"))
                .expect("Ed25519 key");
        CosignatureV1 {
            name: parts[0].to_owned(),
            id: signed_note::key_id(parts[0], &material),
            key,
        }
    }
}

impl signed_note::Verifier for CosignatureV1 {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some((time, signature)) = sig.split_first_chunk::<8>() else {
            return false;
        };
        let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        let mut message =
            format!("cosignature/v1\ntime {}\n", u64::from_be_bytes(*time)).into_bytes();
        message.extend_from_slice(msg);
        self.key.verify_strict(&message, &signature).is_ok()
    }
}

/// How many valid cosignatures by `vkey` `signed_note` finds on `note`.
fn independently_cosigned(note: &str, vkey: &str) -> usize {
    let note = signed_note::Note::from_bytes(note.as_bytes()).expect("a signed note");
    let verifiers = signed_note::VerifierList::new(vec![Box::new(CosignatureV1::new(vkey))]);
    note.verify(&verifiers)
        .map_or(0, |(verified, _)| verified.len())
}

async fn latest_note(app: &TestApp, organization: &str) -> String {
    let answer = body(
        app.get(&format!(
            "/audit_logs/ledger/checkpoint?organization_id={organization}"
        ))
        .await,
    )
    .await;
    answer["checkpoint"].as_str().unwrap_or_default().to_owned()
}

/// Waits until the latest checkpoint covers `size` events and carries a cosignature by `name`.
async fn wait_cosigned(app: &TestApp, organization: &str, size: u64, name: &str) -> String {
    for _ in 0..300 {
        let note = latest_note(app, organization).await;
        if note.starts_with(&format!("trailmark.test/{organization}\n{size}\n"))
            && note.contains(&format!("\u{2014} {name} "))
        {
            return note;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no cosigned checkpoint of {size} events");
}

async fn ingest(app: &TestApp, organization: &str, from: usize, count: usize) {
    for n in from..from + count {
        let mut submitted = event("document.updated");
        submitted["metadata"] = json!({"n": n});
        body(app.create_event(organization, &submitted, None).await).await;
    }
}

fn trailmark(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_trailmark"))
        .args(args)
        .output()
        .expect("run trailmark")
}

fn says(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

// Multi-threaded: the CLI runs while the in-process server keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_the_witness_cosign_consistent_growth_and_verify_requires_the_cosignatures() {
    let log_key = operator().verifier_key();
    let first = Witness::start("witness.test/w1", &log_key);
    let second = Witness::start("witness.test/w2", &log_key);
    let app = TestApp::spawn_with(Options {
        witnesses: vec![first.config()],
        ..Options::default()
    })
    .await;
    let organization = app.create_organization("Acme").await;
    ingest(&app, &organization, 0, 5).await;
    let five = wait_cosigned(&app, &organization, 5, "witness.test/w1").await;
    // The witness's second cosignature needs the consistency proof from 5 (learnt from its 409
    // or remembered) to the new size.
    ingest(&app, &organization, 5, 4).await;
    let nine = wait_cosigned(&app, &organization, 9, "witness.test/w1").await;

    // The cosigned checkpoint still verifies for the log's key, and an independent
    // implementation finds the witness's cosignature valid, and not the other witness's.
    let log = NoteVerifier::parse(&log_key).expect("key");
    let checkpoint = log.verify(&nine).expect("the log's signature");
    assert_eq!(checkpoint.size, 9);
    assert_eq!(independently_cosigned(&nine, &first.key), 1);
    assert_eq!(independently_cosigned(&nine, &second.key), 0);
    assert_eq!(independently_cosigned(&five, &first.key), 1);

    // The customer's verify requires the cosignatures it is told to.
    let dir = tempfile::tempdir().expect("temp dir");
    let held = dir.path().join("held-5.txt");
    std::fs::write(&held, &five).expect("write");
    let held = held.to_str().unwrap_or_default();
    let secret = ApiKeySecret::new("sk_test_witnessed_read");
    app.store()
        .insert_api_key(ApiKeyRecord {
            id: "key_witnessed_read".into(),
            hash: secret.hash(),
            scope: Scope::Read,
            organization_id: Some(organization.clone()),
            created_at: Timestamp::now(),
            name: "read key".into(),
            prefix: String::new(),
            expires_at: None,
            last_used_at: None,
        })
        .await
        .expect("key");
    let verify = |witness_args: &[&str]| {
        let mut args = vec![
            "verify",
            "--server",
            &app.base,
            "--api-key",
            secret.expose(),
            "--public-key",
            &log_key,
            "--checkpoint",
            held,
        ];
        args.extend_from_slice(witness_args);
        trailmark(&args)
    };
    let output = verify(&["--witness-key", &first.key]);
    assert!(output.status.success(), "{}", says(&output));
    assert!(
        says(&output).contains("cosigned by 1 of the 1 witnesses required (witness.test/w1) ✓"),
        "{}",
        says(&output)
    );
    let output = verify(&[
        "--witness-key",
        &first.key,
        "--witness-key",
        &second.key,
        "--witnesses-required",
        "2",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", says(&output));
    assert!(
        says(&output).contains(
            "carries 1 valid cosignatures of the 2 required (cosigned by: witness.test/w1)"
        ),
        "{}",
        says(&output)
    );
    let output = verify(&["--witness-key", &second.key, "--witnesses-required", "3"]);
    assert_eq!(output.status.code(), Some(2), "{}", says(&output));

    // The dishonest operator cannot get a rewritten history cosigned: the same size with another
    // root, or a larger tree whose proof does not lead from the cosigned root.
    let client = reqwest::Client::new();
    let add = |body: String| {
        client
            .post(format!("{}/add-checkpoint", first.url))
            .body(body)
            .send()
    };
    let forged = |size: u64| {
        operator().sign(&Checkpoint {
            origin: checkpoint.origin.clone(),
            size,
            root: trailmark_ledger::tree::leaf_hash(b"another history"),
        })
    };
    let answer = add(format!("old 9\n\n{}", forged(9)))
        .await
        .expect("answer");
    assert_eq!(answer.status(), 409);
    assert_eq!(answer.text().await.expect("text"), "9\n");
    let answer = add(format!(
        "old 9\n{}\n\n{}",
        STANDARD.encode([1u8; 32]),
        forged(12)
    ))
    .await
    .expect("answer");
    assert_eq!(answer.status(), 422);
    let stranger = NoteSigner::new("trailmark.test", [9; 32]).expect("signer");
    let answer = add(format!("old 9\n\n{}", stranger.sign(&checkpoint)))
        .await
        .expect("answer");
    assert_eq!(answer.status(), 403);
    // And the honest log keeps being cosigned after the refusals.
    ingest(&app, &organization, 9, 1).await;
    wait_cosigned(&app, &organization, 10, "witness.test/w1").await;
}
