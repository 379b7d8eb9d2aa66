//! What the service stores: tenants, API keys, sessions, refresh tokens,
//! signing keys, revocation events and audit events. Plain data, shared by the
//! store (which reads and writes them), the operations and the HTTP layer.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub name: String,
    pub allowed_origins: Vec<String>,
    pub ip_allowlist: Vec<String>,
    pub created_at: i64,
    /// When it was disabled; `None`: enabled.
    pub disabled_at: Option<i64>,
}

/// A stored API key. Holds the hash: never serialise it to a client (see `KeyView`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub key_id: String,
    pub tenant: String,
    pub subject: String,
    pub key_hash: String,
    pub scopes: Vec<String>,
    /// The roles the key may grant to the sessions it creates.
    pub roles: Vec<String>,
    pub ip_allowlist: Option<Vec<String>>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub rotated_at: Option<i64>,
    pub rotation_deadline: Option<i64>,
    pub replaced_by: Option<String>,
    pub revoked_at: Option<i64>,
    /// When it was last presented (to the edge's lookups or the SDK endpoints), to
    /// about a minute; written in batches.
    pub last_used_at: Option<i64>,
    /// The id of the key-tag secret that tagged it (`key_tags`); `None`: untagged.
    pub tag_secret_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionRow {
    pub sid: String,
    pub tenant: String,
    pub subject: String,
    pub scopes: Vec<String>,
    /// The roles its access tokens carry (`roles` claim).
    pub roles: Vec<String>,
    pub key_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRow {
    pub sid: String,
    pub created_at: i64,
    pub spent_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRow {
    pub kid: String,
    /// The P-256 scalar, in clear when `kek_id` is `None`, else sealed (see `secrets`).
    pub private_key: Vec<u8>,
    /// The key-encryption key that sealed `private_key`, if any.
    pub kek_id: Option<String>,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationKind {
    Jti,
    Session,
    Subject,
    Global,
    /// Every token of a tenant (a disabled tenant).
    Tenant,
    /// One API key (its id in `value`, its hash beside it).
    Key,
    /// Every API key of a tenant, as of `revoked_before`.
    KeyTenant,
    /// Every API key, as of `revoked_before`.
    KeyGlobal,
}

impl RevocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Jti => "jti",
            RevocationKind::Session => "session",
            RevocationKind::Subject => "subject",
            RevocationKind::Global => "global",
            RevocationKind::Tenant => "tenant",
            RevocationKind::Key => "key",
            RevocationKind::KeyTenant => "key_tenant",
            RevocationKind::KeyGlobal => "key_global",
        }
    }

    pub fn parse(s: &str) -> Option<RevocationKind> {
        Some(match s {
            "jti" => RevocationKind::Jti,
            "session" => RevocationKind::Session,
            "subject" => RevocationKind::Subject,
            "global" => RevocationKind::Global,
            "tenant" => RevocationKind::Tenant,
            "key" => RevocationKind::Key,
            "key_tenant" => RevocationKind::KeyTenant,
            "key_global" => RevocationKind::KeyGlobal,
            _ => return None,
        })
    }
}

/// A revocation to publish in the feed (its id is given when it is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRevocation {
    pub kind: RevocationKind,
    pub value: Option<String>,
    /// The tenant a subject cut-off is scoped to; `None`: every tenant.
    pub tenant: Option<String>,
    pub revoked_before: Option<i64>,
    /// After this, no token the entry covers can be valid.
    pub expires_at: i64,
    /// A `Key` event's key hash.
    pub key_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationEvent {
    pub id: i64,
    pub kind: RevocationKind,
    pub value: Option<String>,
    pub tenant: Option<String>,
    pub revoked_before: Option<i64>,
    pub expires_at: i64,
    pub created_at: i64,
    pub key_hash: Option<String>,
}

/// An audit event to record. Never put a secret, key or token in any field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewAudit {
    pub ts: i64,
    pub actor: String,
    /// The tenant the event concerns, if one.
    pub tenant: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub peer: Option<String>,
    pub forwarded_for: Option<String>,
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    pub id: i64,
    pub ts: i64,
    pub actor: String,
    pub tenant: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub peer: Option<String>,
    pub forwarded_for: Option<String>,
    pub detail: Option<serde_json::Value>,
    /// Its place in the audit's order (with `id`): the writing transaction on
    /// PostgreSQL, 0 on SQLite. Not shown: cursors carry it.
    #[serde(skip)]
    pub tx: i64,
}

/// What revoking a session found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    Revoked,
    AlreadyRevoked,
    NotFound,
}
