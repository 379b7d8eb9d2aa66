//! Machine clients: their admin operations (create, list, rotate the secret,
//! disable, delete; each audited in its transaction) and the client-credentials
//! grant of `POST /oauth/token` (see `crate::clients`).
//!
//! A client's tokens have `sub` = its client id and its tenant's claim, so disabling
//! or deleting it publishes a subject cut-off for the client id in its tenant, in the
//! same transaction: every edge refuses the tokens it was issued within a poll.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{allowlist_admits, RotateRequest, Service, MAX_GRACE_S};
use crate::audit::{Ctx, FAILURE, SUCCESS};
use crate::clients::{self, ClientRow, SecretMatch};
use crate::error::{Error, Result};
use crate::guard::Failure;
use crate::keys;
use crate::model::{NewAudit, RevocationKind};
use crate::store;
use crate::tokens::DEFAULT_CLIENT_TOKEN_LIFETIME_S;
use crate::validate;

/// The route failures at the token endpoint are counted under.
const TOKEN_ROUTE: &str = "/oauth/token";
/// The audit action of client authentication at the token endpoint.
const AUTH_ACTION: &str = "client.auth";

/// `POST /admin/v1/tenants/{tenant}/clients`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRequest {
    /// The audiences its tokens may be for (the first is the default): 1 to 100.
    pub audiences: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Its own allowlist; `null` or left out: the tenant's.
    #[serde(default)]
    pub ip_allowlist: Option<Vec<String>>,
    /// Its access tokens' lifetime in seconds (60 to 86400); left out: 900.
    #[serde(default)]
    pub token_lifetime_s: Option<i64>,
}

/// `PATCH /admin/v1/clients/{client_id}`: what can be changed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientUpdate {
    /// Its access tokens' lifetime in seconds (60 to 86400), for the tokens issued from now.
    pub token_lifetime_s: i64,
}

/// Client metadata: never a secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientView {
    pub client_id: String,
    pub tenant: String,
    pub audiences: Vec<String>,
    pub scopes: Vec<String>,
    /// The client's own allowlist; null = the tenant's.
    pub ip_allowlist: Option<Vec<String>>,
    /// `active` or `disabled`.
    pub status: &'static str,
    pub created_at: i64,
    pub rotated_at: Option<i64>,
    /// Until when the rotated-out secret is still accepted (null: no previous secret
    /// valid now).
    pub previous_secret_deadline: Option<i64>,
    pub disabled_at: Option<i64>,
    /// The first 8 hex of the current secret's SHA-256.
    pub fingerprint: String,
    /// Its access tokens' lifetime in seconds.
    pub token_lifetime_s: i64,
}

impl ClientView {
    pub fn new(c: &ClientRow, now: i64) -> ClientView {
        ClientView {
            client_id: c.client_id.clone(),
            tenant: c.tenant.clone(),
            audiences: c.audiences.clone(),
            scopes: c.scopes.clone(),
            ip_allowlist: c.ip_allowlist.clone(),
            status: if c.disabled_at.is_some() { "disabled" } else { "active" },
            created_at: c.created_at,
            rotated_at: c.rotated_at,
            previous_secret_deadline: c.previous_secret_deadline.filter(|d| *d > now),
            disabled_at: c.disabled_at,
            fingerprint: keys::fingerprint(&c.secret_hash),
            token_lifetime_s: c.token_lifetime_s,
        }
    }
}

/// A new client, or a rotated secret: the secret, shown this once, and the metadata.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedClient {
    pub client_id: String,
    pub client_secret: String,
    #[serde(flatten)]
    pub metadata: ClientView,
}

/// A client-credentials request, as the HTTP layer parsed it.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: String,
    /// Space-separated scopes; `None`: all of the client's.
    pub scope: Option<String>,
    /// `None`: the client's first audience.
    pub audience: Option<String>,
}

/// The token endpoint's answer (RFC 6749 5.1).
#[derive(Debug, Clone, Serialize)]
pub struct ClientToken {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
}

