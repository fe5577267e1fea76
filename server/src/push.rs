//! The push channel to widgets: single-use stream tickets, and a per-account fan-out of call events
//! that the server-sent-events endpoint subscribes to. Open streams are counted (per user, per account,
//! in total) so that no client holds more than its share of the process.
//!
//! Several replicas: tickets are kept in the store (a ticket bought from one replica opens a stream on
//! another), and on PostgreSQL an event is sent through the database's `NOTIFY`, which every replica
//! (the sender too) hears and hands to its own open streams ([`Hub::relay`]); so a popup reaches its
//! user whichever replica received the webhook. A SQLite server is one process and fans out in memory.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shared::api::IncomingCall;
use shared::{CallHandling, CallStatus, PopupAudience};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::clock::unix_secs;
use crate::config::Limits;
use crate::crypto::{random_token, sha256_hex};
use crate::kommo::{KommoClient, KommoUser};
use crate::store::{AccountId, Engine, Store};

/// How long a ticket may wait before the widget opens its stream with it.
pub const TICKET_TTL: Duration = Duration::from_secs(60);
/// Events buffered per account for slow subscribers before the oldest are dropped for them.
const CHANNEL_CAPACITY: usize = 64;
/// What a refused stream is told to wait (`Retry-After`): slots free only as other streams end, which
/// takes a while, and the widget's own backoff adds jitter on top.
pub const STREAMS_FULL_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Unexpired tickets one user may hold at once (a widget needs one per stream it opens).
pub const MAX_TICKETS_PER_USER: i64 = 16;

/// How far back a reconnecting stream is sent what it missed.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(10 * 60);
/// How long a call without an end counts as in progress (a provider that never sent the end).
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(4 * 60 * 60);

/// The popup's view of a provider event.
pub fn popup_of(event: &shared::FromWebhook) -> IncomingCall {
    IncomingCall {
        event_id: None,
        caller: None,
        line_shown: None,
        call_id: event.call_id.clone(),
        from: event.from.clone(),
        to: event.to.clone(),
        status: event.status,
        extension: event.extension.clone(),
        direction: event.direction,
    }
}

/// The popup's view of a stored inbox row (`None` for a body that does not parse, which the inbox
/// never holds: it is schema-checked before it is stored).
fn popup_of_row(id: i64, body: &str) -> Option<IncomingCall> {
    let event: shared::FromWebhook = serde_json::from_str(body).ok()?;
    Some(IncomingCall { event_id: Some(id), ..popup_of(&event) })
}

/// Who of an account receives a call's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    Everyone,
    /// The user mapped to the call's extension.
    User(i64),
    /// The users the account chose for calls on unmapped extensions.
    Users(Arc<[i64]>),
    Nobody,
}

impl Audience {
    pub fn includes(&self, user_id: i64) -> bool {
        match self {
            Audience::Everyone => true,
            Audience::User(user) => *user == user_id,
            Audience::Users(users) => users.contains(&user_id),
            Audience::Nobody => false,
        }
    }

    /// The Kommo users to name in Kommo's own call notification: `None` for everyone (Kommo's default
    /// when `users` is left out), `Some(empty)` for nobody.
    pub fn kommo_users(&self) -> Option<Vec<i64>> {
        match self {
            Audience::Everyone => None,
            Audience::User(user) => Some(vec![*user]),
            Audience::Users(users) => Some(users.to_vec()),
            Audience::Nobody => Some(Vec::new()),
        }
    }
}

