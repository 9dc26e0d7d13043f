//! How long an organization's events are kept (wire doc §2.7 and §11).
//!
//! Current SDKs send one of two mutually exclusive bodies to
//! `PUT /organizations/{id}/audit_logs_retention`:
//! - `{"retention_period": "1_MONTH" … "11_MONTHS" | "1_YEAR" … "10_YEARS"}` (Node 11, Python 10.8);
//! - `{"retention_period_in_days": N}` with N = 30, 60 … 330 or 365, 730 … 3650 (deprecated).
//!
//! A month counts as 30 days and a year as 365, as WorkOS's day values show. Both forms answer
//! with `{"retention_period_in_days": N}`.

use serde_json::Value;

use crate::problem::{FieldProblem, FieldProblems};

/// Parses a retention update into a number of days.
///
/// # Errors
///
/// A problem naming the field when neither or both forms are given, or the value is not one of
/// the allowed periods.
pub fn parse_retention_update(body: &Value) -> Result<u32, Vec<FieldProblem>> {
    let mut problems = FieldProblems::default();
    let period = body.get("retention_period").filter(|v| !v.is_null());
    let days = body
        .get("retention_period_in_days")
        .filter(|v| !v.is_null());
    let result = match (period, days) {
        (Some(_), Some(_)) => {
            problems.push(
                "invalid_value",
                "retention_period",
                "give either retention_period or retention_period_in_days, not both",
            );
            None
        }
        (None, None) => {
            problems.push(
                "required",
                "retention_period",
                "retention_period (or retention_period_in_days) is required",
            );
            None
        }
        (Some(period), None) => {
            let parsed = period.as_str().and_then(period_days);
            if parsed.is_none() {
                problems.push(
                    "invalid_value",
                    "retention_period",
                    "retention_period must be one of 1_MONTH, 2_MONTHS … 11_MONTHS, 1_YEAR, 2_YEARS … 10_YEARS",
                );
            }
            parsed
        }
        (None, Some(days)) => {
            let parsed = days
                .as_u64()
                .and_then(|d| u32::try_from(d).ok())
                .filter(|d| allowed_days(*d));
            if parsed.is_none() {
                problems.push(
                    "invalid_value",
                    "retention_period_in_days",
                    "retention_period_in_days must be 30, 60 … 330 (30-day steps) or 365, 730 … 3650 (365-day steps)",
                );
            }
            parsed
        }
    };
    match result {
        Some(days) if problems.is_empty() => Ok(days),
        _ => Err(problems.into_vec()),
    }
}

fn period_days(period: &str) -> Option<u32> {
    let (count, unit) = period.split_once('_')?;
    let count: u32 = count.parse().ok()?;
    match (count, unit) {
        (1, "MONTH") => Some(30),
        (2..=11, "MONTHS") => Some(30 * count),
        (1, "YEAR") => Some(365),
        (2..=10, "YEARS") => Some(365 * count),
        _ => None,
    }
}

fn allowed_days(days: u32) -> bool {
    (days.is_multiple_of(30) && (30..=330).contains(&days))
        || (days.is_multiple_of(365) && (365..=3650).contains(&days))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_body_forms_become_days() {
        assert_eq!(
            parse_retention_update(&json!({"retention_period": "1_MONTH"})),
            Ok(30)
        );
        assert_eq!(
            parse_retention_update(&json!({"retention_period": "11_MONTHS"})),
            Ok(330)
        );
        assert_eq!(
            parse_retention_update(&json!({"retention_period": "1_YEAR"})),
            Ok(365)
        );
        assert_eq!(
            parse_retention_update(&json!({"retention_period": "10_YEARS"})),
            Ok(3650)
        );
        assert_eq!(
            parse_retention_update(&json!({"retention_period_in_days": 60})),
            Ok(60)
        );
        assert_eq!(
            parse_retention_update(&json!({"retention_period_in_days": 730})),
            Ok(730)
        );
    }

    #[test]
    fn anything_else_names_the_field() {
        for (body, field) in [
            (json!({"retention_period": "12_MONTHS"}), "retention_period"),
            (json!({"retention_period": "1_MONTHS"}), "retention_period"),
            (json!({"retention_period": 30}), "retention_period"),
            (
                json!({"retention_period_in_days": 31}),
                "retention_period_in_days",
            ),
            (
                json!({"retention_period_in_days": 360}),
                "retention_period_in_days",
            ),
            (
                json!({"retention_period_in_days": "30"}),
                "retention_period_in_days",
            ),
            (json!({}), "retention_period"),
            (
                json!({"retention_period": "1_YEAR", "retention_period_in_days": 365}),
                "retention_period",
            ),
        ] {
            let problems = parse_retention_update(&body).unwrap_err();
            assert_eq!(problems[0].field, field, "{body}");
        }
    }
}
