//! The retry policy: exponential backoff with jitter (the `backoff` crate), bounded both in
//! attempts and in elapsed time.

use backoff::backoff::Backoff;
use backoff::{ExponentialBackoff, ExponentialBackoffBuilder};
use std::time::Duration;

/// How a node's retryable failures are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the second attempt (before jitter).
    pub initial_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
    /// Growth factor between delays.
    pub multiplier: f64,
    /// Jitter: each delay is drawn from `delay * (1 ± randomization)`.
    pub randomization: f64,
    /// Attempts at most, the first included.
    pub max_attempts: u32,
    /// No new attempt starts after this much time since the first.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// Suited to AWS: IAM propagation takes seconds, throttling clears within a minute.
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            multiplier: 2.0,
            randomization: 0.5,
            max_attempts: 8,
            max_elapsed: Duration::from_secs(180),
        }
    }
}

impl RetryPolicy {
    /// A policy with millisecond delays, for tests.
    pub fn fast(max_attempts: u32) -> Self {
        RetryPolicy {
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            multiplier: 2.0,
            randomization: 0.5,
            max_attempts,
            max_elapsed: Duration::from_secs(30),
        }
    }

    /// A fresh schedule of delays for one node.
    pub(crate) fn schedule(&self) -> RetrySchedule {
        let backoff = ExponentialBackoffBuilder::new()
            .with_initial_interval(self.initial_delay)
            .with_max_interval(self.max_delay)
            .with_multiplier(self.multiplier)
            .with_randomization_factor(self.randomization)
            .with_max_elapsed_time(Some(self.max_elapsed))
            .build();
        RetrySchedule {
            backoff,
            max_attempts: self.max_attempts.max(1),
        }
    }
}

/// The delays of one node's retries.
pub(crate) struct RetrySchedule {
    backoff: ExponentialBackoff,
    max_attempts: u32,
}

impl RetrySchedule {
    /// The delay before the next attempt, or `None` when attempts or time ran out.
    /// `attempts_made` counts attempts of this process's schedule.
    pub(crate) fn next_delay(&mut self, attempts_made: u32) -> Option<Duration> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        self.backoff.next_backoff()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_attempts() {
        let mut schedule = RetryPolicy::fast(3).schedule();
        assert!(schedule.next_delay(1).is_some());
        assert!(schedule.next_delay(2).is_some());
        assert!(schedule.next_delay(3).is_none());
    }

    #[test]
    fn bounded_in_time() {
        let policy = RetryPolicy {
            max_elapsed: Duration::from_millis(0),
            ..RetryPolicy::fast(100)
        };
        let mut schedule = policy.schedule();
        std::thread::sleep(Duration::from_millis(2));
        assert!(schedule.next_delay(1).is_none());
    }

    #[test]
    fn delays_grow_within_jitter_and_cap() {
        let policy = RetryPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
            multiplier: 2.0,
            randomization: 0.5,
            max_attempts: 10,
            max_elapsed: Duration::from_secs(60),
        };
        let mut schedule = policy.schedule();
        let delays: Vec<_> = (1..8)
            .map(|n| schedule.next_delay(n).expect("delay"))
            .collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(150));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(600)));
        assert!(delays[6] >= Duration::from_millis(200));
    }
}
