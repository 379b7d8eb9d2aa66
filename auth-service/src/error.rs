//! The service's one error type, in domain terms: what went wrong, with a stable
//! machine-readable code and a human-readable description that never holds a
//! secret. The HTTP layer alone maps it to a status (`http::status_of`); the
//! command line prints it as `code: description`.

use std::fmt;

/// Which credential an authentication failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Credential {
    /// The operators' bearer token (`/admin/v1/*`).
    Admin,
    /// The edge's bearer token (`/internal/v1/*`).
    Service,
    /// An API key (`/v1/*`).
    ApiKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request is malformed or a value is invalid.
    InvalidRequest(String),
    /// Scopes outside what the API key grants.
    InvalidScope(String),
    /// An unknown, spent, expired or revoked refresh token.
    InvalidGrant(String),
    /// An access token that is not valid (logout).
    InvalidToken(String),
    /// A missing or wrong credential.
    Unauthenticated(Credential),
    /// A valid API key used from a client address outside its (or its tenant's) allowlist.
    IpNotAllowed,
    /// Too many failed authentications from this client: try again after this many seconds.
    RateLimited {
        retry_after_s: u64,
    },
    NotFound(String),
    MethodNotAllowed,
    /// The state does not allow the action (duplicate, already rotated...).
    Conflict(String),
    /// The request body did not arrive within the body timeout.
    RequestTimeout,
    /// The request body exceeds this many bytes.
    TooLarge(usize),
    /// A body that is not `application/json`.
    UnsupportedMediaType,
    /// The database cannot answer now (busy past its timeout, unreachable, pool exhausted).
    Unavailable(String),
    /// The database was written by a newer binary.
    SchemaTooNew {
        found: i64,
        known: i64,
    },
    /// A signing key the service must use does not open: sealed with a key-encryption
    /// key that is not configured, or altered (the kid).
    SigningKeySealed(String),
    /// Anything else. The detail went to the log when the error was made.
    Internal,
    /// `POST /oauth/token`: an unknown or disabled client, a wrong or missing secret
    /// (RFC 6749 5.2).
    InvalidClient,
    /// `POST /oauth/token`: an authenticated client that may not have a token from here
    /// (its address is outside its allowlist).
    UnauthorizedClient(String),
    /// `POST /oauth/token`: a `grant_type` other than `client_credentials`.
    UnsupportedGrantType,
    /// `POST /oauth/token`: an `audience` that is not one of the client's (RFC 8707's code).
    InvalidTarget(String),
}

impl Error {
    pub fn invalid_request(description: impl Into<String>) -> Error {
        Error::InvalidRequest(description.into())
    }

    pub fn invalid_scope(description: impl Into<String>) -> Error {
        Error::InvalidScope(description.into())
    }

    pub fn invalid_grant(description: impl Into<String>) -> Error {
        Error::InvalidGrant(description.into())
    }

    pub fn invalid_token(description: impl Into<String>) -> Error {
        Error::InvalidToken(description.into())
    }

    pub fn invalid_target(description: impl Into<String>) -> Error {
        Error::InvalidTarget(description.into())
    }

    pub fn not_found(description: impl Into<String>) -> Error {
        Error::NotFound(description.into())
    }

    pub fn conflict(description: impl Into<String>) -> Error {
        Error::Conflict(description.into())
    }

    /// The detail goes to the log only, never to the client.
    pub fn internal(detail: impl fmt::Display) -> Error {
        tracing::error!(detail = %detail, "internal error");
        Error::Internal
    }

    /// The database cannot answer now; the detail goes to the log only.
    pub fn unavailable(detail: impl fmt::Display) -> Error {
        tracing::warn!(detail = %detail, "database unavailable");
        Error::Unavailable("the database is temporarily unavailable".to_owned())
    }

    /// The stable code of the contract (`error` in answers).
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_) => "invalid_request",
            Error::InvalidScope(_) => "invalid_scope",
            Error::InvalidGrant(_) => "invalid_grant",
            Error::InvalidToken(_) => "invalid_token",
            Error::Unauthenticated(Credential::Admin) => "invalid_admin_token",
            Error::Unauthenticated(Credential::Service) => "invalid_service_token",
            Error::Unauthenticated(Credential::ApiKey) => "invalid_api_key",
            Error::IpNotAllowed => "ip_not_allowed",
            Error::RateLimited { .. } => "too_many_requests",
            Error::NotFound(_) => "not_found",
            Error::MethodNotAllowed => "method_not_allowed",
            Error::Conflict(_) => "conflict",
            Error::RequestTimeout => "request_timeout",
            Error::TooLarge(_) => "request_too_large",
            Error::UnsupportedMediaType => "unsupported_media_type",
            Error::Unavailable(_) => "temporarily_unavailable",
            Error::SchemaTooNew { .. } => "schema_too_new",
            Error::SigningKeySealed(_) => "signing_key_sealed",
            Error::Internal => "internal_error",
            Error::InvalidClient => "invalid_client",
            Error::UnauthorizedClient(_) => "unauthorized_client",
            Error::UnsupportedGrantType => "unsupported_grant_type",
            Error::InvalidTarget(_) => "invalid_target",
        }
    }

    /// The human-readable description (`error_description` in answers).
    pub fn description(&self) -> String {
        match self {
            Error::InvalidRequest(d)
            | Error::InvalidScope(d)
            | Error::InvalidGrant(d)
            | Error::InvalidToken(d)
            | Error::NotFound(d)
            | Error::Conflict(d)
            | Error::Unavailable(d)
            | Error::UnauthorizedClient(d)
            | Error::InvalidTarget(d) => d.clone(),
            Error::Unauthenticated(Credential::Admin) => {
                "a valid admin token is required (Authorization: Bearer)".to_owned()
            }
            Error::Unauthenticated(Credential::Service) => {
                "a valid service token is required (Authorization: Bearer)".to_owned()
            }
            Error::Unauthenticated(Credential::ApiKey) => {
                "a valid API key is required (x-api-key or Authorization: ApiKey)".to_owned()
            }
            Error::IpNotAllowed => "this API key may not be used from this client address".to_owned(),
            Error::RateLimited { retry_after_s } => {
                format!("too many failed authentications from this address: retry after {retry_after_s} s")
            }
            Error::MethodNotAllowed => "method not allowed for this endpoint".to_owned(),
            Error::RequestTimeout => "the request body did not arrive in time".to_owned(),
            Error::TooLarge(limit) => format!("the request body exceeds {limit} bytes"),
            Error::UnsupportedMediaType => "the request body must be application/json".to_owned(),
            Error::SchemaTooNew { found, known } => {
                format!("the database has schema version {found}; this binary knows up to {known}")
            }
            Error::SigningKeySealed(kid) => format!(
                "signing key {kid} does not open: set the key-encryption key it was sealed with \
                 (EDGE_AUTH_SIGNING_KEK, or EDGE_AUTH_SIGNING_KEK_PREVIOUS while rotating)"
            ),
            Error::Internal => "internal error".to_owned(),
            Error::InvalidClient => "client authentication failed".to_owned(),
            Error::UnsupportedGrantType => "grant_type must be client_credentials".to_owned(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.description())
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::internal(format_args!("json: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
