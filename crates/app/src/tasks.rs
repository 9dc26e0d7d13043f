//! Background tasks under one shutdown signal, restarted if they panic.
//!
//! Each task is made by a factory, so that a task whose future panicked (a bug, not an error:
//! errors are handled inside each task's loop) is not forgotten: its supervisor logs the panic
//! and starts a fresh one after [`RESTART_DELAY`]. [`Tasks::shutdown`] cancels every task at
//! its next await point and waits for them.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Pause before a panicked task is started again, so a task that panics at once does not spin.
const RESTART_DELAY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(crate) struct Tasks {
    shutdown: CancellationToken,
    supervisors: Mutex<Vec<JoinHandle<()>>>,
}

impl Tasks {
    /// The signal every task (and anything else the application starts) stops on.
    pub(crate) fn shutdown_signal(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs `make()`'s future until shutdown; if it panics, runs a new one.
    pub(crate) fn spawn<F, Fut>(&self, name: &'static str, make: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        let supervisor = tokio::spawn(async move {
            loop {
                let mut task = tokio::spawn(make());
                tokio::select! {
                    () = shutdown.cancelled() => {
                        task.abort();
                        let _ = task.await;
                        return;
                    }
                    ended = &mut task => match ended {
                        Err(error) if error.is_panic() => {
                            tracing::error!(task = name, "a background task panicked; starting it again");
                        }
                        _ => {
                            tracing::debug!(task = name, "a background task ended");
                            return;
                        }
                    },
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(RESTART_DELAY) => {}
                }
            }
        });
        if let Ok(mut supervisors) = self.supervisors.lock() {
            supervisors.push(supervisor);
        }
    }

    /// Cancels every task and waits until they have stopped.
    pub(crate) async fn shutdown(&self) {
        self.shutdown.cancel();
        let supervisors = self
            .supervisors
            .lock()
            .map(|mut supervisors| std::mem::take(&mut *supervisors))
            .unwrap_or_default();
        for supervisor in supervisors {
            let _ = supervisor.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_started_again_and_all_stop_on_shutdown() {
        let tasks = Tasks::default();
        let starts = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&starts);
        tasks.spawn("flaky", move || {
            let counter = Arc::clone(&counter);
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("a bug in the first two runs");
                }
                std::future::pending::<()>().await;
            }
        });
        tokio::time::sleep(RESTART_DELAY * 5).await;
        assert_eq!(
            starts.load(Ordering::SeqCst),
            3,
            "restarted after each panic"
        );
        tasks.shutdown().await;
        assert!(tasks.shutdown_signal().is_cancelled());
        tokio::time::sleep(RESTART_DELAY * 5).await;
        assert_eq!(
            starts.load(Ordering::SeqCst),
            3,
            "nothing runs after shutdown"
        );
    }
}
