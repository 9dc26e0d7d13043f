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
