//! The one error type of the service: an HTTP status, a stable machine-readable
//! code and a human-readable description. The CLI prints the same errors.

use std::fmt;

/// An error answer: `{"error": code, "error_description": description}` with `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub description: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, description: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            description: description.into(),
        }
    }

    /// 400 `invalid_request`: the request is malformed or a value is invalid.
    pub fn invalid_request(description: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request", description)
    }

    /// 400 `invalid_scope`: scopes outside what the API key grants.
    pub fn invalid_scope(description: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_scope", description)
    }

    /// 401 `invalid_grant`: an unknown, spent, expired or revoked refresh token.
    pub fn invalid_grant(description: impl Into<String>) -> ApiError {
        ApiError::new(401, "invalid_grant", description)
    }

    /// 404 `not_found`.
    pub fn not_found(description: impl Into<String>) -> ApiError {
        ApiError::new(404, "not_found", description)
    }

    /// 409 `conflict`: the state does not allow the action (duplicate, already revoked...).
    pub fn conflict(description: impl Into<String>) -> ApiError {
        ApiError::new(409, "conflict", description)
    }

    /// 500 `internal_error`. The detail goes to the log only, never to the client.
    pub fn internal(detail: impl fmt::Display) -> ApiError {
        eprintln!("edge-auth-service: internal error: {detail}");
        ApiError::new(500, "internal_error", "internal error")
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.description)
    }
}

impl std::error::Error for ApiError {}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> ApiError {
        ApiError::internal(format_args!("database: {e}"))
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> ApiError {
        ApiError::internal(format_args!("json: {e}"))
    }
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;
