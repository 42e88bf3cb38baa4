//! Pure types and rules of the mesh: names, timestamps, FeedSync, entry payloads.
//! Nothing here does IO or knows about HTTP, SQL or XML.

pub mod entry;
pub mod feedsync;
pub mod names;
pub mod time;

pub use entry::{Entry, StoredItem};
pub use names::{CollectionName, DeviceName, UserName};
pub use time::Timestamp;
