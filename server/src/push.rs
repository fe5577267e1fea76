//! The push channel to widgets: single-use stream tickets, and a per-account fan-out of call events
//! that the server-sent-events endpoint subscribes to. Open streams are counted (per user, per account,
//! in total) so that no client holds more than its share of the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared::api::IncomingCall;
use tokio::sync::broadcast;

use crate::config::Limits;
use crate::crypto::random_token;
use crate::store::AccountId;

/// How long a ticket may wait before the widget opens its stream with it.
pub const TICKET_TTL: Duration = Duration::from_secs(60);
/// Events buffered per account for slow subscribers before the oldest are dropped for them.
const CHANNEL_CAPACITY: usize = 64;
/// What a refused stream is told to wait (`Retry-After`): slots free only as other streams end, which
/// takes a while, and the widget's own backoff adds jitter on top.
pub const STREAMS_FULL_RETRY_AFTER: Duration = Duration::from_secs(60);

/// One event for an account's widgets; `user_id` narrows it to one Kommo user.
#[derive(Debug, Clone)]
pub struct PushEvent {
    pub user_id: Option<i64>,
    pub call: IncomingCall,
}

/// Who holds a stream: taken from the verified token when the ticket was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Open streams; only [`StreamSlot`] changes these, so they cannot drift from the streams.
    open_per_user: HashMap<Subscriber, usize>,
    open_per_account: HashMap<AccountId, usize>,
    open_total: usize,
}

impl HubState {
    /// Whether `subscriber` may open one more stream under `limits`.
    fn has_room(&self, subscriber: Subscriber, limits: &Limits) -> bool {
        let user = self.open_per_user.get(&subscriber).copied().unwrap_or(0);
        let account = self.open_per_account.get(&subscriber.account).copied().unwrap_or(0);
        user < limits.push_streams_per_user
            && account < limits.push_streams_per_account
            && self.open_total < limits.push_streams_total
    }
}

/// A stream was refused: its user, its account or the process already holds as many as allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamsFull;

/// Why a ticket opened no stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Unknown, already used or expired.
    BadTicket,
    Full(StreamsFull),
}

/// One open stream's place in the counts; dropping it (when the stream ends, however it ends) frees it.
pub struct StreamSlot {
    state: Arc<Mutex<HubState>>,
    subscriber: Subscriber,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut state = self.state.lock().expect("push hub lock poisoned");
        let subscriber = self.subscriber;
        if let Some(open) = state.open_per_user.get_mut(&subscriber) {
            *open -= 1;
            if *open == 0 {
                state.open_per_user.remove(&subscriber);
            }
        }
        if let Some(open) = state.open_per_account.get_mut(&subscriber.account) {
            *open -= 1;
            if *open == 0 {
                state.open_per_account.remove(&subscriber.account);
            }
        }
        state.open_total -= 1;
    }
}

/// In-process fan-out. With several replicas, a cross-process bus replaces this (a later change).
#[derive(Clone, Default)]
pub struct Hub {
    state: Arc<Mutex<HubState>>,
}

impl Hub {
    /// Issues a single-use ticket for `subscriber`, forgetting expired ones on the way. A subscriber
    /// already at a cap gets none: the widget sees the refusal (an `EventSource` could not) and waits.
    pub fn issue_ticket(&self, subscriber: Subscriber, limits: &Limits) -> Result<String, StreamsFull> {
        let ticket = random_token(32);
        let now = Instant::now();
        let mut state = self.state.lock().expect("push hub lock poisoned");
        if !state.has_room(subscriber, limits) {
            return Err(StreamsFull);
        }
        state.tickets.retain(|_, (_, issued)| now.duration_since(*issued) < TICKET_TTL);
        state.tickets.insert(ticket.clone(), (subscriber, now));
        Ok(ticket)
    }