/// How long a listing of an account's users and their groups is used before it is asked for again
/// (in the background: until the new one comes, the old one still answers).
pub const GROUPS_FRESH: Duration = Duration::from_secs(5 * 60);
/// How long a listing is kept at most, however long Kommo fails to give a new one.
pub const GROUPS_KEPT: Duration = Duration::from_secs(60 * 60);
/// Accounts whose listing this process keeps at most (the least used go first).
pub const GROUPS_ACCOUNTS: u64 = 4_000;
/// After a listing failed, how long before the account's users are asked for again.
const GROUPS_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Who is in which Kommo user group, per account, for the audience of unmapped calls sent to groups
/// ([`PopupAudience::Groups`]). Filled from the users listing (`KommoClient::active_users`, `with=group`)
/// in the background, never on the push path: an account with no listing yet gets its group events
/// sent to nobody while the first one is asked for (one listing in flight per account). A listing
/// older than [`GROUPS_FRESH`] is still used while a new one is asked for; one older than
/// [`GROUPS_KEPT`] is dropped. A settings save forgets the account's listing, and a save that chooses
/// groups puts in the listing it validated with.
#[derive(Clone, Default)]
pub struct UserGroups {
    inner: Arc<GroupsInner>,
}

struct GroupsInner {
    /// `None` in tests of the hub alone: nothing is ever asked for.
    kommo: Option<KommoClient>,
    listings: moka::sync::Cache<AccountId, Arc<GroupListing>>,
    /// Accounts whose listing is being asked for.
    refreshing: Mutex<HashSet<AccountId>>,
    /// Accounts whose last listing failed, for [`GROUPS_RETRY_AFTER`].
    failed: moka::sync::Cache<AccountId, ()>,
}

impl Default for GroupsInner {
    fn default() -> Self {
        GroupsInner {
            kommo: None,
            listings: moka::sync::Cache::builder().max_capacity(GROUPS_ACCOUNTS).time_to_live(GROUPS_KEPT).build(),
            refreshing: Mutex::default(),
            failed: moka::sync::Cache::builder().max_capacity(GROUPS_ACCOUNTS).time_to_live(GROUPS_RETRY_AFTER).build(),
        }
    }
}

/// One account's active users by group, as listed at `fetched`.
struct GroupListing {
    fetched: Instant,
    members: HashMap<i64, Vec<i64>>,
}

impl UserGroups {
    pub fn new(kommo: KommoClient) -> UserGroups {
        UserGroups { inner: Arc::new(GroupsInner { kommo: Some(kommo), ..GroupsInner::default() }) }
    }

    /// The active users of `groups` of `account`, from the listing in memory, without waiting: `None`
    /// when there is none yet (a listing is then asked for). A stale listing answers and is renewed.
    pub fn members(&self, account: AccountId, groups: &[i64]) -> Option<Arc<[i64]>> {
        let Some(listing) = self.inner.listings.get(&account) else {
            self.refresh(account);
            return None;
        };
        if listing.fetched.elapsed() >= GROUPS_FRESH {
            self.refresh(account);
        }
        let mut users: Vec<i64> =
            groups.iter().filter_map(|group| listing.members.get(group)).flatten().copied().collect();
        users.sort_unstable();
        users.dedup();
        Some(users.into())
    }

    /// Keeps `users` (with their groups) as the account's listing, as of now.
    pub fn remember(&self, account: AccountId, users: &[KommoUser]) {
        let mut members: HashMap<i64, Vec<i64>> = HashMap::new();
        for user in users {
            if let Some(group) = &user.group {
                members.entry(group.id).or_default().push(user.id);
            }
        }
        self.inner.listings.insert(account, Arc::new(GroupListing { fetched: Instant::now(), members }));
    }

    /// Drops the account's listing (its settings were saved).
    pub fn forget(&self, account: AccountId) {
        self.inner.listings.invalidate(&account);
        self.inner.failed.invalidate(&account);
    }

