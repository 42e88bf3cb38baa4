//! `/api/blobs/{sha256}`: a user's files by content. PUT streams one up (refused unless its
//! SHA-256 is the one named, so a changed or cut-short upload stores nothing), or in resumable
//! parts; `POST /api/blobs` takes many small ones in one multipart request; HEAD says
//! whether the user already has it (no second upload); GET reads it. Blobs are shared on disk
//! but each user sees only the ones they uploaded.

use axum::body::{Body, Bytes};
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::SharedState;
use super::auth::{Check, optional_principal, principal};
use crate::error::{Error, Result};
use crate::usecases::files::{self, Held, Uploaded};

/// `Content-Range: bytes START-END/TOTAL` (or `bytes START-/TOTAL`): one part of an upload,
/// as the first byte, the byte after the last (`END + 1`, or `TOTAL` when open) and the total.
fn content_range(headers: &HeaderMap) -> Result<Option<crate::blobs::Part>> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || Error::Invalid("Content-Range must be bytes START-END/TOTAL".into());
    let v = v.to_str().map_err(|_| bad())?;
    let (range, total) = v
        .strip_prefix("bytes ")
        .and_then(|r| r.split_once('/'))
        .ok_or_else(bad)?;
    let (start, end) = range.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.parse().map_err(|_| bad())?;
    let total: u64 = total.parse().map_err(|_| bad())?;
    let (end, empty) = match end {
        "" => (total, false),
        end => {
            let last: u64 = end.parse().map_err(|_| bad())?;
            (last.checked_add(1).ok_or_else(bad)?, last < start)
        }
    };
    if empty || start > end || end > total {
        return Err(Error::Invalid(format!(
            "Content-Range bytes {range}/{total} is not a range within the file"
        )));
    }
    Ok(Some(crate::blobs::Part { start, end, total }))
}

fn offset_header(n: u64) -> [(header::HeaderName, HeaderValue); 1] {
    [(header::HeaderName::from_static("upload-offset"), HeaderValue::from(n))]
}

pub async fn put(
    State(st): State<SharedState>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    // Resumable: parts with Content-Range, each continuing where the last ended.
    let part = content_range(&headers)?;
    Ok(
        match files::upload(&st, p.user_id, &sha256, part, super::upload(body)).await? {
            Uploaded::Already => StatusCode::NO_CONTENT.into_response(),
            Uploaded::Stored(_) => StatusCode::CREATED.into_response(),
            Uploaded::Partial(held) => (StatusCode::ACCEPTED, offset_header(held)).into_response(),
        },
    )
}

/// Parts and bytes one `POST /api/blobs` may carry.
pub const BATCH_PARTS: usize = 1000;
pub const BATCH_BYTES: usize = 32 << 20;
/// Larger files go up alone, with PUT.
pub const BATCH_PART_BYTES: usize = 1 << 20;

/// `POST /api/blobs`: many small blobs in one `multipart/form-data` request, each part named
/// by its SHA-256. All are checked before any is stored (a mismatch: 400, nothing stored).
/// Answers which were new (`created`) and which the user already had (`present`).
pub async fn post_many(State(st): State<SharedState>, req: axum::extract::Request) -> Result<Response> {
    use axum::extract::FromRequest;
    let p = principal(&st, req.headers()).await?;
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| Error::Invalid(format!("send the files as multipart/form-data: {}", e.body_text())))?;
    let bad = |e: axum::extract::multipart::MultipartError| Error::Invalid(format!("not a multipart upload: {e}"));
    let mut parts: Vec<(String, Bytes)> = Vec::new();
    let mut total = 0usize;
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_string();
        files::checked(&name)?;
        let bytes = field.bytes().await.map_err(bad)?;
        if bytes.len() > BATCH_PART_BYTES {
            return Err(Error::TooLarge(format!(
                "part {name} has {} bytes; parts over {BATCH_PART_BYTES} bytes go up alone with PUT /api/blobs/{{sha256}}",
                bytes.len()
            )));
        }
        total += bytes.len();
        if parts.len() == BATCH_PARTS {
            return Err(Error::TooLarge(format!("at most {BATCH_PARTS} parts per request")));
        }
        parts.push((name, bytes));
    }
    let count = parts.len();
    let batch = files::upload_many(&st, p.user_id, parts).await?;
    tracing::debug!(
        parts = count,
        bytes = total,
        created = batch.created.len(),
        "blobs uploaded"
    );
    Ok(axum::Json(batch).into_response())
}

pub async fn get(State(st): State<SharedState>, Path(sha256): Path<String>, headers: HeaderMap) -> Result<Response> {
    let p = optional_principal(&st, &headers, Check::Cached)
        .await?
        .ok_or(Error::Unauthorized)?;
    let (path, size) = match files::find(&st, p.user_id, &sha256).await? {
        Held::Stored(path, size) => (path, size),
        // Not stored (yet): how much of a resumable upload is here to continue from.
        Held::Partial(held) => {
            return Ok((StatusCode::NOT_FOUND, offset_header(held), "blob not found\n").into_response());
        }
    };
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("blob {sha256} missing: {e}")))?;
    let mut extra = HeaderMap::new();
    extra.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file,
        crate::blobs::IO_CHUNK,
    ));
    Ok(super::files::stored_file("application/octet-stream", size, extra, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn range(v: &str) -> Result<Option<crate::blobs::Part>> {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_RANGE, HeaderValue::from_str(v).unwrap());
        content_range(&h)
    }

    #[test]
    fn ranges_name_their_end() {
        let p = range("bytes 1000-1999/3000").unwrap().unwrap();
        assert_eq!((p.start, p.end, p.total), (1000, 2000, 3000));
        let open = range("bytes 1000-/3000").unwrap().unwrap();
        assert_eq!(open.end, 3000);
        for bad in [
            "bytes 1000-999/3000",
            "bytes 0-3000/3000",
            "bytes 5/10",
            "bytes -1/10",
            "items 0-1/2",
            "bytes 0-18446744073709551615/1",
        ] {
            assert!(range(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn ranges_never_panic(s in "(bytes )?[0-9-/ é]{0,30}") {
            if HeaderValue::from_str(&s).is_ok() {
                let _ = range(&s);
            }
            let _ = files::checked(&s);
        }
    }
}
