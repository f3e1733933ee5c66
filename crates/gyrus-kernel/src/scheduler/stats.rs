//! What the scheduler measures: counts, and wait and turnaround distributions, per cortex and
//! class. Distributions are fixed log-linear histograms (eight buckets per doubling, so a
//! quantile is within an eighth of the true value), which cost the same memory however many calls
//! pass and add up across cortexes or scrapes the way Prometheus histograms do.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::queue::Class;

/// Buckets per doubling.
const SUB: u64 = 8;
/// Values from 2^36 µs (about 19 hours) up share the last bucket.
const TOP_BIT: u64 = 36;
const BUCKETS: usize = ((TOP_BIT - 2) * SUB) as usize;

/// A histogram of durations, in microseconds.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    count: u64,
    sum_us: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            count: 0,
            sum_us: 0,
            max_us: 0,
        }
    }
}

/// The bucket of a value: values below 8 µs exactly, then eight buckets per doubling.
fn bucket(us: u64) -> usize {
    if us < SUB {
        return us as usize;
    }
    let top = u64::from(63 - us.leading_zeros());
    if top >= TOP_BIT {
        return BUCKETS - 1;
    }
    let sub = (us >> (top - 3)) & (SUB - 1);
    ((top - 2) * SUB + sub) as usize
}

/// The largest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let doubling = i / SUB;
    let width = 1u64 << (doubling - 1);
    (SUB + i % SUB) * width + width - 1
}

impl Histogram {
    pub(crate) fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(us)] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    /// The value at or below which a fraction `q` of the samples lie, rounded up to its
    /// bucket's bound (and never above the largest sample).
    fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        // The rank is at least 1 and at most the count; the float is exact for any real count.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return upper(i).min(self.max_us);
            }
        }
        self.max_us
    }

    pub(crate) fn summary(&self) -> Summary {
        Summary {
            count: self.count,
            mean_us: self.sum_us.checked_div(self.count).unwrap_or(0),
            p50_us: self.quantile(0.50),
            p95_us: self.quantile(0.95),
            p99_us: self.quantile(0.99),
            max_us: self.max_us,
        }
    }
}

/// A distribution of durations, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_us: u64,
    /// Median (within an eighth).
    pub p50_us: u64,
    /// 95th percentile (within an eighth).
    pub p95_us: u64,
    /// 99th percentile (within an eighth).
    pub p99_us: u64,
    /// The largest sample, exactly.
    pub max_us: u64,
}

/// One class of calls at one cortex.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassStats {
    /// Calls waiting for a slot now.
    pub queued: usize,
    /// Calls holding a slot now.
    pub running: usize,
    /// Calls given a slot, ever.
    pub admitted: u64,
    /// Of those, calls given a slot because their flow had aged.
    pub aged: u64,
    /// Calls that gave their slot back.
    pub completed: u64,
    /// Calls whose caller stopped waiting before a slot came.
    pub cancelled: u64,
    /// From asking to getting a slot.
    pub wait: Summary,
    /// From asking to giving the slot back.
    pub turnaround: Summary,
}

/// One cortex.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CortexStats {
    /// Calls it runs at once, at most.
    pub max_concurrency: usize,
    /// Calls holding a slot now (above the maximum for a while after it was lowered).
    pub running: usize,
    /// Calls waiting now.
    pub queued: usize,
    /// Interactive calls.
    pub interactive: ClassStats,
    /// Background calls.
    pub background: ClassStats,
}

impl CortexStats {
    /// The figures of one class.
    pub fn class(&self, class: Class) -> &ClassStats {
        match class {
            Class::Interactive => &self.interactive,
            Class::Background => &self.background,
        }
    }
}

/// Every cortex, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerStats {
    /// The cortexes.
    pub cortexes: BTreeMap<String, CortexStats>,
}

/// The running tallies of one class at one cortex.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub(crate) running: usize,
    pub(crate) admitted: u64,
    pub(crate) aged: u64,
    pub(crate) completed: u64,
    pub(crate) cancelled: u64,
    pub(crate) wait: Histogram,
    pub(crate) turnaround: Histogram,
}

impl Tally {
    pub(crate) fn stats(&self, queued: usize) -> ClassStats {
        ClassStats {
            queued,
            running: self.running,
            admitted: self.admitted,
            aged: self.aged,
            completed: self.completed,
            cancelled: self.cancelled,
            wait: self.wait.summary(),
            turnaround: self.turnaround.summary(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_an_eighth_wide() {
        let mut last = None;
        for us in (0..100_000u64).chain([1 << 20, (1 << 30) + 12_345, (1 << 36) - 1]) {
            let i = bucket(us);
            assert!(us <= upper(i), "{us} above its bucket's bound {}", upper(i));
            assert!(i == 0 || us > upper(i - 1), "{us} belongs below bucket {i}");
            assert!(
                upper(i) - us <= us / 8,
                "{us} in a bucket wider than an eighth"
            );
            if us < 100_000 {
                assert!(
                    last.is_none_or(|l| i == l || i == l + 1),
                    "a bucket skipped at {us}"
                );
                last = Some(i);
            }
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_come_within_an_eighth() {
        let mut h = Histogram::default();
        assert_eq!(h.summary(), Summary::default());
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.max_us, 1_000_000);
        assert_eq!(s.mean_us, 500_500);
        for (got, want) in [
            (s.p50_us, 500_000),
            (s.p95_us, 950_000),
            (s.p99_us, 990_000),
        ] {
            assert!(got >= want && got - want <= want / 8, "{got} for {want}");
        }
        let mut one = Histogram::default();
        one.record(Duration::from_micros(3));
        assert_eq!((one.summary().p50_us, one.summary().p99_us), (3, 3));
    }
}
