//! Instants in time: parsed from any ISO-8601 date-time a WorkOS client sends, written out as
//! `YYYY-MM-DDTHH:MM:SS.mmmZ`.
//!
//! Input forms (wire doc §2.1): Node sends `Date.toISOString()` (`…T10:00:00.000Z`), Python 10
//! sends `Z`, older Python sends `+HH:MM` or no offset at all, and hand-written clients send
//! anything RFC 3339 allows. A missing offset means UTC. Fractions of any length are accepted
//! and truncated to milliseconds, the precision every response uses (Python 3.10's
//! `fromisoformat` accepts only 0, 3 or 6 fraction digits, so output always has exactly 3).

use std::fmt;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// A UTC instant with millisecond precision, stored as milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Why a date-time string was refused. The message is written for the API caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TimestampError(&'static str);

impl Timestamp {
    pub fn from_unix_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    pub fn unix_millis(self) -> i64 {
        self.0
    }

    /// The current time, read from the system clock.
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    fn from_datetime(datetime: OffsetDateTime) -> Self {
        let nanos = datetime.unix_timestamp_nanos();
        Timestamp(nanos.div_euclid(1_000_000) as i64)
    }

    /// Adds a (possibly negative) number of milliseconds.
    pub fn plus_millis(self, millis: i64) -> Self {
        Timestamp(self.0.saturating_add(millis))
    }

    /// Parses an ISO-8601 / RFC 3339 date-time: `YYYY-MM-DD`, `T` (or a space), `HH:MM[:SS[.f…]]`,
    /// then `Z`, `±HH:MM`, `±HHMM`, `±HH` or nothing (UTC).
    ///
    /// # Errors
    ///
    /// A [`TimestampError`] naming the part that is malformed or out of range.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let mut cursor = Cursor(text.as_bytes());
        let year = cursor
            .digits(4)
            .ok_or(TimestampError("expected a 4-digit year"))?;
        cursor.expect(b'-', "expected '-' after the year")?;
        let month = cursor
            .digits(2)
            .ok_or(TimestampError("expected a 2-digit month"))?;
        cursor.expect(b'-', "expected '-' after the month")?;
        let day = cursor
            .digits(2)
            .ok_or(TimestampError("expected a 2-digit day"))?;
        match cursor.next() {
            Some(b'T' | b't' | b' ') => {}
            _ => {
                return Err(TimestampError(
                    "expected a date-time such as 2026-08-01T10:00:00.000Z",
                ));
            }
        }
        let hour = cursor
            .digits(2)
            .ok_or(TimestampError("expected a 2-digit hour"))?;
        cursor.expect(b':', "expected ':' after the hour")?;
        let minute = cursor
            .digits(2)
            .ok_or(TimestampError("expected 2-digit minutes"))?;
        let mut second = 0;
        let mut nanos = 0u32;
        if cursor.peek() == Some(b':') {
            cursor.next();
            second = cursor
                .digits(2)
                .ok_or(TimestampError("expected 2-digit seconds"))?;
            if matches!(cursor.peek(), Some(b'.' | b',')) {
                cursor.next();
                nanos = cursor.fraction()?;
            }
        }
        let offset_seconds = cursor.offset()?;
        if !cursor.0.is_empty() {
            return Err(TimestampError("unexpected characters after the date-time"));
        }

        let month = u8::try_from(month)
            .ok()
            .and_then(|m| Month::try_from(m).ok())
            .ok_or(TimestampError("month out of range"))?;
        let date = Date::from_calendar_date(year as i32, month, day as u8)
            .map_err(|_| TimestampError("day out of range for the month"))?;
        let time = Time::from_hms_nano(hour as u8, minute as u8, second as u8, nanos)
            .map_err(|_| TimestampError("time of day out of range"))?;
        let offset = UtcOffset::from_whole_seconds(offset_seconds)
            .map_err(|_| TimestampError("UTC offset out of range"))?;
        Ok(Self::from_datetime(
            PrimitiveDateTime::new(date, time).assume_offset(offset),
        ))
    }
}

impl fmt::Display for Timestamp {
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the one form every response uses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.written() {
            // ASCII digits and separators only.
            Some(text) => f.write_str(std::str::from_utf8(&text).unwrap_or_default()),
            None => self.fmt_through_calendar(f),
        }
    }
}

/// Milliseconds from the Unix epoch to 0000-01-01T00:00:00.000Z and to the end of 9999: the
/// years [`Timestamp::written`] writes as four digits.
const FIRST_WRITTEN_MILLIS: i64 = -62_167_219_200_000;
const LAST_WRITTEN_MILLIS: i64 = 253_402_300_799_999;

const MILLIS_A_DAY: i64 = 86_400_000;

impl Timestamp {
    /// The text of an instant in years 0 to 9999, written by arithmetic alone: every stored
    /// event's `occurred_at` and `received_at` are written several times on the ingest path,
    /// where going through a calendar type and the formatting machinery cost as much as
    /// writing the rest of the event.
    fn written(self) -> Option<[u8; 24]> {
        if !(FIRST_WRITTEN_MILLIS..=LAST_WRITTEN_MILLIS).contains(&self.0) {
            return None;
        }
        let (year, month, day) = civil_from_days(self.0.div_euclid(MILLIS_A_DAY));
        let of_day = self.0.rem_euclid(MILLIS_A_DAY);
        let (hour, minute) = (of_day / 3_600_000, of_day / 60_000 % 60);
        let (second, milli) = (of_day / 1_000 % 60, of_day % 1_000);
        let mut text = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut value: i64| {
            for digit in text[at..at + width].iter_mut().rev() {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, hour);
        put(14, 2, minute);
        put(17, 2, second);
        put(20, 3, milli);
        Some(text)
    }

    /// Writes any instant through the `time` crate's calendar: the years [`Timestamp::written`]
    /// does not cover (an instant out of its range is written as the epoch).
    fn fmt_through_calendar(self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let datetime = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            datetime.year(),
            u8::from(datetime.month()),
            datetime.day(),
            datetime.hour(),
            datetime.minute(),
            datetime.second(),
            datetime.millisecond()
        )
    }
}

