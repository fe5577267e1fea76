//! The call-handling rules, scenario by scenario: for each call, settings, Kommo knowledge and manager's
//! result, the exact Kommo writes (what a user sees appear in Kommo).

use shared::rules::{
    Action, CallFacts, CallLog, CallResult, Delivered, EntityKind, EntityRef, FollowUp, Knowledge, KnownFacts,
    KommoCallStatus, LeadFacts, Plan, PlanInput, SKIPPED_OUTGOING_UNKNOWN, Target, Texts, WriteKey, needs_active_leads,
    plan,
};
use shared::{
    CallDirection, CallHandling, CallStatus, ExtensionEntry, ExtensionMap, TaskResponsible, UnknownCallerEntity,
    UnsortedAccept,
};

const CALL_ID: &str = "c-1";
const NUMBER: &str = "+5511999990000";
const STARTED: i64 = 1_700_000_000;
const LINK: &str = "https://rec.example.org/c-1.mp3";
/// The user mapped to extension 101.
const AGENT: i64 = 7;
const FALLBACK: i64 = 9;
const CONTACT: i64 = 500;
const OWNER: i64 = 20;
/// A company that has the number when no contact does, and its responsible user.
const COMPANY: i64 = 550;
const COMPANY_OWNER: i64 = 21;
const LEAD: i64 = 600;
const OLDER_LEAD: i64 = 601;
const CHOSEN: EntityRef = EntityRef { kind: EntityKind::Leads, id: 777 };
const PIPELINE: i64 = 11;
const STAGE: i64 = 12;
/// Default missed-call task delay: 60 minutes.
const DUE: i64 = STARTED + 3600;
const FOLLOW_UP_DUE: i64 = STARTED + 86_400;

use CallDirection::{Inbound, Outbound};
use CallStatus::{Answered, Busy, Ended, Failed, Missed, Ringing};
use KommoCallStatus as K;

// ------------------------------------------------------------------------------------------------
// The inputs
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Case {
    call: CallFacts,
    rules: CallHandling,
    extensions: ExtensionMap,
    kommo: Knowledge,
    result: Option<CallResult>,
    delivered: Delivered,
    texts: Texts,
}

impl Case {
    /// A call from or to an unknown number, with the default settings, extension 101 → [`AGENT`].
    fn new(direction: CallDirection, status: CallStatus, answered: bool) -> Case {
        Case {
            call: CallFacts {
                call_id: CALL_ID.into(),
                direction,
                client_number: NUMBER.into(),
                status,
                answered,
                started_at: STARTED,
                duration: if answered { 42 } else { 0 },
                recording_url: None,
                extension: Some("101".into()),
            },
            rules: CallHandling::default(),
            extensions: ExtensionMap {
                entries: vec![ExtensionEntry { extension: "101".into(), user_id: AGENT }],
                fallback_user_id: Some(FALLBACK),
            },
            kommo: Knowledge::Unknown,
            result: None,
            delivered: Delivered::default(),
            texts: Texts::english(),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Case)) -> Case {
        change(&mut self);
        self
    }

    /// The number belongs to contact [`CONTACT`] (responsible [`OWNER`]).
    fn known(self, phone_count: usize, active_leads: Option<&[i64]>) -> Case {
        self.with(|case| {
            case.kommo = Knowledge::Contact(KnownFacts {
                id: CONTACT,
                responsible_user_id: Some(OWNER),
                phone_count,
                active_leads: active_leads
                    .map(|ids| ids.iter().map(|&id| LeadFacts { id, responsible_user_id: Some(OWNER) }).collect()),
            })
        })
    }

    /// No contact has the number; company [`COMPANY`] (responsible [`COMPANY_OWNER`]) does.
    fn company(self, phone_count: usize, active_leads: Option<&[i64]>) -> Case {
        self.with(|case| {
            case.kommo = Knowledge::Company(KnownFacts {
                id: COMPANY,
                responsible_user_id: Some(COMPANY_OWNER),
                phone_count,
                active_leads: active_leads.map(|ids| {
                    ids.iter().map(|&id| LeadFacts { id, responsible_user_id: Some(COMPANY_OWNER) }).collect()
                }),
            })
        })
    }

    fn plan(&self) -> Plan {
        plan(PlanInput {
            call: &self.call,
            rules: &self.rules,
            extensions: &self.extensions,
            kommo: &self.kommo,
            result: self.result.as_ref(),
            delivered: self.delivered,
            texts: &self.texts,
        })
    }
}

fn inbound(status: CallStatus, answered: bool) -> Case {
    Case::new(Inbound, status, answered)
}

fn outbound(status: CallStatus, answered: bool) -> Case {
    Case::new(Outbound, status, answered)
}

fn answered_in() -> Case {
    inbound(Ended, true)
}

fn missed_in() -> Case {
    inbound(Missed, false)
}

fn result(call_status: KommoCallStatus) -> CallResult {
    CallResult { note: Some("Wants a quote".into()), call_status, quality: Some(4), follow_up: None, entity: None }
}

fn with_follow_up(mut result: CallResult) -> CallResult {
    result.follow_up = Some(FollowUp { text: "Send the quote".into(), due_at: FOLLOW_UP_DUE });
    result
}

fn with_entity(mut result: CallResult) -> CallResult {
    result.entity = Some(CHOSEN);
    result
}

fn delivered_on(entity: Option<EntityRef>) -> Delivered {
    Delivered { call_logged: true, entity, ..Delivered::default() }
}

// ------------------------------------------------------------------------------------------------
// The writes
// ------------------------------------------------------------------------------------------------

fn lead(id: i64) -> EntityRef {
    EntityRef { kind: EntityKind::Leads, id }
}

fn contact() -> EntityRef {
    EntityRef { kind: EntityKind::Contacts, id: CONTACT }
}

fn company() -> EntityRef {
    EntityRef { kind: EntityKind::Companies, id: COMPANY }
}

fn on(entity: EntityRef) -> Target {
    Target::Entity(entity)
}

