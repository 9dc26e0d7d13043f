//! The real `trailmark serve` release binary as a child process, on its own data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;

/// The server opens its database and runs migrations before it listens; a cold disk can be slow.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Trailmark {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Trailmark {
    /// Starts `binary serve` on an ephemeral loopback port and waits for the line that says
    /// where it listens.
    pub fn start(binary: &Path, data_dir: &Path, api_key: &str) -> Result<Self, String> {
        Self::start_with(binary, data_dir, api_key, &[])
    }

    /// Like [`Trailmark::start`], with more `serve` arguments (e.g. `--database`). Instances
    /// sharing `data_dir` get logs of their own.
    pub fn start_with(
        binary: &Path,
        data_dir: &Path,
        api_key: &str,
        extra: &[&str],
    ) -> Result<Self, String> {
        let log = data_dir.with_extension(format!(
            "{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ));
        let stderr =
            std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let mut child = Command::new(binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("TRAILMARK_API_KEY", api_key)
            // A benchmark is one client sending as fast as it can: it measures the server, not
            // the rate limits meant for abuse.
            .env("TRAILMARK_RATE_LIMIT_PER_ADDRESS", "0")
            .env("TRAILMARK_RATE_LIMIT_PER_KEY", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Its log goes to a file so the report stays readable; it is shown on failure.
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or("the server's stdout was not captured")?;
        let address = crate::child::line_after(stdout, "Trailmark listening on http://");
        let mut server = Trailmark {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        let addr = address.recv_timeout(START_TIMEOUT).map_err(|_| {
            format!(
                "trailmark did not print its address within {}s; its log:\n{}",
                START_TIMEOUT.as_secs(),
                server.log_tail()
            )
        })?;
        server.addr = addr
            .parse()
            .map_err(|e| format!("trailmark printed an unreadable address {addr:?}: {e}"))?;
        Ok(server)
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server process is still running (a crash mid-run would explain errors).
    pub fn still_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Trailmark {
    fn drop(&mut self) {
        // SIGKILL: nothing acknowledged can be lost (that is Trailmark's promise), and the data
        // directory is deleted next anyway.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `POST /organizations {"name":"Bench"}` and returns the new organization's id.
pub async fn create_organization(addr: SocketAddr, api_key: &str) -> Result<String, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to trailmark: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with trailmark: {e}"))?;
    tokio::spawn(connection);
    let request = Request::post("/organizations")
        .header(HOST, addr.to_string())
        .header(AUTHORIZATION, format!("Bearer {api_key}"))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(br#"{"name":"Bench"}"#)))
        .map_err(|e| format!("building the organization request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("creating the organization: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the organization: {e}"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    if !status.is_success() {
        return Err(format!("POST /organizations answered {status}: {text}"));
    }
    let parsed: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("POST /organizations answered non-JSON ({e}): {text}"))?;
    parsed["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("POST /organizations answered no id: {text}"))
}
