//! `trailmark witness`: a C2SP tlog-witness a customer can run. It cosigns checkpoints of the
//! logs whose verifier keys it is given, only when they grow consistently from the latest one it
//! cosigned (the decision is `trailmark_ledger::witness`), and keeps that latest checkpoint per
//! log in `<data-dir>/witness-state.json`, written before it answers. Its key is
//! `<data-dir>/witness.key` (created 0600 on first start); its verifier key is printed at start.
//!
//! HTTP: `POST /add-checkpoint` only, as the spec gives it (200 with the cosignature line; 400,
//! 403, 404, 409 with the latest size as `text/x.tlog.size`, 422).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use trailmark_ledger::checkpoint::{Checkpoint, NoteVerifier};
use trailmark_ledger::cosignature::{Cosigner, note_body};
use trailmark_ledger::witness::{AddCheckpoint, Refusal, TrustedLogs};
use trailmark_ledger::{decode_hash, encode_hash};

use crate::args::WitnessArgs;
use crate::key_files::load_or_create;
use crate::say;

/// The witness's key, the logs it trusts, and the latest checkpoint it cosigned of each origin.
struct Witness {
    cosigner: Cosigner,
    trusted: TrustedLogs,
    /// Held while a request is decided and its checkpoint persisted, so two requests can never
    /// both pass against the same latest checkpoint (the spec's roll-back race).
    latest: Mutex<BTreeMap<String, Checkpoint>>,
    state_file: PathBuf,
}

pub async fn run(args: WitnessArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let seed = load_or_create(&args.data_dir.join("witness.key"), true)?;
    let cosigner = Cosigner::new(&args.name, seed).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let keys = args
        .log_keys
        .iter()
        .map(|key| NoteVerifier::parse(key).map_err(|e| anyhow::anyhow!("--log-key {key}: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let state_file = args.data_dir.join("witness-state.json");
    let witness = Arc::new(Witness {
        trusted: TrustedLogs::new(keys),
        latest: Mutex::new(read_state(&state_file)?),
        cosigner,
        state_file,
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    say!(
        "Witness {} listening on http://{address}",
        witness.cosigner.name()
    );
    say!("verifier key: {}", witness.cosigner.verifier_key());
    let router = Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .with_state(witness);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: String) -> Response {
    let request = match AddCheckpoint::parse(&body) {
        Ok(request) => request,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    };
    let decided = {
        let Ok(mut latest) = witness.latest.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let origin = request.note.lines().next().unwrap_or_default().to_owned();
        match witness
            .trusted
            .add_checkpoint(&request, latest.get(&origin))
        {
            Ok(checkpoint) => {
                let previous = latest.insert(origin.clone(), checkpoint);
                match write_state(&witness.state_file, &latest) {
                    Ok(()) => Ok(()),
                    Err(error) => {
                        // Not persisted: not cosigned, and the old state stays.
                        match previous {
                            Some(previous) => latest.insert(origin, previous),
                            None => latest.remove(&origin),
                        };
                        tracing::error!("cannot persist the witness state: {error:#}");
                        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                    }
                }
            }
            Err(refusal) => Err(refusal),
        }
    };
    match decided {
        Ok(()) => {
            let Ok(body) = note_body(&request.note) else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("{}\n", witness.cosigner.cosign(body, now)).into_response()
        }
        Err(Refusal::Conflict { latest }) => (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{latest}\n"),
        )
            .into_response(),
        Err(refusal) => (
            StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST),
            format!("{refusal}\n"),
        )
            .into_response(),
    }
}

fn read_state(path: &Path) -> anyhow::Result<BTreeMap<String, Checkpoint>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    let state: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let mut latest = BTreeMap::new();
    for (origin, checkpoint) in state.as_object().into_iter().flatten() {
        let root = decode_hash(checkpoint["root"].as_str().unwrap_or_default())
            .map_err(|e| anyhow::anyhow!("{}: {origin}: {e}", path.display()))?;
        let size = checkpoint["size"]
            .as_u64()
            .with_context(|| format!("{}: {origin} has no size", path.display()))?;
        latest.insert(
            origin.clone(),
            Checkpoint {
                origin: origin.clone(),
                size,
                root,
            },
        );
    }
    Ok(latest)
}

/// Writes the state whole under another name, syncs it, then renames it into place: a crash
/// leaves the old state or the new one, never half of one.
fn write_state(path: &Path, latest: &BTreeMap<String, Checkpoint>) -> anyhow::Result<()> {
    let state: serde_json::Map<String, Value> = latest
        .iter()
        .map(|(origin, c)| {
            (
                origin.clone(),
                json!({"size": c.size, "root": encode_hash(&c.root)}),
            )
        })
        .collect();
    let draft = path.with_extension("json.new");
    let mut file = std::fs::File::create(&draft)?;
    std::io::Write::write_all(&mut file, Value::Object(state).to_string().as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&draft, path)?;
    Ok(())
}
