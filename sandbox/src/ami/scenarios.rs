//! Event sequences of real calls as Asterisk (13 and later) reports them over AMI, with the documented
//! fields of `Newchannel`, `DialBegin`, `DialEnd`, `BridgeEnter`, `BridgeLeave`, `Hangup`, `OriginateResponse`
//! and `Cdr` (from `cdr_manager`). Every event carries `Timestamp` (as with `timestampevents = yes`).
//!
//! Channels are named the way PJSIP names them: `PJSIP/<endpoint>-<8 hex digits>`; the trunk's endpoint
//! is `trunk`, an extension's is its number.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Message, Originate};

/// Hands out `Uniqueid`s (`<epoch>.<n>`) and channel suffixes; clones share the counter.
#[derive(Debug, Clone)]
pub struct Ids {
    epoch: i64,
    next: Arc<AtomicU64>,
}

impl Ids {
    pub fn new(epoch: i64) -> Ids {
        Ids { epoch, next: Arc::new(AtomicU64::new(1)) }
    }

    /// Another handle on the same counter.
    pub fn fork(&self) -> Ids {
        self.clone()
    }

    fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

/// One channel of a call.
#[derive(Debug, Clone)]
struct Leg {
    channel: String,
    unique: String,
    linked: String,
    caller: String,
    connected: String,
    context: String,
    exten: String,
}

impl Leg {
    fn new(ids: &Ids, endpoint: &str, linked: Option<&str>, caller: &str, context: &str, exten: &str) -> Leg {
        let n = ids.next();
        let unique = format!("{}.{n}", ids.epoch);
        Leg {
            channel: format!("PJSIP/{endpoint}-{n:08x}"),
            linked: linked.unwrap_or(&unique).to_owned(),
            unique,
            caller: caller.to_owned(),
            connected: String::new(),
            context: context.to_owned(),
            exten: exten.to_owned(),
        }
    }