/// Why an authenticated client's request was refused (for its audit record).
fn refusal_reason(e: &Error) -> &'static str {
    match e {
        Error::UnauthorizedClient(_) => "ip_not_allowed",
        Error::InvalidScope(_) => "scope_not_allowed",
        Error::InvalidTarget(_) => "audience_not_allowed",
        _ => "refused",
    }
}

impl Service {
    fn client_row(c: &mut dyn crate::db::Conn, client_id: &str) -> Result<ClientRow> {
        store::client(c, client_id)?.ok_or_else(|| Error::not_found(format!("no client {client_id}")))
    }

    /// A client's tenant (it never changes), for an admin action's audit record.
    fn tenant_of_client(&self, client_id: &str) -> Option<String> {
        self.db
            .read(|c| store::client(c, client_id))
            .ok()
            .flatten()
            .map(|k| k.tenant)
    }

    pub fn create_client(&self, ctx: &Ctx, tenant: &str, req: ClientRequest) -> Result<CreatedClient> {
        let ctx = &ctx.for_tenant(Some(tenant));
        self.admin(ctx, "client.create", Some(tenant), |now| {
            let secret = clients::generate_secret()?;
            let row = ClientRow {
                client_id: clients::new_client_id()?,
                tenant: tenant.to_owned(),
                secret_hash: keys::hash_secret(&secret),
                previous_secret_hash: None,
                previous_secret_deadline: None,
                audiences: validate::audiences(&req.audiences)?,
                scopes: validate::scopes(&req.scopes)?,
                ip_allowlist: req.ip_allowlist.as_deref().map(validate::ip_allowlist).transpose()?,
                created_at: now,
                rotated_at: None,
                disabled_at: None,
                token_lifetime_s: clients::token_lifetime(
                    req.token_lifetime_s.unwrap_or(DEFAULT_CLIENT_TOKEN_LIFETIME_S),
                )?,
            };
            let detail = json!({"client_id": row.client_id, "fingerprint": keys::fingerprint(&row.secret_hash),
                "audiences": row.audiences, "scopes": row.scopes, "ip_allowlist": row.ip_allowlist,
                "token_lifetime_s": row.token_lifetime_s});
            self.audited(ctx, "client.create", Some(tenant), now, |c| {
                if store::tenant(c, tenant)?.is_none() {
                    return Err(Error::not_found(format!("no tenant {tenant:?}")));
                }
                store::insert_client(c, &row)?;
                store::raise_longest_token_lifetime(c, row.token_lifetime_s, self.feed_leeway_s, now)?;
                Ok(((), Some(detail.clone())))
            })?;
            Ok(CreatedClient {
                client_id: row.client_id.clone(),
                client_secret: secret,
                metadata: ClientView::new(&row, now),
            })
        })
    }

    pub fn list_clients(&self, tenant: &str) -> Result<Vec<ClientView>> {
        let now = self.now();
        let rows = self.db.read_snapshot(|c| {
            if store::tenant(c, tenant)?.is_none() {
                return Err(Error::not_found(format!("no tenant {tenant:?}")));
            }
            store::clients_of_tenant(c, tenant)
        })?;
        Ok(rows.iter().map(|r| ClientView::new(r, now)).collect())
    }

    pub fn get_client(&self, client_id: &str) -> Result<ClientView> {
        let now = self.now();
        let row = self.db.read(|c| Service::client_row(c, client_id))?;
        Ok(ClientView::new(&row, now))
    }

    /// Changes a client's access-token lifetime, for the tokens issued from now on (those
    /// it has keep their `exp`).
    pub fn update_client(&self, ctx: &Ctx, client_id: &str, req: ClientUpdate) -> Result<ClientView> {
        let ctx = &ctx.for_tenant(self.tenant_of_client(client_id).as_deref());
        self.admin(ctx, "client.update", Some(client_id), |now| {
            let lifetime = clients::token_lifetime(req.token_lifetime_s)?;
            let row = self.audited(ctx, "client.update", Some(client_id), now, |c| {
                let before = Service::client_row(c, client_id)?;
                store::set_client_token_lifetime(c, client_id, lifetime)?;
                store::raise_longest_token_lifetime(c, lifetime, self.feed_leeway_s, now)?;
                let row = Service::client_row(c, client_id)?;
                let detail = json!({"token_lifetime_s": lifetime,
                    "previous_token_lifetime_s": before.token_lifetime_s});
                Ok((row, Some(detail)))
            })?;
            Ok(ClientView::new(&row, now))
        })
    }

