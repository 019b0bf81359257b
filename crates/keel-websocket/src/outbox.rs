//! [`Outbox`]: one client's bounded outbound queue and its close request.
//!
//! Producers (a broadcast, a publish, a direct send) push under a short
//! lock and never wait; the client's writer swaps the whole queue out and
//! writes it. When the queue is full the slow-client policy drops the
//! oldest message or asks for the client to be closed.

use std::collections::VecDeque;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::config::SlowClientPolicy;

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued.
    Queued,
    /// Queued, after dropping the oldest queued message.
    DroppedOldest,
    /// The queue was full and the policy is to disconnect: not queued, and
    /// the client is now closing.
    Overflowed,
    /// The client is closing; not queued.
    Closed,
}

/// Why the writer stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseRequest {
    /// The close frame to send, if one should be sent.
    pub(crate) frame: Option<CloseFrame>,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Message>,
    close: Option<CloseRequest>,
}

#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer: messages or a close request are waiting.
    wake: Notify,
    /// Wakes a writer blocked in a write: a close request is waiting.
    closing: Notify,
    capacity: usize,
    policy: SlowClientPolicy,
}

impl Outbox {
    pub(crate) fn new(capacity: usize, policy: SlowClientPolicy) -> Self {
        Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                close: None,
            }),
            wake: Notify::new(),
            closing: Notify::new(),
            capacity: capacity.max(1),
            policy,
        }
    }

    /// Queues `message` without waiting.
    pub(crate) fn push(&self, message: Message) -> Pushed {
        let pushed = {
            let mut state = self.state.lock();
            if state.close.is_some() {
                return Pushed::Closed;
            }
            if state.queue.len() >= self.capacity {
                match self.policy {
                    SlowClientPolicy::DropOldest => {
                        state.queue.pop_front();
                        state.queue.push_back(message);
                        Pushed::DroppedOldest
                    }
                    SlowClientPolicy::Disconnect => {
                        state.queue.clear();
                        state.close = Some(CloseRequest {
                            frame: Some(close_frame(CloseCode::Policy, "outbound queue full")),
                        });
                        drop(state);
                        self.closing.notify_one();
                        self.wake.notify_one();
                        return Pushed::Overflowed;
                    }
                }
            } else {
                state.queue.push_back(message);
                Pushed::Queued
            }
        };
        self.wake.notify_one();
        pushed
    }

    /// Asks the writer to stop, sending `frame` first when given. The first
    /// request wins; queued messages are discarded. Returns false if a
    /// close was already requested.
    pub(crate) fn close(&self, frame: Option<CloseFrame>) -> bool {
        {
            let mut state = self.state.lock();
            if state.close.is_some() {
                return false;
            }
            state.queue.clear();
            state.close = Some(CloseRequest { frame });
        }
        self.closing.notify_one();
        self.wake.notify_one();
        true
    }

    /// Whether a close was requested.
    pub(crate) fn is_closing(&self) -> bool {
        self.state.lock().close.is_some()
    }

    /// Moves every queued message into `into` (which must be empty), or
    /// returns the close request.
    pub(crate) fn take(&self, into: &mut VecDeque<Message>) -> Result<(), CloseRequest> {
        let mut state = self.state.lock();
        if let Some(close) = &state.close {
            return Err(close.clone());
        }
        std::mem::swap(&mut state.queue, into);
        Ok(())
    }

    /// Wakes the writer without queuing anything.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Resolves when something was pushed or a close was requested since
    /// the last call.
    pub(crate) async fn wait(&self) {
        self.wake.notified().await;
    }

    /// Resolves when a close is requested.
    pub(crate) async fn wait_closing(&self) {
        loop {
            let notified = self.closing.notified();
            if self.is_closing() {
                return;
            }
            notified.await;
        }
    }
}

pub(crate) fn close_frame(code: CloseCode, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Message {
        Message::text(n.to_string())
    }

    #[test]
    fn drop_oldest_keeps_the_newest_messages() {
        let outbox = Outbox::new(3, SlowClientPolicy::DropOldest);
        let outcomes: Vec<Pushed> = (0..5).map(|i| outbox.push(text(i))).collect();
        assert_eq!(
            outcomes,
            [
                Pushed::Queued,
                Pushed::Queued,
                Pushed::Queued,
                Pushed::DroppedOldest,
                Pushed::DroppedOldest
            ]
        );
        let mut taken = VecDeque::new();
        outbox.take(&mut taken).unwrap();
        assert_eq!(Vec::from(taken), [text(2), text(3), text(4)]);
        assert_eq!(outbox.len(), 0);
    }

    #[test]
    fn disconnect_closes_with_1008_and_refuses_more() {
        let outbox = Outbox::new(2, SlowClientPolicy::Disconnect);
        assert_eq!(outbox.push(text(0)), Pushed::Queued);
        assert_eq!(outbox.push(text(1)), Pushed::Queued);
        assert_eq!(outbox.push(text(2)), Pushed::Overflowed);
        assert_eq!(outbox.push(text(3)), Pushed::Closed);
        let close = outbox.take(&mut VecDeque::new()).unwrap_err();
        let frame = close.frame.unwrap();
        assert_eq!(frame.code, CloseCode::Policy);
        assert_eq!(frame.reason.as_str(), "outbound queue full");
    }

    #[test]
    fn the_first_close_request_wins() {
        let outbox = Outbox::new(2, SlowClientPolicy::DropOldest);
        assert!(outbox.close(Some(close_frame(CloseCode::Away, "bye"))));
        assert!(!outbox.close(None));
        let close = outbox.take(&mut VecDeque::new()).unwrap_err();
        assert_eq!(close.frame.unwrap().code, CloseCode::Away);
    }
}
