//! Egress listeners for the token-injection tests (issue 16 part 3): Envoy's own
//! peer, `envoy.filters.http.credential_injector` with the
//! `envoy.http.injected_credentials.oauth2` client-credentials extension, and a
//! way to add listeners to a bootstrap from [`crate::EnvoyOptions::bootstrap`].

use serde_json::{json, Value};

/// Envoy's credential injector fetching a client-credentials token from
/// `cluster` (`POST /oauth/token`, `timeout_ms`), its secret from the SDS secret
/// `secret_name`, retrying failures every `retry_s` seconds; `overwrite: true`
/// (a client-sent `Authorization` is replaced), and requests without a
/// credential refused (`allow_request_without_credential: false`, the default).
pub fn credential_injector(cluster: &str, client_id: &str, secret_name: &str, retry_s: u64, timeout_ms: u64) -> Value {
    json!({
        "name": "envoy.filters.http.credential_injector",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector",
            "overwrite": true,
            "allow_request_without_credential": false,
            "credential": {
                "name": "envoy.http.injected_credentials.oauth2",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.injected_credentials.oauth2.v3.OAuth2",
                    "token_endpoint": {
                        "uri": "http://issuer.test/oauth/token",
                        "cluster": cluster,
                        "timeout": format!("{}s", timeout_ms as f64 / 1000.0),
                    },
                    "scopes": ["billing:read"],
                    "token_fetch_retry_interval": format!("{retry_s}s"),
                    "client_credentials": {
                        "client_id": client_id,
                        "client_secret": {"name": secret_name},
                    },
                },
            },
        },
    })
}

/// The router, last in every chain.
pub fn router() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    })
}

/// A static generic secret for `static_resources.secrets` (what an SDS
/// reference without `sds_config` resolves to).
pub fn static_secret(name: &str, value: &str) -> Value {
    json!({"name": name, "generic_secret": {"secret": {"inline_string": value}}})
}

/// Adds `secret` to `bootstrap`'s `static_resources.secrets`.
pub fn add_secret(bootstrap: &mut Value, secret: Value) {
    let resources = &mut bootstrap["static_resources"];
    if !resources["secrets"].is_array() {
        resources["secrets"] = json!([]);
    }
    if let Some(list) = resources["secrets"].as_array_mut() {
        list.push(secret);
    }
}

/// Adds a listener `name` on 127.0.0.1:0: a copy of the generated `ingress`
/// listener (same HCM settings and route to `cluster`) whose HTTP filters are
/// `filters` (the router appended) and whose `stat_prefix` is `name`. Find its
/// address with [`crate::Envoy::listener_addr`].
pub fn add_listener(bootstrap: &mut Value, name: &str, cluster: &str, filters: Vec<Value>) {
    let mut listener = bootstrap["static_resources"]["listeners"][0].clone();
    listener["name"] = json!(name);
    if let Some(obj) = listener.as_object_mut() {
        obj.remove("additional_addresses");
    }
    let hcm = &mut listener["filter_chains"][0]["filters"][0]["typed_config"];
    hcm["stat_prefix"] = json!(name);
    hcm["route_config"]["name"] = json!(name);
    hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"] = json!(cluster);
    let mut chain = filters;
    chain.push(router());
    hcm["http_filters"] = Value::Array(chain);
    if let Some(list) = bootstrap["static_resources"]["listeners"].as_array_mut() {
        list.push(listener);
    }
}

/// Adds listener `name` in front of the `upstream` cluster with the peer,
/// [`credential_injector`] for `client_id` against `token_cluster` (retried every
/// second, a 0.5 s timeout), its secret the static SDS secret `secret_name` holding
/// `secret` (added unless the bootstrap has it already).
pub fn add_peer_listener(
    bootstrap: &mut Value,
    name: &str,
    token_cluster: &str,
    client_id: &str,
    secret_name: &str,
    secret: &str,
) {
    let known = bootstrap["static_resources"]["secrets"]
        .as_array()
        .is_some_and(|list| list.iter().any(|s| s["name"] == secret_name));
    if !known {
        add_secret(bootstrap, static_secret(secret_name, secret));
    }
    let filter = credential_injector(token_cluster, client_id, secret_name, 1, 500);
    add_listener(bootstrap, name, crate::envoy::UPSTREAM_CLUSTER, vec![filter]);
}
