//! OpenID Connect discovery: the provider's
//! `/.well-known/openid-configuration` document names its JWKS (`jwks_uri`).
//!
//! [`parse_document`] reads the two fields used, strictly, and checks them
//! against the configuration: `issuer` must equal the provider's issuer
//! byte for byte (OpenID Connect Discovery 1.0, section 4.3: no trailing
//! slash or case folding), and `jwks_uri` must be an `https` URL whose
//! authority is the one the fetches are sent with, since they go through
//! the same Envoy cluster. Its path (and query) is what the JWKS fetch asks
//! for. Every other member of the document is ignored; `issuer` or
//! `jwks_uri` given twice is refused, since two JSON parsers may keep
//! different copies.

use serde::Deserialize;

use super::refresh::ok_body;

/// The longest `jwks_uri` accepted, in bytes.
pub const MAX_JWKS_URI_BYTES: usize = 2048;

/// The fields of the document the filter uses. Not `deny_unknown_fields`: a
/// discovery document has many members; a duplicate of one of these two is
/// an error of serde's derive.
#[derive(Deserialize)]
struct Document {
    issuer: String,
    jwks_uri: String,
}

/// The path (and query) of the JWKS the document at `status`/`body` names,
/// for the provider with `issuer`, fetched with `:authority: authority`.
/// `Err`: why the document is refused (for the log).
pub fn parse_document(
    status: Option<u16>,
    body: Option<&[u8]>,
    issuer: &str,
    authority: &str,
    max_bytes: usize,
) -> Result<String, String> {
    let body = ok_body(status, body, max_bytes, "document")?;
    let doc: Document = serde_json::from_slice(body).map_err(|e| format!("not a discovery document: {e}"))?;
    if doc.issuer != issuer {
        return Err(format!(
            "the document's issuer {:?} is not the provider's issuer {issuer:?}",
            short(&doc.issuer)
        ));
    }
    jwks_path(&doc.jwks_uri, authority)
}

/// At most 128 characters of a value from the document, for a log line.
fn short(s: &str) -> String {
    s.chars().take(128).collect()
}

/// The path of `uri` if it is `https://<authority><path>`.
fn jwks_path(uri: &str, authority: &str) -> Result<String, String> {
    let refuse = |why: &str| Err(format!("jwks_uri {:?} {why}", short(uri)));
    if uri.len() > MAX_JWKS_URI_BYTES {
        return refuse("is too long");
    }
    let Some(rest) = uri.strip_prefix("https://") else {
        return refuse("is not an https URL");
    };
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => return refuse("has no path"),
    };
    if !host.eq_ignore_ascii_case(authority) {
        return refuse(&format!(
            "is not on the configured authority {authority:?} (the fetch goes through the same cluster)"
        ));
    }
    if path.bytes().any(|b| b <= 0x20 || b >= 0x7f || b == b'#' || b == b'\\') {
        return refuse("has a fragment, a space, a backslash, or a control or non-ASCII byte in its path");
    }
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const ISS: &str = "https://idp.example/realms/main";
    const AUTH: &str = "idp.example";

    fn parse(body: &str) -> Result<String, String> {
        parse_document(Some(200), Some(body.as_bytes()), ISS, AUTH, 65536)
    }

    fn doc(issuer: &str, jwks_uri: &str) -> String {
        serde_json::json!({
            "issuer": issuer, "jwks_uri": jwks_uri,
            "authorization_endpoint": "https://idp.example/auth",
            "id_token_signing_alg_values_supported": ["RS256"],
        })
        .to_string()
    }

    #[test]
    fn a_good_document_names_the_jwks_path() {
        let d = doc(ISS, "https://idp.example/realms/main/protocol/openid-connect/certs");
        assert_eq!(parse(&d).unwrap(), "/realms/main/protocol/openid-connect/certs");
        let d = doc(ISS, "https://IDP.example/keys?v=2");
        assert_eq!(parse(&d).unwrap(), "/keys?v=2");
    }

    #[test]
    fn the_issuer_must_be_the_providers_exactly() {
        for other in [
            "https://idp.example/realms/main/",
            "https://idp.example/realms/Main",
            "https://IDP.example/realms/main",
            "http://idp.example/realms/main",
            "https://idp.example/realms/main ",
            "https://evil.example/realms/main",
            "",
        ] {
            let e = parse(&doc(other, "https://idp.example/keys")).unwrap_err();
            assert!(e.contains("is not the provider's issuer"), "{other:?}: {e}");
        }
    }

    #[test]
    fn hostile_jwks_uris_are_refused() {
        for uri in [
            "http://idp.example/keys",
            "HTTPS://idp.example/keys",
            "https://idp.example",
            "https://evil.example/keys",
            "https://idp.example.evil.example/keys",
            "https://idp.example:8443/keys",
            "https://user@idp.example/keys",
            "https://idp.example@evil.example/keys",
            "//idp.example/keys",
            "/keys",
            "keys",
            "",
            "https://idp.example/ke ys",
            "https://idp.example/keys#frag",
            "https://idp.example/keys\\x",
            "https://idp.example/k\u{e9}ys",
            "https://idp.example/keys\n",
            "file:///etc/passwd",
        ] {
            assert!(parse(&doc(ISS, uri)).is_err(), "{uri:?} accepted");
        }
        let long = format!("https://idp.example/{}", "a".repeat(MAX_JWKS_URI_BYTES));
        assert!(parse(&doc(ISS, &long)).unwrap_err().contains("too long"));
    }

    #[test]
    fn malformed_duplicated_and_oversized_documents_are_refused() {
        let cases = [
            r#"{"issuer": "https://idp.example/realms/main"}"#.to_owned(),
            r#"{"jwks_uri": "https://idp.example/keys"}"#.to_owned(),
            format!(r#"{{"issuer": "{ISS}", "jwks_uri": 5}}"#),
            format!(r#"{{"issuer": ["{ISS}"], "jwks_uri": "https://idp.example/keys"}}"#),
            format!(r#"{{"issuer": "{ISS}", "jwks_uri": null}}"#),
            format!(
                r#"{{"issuer": "{ISS}", "jwks_uri": "https://idp.example/keys", "jwks_uri": "https://idp.example/other"}}"#
            ),
            format!(
                r#"{{"issuer": "https://evil.example", "issuer": "{ISS}", "jwks_uri": "https://idp.example/keys"}}"#
            ),
            format!(r#"{{"issuer": "{ISS}", "jwks_uri": "https://idp.example/keys"}} trailing"#),
            format!(r#"[{{"issuer": "{ISS}", "jwks_uri": "https://idp.example/keys"}}]"#),
            "".to_owned(),
            "null".to_owned(),
            "\u{feff}{}".to_owned(),
        ];
        for body in &cases {
            assert!(parse(body).is_err(), "{body:?} accepted");
        }
        let good = doc(ISS, "https://idp.example/keys");
        assert!(parse_document(Some(200), Some(good.as_bytes()), ISS, AUTH, good.len()).is_ok());
        let e = parse_document(Some(200), Some(good.as_bytes()), ISS, AUTH, good.len() - 1).unwrap_err();
        assert!(e.contains("exceeds"), "{e}");
        assert!(parse_document(Some(404), Some(good.as_bytes()), ISS, AUTH, 65536).is_err());
        assert!(parse_document(None, None, ISS, AUTH, 65536).is_err());
    }
}
