//! Follows calls from AMI events and says what to report: `Tracker` groups a call's channels by
//! `Linkedid`, names extensions from channel names, decides the direction, and turns the call's course
//! into `FromWebhook` events: ringing, answered, then ended (with its duration) or missed/busy/failed.
//!
//! No I/O here: the caller feeds events with the time, ticks it, and spools what comes out.
//!
//! - Direction: a call whose first channel is an extension's (`PJSIP/101-…`, `SIP/101-…`) and that dials a
//!   channel that is not an extension's is outbound; a call whose first channel is not an extension's
//!   (a trunk) and that rings an extension is inbound; an extension calling an extension is internal and
//!   not reported. `Local/…` channels (ring groups, queues) never decide anything.
//! - Answered: `DialEnd` with `ANSWER` towards the extension (inbound) or the outside number (outbound),
//!   else two channels of the call in one bridge (a `DialEnd` lost).
//! - Transfers: another extension answering or entering the call's bridge later takes the call over; the
//!   end names the extension that finished it (the server keeps one `answered` per call). An attended
//!   transfer's target talked first on the consult call (its own `Linkedid`, extension to extension):
//!   `AttendedTransfer` (Asterisk 13+: `TransfereeLinkedid`, `TransferTargetUniqueid`) moves its channel to
//!   the transferred call.
//! - Ended: when the call's last channel hung up. With `cdr_wait` the end waits that long for `Cdr`
//!   events, whose `BillableSeconds` (summed over the `ANSWERED` records, one per leg pair) give the
//!   duration; without them the duration runs from the first answer to the last hangup, by the events'
//!   `Timestamp` (else the clock).
//! - Lost events: a `DialBegin` creates a call whose `Newchannel` was missed; after a reconnection the
//!   live channel list ends the calls whose `Hangup` was lost ([`Tracker::reconcile`]).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use shared::{CallDirection, CallEventType, CallStatus, FromWebhook};

use crate::ami::Message;

/// A call forgotten after this long without an event (seconds).
const STALE_AFTER: f64 = 4.0 * 3600.0;
/// A click-to-call whose channel never appeared is forgotten after this long (seconds).
const ORIGINATE_FORGOTTEN_AFTER: f64 = 600.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    /// Not decided yet (its first channel was not seen).
    Unknown,
    /// The first channel is an extension's; outbound unless it dials another extension.
    FromExtension,
    Inbound,
    Outbound,
    /// Extension to extension: not reported.
    Internal,
}

/// A click-to-call the connector placed, waiting for its channel (`ChannelId` = the call id).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Originated {
    extension: String,
    to: String,
    action_id: String,
    /// When (clock) it was placed: one whose channel never showed up is forgotten after a while.
    #[serde(default)]
    placed_at: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Call {
    id: String,
    kind: Kind,
    from: String,
    to: String,
    extension: Option<String>,
    start: f64,
    answered_at: Option<f64>,
    ended_at: Option<f64>,
    /// `Uniqueid`s of the call's channels still up.
    live: HashSet<String>,
    /// Every `Uniqueid` the call had, for its `Cdr` records.
    uniques: HashSet<String>,
    /// Bridge id → channel names in it.
    bridges: HashMap<String, Vec<String>>,
    sent_ringing: bool,
    sent_answered: bool,
    /// The last non-answer `DialStatus` towards the outside or the ringing extension.
    dial_status: Option<String>,
    cdr_seen: bool,
    cdr_answered: bool,
    cdr_billable: u32,
    cdr_disposition: Option<String>,
    /// When (clock) the end is reported, once every channel hung up.
    report_at: Option<f64>,
    last_seen: f64,
}

/// What a snapshot holds: the calls in progress and what ties channels to them.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    calls: &'a HashMap<String, Call>,
    channels: &'a HashMap<String, String>,
    originated: &'a HashMap<String, Originated>,
}

#[derive(Deserialize)]
struct Snapshot {
    calls: HashMap<String, Call>,
    channels: HashMap<String, String>,
    originated: HashMap<String, Originated>,
}