    /// Asks Kommo for the account's users in the background, unless that is already under way or
    /// failed within [`GROUPS_RETRY_AFTER`].
    pub fn refresh(&self, account: AccountId) {
        let Some(kommo) = self.inner.kommo.clone() else { return };
        if self.inner.failed.contains_key(&account) {
            return;
        }
        if !self.inner.refreshing.lock().expect("user groups lock poisoned").insert(account) {
            return;
        }
        /// Takes the account out of `refreshing` however the listing ends.
        struct Done(UserGroups, AccountId);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.inner.refreshing.lock().expect("user groups lock poisoned").remove(&self.1);
            }
        }
        let done = Done(self.clone(), account);
        tokio::spawn(async move {
            let groups = &done.0;
            match kommo.active_users(account).await {
                Ok(users) => groups.remember(account, &users),
                Err(error) => {
                    tracing::warn!(account.id = account.get(), %error, "push: cannot list the users' groups");
                    groups.inner.failed.insert(account, ());
                }
            }
        });
    }
}

/// The audience of a call of `account`: the user mapped to its extension, else whom the account's
/// settings choose for unmapped calls (everyone by default; chosen groups from `groups`, never waiting
/// for Kommo). A store that cannot be read sends the event to nobody rather than to the wrong users.
pub async fn audience(store: &Store, groups: &UserGroups, account: AccountId, extension: Option<&str>) -> Audience {
    if let Some(extension) = extension {
        match store.user_for_extension(account, extension).await {
            Ok(Some(user)) => return Audience::User(user),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(account.id = account.get(), %error, "push: cannot read the extension map");
                return Audience::Nobody;
            }
        }
    }
    let handling = match store.settings(account).await {
        Ok(Some(row)) => serde_json::from_str::<CallHandling>(&row.config).unwrap_or_default(),
        Ok(None) => CallHandling::default(),
        Err(error) => {
            tracing::warn!(account.id = account.get(), %error, "push: cannot read the settings");
            return Audience::Nobody;
        }
    };
    match handling.unmapped_calls.to {
        PopupAudience::Everyone => Audience::Everyone,
        PopupAudience::Users => Audience::Users(handling.unmapped_calls.user_ids.into()),
        PopupAudience::Groups => match groups.members(account, &handling.unmapped_calls.group_ids) {
            Some(users) => Audience::Users(users),
            None => {
                tracing::debug!(
                    account.id = account.get(),
                    "push: the users' groups are not known yet; nobody gets this event"
                );
                Audience::Nobody
            }
        },
        PopupAudience::Nobody => Audience::Nobody,
    }
}

/// [`audience`] remembered per extension, for a batch of events.
#[derive(Default)]
struct Recipients(HashMap<Option<String>, Audience>);

impl Recipients {
    async fn of(&mut self, store: &Store, groups: &UserGroups, account: AccountId, call: &IncomingCall) -> Audience {
        if let Some(known) = self.0.get(&call.extension) {
            return known.clone();
        }
        let found = audience(store, groups, account, call.extension.as_deref()).await;
        self.0.insert(call.extension.clone(), found.clone());
        found
    }
}

/// One event for an account's widgets, for its audience.
#[derive(Debug, Clone)]
pub struct PushEvent {
    pub audience: Audience,
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
        event.audience.includes(self.user_id)
    }
}

#[derive(Default)]
struct HubState {
    channels: HashMap<AccountId, broadcast::Sender<Arc<PushEvent>>>,
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
#[derive(Debug)]
pub enum OpenError {
    /// Unknown, already used or expired.
    BadTicket,
    Full(StreamsFull),
    /// The store could not be asked.
    Storage(sqlx::Error),
}

/// Why no ticket was issued.
#[derive(Debug)]
pub enum TicketError {
    Full(StreamsFull),
    Storage(sqlx::Error),
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

/// The process's fan-out of call events to its open streams, and their counts.
#[derive(Clone, Default)]
pub struct Hub {
    state: Arc<Mutex<HubState>>,
    /// Who is in which user group, for calls sent to groups.
    groups: UserGroups,
    /// Where a call event handed to this process's streams goes to have its caller described (see
    /// [`Hub::describe_with`]).
    describer: Arc<std::sync::OnceLock<tokio::sync::mpsc::Sender<(AccountId, IncomingCall)>>>,
}

/// Call events waiting for their caller's description, at most (past it one is not described: its card
/// keeps the number).
pub const DESCRIBE_QUEUE: usize = 256;

impl Hub {
    /// A hub whose group audiences come from `groups` (the default hub knows no groups).
    pub fn new(groups: UserGroups) -> Hub {
        Hub { state: Arc::default(), groups, describer: Arc::default() }
    }

