//! ES256 signing keys (stored in the database), their rotation and the JWKS,
//! access-token issuing and verification, and refresh tokens.

use jwt_simple::prelude::*;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::ids::{hex, new_id, random_bytes};
use crate::keys::is_prefixed_hex64;
use crate::model::{SessionRow, SigningKeyRow};

/// Access-token lifetime (`exp - iat`).
pub const ACCESS_TTL_S: i64 = 900;
/// Session (and so refresh-token) lifetime, from the session's creation.
pub const SESSION_TTL_S: i64 = 7 * 24 * 3600;
/// How long a retired signing key stays in the JWKS: the access-token lifetime, or the
/// longest a machine client's has been if that is longer (`Service::published_keys`).
pub const RETIRED_KEY_PUBLISHED_S: i64 = ACCESS_TTL_S;
/// The bounds and default of a machine client's access-token lifetime (`clients`).
pub const MIN_CLIENT_TOKEN_LIFETIME_S: i64 = 60;
pub const MAX_CLIENT_TOKEN_LIFETIME_S: i64 = 24 * 3600;
pub const DEFAULT_CLIENT_TOKEN_LIFETIME_S: i64 = ACCESS_TTL_S;
/// The prefix of a refresh token.
pub const REFRESH_PREFIX: &str = "rt_";
/// The prefix of a session id.
pub const SESSION_PREFIX: &str = "ses_";

/// What access tokens say about who issued them and for whom.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub issuer: String,
    pub audience: String,
}

/// The claims of an access token beyond the registered ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub tenant: String,
    /// Space-separated scopes.
    pub scope: String,
    /// The session's roles, for the edge's role hierarchy (`role_claim: "roles"`).
    /// (Tokens issued before roles existed have none.)
    #[serde(default)]
    pub roles: Vec<String>,
    pub sid: String,
}

/// A new refresh token: `rt_` + 64 hex from the OS RNG.
pub fn generate_refresh_token() -> Result<String> {
    Ok(format!("{REFRESH_PREFIX}{}", hex(&random_bytes::<32>()?)))
}

/// Whether `s` is a well-formed refresh token.
pub fn is_refresh_token(s: &str) -> bool {
    is_prefixed_hex64(s, REFRESH_PREFIX)
}

/// A new session id.
pub fn new_session_id() -> Result<String> {
    new_id(SESSION_PREFIX)
}

/// A new ES256 signing key from the OS RNG. Its kid is the RFC 7638 thumbprint of the public key.
pub fn generate_signing_key(now: i64) -> Result<SigningKeyRow> {
    for _ in 0..8 {
        let scalar = random_bytes::<32>()?;
        // A scalar of zero or not below the group order is refused; retry (probability ~2^-32).
        if let Ok(kp) = ES256KeyPair::from_bytes(&scalar) {
            let kid = kp.public_key().jwk_thumbprint();
            return Ok(SigningKeyRow {
                kid,
                private_key: scalar.to_vec(),
                kek_id: None,
                created_at: now,
                retired_at: None,
            });
        }
    }
    Err(Error::internal("could not generate a P-256 key"))
}

/// The key pair of a stored signing key, tagged with its kid.
pub fn key_pair(row: &SigningKeyRow) -> Result<ES256KeyPair> {
    ES256KeyPair::from_bytes(&row.private_key)
        .map(|kp| kp.with_key_id(&row.kid))
        .map_err(|e| Error::internal(format_args!("stored signing key {} is invalid: {e}", row.kid)))
}

/// The public JWK of a stored signing key: `kty, crv, kid, alg, use, x, y`.
pub fn public_jwk(row: &SigningKeyRow) -> Result<Value> {
    let kp = key_pair(row)?;
    let exported: Value = serde_json::from_str(&kp.public_key().to_jwk())?;
    let coord = |name: &str| exported.get(name).and_then(Value::as_str).map(str::to_owned);
    let (Some(x), Some(y)) = (coord("x"), coord("y")) else {
        return Err(Error::internal("exported JWK lacks x or y"));
    };
    Ok(json!({"kty": "EC", "crv": "P-256", "kid": row.kid, "alg": "ES256", "use": "sig", "x": x, "y": y}))
}

/// The JWKS document of `keys` (current first).
pub fn jwks(keys: &[SigningKeyRow]) -> Result<Value> {
    let keys = keys.iter().map(public_jwk).collect::<Result<Vec<_>>>()?;
    Ok(json!({ "keys": keys }))
}

