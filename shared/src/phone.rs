//! Phone numbers: the client's number as a provider sends it → E.164, the digits to search Kommo's
//! contacts with, and whether a contact's stored number is the same one.
//!
//! Parsing and validation use the `phonenumber` crate (Google's libphonenumber metadata), with the
//! account's country (Kommo's `/api/v4/account` `country`, ISO 3166 alpha-2) for numbers written in
//! local format.

use phonenumber::country::{self, Source};
use phonenumber::{Mode, PhoneNumber};

/// How many trailing digits identify a number when one side can't be parsed (Kommo itself matches
/// calls to contacts on the last 10 digits).
const TAIL_DIGITS: usize = 10;

/// The number in E.164 (`+5511999990000`), or `None` when it is not a valid phone number.
///
/// `country` (e.g. `"BR"`) says how to read a number written in local format (`(11) 99999-0000`,
/// `011 99999-0000`, `0034 612…` with the country's international prefix); an unknown code counts as
/// none. A number in international format without its `+` (`5511999990000`, as many providers send it)
/// is accepted when it doesn't read as a valid local number. Refused: anything with letters (words,
/// vanity numbers), an extension, or digits that don't form a valid number.
pub fn normalize(raw: &str, country: Option<&str>) -> Option<String> {
    parse(raw, country).map(|number| number.format().mode(Mode::E164).to_string())
}

/// The number in E.164 when it reads as one ([`normalize`]), else as it was sent, trimmed: the one key a
/// number is kept and looked up under.
pub fn e164_or_trimmed(raw: &str, country: Option<&str>) -> String {
    normalize(raw, country).unwrap_or_else(|| raw.trim().to_owned())
}

/// The digits to give Kommo's contact search (`GET /api/v4/contacts?query=`): the national significant
/// number (`11999990000` for `+5511999990000`), which is contained in a stored number whether the
/// contact has it in international or in local format. A value that isn't a valid E.164 number gives
/// its last 10 digits (all of them when shorter).
///
/// Kommo's search matches partial digits: filter its hits with [`same_number`].
pub fn search_key(e164_or_raw: &str) -> String {
    match parse(e164_or_raw, None) {
        Some(number) => number.national().to_string(),
        None => tail(&digits(e164_or_raw)).to_owned(),
    }
}

/// Whether two numbers are the same: both normalise (with `country` for local formats) to the same
/// E.164 number, or, when one of them can't be normalised, their last 10 digits are equal (all their
/// digits when either has fewer than 10).
pub fn same_number(a: &str, b: &str, country: Option<&str>) -> bool {
    if let (Some(a), Some(b)) = (normalize(a, country), normalize(b, country)) {
        return a == b;
    }
    let (a, b) = (digits(a), digits(b));
    if a.is_empty() || b.is_empty() {
        return false;
    }
    if a.len() < TAIL_DIGITS || b.len() < TAIL_DIGITS {
        return a.trim_start_matches('0') == b.trim_start_matches('0');
    }
    tail(&a) == tail(&b)
}

/// The number for people to read, in international format (`+55 11 99999-0000`); a value that isn't a
/// valid E.164 number is returned as it is.
pub fn display(e164: &str) -> String {
    match parse(e164, None) {
        Some(number) => number.format().mode(Mode::International).to_string(),
        None => e164.trim().to_owned(),
    }
}

/// The number as people of the account's `country` write it: in national format when it is a number of
/// that country (`(11) 99999-0000` for a Brazilian account), in international format otherwise; a value
/// that isn't a valid number is returned as it is.
pub fn display_for(raw: &str, country: Option<&str>) -> String {
    let Some(number) = parse(raw, country) else { return raw.trim().to_owned() };
    let home = country.and_then(|code| code.trim().to_ascii_uppercase().parse::<country::Id>().ok());
    let mode = if home.is_some() && number.country().id() == home { Mode::National } else { Mode::International };
    number.format().mode(mode).to_string()
}

