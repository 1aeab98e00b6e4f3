//! Retry and circuit-breaker policies. They decide; the adapters sleep and
//! call. Time comes in as an argument, so the policies are pure and tested
//! without a clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Exponential backoff with full jitter, capped, honouring a server's
/// `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The ceiling of the first delay.
    pub initial: Duration,
    /// No delay is longer than this (unless the server asks for more).
    pub max: Duration,
    /// Attempts per call, the first included; at least 1.
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            max_attempts: 5,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this long.
    RetryAfter(Duration),
    /// Attempts exhausted.
    GiveUp,
}

impl Backoff {
    /// The decision after `attempt` (1-based) failed. `jitter` is a number
    /// in [0, 1) from the caller's random source; `retry_after` the server's
    /// own request, which wins when it is longer.
    pub fn after_failure(
        &self,
        attempt: u32,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> RetryDecision {
        if attempt >= self.max_attempts {
            return RetryDecision::GiveUp;
        }
        let delay = ceiling(self.initial, self.max, attempt).mul_f64(jitter.clamp(0.0, 1.0));
        RetryDecision::RetryAfter(match retry_after {
            Some(asked) if asked > delay => asked,
            _ => delay,
        })
    }
}

/// The longest delay after `attempt` (1-based) failed: `initial` doubled at
/// each attempt, never above `max`.
fn ceiling(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    initial.saturating_mul(1u32 << exponent).min(max)
}

/// Waiting out a dependency that went away (a database restarted, an object
/// store down): retry with capped backoff until the outage has lasted
/// `max_outage`, then give up. A stream waits without bound
/// (`Duration::MAX`); a batch run waits a bounded time and fails the file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutagePolicy {
    /// The ceiling of the first delay.
    pub initial: Duration,
    /// No delay is longer than this.
    pub max_delay: Duration,
    /// How long an outage may last before the caller gives up.
    pub max_outage: Duration,
}

impl OutagePolicy {
    /// Waits up to `max_outage`, retrying from 100 ms up to every 5 s.
    pub fn waiting(max_outage: Duration) -> OutagePolicy {
        OutagePolicy {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            max_outage,
        }
    }

    /// The decision after `attempt` (1-based) failed, `down_for` after the
    /// first failure of this outage. `jitter` is in [0, 1). Delays never
    /// fall below half their ceiling (a reconnect loop must not spin) and
    /// never run past the end of the allowed outage.
    pub fn after_failure(&self, attempt: u32, down_for: Duration, jitter: f64) -> RetryDecision {
        if down_for >= self.max_outage {
            return RetryDecision::GiveUp;
        }
        let delay = ceiling(self.initial, self.max_delay, attempt)
            .mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0);
        RetryDecision::RetryAfter(delay.min(self.max_outage - down_for))
    }
}

/// When a consumer group member should leave and rejoin its group, because
/// the group coordinator left it, or a partition, without an owner.
///
/// Two signs, both impossible on a healthy group: an explicit empty
/// assignment in a group that has no more members than the topic has
/// partitions; and a partition the member does not hold whose stored offset
/// stands still while records wait beyond it. The adapter asks and acts;
/// times come in as arguments.
#[derive(Debug, Clone)]
pub struct RejoinPolicy {
    /// How long an empty assignment may last before the group is checked.
    pub empty_grace: Duration,
    /// How long a partition held by another may stand still with records
    /// waiting before the member rejoins.
    pub stall_after: Duration,
    /// Partitions with records waiting: their stored offset, and since when
    /// it has not moved.
    waiting: HashMap<i32, (i64, Instant)>,
}

impl RejoinPolicy {
    pub fn new(empty_grace: Duration, stall_after: Duration) -> RejoinPolicy {
        RejoinPolicy {
            empty_grace,
            stall_after,
            waiting: HashMap::new(),
        }
    }

    /// Whether an empty assignment has lasted long enough to look at the
    /// group.
    pub fn empty_for_too_long(&self, empty_for: Duration) -> bool {
        empty_for >= self.empty_grace
    }

    /// Whether a member given nothing should rejoin: yes unless the group
    /// has more members than the topic has partitions (then idling is
    /// right).
    pub fn rejoin_when_empty(&self, members: usize, partitions: usize) -> bool {
        members <= partitions
    }