/// The proleptic Gregorian year, month and day of the day `days` after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`: eras of 400 years, years starting in March so that the leap
/// day comes last).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn next(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    fn expect(&mut self, byte: u8, message: &'static str) -> Result<(), TimestampError> {
        if self.next() == Some(byte) {
            Ok(())
        } else {
            Err(TimestampError(message))
        }
    }

    fn digits(&mut self, count: usize) -> Option<u32> {
        let digits = self.0.get(..count)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.0 = &self.0[count..];
        Some(
            digits
                .iter()
                .fold(0, |acc, d| acc * 10 + u32::from(d - b'0')),
        )
    }

    /// Up to nine fraction digits are significant; more are accepted and ignored.
    fn fraction(&mut self) -> Result<u32, TimestampError> {
        let len = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return Err(TimestampError("expected digits after the decimal point"));
        }
        let mut nanos = 0u32;
        for position in 0..9 {
            let digit = self
                .0
                .get(position)
                .filter(|_| position < len)
                .map_or(0, |d| d - b'0');
            nanos = nanos * 10 + u32::from(digit);
        }
        self.0 = &self.0[len..];
        Ok(nanos)
    }

    fn offset(&mut self) -> Result<i32, TimestampError> {
        let sign = match self.peek() {
            None => return Ok(0),
            Some(b'Z' | b'z') => {
                self.next();
                return Ok(0);
            }
            Some(b'+') => 1,
            Some(b'-') => -1,
            Some(_) => {
                return Err(TimestampError(
                    "expected 'Z' or a UTC offset such as +02:00",
                ));
            }
        };
        self.next();
        let hours = self
            .digits(2)
            .ok_or(TimestampError("expected a 2-digit offset hour"))?;
        if self.peek() == Some(b':') {
            self.next();
        }
        let minutes = if self.0.is_empty() {
            0
        } else {
            self.digits(2)
                .ok_or(TimestampError("expected 2-digit offset minutes"))?
        };
        if hours > 23 || minutes > 59 {
            return Err(TimestampError("UTC offset out of range"));
        }
        Ok(sign * (hours as i32 * 3600 + minutes as i32 * 60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the calendar path writes, to hold the arithmetic one to it.
    struct ThroughCalendar(Timestamp);

    impl fmt::Display for ThroughCalendar {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fmt_through_calendar(f)
        }
    }

    #[test]
    fn an_instant_is_written_as_the_calendar_writes_it() {
        let mut millis: Vec<i64> = vec![
            0,
            -1,
            1,
            FIRST_WRITTEN_MILLIS,
            FIRST_WRITTEN_MILLIS - 1,
            LAST_WRITTEN_MILLIS,
            LAST_WRITTEN_MILLIS + 1,
            951_782_400_000,    // 2000-02-29
            -2_203_891_200_000, // 1900-03-01
            4_107_542_399_999,  // 2100-02-28T23:59:59.999
            1_785_578_400_001,
            i64::MIN,
            i64::MAX,
        ];
        // A deterministic spread over the whole range, and every day of a few leap cycles.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let span = (LAST_WRITTEN_MILLIS - FIRST_WRITTEN_MILLIS) as u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            millis.push(FIRST_WRITTEN_MILLIS + (state % span) as i64);
        }
        millis.extend((0..3_000).map(|day| 946_684_800_000 + day * MILLIS_A_DAY - 1));
        for value in millis {
            let timestamp = Timestamp::from_unix_millis(value);
            assert_eq!(
                timestamp.to_string(),
                ThroughCalendar(timestamp).to_string(),
                "{value} ms"
            );
        }
    }

    fn roundtrip(input: &str) -> String {
        Timestamp::parse(input)
            .map(|t| t.to_string())
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn accepts_every_form_workos_clients_send() {
        assert_eq!(
            roundtrip("2026-08-01T10:00:00.000Z"),
            "2026-08-01T10:00:00.000Z"
        );
        assert_eq!(
            roundtrip("2026-08-01T10:00:00Z"),
            "2026-08-01T10:00:00.000Z"
        );
        assert_eq!(
            roundtrip("2026-08-01T12:00:00.250+02:00"),
            "2026-08-01T10:00:00.250Z"
        );
        assert_eq!(
            roundtrip("2026-08-01T05:30:00-0430"),
            "2026-08-01T10:00:00.000Z"
        );
        assert_eq!(
            roundtrip("2026-08-01T10:00:00.000"),
            "2026-08-01T10:00:00.000Z"
        );
        assert_eq!(roundtrip("2026-08-01 10:00"), "2026-08-01T10:00:00.000Z");
        assert_eq!(
            roundtrip("2026-08-01T10:00:00.123456789Z"),
            "2026-08-01T10:00:00.123Z"
        );
        assert_eq!(
            roundtrip("1969-12-31T23:59:59.999Z"),
            "1969-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn refuses_what_is_not_a_date_time() {
        for bad in [
            "",
            "yesterday",
            "2026-08-01",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-08-01T24:00:00Z",
            "2026-08-01T10:00:00.Z",
            "2026-08-01T10:00:00Zjunk",
            "2026-08-01T10:00:00+25:00",
            "२०२६-08-01T10:00:00Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