fn parse(raw: &str, country: Option<&str>) -> Option<PhoneNumber> {
    let raw = raw.trim();
    if raw.is_empty() || raw.chars().any(char::is_alphabetic) {
        return None;
    }
    let valid = |number: PhoneNumber| (number.extension().is_none() && number.is_valid()).then_some(number);
    let international = |digits: &str| phonenumber::parse(None, format!("+{digits}")).ok().and_then(valid);
    // A number with its country code is read without the account's country: given one, the crate
    // strips that country's national prefix from the other country's number (`+55 11…` read for the
    // US loses its `11`).
    if raw.starts_with('+') {
        return phonenumber::parse(None, raw).ok().and_then(valid);
    }
    let region = country.and_then(|code| code.trim().to_ascii_uppercase().parse::<country::Id>().ok());
    let all_digits = digits(raw);
    match region.and_then(|region| phonenumber::parse(Some(region), raw).ok()) {
        // The country's international prefix (`00`, `011`) and a country code: read again as
        // `+<code><rest>`, for the reason above.
        Some(number) if number.code().source() == Source::Idd => {
            let code = number.code().value().to_string();
            (1..all_digits.len())
                .filter(|&start| all_digits[start..].starts_with(&code))
                .find_map(|start| international(&all_digits[start..]))
        }
        Some(number) if number.is_valid() => valid(number),
        // International format without the `+`; a national trunk prefix (0) rules it out.
        _ if !raw.starts_with('0') => international(&all_digits),
        _ => None,
    }
}

fn digits(value: &str) -> String {
    value.chars().filter(char::is_ascii_digit).collect()
}