/// An issued access token.
#[derive(Debug, Clone)]
pub struct IssuedAccessToken {
    pub token: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

fn ts(secs: i64) -> UnixTimeStamp {
    UnixTimeStamp::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// Signs an access token for `session` with `key`, issued at `now`.
pub fn issue_access_token(
    key: &SigningKeyRow,
    cfg: &TokenConfig,
    session: &SessionRow,
    now: i64,
) -> Result<IssuedAccessToken> {
    let custom = AccessClaims {
        tenant: session.tenant.clone(),
        scope: session.scopes.join(" "),
        roles: session.roles.clone(),
        sid: session.sid.clone(),
    };
    sign(
        key,
        &cfg.issuer,
        &session.subject,
        &cfg.audience,
        custom,
        now,
        ACCESS_TTL_S,
    )
}

/// Signs a token with `key` for `subject` and `audience`, issued at `now` for
/// `lifetime_s` seconds, with a new `jti` and the claims `custom`.
pub fn sign<C: Serialize + serde::de::DeserializeOwned>(
    key: &SigningKeyRow,
    issuer: &str,
    subject: &str,
    audience: &str,
    custom: C,
    now: i64,
    lifetime_s: i64,
) -> Result<IssuedAccessToken> {
    let kp = key_pair(key)?;
    let jti = base_jti()?;
    let exp = now + lifetime_s;
    let claims = JWTClaims {
        issued_at: Some(ts(now)),
        expires_at: Some(ts(exp)),
        invalid_before: None,
        audiences: Some(Audiences::AsString(audience.to_owned())),
        issuer: Some(issuer.to_owned()),
        subject: Some(subject.to_owned()),
        jwt_id: Some(jti.clone()),
        nonce: None,
        custom,
    };
    let token = kp
        .sign(claims)
        .map_err(|e| Error::internal(format_args!("signing: {e}")))?;
    Ok(IssuedAccessToken {
        token,
        jti,
        iat: now,
        exp,
    })
}

fn base_jti() -> Result<String> {
    new_id("")
}

/// Verifies an access token against the published keys (by kid), the issuer and the audience,
/// at `now` with `leeway_s` of clock tolerance.
pub fn verify_access_token(
    published: &[SigningKeyRow],
    cfg: &TokenConfig,
    token: &str,
    now: i64,
    leeway_s: i64,
) -> Result<JWTClaims<AccessClaims>> {
    let invalid = Error::invalid_token;
    let meta = Token::decode_metadata(token).map_err(|_| invalid("malformed access token"))?;
    if meta.algorithm() != "ES256" {
        return Err(invalid("unexpected token algorithm"));
    }
    let kid = meta.key_id().ok_or_else(|| invalid("access token has no kid"))?;
    let row = published
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| invalid("unknown signing key"))?;
    let pk = key_pair(row)?.public_key();
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from([cfg.issuer.clone()])),
        allowed_audiences: Some(HashSet::from([cfg.audience.clone()])),
        time_tolerance: Some(Duration::from_secs(u64::try_from(leeway_s).unwrap_or(0))),
        artificial_time: Some(ts(now)),
        ..Default::default()
    };
    pk.verify_token::<AccessClaims>(token, Some(options))
        .map_err(|_| invalid("invalid access token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SessionRow {
        SessionRow {
            sid: "ses_x".into(),
            tenant: "acme".into(),
            subject: "user-1".into(),
            scopes: vec!["a:read".into(), "b".into()],
            roles: vec!["editor".into()],
            key_id: "key_x".into(),
            created_at: 0,
            expires_at: 1,
            revoked_at: None,
        }
    }

    #[test]
    fn signing_keys_round_trip_and_tokens_verify() {
        let now = 1_800_000_000;
        let key = generate_signing_key(now).unwrap();
        assert_eq!(key.private_key.len(), 32);
        let cfg = TokenConfig {
            issuer: "https://auth.test".into(),
            audience: "api".into(),
        };
        let t = issue_access_token(&key, &cfg, &session(), now).unwrap();
        assert_eq!(t.exp - t.iat, ACCESS_TTL_S);
        let claims = verify_access_token(std::slice::from_ref(&key), &cfg, &t.token, now + 10, 0).unwrap();
        assert_eq!(claims.subject.as_deref(), Some("user-1"));
        assert_eq!(claims.custom.scope, "a:read b");
        assert_eq!(claims.custom.roles, vec!["editor".to_string()]);
        assert_eq!(claims.jwt_id.as_deref(), Some(t.jti.as_str()));
        // Expired, wrong audience, unknown key: refused.
        assert!(verify_access_token(std::slice::from_ref(&key), &cfg, &t.token, now + 1000, 0).is_err());
        let other = TokenConfig {
            issuer: cfg.issuer.clone(),
            audience: "other".into(),
        };
        assert!(verify_access_token(std::slice::from_ref(&key), &other, &t.token, now, 0).is_err());
        let k2 = generate_signing_key(now).unwrap();
        assert_ne!(k2.kid, key.kid);
        assert!(verify_access_token(&[k2], &cfg, &t.token, now, 0).is_err());
    }

    #[test]
    fn jwk_has_the_contract_members() {
        let key = generate_signing_key(0).unwrap();
        let jwk = public_jwk(&key).unwrap();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], key.kid.as_str());
        assert!(jwk.get("d").is_none());
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
    }

    #[test]
    fn refresh_tokens_have_the_contract_format() {
        let t = generate_refresh_token().unwrap();
        assert!(is_refresh_token(&t));
        assert_ne!(t, generate_refresh_token().unwrap());
    }
}
