//! Quotas over time: a sliding window of recent uses. Pure: the caller passes the clock in.

use std::collections::VecDeque;
use std::time::Duration;

/// Recent uses of one quota, as times since a fixed origin.
#[derive(Debug, Clone, Default)]
pub struct SlidingWindow {
    uses: VecDeque<Duration>,
}

impl SlidingWindow {
    /// Takes one use at `now` if fewer than `limit` were taken within the last `period`;
    /// otherwise returns how long until one frees up.
    pub fn try_take(
        &mut self,
        now: Duration,
        limit: u32,
        period: Duration,
    ) -> Result<(), Duration> {
        while self
            .uses
            .front()
            .is_some_and(|&t| now.saturating_sub(t) >= period)
        {
            self.uses.pop_front();
        }
        if self.uses.len() >= limit as usize {
            let oldest = self.uses.front().copied().unwrap_or(now);
            return Err((oldest + period).saturating_sub(now));
        }
        self.uses.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn a_window_admits_limit_uses_per_period_and_frees_them_as_they_age() {
        let mut w = SlidingWindow::default();
        assert_eq!(w.try_take(s(0), 2, s(60)), Ok(()));
        assert_eq!(w.try_take(s(10), 2, s(60)), Ok(()));
        assert_eq!(w.try_take(s(20), 2, s(60)), Err(s(40)));
        assert_eq!(w.try_take(s(59), 2, s(60)), Err(s(1)));
        assert_eq!(
            w.try_take(s(60), 2, s(60)),
            Ok(()),
            "the first use aged out"
        );
        assert_eq!(w.try_take(s(61), 2, s(60)), Err(s(9)));
        assert_eq!(
            SlidingWindow::default().try_take(s(0), 0, s(60)),
            Err(s(60)),
            "a zero quota admits nothing"
        );
    }
}
