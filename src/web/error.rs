//! The use cases' errors as HTTP: each variant is one status. 4xx bodies carry the one-line
//! reason; 5xx bodies are generic and the cause is logged once.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::Error;

pub fn status(e: &Error) -> StatusCode {
    match e {
        Error::Invalid(_) => StatusCode::BAD_REQUEST,
        Error::Unauthorized => StatusCode::UNAUTHORIZED,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::Stale => StatusCode::PRECONDITION_FAILED,
        Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::RateLimited(..) => StatusCode::TOO_MANY_REQUESTS,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = status(&self);
        if let Error::Internal(cause) = &self {
            tracing::error!(error = %format!("{cause:#}"), "internal error");
        }
        let mut resp = (status, format!("{self}\n")).into_response();
        let headers = resp.headers_mut();
        if let Error::RateLimited(_, wait) = &self {
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