/// The call as the provider reported it, taken or placed by [`AGENT`].
fn log(direction: CallDirection, call_status: KommoCallStatus) -> CallLog {
    let answered = call_status == K::Success;
    CallLog {
        uniq: CALL_ID.into(),
        direction,
        phone: NUMBER.into(),
        duration: if answered { 42 } else { 0 },
        link: None,
        call_status,
        call_result: None,
        user_id: Some(AGENT),
        created_at: STARTED,
    }
}

fn log_in(call_status: KommoCallStatus) -> CallLog {
    log(Inbound, call_status)
}

/// An answered call carrying the manager's result `call_status`, "Wants a quote", quality 4.
fn log_result(direction: CallDirection, call_status: KommoCallStatus) -> CallLog {
    CallLog { call_status, call_result: Some("Wants a quote · Quality: 4/5".into()), ..log(direction, K::Success) }
}

fn call(log: CallLog) -> Action {
    Action::LogCall { key: WriteKey::Call, call: log, target: None }
}

fn call_on(log: CallLog, entity: EntityRef) -> Action {
    Action::LogCall { key: WriteKey::Call, call: log, target: Some(on(entity)) }
}

fn unsorted(log: CallLog) -> Action {
    Action::CreateUnsorted { key: WriteKey::Unsorted, call: log, pipeline_id: None }
}

fn contact_and_lead(direction: CallDirection) -> Action {
    let lead_name = match direction {
        Inbound => "Call from +55 11 99999-0000",
        Outbound => "Call to +55 11 99999-0000",
    };
    Action::CreateContactAndLead {
        key: WriteKey::ContactAndLead,
        phone: NUMBER.into(),
        contact_name: "+55 11 99999-0000".into(),
        lead_name: lead_name.into(),
        responsible_user_id: Some(AGENT),
        pipeline_id: None,
        status_id: None,
    }
}

fn new_lead(responsible_user_id: Option<i64>) -> Action {
    Action::CreateLead {
        key: WriteKey::Lead,
        contact_id: CONTACT,
        lead_name: "Call from +55 11 99999-0000".into(),
        responsible_user_id,
        pipeline_id: None,
        status_id: None,
    }
}

fn accept(user_id: Option<i64>, status_id: Option<i64>) -> Action {
    Action::AcceptUnsorted { key: WriteKey::Accept, user_id, status_id }
}

fn missed_task(target: Target, responsible_user_id: Option<i64>) -> Action {
    Action::CreateTask {
        key: WriteKey::MissedTask,
        target,
        text: "Call back +55 11 99999-0000: missed call".into(),
        due_at: DUE,
        task_type_id: 1,
        responsible_user_id,
    }
}

fn number_note(target: EntityRef) -> Action {
    Action::AddNote { key: WriteKey::NumberNote, target: on(target), text: "Called from +55 11 99999-0000".into() }
}

fn result_note(target: Target, text: &str) -> Action {
    Action::AddNote { key: WriteKey::ResultNote, target, text: text.into() }
}

fn result_task(target: Target) -> Action {
    Action::CreateTask {
        key: WriteKey::ResultTask,
        target,
        text: "Send the quote".into(),
        due_at: FOLLOW_UP_DUE,
        task_type_id: 1,
        responsible_user_id: Some(AGENT),
    }
}

fn recording_note(target: Target) -> Action {
    Action::AddNote { key: WriteKey::RecordingNote, target, text: format!("Call recording: {LINK}") }
}

fn check(cases: Vec<(&str, Case, Vec<Action>)>) {
    for (name, case, expected) in cases {
        let plan = case.plan();
        assert_eq!(plan.actions, expected, "{name}");
        assert_eq!(plan.skipped, None, "{name}");
    }
}

// ------------------------------------------------------------------------------------------------
// Scenarios
// ------------------------------------------------------------------------------------------------

#[test]
fn nothing_is_written_while_the_call_is_going_on() {
    let given = Some(with_follow_up(result(K::Success)));
    for status in [Ringing, Answered] {
        for case in [
            inbound(status, status == Answered),
            outbound(status, false),
            inbound(status, true).known(3, Some(&[])),
            inbound(status, true).with(|case| case.rules.unknown_incoming.create = UnknownCallerEntity::ContactAndLead),
            outbound(status, true).with(|case| case.rules.outgoing_new.create_contact_and_lead = false),
            inbound(status, true).with(|case| case.result = given.clone()),
            inbound(status, true).with(|case| case.result = Some(with_entity(result(K::Success)))),
            inbound(status, true).with(|case| case.call.recording_url = Some(LINK.into())),
        ] {
            assert_eq!(case.plan(), Plan::default(), "{status:?}: {case:?}");
        }
    }
}