    /// Every call event this process hands to open streams of its account (a new event of a call going
    /// on, without a full description) is also sent to `describer`, which looks up who is calling. So the
    /// lookup runs where a widget watches: on SQLite here, on PostgreSQL on each replica that holds a
    /// stream of the account, whichever took the webhook; an account nobody watches costs nothing.
    pub fn describe_with(&self, describer: tokio::sync::mpsc::Sender<(AccountId, IncomingCall)>) {
        let _ = self.describer.set(describer);
    }

    /// When the account's unmapped calls go to groups, asks for its users' groups in the background
    /// unless they are known: a widget opening its stream (a page load, a server restart) makes them
    /// known before the next call, rather than that call reaching nobody.
    pub async fn warm_groups(&self, store: &Store, account: AccountId) {
        let chooses_groups = match store.settings(account).await {
            Ok(Some(row)) => serde_json::from_str::<CallHandling>(&row.config)
                .is_ok_and(|handling| handling.unmapped_calls.to == PopupAudience::Groups),
            _ => false,
        };
        if chooses_groups {
            self.groups.members(account, &[]);
        }
    }

    /// Issues a single-use ticket for `subscriber`, kept (hashed) in the store for [`TICKET_TTL`]. A
    /// subscriber already at a cap here, or holding [`MAX_TICKETS_PER_USER`] unspent tickets, gets
    /// none: the widget sees the refusal (an `EventSource` could not) and waits.
    pub async fn issue_ticket(
        &self,
        store: &Store,
        subscriber: Subscriber,
        limits: &Limits,
    ) -> Result<String, TicketError> {
        if !self.state.lock().expect("push hub lock poisoned").has_room(subscriber, limits) {
            return Err(TicketError::Full(StreamsFull));
        }
        let ticket = random_token(32);
        let expires_at = unix_secs() + i64::try_from(TICKET_TTL.as_secs()).unwrap_or(i64::MAX);
        let stored = store
            .insert_push_ticket(
                &sha256_hex(&ticket),
                subscriber.account,
                subscriber.user_id,
                expires_at,
                MAX_TICKETS_PER_USER,
            )
            .await
            .map_err(TicketError::Storage)?;
        if !stored {
            return Err(TicketError::Full(StreamsFull));
        }
        Ok(ticket)
    }

    /// Spends a ticket (it works once, within [`TICKET_TTL`], on any replica) and takes a stream slot
    /// for its subscriber, if the caps leave one; the ticket is spent either way.
    pub async fn open_stream(
        &self,
        store: &Store,
        ticket: &str,
        limits: &Limits,
    ) -> Result<(Subscriber, StreamSlot), OpenError> {
        let (account, user_id) = store
            .take_push_ticket(&sha256_hex(ticket), unix_secs())
            .await
            .map_err(OpenError::Storage)?
            .ok_or(OpenError::BadTicket)?;
        let subscriber = Subscriber { account, user_id };
        let mut state = self.state.lock().expect("push hub lock poisoned");
        if !state.has_room(subscriber, limits) {
            return Err(OpenError::Full(StreamsFull));
        }
        *state.open_per_user.entry(subscriber).or_default() += 1;
        *state.open_per_account.entry(subscriber.account).or_default() += 1;
        state.open_total += 1;
        Ok((subscriber, StreamSlot { state: Arc::clone(&self.state), subscriber }))
    }

