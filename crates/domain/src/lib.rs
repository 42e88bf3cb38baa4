//! Pure types and rules of the mesh: names, timestamps, FeedSync, entry payloads.
//! Nothing here does IO or knows about HTTP, SQL or XML; this crate depends on none of
//! them, so the compiler keeps it so. The hub and every connector share these types.
#![forbid(unsafe_code)]

pub mod activity;
pub mod entry;
pub mod feedsync;
pub mod identity;
pub mod names;
pub mod search;
pub mod time;

pub use entry::{Entry, StoredItem};
pub use names::{CollectionName, DeviceName, UserName};
pub use time::Timestamp;
