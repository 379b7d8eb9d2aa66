//! The issuer's answer to a token request, read as an attacker could write
//! it: the token goes into a header of every request, so only a plain
//! RFC 6750 `b64token` of bounded size is accepted, from a bounded JSON
//! object without repeated members.

use serde_json::Value;

/// The largest answer body read.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;
/// The longest access token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8192;
/// The longest `expires_in` accepted (a day).
pub const MAX_EXPIRES_IN_S: u64 = 86_400;
/// The shortest `expires_in` accepted: twice the serving margin
/// ([`super::schedule::SERVE_MARGIN_MS`]), so that a token is served for
/// half its life at least and its refresh (at half life) comes before it
/// stops being served. A shorter one could never be served for long (or
/// at all) and would be fetched again every few hundred ms: it counts as a
/// failed fetch (backoff, breaker) instead.
pub const MIN_EXPIRES_IN_S: u64 = 2 * super::schedule::SERVE_MARGIN_MS / 1000;

/// The OAuth error codes of a 400 that mean the client's credentials or
/// grant are refused (RFC 6749 5.2); read from 401 and 403 bodies too, for the log.
const REJECTING_ERRORS: [&str; 4] = [
    "invalid_client",
    "unauthorized_client",
    "invalid_grant",
    "invalid_scope",
];

/// What an answer means.
#[derive(Clone, PartialEq, Eq)]
pub enum Answer {
    /// A token, valid for `expires_in_s` seconds from its arrival.
    Token { access_token: String, expires_in_s: u64 },
    /// No token this time (timeout, 429, 5xx, malformed answer, ...): retry
    /// after a backoff (at least `retry_after_s`, from a 429's `Retry-After`).
    Unavailable {
        why: &'static str,
        retry_after_s: Option<u64>,
    },
    /// The issuer refused the client's credentials or grant: no retry for `rejected_retry_s`.
    Rejected { status: u16, error: Option<&'static str> },
}

impl std::fmt::Debug for Answer {
    // never the token
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Token { expires_in_s, .. } => write!(f, "Token {{ expires_in_s: {expires_in_s} }}"),
            Answer::Unavailable { why, retry_after_s } => {
                write!(f, "Unavailable {{ why: {why:?}, retry_after_s: {retry_after_s:?} }}")
            }
            Answer::Rejected { status, error } => write!(f, "Rejected {{ status: {status}, error: {error:?} }}"),
        }
    }
}

fn unavailable(why: &'static str) -> Answer {
    Answer::Unavailable {
        why,
        retry_after_s: None,
    }
}

/// Whether `t` is an RFC 6750 `b64token`: `A-Z a-z 0-9 - . _ ~ + /` then `=`s.
pub fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

/// `Retry-After` as delta-seconds (an HTTP date or anything else: `None`,
/// the backoff alone applies). A value too large for a `u64` is the largest
/// one: the caller caps it at `backoff_max_s`, it is never ignored.
pub fn retry_after_s(value: Option<&str>) -> Option<u64> {
    let v = value?.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // only digits: parsing fails on overflow alone
    Some(v.parse().unwrap_or(u64::MAX))
}

/// The `error` member of a refusal, when it is one of the known codes.
fn error_code(body: Option<&[u8]>) -> Option<&'static str> {
    let body = body.filter(|b| b.len() <= MAX_ANSWER_BYTES)?;
    let obj = crate::json_object::parse_object(body).ok()?;
    let e = obj.get("error")?.as_str()?;
    REJECTING_ERRORS.into_iter().find(|c| *c == e)
}

