//! `POST /hub`: WebSub subscribe, unsubscribe and publish requests (form-encoded, at most
//! 16 KiB), handed to `websub::requests`; the answer is 202 and never waits for
//! verification.

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::SharedState;
use crate::error::{Error, Result};
use crate::websub::protocol::Form;
use crate::websub::requests;

const MAX_FORM_BYTES: usize = 16 * 1024;

pub async fn request(
    State(st): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let form_encoded = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_encoded {
        return Err(Error::Unsupported(
            "send hub requests as application/x-www-form-urlencoded".into(),
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| Error::TooLarge(format!("hub requests are limited to {MAX_FORM_BYTES} bytes")))?;
    requests::take(&st.websub, peer.ip(), &Form::parse(&bytes)).await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "accepted\n",
    )
        .into_response())
}