    /// Sends a call event, stored new, to the account's open streams on every replica. On SQLite (one
    /// process) it is handed on here; on PostgreSQL the store already sent it with `NOTIFY` in the
    /// transaction that stored it (see [`crate::store::inbox::NewEvent::popup`]), and every replica's
    /// [`Hub::relay`], this one's too, hands it on.
    pub async fn send(&self, store: &Store, account: AccountId, call: IncomingCall) {
        if store.engine() == Engine::Sqlite {
            self.deliver(store, account, call).await;
        }
    }

    /// Sends an event that only adds who is calling (no inbox row of its own) to the account's open
    /// streams on every replica: in memory on SQLite, with its own `NOTIFY` on PostgreSQL.
    pub async fn send_update(&self, store: &Store, account: AccountId, call: IncomingCall) {
        match store.engine() {
            Engine::Sqlite => self.deliver(store, account, call).await,
            Engine::Postgres => {
                let payload = serde_json::to_string(&call).expect("a call always serialises");
                if let Err(error) = store.notify_push(&[(account, &payload)]).await {
                    tracing::warn!(account.id = account.get(), %error, "push: cannot send who is calling");
                }
            }
        }
    }

    /// Hands a call event to this process's open streams of the account, if any: the extension's user
    /// is looked up only then (a server with no open stream does no work for a popup).
    async fn deliver(&self, store: &Store, account: AccountId, call: IncomingCall) {
        if !self.has_subscribers(account) {
            return;
        }
        let going_on = matches!(call.status, CallStatus::Ringing | CallStatus::Answered);
        if call.event_id.is_some()
            && going_on
            && let Some(describer) = self.describer.get()
            && describer.try_send((account, call.clone())).is_err()
        {
            tracing::debug!(account.id = account.get(), "caller description skipped: too many waiting");
        }
        let audience = audience(store, &self.groups, account, call.extension.as_deref()).await;
        self.publish(account, PushEvent { audience, call });
    }

    /// On PostgreSQL: hands the call events every replica stored (and notified) to this process's open
    /// streams, until `shutdown`. Returns at once on SQLite.
    pub async fn relay(&self, store: Store, shutdown: CancellationToken) {
        let events = loop {
            match store.listen_push().await {
                Ok(Some(events)) => break events,
                Ok(None) => return,
                Err(error) => {
                    tracing::error!(%error, "push relay: cannot listen for events; trying again in 5 s");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
            }
        };
        let mut events = std::pin::pin!(events.take_until(shutdown.cancelled_owned()));
        while let Some((account, payload)) = events.next().await {
            match serde_json::from_str::<IncomingCall>(&payload) {
                Ok(call) => self.deliver(&store, account, call).await,
                Err(error) => tracing::warn!(%error, "push relay: an event that does not parse was skipped"),
            }
        }
    }

    /// The events of `subscriber`'s account stored after `after` (an inbox id) within the last
    /// [`REPLAY_WINDOW`], that `subscriber` receives: what a reconnecting stream missed, oldest first.
    pub async fn missed(&self, store: &Store, subscriber: Subscriber, after: i64) -> sqlx::Result<Vec<IncomingCall>> {
        let since = unix_secs() - i64::try_from(REPLAY_WINDOW.as_secs()).unwrap_or(i64::MAX);
        let rows = store.inbox_after(subscriber.account, after, since).await?;
        let mut recipients = Recipients::default();
        let mut missed = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(call) = popup_of_row(row.id, &row.body) else { continue };
            if recipients.of(store, &self.groups, subscriber.account, &call).await.includes(subscriber.user_id) {
                missed.push(call);
            }
        }
        Ok(missed)
    }

