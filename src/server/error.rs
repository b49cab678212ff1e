//! The service's one error response, and the one place library errors become HTTP
//! statuses.
//!
//! Every failure answers `{"error": "...", "field": "path.to.field"}` (`field` only
//! when one field is at fault). [`ApiError::from`] maps a [`crate::Error`]:
//! [`Error::Locked`](crate::Error::Locked) (another process writes the index) is 503
//! with `Retry-After`, [`Error::is_user_error`](crate::Error::is_user_error) is 400, the
//! rest 500 (logged to standard error).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Error;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, and where it helps, how to fix it.
    pub error: String,
    /// The request field at fault (`filters.min_price`, `events[3].ts`), when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error answer: a status and an [`ErrorBody`].
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
    /// Seconds after which a retry may succeed (sent as `Retry-After`).
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error with `status`, a message and no field.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                field: None,
            },
            retry_after: None,
        }
    }

    /// The caller's mistake in one field (400).
    pub fn bad_field(field: impl Into<String>, error: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, error);
        e.body.field = Some(field.into());
        e
    }

    /// The caller's mistake (400), no single field.
    pub fn bad_request(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error)
    }

    /// 404 for `what`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }

    /// 503: every worker permit is taken (see `--max-inflight`); retry in a second.
    pub fn busy() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is at its limit of concurrent requests (--max-inflight); retry shortly",
        );
        e.retry_after = Some(1);
        e
    }

    /// 500 for a fault of the service itself; the message is logged.
    pub fn internal(error: impl Into<String>) -> Self {
        let e = Self::new(StatusCode::INTERNAL_SERVER_ERROR, error);
        eprintln!("error: {}", e.body.error);
        e
    }

    /// Puts `prefix` before the field (`candidates[3]` + `id`), or makes it the field.
    pub fn in_field(mut self, prefix: &str) -> Self {
        self.body.field = Some(match self.body.field.take() {
            Some(f) if f.starts_with('[') => format!("{prefix}{f}"),
            Some(f) => format!("{prefix}.{f}"),
            None => prefix.to_string(),
        });
        self
    }
}

impl From<Error> for ApiError {
    /// The one mapping of library errors to statuses.
    fn from(e: Error) -> Self {
        let field = field_of(&e);
        let mut api = if matches!(e, Error::Locked { .. }) {
            let mut api = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            api.retry_after = Some(1);
            api
        } else if e.is_user_error() {
            ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
        } else {
            ApiError::internal(e.to_string())
        };
        api.body.field = field;
        api
    }
}

/// The field a library error names, if any.
fn field_of(e: &Error) -> Option<String> {
    match e {
        Error::InvalidArgument { what, .. } => Some(what.clone()),
        Error::Catalog(e) => e.field().map(str::to_owned),
        Error::Events(e) => e.field().map(str::to_owned),
        Error::Eval(e) => e.field().map(str::to_owned),
        _ => None,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(self.body)).into_response();
        if let Some(s) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_map_to_statuses_in_one_place() {
        let e = ApiError::from(Error::InvalidArgument {
            what: "k".into(),
            reason: "too big".into(),
        });
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.body.field.as_deref(), Some("k"));
        let e = ApiError::from(Error::Locked {
            index: "i".into(),
            holder: "pid 1".into(),
        });
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.retry_after, Some(1));
        let e = ApiError::from(Error::Encoder("boom".into()));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn fields_get_their_prefix() {
        let e = ApiError::bad_field("ts", "bad").in_field("events[2]");
        assert_eq!(e.body.field.as_deref(), Some("events[2].ts"));
        let e = ApiError::bad_request("bad").in_field("filters");
        assert_eq!(e.body.field.as_deref(), Some("filters"));
    }
}
