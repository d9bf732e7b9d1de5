//! Per-caller rate of verifications by digits: a counter types a few a minute, a guesser thousands; the guesser is refused and logged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Callers tracked at most; past it the idlest are forgotten (a full bucket is the default anyway).
const MAX_CALLERS: usize = 10_000;

/// A token bucket per caller: `per_minute` tokens, refilled evenly over the minute.
#[derive(Debug)]
pub(super) struct DigitsLimit {
    per_minute: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl DigitsLimit {
    pub(super) fn new(per_minute: u32) -> Self {
        Self { per_minute: f64::from(per_minute), buckets: Mutex::default() }
    }

    /// Takes a token for `caller`; `false` when it has none left.
    pub(super) fn allow(&self, caller: &str) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_CALLERS && !buckets.contains_key(caller) {
            let per_minute = self.per_minute;
            buckets.retain(|_, (tokens, at)| *tokens + at.elapsed().as_secs_f64() * per_minute / 60.0 < per_minute);
        }
        let (tokens, at) = buckets.entry(caller.to_owned()).or_insert((self.per_minute, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_minute / 60.0).min(self.per_minute);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_minute_and_others_theirs() {
        let limit = DigitsLimit::new(3);
        assert!((0..3).all(|_| limit.allow("desk-1")));
        assert!(!limit.allow("desk-1"));
        assert!(limit.allow("desk-2"));
    }
}