    /// A new secret; the current one stays valid for `grace_s` (0 to 30 days), then only
    /// the new one is. A secret rotated out earlier, if still valid, is dropped now.
    pub fn rotate_client_secret(&self, ctx: &Ctx, client_id: &str, req: RotateRequest) -> Result<CreatedClient> {
        let ctx = &ctx.for_tenant(self.tenant_of_client(client_id).as_deref());
        self.admin(ctx, "client.rotate", Some(client_id), |now| {
            if !(0..=MAX_GRACE_S).contains(&req.grace_s) {
                return Err(Error::invalid_request(format!(
                    "grace_s must be between 0 and {MAX_GRACE_S}"
                )));
            }
            let deadline = now + req.grace_s;
            let secret = clients::generate_secret()?;
            let hash = keys::hash_secret(&secret);
            let row = self.audited(ctx, "client.rotate", Some(client_id), now, |c| {
                let old = Service::client_row(c, client_id)?;
                if old.disabled_at.is_some() {
                    return Err(Error::conflict(format!("client {client_id} is disabled")));
                }
                store::rotate_client_secret(c, client_id, &hash, deadline, now)?;
                let row = Service::client_row(c, client_id)?;
                let detail = json!({"fingerprint": keys::fingerprint(&hash),
                    "previous_fingerprint": keys::fingerprint(&old.secret_hash),
                    "grace_s": req.grace_s, "previous_secret_deadline": deadline});
                Ok((row, Some(detail)))
            })?;
            Ok(CreatedClient {
                client_id: row.client_id.clone(),
                client_secret: secret,
                metadata: ClientView::new(&row, now),
            })
        })
    }

    /// Disables a client: it gets no more tokens, and a subject cut-off for its id in
    /// its tenant (in this transaction) makes the edges refuse those it has. Already
    /// disabled: unchanged.
    pub fn disable_client(&self, ctx: &Ctx, client_id: &str) -> Result<ClientView> {
        let ctx = &ctx.for_tenant(self.tenant_of_client(client_id).as_deref());
        self.admin(ctx, "client.disable", Some(client_id), |now| {
            let row = self.audited(ctx, "client.disable", Some(client_id), now, |c| {
                let before = Service::client_row(c, client_id)?;
                let newly = store::disable_client(c, client_id, now)?;
                let rb = self.end_client_tokens(c, &before, newly, now)?;
                let row = Service::client_row(c, client_id)?;
                Ok((row, Some(json!({"already_disabled": !newly, "revoked_before": rb}))))
            })?;
            Ok(ClientView::new(&row, now))
        })
    }

    /// Enables a disabled client: it gets tokens again. The cut-off its disabling
    /// published stays in the feed, so the tokens it was issued before stay refused at
    /// the edges; those issued from now on are not covered by it. Refused (`409`) in the
    /// second of the disabling, while that cut-off would still cover new tokens. Already
    /// enabled: unchanged.
    pub fn enable_client(&self, ctx: &Ctx, client_id: &str) -> Result<ClientView> {
        let ctx = &ctx.for_tenant(self.tenant_of_client(client_id).as_deref());
        self.admin(ctx, "client.enable", Some(client_id), |now| {
            let row = self.audited(ctx, "client.enable", Some(client_id), now, |c| {
                // The row is locked first: a disabling that commits meanwhile is waited
                // for, and its cut-off is read below with the clock read after it.
                let newly = store::enable_client(c, client_id)?;
                let row = Service::client_row(c, client_id)?;
                let at = self.now().max(now);
                let cut_off = store::client_cut_off(c, client_id, &row.tenant)?;
                if let Some(rb) = cut_off.filter(|rb| newly && *rb > at) {
                    return Err(Error::conflict(format!(
                        "client {client_id} was disabled this second: enable it in {} s",
                        rb - at
                    )));
                }
                Ok((row, Some(json!({"already_enabled": !newly, "revoked_before": cut_off}))))
            })?;
            Ok(ClientView::new(&row, now))
        })
    }

