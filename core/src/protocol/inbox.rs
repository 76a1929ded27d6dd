//! Per-step buffers of incoming vectors that count **distinct senders** and keep arrival order,
//! so a quorum is exactly "the first q distinct senders of this step" (PAPER.md §11.2).
//!
//! Messages for steps already passed are stale; messages too far ahead are refused so that a
//! Byzantine node cannot make a correct one buffer without bound.

use std::collections::BTreeMap;

use super::message::Rejection;

/// Arrival-ordered messages per step, at most one per sender and step.
#[derive(Debug, Clone)]
pub struct Inbox<T> {
    steps: BTreeMap<u64, Vec<(usize, T)>>,
}

impl<T> Default for Inbox<T> {
    fn default() -> Self {
        Self {
            steps: BTreeMap::new(),
        }
    }
}

impl<T> Inbox<T> {
    /// Buffers `item` from `sender` for `step`, if `current ≤ step ≤ horizon`.
    ///
    /// Returns how many distinct senders `step` now has.
    pub fn insert(
        &mut self,
        step: u64,
        sender: usize,
        item: T,
        current: u64,
        horizon: u64,
    ) -> Result<usize, Rejection> {
        if step < current {
            return Err(Rejection::Stale);
        }
        if step > horizon {
            return Err(Rejection::Future);
        }
        let entries = self.steps.entry(step).or_default();
        if entries.iter().any(|(existing, _)| *existing == sender) {
            return Err(Rejection::Duplicate);
        }
        entries.push((sender, item));
        Ok(entries.len())
    }

    /// Number of distinct senders buffered for `step`.
    pub fn count(&self, step: u64) -> usize {
        self.steps.get(&step).map_or(0, Vec::len)
    }

    /// The buffered messages of `step`, in arrival order.
    pub fn get(&self, step: u64) -> &[(usize, T)] {
        self.steps.get(&step).map_or(&[], Vec::as_slice)
    }

    /// The largest step in `from..` that has at least `quorum` senders.
    pub fn latest_ready(&self, from: u64, quorum: usize) -> Option<u64> {
        self.steps
            .range(from..)
            .rev()
            .find(|(_, entries)| entries.len() >= quorum)
            .map(|(step, _)| *step)
    }

    /// Removes and returns the messages of `step`, in arrival order.
    pub fn take(&mut self, step: u64) -> Vec<(usize, T)> {
        self.steps.remove(&step).unwrap_or_default()
    }

    /// Drops every buffered step below `step`.
    pub fn discard_below(&mut self, step: u64) {
        self.steps = self.steps.split_off(&step);
    }

    /// Total buffered messages (for memory accounting in tests).
    pub fn len(&self) -> usize {
        self.steps.values().map(Vec::len).sum()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sender_fills_one_slot_per_step() {
        let mut inbox = Inbox::default();
        assert_eq!(inbox.insert(3, 7, 'a', 3, 10), Ok(1));
        assert_eq!(inbox.insert(3, 7, 'b', 3, 10), Err(Rejection::Duplicate));
        assert_eq!(inbox.insert(3, 8, 'c', 3, 10), Ok(2));
        assert_eq!(inbox.count(3), 2);
    }

    #[test]
    fn stale_and_future_steps_are_refused() {
        let mut inbox = Inbox::default();
        assert_eq!(inbox.insert(2, 0, (), 3, 10), Err(Rejection::Stale));
        assert_eq!(inbox.insert(11, 0, (), 3, 10), Err(Rejection::Future));
        assert!(inbox.is_empty());
    }

    #[test]
    fn latest_ready_prefers_the_newest_complete_step() {
        let mut inbox = Inbox::default();
        for sender in 0..3 {
            inbox.insert(4, sender, (), 0, 10).unwrap();
            inbox.insert(6, sender, (), 0, 10).unwrap();
        }
        inbox.insert(7, 0, (), 0, 10).unwrap();
        assert_eq!(inbox.latest_ready(0, 3), Some(6));
        assert_eq!(inbox.latest_ready(7, 3), None);
        inbox.discard_below(6);
        assert_eq!(inbox.count(4), 0);
        assert_eq!(inbox.count(6), 3);
    }

    #[test]
    fn take_keeps_arrival_order() {
        let mut inbox = Inbox::default();
        for sender in [5, 1, 3] {
            inbox.insert(0, sender, sender * 10, 0, 0).unwrap();
        }
        let taken: Vec<usize> = inbox
            .take(0)
            .into_iter()
            .map(|(sender, _)| sender)
            .collect();
        assert_eq!(taken, vec![5, 1, 3]);
    }
}
