//! When a failing stream tries again. Pure: the worker feeds it the clock and a random number.
//!
//! The wait after a failed attempt grows with the time the stream has been failing, not with
//! the number of attempts: it is as long as the failure streak so far (at least `initial`, at
//! most `max`), jittered to between half and all of that. So attempts come at roughly 0, 1, 2,
//! 4, 8 … seconds into an outage whatever else happens, and once the destination is back,
//! delivery resumes within the wait that was in force when the outage ended (an outage of `T`
//! costs at most about `T` more, capped at `max`). Nothing but a change to the stream itself
//! shortens a wait: new events never do, so a failing destination gets fewer requests as its
//! outage goes on, not more.
//!
//! A destination's `Retry-After` is honoured when it asks for longer, up to
//! [`RETRY_AFTER_MAX`].

use std::time::Duration;

use tokio::time::Instant;

/// The longest `Retry-After` honoured: a destination asking for a day is asked again in an hour.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// How long a failing stream waits before its next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The shortest wait, also the wait after the first failure.
    pub initial: Duration,
    /// The longest wait, however long the failure lasts.
    pub max: Duration,
}

impl RetryPolicy {
    /// The wait in force for a stream that has been failing for `failing_for`, before jitter.
    pub fn in_force(&self, failing_for: Duration) -> Duration {
        failing_for.clamp(self.initial, self.max.max(self.initial))
    }

    /// The wait before the next attempt: [`RetryPolicy::in_force`] jittered to between half and
    /// all of it by `random`, and at least what the destination's `Retry-After` asked (up to
    /// [`RETRY_AFTER_MAX`]).
    pub fn delay(
        &self,
        failing_for: Duration,
        retry_after: Option<Duration>,
        random: u64,
    ) -> Duration {
        let base = self.in_force(failing_for);
        let half = base / 2;
        let spread = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        let jittered = half + Duration::from_nanos(random % spread);
        jittered.max(retry_after.unwrap_or_default().min(RETRY_AFTER_MAX))
    }
}

/// When a stream's current run of failures began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureStreak {
    since: Option<Instant>,
}

impl FailureStreak {
    /// Records a failed attempt at `now`; returns how long the stream has been failing (zero
    /// for the first failure of a streak).
    pub fn failed(&mut self, now: Instant) -> Duration {
        now.saturating_duration_since(*self.since.get_or_insert(now))
    }

    /// A delivery succeeded: the next failure starts a new streak.
    pub fn recovered(&mut self) {
        self.since = None;
    }

    pub fn is_failing(&self) -> bool {
        self.since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(300),
    };

    #[test]
    fn the_wait_is_the_failure_streak_clamped_and_jittered_within_half_of_it() {
        assert_eq!(POLICY.in_force(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            POLICY.in_force(Duration::from_secs(7)),
            Duration::from_secs(7)
        );
        assert_eq!(
            POLICY.in_force(Duration::from_secs(10_000)),
            Duration::from_secs(300)
        );
        for random in [0, 1, 12_345, u64::MAX / 3, u64::MAX] {
            let wait = POLICY.delay(Duration::from_secs(8), None, random);
            assert!(
                (Duration::from_secs(4)..Duration::from_secs(8)).contains(&wait),
                "{wait:?}"
            );
        }
        assert_eq!(
            POLICY.delay(Duration::ZERO, None, 0),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn retry_after_lengthens_a_wait_up_to_an_hour_but_never_shortens_it() {
        let asked = |seconds| Some(Duration::from_secs(seconds));
        assert_eq!(
            POLICY.delay(Duration::ZERO, asked(30), 0),
            Duration::from_secs(30)
        );
        assert_eq!(
            POLICY.delay(Duration::ZERO, asked(86_400), 0),
            RETRY_AFTER_MAX
        );
        assert_eq!(
            POLICY.delay(Duration::from_secs(100), asked(0), 0),
            Duration::from_secs(50)
        );
    }

    /// Attempts driven by the policy alone, on a paused clock: over a 60-second outage they come
    /// ever further apart (a handful, not one per event or per wake-up), and the first attempt
    /// after the outage comes within the wait in force when it ended.
    #[tokio::test(start_paused = true)]
    async fn attempts_thin_out_with_the_outage_and_resume_within_the_wait_in_force() {
        let start = Instant::now();
        let outage = Duration::from_secs(60);
        let mut streak = FailureStreak::default();
        let mut attempts = Vec::new();
        let mut random = 0x9e37_79b9_7f4a_7c15_u64;
        loop {
            let now = Instant::now();
            attempts.push(now - start);
            if now - start >= outage {
                streak.recovered();
                break;
            }
            let failing_for = streak.failed(now);
            random = random
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            tokio::time::sleep(POLICY.delay(failing_for, None, random)).await;
        }
        assert!(!streak.is_failing());
        let failed = attempts.len() - 1;
        assert!(
            (6..=14).contains(&failed),
            "{failed} attempts in a 60 s outage: {attempts:?}"
        );
        for pair in attempts.windows(3) {
            // Each wait is at least half the previous one's base, so gaps never collapse.
            assert!(pair[2] - pair[1] >= (pair[1] - pair[0]) / 4, "{attempts:?}");
        }
        let last_failure = attempts[failed - 1];
        let recovered_at = attempts[failed];
        assert!(
            recovered_at - last_failure <= POLICY.in_force(last_failure),
            "{attempts:?}"
        );
        assert!(recovered_at < outage * 2, "{attempts:?}");
    }
}
