//! Machine clients and the tokens they obtain with the client-credentials grant
//! (RFC 6749 4.4): ids and secrets, how a presented secret is checked, what a
//! client may ask for (scopes, audience), and the access token it gets.
//!
//! A client id is `mc_` + 26 base32; a secret is `cs_` + 64 lower-case hex (32 bytes
//! from the OS RNG), shown once. Only the secret's SHA-256 is stored; during a
//! rotation the previous secret's hash stays valid until its deadline. A presented
//! secret is hashed and compared with both stored hashes in constant time.

use edge_auth_core::scopes::valid_scope_token;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::ids::{hex, is_base32, new_id, random_bytes};
use crate::model::SigningKeyRow;
use crate::tokens::{self, TokenConfig, MAX_CLIENT_TOKEN_LIFETIME_S, MIN_CLIENT_TOKEN_LIFETIME_S};
use crate::validate::MAX_LIST;

/// The prefix of a client id.
pub const CLIENT_ID_PREFIX: &str = "mc_";
/// The prefix of a client secret.
pub const SECRET_PREFIX: &str = "cs_";
/// A presented secret longer than this is wrong without being hashed.
pub const MAX_SECRET_LEN: usize = 256;
/// The `gty` claim of a client-credentials token (as Auth0 writes it).
pub const GRANT_CLAIM: &str = "client-credentials";

/// A stored machine client. Holds hashes: never serialise it to a client (see `ClientView`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRow {
    pub client_id: String,
    pub tenant: String,
    pub secret_hash: String,
    /// The rotated-out secret's hash, valid until `previous_secret_deadline`.
    pub previous_secret_hash: Option<String>,
    pub previous_secret_deadline: Option<i64>,
    /// The audiences its tokens may be for; the first is the default.
    pub audiences: Vec<String>,
    pub scopes: Vec<String>,
    /// Its own allowlist; `None`: the tenant's.
    pub ip_allowlist: Option<Vec<String>>,
    pub created_at: i64,
    pub rotated_at: Option<i64>,
    pub disabled_at: Option<i64>,
    /// The lifetime (`exp - iat`) of the access tokens it is issued, in seconds.
    pub token_lifetime_s: i64,
}

/// Checks a client's access-token lifetime: [`MIN_CLIENT_TOKEN_LIFETIME_S`] to
/// [`MAX_CLIENT_TOKEN_LIFETIME_S`] seconds.
pub fn token_lifetime(s: i64) -> Result<i64> {
    if (MIN_CLIENT_TOKEN_LIFETIME_S..=MAX_CLIENT_TOKEN_LIFETIME_S).contains(&s) {
        Ok(s)
    } else {
        Err(Error::invalid_request(format!(
            "token_lifetime_s must be between {MIN_CLIENT_TOKEN_LIFETIME_S} and {MAX_CLIENT_TOKEN_LIFETIME_S}"
        )))
    }
}

/// A new client id.
pub fn new_client_id() -> Result<String> {
    new_id(CLIENT_ID_PREFIX)
}

/// Whether `s` looks like a client id (`mc_` + 26 base32).
pub fn is_client_id(s: &str) -> bool {
    s.strip_prefix(CLIENT_ID_PREFIX)
        .is_some_and(|r| r.len() == 26 && is_base32(r))
}

/// A new secret: `cs_` + 64 hex.
pub fn generate_secret() -> Result<String> {
    Ok(format!("{SECRET_PREFIX}{}", hex(&random_bytes::<32>()?)))
}

/// Which of a client's secrets a presented one matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretMatch {
    Current,
    /// The rotated-out secret, before its deadline.
    Previous,
    Neither,
}

impl SecretMatch {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretMatch::Current => "current",
            SecretMatch::Previous => "previous",
            SecretMatch::Neither => "neither",
        }
    }
}

