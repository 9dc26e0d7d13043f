//! Cursor pagination shared by both backends' list queries.

use crate::model::{Order, Page, PageRequest};

/// How one page of a cursor-paginated list is read: which way to scan and from where.
///
/// With `order=desc`, `after=X` continues with keys below X; `before=X` returns the keys just
/// above X, scanned upwards and then reversed, so the page still reads in descending order.
pub(crate) struct Window {
    pub(crate) cursor: Option<String>,
    pub(crate) comparison: &'static str,
    pub(crate) direction: &'static str,
    reversed: bool,
}

impl Window {
    pub(crate) fn new(page: &PageRequest) -> Self {
        let descending = page.order == Order::Desc;
        match (&page.before, &page.after) {
            (Some(before), _) => Window {
                cursor: Some(before.clone()),
                comparison: if descending { ">" } else { "<" },
                direction: if descending { "ASC" } else { "DESC" },
                reversed: true,
            },
            (None, Some(after)) => Window {
                cursor: Some(after.clone()),
                comparison: if descending { "<" } else { ">" },
                direction: if descending { "DESC" } else { "ASC" },
                reversed: false,
            },
            (None, None) => Window {
                cursor: None,
                comparison: "",
                direction: if descending { "DESC" } else { "ASC" },
                reversed: false,
            },
        }
    }

    /// Trims the extra row fetched to detect more items, and restores the requested order.
    pub(crate) fn page<T>(&self, mut rows: Vec<T>, limit: usize) -> Page<T> {
        let more = rows.len() > limit;
        rows.truncate(limit);
        if self.reversed {
            rows.reverse();
            Page {
                items: rows,
                more_before: more,
                more_after: true,
            }
        } else {
            Page {
                items: rows,
                more_before: self.cursor.is_some(),
                more_after: more,
            }
        }
    }
}