/// The calls in progress.
pub struct Tracker {
    account_id: String,
    extension_max_len: usize,
    cdr_wait: f64,
    calls: HashMap<String, Call>,
    /// `Uniqueid` → `Linkedid`.
    channels: HashMap<String, String>,
    originated: HashMap<String, Originated>,
}

/// The extension of a channel: `PJSIP/101-00000001`, `SIP/101-0000abcd`, `PJSIP/101` → `101`; `None` for a
/// trunk (`PJSIP/trunk-…`), a `Local/` channel or a peer longer than `max_len` digits.
pub fn extension_of(channel: &str, max_len: usize) -> Option<String> {
    let (tech, rest) = channel.split_once('/')?;
    if tech.eq_ignore_ascii_case("Local") {
        return None;
    }
    let peer = rest.rsplit_once('-').map_or(rest, |(peer, _)| peer);
    let is_extension = !peer.is_empty() && peer.len() <= max_len && peer.bytes().all(|b| b.is_ascii_digit());
    is_extension.then(|| peer.to_owned())
}

/// The number in a `DialString`: `5511987654321@trunk` (PJSIP), `trunk/5511987654321` (SIP, IAX2).
fn dialled_number(dial_string: &str) -> &str {
    let before_at = dial_string.split('@').next().unwrap_or_default();
    before_at.rsplit('/').next().unwrap_or_default()
}

/// A caller id Asterisk reports for nobody (`<unknown>`, empty) becomes `None`.
fn known(value: Option<&str>) -> Option<String> {
    value.map(str::trim).filter(|v| !v.is_empty() && !v.starts_with('<') && *v != "s").map(str::to_owned)
}

impl Tracker {
    pub fn new(account_id: String, extension_max_len: usize, cdr_wait_secs: f64) -> Tracker {
        Tracker {
            account_id,
            extension_max_len,
            cdr_wait: cdr_wait_secs,
            calls: HashMap::new(),
            channels: HashMap::new(),
            originated: HashMap::new(),
        }
    }

    /// Announces a call the connector is about to originate: its channel will carry `call_id` as
    /// `Uniqueid` (and so as `Linkedid`).
    pub fn expect_originate(&mut self, call_id: &str, extension: &str, to: &str, action_id: &str, now: f64) {
        let originated = Originated {
            extension: extension.to_owned(),
            to: to.to_owned(),
            action_id: action_id.to_owned(),
            placed_at: now,
        };
        self.originated.insert(call_id.to_owned(), originated);
    }

    /// Forgets an originate the PBX refused.
    pub fn forget_originate(&mut self, call_id: &str) {
        self.originated.remove(call_id);
    }

    /// The calls in progress as bytes, so a restarted connector follows them on ([`Tracker::restore`]).
    pub fn snapshot(&self) -> Vec<u8> {
        let open = SnapshotRef { calls: &self.calls, channels: &self.channels, originated: &self.originated };
        serde_json::to_vec(&open).expect("the calls in progress serialise")
    }

    /// Takes back the calls of a snapshot; whether it could be read.
    pub fn restore(&mut self, bytes: &[u8]) -> bool {
        let Ok(snapshot) = serde_json::from_slice::<Snapshot>(bytes) else { return false };
        self.calls = snapshot.calls;
        self.channels = snapshot.channels;
        self.originated = snapshot.originated;
        true
    }