fn tail(digits: &str) -> &str {
    &digits[digits.len().saturating_sub(TAIL_DIGITS)..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_normalise_to_e164_in_local_and_international_formats() {
        // The lookup key: E.164 when the number reads as one, else the value as sent, trimmed.
        assert_eq!(e164_or_trimmed(" (11) 99999-0000 ", Some("BR")), "+5511999990000");
        assert_eq!(e164_or_trimmed(" ext 101 ", Some("BR")), "ext 101");
        let cases: &[(&str, Option<&str>, &str)] = &[
            // Brazil: international, without the +, local with area code, with the trunk prefix,
            // with a carrier selection code.
            ("+55 11 99999-0000", None, "+5511999990000"),
            ("+5511999990000", Some("US"), "+5511999990000"),
            ("5511999990000", None, "+5511999990000"),
            ("5511999990000", Some("BR"), "+5511999990000"),
            ("5511999990000", Some("US"), "+5511999990000"),
            ("(11) 99999-0000", Some("BR"), "+5511999990000"),
            ("011 99999-0000", Some("BR"), "+5511999990000"),
            ("0 15 11 99999-0000", Some("br"), "+5511999990000"),
            ("11 3333-4444", Some("BR"), "+551133334444"),
            // United States.
            ("+1 202-555-0123", None, "+12025550123"),
            ("(202) 555-0123", Some("US"), "+12025550123"),
            ("1 202 555 0123", Some("US"), "+12025550123"),
            ("202.555.0123", Some("US"), "+12025550123"),
            // Mexico.
            ("+52 55 1234 5678", None, "+525512345678"),
            ("55 1234 5678", Some("MX"), "+525512345678"),
            // Spain, also with the international prefix 00.
            ("+34 612 34 56 78", None, "+34612345678"),
            ("612 34 56 78", Some("ES"), "+34612345678"),
            ("0034 612 34 56 78", Some("ES"), "+34612345678"),
            // Another country's number dialled with the account country's international prefix.
            ("011 55 11 99999-0000", Some("US"), "+5511999990000"),
            ("00 55 11 99999-0000", Some("ES"), "+5511999990000"),
            ("0011 1 202 555 0123", Some("AU"), "+12025550123"),
            ("00 44 20 7946 0000", Some("MX"), "+442079460000"),
            // Another country's number with its +, whatever the account's country.
            ("+55 81 99999-0000", Some("RU"), "+5581999990000"),
            ("+44 20 7946 0000", Some("BR"), "+442079460000"),
            // United Kingdom: the trunk 0 goes.
            ("+44 20 7946 0000", None, "+442079460000"),
            ("020 7946 0000", Some("GB"), "+442079460000"),
            ("07911 123456", Some("GB"), "+447911123456"),
            // Italy keeps its leading 0.
            ("+39 06 1234 5678", None, "+390612345678"),
        ];
        for (raw, country, expected) in cases {
            assert_eq!(normalize(raw, *country).as_deref(), Some(*expected), "{raw} in {country:?}");
        }
    }

    #[test]
    fn garbage_extensions_and_impossible_numbers_are_refused() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", Some("BR")),
            ("   ", None),
            ("anonymous", None),
            ("abc", Some("US")),
            ("hello +5511999990000", None),
            ("+5511999990000abc", None),
            ("1-800-FLOWERS", Some("US")),
            ("+5511999990000 ext. 123", None),
            ("+1 202 555 0123 x12", None),
            ("+55 11 99999-0000;ext=1", None),
            ("12", None),
            ("101", Some("BR")),
            ("+55119999", None),
            ("+55 11 99999-00001234", None),
            // Local format without a country to read it with.
            ("(11) 99999-0000", None),
            ("020 7946 0000", None),
            // A local number that is valid nowhere.
            ("2025550123", Some("BR")),
            ("612345678", Some("XX")),
        ];
        for (raw, country) in cases {
            assert_eq!(normalize(raw, *country), None, "{raw:?} in {country:?}");
        }
    }

    #[test]
    fn the_search_key_is_the_national_number() {
        let cases: &[(&str, &str)] = &[
            ("+5511999990000", "11999990000"),
            ("+12025550123", "2025550123"),
            ("+525512345678", "5512345678"),
            ("+34612345678", "612345678"),
            ("+442079460000", "2079460000"),
            ("+390612345678", "0612345678"),
            // Not E.164: its last 10 digits, or all when fewer.
            ("(011) 3333-4444 99", "3333444499"),
            ("0800 123", "0800123"),
            ("", ""),
        ];
        for (value, expected) in cases {
            assert_eq!(search_key(value), *expected, "{value}");
        }
    }

    #[test]
    fn search_hits_are_kept_only_for_the_same_number() {
        let cases: &[(&str, &str, Option<&str>, bool)] = &[
            // Stored in local format, read with the account's country.
            ("+5511999990000", "(11) 99999-0000", Some("BR"), true),
            ("+5511999990000", "+55 (11) 99999-0000", None, true),
            ("+5511999990000", "011 99999-0000", Some("BR"), true),
            ("+12025550123", "202-555-0123", Some("US"), true),
            ("+442079460000", "020 7946 0000", Some("GB"), true),
            ("+34612345678", "0034 612 345 678", Some("ES"), true),
            // Partial matches Kommo's search returns: another number containing the digits.
            ("+5511999990000", "+55 11 99999-00001", Some("BR"), false),
            ("+5511999990000", "+55 21 99999-0000", Some("BR"), false),
            ("+12025550123", "+1 302 555 0123", Some("US"), false),
            // The same digits in another country.
            ("+525512345678", "+1 551 234 5678", None, false),
            // A stored value that can't be normalised: the last 10 digits decide.
            ("+5511999990000", "tel. 11 99999-0000", Some("BR"), true),
            ("+5511999990000", "phone 11 98888-0000", Some("BR"), false),
            // Short values must match entirely.
            ("101", "0101", None, true),
            ("101", "1101", None, false),
            ("+5511999990000", "", Some("BR"), false),
            ("", "", None, false),
        ];
        for (a, b, country, same) in cases {
            assert_eq!(same_number(a, b, *country), *same, "{a} vs {b} in {country:?}");
            assert_eq!(same_number(b, a, *country), *same, "{b} vs {a} in {country:?}");
        }
    }

    #[test]
    fn numbers_display_in_international_format() {
        let cases: &[(&str, &str)] = &[
            ("+5511999990000", "+55 11 99999-0000"),
            ("+12025550123", "+1 202-555-0123"),
            ("+525512345678", "+52 55 1234 5678"),
            ("+34612345678", "+34 612 34 56 78"),
            ("+442079460000", "+44 20 7946 0000"),
            ("anonymous", "anonymous"),
            (" 101 ", "101"),
        ];
        for (value, expected) in cases {
            assert_eq!(display(value), *expected, "{value}");
        }
    }
}

#[cfg(test)]
mod display_tests {
    use super::display_for;

    #[test]
    fn a_number_reads_as_the_accounts_country_writes_it() {
        assert_eq!(display_for("+5511999990000", Some("BR")), "(11) 99999-0000");
        assert_eq!(display_for("+5511999990000", Some("US")), "+55 11 99999-0000");
        assert_eq!(display_for("+5511999990000", None), "+55 11 99999-0000");
        assert_eq!(display_for("11 99999-0000", Some("br")), "(11) 99999-0000");
        assert_eq!(display_for("not a number", Some("BR")), "not a number");
    }
}