#[test]
fn unknown_caller_becomes_an_unsorted_lead_carrying_the_call() {
    let on_answer = |case: &mut Case| case.rules.unknown_incoming.unsorted_accept = UnsortedAccept::OnAnswer;
    check(vec![
        ("answered, accepted manually", answered_in(), vec![unsorted(log_in(K::Success))]),
        (
            "answered, accepted on answer by the extension's user into the configured stage",
            answered_in().with(on_answer).with(|case| {
                case.rules.placement.pipeline_id = Some(PIPELINE);
                case.rules.placement.status_id = Some(STAGE);
            }),
            vec![
                Action::CreateUnsorted {
                    key: WriteKey::Unsorted,
                    call: log_in(K::Success),
                    pipeline_id: Some(PIPELINE),
                },
                accept(Some(AGENT), Some(STAGE)),
            ],
        ),
        (
            "answered, accepted on answer; an unmapped extension's calls go to the fallback user",
            answered_in().with(on_answer).with(|case| case.call.extension = Some("999".into())),
            vec![unsorted(CallLog { user_id: Some(FALLBACK), ..log_in(K::Success) }), accept(Some(FALLBACK), None)],
        ),
        (
            "answered with a recording: the unsorted lead carries the link",
            answered_in().with(|case| case.call.recording_url = Some(LINK.into())),
            vec![unsorted(CallLog { link: Some(LINK.into()), ..log_in(K::Success) })],
        ),
        (
            "missed: never accepted, a call-back task on the new lead for the extension's user",
            missed_in().with(on_answer),
            vec![unsorted(log_in(K::NoConnection)), missed_task(Target::CreatedLead, Some(AGENT))],
        ),
        (
            "missed, task not linked to the lead: on the new contact",
            missed_in().with(|case| case.rules.missed.link_to_lead = false),
            vec![unsorted(log_in(K::NoConnection)), missed_task(Target::CreatedContact, Some(AGENT))],
        ),
        (
            "busy line",
            inbound(Busy, false),
            vec![unsorted(log_in(K::Busy)), missed_task(Target::CreatedLead, Some(AGENT))],
        ),
        (
            "failed",
            inbound(Failed, false),
            vec![unsorted(log_in(K::NoConnection)), missed_task(Target::CreatedLead, Some(AGENT))],
        ),
        (
            "missed, no task wanted",
            missed_in().with(|case| case.rules.missed.create_task = false),
            vec![unsorted(log_in(K::NoConnection))],
        ),
        (
            "missed after being answered is not a missed call",
            inbound(Missed, true).with(on_answer),
            vec![unsorted(log_in(K::Success)), accept(Some(AGENT), None)],
        ),
        (
            "ended without an answer (the caller hung up while it rang): a missed call",
            inbound(Ended, false),
            vec![unsorted(log_in(K::NoConnection)), missed_task(Target::CreatedLead, Some(AGENT))],
        ),
    ]);
}

#[test]
fn unknown_caller_becomes_a_contact_and_a_lead() {
    let contact_and_lead_rule =
        |case: &mut Case| case.rules.unknown_incoming.create = UnknownCallerEntity::ContactAndLead;
    check(vec![
        (
            "answered: the call is logged by number after the contact exists",
            answered_in().with(contact_and_lead_rule),
            vec![contact_and_lead(Inbound), call(log_in(K::Success))],
        ),
        (
            "answered; accepting unsorted leads doesn't apply",
            answered_in()
                .with(contact_and_lead_rule)
                .with(|case| case.rules.unknown_incoming.unsorted_accept = UnsortedAccept::OnAnswer),
            vec![contact_and_lead(Inbound), call(log_in(K::Success))],
        ),
        (
            "the new lead goes to the configured pipeline and stage",
            answered_in().with(contact_and_lead_rule).with(|case| {
                case.rules.placement.pipeline_id = Some(PIPELINE);
                case.rules.placement.status_id = Some(STAGE);
            }),
            vec![
                Action::CreateContactAndLead {
                    key: WriteKey::ContactAndLead,
                    phone: NUMBER.into(),
                    contact_name: "+55 11 99999-0000".into(),
                    lead_name: "Call from +55 11 99999-0000".into(),
                    responsible_user_id: Some(AGENT),
                    pipeline_id: Some(PIPELINE),
                    status_id: Some(STAGE),
                },
                call(log_in(K::Success)),
            ],
        ),
        (
            "missed: the call-back task on the new lead",
            missed_in().with(contact_and_lead_rule),
            vec![
                contact_and_lead(Inbound),
                call(log_in(K::NoConnection)),
                missed_task(Target::CreatedLead, Some(AGENT)),
            ],
        ),
        (
            "missed, task not linked to the lead: on the new contact",
            missed_in().with(contact_and_lead_rule).with(|case| case.rules.missed.link_to_lead = false),
            vec![
                contact_and_lead(Inbound),
                call(log_in(K::NoConnection)),
                missed_task(Target::CreatedContact, Some(AGENT)),
            ],
        ),
        (
            "busy, no task wanted",
            inbound(Busy, false).with(contact_and_lead_rule).with(|case| case.rules.missed.create_task = false),
            vec![contact_and_lead(Inbound), call(log_in(K::Busy))],
        ),
    ]);
}

#[test]
fn a_known_contacts_call_is_logged_by_number() {
    let create_lead = |case: &mut Case| case.rules.known_incoming.create_lead_when_no_active_lead = true;
    let no_number_note = |case: &mut Case| case.rules.known_incoming.note_number_when_several = false;
    check(vec![
        ("answered, one number, an active lead", answered_in().known(1, Some(&[LEAD])), vec![call(log_in(K::Success))]),
        (
            "a contact with several numbers: a note names the one that called",
            answered_in().known(2, Some(&[LEAD])),
            vec![call(log_in(K::Success)), number_note(contact())],
        ),
        (
            "several numbers, note turned off",
            answered_in().known(3, Some(&[])).with(no_number_note),
            vec![call(log_in(K::Success))],
        ),
        (
            "no active lead and leads are created: a lead for the contact's responsible, then the call",
            answered_in().known(1, Some(&[])).with(create_lead),
            vec![new_lead(Some(OWNER)), call(log_in(K::Success))],
        ),
        (
            "the new lead goes to the configured pipeline and stage",
            answered_in().known(1, Some(&[])).with(create_lead).with(|case| {
                case.rules.placement.pipeline_id = Some(PIPELINE);
                case.rules.placement.status_id = Some(STAGE);
            }),
            vec![
                Action::CreateLead {
                    key: WriteKey::Lead,
                    contact_id: CONTACT,
                    lead_name: "Call from +55 11 99999-0000".into(),
                    responsible_user_id: Some(OWNER),
                    pipeline_id: Some(PIPELINE),
                    status_id: Some(STAGE),
                },
                call(log_in(K::Success)),
            ],
        ),
        (
            "a contact without a responsible: the new lead is the extension user's",
            answered_in().known(1, Some(&[])).with(create_lead).with(|case| {
                if let Knowledge::Contact(contact) = &mut case.kommo {
                    contact.responsible_user_id = None;
                }
            }),
            vec![new_lead(Some(AGENT)), call(log_in(K::Success))],
        ),
        (
            "an active lead: no lead created",
            answered_in().known(1, Some(&[LEAD])).with(create_lead),
            vec![call(log_in(K::Success))],
        ),
        (
            "leads not looked up: no lead created on a guess",
            answered_in().known(1, None).with(create_lead),
            vec![call(log_in(K::Success))],
        ),
        ("no active lead, leads not created", answered_in().known(1, Some(&[])), vec![call(log_in(K::Success))]),
        (
            "no active lead, several numbers: lead, call, number note",
            answered_in().known(2, Some(&[])).with(create_lead),
            vec![new_lead(Some(OWNER)), call(log_in(K::Success)), number_note(contact())],
        ),
    ]);
}