    /// The calls in progress.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    fn call(&mut self, linked: &str, at: f64) -> &mut Call {
        self.calls.entry(linked.to_owned()).or_insert_with(|| Call {
            id: linked.to_owned(),
            kind: Kind::Unknown,
            from: String::new(),
            to: String::new(),
            extension: None,
            start: at,
            answered_at: None,
            ended_at: None,
            live: HashSet::new(),
            uniques: HashSet::new(),
            bridges: HashMap::new(),
            sent_ringing: false,
            sent_answered: false,
            dial_status: None,
            cdr_seen: false,
            cdr_answered: false,
            cdr_billable: 0,
            cdr_disposition: None,
            report_at: None,
            last_seen: at,
        })
    }

    fn note_channel(&mut self, linked: &str, unique: &str, at: f64, now: f64) {
        self.channels.insert(unique.to_owned(), linked.to_owned());
        let call = self.call(linked, at);
        call.last_seen = now;
        if call.uniques.insert(unique.to_owned()) {
            call.live.insert(unique.to_owned());
        }
        call.start = call.start.min(at);
    }

    /// Decides a call's kind from its first channel.
    fn classify(&mut self, linked: &str, channel: &str, caller: Option<&str>, exten: Option<&str>) {
        let max_len = self.extension_max_len;
        let originated = self.originated.get(linked).cloned();
        let Some(call) = self.calls.get_mut(linked) else { return };
        if call.kind != Kind::Unknown || channel.starts_with("Local/") {
            return;
        }
        if let Some(originated) = originated {
            call.kind = Kind::Outbound;
            call.from.clone_from(&originated.extension);
            call.to = originated.to;
            call.extension = Some(originated.extension);
            return;
        }
        match extension_of(channel, max_len) {
            Some(ext) => {
                call.kind = Kind::FromExtension;
                call.to = known(exten).unwrap_or_default();
                call.from.clone_from(&ext);
                call.extension = Some(ext);
            }
            None => {
                call.kind = Kind::Inbound;
                call.from = known(caller).unwrap_or_else(|| "anonymous".to_owned());
                call.to = known(exten).unwrap_or_default();
            }
        }
    }

    /// Takes one AMI event received at `now` (unix seconds); returns the events to report.
    pub fn on_event(&mut self, event: &Message, now: f64) -> Vec<FromWebhook> {
        let at = event.get("Timestamp").and_then(|t| t.parse::<f64>().ok()).filter(|t| *t > 0.0).unwrap_or(now);
        let max_len = self.extension_max_len;
        let mut out = Vec::new();
        match event.get("Event").unwrap_or_default() {
            "Newchannel" => {
                let (Some(unique), Some(channel)) = (event.get("Uniqueid"), event.get("Channel")) else { return out };
                let linked = event.get("Linkedid").unwrap_or(unique).to_owned();
                self.note_channel(&linked, unique, at, now);
                if unique == linked {
                    self.classify(&linked, channel, event.get("CallerIDNum"), event.get("Exten"));
                    // A click-to-call rings its extension first.
                    if let Some(call) = self.calls.get_mut(&linked)
                        && self.originated.contains_key(&linked)
                        && !call.sent_ringing
                    {
                        call.sent_ringing = true;
                        out.push(self.report(&linked, CallStatus::Ringing));
                    }
                }
            }
            "DialBegin" => {
                let Some(dest_unique) = event.get("DestUniqueid") else { return out };
                let Some(linked) = event.get("Linkedid").or(event.get("DestLinkedid")).map(str::to_owned) else {
                    return out;
                };
                if let Some(unique) = event.get("Uniqueid") {
                    self.note_channel(&linked, unique, at, now);
                    let channel = event.get("Channel").unwrap_or_default();
                    if unique == linked || self.calls.get(&linked).is_some_and(|call| call.kind == Kind::Unknown) {
                        self.classify(&linked, channel, event.get("CallerIDNum"), event.get("Exten"));
                    }
                }
                self.note_channel(&linked, dest_unique, at, now);
                // A ring group's or queue's `Local/` leg decides nothing; its own dial to a phone does.
                if event.get("DestChannel").is_some_and(|dest| dest.starts_with("Local/")) {
                    return out;
                }
                let dest_ext = extension_of(event.get("DestChannel").unwrap_or_default(), max_len);
                let number = event.get("DialString").map(dialled_number).map(str::to_owned);
                let Some(call) = self.calls.get_mut(&linked) else { return out };
                match (call.kind, dest_ext) {
                    (Kind::Inbound, Some(ext)) if !call.sent_ringing => {
                        if call.to.is_empty() {
                            call.to.clone_from(&ext);
                        }
                        call.extension = Some(ext);
                        call.sent_ringing = true;
                        out.push(self.report(&linked, CallStatus::Ringing));
                    }
                    (Kind::FromExtension, Some(_)) => call.kind = Kind::Internal,
                    (Kind::FromExtension, None) => {
                        call.kind = Kind::Outbound;
                        if let Some(number) = known(number.as_deref()) {
                            call.to = number;
                        }
                        if !call.sent_ringing {
                            call.sent_ringing = true;
                            out.push(self.report(&linked, CallStatus::Ringing));
                        }
                    }
                    (Kind::Outbound, None) if !call.sent_ringing => {
                        call.sent_ringing = true;
                        out.push(self.report(&linked, CallStatus::Ringing));
                    }
                    _ => {}
                }
            }
            "DialEnd" => {
                let Some(linked) = event.get("Linkedid").or(event.get("DestLinkedid")).map(str::to_owned) else {
                    return out;
                };
                if event.get("DestChannel").is_some_and(|dest| dest.starts_with("Local/")) {
                    return out;
                }
                let status = event.get("DialStatus").unwrap_or_default().to_owned();
                let dest_ext = extension_of(event.get("DestChannel").unwrap_or_default(), max_len);
                let Some(call) = self.calls.get_mut(&linked) else { return out };
                call.last_seen = now;
                let towards_party = match call.kind {
                    Kind::Inbound => dest_ext.is_some(),
                    Kind::Outbound => dest_ext.is_none(),
                    _ => false,
                };
                if !towards_party {
                    return out;
                }
                if status != "ANSWER" {
                    call.dial_status = Some(status);
                    return out;
                }
                if call.kind == Kind::Inbound {
                    call.extension = dest_ext;
                }
                if call.answered_at.is_none() {
                    call.answered_at = Some(at);
                }
                if !call.sent_answered {
                    call.sent_answered = true;
                    out.push(self.report(&linked, CallStatus::Answered));
                }
            }
            "BridgeEnter" | "BridgeLeave" => {
                let (Some(bridge), Some(channel), Some(unique)) =
                    (event.get("BridgeUniqueid"), event.get("Channel"), event.get("Uniqueid"))
                else {
                    return out;
                };
                let Some(linked) = self.channels.get(unique).cloned().or(event.get("Linkedid").map(str::to_owned))
                else {
                    return out;
                };
                let entering = event.get("Event") == Some("BridgeEnter");
                let Some(call) = self.calls.get_mut(&linked) else { return out };
                call.last_seen = now;
                let members = call.bridges.entry(bridge.to_owned()).or_default();
                members.retain(|member| member != channel);
                if !entering {
                    return out;
                }
                members.push(channel.to_owned());
                if members.len() < 2 || !matches!(call.kind, Kind::Inbound | Kind::Outbound) {
                    return out;
                }
                if call.kind == Kind::Inbound {
                    // The extension that entered last holds the call (a transfer's new extension).
                    if let Some(ext) = members.iter().rev().find_map(|member| extension_of(member, max_len)) {
                        call.extension = Some(ext);
                    }
                }
                if call.answered_at.is_none() {
                    call.answered_at = Some(at);
                }
                if !call.sent_answered {
                    call.sent_answered = true;
                    out.push(self.report(&linked, CallStatus::Answered));
                }
            }
            "Hangup" => {
                let Some(unique) = event.get("Uniqueid") else { return out };
                let Some(linked) = self.channels.get(unique).cloned().or(event.get("Linkedid").map(str::to_owned))
                else {
                    return out;
                };
                let wait = self.cdr_wait;
                let Some(call) = self.calls.get_mut(&linked) else { return out };
                call.last_seen = now;
                call.live.remove(unique);
                if call.live.is_empty() && call.report_at.is_none() {
                    call.ended_at = Some(at);
                    call.report_at = Some(now + wait);
                    if wait <= 0.0 {
                        out.extend(self.finish(&linked));
                    }
                }
            }
            "Cdr" => {
                let Some(unique) = event.get("UniqueID") else { return out };
                let linked = event.get("LinkedID").map(str::to_owned).or_else(|| self.channels.get(unique).cloned());
                let Some(call) = linked.and_then(|linked| self.calls.get_mut(&linked)) else { return out };
                call.cdr_seen = true;
                let disposition = event.get("Disposition").unwrap_or_default().to_owned();
                if disposition == "ANSWERED" {
                    call.cdr_answered = true;
                    call.cdr_billable += event.get("BillableSeconds").and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
                } else if call.cdr_disposition.is_none() {
                    call.cdr_disposition = Some(disposition);
                }
            }
            "AttendedTransfer" if event.get("Result") == Some("Success") => {
                // The consult call's other end (the transfer target) now talks on the transferred call: its
                // channel moves to that call, which ends on its extension; the consult call keeps the rest.
                let (Some(call_id), Some(target), Some(channel)) = (
                    event.get("TransfereeLinkedid"),
                    event.get("TransferTargetUniqueid"),
                    event.get("TransferTargetChannel"),
                ) else {
                    return out;
                };
                let call_id = call_id.to_owned();
                if !self.calls.contains_key(&call_id) {
                    return out;
                }
                if let Some(consult) = self.channels.insert(target.to_owned(), call_id.clone())
                    && consult != call_id
                    && let Some(consult) = self.calls.get_mut(&consult)
                {
                    consult.uniques.remove(target);
                    consult.live.remove(target);
                }
                let call = self.calls.get_mut(&call_id).expect("checked above");
                call.last_seen = now;
                call.uniques.insert(target.to_owned());
                call.live.insert(target.to_owned());
                if matches!(call.kind, Kind::Inbound | Kind::Outbound)
                    && let Some(ext) = extension_of(channel, max_len)
                {
                    call.extension = Some(ext);
                }
            }
            "OriginateResponse" if event.get("Response") == Some("Failure") => {
                let action_id = event.get("ActionID").unwrap_or_default();
                let Some(call_id) =
                    self.originated.iter().find(|(_, o)| o.action_id == action_id).map(|(id, _)| id.clone())
                else {
                    return out;
                };
                if self.calls.contains_key(&call_id) {
                    return out;
                }
                // The extension never took the call: no channel of it will hang up.
                self.note_channel(&call_id, &call_id, at, now);
                self.classify(&call_id, "", None, None);
                let reason = event.get("Reason").unwrap_or_default();
                if let Some(call) = self.calls.get_mut(&call_id) {
                    call.live.clear();
                    call.ended_at = Some(at);
                    call.dial_status = Some(if reason == "5" { "BUSY" } else { "NOANSWER" }.to_owned());
                }
                out.extend(self.finish(&call_id));
            }
            _ => {}
        }
        out
    }

    /// The ends whose `Cdr` wait is over, and the calls gone stale.
    pub fn tick(&mut self, now: f64) -> Vec<FromWebhook> {
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, call)| call.report_at.is_some_and(|at| at <= now))
            .map(|(id, _)| id.clone())
            .collect();
        let mut out: Vec<FromWebhook> = due.iter().flat_map(|id| self.finish(id)).collect();
        let stale: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, call)| now - call.last_seen > STALE_AFTER)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            tracing::warn!(call.id = %id, "a call had no event for 4 hours; forgotten");
            out.extend(self.finish(&id));
        }
        let calls = &self.calls;
        self.originated
            .retain(|id, originated| calls.contains_key(id) || now - originated.placed_at < ORIGINATE_FORGOTTEN_AFTER);
        out
    }

    /// After a (re)connection: channels not in `live` hung up while we were away; their calls end now.
    pub fn reconcile(&mut self, live: &[(String, String)], now: f64) -> Vec<FromWebhook> {
        let alive: HashSet<&str> = live.iter().map(|(unique, _)| unique.as_str()).collect();
        let mut ended = Vec::new();
        for (id, call) in &mut self.calls {
            if call.report_at.is_some() {
                continue;
            }
            call.live.retain(|unique| alive.contains(unique.as_str()));
            if call.live.is_empty() {
                call.ended_at = Some(now);
                ended.push(id.clone());
            }
        }
        ended.iter().flat_map(|id| self.finish(id)).collect()
    }

    /// Reports the end of a call and forgets it.
    fn finish(&mut self, linked: &str) -> Vec<FromWebhook> {
        let Some(call) = self.calls.get(linked) else { return Vec::new() };
        let answered = call.answered_at.is_some() || call.cdr_answered;
        let status = if answered {
            CallStatus::Ended
        } else {
            let reason = call.dial_status.as_deref().or(call.cdr_disposition.as_deref()).unwrap_or_default();
            match (call.kind, reason) {
                (Kind::Outbound, "BUSY") => CallStatus::Busy,
                (Kind::Outbound, "CONGESTION" | "CHANUNAVAIL" | "FAILED") => CallStatus::Failed,
                _ => CallStatus::Missed,
            }
        };
        let reported = matches!(call.kind, Kind::Inbound | Kind::Outbound) && !call.from.is_empty();
        let out = if reported { vec![self.report(linked, status)] } else { Vec::new() };
        if let Some(call) = self.calls.remove(linked) {
            for unique in &call.uniques {
                self.channels.remove(unique);
            }
        }
        self.originated.remove(linked);
        out
    }

    /// The event to report for a call now.
    fn report(&self, linked: &str, status: CallStatus) -> FromWebhook {
        let call = &self.calls[linked];
        let duration = (status == CallStatus::Ended).then(|| {
            if call.cdr_seen && call.cdr_answered {
                call.cdr_billable
            } else {
                let (answered, ended) =
                    (call.answered_at.unwrap_or(call.start), call.ended_at.unwrap_or(call.last_seen));
                (ended - answered).max(0.0).round() as u32
            }
        });
        let event_type = match status {
            CallStatus::Ringing => Some(CallEventType::Ringing),
            CallStatus::Answered => Some(CallEventType::Answered),
            CallStatus::Ended => Some(CallEventType::Ended),
            CallStatus::Missed => Some(CallEventType::Missed),
            CallStatus::Busy | CallStatus::Failed => None,
        };
        let direction = if call.kind == Kind::Inbound { CallDirection::Inbound } else { CallDirection::Outbound };
        let to = if call.to.is_empty() {
            call.extension.clone().unwrap_or_else(|| "unknown".to_owned())
        } else {
            call.to.clone()
        };
        FromWebhook {
            call_id: call.id.clone(),
            voip_account_id: self.account_id.clone(),
            from: call.from.clone(),
            to,
            status,
            start_time: (call.start.floor() as i64).max(1),
            extension: call.extension.clone(),
            event_type,
            direction: Some(direction),
            duration,
            recording_url: None,
        }
    }
}

