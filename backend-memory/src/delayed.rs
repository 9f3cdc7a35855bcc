//! The delayed events of one stream: held by due time, each under a unique id.
//!
//! Invariant: `by_due` and `due_of` hold the same ids; an id is held once (adding it again
//! replaces its due time and fields, as `ZADD` and `HSET` do on Redis).

use std::collections::{BTreeMap, HashMap};

use pulse::backend::Fields;

use crate::journal::{Change, Marks};

/// Delayed events, earliest due first (ties in id order).
#[derive(Debug, Default)]
pub(crate) struct Delayed {
    by_due: BTreeMap<(u64, String), Fields>,
    due_of: HashMap<String, u64>,
    /// Ids added or removed (journaled backends).
    marks: Marks<String>,
}

impl Delayed {
    /// None held, journaled when `journaled`.
    pub(crate) fn new(journaled: bool) -> Self {
        Delayed {
            marks: Marks::new(journaled),
            ..Delayed::default()
        }
    }

    /// Holds `fields` as `id`, due at `due_ms` (replacing an earlier add of `id`).
    pub(crate) fn insert(&mut self, id: &str, due_ms: u64, fields: Fields) {
        self.remove(id);
        self.due_of.insert(id.to_owned(), due_ms);
        self.by_due.insert((due_ms, id.to_owned()), fields);
        self.marks.mark(id.to_owned());
    }

    /// Forgets `id`; whether it was held.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        match self.due_of.remove(id) {
            Some(due) => {
                self.marks.mark(id.to_owned());
                self.by_due.remove(&(due, id.to_owned())).is_some()
            }
            None => false,
        }
    }

    /// The journal's changes: everything (`full`) or what was marked.
    pub(crate) fn changes(&mut self, key: &str, full: bool, out: &mut Vec<Change>) {
        let marks = self.marks.take();
        let change = |id: &str, held: Option<(u64, Fields)>| Change::Delayed {
            key: key.to_owned(),
            id: id.to_owned(),
            held,
        };
        if full {
            for ((due, id), fields) in &self.by_due {
                out.push(change(id, Some((*due, fields.clone()))));
            }
        } else {
            for id in marks {
                let held = self
                    .due_of
                    .get(&id)
                    .and_then(|due| Some((*due, self.by_due.get(&(*due, id.clone()))?.clone())));
                out.push(change(&id, held));
            }
        }
    }

    /// The earliest due time held.
    pub(crate) fn next_due(&self) -> Option<u64> {
        self.by_due.keys().next().map(|(due, _)| *due)
    }

    /// Takes the earliest event if it is due by `now_ms`.
    pub(crate) fn pop_due(&mut self, now_ms: u64) -> Option<Fields> {
        let entry = self.by_due.first_entry()?;
        if entry.key().0 > now_ms {
            return None;
        }
        let ((_, id), fields) = entry.remove_entry();
        self.due_of.remove(&id);
        self.marks.mark(id);
        Some(fields)
    }

    /// How many are held.
    pub(crate) fn len(&self) -> usize {
        self.due_of.len()
    }

    /// Whether none is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.due_of.is_empty()
    }
}
