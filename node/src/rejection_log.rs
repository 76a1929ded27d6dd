//! The log side of a dropped message: every rejection is counted in `/metrics`
//! (`byzsgd_rejected_total{reason}`, see [`crate::metrics`]) and named here in a log line with
//! the peer, so an operator can tell which node misbehaves without reading counters by peer
//! (which would give every metric a label per node).
//!
//! Bounded under a flood: the first rejection of each (peer, reason) is logged at once, later
//! ones at most once per [`LOG_EVERY`] with how many were dropped since, so a Byzantine peer
//! sending thousands of bad messages a second costs one line per second, not thousands.
//! Reasons a correct peer can cause in an asynchronous network (a late, early or repeated
//! message) are logged at DEBUG; the rest, which only a faulty or Byzantine peer produces, at
//! WARN.

use std::{
    collections::HashMap,
    fmt::Display,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// The least time between two log lines for the same peer and reason.
pub const LOG_EVERY: Duration = Duration::from_secs(1);

/// Distinct (peer, reason) pairs remembered. Peers are the job's nodes (or, for refused
/// connections, addresses), so this is only reached under an attack from many addresses;
/// then the memory is cleared and the next line of each pair is logged again.
const MAX_TRACKED: usize = 4096;

/// Rate-limited log lines for dropped messages, shared by the streams and the driver.
#[derive(Debug, Default)]
pub struct RejectionLog {
    pairs: Mutex<HashMap<(String, &'static str), Quiet>>,
}

/// What is known of one (peer, reason) since its last line.
#[derive(Debug, Clone, Copy)]
struct Quiet {
    logged_at: Instant,
    dropped_since: u64,
}

/// Whether a rejection is one a correct peer can cause: a late message (stale), one ahead of
/// what the receiver buffers (future) or a repeat after a reconnection (duplicate).
pub fn is_benign(reason: &str) -> bool {
    matches!(reason, "stale" | "future" | "duplicate" | "partition")
}

impl RejectionLog {
    /// Notes one message dropped from `peer` for `reason` (a `Rejection` label, or
    /// `partition` for a chaos partition); logs it unless a line for the pair went out less
    /// than [`LOG_EVERY`] ago. Returns how many drops the line reports (0: no line).
    pub fn note(&self, peer: &dyn Display, reason: &'static str) -> u64 {
        self.note_at(peer, reason, Instant::now())
    }

    fn note_at(&self, peer: &dyn Display, reason: &'static str, now: Instant) -> u64 {
        // One allocation per drop (the key); the lookups borrow it.
        let key = (peer.to_string(), reason);
        let dropped = {
            let mut pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
            if pairs.len() >= MAX_TRACKED && !pairs.contains_key(&key) {
                pairs.clear();
            }
            if let Some(quiet) = pairs.get_mut(&key) {
                if now.duration_since(quiet.logged_at) < LOG_EVERY {
                    quiet.dropped_since += 1;
                    return 0;
                }
                let dropped = quiet.dropped_since + 1;
                *quiet = Quiet {
                    logged_at: now,
                    dropped_since: 0,
                };
                dropped
            } else {
                pairs.insert(
                    key.clone(),
                    Quiet {
                        logged_at: now,
                        dropped_since: 0,
                    },
                );
                1
            }
        };
        let peer = &key.0;
        if is_benign(reason) {
            tracing::debug!(%peer, reason, dropped, "dropped messages");
        } else {
            tracing::warn!(%peer, reason, dropped, "dropped messages from a faulty or Byzantine peer");
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use byzsgd_core::protocol::Rejection;

    use super::*;

    #[test]
    fn a_flood_of_rejections_is_one_line_per_peer_reason_and_second() {
        let log = RejectionLog::default();
        let start = Instant::now();
        // The first drop of a pair is logged at once.
        assert_eq!(log.note_at(&"worker-3", "malformed", start), 1);
        // 999 more within the second: silent, counted.
        for i in 1..1000 {
            let at = start + Duration::from_micros(i);
            assert_eq!(log.note_at(&"worker-3", "malformed", at), 0);
        }
        // Another peer or another reason has a line of its own.
        assert_eq!(log.note_at(&"worker-4", "malformed", start), 1);
        assert_eq!(log.note_at(&"worker-3", "wrong_length", start), 1);
        // After a second, the next line reports the drops since the last one.
        assert_eq!(
            log.note_at(&"worker-3", "malformed", start + LOG_EVERY),
            1000
        );
        assert_eq!(log.note_at(&"worker-3", "malformed", start + LOG_EVERY), 0);
    }

    #[test]
    fn many_peers_cannot_grow_the_memory_without_bound() {
        let log = RejectionLog::default();
        let now = Instant::now();
        for peer in 0..(3 * MAX_TRACKED) {
            log.note_at(&format!("10.0.0.1:{peer}"), "unauthenticated", now);
        }
        let tracked = log.pairs.lock().unwrap().len();
        assert!(tracked <= MAX_TRACKED, "{tracked}");
    }

    #[test]
    fn only_what_a_correct_peer_can_cause_is_benign() {
        for rejection in [Rejection::Stale, Rejection::Future, Rejection::Duplicate] {
            assert!(is_benign(rejection.as_str()), "{rejection:?}");
        }
        for rejection in [
            Rejection::WrongLength,
            Rejection::NonFinite,
            Rejection::UnexpectedKind,
            Rejection::UnknownSender,
            Rejection::Malformed,
            Rejection::WrongJob,
            Rejection::Unauthenticated,
            Rejection::Impersonation,
        ] {
            assert!(!is_benign(rejection.as_str()), "{rejection:?}");
        }
    }
}
