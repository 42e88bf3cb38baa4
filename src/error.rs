//! One error type for use cases and the HTTP edge: each variant maps to one status.
//! 4xx bodies carry a one-line reason; 5xx bodies are generic and the cause is logged once.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::domain::feedsync::SyncError;
use crate::domain::names::NameError;
use crate::formats::xml::XmlError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("the entry changed since you read it (ETag mismatch); GET it again and retry")]
    PreconditionFailed,
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Over a rate limit: the reason, and the seconds to wait (`Retry-After`).
    #[error("{0}")]
    TooManyRequests(String, u64),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AppError::NotFound(what),
            StoreError::AlreadyExists(what) => AppError::Conflict(format!("{what} already exists")),
            StoreError::Revoked => AppError::Unauthorized,
            other => AppError::Internal(other.into()),
        }
    }
}

impl From<XmlError> for AppError {
    fn from(e: XmlError) -> Self {
        AppError::BadRequest(e.to_string())
    }
}

impl From<SyncError> for AppError {
    fn from(e: SyncError) -> Self {
        AppError::BadRequest(e.to_string())
    }
}

impl From<NameError> for AppError {
    fn from(e: NameError) -> Self {
        AppError::BadRequest(e.to_string())
    }
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let AppError::Internal(cause) = &self {
            tracing::error!(error = %format!("{cause:#}"), "internal error");
        }
        let mut resp = (status, format!("{self}\n")).into_response();
        let headers = resp.headers_mut();
        if let AppError::TooManyRequests(_, wait) = &self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*wait));
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"feedmesh\", Bearer realm=\"feedmesh\""),
            );
        }
        resp
    }
}