    /// The calls of `subscriber`'s account still in progress (received within [`ACTIVE_WINDOW`], no
    /// end stored), each as its latest event, that `subscriber` receives; oldest first.
    pub async fn active_calls(&self, store: &Store, subscriber: Subscriber) -> sqlx::Result<Vec<IncomingCall>> {
        let since = unix_secs() - i64::try_from(ACTIVE_WINDOW.as_secs()).unwrap_or(i64::MAX);
        let rows = store.unapplied_events(subscriber.account, since).await?;
        // Newest first: the first row of a call is its latest event.
        let mut latest: Vec<IncomingCall> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut ended = std::collections::HashSet::new();
        for row in rows {
            let Some(call) = popup_of_row(row.id, &row.body) else { continue };
            if crate::calls::is_terminal(call.status) {
                ended.insert(call.call_id.clone());
            }
            if seen.insert(call.call_id.clone()) {
                latest.push(call);
            }
        }
        latest.retain(|call| !ended.contains(&call.call_id));
        latest.reverse();
        let mut recipients = Recipients::default();
        let mut calls = Vec::with_capacity(latest.len());
        for call in latest {
            if recipients.of(store, &self.groups, subscriber.account, &call).await.includes(subscriber.user_id) {
                calls.push(call);
            }
        }
        Ok(calls)
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

    fn call(id: &str) -> IncomingCall {
        IncomingCall {
            event_id: None,
            caller: None,
            line_shown: None,
            call_id: id.into(),
            from: "+1".into(),
            to: "+2".into(),
            status: CallStatus::Ringing,
            extension: None,
            direction: None,
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

    /// A store with two accounts (tickets reference accounts).
    async fn store() -> (Store, AccountId, AccountId, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("push.sqlite").display())).await.unwrap();
        let first = store.install_account(1, "one", "one.kommo.com", None).await.unwrap();
        let second = store.install_account(2, "two", "two.kommo.com", None).await.unwrap();
        (store, first, second, dir)
    }

    async fn open(hub: &Hub, store: &Store, subscriber: Subscriber, limits: &Limits) -> Result<StreamSlot, String> {
        let ticket = hub.issue_ticket(store, subscriber, limits).await.map_err(|error| format!("{error:?}"))?;
        hub.open_stream(store, &ticket, limits).await.map(|(_, slot)| slot).map_err(|error| format!("{error:?}"))
    }

    #[tokio::test]
    async fn ticket_works_once_and_on_any_process_sharing_the_store() {
        let (store, account, _, _dir) = store().await;
        let limits = Limits::default();
        let subscriber = Subscriber { account, user_id: 5 };
        let ticket = Hub::default().issue_ticket(&store, subscriber, &limits).await.unwrap();
        // Another process's hub (another replica) opens it.
        let elsewhere = Hub::default();
        assert_eq!(elsewhere.open_stream(&store, &ticket, &limits).await.map(|(who, _)| who).ok(), Some(subscriber));
        assert!(matches!(elsewhere.open_stream(&store, &ticket, &limits).await, Err(OpenError::BadTicket)));
        assert!(matches!(elsewhere.open_stream(&store, "made-up", &limits).await, Err(OpenError::BadTicket)));
    }

    #[tokio::test]
    async fn a_user_holds_a_bounded_number_of_unspent_tickets() {
        let (store, account, _, _dir) = store().await;
        let (hub, limits) = (Hub::default(), Limits::default());
        let alice = Subscriber { account, user_id: 1 };
        for _ in 0..MAX_TICKETS_PER_USER {
            hub.issue_ticket(&store, alice, &limits).await.unwrap();
        }
        assert!(matches!(hub.issue_ticket(&store, alice, &limits).await, Err(TicketError::Full(StreamsFull))));
        let bob = Subscriber { account, user_id: 2 };
        assert!(hub.issue_ticket(&store, bob, &limits).await.is_ok(), "another user is not affected");
    }

    #[tokio::test]
    async fn each_cap_refuses_only_past_it_and_a_dropped_slot_frees_its_place() {
        let (store, one, two, _dir) = store().await;
        let limits = limits(2, 3, 4);
        let hub = Hub::default();
        let (alice, bob, carol) = (
            Subscriber { account: one, user_id: 1 },
            Subscriber { account: one, user_id: 2 },
            Subscriber { account: two, user_id: 3 },
        );
        let full = Err(format!("{:?}", TicketError::Full(StreamsFull)));
        let first = open(&hub, &store, alice, &limits).await.unwrap();
        let _second = open(&hub, &store, alice, &limits).await.unwrap();
        assert_eq!(open(&hub, &store, alice, &limits).await.map(drop), full, "per user");
        let _third = open(&hub, &store, bob, &limits).await.unwrap();
        assert_eq!(open(&hub, &store, bob, &limits).await.map(drop), full, "per account");
        let _fourth = open(&hub, &store, carol, &limits).await.unwrap();
        assert_eq!(open(&hub, &store, carol, &limits).await.map(drop), full, "in total");
        drop(first);
        let _again = open(&hub, &store, alice, &limits).await.unwrap();
    }

    #[tokio::test]
    async fn a_ticket_issued_with_room_is_still_refused_when_the_room_went_meanwhile() {
        let (store, account, _, _dir) = store().await;
        let limits = limits(1, 10, 10);
        let hub = Hub::default();
        let alice = Subscriber { account, user_id: 1 };
        let early = hub.issue_ticket(&store, alice, &limits).await.unwrap();
        let late = hub.issue_ticket(&store, alice, &limits).await.unwrap();
        let _open = hub.open_stream(&store, &early, &limits).await.unwrap();
        assert!(matches!(hub.open_stream(&store, &late, &limits).await, Err(OpenError::Full(StreamsFull))));
        assert!(matches!(hub.issue_ticket(&store, alice, &limits).await, Err(TicketError::Full(StreamsFull))));
    }

    #[tokio::test]
    async fn events_reach_only_the_accounts_own_streams() {
        let (store, one, two, _dir) = store().await;
        let hub = Hub::default();
        let mut a = hub.subscribe(one);
        let mut b = hub.subscribe(two);
        hub.send(&store, one, call("c1")).await;
        assert_eq!(a.recv().await.unwrap().call.call_id, "c1");
        assert!(b.try_recv().is_err());
    }

    #[tokio::test]
    async fn group_members_come_from_memory_only_and_a_save_forgets_them() {
        let groups = UserGroups::default();
        let account = AccountId::for_tests(1);
        assert_eq!(groups.members(account, &[1]), None, "nothing known yet: nobody, and nothing waits");
        let user = |id: i64, group: Option<i64>| KommoUser {
            id,
            name: format!("user {id}"),
            email: None,
            group: group.map(|id| crate::kommo::KommoGroup { id, name: format!("group {id}") }),
        };
        groups.remember(account, &[user(5, Some(1)), user(6, Some(2)), user(7, None), user(8, Some(1))]);
        assert_eq!(groups.members(account, &[1]).as_deref(), Some(&[5, 8][..]));
        assert_eq!(groups.members(account, &[1, 2]).as_deref(), Some(&[5, 6, 8][..]));
        assert_eq!(groups.members(account, &[3]).as_deref(), Some(&[][..]), "an empty group is nobody");
        assert_eq!(groups.members(AccountId::for_tests(2), &[1]), None, "per account");
        groups.forget(account);
        assert_eq!(groups.members(account, &[1]), None);
    }

    #[test]
    fn user_targeted_events_reach_only_that_user() {
        let subscriber = Subscriber { account: AccountId::for_tests(1), user_id: 5 };
        let event = |audience: Audience| PushEvent { audience, call: call("c") };
        assert!(subscriber.wants(&event(Audience::Everyone)));
        assert!(subscriber.wants(&event(Audience::User(5))));
        assert!(!subscriber.wants(&event(Audience::User(6))));
        assert!(subscriber.wants(&event(Audience::Users(Arc::from([4, 5])))));
        assert!(!subscriber.wants(&event(Audience::Users(Arc::from([4, 6])))));
        assert!(!subscriber.wants(&event(Audience::Nobody)));
    }
}
