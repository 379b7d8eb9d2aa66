//! The token request: `POST <path>` with a form-urlencoded
//! `grant_type=client_credentials` body (RFC 6749 4.4.2), the client
//! authenticated with HTTP Basic (RFC 6749 2.3.1: id and secret each
//! form-urlencoded first) or in the body (`client_auth: post`).

use ct_codecs::{Base64, Encoder};

use super::{ClientAuth, EgressToken};

/// What to send: headers (besides `:method`, `:path`, `:authority`) and body.
/// Built once at configure time; the header values include the secret for
/// `basic`, so neither is ever logged.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenRequest(..)")
    }
}

/// `application/x-www-form-urlencoded` encoding of one value (WHATWG URL
/// standard): `A-Z a-z 0-9 * - . _` kept, space as `+`, every other byte `%XX`.
pub fn form_urlencode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The request for entry `e`.
pub fn token_request(e: &EgressToken) -> TokenRequest {
    let mut body = String::from("grant_type=client_credentials");
    if let Some(a) = &e.audience {
        body.push_str("&audience=");
        body.push_str(&form_urlencode(a));
    }
    if !e.scopes.is_empty() {
        body.push_str("&scope=");
        body.push_str(&form_urlencode(&e.scopes.join(" ")));
    }
    let mut headers = vec![
        ("content-type", "application/x-www-form-urlencoded".to_owned()),
        ("accept", "application/json".to_owned()),
        ("user-agent", "edge-auth".to_owned()),
    ];
    match e.client_auth {
        ClientAuth::Basic => {
            let pair = format!(
                "{}:{}",
                form_urlencode(&e.client_id),
                form_urlencode(e.client_secret.expose())
            );
            let encoded = Base64::encode_to_string(pair.as_bytes()).unwrap_or_default();
            headers.push(("authorization", format!("Basic {encoded}")));
        }
        ClientAuth::Post => {
            body.push_str("&client_id=");
            body.push_str(&form_urlencode(&e.client_id));
            body.push_str("&client_secret=");
            body.push_str(&form_urlencode(e.client_secret.expose()));
        }
    }
    TokenRequest { headers, body }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::tests::entry;
    use super::*;
    use ct_codecs::Decoder;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn form_encoding_escapes_every_reserved_byte() {
        assert_eq!(form_urlencode("a b&c=d+e%f/g:h"), "a+b%26c%3Dd%2Be%25f%2Fg%3Ah");
        assert_eq!(form_urlencode("AZaz09*-._"), "AZaz09*-._");
        assert_eq!(form_urlencode("é\r\n"), "%C3%A9%0D%0A");
        assert_eq!(form_urlencode(""), "");
    }

    #[test]
    fn basic_auth_encodes_id_and_secret_before_base64() {
        let mut e = entry();
        e.client_id = "mc:1".into();
        e.client_secret = super::super::Secret::new("s&e:c r+t".into());
        e.audience = Some("https://billing.example.com".into());
        e.scopes = vec!["billing:read".into(), "billing:write".into()];
        let r = token_request(&e);
        assert_eq!(
            r.body,
            "grant_type=client_credentials&audience=https%3A%2F%2Fbilling.example.com&scope=billing%3Aread+billing%3Awrite"
        );
        let auth = &r.headers.iter().find(|(n, _)| *n == "authorization").unwrap().1;
        let decoded = Base64::decode_to_vec(auth.strip_prefix("Basic ").unwrap(), None).unwrap();
        assert_eq!(decoded, b"mc%3A1:s%26e%3Ac+r%2Bt");
        assert!(r
            .headers
            .contains(&("content-type", "application/x-www-form-urlencoded".into())));
        assert!(r.headers.contains(&("accept", "application/json".into())));
        assert!(!format!("{r:?}").contains("s&e"));
    }

    #[test]
    fn post_auth_puts_the_credentials_in_the_body_only() {
        let mut e = entry();
        e.client_auth = ClientAuth::Post;
        e.client_secret = super::super::Secret::new("a=b&grant_type=password".into());
        let r = token_request(&e);
        assert_eq!(
            r.body,
            "grant_type=client_credentials&client_id=mc_0123&client_secret=a%3Db%26grant_type%3Dpassword"
        );
        assert!(r.headers.iter().all(|(n, _)| *n != "authorization"));
    }
}