    /// Deletes a client, and (unless it was disabled, which did it already) publishes the
    /// cut-off that makes the edges refuse its tokens.
    pub fn delete_client(&self, ctx: &Ctx, client_id: &str) -> Result<serde_json::Value> {
        let ctx = &ctx.for_tenant(self.tenant_of_client(client_id).as_deref());
        self.admin(ctx, "client.delete", Some(client_id), |now| {
            self.audited(ctx, "client.delete", Some(client_id), now, |c| {
                let before = Service::client_row(c, client_id)?;
                store::delete_client(c, client_id)?;
                let rb = self.end_client_tokens(c, &before, before.disabled_at.is_none(), now)?;
                let out = json!({"client_id": client_id, "deleted": true, "revoked_before": rb});
                Ok((out.clone(), Some(out)))
            })
        })
    }

    /// Publishes the subject cut-off for `client`'s tokens when `needed`; its `revoked_before`.
    fn end_client_tokens(
        &self,
        c: &mut dyn crate::db::Conn,
        client: &ClientRow,
        needed: bool,
        now: i64,
    ) -> Result<Option<i64>> {
        if !needed {
            return Ok(None);
        }
        // The clock read again now that the client's row is locked: a token issued
        // before the lock was taken has an `iat` no later than this (see
        // `client_credentials`), so the cut-off covers it.
        let cut_off = self.cut_off(
            c,
            RevocationKind::Subject,
            Some(&client.client_id),
            Some(&client.tenant),
            self.now().max(now),
        )?;
        let rb = cut_off.revoked_before;
        store::insert_events(c, &[cut_off], now)?;
        Ok(rb)
    }

    /// Counts a failed client authentication against the address and, for a client that
    /// exists, against its id; the error to answer (`429` once either is limited).
    fn client_auth_failure(&self, ctx: &Ctx, client_id: Option<&str>, reason: &'static str, now: i64) -> Error {
        let actor = client_id.map_or_else(|| "anonymous".to_owned(), |id| format!("client:{id}"));
        let f = Failure {
            action: AUTH_ACTION,
            actor: &actor,
            route: TOKEN_ROUTE,
            reason,
        };
        let by_address = self.guard.fail(f, ctx.peer.as_deref(), now);
        let by_client = client_id.and_then(|id| self.client_limits.fail(id, now));
        self.metrics
            .audit_failures_pending
            .set(i64::try_from(self.guard.pending_failures()).unwrap_or(i64::MAX));
        match by_address.max(by_client) {
            Some(retry_after_s) => Error::RateLimited { retry_after_s },
            None => Error::InvalidClient,
        }
    }

    /// A token request whose client authentication could not be read (a malformed
    /// `Authorization`, no secret): counted against the address; the error to answer.
    pub fn refuse_client_auth(&self, ctx: &Ctx, reason: &'static str) -> Error {
        let now = self.now();
        if let Some(retry_after_s) = self.guard.limited(ctx.peer.as_deref(), now) {
            return self.client_limited(ctx, "anonymous", retry_after_s, now);
        }
        self.client_auth_failure(ctx, None, reason, now)
    }

    /// A token request refused because its address or client id is limited: counted in
    /// the audit aggregate (reason `rate_limited`); the `429` to answer.
    fn client_limited(&self, ctx: &Ctx, actor: &str, retry_after_s: u64, now: i64) -> Error {
        let f = Failure {
            action: AUTH_ACTION,
            actor,
            route: TOKEN_ROUTE,
            reason: "rate_limited",
        };
        self.guard.fail(f, ctx.peer.as_deref(), now);
        Error::RateLimited { retry_after_s }
    }