    /// Consumes a ticket (it works once, within [`TICKET_TTL`]) and takes a stream slot for its
    /// subscriber, if the caps leave one; the ticket is spent either way.
    pub fn open_stream(&self, ticket: &str, limits: &Limits) -> Result<(Subscriber, StreamSlot), OpenError> {
        let mut state = self.state.lock().expect("push hub lock poisoned");
        let (subscriber, issued) = state.tickets.remove(ticket).ok_or(OpenError::BadTicket)?;
        if issued.elapsed() >= TICKET_TTL {
            return Err(OpenError::BadTicket);
        }
        if !state.has_room(subscriber, limits) {
            return Err(OpenError::Full(StreamsFull));
        }
        *state.open_per_user.entry(subscriber).or_default() += 1;
        *state.open_per_account.entry(subscriber.account).or_default() += 1;
        state.open_total += 1;
        Ok((subscriber, StreamSlot { state: Arc::clone(&self.state), subscriber }))
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

    fn limits(per_user: usize, per_account: usize, total: usize) -> Limits {
        Limits {
            push_streams_per_user: per_user,
            push_streams_per_account: per_account,
            push_streams_total: total,
            ..Limits::default()
        }
    }

    fn open(hub: &Hub, subscriber: Subscriber, limits: &Limits) -> Result<StreamSlot, OpenError> {
        let ticket = hub.issue_ticket(subscriber, limits).map_err(OpenError::Full)?;
        hub.open_stream(&ticket, limits).map(|(_, slot)| slot)
    }

    #[test]
    fn ticket_works_once() {
        let hub = Hub::default();
        let limits = Limits::default();
        let subscriber = Subscriber { account: AccountId::for_tests(1), user_id: 5 };
        let ticket = hub.issue_ticket(subscriber, &limits).unwrap();
        assert_eq!(hub.open_stream(&ticket, &limits).map(|(who, _)| who).ok(), Some(subscriber));
        assert_eq!(hub.open_stream(&ticket, &limits).err(), Some(OpenError::BadTicket));
        assert_eq!(hub.open_stream("made-up", &limits).err(), Some(OpenError::BadTicket));
    }

    #[test]
    fn each_cap_refuses_only_past_it_and_a_dropped_slot_frees_its_place() {
        let limits = limits(2, 3, 4);
        let hub = Hub::default();
        let (alice, bob, carol) = (
            Subscriber { account: AccountId::for_tests(1), user_id: 1 },
            Subscriber { account: AccountId::for_tests(1), user_id: 2 },
            Subscriber { account: AccountId::for_tests(2), user_id: 3 },
        );
        let first = open(&hub, alice, &limits).unwrap();
        let _second = open(&hub, alice, &limits).unwrap();
        assert_eq!(open(&hub, alice, &limits).err(), Some(OpenError::Full(StreamsFull)), "per user");
        let _third = open(&hub, bob, &limits).unwrap();
        assert_eq!(open(&hub, bob, &limits).err(), Some(OpenError::Full(StreamsFull)), "per account");
        let _fourth = open(&hub, carol, &limits).unwrap();
        assert_eq!(open(&hub, carol, &limits).err(), Some(OpenError::Full(StreamsFull)), "in total");
        drop(first);
        let _again = open(&hub, alice, &limits).unwrap();
    }

    #[test]
    fn a_ticket_issued_with_room_is_still_refused_when_the_room_went_meanwhile() {
        let limits = limits(1, 10, 10);
        let hub = Hub::default();
        let alice = Subscriber { account: AccountId::for_tests(1), user_id: 1 };
        let early = hub.issue_ticket(alice, &limits).unwrap();
        let late = hub.issue_ticket(alice, &limits).unwrap();
        let _open = hub.open_stream(&early, &limits).unwrap();
        assert_eq!(hub.open_stream(&late, &limits).err(), Some(OpenError::Full(StreamsFull)));
        assert_eq!(hub.issue_ticket(alice, &limits), Err(StreamsFull));
    }

    #[tokio::test]
    async fn events_reach_only_the_accounts_own_streams() {
        let hub = Hub::default();
        let mut a = hub.subscribe(AccountId::for_tests(1));
        let mut b = hub.subscribe(AccountId::for_tests(2));
        assert_eq!(hub.publish(AccountId::for_tests(1), PushEvent { user_id: None, call: call("c1") }), 1);
        assert_eq!(a.recv().await.unwrap().call.call_id, "c1");
        assert!(b.try_recv().is_err());
    }

    #[test]
    fn user_targeted_events_reach_only_that_user() {
        let subscriber = Subscriber { account: AccountId::for_tests(1), user_id: 5 };
        assert!(subscriber.wants(&PushEvent { user_id: None, call: call("c") }));
        assert!(subscriber.wants(&PushEvent { user_id: Some(5), call: call("c") }));
        assert!(!subscriber.wants(&PushEvent { user_id: Some(6), call: call("c") }));
    }
}