#[test]
fn a_known_contacts_missed_call_gets_a_call_back_task() {
    let create_lead = |case: &mut Case| case.rules.known_incoming.create_lead_when_no_active_lead = true;
    let unlinked = |case: &mut Case| case.rules.missed.link_to_lead = false;
    check(vec![
        (
            "on the active lead, for the contact's responsible",
            missed_in().known(1, Some(&[LEAD])),
            vec![call(log_in(K::NoConnection)), missed_task(on(lead(LEAD)), Some(OWNER))],
        ),
        (
            "on the most recent of several active leads",
            missed_in().known(1, Some(&[LEAD, OLDER_LEAD])),
            vec![call(log_in(K::NoConnection)), missed_task(on(lead(LEAD)), Some(OWNER))],
        ),
        (
            "no active lead and leads are created: on the new lead",
            missed_in().known(1, Some(&[])).with(create_lead),
            vec![new_lead(Some(OWNER)), call(log_in(K::NoConnection)), missed_task(Target::CreatedLead, Some(OWNER))],
        ),
        (
            "no active lead, leads not created: on the contact",
            missed_in().known(1, Some(&[])),
            vec![call(log_in(K::NoConnection)), missed_task(on(contact()), Some(OWNER))],
        ),
        (
            "leads not looked up: on the contact",
            missed_in().known(1, None),
            vec![call(log_in(K::NoConnection)), missed_task(on(contact()), Some(OWNER))],
        ),
        (
            "not linked to the lead: on the contact though it has one",
            missed_in().known(1, Some(&[LEAD])).with(unlinked),
            vec![call(log_in(K::NoConnection)), missed_task(on(contact()), Some(OWNER))],
        ),
        (
            "not linked, a new lead created: still on the contact",
            missed_in().known(1, Some(&[])).with(create_lead).with(unlinked),
            vec![new_lead(Some(OWNER)), call(log_in(K::NoConnection)), missed_task(on(contact()), Some(OWNER))],
        ),
        (
            "several numbers: the number note too",
            missed_in().known(2, Some(&[LEAD])),
            vec![call(log_in(K::NoConnection)), number_note(contact()), missed_task(on(lead(LEAD)), Some(OWNER))],
        ),
        (
            "busy",
            inbound(Busy, false).known(1, Some(&[LEAD])),
            vec![call(log_in(K::Busy)), missed_task(on(lead(LEAD)), Some(OWNER))],
        ),
        (
            "failed, no task wanted",
            inbound(Failed, false).known(1, Some(&[LEAD])).with(|case| case.rules.missed.create_task = false),
            vec![call(log_in(K::NoConnection))],
        ),
        (
            "due as configured",
            missed_in().known(1, Some(&[LEAD])).with(|case| case.rules.missed.due_in_minutes = 0),
            vec![
                call(log_in(K::NoConnection)),
                Action::CreateTask {
                    key: WriteKey::MissedTask,
                    target: on(lead(LEAD)),
                    text: "Call back +55 11 99999-0000: missed call".into(),
                    due_at: STARTED,
                    task_type_id: 1,
                    responsible_user_id: Some(OWNER),
                },
            ],
        ),
    ]);
}

#[test]
fn the_missed_call_task_goes_to_the_chosen_responsible() {
    let responsible = |responsible: TaskResponsible| move |case: &mut Case| case.rules.missed.responsible = responsible;
    let extension =
        |extension: Option<&'static str>| move |case: &mut Case| case.call.extension = extension.map(Into::into);
    let no_owner = |case: &mut Case| {
        if let Knowledge::Contact(contact) = &mut case.kommo {
            contact.responsible_user_id = None;
        }
    };
    let known = || missed_in().known(1, Some(&[LEAD]));
    let task_of = |plan: Plan| match plan.actions.last() {
        Some(Action::CreateTask { key: WriteKey::MissedTask, responsible_user_id, .. }) => *responsible_user_id,
        other => panic!("no missed-call task: {other:?}"),
    };
    let cases: Vec<(&str, Case, Option<i64>)> = vec![
        ("contact's responsible", known().with(responsible(TaskResponsible::ContactResponsible)), Some(OWNER)),
        ("contact's responsible, the contact has none: the extension's user", known().with(no_owner), Some(AGENT)),
        ("contact's responsible of an unknown caller: the extension's user", missed_in(), Some(AGENT)),
        (
            "contact's responsible of an unknown caller on an unmapped extension: the fallback user",
            missed_in().with(extension(Some("555"))),
            Some(FALLBACK),
        ),
        ("the extension's user", known().with(responsible(TaskResponsible::ExtensionUser)), Some(AGENT)),
        (
            "the extension's user, no extension: the fallback user",
            known().with(responsible(TaskResponsible::ExtensionUser)).with(extension(None)),
            Some(FALLBACK),
        ),
        (
            "the extension's user, nobody mapped and no fallback: left to Kommo",
            known()
                .with(responsible(TaskResponsible::ExtensionUser))
                .with(extension(Some("555")))
                .with(|case| case.extensions.fallback_user_id = None),
            None,
        ),
        ("a chosen user", known().with(responsible(TaskResponsible::User { user_id: 42 })), Some(42)),
        (
            "a chosen user for an unknown caller",
            missed_in().with(responsible(TaskResponsible::User { user_id: 42 })),
            Some(42),
        ),
    ];
    for (name, case, expected) in cases {
        assert_eq!(task_of(case.plan()), expected, "{name}");
    }
}

