//! The manager's call result: the one set of checks the widget runs before sending and the server on receipt.

use shared::rules::{
    CallResult, EntityKind, EntityRef, FollowUp, KommoCallStatus, MAX_FOLLOW_UP_CHARS, MAX_RESULT_NOTE_CHARS,
};
use shared::{FieldError, ValidationCode};

const NOW: i64 = 1_800_000_000;

fn valid() -> CallResult {
    CallResult {
        note: Some("Wants a quote".into()),
        call_status: KommoCallStatus::Success,
        quality: Some(5),
        follow_up: Some(FollowUp { text: "Send the quote".into(), due_at: NOW + 86_400 }),
        entity: Some(EntityRef { kind: EntityKind::Leads, id: 4101 }),
    }
}

fn refused(result: &CallResult) -> Vec<(String, ValidationCode)> {
    result.validate(NOW).into_iter().map(|FieldError { field, code }| (field, code)).collect()
}

#[test]
fn a_complete_result_and_a_bare_outcome_are_valid() {
    assert_eq!(refused(&valid()), []);
    let bare =
        CallResult { note: None, call_status: KommoCallStatus::Busy, quality: None, follow_up: None, entity: None };
    assert_eq!(refused(&bare), []);
}

#[test]
fn each_bad_field_is_named_with_its_code() {
    type Mutation = fn(&mut CallResult);
    let cases: [(Mutation, &str, ValidationCode); 7] = [
        (|r| r.note = Some("n".repeat(MAX_RESULT_NOTE_CHARS + 1)), "note", ValidationCode::TooLong),
        (|r| r.quality = Some(0), "quality", ValidationCode::OutOfRange),
        (|r| r.quality = Some(6), "quality", ValidationCode::OutOfRange),
        (|r| r.follow_up.as_mut().unwrap().text = "  ".into(), "follow_up.text", ValidationCode::Required),
        (
            |r| r.follow_up.as_mut().unwrap().text = "t".repeat(MAX_FOLLOW_UP_CHARS + 1),
            "follow_up.text",
            ValidationCode::TooLong,
        ),
        (|r| r.follow_up.as_mut().unwrap().due_at = NOW - 3 * 86_400, "follow_up.due_at", ValidationCode::OutOfRange),
        (|r| r.entity = Some(EntityRef { kind: EntityKind::Contacts, id: 0 }), "entity.id", ValidationCode::OutOfRange),
    ];
    for (mutate, field, code) in cases {
        let mut result = valid();
        mutate(&mut result);
        assert_eq!(refused(&result), [(field.to_owned(), code)], "{field}");
    }
    let mut late = valid();
    late.follow_up.as_mut().unwrap().due_at = NOW + 367 * 86_400;
    assert_eq!(refused(&late), [("follow_up.due_at".to_owned(), ValidationCode::OutOfRange)], "more than a year ahead");
}

#[test]
fn an_unknown_field_or_outcome_does_not_parse() {
    assert!(serde_json::from_str::<CallResult>(r#"{"call_status": 8}"#).is_err());
    assert!(serde_json::from_str::<CallResult>(r#"{"call_status": 4, "account_id": 1}"#).is_err());
    assert!(serde_json::from_str::<CallResult>(r#"{"call_status": 4}"#).is_ok());
}
