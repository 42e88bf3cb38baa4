//! The use cases' error: what went wrong, in the caller's terms. The HTTP edge maps each
//! variant to one status (`web::error`); the CLI prints it. Reasons are one line, fit to
//! show the person who sent the input; an internal cause is logged, never shown.

use crate::domain::feedsync::SyncError;
use crate::domain::names::NameError;
use crate::formats::xml::XmlError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is wrong; the reason says how.
    #[error("{0}")]
    Invalid(String),
    #[error("authentication required")]
    Unauthorized,
    /// Known, but this credential may not do it (a device token minting credentials).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// It clashes with what exists (a name taken, a write that kept losing its race).
    #[error("{0}")]
    Conflict(String),
    /// The caller's copy is older than the stored one (an ETag that no longer matches).
    #[error("the entry changed since you read it (ETag mismatch); GET it again and retry")]
    Stale,
    #[error("{0}")]
    TooLarge(String),
    /// A kind of input this does not take (a media type, an encoding).
    #[error("{0}")]
    Unsupported(String),
    /// Over a rate limit: the reason, and the seconds to wait.
    #[error("{0}")]
    RateLimited(String, u64),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// A use case's result; `Result<T, E>` names another error, as `std`'s does.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Error::NotFound(what),
            StoreError::AlreadyExists(what) => Error::Conflict(format!("{what} already exists")),
            StoreError::Revoked => Error::Unauthorized,
            StoreError::BadQuery(why) => Error::Invalid(format!("the search cannot be run: {why}")),
            other => Error::Internal(other.into()),
        }
    }
}

impl From<XmlError> for Error {
    fn from(e: XmlError) -> Self {
        Error::Invalid(e.to_string())
    }
}

impl From<SyncError> for Error {
    fn from(e: SyncError) -> Self {
        Error::Invalid(e.to_string())
    }
}

impl From<NameError> for Error {
    fn from(e: NameError) -> Self {
        Error::Invalid(e.to_string())
    }
}

impl From<crate::formats::vcard::VcardError> for Error {
    fn from(e: crate::formats::vcard::VcardError) -> Self {
        Error::Invalid(e.to_string())
    }
}

impl From<crate::domain::identity::IdentityError> for Error {
    fn from(e: crate::domain::identity::IdentityError) -> Self {
        Error::Invalid(e.to_string())
    }
}

impl From<crate::domain::search::SearchError> for Error {
    fn from(e: crate::domain::search::SearchError) -> Self {
        Error::Invalid(format!("bad search: {e}"))
    }
}