/// The `webhook-id` of an event: one per call and kind, so a retry (or the same event made twice) is a
/// duplicate the server stores once. Standard Webhooks signs `{id}.{timestamp}.{body}`, so the id holds no
/// `.`: the call id's dots (Asterisk's `1700000000.1`) are written `_d`, and its underscores `_u`.
pub fn webhook_id(event: &FromWebhook) -> String {
    let kind = event.event_type.map_or(event.status.as_str(), |kind| match kind {
        CallEventType::Ringing => "ringing",
        CallEventType::Answered => "answered",
        CallEventType::Ended => "ended",
        CallEventType::Missed => "missed",
        CallEventType::RecordingReady => "recording",
    });
    format!("ami-{}-{kind}", event.call_id.replace('_', "_u").replace('.', "_d"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_give_extensions_and_trunks_none() {
        let cases = [
            ("PJSIP/101-00000001", Some("101")),
            ("SIP/2001-0000abcd", Some("2001")),
            ("PJSIP/101", Some("101")),
            ("IAX2/300-1234", Some("300")),
            ("PJSIP/trunk-00000002", None),
            ("SIP/provider-0000000a", None),
            ("Local/101@from-queue-00000001;2", None),
            ("PJSIP/5511987654321-00000003", None),
            ("garbage", None),
        ];
        for (channel, expected) in cases {
            assert_eq!(extension_of(channel, 6).as_deref(), expected, "{channel}");
        }
    }

    #[test]
    fn webhook_ids_hold_no_dot_and_stay_distinct() {
        let event = |call_id: &str| -> FromWebhook {
            serde_json::from_value(serde_json::json!({
                "voipAccountId": "asterisk", "callId": call_id, "status": "ringing", "direction": "inbound",
                "from": "5511987654321", "to": "101", "startTime": 1_700_000_000
            }))
            .unwrap()
        };
        let (dotted, underscored) = (webhook_id(&event("1700000000.1")), webhook_id(&event("1700000000_d1")));
        assert_eq!(dotted, "ami-1700000000_d1-ringing");
        assert!(!dotted.contains('.'));
        assert_ne!(dotted, underscored, "an underscore is escaped too");
    }

    use sandbox::ami::scenarios;

    const T0: f64 = 1_700_000_000.0;

    /// The stand-in's events as ours.
    fn ours(events: &[sandbox::ami::Message]) -> Vec<Message> {
        events.iter().map(|event| Message(event.0.clone())).collect()
    }

    /// Feeds events (clock = each event's own time), then ticks past any `Cdr` wait.
    fn follow(tracker: &mut Tracker, events: &[Message]) -> Vec<(CallStatus, Option<String>, Option<u32>)> {
        let mut out = Vec::new();
        for event in events {
            out.extend(tracker.on_event(event, T0 + 1000.0));
        }
        out.extend(tracker.tick(T0 + 2000.0));
        out.into_iter().map(|event| (event.status, event.extension, event.duration)).collect()
    }

    fn tracker() -> Tracker {
        Tracker::new("pbx".into(), 6, 1.0)
    }

    #[test]
    fn a_call_whose_newchannel_events_were_missed_is_still_followed_from_its_dial() {
        let call =
            scenarios::inbound_answered(&scenarios::Ids::new(1), T0, "5511987654321", "5511300", "101", 5.0, 42.0);
        let events: Vec<Message> =
            ours(&call.events).into_iter().filter(|event| event.get("Event") != Some("Newchannel")).collect();
        let seen = follow(&mut tracker(), &events);
        let ext = Some("101".to_owned());
        assert_eq!(
            seen,
            [
                (CallStatus::Ringing, ext.clone(), None),
                (CallStatus::Answered, ext.clone(), None),
                (CallStatus::Ended, ext, Some(42))
            ]
        );
    }

    #[test]
    fn a_cdr_before_the_last_hangup_and_a_lost_dial_end_still_give_the_answer_and_the_duration() {
        let call =
            scenarios::inbound_answered(&scenarios::Ids::new(1), T0, "5511987654321", "5511300", "101", 5.0, 42.0);
        let mut events: Vec<Message> =
            ours(&call.events).into_iter().filter(|event| event.get("Event") != Some("DialEnd")).collect();
        let cdr = events.pop().unwrap();
        events.insert(events.len() - 1, cdr);
        let seen = follow(&mut tracker(), &events);
        assert_eq!(
            seen.iter().map(|(status, ..)| *status).collect::<Vec<_>>(),
            [CallStatus::Ringing, CallStatus::Answered, CallStatus::Ended]
        );
        assert_eq!(seen[2].2, Some(42));
    }

    #[test]
    fn an_extension_calling_an_extension_is_not_reported() {
        let ids = scenarios::Ids::new(1);
        let call = scenarios::outgoing(&ids, T0, "101", "102", Some(2.0), 10.0);
        // The same call, its other leg on extension 102's channel instead of the trunk's.
        let internal: Vec<Message> = ours(&call.events)
            .into_iter()
            .map(|event| {
                Message(event.0.into_iter().map(|(k, v)| (k, v.replace("PJSIP/trunk-", "PJSIP/102-"))).collect())
            })
            .collect();
        let mut tracker = tracker();
        assert!(follow(&mut tracker, &internal).is_empty());
        assert!(tracker.is_empty(), "nothing is kept of it");
    }

    /// A `DialBegin` or `DialEnd` from `channel` (`Uniqueid` `unique`) to `dest` (`dest_unique`) in call `linked`.
    fn dial(
        name: &str,
        at: f64,
        (channel, unique): (&str, &str),
        (dest, dest_unique): (&str, &str),
        linked: &str,
    ) -> Message {
        Message::default()
            .with("Event", name)
            .with("Timestamp", format!("{at}"))
            .with("Channel", channel)
            .with("CallerIDNum", "5511987654321")
            .with("Exten", "600")
            .with("Uniqueid", unique)
            .with("Linkedid", linked)
            .with("DestChannel", dest)
            .with("DestUniqueid", dest_unique)
            .with("DestLinkedid", linked)
            .with("DialString", "600")
            .with("DialStatus", "ANSWER")
    }

    fn hangup(at: f64, unique: &str) -> Message {
        Message::default().with("Event", "Hangup").with("Timestamp", format!("{at}")).with("Uniqueid", unique)
    }

    #[test]
    fn a_ring_groups_local_legs_decide_nothing_the_phone_that_answers_does() {
        let (trunk, local1, local2, phone) = (
            ("PJSIP/trunk-01", "1.1"),
            ("Local/600@from-internal-01;1", "1.2"),
            ("Local/600@from-internal-01;2", "1.3"),
            ("PJSIP/101-02", "1.4"),
        );
        let events = [
            dial("DialBegin", T0, trunk, local1, "1.1"),
            dial("DialBegin", T0, local2, phone, "1.1"),
            dial("DialEnd", T0 + 4.0, local2, phone, "1.1"),
            dial("DialEnd", T0 + 4.0, trunk, local1, "1.1"),
            hangup(T0 + 20.0, "1.4"),
            hangup(T0 + 20.0, "1.3"),
            hangup(T0 + 20.0, "1.2"),
            hangup(T0 + 20.0, "1.1"),
        ];
        let ext = Some("101".to_owned());
        assert_eq!(
            follow(&mut tracker(), &events),
            [
                (CallStatus::Ringing, ext.clone(), None),
                (CallStatus::Answered, ext.clone(), None),
                (CallStatus::Ended, ext, Some(16))
            ]
        );
        // Extension 102 calling the ring group is an internal call.
        let (caller, local1, local2) =
            (("PJSIP/102-03", "2.1"), ("Local/600@from-internal-02;1", "2.2"), ("Local/600@from-internal-02;2", "2.3"));
        let events = [
            dial("DialBegin", T0, caller, local1, "2.1"),
            dial("DialBegin", T0, local2, ("PJSIP/101-04", "2.4"), "2.1"),
            dial("DialEnd", T0 + 4.0, local2, ("PJSIP/101-04", "2.4"), "2.1"),
            dial("DialEnd", T0 + 4.0, caller, local1, "2.1"),
            hangup(T0 + 9.0, "2.4"),
            hangup(T0 + 9.0, "2.3"),
            hangup(T0 + 9.0, "2.2"),
            hangup(T0 + 9.0, "2.1"),
        ];
        assert_eq!(follow(&mut tracker(), &events), []);
    }

    #[test]
    fn a_click_to_call_whose_channel_never_appears_is_forgotten() {
        let mut tracker = tracker();
        tracker.expect_originate("kvoip-1", "101", "+5511987654321", "a-1", T0);
        assert!(tracker.tick(T0 + 599.0).is_empty());
        assert_eq!(tracker.originated.len(), 1);
        tracker.tick(T0 + 601.0);
        assert!(tracker.originated.is_empty());
    }

    #[test]
    fn a_snapshot_taken_mid_call_lets_another_tracker_end_it() {
        let call =
            scenarios::inbound_answered(&scenarios::Ids::new(1), T0, "5511987654321", "5511300", "101", 5.0, 42.0);
        let events = ours(&call.events);
        let mut first = tracker();
        assert_eq!(follow(&mut first, &events[..6]).len(), 2);
        let mut second = tracker();
        assert!(second.restore(&first.snapshot()));
        assert_eq!(second.len(), 1);
        assert_eq!(follow(&mut second, &events[6..]), [(CallStatus::Ended, Some("101".to_owned()), Some(42))]);
        assert!(!second.restore(b"not a snapshot"));
    }

    #[test]
    fn dial_strings_give_the_number() {
        assert_eq!(dialled_number("5511987654321@trunk"), "5511987654321");
        assert_eq!(dialled_number("trunk/5511987654321"), "5511987654321");
        assert_eq!(dialled_number("101"), "101");
    }
}