    /// Records what is known of a partition this member does not hold (its
    /// stored next offset and the broker's high watermark) at `now`; true
    /// when it has stood still for `stall_after` with records waiting.
    pub fn stalled(&mut self, partition: i32, stored: i64, high: i64, now: Instant) -> bool {
        if high <= stored {
            self.waiting.remove(&partition);
            return false;
        }
        let (offset, since) = self.waiting.entry(partition).or_insert((stored, now));
        if *offset != stored {
            *offset = stored;
            *since = now;
            return false;
        }
        now.duration_since(*since) >= self.stall_after
    }

    /// Forgets a partition (this member holds it now).
    pub fn forget(&mut self, partition: i32) {
        self.waiting.remove(&partition);
    }

    /// Forgets every partition (after a rejoin, everything starts again).
    pub fn reset(&mut self) {
        self.waiting.clear();
    }
}

/// A number in [0, 1) for backoff jitter (fastrand's thread-local
/// generator, seeded randomly per thread).
pub fn jitter() -> f64 {
    fastrand::f64()
}

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls wait: the service failed too often.
    Open,
    /// One probe call is allowed to test the service.
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// What a caller may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Call (as the probe when half-open).
    Proceed,
    /// Do not call; ask again after this long.
    Wait(Duration),
}

/// A circuit breaker: `threshold` failures in a row open it; after
/// `cool_down` one probe goes through; its success closes the circuit, its
/// failure opens it again.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    failures: u32,
    state: CircuitState,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cool_down: Duration) -> CircuitBreaker {
        CircuitBreaker {
            threshold: threshold.max(1),
            cool_down,
            failures: 0,
            state: CircuitState::Closed,
            opened_at: None,
            probe_in_flight: false,
        }
    }

    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// May a call start at `now`?
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            CircuitState::Closed => Admission::Proceed,
            CircuitState::Open => {
                let opened = self.opened_at.unwrap_or(now);
                let ready = opened + self.cool_down;
                if now >= ready {
                    self.state = CircuitState::HalfOpen;
                    self.probe_in_flight = true;
                    Admission::Proceed
                } else {
                    Admission::Wait(ready - now)
                }
            }
            CircuitState::HalfOpen if self.probe_in_flight => {
                // Others wait for the probe's verdict.
                Admission::Wait(
                    self.cool_down
                        .min(Duration::from_millis(50))
                        .max(Duration::from_millis(1)),
                )
            }
            CircuitState::HalfOpen => {
                self.probe_in_flight = true;
                Admission::Proceed
            }
        }
    }

    /// A call succeeded. Returns the state it left, if it changed.
    pub fn on_success(&mut self) -> Option<CircuitState> {
        self.failures = 0;
        self.probe_in_flight = false;
        let before = self.state;
        self.state = CircuitState::Closed;
        self.opened_at = None;
        (before != CircuitState::Closed).then_some(before)
    }

    /// A call failed in a way worth retrying (the service is unwell).
    /// Returns the state it left, if it changed (as every transition does).
    pub fn on_failure(&mut self, now: Instant) -> Option<CircuitState> {
        self.failures = self.failures.saturating_add(1);
        let open = match self.state {
            CircuitState::Closed => self.failures >= self.threshold,
            CircuitState::HalfOpen => true,
            CircuitState::Open => false,
        };
        self.probe_in_flight = false;
        if open { self.trip(now) } else { None }
    }

    /// Opens the circuit at once (e.g. a call ran out of attempts).
    pub fn trip(&mut self, now: Instant) -> Option<CircuitState> {
        let before = self.state;
        self.state = CircuitState::Open;
        self.opened_at = Some(now);
        self.probe_in_flight = false;
        (before != CircuitState::Open).then_some(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_assignment_is_wrong_only_with_no_more_members_than_partitions() {
        let p = RejoinPolicy::new(Duration::from_secs(3), Duration::from_secs(20));
        assert!(!p.empty_for_too_long(Duration::from_secs(2)));
        assert!(p.empty_for_too_long(Duration::from_secs(3)));
        assert!(p.rejoin_when_empty(1, 3));
        assert!(p.rejoin_when_empty(3, 3));
        assert!(
            !p.rejoin_when_empty(4, 3),
            "a fourth member of three partitions idles"
        );
    }

    #[test]
    fn a_partition_standing_still_with_records_waiting_is_stalled_after_the_bound() {
        let mut p = RejoinPolicy::new(Duration::from_secs(3), Duration::from_secs(20));
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        assert!(!p.stalled(0, 100, 500, at(0)));
        assert!(!p.stalled(0, 100, 600, at(19)));
        assert!(p.stalled(0, 100, 700, at(20)));
        // Progress starts the clock again.
        assert!(!p.stalled(0, 150, 700, at(21)));
        assert!(!p.stalled(0, 150, 700, at(40)));
        assert!(p.stalled(0, 150, 700, at(41)));
        // Nothing waiting: never stalled, however long it stands still.
        assert!(!p.stalled(1, 700, 700, at(0)));
        assert!(!p.stalled(1, 700, 700, at(100)));
        // A partition taken over is forgotten.
        p.forget(0);
        assert!(!p.stalled(0, 150, 700, at(100)));
    }

    #[test]
    fn an_outage_is_waited_out_with_growing_delays_then_given_up() {
        let p = OutagePolicy {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_outage: Duration::from_secs(10),
        };
        let delay = |attempt, down_secs, jitter| match p.after_failure(
            attempt,
            Duration::from_secs(down_secs),
            jitter,
        ) {
            RetryDecision::RetryAfter(d) => d,
            RetryDecision::GiveUp => Duration::MAX,
        };
        assert_eq!(delay(1, 0, 0.0), Duration::from_millis(50));
        assert_eq!(delay(3, 0, 0.0), Duration::from_millis(200));
        // Capped at max_delay, whatever the attempt.
        assert_eq!(delay(40, 0, 0.999_999).as_millis(), 1_999);
        // Never past the end of the allowed outage.
        assert_eq!(delay(40, 9, 0.999_999), Duration::from_secs(1));
        assert_eq!(delay(2, 10, 0.5), Duration::MAX);
        // A stream waits for ever.
        let forever = OutagePolicy::waiting(Duration::MAX);
        assert!(matches!(
            forever.after_failure(1_000, Duration::from_secs(86_400 * 365), 0.5),
            RetryDecision::RetryAfter(_)
        ));
    }

    #[test]
    fn jitter_stays_in_the_unit_interval() {
        for _ in 0..1_000 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_gives_up() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(350),
            max_attempts: 4,
        };
        let full = |attempt| b.after_failure(attempt, 0.999_999, None);
        let ms = |d: RetryDecision| match d {
            RetryDecision::RetryAfter(d) => d.as_millis(),
            RetryDecision::GiveUp => u128::MAX,
        };
        assert_eq!(ms(full(1)), 99);
        assert_eq!(ms(full(2)), 199);
        assert_eq!(ms(full(3)), 349);
        assert_eq!(full(4), RetryDecision::GiveUp);
        assert_eq!(
            b.after_failure(1, 0.0, None),
            RetryDecision::RetryAfter(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_wins_when_longer() {
        let b = Backoff::default();
        let asked = Duration::from_secs(3);
        assert_eq!(
            b.after_failure(1, 0.5, Some(asked)),
            RetryDecision::RetryAfter(asked)
        );
    }

    #[test]
    fn breaker_opens_after_threshold_probes_and_closes() {
        let t0 = Instant::now();
        let mut cb = CircuitBreaker::new(3, Duration::from_secs(1));
        assert_eq!(cb.on_failure(t0), None);
        assert_eq!(cb.on_failure(t0), None);
        assert_eq!(cb.on_failure(t0), Some(CircuitState::Closed));
        assert_eq!(cb.state(), CircuitState::Open);
        assert_eq!(cb.admit(t0), Admission::Wait(Duration::from_secs(1)));
        let later = t0 + Duration::from_millis(1500);
        assert_eq!(cb.admit(later), Admission::Proceed);
        assert_eq!(cb.state(), CircuitState::HalfOpen);
        // A second caller waits for the probe.
        assert!(matches!(cb.admit(later), Admission::Wait(_)));
        assert_eq!(cb.on_success(), Some(CircuitState::HalfOpen));
        assert_eq!(cb.state(), CircuitState::Closed);
        assert_eq!(cb.admit(later), Admission::Proceed);
    }

    #[test]
    fn a_failed_probe_opens_the_circuit_again() {
        let t0 = Instant::now();
        let mut cb = CircuitBreaker::new(1, Duration::from_secs(1));
        cb.on_failure(t0);
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(cb.admit(t1), Admission::Proceed);
        assert_eq!(cb.on_failure(t1), Some(CircuitState::HalfOpen));
        assert_eq!(cb.state(), CircuitState::Open);
        assert_eq!(cb.admit(t1), Admission::Wait(Duration::from_secs(1)));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let t0 = Instant::now();
        let mut cb = CircuitBreaker::new(2, Duration::from_secs(1));
        cb.on_failure(t0);
        cb.on_success();
        assert_eq!(cb.on_failure(t0), None);
        assert_eq!(cb.state(), CircuitState::Closed);
    }
}