    /// `POST /oauth/token`, `grant_type=client_credentials`: authenticates the client
    /// (a limited address or client id is refused first), then issues a token for the
    /// scopes and audience asked for, within the client's. Failed authentications are
    /// counted (`guard`, `client_limits`) and audited in aggregate; a refusal of an
    /// authenticated client and every token issued are audited one by one.
    pub fn client_credentials(&self, ctx: &Ctx, req: ClientCredentials) -> Result<ClientToken> {
        let cfg = self.token_config()?;
        let now = self.now();
        if let Some(retry_after_s) = self.guard.limited(ctx.peer.as_deref(), now) {
            return Err(self.client_limited(ctx, "anonymous", retry_after_s, now));
        }
        if !clients::is_client_id(&req.client_id) {
            return Err(self.client_auth_failure(ctx, None, "unknown", now));
        }
        let id = req.client_id.as_str();
        if let Some(retry_after_s) = self.client_limits.limited(id, now) {
            return Err(self.client_limited(ctx, &format!("client:{id}"), retry_after_s, now));
        }
        let Some((client, tenant)) = self.db.read(|c| store::client_and_tenant(c, id))? else {
            return Err(self.client_auth_failure(ctx, None, "unknown", now));
        };
        let matched = clients::check_secret(&client, &req.client_secret, now);
        if matched == SecretMatch::Neither {
            return Err(self.client_auth_failure(ctx, Some(id), "wrong_secret", now));
        }
        if client.disabled_at.is_some() {
            return Err(self.client_auth_failure(ctx, Some(id), "disabled", now));
        }
        if tenant.disabled_at.is_some() {
            return Err(self.client_auth_failure(ctx, Some(id), "tenant_disabled", now));
        }
        // Issued at the clock read after the client was seen enabled: an enabling that
        // committed before that read was at or after its disabling's cut-off, so the token
        // is not covered by it.
        let now = self.now().max(now);
        let ctx = ctx.as_actor(format!("client:{id}")).for_tenant(Some(&client.tenant));
        let granted = (|| {
            let list = client.ip_allowlist.as_deref().unwrap_or(&tenant.ip_allowlist);
            if !allowlist_admits(list, ctx.peer.as_deref()) {
                return Err(Error::UnauthorizedClient(
                    "this client may not obtain tokens from this address".to_owned(),
                ));
            }
            let scopes = clients::granted_scopes(&client, req.scope.as_deref())?;
            let audience = clients::granted_audience(&client, req.audience.as_deref())?;
            Ok((scopes, audience))
        })();
        let (scopes, audience) = match granted {
            Ok(g) => g,
            Err(e) => {
                let detail = json!({"error": e.code(), "reason": refusal_reason(&e)});
                self.record(&[ctx.event("client.token", Some(id), FAILURE, Some(detail), now)])?;
                return Err(e);
            }
        };
        let signing = self.current_key()?;
        let token = clients::issue_client_token(&signing, cfg, &client, audience, scopes, now)?;
        let detail = json!({"jti": token.jti, "aud": token.audience, "scope": token.scopes,
            "kid": signing.kid, "secret": matched.as_str()});
        let event: NewAudit = ctx.event("client.token", Some(id), SUCCESS, Some(detail), now);
        // The token is handed out only if the client is still enabled once its row is
        // locked: a disable or delete that committed meanwhile is seen (the token is
        // dropped), and one that comes later waits for this and cuts off from after it.
        let still_enabled = self.write(|c| {
            let enabled = store::lock_enabled_client(c, id)?;
            if enabled {
                store::insert_audit(c, &event)?;
            }
            Ok(enabled)
        })?;
        if !still_enabled {
            return Err(self.client_auth_failure(&ctx, Some(id), "disabled", now));
        }
        Ok(ClientToken {
            access_token: token.token,
            token_type: "Bearer",
            expires_in: token.exp - token.iat,
            scope: token.scopes.join(" "),
        })
    }
}
