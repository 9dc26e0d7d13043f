//! The export formats, written from event objects ([`crate::record::event_object`]).
//!
//! **NDJSON**: one event object per line, as compact JSON, `\n`-terminated.
//!
//! **OCSF**: NDJSON of OCSF events, one per event object ([`crate::ocsf::api_activity`]: OCSF
//! 1.3.0 API Activity, the event object whole in `unmapped`).
//!
//! **CSV** (RFC 4180: comma-separated, CRLF line ends, a header row). Columns, in order:
//!
//! | column | content |
//! |---|---|
//! | `id` | `event_…` |
//! | `organization_id` | `org_…` |
//! | `sequence` | position in the organization's log, from 0 |
//! | `occurred_at`, `received_at` | `YYYY-MM-DDTHH:MM:SS.mmmZ` |
//! | `action` | e.g. `user.signed_in` |
//! | `version` | schema version named by the client, or empty |
//! | `actor_id`, `actor_type`, `actor_name` | the actor (name may be empty) |
//! | `actor_metadata` | compact JSON object, or empty |
//! | `targets` | compact JSON array of `{id, type, name?, metadata?}` |
//! | `location`, `user_agent` | the context |
//! | `metadata` | compact JSON object, or empty |
//!
//! A cell is quoted when it contains a comma, a double quote, CR or LF; inner quotes are
//! doubled. A cell a spreadsheet would run as a formula — one starting with `=`, `+`, `-`, `@`,
//! a tab or CR — is prefixed with a single quote `'` (OWASP "CSV injection"), so `=HYPERLINK(…)`
//! arrives as the text `'=HYPERLINK(…)`. Compatibility rule: columns may be appended, never
//! reordered or removed.

use std::borrow::Cow;

use serde_json::Value;

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Ndjson,
    Ocsf,
}

impl ExportFormat {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "csv" => Some(ExportFormat::Csv),
            "ndjson" => Some(ExportFormat::Ndjson),
            "ocsf" => Some(ExportFormat::Ocsf),
            _ => None,
        }
    }

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Ndjson => "ndjson",
            ExportFormat::Ocsf => "ocsf",
        }
    }

    /// The file name extension: the name, but `ocsf.ndjson` for OCSF, since tools pick a
    /// parser by extension and OCSF lines are NDJSON.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Ocsf => "ocsf.ndjson",
            other => other.as_str(),
        }
    }

    /// The text that opens a file of this format (the CSV header; nothing for the others).
    pub fn preamble(self) -> String {
        match self {
            ExportFormat::Csv => csv_header(),
            ExportFormat::Ndjson | ExportFormat::Ocsf => String::new(),
        }
    }

    /// Appends one event object in this format.
    pub fn write(self, event: &Value, out: &mut String) {
        match self {
            ExportFormat::Csv => csv_row(event, out),
            ExportFormat::Ndjson => ndjson_line(event, out),
            ExportFormat::Ocsf => ndjson_line(&crate::ocsf::api_activity(event), out),
        }
    }
}

pub const CSV_COLUMNS: [&str; 15] = [
    "id",
    "organization_id",
    "sequence",
    "occurred_at",
    "received_at",
    "action",
    "version",
    "actor_id",
    "actor_type",
    "actor_name",
    "actor_metadata",
    "targets",
    "location",
    "user_agent",
    "metadata",
];

/// The header row, CRLF-terminated.
pub fn csv_header() -> String {
    let mut line = CSV_COLUMNS.join(",");
    line.push_str("\r\n");
    line
}

/// Appends the CSV row of `event` (an event object) to `out`.
pub fn csv_row(event: &Value, out: &mut String) {
    let actor = &event["actor"];
    let context = &event["context"];
    let cells = [
        text(&event["id"]),
        text(&event["organization_id"]),
        text(&event["sequence"]),
        text(&event["occurred_at"]),
        text(&event["received_at"]),
        text(&event["action"]),
        text(&event["version"]),
        text(&actor["id"]),
        text(&actor["type"]),
        text(&actor["name"]),
        json_or_empty(&actor["metadata"]),
        json_or_empty(&event["targets"]),
        text(&context["location"]),
        text(&context["user_agent"]),
        json_or_empty(&event["metadata"]),
    ];
    write_csv_row(&cells, out);
}

/// Appends a row of cells, one per [`CSV_COLUMNS`] entry, quoting and neutralizing each as the
/// module docs say.
pub fn write_csv_row<S: AsRef<str>>(cells: &[S; CSV_COLUMNS.len()], out: &mut String) {
    for (index, cell) in cells.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_cell(cell.as_ref(), out);
    }
    out.push_str("\r\n");
}

/// A cell's text: a string as is, a number as JSON, null as nothing.
fn text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::Null => Cow::Borrowed(""),
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

fn json_or_empty(value: &Value) -> Cow<'_, str> {
    if value.is_null() {
        Cow::Borrowed("")
    } else {
        Cow::Owned(value.to_string())
    }
}

/// Appends the NDJSON line of `event` to `out`.
pub fn ndjson_line(event: &Value, out: &mut String) {
    out.push_str(&event.to_string());
    out.push('\n');
}

fn write_cell(cell: &str, out: &mut String) {
    let neutralize = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = cell.contains([',', '"', '\r', '\n']);
    if quote {
        out.push('"');
    }
    if neutralize {
        out.push('\'');
    }
    if quote {
        for (index, part) in cell.split('"').enumerate() {
            if index > 0 {
                out.push_str("\"\"");
            }
            out.push_str(part);
        }
        out.push('"');
    } else {
        out.push_str(cell);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(event: Value) -> String {
        let mut out = String::new();
        csv_row(&event, &mut out);
        out
    }

    #[test]
    fn writes_every_column_in_order() {
        let event = json!({"id": "event_1", "organization_id": "org_1", "sequence": 7, "occurred_at": "t1", "received_at": "t2",
            "action": "a.b", "version": 2, "actor": {"id": "u1", "type": "user", "name": "Jon", "metadata": {"r": "x"}},
            "targets": [{"id": "t", "type": "team"}], "context": {"location": "::1", "user_agent": "UA"}, "metadata": {"k": 1}});
        assert_eq!(
            row(event),
            "event_1,org_1,7,t1,t2,a.b,2,u1,user,Jon,\"{\"\"r\"\":\"\"x\"\"}\",\"[{\"\"id\"\":\"\"t\"\",\"\"type\"\":\"\"team\"\"}]\",::1,UA,\"{\"\"k\"\":1}\"\r\n"
        );
        assert_eq!(csv_header().split(',').count(), 15);
    }

    #[test]
    fn neutralizes_formulas_and_quotes_per_rfc_4180() {
        let event = |name: &str| json!({"actor": {"id": "u", "type": "user", "name": name}, "targets": [], "context": {}});
        let name_cell = |name: &str| {
            row(event(name))
                .split(',')
                .nth(9)
                .map(str::to_owned)
                .unwrap_or_default()
        };
        assert_eq!(name_cell("=1+2"), "'=1+2");
        assert_eq!(name_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(name_cell("-3"), "'-3");
        assert_eq!(name_cell("plain"), "plain");
        assert!(
            row(event("=HYPERLINK(\"http://x\",\"y\")")).contains("\"'=HYPERLINK(\"\"http://x\"\"")
        );
        assert!(row(event("line\nbreak")).contains("\"line\nbreak\""));
    }
}
