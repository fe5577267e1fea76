//! Times as the stand-ins print them, in UTC.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `YYYY-MM-DD HH:MM:SS`, as Zadarma's notifications and Asterisk's CDR print times.
pub fn date_time(unix: i64) -> String {
    let at = at(unix);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// An RFC 2822 date (`Mon, 16 Aug 2010 03:45:01 +0000`), as Twilio's `Timestamp` carries it.
pub fn rfc2822(unix: i64) -> String {
    at(unix).format(&Rfc2822).expect("a UTC time within RFC 2822's years formats")
}
