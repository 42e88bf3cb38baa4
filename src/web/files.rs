//! How stored files go out: as downloads a browser never runs on the hub's origin. A synced
//! `.html` or `.svg` opened from `/media` or `/api/blobs` would otherwise run its scripts
//! with the reader's credentials. Also the headers every response carries.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// Types shown inline: passive content a browser renders without running anything.
fn shown_inline(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/avif" | "image/bmp" | "text/plain"
    ) || essence.starts_with("audio/")
        || essence.starts_with("video/")
}

/// A stored file's response: its type (when a valid header), `nosniff`, a sandbox that keeps
/// any script from the origin, and `attachment` for every type that could be active.
pub fn stored_file(media_type: &str, size: u64, extra: HeaderMap, body: Body) -> Response {
    let ct = HeaderValue::from_str(media_type).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let disposition = if shown_inline(media_type) {
        "inline"
    } else {
        "attachment"
    };
    let mut resp = (
        [
            (header::CONTENT_TYPE, ct),
            (header::CONTENT_LENGTH, HeaderValue::from(size)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox")),
            (header::CONTENT_DISPOSITION, HeaderValue::from_static(disposition)),
        ],
        body,
    )
        .into_response();
    resp.headers_mut().extend(extra);
    resp
}

/// On every response: no type sniffing, no framing by another site.
pub async fn common_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("frame-ancestors 'none'"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_types_are_downloads() {
        for t in [
            "text/html",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/xml",
            "application/pdf",
            "TEXT/HTML; charset=utf-8",
            "",
        ] {
            assert!(!shown_inline(t), "{t}");
        }
        for t in ["image/png", "text/plain; charset=utf-8", "video/mp4", "audio/ogg"] {
            assert!(shown_inline(t), "{t}");
        }
    }
}
