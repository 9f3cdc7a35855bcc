//! The cases, one `pub async fn` each, grouped by capability. Every case takes a [`Ctx`]
//! and panics on a contract violation.
//!
//! [`Ctx`]: crate::Ctx

mod bad_input;
mod call_faults;
mod concurrent_reads;
mod groups;
mod handles;
mod isolation;
mod keys;
mod leases;
mod map_edits;
mod maps;
mod pool;
mod pubsub;
mod reads;
mod rmap;
mod rpc;
mod scale;
mod streaming;
mod streams;

pub use bad_input::*;
pub use call_faults::*;
pub use concurrent_reads::*;
pub use groups::*;
pub use handles::*;
pub use isolation::*;
pub use keys::*;
pub use leases::*;
pub use map_edits::*;
pub use maps::*;
pub use pool::*;
pub use pubsub::*;
pub use reads::*;
pub use rmap::*;
pub use rpc::*;
pub use scale::*;
pub use streaming::*;
pub use streams::*;

use bytes::Bytes;
use pulse::backend::Fields;

/// One-field entry `n=<name>`.
pub(crate) fn entry(name: &str) -> Fields {
    vec![("n".to_owned(), Bytes::copy_from_slice(name.as_bytes()))]
}

/// The `n` field of an entry as text.
pub(crate) fn name_of(e: &pulse::backend::StreamEntry) -> String {
    String::from_utf8_lossy(e.field("n").expect("field n")).into_owned()
}
