//! Runs a `trailmark` subcommand (export, verify) as a child process and reports its wall time,
//! CPU time and peak resident memory, the latter two from the kernel's accounting of the reaped
//! child (`wait4`), so nothing is sampled and nothing is missed; and reads the address a server
//! child (`trailmark serve`, the durable ceiling) prints once it listens.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Finished {
    pub wall: Duration,
    pub cpu: Duration,
    /// Peak resident set size, bytes.
    pub peak_rss: u64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` to completion, its output captured in files under `dir` named after `label`.
///
/// # Errors
///
/// If it cannot start, or it exits unsuccessfully (the message carries its stderr).
pub fn run(mut command: Command, dir: &Path, label: &str) -> Result<Finished, String> {
    let out_path = dir.join(format!("{label}.stdout"));
    let err_path = dir.join(format!("{label}.stderr"));
    let create = |path: &Path| {
        std::fs::File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))
    };
    command
        .stdin(Stdio::null())
        .stdout(create(&out_path)?)
        .stderr(create(&err_path)?);
    let started = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("starting {label}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is a plain C struct for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own child, not yet reaped (`Child` only reaps in `wait`, which is
        // never called); `status` and `usage` are valid for writes for the whole call.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("waiting for {label}: {error}"));
        }
    }
    let wall = started.elapsed();
    // The child is reaped: dropping its handle must not try to wait for it again (it does not).
    drop(child);
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    let finished = Finished {
        wall,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        // Linux reports ru_maxrss in kibibytes.
        peak_rss: usage.ru_maxrss.max(0) as u64 * 1024,
        stdout: read(&out_path),
        stderr: read(&err_path),
    };
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(finished)
    } else {
        Err(format!(
            "{label} failed (wait status {status}):\n{}{}",
            finished.stdout, finished.stderr
        ))
    }
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

/// Reads a child's `stdout` on a thread of its own and sends what follows `prefix` (trimmed) on
/// the first line that starts with it: where a server child says it listens. It keeps reading
/// after that line, so the child never blocks on a full pipe.
pub fn line_after(
    stdout: std::process::ChildStdout,
    prefix: &'static str,
) -> mpsc::Receiver<String> {
    let (found, line) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for text in BufReader::new(stdout).lines() {
            let Ok(text) = text else { break };
            if !sent && let Some(rest) = text.strip_prefix(prefix) {
                let _ = found.send(rest.trim().to_owned());
                sent = true;
            }
        }
    });
    line
}

/// The peak and current resident set size of a running process, bytes, from /proc.
pub fn rss_of(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}
