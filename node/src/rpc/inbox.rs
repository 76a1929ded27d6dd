//! The node's receive queue: one bounded FIFO per authenticated sender, drained round-robin.
//!
//! Why not one shared channel: a Byzantine peer that sends as fast as it can fills a shared
//! queue, and every correct peer's messages then wait behind its flood (or are refused). Here a
//! full queue blocks only its own sender's stream — the service stops reading it, and HTTP/2
//! flow control stops the sender — while the driver takes one message per sender per round, so a
//! flood delays a correct message by at most one message of each other sender. Memory is
//! bounded by `capacity` messages per sender (the service allows one stream per sender).

use std::{
    collections::{HashMap, VecDeque},
    pin::pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
};

use byzsgd_core::protocol::{NodeId, Payload};
use tokio::sync::Notify;

/// One decoded message on its way to the driver.
#[derive(Debug)]
pub struct Inbound {
    /// The authenticated sender.
    pub from: NodeId,
    /// The message.
    pub payload: Payload,
}

/// The receiving end is gone (the node is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

#[derive(Debug, Default)]
struct Queues {
    by_sender: HashMap<NodeId, VecDeque<Payload>>,
    /// Senders with queued messages, in the order they get their next turn.
    turns: VecDeque<NodeId>,
    /// The receiver was dropped.
    closed: bool,
}

#[derive(Debug)]
struct Inner {
    queues: Mutex<Queues>,
    capacity: usize,
    /// Live [`InboxSender`]s; at zero the receiver ends.
    senders: AtomicUsize,
    /// A message arrived (or the last sender left).
    arrived: Notify,
    /// A message was taken (room in some queue), or the receiver left.
    taken: Notify,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        // A panic while holding the lock leaves plain queues behind, still consistent.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fair inbox holding at most `capacity` messages per sender.
pub fn fair_inbox(capacity: usize) -> (InboxSender, InboxReceiver) {
    let inner = Arc::new(Inner {
        queues: Mutex::new(Queues::default()),
        capacity: capacity.max(1),
        senders: AtomicUsize::new(1),
        arrived: Notify::new(),
        taken: Notify::new(),
    });
    (
        InboxSender {
            inner: inner.clone(),
        },
        InboxReceiver { inner },
    )
}

/// The service's end: one per stream (clone it).
#[derive(Debug)]
pub struct InboxSender {
    inner: Arc<Inner>,
}

impl Clone for InboxSender {
    fn clone(&self) -> Self {
        self.inner.senders.fetch_add(1, Ordering::SeqCst);
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for InboxSender {
    fn drop(&mut self) {
        if self.inner.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.arrived.notify_one();
        }
    }
}

impl InboxSender {
    /// Queues `payload` from `from`, waiting while that sender's queue is full.
    pub async fn send(&self, from: NodeId, payload: Payload) -> Result<(), Closed> {
        let mut payload = Some(payload);
        loop {
            let mut room = pin!(self.inner.taken.notified());
            // Registered before looking, so a message taken in between still wakes us.
            room.as_mut().enable();
            {
                let mut queues = self.inner.lock();
                if queues.closed {
                    return Err(Closed);
                }
                let Queues {
                    by_sender, turns, ..
                } = &mut *queues;
                let queue = by_sender.entry(from).or_default();
                if queue.len() < self.inner.capacity {
                    if queue.is_empty() {
                        turns.push_back(from);
                    }
                    if let Some(payload) = payload.take() {
                        queue.push_back(payload);
                    }
                    drop(queues);
                    self.inner.arrived.notify_one();
                    return Ok(());
                }
            }
            room.await;
        }
    }
}

/// The driver's end.
#[derive(Debug)]
pub struct InboxReceiver {
    inner: Arc<Inner>,
}

impl Drop for InboxReceiver {
    fn drop(&mut self) {
        self.inner.lock().closed = true;
        self.inner.taken.notify_waiters();
    }
}

impl InboxReceiver {
    /// The next message, taking senders in turn; `None` once every sender is gone and the
    /// queues are empty.
    pub async fn recv(&mut self) -> Option<Inbound> {
        loop {
            let mut arrived = pin!(self.inner.arrived.notified());
            arrived.as_mut().enable();
            {
                let mut queues = self.inner.lock();
                let Queues {
                    by_sender, turns, ..
                } = &mut *queues;
                while let Some(from) = turns.pop_front() {
                    let Some(queue) = by_sender.get_mut(&from) else {
                        continue;
                    };
                    let Some(payload) = queue.pop_front() else {
                        continue;
                    };
                    if !queue.is_empty() {
                        turns.push_back(from);
                    }
                    drop(queues);
                    self.inner.taken.notify_waiters();
                    return Some(Inbound { from, payload });
                }
                if self.inner.senders.load(Ordering::SeqCst) == 0 {
                    return None;
                }
            }
            arrived.await;
        }
    }

    /// Messages waiting, over all senders.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .by_sender
            .values()
            .map(VecDeque::len)
            .sum()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pull(step: u64) -> Payload {
        Payload::Pull { step }
    }

    #[tokio::test]
    async fn a_flooding_sender_waits_for_room_and_others_still_get_their_turn() {
        let (sender, mut receiver) = fair_inbox(4);
        let flooder = NodeId::worker(6);
        let correct = NodeId::worker(0);
        for step in 0..4 {
            sender.send(flooder, pull(step)).await.unwrap();
        }
        // The flooder's fifth message waits: its queue is full.
        let blocked = {
            let sender = sender.clone();
            tokio::spawn(async move { sender.send(flooder, pull(4)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!blocked.is_finished(), "a full queue holds its sender back");
        // A correct sender is not held back by the flood, and is served within one turn.
        sender.send(correct, pull(100)).await.unwrap();
        let first = receiver.recv().await.unwrap();
        let second = receiver.recv().await.unwrap();
        assert_eq!(first.from, flooder);
        assert_eq!(
            (second.from, second.payload.step()),
            (correct, 100),
            "the correct message comes right after one of the flooder's"
        );
        blocked.await.unwrap().unwrap();
        assert_eq!(
            receiver.len(),
            4,
            "taking a message made room, and the waiting one got in"
        );
    }

    #[tokio::test]
    async fn messages_of_one_sender_keep_their_order() {
        let (sender, mut receiver) = fair_inbox(8);
        for step in 0..8 {
            sender.send(NodeId::server(1), pull(step)).await.unwrap();
        }
        for step in 0..8 {
            assert_eq!(receiver.recv().await.unwrap().payload.step(), step);
        }
        assert!(receiver.is_empty());
    }

    #[tokio::test]
    async fn the_receiver_ends_when_every_sender_left_and_senders_fail_when_it_left() {
        let (sender, mut receiver) = fair_inbox(2);
        sender.send(NodeId::server(0), pull(1)).await.unwrap();
        drop(sender);
        assert_eq!(
            receiver.recv().await.unwrap().payload.step(),
            1,
            "queued first"
        );
        assert!(receiver.recv().await.is_none());

        let (sender, receiver) = fair_inbox(1);
        sender.send(NodeId::server(0), pull(1)).await.unwrap();
        let waiting = {
            let sender = sender.clone();
            tokio::spawn(async move { sender.send(NodeId::server(0), pull(2)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(receiver);
        assert_eq!(
            waiting.await.unwrap(),
            Err(Closed),
            "a waiting sender is released"
        );
    }
}
