//! Calls the tests make again and again: create a key from a JSON body, open a
//! session, refresh it, log out with a bearer access token.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use super::{Resp, TestApp};

impl TestApp {
    /// Asks the admin API for a key in `tenant` described by `body` (the caller asserts the answer).
    pub async fn post_key(&self, tenant: &str, body: Value) -> Resp {
        self.admin(Method::POST, &format!("/admin/v1/tenants/{tenant}/keys"), Some(body))
            .await
    }

    /// Opens a session for `subject` with `api_key` (asserting 201): the token pair.
    pub async fn open_session(&self, api_key: &str, subject: &str) -> Value {
        let r = self
            .sdk("/v1/sessions", api_key, Some(json!({"subject": subject})))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body
    }

    /// Refreshes with `refresh_token` (the caller asserts the answer).
    pub async fn refresh(&self, api_key: &str, refresh_token: &impl Serialize) -> Resp {
        self.sdk(
            "/v1/sessions/refresh",
            api_key,
            Some(json!({ "refresh_token": refresh_token })),
        )
        .await
    }
}

/// A logout with `api_key` and `access_token` as the bearer credential, and `body`
/// (a JSON body, such as a refresh token) if any.
pub fn logout_request(api_key: &str, access_token: &str, body: Option<&Value>) -> Request<Body> {
    let b = Request::post("/v1/sessions/logout")
        .header("x-api-key", api_key)
        .header("authorization", format!("Bearer {access_token}"));
    match body {
        Some(v) => b
            .header("content-type", "application/json")
            .body(Body::from(v.to_string())),
        None => b.body(Body::empty()),
    }
    .unwrap()
}