    /// The standard channel fields, optionally with a prefix (`Dest` in dial events).
    fn fields(&self, mut event: Message, prefix: &str, state: (&str, &str)) -> Message {
        let mut push = |key: &str, value: &str| {
            event.0.push((format!("{prefix}{key}"), value.to_owned()));
        };
        push("Channel", &self.channel);
        push("ChannelState", state.0);
        push("ChannelStateDesc", state.1);
        push("CallerIDNum", &self.caller);
        push("CallerIDName", "<unknown>");
        push("ConnectedLineNum", if self.connected.is_empty() { "<unknown>" } else { &self.connected });
        push("ConnectedLineName", "<unknown>");
        push("Language", "en");
        push("AccountCode", "");
        push("Context", &self.context);
        push("Exten", &self.exten);
        push("Priority", "1");
        push("Uniqueid", &self.unique);
        push("Linkedid", &self.linked);
        event
    }
}

const RING: (&str, &str) = ("4", "Ring");
const RINGING: (&str, &str) = ("5", "Ringing");
const DOWN: (&str, &str) = ("0", "Down");
const UP: (&str, &str) = ("6", "Up");

fn event(name: &str, at: f64) -> Message {
    Message::new().with("Event", name).with("Privilege", "call,all").with("Timestamp", format!("{at:.6}"))
}

fn newchannel(at: f64, leg: &Leg, state: (&str, &str)) -> Message {
    leg.fields(event("Newchannel", at), "", state)
}

fn dial_begin(at: f64, caller: &Leg, dest: &Leg, dial_string: &str) -> Message {
    let message = caller.fields(event("DialBegin", at), "", RING);
    dest.fields(message, "Dest", DOWN).with("DialString", dial_string)
}

fn dial_end(at: f64, caller: &Leg, dest: &Leg, status: &str) -> Message {
    let state = if status == "ANSWER" { UP } else { RINGING };
    let message = caller.fields(event("DialEnd", at), "", RING);
    dest.fields(message, "Dest", state).with("DialStatus", status)
}

fn bridge(name: &str, at: f64, bridge: &str, leg: &Leg, channels: usize) -> Message {
    let message = event(name, at)
        .with("BridgeUniqueid", bridge)
        .with("BridgeType", "basic")
        .with("BridgeTechnology", "simple_bridge")
        .with("BridgeCreator", "<unknown>")
        .with("BridgeName", "<unknown>")
        .with("BridgeNumChannels", channels.to_string())
        .with("BridgeVideoSourceMode", "none");
    leg.fields(message, "", UP)
}

fn hangup(at: f64, leg: &Leg, cause: (&str, &str)) -> Message {
    leg.fields(event("Hangup", at), "", UP).with("Cause", cause.0).with("Cause-txt", cause.1)
}

const NORMAL_CLEARING: (&str, &str) = ("16", "Normal Clearing");
const NO_ANSWER: (&str, &str) = ("19", "No answer");
const ORIGINATOR_CANCEL: (&str, &str) = ("127", "Interworking, unspecified");

/// A `Cdr` record of one leg pair (`cdr_manager`), times in the PBX's local time (UTC here).
#[allow(clippy::too_many_arguments)]
fn cdr(
    at: f64,
    source: &Leg,
    dest: &Leg,
    destination: &str,
    start: f64,
    answer: Option<f64>,
    end: f64,
    disposition: &str,
) -> Message {
    let billable = answer.map_or(0, |answer| (end - answer).round() as i64);
    Message::new()
        .with("Event", "Cdr")
        .with("Privilege", "cdr,all")
        .with("Timestamp", format!("{at:.6}"))
        .with("AccountCode", "")
        .with("Source", source.caller.clone())
        .with("Destination", destination)
        .with("DestinationContext", source.context.clone())
        .with("CallerID", format!("\"\" <{}>", source.caller))
        .with("Channel", source.channel.clone())
        .with("DestinationChannel", dest.channel.clone())
        .with("LastApplication", "Dial")
        .with("LastData", format!("{},30", dest.channel.split('-').next().unwrap_or_default()))
        .with("StartTime", local_time(start))
        .with("AnswerTime", answer.map(local_time).unwrap_or_default())
        .with("EndTime", local_time(end))
        .with("Duration", ((end - start).round() as i64).to_string())
        .with("BillableSeconds", billable.to_string())
        .with("Disposition", disposition)
        .with("AMAFlags", "DOCUMENTATION")
        .with("UniqueID", source.unique.clone())
        .with("UserField", "")
}

/// `YYYY-MM-DD HH:MM:SS` of a unix time (UTC), as Asterisk's CDR prints times.
fn local_time(unix: f64) -> String {
    crate::clock::date_time(unix.floor() as i64)
}

/// An outside call's opening: the trunk's channel rings `phone` (dialled as `ext`) from `t0`; `phone` answers
/// at `answer` and both enter `bridge_id`.
fn answered_by(t0: f64, answer: f64, trunk: &Leg, phone: &Leg, ext: &str, bridge_id: &str) -> Vec<Message> {
    vec![
        newchannel(t0, trunk, RING),
        newchannel(t0, phone, DOWN),
        dial_begin(t0, trunk, phone, ext),
        dial_end(answer, trunk, phone, "ANSWER"),
        bridge("BridgeEnter", answer, bridge_id, phone, 1),
        bridge("BridgeEnter", answer, bridge_id, trunk, 2),
    ]
}

/// The events of one call, and the id that ties its legs (`Linkedid`).
#[derive(Debug, Clone)]
pub struct Call {
    pub linkedid: String,
    pub events: Vec<Message>,
}

impl Call {
    /// The events without the `Cdr` records (a PBX without `cdr_manager`).
    pub fn without_cdr(mut self) -> Call {
        self.events.retain(|event| event.get("Event") != Some("Cdr"));
        self
    }
}

/// An outside number calls the DID, which rings `ext`; `ext` answers after `ring` s, they talk `talk` s,
/// the extension hangs up.
pub fn inbound_answered(ids: &Ids, t0: f64, from: &str, did: &str, ext: &str, ring: f64, talk: f64) -> Call {
    let mut trunk = Leg::new(ids, "trunk", None, from, "from-trunk", did);
    let mut phone = Leg::new(ids, ext, Some(&trunk.linked), ext, "from-internal", ext);
    phone.connected = from.to_owned();
    trunk.connected = ext.to_owned();
    let bridge_id = format!("bridge-{}", trunk.unique);
    let (answer, end) = (t0 + ring, t0 + ring + talk);
    let mut events = answered_by(t0, answer, &trunk, &phone, ext, &bridge_id);
    events.extend([
        bridge("BridgeLeave", end, &bridge_id, &phone, 1),
        hangup(end, &phone, NORMAL_CLEARING),
        bridge("BridgeLeave", end, &bridge_id, &trunk, 0),
        hangup(end, &trunk, NORMAL_CLEARING),
        cdr(end, &trunk, &phone, did, t0, Some(answer), end, "ANSWERED"),
    ]);
    Call { linkedid: trunk.linked.clone(), events }
}

/// An outside number calls the DID, `ext` rings `ring` s and nobody answers; the caller gives up.
pub fn inbound_missed(ids: &Ids, t0: f64, from: &str, did: &str, ext: &str, ring: f64) -> Call {
    let trunk = Leg::new(ids, "trunk", None, from, "from-trunk", did);
    let phone = Leg::new(ids, ext, Some(&trunk.linked), ext, "from-internal", ext);
    let end = t0 + ring;
    let events = vec![
        newchannel(t0, &trunk, RING),
        newchannel(t0, &phone, DOWN),
        dial_begin(t0, &trunk, &phone, ext),
        dial_end(end, &trunk, &phone, "CANCEL"),
        hangup(end, &phone, ORIGINATOR_CANCEL),
        hangup(end, &trunk, NORMAL_CLEARING),
        cdr(end, &trunk, &phone, did, t0, None, end, "NO ANSWER"),
    ];
    Call { linkedid: trunk.linked.clone(), events }
}

/// An outside call answered by `first`, who after `talk_first` s blind-transfers it to `second`; `second`
/// answers after `ring_second` s and talks `talk_second` s.
#[allow(clippy::too_many_arguments)]
pub fn transferred(
    ids: &Ids,
    t0: f64,
    from: &str,
    did: &str,
    first: &str,
    second: &str,
    talk_first: f64,
    ring_second: f64,
    talk_second: f64,
) -> Call {
    let trunk = Leg::new(ids, "trunk", None, from, "from-trunk", did);
    let one = Leg::new(ids, first, Some(&trunk.linked), first, "from-internal", first);
    let two = Leg::new(ids, second, Some(&trunk.linked), second, "from-internal", second);
    let bridge_id = format!("bridge-{}", trunk.unique);
    let answer = t0 + 3.0;
    let transfer = answer + talk_first;
    let answer_two = transfer + ring_second;
    let end = answer_two + talk_second;
    let blind = event("BlindTransfer", transfer)
        .with("Result", "Success")
        .with("TransfererChannel", one.channel.clone())
        .with("TransfererUniqueid", one.unique.clone())
        .with("TransfererLinkedid", one.linked.clone())
        .with("BridgeUniqueid", bridge_id.clone())
        .with("IsExternal", "No")
        .with("Context", "from-internal")
        .with("Extension", second);
    let mut events = answered_by(t0, answer, &trunk, &one, first, &bridge_id);
    events.extend([
        blind,
        bridge("BridgeLeave", transfer, &bridge_id, &one, 1),
        hangup(transfer, &one, NORMAL_CLEARING),
        newchannel(transfer, &two, DOWN),
        dial_begin(transfer, &trunk, &two, second),
        dial_end(answer_two, &trunk, &two, "ANSWER"),
        bridge("BridgeEnter", answer_two, &bridge_id, &two, 2),
        bridge("BridgeLeave", end, &bridge_id, &two, 1),
        hangup(end, &two, NORMAL_CLEARING),
        bridge("BridgeLeave", end, &bridge_id, &trunk, 0),
        hangup(end, &trunk, NORMAL_CLEARING),
        cdr(end, &trunk, &one, did, t0, Some(answer), transfer, "ANSWERED"),
        cdr(end, &trunk, &two, did, transfer, Some(answer_two), end, "ANSWERED"),
    ]);
    Call { linkedid: trunk.linked.clone(), events }
}

/// An outside call answered by `first` after 3 s, who after `talk_first` s puts it on hold and calls `second`
/// from a new channel (the consult call, its own `Linkedid`: extension to extension); `second` answers after
/// 2 s, they talk 5 s, and `first` completes the attended transfer: `AttendedTransfer` (Asterisk 13+, with
/// the transferee's and the target's snapshots), the consult bridge merged into the call's, `first`'s two
/// channels hung up. Later events show `second`'s channel with the call's `Linkedid` (Asterisk propagates the
/// oldest one through a bridge). `second` talks `talk_second` s with the caller, then hangs up.
#[allow(clippy::too_many_arguments)]
pub fn attended_transfer(
    ids: &Ids,
    t0: f64,
    from: &str,
    did: &str,
    first: &str,
    second: &str,
    talk_first: f64,
    talk_second: f64,
) -> Call {
    let trunk = Leg::new(ids, "trunk", None, from, "from-trunk", did);
    let one = Leg::new(ids, first, Some(&trunk.linked), first, "from-internal", first);
    let consult = Leg::new(ids, first, None, first, "from-internal", second);
    let mut two = Leg::new(ids, second, Some(&consult.linked), second, "from-internal", second);
    let (call_bridge, consult_bridge) = (format!("bridge-{}", trunk.unique), format!("bridge-{}", consult.unique));
    let answer = t0 + 3.0;
    let consulted = answer + talk_first;
    let consult_answer = consulted + 2.0;
    let transfer = consult_answer + 5.0;
    let end = transfer + talk_second;
    let mut attended = event("AttendedTransfer", transfer).with("Result", "Success");
    attended = one.fields(attended, "OrigTransferer", UP).with("OrigBridgeUniqueid", call_bridge.clone());
    attended = consult.fields(attended, "SecondTransferer", UP).with("SecondBridgeUniqueid", consult_bridge.clone());
    attended = attended.with("DestType", "Bridge").with("DestBridgeUniqueid", call_bridge.clone());
    attended = trunk.fields(attended, "Transferee", UP);
    attended = two.fields(attended, "TransferTarget", UP).with("IsExternal", "No");
    let mut events = answered_by(t0, answer, &trunk, &one, first, &call_bridge);
    events.extend([
        // The consult call: extension to extension.
        newchannel(consulted, &consult, RING),
        newchannel(consulted, &two, DOWN),
        dial_begin(consulted, &consult, &two, second),
        dial_end(consult_answer, &consult, &two, "ANSWER"),
        bridge("BridgeEnter", consult_answer, &consult_bridge, &two, 1),
        bridge("BridgeEnter", consult_answer, &consult_bridge, &consult, 2),
        attended,
        bridge("BridgeLeave", transfer, &call_bridge, &one, 1),
        bridge("BridgeLeave", transfer, &consult_bridge, &consult, 1),
        hangup(transfer, &one, NORMAL_CLEARING),
        hangup(transfer, &consult, NORMAL_CLEARING),
        bridge("BridgeLeave", transfer, &consult_bridge, &two, 0),
    ]);
    two.linked.clone_from(&trunk.linked);
    events.extend([
        bridge("BridgeEnter", transfer, &call_bridge, &two, 2),
        bridge("BridgeLeave", end, &call_bridge, &two, 1),
        hangup(end, &two, NORMAL_CLEARING),
        bridge("BridgeLeave", end, &call_bridge, &trunk, 0),
        hangup(end, &trunk, NORMAL_CLEARING),
        cdr(end, &trunk, &one, did, t0, Some(answer), transfer, "ANSWERED"),
        cdr(end, &consult, &two, second, consulted, Some(consult_answer), transfer, "ANSWERED"),
        cdr(end, &trunk, &two, did, transfer, Some(transfer), end, "ANSWERED"),
    ]);
    Call { linkedid: trunk.linked.clone(), events }
}

/// `ext` dials an outside number through the trunk; it answers after `ring` s (`None`: never, and the
/// extension gives up after 20 s) and they talk `talk` s.
pub fn outgoing(ids: &Ids, t0: f64, ext: &str, number: &str, ring: Option<f64>, talk: f64) -> Call {
    let phone = Leg::new(ids, ext, None, ext, "from-internal", number);
    let mut trunk = Leg::new(ids, "trunk", Some(&phone.linked), number, "from-trunk", number);
    trunk.connected = ext.to_owned();
    Call { linkedid: phone.linked.clone(), events: dial_out(t0, &phone, &trunk, number, ring, talk, false) }
}

/// From the extension's channel dialling the trunk to the end of the call.
fn dial_out(
    t0: f64,
    phone: &Leg,
    trunk: &Leg,
    number: &str,
    ring: Option<f64>,
    talk: f64,
    phone_up: bool,
) -> Vec<Message> {
    let bridge_id = format!("bridge-{}", phone.unique);
    let mut events = Vec::new();
    if !phone_up {
        events.push(newchannel(t0, phone, RING));
    }
    events.push(newchannel(t0, trunk, DOWN));
    events.push(dial_begin(t0, phone, trunk, &format!("{number}@trunk")));
    match ring {
        Some(ring) => {
            let (answer, end) = (t0 + ring, t0 + ring + talk);
            events.extend([
                dial_end(answer, phone, trunk, "ANSWER"),
                bridge("BridgeEnter", answer, &bridge_id, phone, 1),
                bridge("BridgeEnter", answer, &bridge_id, trunk, 2),
                bridge("BridgeLeave", end, &bridge_id, trunk, 1),
                hangup(end, trunk, NORMAL_CLEARING),
                bridge("BridgeLeave", end, &bridge_id, phone, 0),
                hangup(end, phone, NORMAL_CLEARING),
                cdr(end, phone, trunk, number, t0, Some(answer), end, "ANSWERED"),
            ]);
        }
        None => {
            let end = t0 + 20.0;
            events.extend([
                dial_end(end, phone, trunk, "NOANSWER"),
                hangup(end, trunk, NO_ANSWER),
                hangup(end, phone, NORMAL_CLEARING),
                cdr(end, phone, trunk, number, t0, None, end, "NO ANSWER"),
            ]);
        }
    }
    events
}

/// The events after an `Originate` of `Channel: <tech>/<ext>` to `Exten: <number>`: the extension's channel
/// (its `Uniqueid` the action's `ChannelId` when given) rings and answers, `OriginateResponse` reports it,
/// and the dialplan dials the number through the trunk.
pub fn originated(ids: &Ids, originate: &Originate, talk: Option<u32>) -> Vec<Message> {
    let t0 = now();
    let endpoint = originate.channel.split_once('/').map_or(originate.channel.as_str(), |(_, peer)| peer);
    let caller = originate.caller_id.rsplit('<').next().unwrap_or_default().trim_end_matches('>').to_owned();
    let mut phone = Leg::new(ids, endpoint, None, &caller, &originate.context, &originate.exten);
    if let Some(id) = &originate.channel_id {
        phone.unique.clone_from(id);
        phone.linked.clone_from(id);
    }
    let trunk = Leg::new(ids, "trunk", Some(&phone.linked), &originate.exten, "from-trunk", &originate.exten);
    let answered = t0 + 2.0;
    let mut events = vec![
        newchannel(t0, &phone, DOWN),
        event("OriginateResponse", answered)
            .with("ActionID", originate.action_id.clone())
            .with("Response", "Success")
            .with("Channel", phone.channel.clone())
            .with("Context", originate.context.clone())
            .with("Exten", originate.exten.clone())
            .with("Application", "")
            .with("Data", "")
            .with("Reason", "4")
            .with("Uniqueid", phone.unique.clone())
            .with("CallerIDNum", caller.clone())
            .with("CallerIDName", "<unknown>"),
    ];
    let ring = talk.map(|_| 3.0);
    events.extend(dial_out(answered, &phone, &trunk, &originate.exten, ring, f64::from(talk.unwrap_or(0)), true));
    events
}

/// The current unix time in seconds.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdr_times_print_as_asterisk_does() {
        assert_eq!(local_time(0.0), "1970-01-01 00:00:00");
        assert_eq!(local_time(1_700_000_000.5), "2023-11-14 22:13:20");
    }

    #[test]
    fn every_leg_of_a_call_shares_its_linkedid() {
        let call = transferred(
            &Ids::new(1_700_000_000),
            1_700_000_000.0,
            "5511987654321",
            "551130000000",
            "101",
            "102",
            20.0,
            2.0,
            30.0,
        );
        let linked: Vec<&str> = call.events.iter().filter_map(|event| event.get("Linkedid")).collect();
        assert!(linked.len() > 10 && linked.iter().all(|id| *id == call.linkedid));
    }
}