/// Reads an answer: its status, body (read up to [`MAX_ANSWER_BYTES`] + 1)
/// and `Retry-After` header. `status` `None`: no answer (timeout, reset).
pub fn read_answer(status: Option<u16>, body: Option<&[u8]>, retry_after: Option<&str>) -> Answer {
    match status {
        None => return unavailable("no answer"),
        Some(200) => {}
        Some(429) => {
            return Answer::Unavailable {
                why: "status 429",
                retry_after_s: retry_after_s(retry_after),
            }
        }
        Some(s @ (401 | 403)) => {
            return Answer::Rejected {
                status: s,
                error: error_code(body),
            }
        }
        Some(400) => {
            return match error_code(body) {
                Some(e) => Answer::Rejected {
                    status: 400,
                    error: Some(e),
                },
                None => unavailable("status 400"),
            }
        }
        Some(s) if s >= 500 => return unavailable("status 5xx"),
        Some(_) => return unavailable("unexpected status"),
    }
    let Some(body) = body else {
        return unavailable("empty answer");
    };
    if body.len() > MAX_ANSWER_BYTES {
        return unavailable("answer larger than 16 KiB");
    }
    let Ok(obj) = crate::json_object::parse_object(body) else {
        return unavailable("answer is not one JSON object (or repeats a member)");
    };
    let Some(Value::String(token)) = obj.get("access_token") else {
        return unavailable("no access_token string");
    };
    if token.len() > MAX_TOKEN_BYTES || !is_b64token(token) {
        return unavailable("access_token is not a b64token of at most 8192 bytes");
    }
    match obj.get("token_type") {
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        _ => return unavailable("token_type is not Bearer"),
    }
    let expires_in_s = match obj.get("expires_in").and_then(Value::as_u64) {
        Some(s) if (MIN_EXPIRES_IN_S..=MAX_EXPIRES_IN_S).contains(&s) => s,
        _ => return unavailable("expires_in is not an integer from 10 to 86400"),
    };
    Answer::Token {
        access_token: token.clone(),
        expires_in_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn ok(body: &serde_json::Value) -> Answer {
        read_answer(Some(200), Some(body.to_string().as_bytes()), None)
    }

    fn is_unavailable(a: &Answer) -> bool {
        matches!(a, Answer::Unavailable { .. })
    }

    #[test]
    fn a_good_answer_gives_the_token_and_its_lifetime() {
        let a =
            ok(&json!({"access_token": "eyJ.a-b_c~d+e/f==", "token_type": "bearer", "expires_in": 3600, "scope": "x"}));
        assert_eq!(
            a,
            Answer::Token {
                access_token: "eyJ.a-b_c~d+e/f==".into(),
                expires_in_s: 3600
            }
        );
        assert!(!format!("{a:?}").contains("eyJ"));
    }

    #[test]
    fn tokens_that_could_split_or_smuggle_a_header_are_refused() {
        for t in [
            "abc\r\nx-admin: 1",
            "abc def",
            "abc\n",
            "a\"b",
            "a,b",
            "=abc",
            "==",
            "",
            "a=b",
            "tök",
            "a\u{0}b",
        ] {
            let a = ok(&json!({"access_token": t, "token_type": "Bearer", "expires_in": 60}));
            assert!(is_unavailable(&a), "{t:?} accepted");
        }
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(is_unavailable(&ok(
            &json!({"access_token": long, "token_type": "Bearer", "expires_in": 60})
        )));
        let longest = "a".repeat(MAX_TOKEN_BYTES);
        assert!(!is_unavailable(&ok(
            &json!({"access_token": longest, "token_type": "Bearer", "expires_in": 60})
        )));
    }

    #[test]
    fn malformed_oversized_and_duplicated_answers_are_failures() {
        let body = br#"{"access_token":"a","access_token":"b","token_type":"Bearer","expires_in":60}"#;
        assert!(is_unavailable(&read_answer(Some(200), Some(body), None)));
        for body in [&b"not json"[..], b"[]", b"\"tok\"", b"{", b""] {
            assert!(is_unavailable(&read_answer(Some(200), Some(body), None)));
        }
        assert!(is_unavailable(&read_answer(Some(200), None, None)));
        let pad = "x".repeat(MAX_ANSWER_BYTES);
        let big = json!({"access_token": "a", "token_type": "Bearer", "expires_in": 60, "pad": pad});
        assert!(is_unavailable(&ok(&big)));
    }

    #[test]
    fn token_type_and_expires_in_are_checked() {
        for (tt, exp) in [
            (json!("mac"), json!(60)),
            (json!("DPoP"), json!(60)),
            (json!(null), json!(60)),
            (json!("Bearer"), json!(0)),
            (json!("Bearer"), json!(1)),
            (json!("Bearer"), json!(MIN_EXPIRES_IN_S - 1)),
            (json!("Bearer"), json!(-5)),
            (json!("Bearer"), json!(86_401)),
            (json!("Bearer"), json!(1e30)),
            (json!("Bearer"), json!(60.5)),
            (json!("Bearer"), json!("60")),
            (json!("Bearer"), json!(null)),
        ] {
            let a = ok(&json!({"access_token": "abc", "token_type": tt, "expires_in": exp}));
            assert!(is_unavailable(&a), "{tt} {exp} accepted");
        }
        assert!(is_unavailable(&ok(
            &json!({"access_token": "abc", "token_type": "Bearer"})
        )));
        assert!(!is_unavailable(&ok(
            &json!({"access_token": "abc", "token_type": "BEARER", "expires_in": 86_400})
        )));
        assert!(!is_unavailable(&ok(
            &json!({"access_token": "abc", "token_type": "Bearer", "expires_in": MIN_EXPIRES_IN_S})
        )));
    }

    #[test]
    fn statuses_are_classified() {
        assert!(is_unavailable(&read_answer(None, None, None)));
        assert!(is_unavailable(&read_answer(Some(503), None, None)));
        assert!(is_unavailable(&read_answer(Some(302), None, None)));
        assert_eq!(
            read_answer(Some(429), None, Some("7")),
            Answer::Unavailable {
                why: "status 429",
                retry_after_s: Some(7)
            }
        );
        for bad in ["Wed, 21 Oct 2015 07:28:00 GMT", "-1", "1e3", "+5", "5, 6", ""] {
            assert_eq!(retry_after_s(Some(bad)), None, "{bad}");
        }
        assert_eq!(retry_after_s(Some("9999999999")), Some(9_999_999_999));
        assert_eq!(retry_after_s(Some("99999999999999999999999")), Some(u64::MAX));
        assert_eq!(
            read_answer(Some(401), Some(br#"{"error":"invalid_client"}"#), None),
            Answer::Rejected {
                status: 401,
                error: Some("invalid_client")
            }
        );
        // an unknown error code is never echoed into the log
        assert_eq!(
            read_answer(Some(403), Some(br#"{"error":"x\r\ninjected"}"#), None),
            Answer::Rejected {
                status: 403,
                error: None
            }
        );
        for e in REJECTING_ERRORS {
            let body = json!({ "error": e }).to_string();
            assert_eq!(
                read_answer(Some(400), Some(body.as_bytes()), None),
                Answer::Rejected {
                    status: 400,
                    error: Some(e)
                }
            );
        }
        assert!(is_unavailable(&read_answer(
            Some(400),
            Some(br#"{"error":"invalid_request"}"#),
            None
        )));
    }
}
