//! The push channel to widgets: single-use stream tickets, and a per-account fan-out of call events
//! that the server-sent-events endpoint subscribes to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared::api::IncomingCall;
use tokio::sync::broadcast;

use crate::crypto::random_token;
use crate::store::AccountId;

/// How long a ticket may wait before the widget opens its stream with it.
pub const TICKET_TTL: Duration = Duration::from_secs(60);
/// Events buffered per account for slow subscribers before the oldest are dropped for them.
const CHANNEL_CAPACITY: usize = 64;

/// One event for an account's widgets; `user_id` narrows it to one Kommo user.
#[derive(Debug, Clone)]
pub struct PushEvent {
    pub user_id: Option<i64>,
    pub call: IncomingCall,
}

/// Who holds a stream: taken from the verified token when the ticket was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriber {
    pub account: AccountId,
    pub user_id: i64,
}

impl Subscriber {
    /// Whether this subscriber should see `event` (its account is already implied by the channel).
    pub fn wants(&self, event: &PushEvent) -> bool {
        event.user_id.is_none_or(|user| user == self.user_id)
    }
}

#[derive(Default)]
struct HubState {
    channels: HashMap<AccountId, broadcast::Sender<Arc<PushEvent>>>,
    tickets: HashMap<String, (Subscriber, Instant)>,
}

/// In-process fan-out. With several replicas, a cross-process bus replaces this (a later change).
#[derive(Clone, Default)]
pub struct Hub {
    state: Arc<Mutex<HubState>>,
}

impl Hub {
    /// Issues a single-use ticket for `subscriber`, forgetting expired ones on the way.
    pub fn issue_ticket(&self, subscriber: Subscriber) -> String {
        let ticket = random_token(32);
        let now = Instant::now();
        let mut state = self.state.lock().expect("push hub lock poisoned");
        state.tickets.retain(|_, (_, issued)| now.duration_since(*issued) < TICKET_TTL);
        state.tickets.insert(ticket.clone(), (subscriber, now));
        ticket
    }

    /// Consumes a ticket: it works once, within [`TICKET_TTL`].
    pub fn redeem(&self, ticket: &str) -> Option<Subscriber> {
        let mut state = self.state.lock().expect("push hub lock poisoned");
        let (subscriber, issued) = state.tickets.remove(ticket)?;
        (issued.elapsed() < TICKET_TTL).then_some(subscriber)
    }

    pub fn subscribe(&self, account: AccountId) -> broadcast::Receiver<Arc<PushEvent>> {
        let mut state = self.state.lock().expect("push hub lock poisoned");
        state.channels.entry(account).or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0).subscribe()
    }

    /// Whether any stream of the account is open (so the caller can skip preparing an event).
    pub fn has_subscribers(&self, account: AccountId) -> bool {
        let state = self.state.lock().expect("push hub lock poisoned");
        state.channels.get(&account).is_some_and(|sender| sender.receiver_count() > 0)
    }

    /// Sends `event` to the account's open streams; returns how many received it.
    pub fn publish(&self, account: AccountId, event: PushEvent) -> usize {
        let mut state = self.state.lock().expect("push hub lock poisoned");
        let Some(sender) = state.channels.get(&account) else {
            return 0;
        };
        match sender.send(Arc::new(event)) {
            Ok(receivers) => receivers,
            Err(_) => {
                // Nobody listens any more: drop the channel so idle accounts cost nothing.
                state.channels.remove(&account);
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::CallStatus;

    fn call(id: &str) -> IncomingCall {
        IncomingCall {
            call_id: id.into(),
            from: "+1".into(),
            to: "+2".into(),
            status: CallStatus::Ringing,
            extension: None,
        }
    }

    #[test]
    fn ticket_works_once() {
        let hub = Hub::default();
        let subscriber = Subscriber { account: AccountId(1), user_id: 5 };
        let ticket = hub.issue_ticket(subscriber);
        assert_eq!(hub.redeem(&ticket), Some(subscriber));
        assert_eq!(hub.redeem(&ticket), None);
        assert_eq!(hub.redeem("made-up"), None);
    }

    #[tokio::test]
    async fn events_reach_only_the_accounts_own_streams() {
        let hub = Hub::default();
        let mut a = hub.subscribe(AccountId(1));
        let mut b = hub.subscribe(AccountId(2));
        assert_eq!(hub.publish(AccountId(1), PushEvent { user_id: None, call: call("c1") }), 1);
        assert_eq!(a.recv().await.unwrap().call.call_id, "c1");
        assert!(b.try_recv().is_err());
    }

    #[test]
    fn user_targeted_events_reach_only_that_user() {
        let subscriber = Subscriber { account: AccountId(1), user_id: 5 };
        assert!(subscriber.wants(&PushEvent { user_id: None, call: call("c") }));
        assert!(subscriber.wants(&PushEvent { user_id: Some(5), call: call("c") }));
        assert!(!subscriber.wants(&PushEvent { user_id: Some(6), call: call("c") }));
    }
}