/// Decodes a stored 64-hex hash; a stored value that is not one matches nothing.
fn hash_bytes(stored: &str) -> Option<[u8; 32]> {
    let b = stored.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Checks `presented` against the client's current secret and, before its deadline,
/// the previous one. Both comparisons are always made, in constant time, on
/// SHA-256s (so neither the content nor the length of a stored secret leaks).
pub fn check_secret(client: &ClientRow, presented: &str, now: i64) -> SecretMatch {
    if presented.is_empty() || presented.len() > MAX_SECRET_LEN {
        return SecretMatch::Neither;
    }
    let h: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    // A missing or unusable hash is compared with a value no SHA-256 output is known to
    // have, so that the work done does not depend on it.
    let never = [0u8; 32];
    let current = hash_bytes(&client.secret_hash);
    let previous = client
        .previous_secret_hash
        .as_deref()
        .filter(|_| client.previous_secret_deadline.is_some_and(|d| d > now))
        .and_then(hash_bytes);
    let c = current.unwrap_or(never).ct_eq(&h) & subtle::Choice::from(u8::from(current.is_some()));
    let p = previous.unwrap_or(never).ct_eq(&h) & subtle::Choice::from(u8::from(previous.is_some()));
    if bool::from(c) {
        SecretMatch::Current
    } else if bool::from(p) {
        SecretMatch::Previous
    } else {
        SecretMatch::Neither
    }
}

/// The scopes a token gets: the client's when none are asked for, else those asked for
/// (RFC 6749 3.3: space-separated scope tokens), each of which the client must have.
pub fn granted_scopes(client: &ClientRow, requested: Option<&str>) -> Result<Vec<String>> {
    let Some(requested) = requested else {
        return Ok(client.scopes.clone());
    };
    let mut out: Vec<String> = Vec::new();
    // Exactly one space between tokens (RFC 6749 3.3); anything else is malformed.
    for s in requested.split(' ') {
        if !valid_scope_token(s) {
            return Err(Error::invalid_scope(
                "scope must be scope tokens separated by single spaces",
            ));
        }
        if !client.scopes.iter().any(|c| c == s) {
            return Err(Error::invalid_scope(format!(
                "scope {s:?} is not granted to this client"
            )));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
        if out.len() > MAX_LIST {
            return Err(Error::invalid_scope("too many scopes"));
        }
    }
    Ok(out)
}

/// The audience a token is for: the one asked for, which must be one of the client's,
/// or the client's first.
pub fn granted_audience(client: &ClientRow, requested: Option<&str>) -> Result<String> {
    match requested {
        None => client
            .audiences
            .first()
            .cloned()
            .ok_or_else(|| Error::invalid_target("this client has no audience")),
        Some(a) if client.audiences.iter().any(|c| c == a) => Ok(a.to_owned()),
        Some(_) => Err(Error::invalid_target(
            "the audience is not one of this client's audiences",
        )),
    }
}

/// The claims of a client-credentials token beyond the registered ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientClaims {
    pub tenant: String,
    /// Space-separated scopes.
    pub scope: String,
    pub client_id: String,
    /// The authorized party: the client (as OpenID Connect and Auth0 write it).
    pub azp: String,
    /// The grant: [`GRANT_CLAIM`].
    pub gty: String,
}

/// An issued client-credentials token.
#[derive(Debug, Clone)]
pub struct IssuedClientToken {
    pub token: String,
    pub jti: String,
    pub audience: String,
    pub scopes: Vec<String>,
    pub iat: i64,
    pub exp: i64,
}

/// Signs a token for `client` with `key`, for the client's token lifetime: `sub` is the
/// client id, so that a subject cut-off for the client in its tenant revokes every token
/// it was issued.
pub fn issue_client_token(
    key: &SigningKeyRow,
    cfg: &TokenConfig,
    client: &ClientRow,
    audience: String,
    scopes: Vec<String>,
    now: i64,
) -> Result<IssuedClientToken> {
    let custom = ClientClaims {
        tenant: client.tenant.clone(),
        scope: scopes.join(" "),
        client_id: client.client_id.clone(),
        azp: client.client_id.clone(),
        gty: GRANT_CLAIM.to_owned(),
    };
    let lifetime = token_lifetime(client.token_lifetime_s)?;
    let signed = tokens::sign(key, &cfg.issuer, &client.client_id, &audience, custom, now, lifetime)?;
    Ok(IssuedClientToken {
        token: signed.token,
        jti: signed.jti,
        audience,
        scopes,
        iat: signed.iat,
        exp: signed.exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::hash_secret;
    use crate::tokens::{key_pair, ACCESS_TTL_S};
    use jwt_simple::prelude::*;

    fn client(secret: &str) -> ClientRow {
        ClientRow {
            client_id: new_client_id().unwrap(),
            tenant: "acme".into(),
            secret_hash: hash_secret(secret),
            previous_secret_hash: None,
            previous_secret_deadline: None,
            audiences: vec!["api".into(), "billing".into()],
            scopes: vec!["a:read".into(), "a:write".into()],
            ip_allowlist: None,
            created_at: 0,
            rotated_at: None,
            disabled_at: None,
            token_lifetime_s: ACCESS_TTL_S,
        }
    }

    #[test]
    fn ids_and_secrets_have_their_format() {
        let id = new_client_id().unwrap();
        assert!(is_client_id(&id), "{id}");
        assert!(!is_client_id("mc_"));
        assert!(!is_client_id(&format!("key_{}", &id[3..])));
        let s = generate_secret().unwrap();
        assert!(crate::keys::is_prefixed_hex64(&s, SECRET_PREFIX));
        assert_ne!(s, generate_secret().unwrap());
    }

    #[test]
    fn secrets_match_current_and_previous_until_its_deadline() {
        let mut c = client("cs_new");
        assert_eq!(check_secret(&c, "cs_new", 10), SecretMatch::Current);
        assert_eq!(check_secret(&c, "cs_old", 10), SecretMatch::Neither);
        assert_eq!(check_secret(&c, "", 10), SecretMatch::Neither);
        assert_eq!(
            check_secret(&c, &"x".repeat(MAX_SECRET_LEN + 1), 10),
            SecretMatch::Neither
        );
        c.previous_secret_hash = Some(hash_secret("cs_old"));
        c.previous_secret_deadline = Some(20);
        assert_eq!(check_secret(&c, "cs_old", 19), SecretMatch::Previous);
        assert_eq!(check_secret(&c, "cs_old", 20), SecretMatch::Neither);
        assert_eq!(check_secret(&c, "cs_new", 20), SecretMatch::Current);
        // A corrupt stored hash matches nothing, not even its own text.
        c.secret_hash = "zz".into();
        assert_eq!(check_secret(&c, "zz", 10), SecretMatch::Neither);
    }

    #[test]
    fn scopes_narrower_are_granted_wider_refused() {
        let c = client("s");
        assert_eq!(granted_scopes(&c, None).unwrap(), c.scopes);
        assert_eq!(granted_scopes(&c, Some("a:read")).unwrap(), vec!["a:read".to_string()]);
        assert_eq!(
            granted_scopes(&c, Some("a:write a:read a:write")).unwrap(),
            vec!["a:write".to_string(), "a:read".to_string()]
        );
        for bad in [
            "admin",
            "a:read admin",
            "a:read  a:write",
            " a:read",
            "a:read ",
            "",
            "a\"b",
            "a:read\ta:write",
        ] {
            assert!(
                matches!(granted_scopes(&c, Some(bad)), Err(Error::InvalidScope(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn audiences_must_be_the_clients() {
        let c = client("s");
        assert_eq!(granted_audience(&c, None).unwrap(), "api");
        assert_eq!(granted_audience(&c, Some("billing")).unwrap(), "billing");
        assert!(matches!(
            granted_audience(&c, Some("other")),
            Err(Error::InvalidTarget(_))
        ));
        assert!(matches!(
            granted_audience(&c, Some("API")),
            Err(Error::InvalidTarget(_))
        ));
        use crate::validate::audiences;
        assert!(audiences(&[]).is_err());
        assert!(audiences(&["a b".into()]).is_err());
        assert!(audiences(&vec!["a".to_string(); 101]).is_err());
        assert_eq!(audiences(&["x".into(), "x".into()]).unwrap(), vec!["x".to_string()]);
    }

    #[test]
    fn tokens_carry_the_client_and_the_grant() {
        let key = crate::tokens::generate_signing_key(1_800_000_000).unwrap();
        let cfg = TokenConfig {
            issuer: "https://auth.test".into(),
            audience: "api".into(),
        };
        let c = client("s");
        let t = issue_client_token(&key, &cfg, &c, "billing".into(), vec!["a:read".into()], 1_800_000_000).unwrap();
        let pk = key_pair(&key).unwrap().public_key();
        let options = VerificationOptions {
            allowed_audiences: Some(HashSet::from(["billing".to_string()])),
            artificial_time: Some(UnixTimeStamp::from_secs(1_800_000_010)),
            ..Default::default()
        };
        let claims = pk.verify_token::<ClientClaims>(&t.token, Some(options)).unwrap();
        assert_eq!(claims.subject.as_deref(), Some(c.client_id.as_str()));
        assert_eq!(claims.custom.client_id, c.client_id);
        assert_eq!(claims.custom.azp, c.client_id);
        assert_eq!(claims.custom.gty, "client-credentials");
        assert_eq!(claims.custom.tenant, "acme");
        assert_eq!(claims.custom.scope, "a:read");
        assert_eq!(claims.jwt_id.as_deref(), Some(t.jti.as_str()));
        assert_eq!(t.exp - t.iat, ACCESS_TTL_S);
        let long = ClientRow {
            token_lifetime_s: 86_400,
            ..c.clone()
        };
        let t = issue_client_token(&key, &cfg, &long, "api".into(), vec![], 1_800_000_000).unwrap();
        assert_eq!(t.exp - t.iat, 86_400);
        // A stored lifetime out of bounds (a corrupt row) signs nothing.
        for bad in [0, 59, 86_401, -1, i64::MAX] {
            let c = ClientRow {
                token_lifetime_s: bad,
                ..c.clone()
            };
            assert!(issue_client_token(&key, &cfg, &c, "api".into(), vec![], 1_800_000_000).is_err());
        }
    }
}