#[test]
fn a_number_only_a_company_has_is_a_known_caller_whose_call_kommo_attaches_to_the_company() {
    let create_lead = |case: &mut Case| case.rules.known_incoming.create_lead_when_no_active_lead = true;
    let unlinked = |case: &mut Case| case.rules.missed.link_to_lead = false;
    let contact_and_lead_rule =
        |case: &mut Case| case.rules.unknown_incoming.create = UnknownCallerEntity::ContactAndLead;
    let no_contacts = |case: &mut Case| case.rules.outgoing_new.create_contact_and_lead = false;
    check(vec![
        (
            "answered: logged by number, nothing created",
            answered_in().company(1, Some(&[LEAD])),
            vec![call(log_in(K::Success))],
        ),
        (
            "answered, unknown callers become contacts and leads: still nothing created",
            answered_in().company(1, None).with(contact_and_lead_rule),
            vec![call(log_in(K::Success))],
        ),
        (
            "no active lead, leads are created for contacts without one: none for a company",
            answered_in().company(1, Some(&[])).with(create_lead),
            vec![call(log_in(K::Success))],
        ),
        (
            "a company with several numbers: the note goes on the company",
            answered_in().company(2, Some(&[LEAD])),
            vec![call(log_in(K::Success)), number_note(company())],
        ),
        (
            "missed: the task on the company's active lead, for the company's responsible",
            missed_in().company(1, Some(&[LEAD, OLDER_LEAD])),
            vec![call(log_in(K::NoConnection)), missed_task(on(lead(LEAD)), Some(COMPANY_OWNER))],
        ),
        (
            "missed, no active lead (leads created for contacts): the task on the company",
            missed_in().company(1, Some(&[])).with(create_lead),
            vec![call(log_in(K::NoConnection)), missed_task(on(company()), Some(COMPANY_OWNER))],
        ),
        (
            "missed, not linked to the lead: on the company though it has one",
            missed_in().company(1, Some(&[LEAD])).with(unlinked),
            vec![call(log_in(K::NoConnection)), missed_task(on(company()), Some(COMPANY_OWNER))],
        ),
        (
            "missed, the company has no responsible: the extension's user",
            missed_in().company(1, Some(&[LEAD])).with(|case| {
                if let Some(facts) = case.kommo.facts_mut() {
                    facts.responsible_user_id = None;
                }
            }),
            vec![call(log_in(K::NoConnection)), missed_task(on(lead(LEAD)), Some(AGENT))],
        ),
        (
            "a result after delivery goes where Kommo put the call",
            answered_in().company(1, None).with(|case| {
                case.delivered = delivered_on(Some(company()));
                case.result = Some(result(K::CallBackLater));
            }),
            vec![result_note(on(company()), "Call result: call back later · Wants a quote · Quality: 4/5")],
        ),
        (
            "outgoing: logged by number, no contact created",
            outbound(Ended, true).company(1, None),
            vec![call(log(Outbound, K::Success))],
        ),
        (
            "outgoing, contacts not created for new numbers: logged all the same",
            outbound(Ended, true).company(1, None).with(no_contacts),
            vec![call(log(Outbound, K::Success))],
        ),
    ]);
    let known = answered_in().company(1, None);
    assert_eq!(known.kommo.entity(), Some(company()));
    let stored = serde_json::to_string(&known.kommo).unwrap();
    assert!(stored.starts_with(r#"{"Company":{"id":550,"#), "{stored}");
    assert_eq!(serde_json::from_str::<Knowledge>(&stored).unwrap(), known.kommo, "the ledger reads it back");
}

#[test]
fn a_call_by_nobody_mapped_is_logged_without_a_user() {
    let case = answered_in().known(1, Some(&[LEAD])).with(|case| {
        case.call.extension = None;
        case.extensions.fallback_user_id = None;
    });
    assert_eq!(case.plan().actions, vec![call(CallLog { user_id: None, ..log_in(K::Success) })]);
}

#[test]
fn outgoing_calls() {
    let no_contacts = |case: &mut Case| case.rules.outgoing_new.create_contact_and_lead = false;
    check(vec![
        ("to a contact", outbound(Ended, true).known(1, Some(&[LEAD])), vec![call(log(Outbound, K::Success))]),
        (
            "to a contact with several numbers, leads created for incoming calls: just the call",
            outbound(Ended, true)
                .known(2, Some(&[]))
                .with(|case| case.rules.known_incoming.create_lead_when_no_active_lead = true),
            vec![call(log(Outbound, K::Success))],
        ),
        (
            "not answered: no call-back task",
            outbound(Missed, false).known(1, Some(&[LEAD])),
            vec![call(log(Outbound, K::NoConnection))],
        ),
        ("busy", outbound(Busy, false).known(1, Some(&[LEAD])), vec![call(log(Outbound, K::Busy))]),
        ("failed", outbound(Failed, false).known(1, None), vec![call(log(Outbound, K::NoConnection))]),
        (
            "to a new number: a contact and a lead",
            outbound(Ended, true),
            vec![contact_and_lead(Outbound), call(log(Outbound, K::Success))],
        ),
        (
            "to a new number, not answered",
            outbound(Missed, false),
            vec![contact_and_lead(Outbound), call(log(Outbound, K::NoConnection))],
        ),
        (
            "to a new number, contacts not created, the manager chose a lead",
            outbound(Ended, true).with(no_contacts).with(|case| case.result = Some(with_entity(result(K::Success)))),
            vec![call_on(log_result(Outbound, K::Success), CHOSEN)],
        ),
    ]);
    for case in [
        outbound(Ended, true).with(no_contacts),
        outbound(Busy, false).with(no_contacts),
        outbound(Ended, true).with(no_contacts).with(|case| case.result = Some(with_follow_up(result(K::Success)))),
    ] {
        let plan = case.plan();
        assert_eq!(plan, Plan { actions: vec![], skipped: Some(SKIPPED_OUTGOING_UNKNOWN) }, "{case:?}");
        assert_eq!(plan.skipped, Some("outgoing call to a number no contact or company has; creating contacts is off"));
    }
}

#[test]
fn the_managers_result_before_the_call_is_in_kommo() {
    let with_result = |result: CallResult| move |case: &mut Case| case.result = Some(result);
    let contact_and_lead_rule =
        |case: &mut Case| case.rules.unknown_incoming.create = UnknownCallerEntity::ContactAndLead;
    let quality_only = CallResult { note: Some("  ".into()), quality: Some(5), ..result(K::Success) };
    let nothing_said = CallResult { note: None, quality: None, ..result(K::WrongNumber) };
    check(vec![
        (
            "the call carries the chosen status, the note and the quality",
            answered_in().known(1, Some(&[LEAD])).with(with_result(result(K::CallBackLater))),
            vec![call(log_result(Inbound, K::CallBackLater))],
        ),
        (
            "only a quality rating",
            answered_in().known(1, Some(&[LEAD])).with(with_result(quality_only)),
            vec![call(CallLog { call_result: Some("Quality: 5/5".into()), ..log_in(K::Success) })],
        ),
        (
            "only a status",
            answered_in().known(1, Some(&[LEAD])).with(with_result(nothing_said)),
            vec![call(CallLog { call_status: K::WrongNumber, ..log_in(K::Success) })],
        ),
        (
            "a follow-up task where the call lands",
            answered_in().known(1, Some(&[LEAD])).with(with_result(with_follow_up(result(K::Success)))),
            vec![call(log_result(Inbound, K::Success)), result_task(Target::CallEntity)],
        ),
        (
            "the status of a missed call as the manager says",
            missed_in()
                .known(1, Some(&[LEAD]))
                .with(with_result(CallResult { quality: None, ..result(K::NotAvailable) })),
            vec![
                call(CallLog {
                    call_status: K::NotAvailable,
                    call_result: Some("Wants a quote".into()),
                    ..log_in(K::NoConnection)
                }),
                missed_task(on(lead(LEAD)), Some(OWNER)),
            ],
        ),
        (
            "an unsorted lead can't carry the result: a result note on it",
            answered_in().with(with_result(result(K::CallBackLater))),
            vec![
                unsorted(log_result(Inbound, K::CallBackLater)),
                result_note(Target::CreatedLead, "Call result: call back later · Wants a quote · Quality: 4/5"),
            ],
        ),
        (
            "unsorted, with a follow-up: both on the new lead",
            answered_in().with(with_result(with_follow_up(CallResult {
                note: None,
                quality: None,
                ..result(K::Success)
            }))),
            vec![
                unsorted(CallLog { call_result: None, ..log_result(Inbound, K::Success) }),
                result_note(Target::CreatedLead, "Call result: conversation took place"),
                result_task(Target::CreatedLead),
            ],
        ),
        (
            "a new contact and lead, with a follow-up where the call lands",
            answered_in().with(contact_and_lead_rule).with(with_result(with_follow_up(result(K::Success)))),
            vec![contact_and_lead(Inbound), call(log_result(Inbound, K::Success)), result_task(Target::CallEntity)],
        ),
    ]);
}

#[test]
fn the_managers_chosen_entity_takes_the_call_and_everything_with_it() {
    let chosen = |result: CallResult| move |case: &mut Case| case.result = Some(with_entity(result));
    let create_lead = |case: &mut Case| case.rules.known_incoming.create_lead_when_no_active_lead = true;
    let contact_and_lead_rule =
        |case: &mut Case| case.rules.unknown_incoming.create = UnknownCallerEntity::ContactAndLead;
    let on_answer = |case: &mut Case| case.rules.unknown_incoming.unsorted_accept = UnsortedAccept::OnAnswer;
    check(vec![
        (
            "unknown caller, unsorted configured: no unsorted lead, a call note on the chosen lead",
            answered_in().with(on_answer).with(chosen(result(K::Success))),
            vec![call_on(log_result(Inbound, K::Success), CHOSEN)],
        ),
        (
            "unknown caller, contact and lead configured: nothing created",
            answered_in().with(contact_and_lead_rule).with(chosen(result(K::Success))),
            vec![call_on(log_result(Inbound, K::Success), CHOSEN)],
        ),
        (
            "a follow-up on the chosen lead",
            answered_in().known(1, Some(&[LEAD])).with(chosen(with_follow_up(result(K::Success)))),
            vec![call_on(log_result(Inbound, K::Success), CHOSEN), result_task(on(CHOSEN))],
        ),
        (
            "known contact without an active lead, leads created: none, the manager chose",
            answered_in().known(1, Some(&[])).with(create_lead).with(chosen(result(K::Success))),
            vec![call_on(log_result(Inbound, K::Success), CHOSEN)],
        ),
        (
            "missed, several numbers: the number note and the call-back task on the chosen lead too",
            missed_in().known(2, Some(&[LEAD])).with(chosen(CallResult { quality: None, ..result(K::CallBackLater) })),
            vec![
                call_on(
                    CallLog {
                        call_status: K::CallBackLater,
                        call_result: Some("Wants a quote".into()),
                        ..log_in(K::NoConnection)
                    },
                    CHOSEN,
                ),
                number_note(CHOSEN),
                missed_task(on(CHOSEN), Some(OWNER)),
            ],
        ),
        (
            "missed unknown caller: the task on the chosen lead, for the extension's user",
            missed_in().with(chosen(CallResult { note: None, quality: None, ..result(K::NoConnection) })),
            vec![
                call_on(CallLog { call_status: K::NoConnection, ..log_in(K::NoConnection) }, CHOSEN),
                missed_task(on(CHOSEN), Some(AGENT)),
            ],
        ),
    ]);
}

#[test]
fn after_the_call_is_in_kommo_only_what_it_lacks_follows() {
    let delivered = |delivered: Delivered| move |case: &mut Case| case.delivered = delivered;
    let with_result = |result: CallResult| move |case: &mut Case| case.result = Some(result);
    let recording = |case: &mut Case| case.call.recording_url = Some(LINK.into());
    let on_lead = delivered_on(Some(lead(LEAD)));
    let note_text = "Call result: call back later · Wants a quote · Quality: 4/5";
    check(vec![
        ("nothing new", answered_in().known(1, Some(&[LEAD])).with(delivered(on_lead)), vec![]),
        (
            "a late result: a note where the call is",
            answered_in().known(1, Some(&[LEAD])).with(delivered(on_lead)).with(with_result(result(K::CallBackLater))),
            vec![result_note(on(lead(LEAD)), note_text)],
        ),
        (
            "a late result, Kommo didn't say where the call went",
            answered_in()
                .known(1, Some(&[LEAD]))
                .with(delivered(delivered_on(None)))
                .with(with_result(result(K::CallBackLater))),
            vec![result_note(Target::CallEntity, note_text)],
        ),
        (
            "a late result with a follow-up",
            answered_in().with(delivered(on_lead)).with(with_result(with_follow_up(result(K::CallBackLater)))),
            vec![result_note(on(lead(LEAD)), note_text), result_task(on(lead(LEAD)))],
        ),
        (
            "a late result choosing another entity: it still goes where the call is",
            answered_in()
                .known(1, Some(&[LEAD]))
                .with(delivered(on_lead))
                .with(with_result(with_entity(with_follow_up(result(K::CallBackLater))))),
            vec![result_note(on(lead(LEAD)), note_text), result_task(on(lead(LEAD)))],
        ),
        (
            "the result went with the call: only its follow-up",
            answered_in()
                .known(1, Some(&[LEAD]))
                .with(delivered(Delivered { logged_with_result: true, ..on_lead }))
                .with(with_result(with_follow_up(result(K::CallBackLater)))),
            vec![result_task(on(lead(LEAD)))],
        ),
        (
            "a late recording: a note with the link",
            answered_in().known(1, Some(&[LEAD])).with(delivered(on_lead)).with(recording),
            vec![recording_note(on(lead(LEAD)))],
        ),
        (
            "a late recording of an unsorted lead",
            answered_in().with(delivered(delivered_on(None))).with(recording),
            vec![recording_note(Target::CallEntity)],
        ),
        (
            "the recording went with the call",
            answered_in()
                .known(1, Some(&[LEAD]))
                .with(delivered(Delivered { logged_with_link: true, ..on_lead }))
                .with(recording),
            vec![],
        ),
        (
            "a late result and a late recording",
            answered_in()
                .known(1, Some(&[LEAD]))
                .with(delivered(on_lead))
                .with(recording)
                .with(with_result(result(K::CallBackLater))),
            vec![result_note(on(lead(LEAD)), note_text), recording_note(on(lead(LEAD)))],
        ),
        (
            "the follow-ups of the call still to do: accepting the unsorted lead",
            answered_in()
                .with(|case| case.rules.unknown_incoming.unsorted_accept = UnsortedAccept::OnAnswer)
                .with(delivered(on_lead)),
            vec![accept(Some(AGENT), None)],
        ),
        (
            "the follow-ups of the call still to do: number note and call-back task",
            missed_in().known(2, Some(&[LEAD])).with(delivered(on_lead)),
            vec![number_note(contact()), missed_task(on(lead(LEAD)), Some(OWNER))],
        ),
        (
            "the follow-ups of the call still to do: the task on the lead created for it",
            missed_in()
                .known(1, Some(&[]))
                .with(|case| case.rules.known_incoming.create_lead_when_no_active_lead = true)
                .with(delivered(on_lead)),
            vec![missed_task(Target::CreatedLead, Some(OWNER))],
        ),
        (
            "the follow-ups of the call still to do: an unsorted lead's result note",
            answered_in().with(delivered(on_lead)).with(with_result(result(K::CallBackLater))),
            vec![result_note(on(lead(LEAD)), note_text)],
        ),
    ]);
}

#[test]
fn active_leads_are_looked_up_only_when_the_plan_depends_on_them() {
    let create_lead = |case: &mut Case| case.rules.known_incoming.create_lead_when_no_active_lead = true;
    let cases: Vec<(&str, Case, bool)> = vec![
        ("answered, leads not created", answered_in(), false),
        ("answered, leads created", answered_in().with(create_lead), true),
        ("missed, task on the lead", missed_in(), true),
        ("missed, task not linked to the lead", missed_in().with(|case| case.rules.missed.link_to_lead = false), false),
        ("missed, no task", missed_in().with(|case| case.rules.missed.create_task = false), false),
        ("busy, task on the lead", inbound(Busy, false), true),
        ("still ringing", inbound(Ringing, false).with(create_lead), false),
        ("outgoing, leads created for incoming calls", outbound(Ended, true).with(create_lead), false),
        ("outgoing, not answered", outbound(Missed, false), false),
    ];
    for (name, case, expected) in cases {
        assert_eq!(needs_active_leads(&case.call, &case.rules), expected, "{name}");
    }
}

// ------------------------------------------------------------------------------------------------
// Every combination of the settings
// ------------------------------------------------------------------------------------------------

/// Every call, settings, knowledge and result: planning again once the call is in Kommo never logs or
/// creates anything a second time, and asks only for what the first plan had not written with the call.
/// Settings that can't apply to the call (the unknown-caller ones for a known contact, the incoming ones
/// for an outgoing call) stay at their defaults here; the scenario tests above vary them.
#[test]
fn planning_again_after_delivery_never_writes_the_call_twice() {
    const CALL_KEYS: [&str; 4] = ["call", "unsorted", "contact_and_lead", "lead"];
    // (a company's?, phone count, active leads)
    let knowledge = [
        None,
        Some((false, 1, Some(vec![]))),
        Some((false, 2, Some(vec![LEAD]))),
        Some((false, 2, Some(vec![LEAD, OLDER_LEAD]))),
        Some((false, 3, None)),
        Some((true, 1, Some(vec![]))),
        Some((true, 2, Some(vec![LEAD]))),
    ];
    let results = [
        None,
        Some(result(K::CallBackLater)),
        Some(with_follow_up(result(K::Success))),
        Some(with_entity(result(K::Success))),
        Some(with_entity(with_follow_up(result(K::Busy)))),
    ];
    let mut cases = 0;
    for direction in [Inbound, Outbound] {
        for (status, answered) in [
            (Ringing, false),
            (Answered, true),
            (Ended, true),
            (Ended, false),
            (Missed, false),
            (Busy, false),
            (Failed, false),
        ] {
            for known in &knowledge {
                for result in &results {
                    for recording in [false, true] {
                        // Bits: 0 contact and lead for unknown callers, 1 accept on answer, 2 missed-call
                        // task, 3 task on the lead, 4 number note, 5 lead for a contact without one,
                        // 6 contact for a new outgoing number.
                        let applies = match (direction, known.is_some()) {
                            (Inbound, true) => 0b011_1100,
                            (Inbound, false) => 0b000_1111,
                            (Outbound, true) => 0b011_0000,
                            (Outbound, false) => 0b100_0000,
                        };
                        for bits in (0..1u32 << 7).filter(|bits| bits & !applies == 0) {
                            let bit = |n: u32| bits & (1 << n) != 0;
                            let mut case = Case::new(direction, status, answered).with(|case| {
                                case.rules.unknown_incoming.create = if bit(0) {
                                    UnknownCallerEntity::ContactAndLead
                                } else {
                                    UnknownCallerEntity::Unsorted
                                };
                                case.rules.unknown_incoming.unsorted_accept =
                                    if bit(1) { UnsortedAccept::OnAnswer } else { UnsortedAccept::Manual };
                                case.rules.missed.create_task = bit(2);
                                case.rules.missed.link_to_lead = bit(3);
                                case.rules.known_incoming.note_number_when_several = bit(4);
                                case.rules.known_incoming.create_lead_when_no_active_lead = bit(5);
                                case.rules.outgoing_new.create_contact_and_lead = bit(6);
                                case.result = result.clone();
                                case.call.recording_url = recording.then(|| LINK.into());
                            });
                            case = match known {
                                Some((false, phone_count, leads)) => case.known(*phone_count, leads.as_deref()),
                                Some((true, phone_count, leads)) => case.company(*phone_count, leads.as_deref()),
                                None => case,
                            };
                            check_replanning(&case, &CALL_KEYS);
                            cases += 1;
                        }
                    }
                }
            }
        }
    }
    // (6 known × 16 + 16 unknown) inbound + (6 known × 4 + 2 unknown) outbound setting combinations.
    assert_eq!(cases, 7 * 5 * 2 * (6 * 16 + 16 + 6 * 4 + 2));
}

fn check_replanning(case: &Case, call_keys: &[&str]) {
    let first = case.plan();
    let keys = |plan: &Plan| plan.actions.iter().map(|action| action.key().as_str()).collect::<Vec<_>>();
    let first_keys = keys(&first);
    let mut unique = first_keys.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), first_keys.len(), "a key twice in one plan: {first_keys:?} for {case:?}");
    if !case.call.is_over() {
        assert_eq!(first, Plan::default(), "{case:?}");
        return;
    }
    let carriers = first_keys.iter().filter(|key| ["call", "unsorted"].contains(key)).count();
    assert_eq!(
        carriers,
        usize::from(first.skipped.is_none()),
        "one write carries the call: {first_keys:?} for {case:?}"
    );
    if let Some(chosen) = case.result.as_ref().and_then(|result| result.entity) {
        // The manager's choice: one entity touched.
        for action in &first.actions {
            let target = match action {
                Action::LogCall { target, .. } => *target,
                Action::CreateTask { target, .. } | Action::AddNote { target, .. } => Some(*target),
                other => panic!("{other:?} created though the manager chose {chosen:?}"),
            };
            assert_eq!(target, Some(Target::Entity(chosen)), "{case:?}");
        }
    }
    let carried = first.actions.iter().find_map(|action| match action {
        Action::LogCall { call, .. } | Action::CreateUnsorted { call, .. } => Some(call),
        _ => None,
    });
    let Some(carried) = carried else { return };
    let again = Case {
        delivered: Delivered {
            call_logged: true,
            entity: Some(lead(LEAD)),
            logged_with_link: carried.link.is_some(),
            logged_with_result: first_keys.contains(&"call") && case.result.is_some(),
        },
        ..case.clone()
    }
    .plan();
    let again_keys = keys(&again);
    assert!(
        again_keys.iter().all(|key| !call_keys.contains(key)),
        "the call written twice: {again_keys:?} after {first_keys:?} for {case:?}"
    );
    let follow_ups: Vec<&str> = first_keys.iter().copied().filter(|key| !call_keys.contains(key)).collect();
    assert_eq!(again_keys, follow_ups, "replanning asks for another write: {case:?}");
    assert_eq!(again.skipped, None);
}

#[test]
fn the_notes_tasks_and_names_are_written_in_the_texts_given() {
    let portuguese = Texts::from_strings(|key| {
        Some(
            match key {
                "call_from" => "Chamada de #NUMBER#",
                "call_back" => "Retornar a ligação para #NUMBER#: chamada perdida",
                _ => return None,
            }
            .to_owned(),
        )
    });
    let mut case = Case::new(CallDirection::Inbound, CallStatus::Missed, false);
    case.rules.unknown_incoming.create = UnknownCallerEntity::ContactAndLead;
    case.texts = portuguese;
    let actions = case.plan().actions;
    let texts: Vec<String> = actions
        .iter()
        .filter_map(|action| match action {
            Action::CreateTask { text, .. } => Some(text.clone()),
            Action::CreateContactAndLead { lead_name, .. } => Some(lead_name.clone()),
            _ => None,
        })
        .collect();
    assert!(texts.contains(&"Chamada de +55 11 99999-0000".to_owned()), "{texts:?}");
    assert!(texts.contains(&"Retornar a ligação para +55 11 99999-0000: chamada perdida".to_owned()), "{texts:?}");
}
