//! When to restart a failed agent: exponential backoff, and a start limit in the manner of
//! systemd's `StartLimitBurst`/`StartLimitIntervalSec` (more than `burst` starts within
//! `interval` and the agent is left failed). Pure: the caller passes the clock in.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How an agent's process is restarted after it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartPolicy {
    /// Restart after a failure (a non-zero exit or a signal); a clean exit (0) is not restarted.
    pub on_failure: bool,
    /// Delay before the first restart, in milliseconds.
    pub initial_backoff_ms: u64,
    /// The delay doubles per consecutive failure up to this, in milliseconds.
    pub max_backoff_ms: u64,
    /// At most this many starts within `start_limit_interval_secs`…
    pub start_limit_burst: u32,
    /// …else the agent is marked failed and left alone.
    pub start_limit_interval_secs: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            on_failure: true,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            start_limit_burst: 5,
            start_limit_interval_secs: 60,
        }
    }
}

/// What to do after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Start again after this delay.
    RestartAfter(Duration),
    /// Leave it stopped: it exited cleanly, or restarts are off.
    Stay,
    /// Too many starts within the interval: mark it failed.
    GiveUp {
        /// Starts counted within the interval.
        starts: u32,
    },
}

/// The restart state of one agent: recent start times and consecutive failures.
#[derive(Debug, Clone, Default)]
pub struct RestartState {
    starts: VecDeque<Duration>,
    failures: u32,
}

impl RestartState {
    /// Records a start at `now` (time since any fixed origin).
    pub fn started(&mut self, now: Duration) {
        self.starts.push_back(now);
    }

    /// Records an exit at `now` and decides what comes next. `ran_for` resets the failure
    /// streak when the process had run for longer than the maximum backoff (it was healthy).
    pub fn exited(
        &mut self,
        policy: &RestartPolicy,
        success: bool,
        ran_for: Duration,
        now: Duration,
    ) -> Next {
        if success || !policy.on_failure {
            self.failures = 0;
            return Next::Stay;
        }
        if ran_for > Duration::from_millis(policy.max_backoff_ms) {
            self.failures = 0;
        }
        self.failures += 1;
        let window = Duration::from_secs(policy.start_limit_interval_secs);
        while self
            .starts
            .front()
            .is_some_and(|&t| now.saturating_sub(t) > window)
        {
            self.starts.pop_front();
        }
        let starts = u32::try_from(self.starts.len()).unwrap_or(u32::MAX);
        if starts >= policy.start_limit_burst {
            return Next::GiveUp { starts };
        }
        let exponent = (self.failures - 1).min(32);
        let delay = policy
            .initial_backoff_ms
            .saturating_mul(1u64 << exponent)
            .min(policy.max_backoff_ms);
        Next::RestartAfter(Duration::from_millis(delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets_after_a_healthy_run() {
        let policy = RestartPolicy {
            start_limit_burst: 100,
            ..RestartPolicy::default()
        };
        let mut state = RestartState::default();
        let mut delays = Vec::new();
        for i in 0..9 {
            state.started(s(i * 100));
            match state.exited(&policy, false, Duration::from_millis(10), s(i * 100 + 1)) {
                Next::RestartAfter(d) => delays.push(d.as_millis()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        state.started(s(1000));
        // Ran for longer than the maximum backoff: the streak resets.
        assert_eq!(
            state.exited(&policy, false, s(31), s(1031)),
            Next::RestartAfter(Duration::from_millis(500))
        );
    }

    #[test]
    fn the_start_limit_gives_up_within_the_interval_only() {
        let policy = RestartPolicy::default(); // 5 starts in 60 s
        let mut state = RestartState::default();
        for i in 0..4 {
            state.started(s(i));
            assert!(matches!(
                state.exited(&policy, false, s(0), s(i)),
                Next::RestartAfter(_)
            ));
        }
        state.started(s(4));
        assert_eq!(
            state.exited(&policy, false, s(0), s(4)),
            Next::GiveUp { starts: 5 }
        );

        // The same five starts spread over more than a minute are fine.
        let mut spread = RestartState::default();
        for i in 0..10 {
            spread.started(s(i * 20));
            assert!(
                matches!(
                    spread.exited(&policy, false, s(0), s(i * 20)),
                    Next::RestartAfter(_)
                ),
                "{i}"
            );
        }
    }

    #[test]
    fn clean_exits_and_disabled_restarts_stay_down() {
        let mut state = RestartState::default();
        state.started(s(0));
        assert_eq!(
            state.exited(&RestartPolicy::default(), true, s(1), s(1)),
            Next::Stay
        );
        let off = RestartPolicy {
            on_failure: false,
            ..RestartPolicy::default()
        };
        assert_eq!(state.exited(&off, false, s(1), s(2)), Next::Stay);
    }
}
