//! Key tags on the service's side: the secret it shares with the edges
//! (`api_keys.key_tags` there), from the environment, so that every key it
//! mints carries a tag an edge can check offline (core's `api_key::tag`).
//!
//! * `EDGE_AUTH_KEY_TAG_SECRET`: at least 32 bytes, used as is (the edges read
//!   the same value). Set: every new key (admin API, CLI, rotation) is
//!   `sk_` + 48 random hex + 16 hex of tag. Unset: keys are 64 random hex, as
//!   before. Set but shorter (or empty): the service refuses to start.
//! * `EDGE_AUTH_KEY_TAG_SECRET_PREVIOUS`: during a rotation of the secret, the
//!   one being replaced. The service mints with the current one only; it is
//!   read so that a mistake (the previous without a current, the same value
//!   twice, a short one) stops the service as it would stop the edges, and so
//!   that the startup line names both.
//!
//! Each key records the id of the secret that tagged it (`tag_secret_id`, a
//! truncated hash that does not reveal the secret), so the admin API can list
//! untagged keys, and keys tagged with a secret about to be dropped.

use edge_auth_core::api_key::tag::{KeyTags, TagSecret};

/// The key-tag secret.
pub const KEY_TAG_SECRET_ENV: &str = "EDGE_AUTH_KEY_TAG_SECRET";
/// The previous key-tag secret, while rotating it.
pub const KEY_TAG_SECRET_PREVIOUS_ENV: &str = "EDGE_AUTH_KEY_TAG_SECRET_PREVIOUS";

/// The secrets from the environment: `None` when neither is set. The error
/// names the variable and never contains its value.
pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<KeyTags>, String> {
    let read = |name: &str| {
        get(name)
            .map(|v| TagSecret::new(v.as_bytes()).map_err(|e| format!("{name}: {e}")))
            .transpose()
    };
    match (read(KEY_TAG_SECRET_ENV)?, read(KEY_TAG_SECRET_PREVIOUS_ENV)?) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(format!(
            "{KEY_TAG_SECRET_PREVIOUS_ENV} is set without {KEY_TAG_SECRET_ENV}"
        )),
        (Some(current), previous) => KeyTags::new(current, previous)
            .map(Some)
            .map_err(|e| format!("{KEY_TAG_SECRET_PREVIOUS_ENV}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "tag-0123456789abcdef0123456789abcdef";
    const OLD: &str = "old-0123456789abcdef0123456789abcdef";

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn unset_means_untagged_keys() {
        assert!(from_env(env(&[])).unwrap().is_none());
    }

    #[test]
    fn the_secrets_are_read_and_checked() {
        let t = from_env(env(&[(KEY_TAG_SECRET_ENV, SECRET)])).unwrap().unwrap();
        assert_eq!(t.current().id(), TagSecret::new(SECRET.as_bytes()).unwrap().id());
        assert!(t.previous().is_none());
        let t = from_env(env(&[(KEY_TAG_SECRET_ENV, SECRET), (KEY_TAG_SECRET_PREVIOUS_ENV, OLD)]))
            .unwrap()
            .unwrap();
        assert_eq!(
            t.previous().map(TagSecret::id),
            Some(TagSecret::new(OLD.as_bytes()).unwrap().id())
        );
    }

    #[test]
    fn short_empty_orphaned_or_repeated_secrets_refuse_to_start() {
        let short = "q".repeat(31);
        for (vars, names) in [
            (vec![(KEY_TAG_SECRET_ENV, short.as_str())], KEY_TAG_SECRET_ENV),
            (vec![(KEY_TAG_SECRET_ENV, "")], KEY_TAG_SECRET_ENV),
            (
                vec![
                    (KEY_TAG_SECRET_ENV, SECRET),
                    (KEY_TAG_SECRET_PREVIOUS_ENV, short.as_str()),
                ],
                KEY_TAG_SECRET_PREVIOUS_ENV,
            ),
            (vec![(KEY_TAG_SECRET_PREVIOUS_ENV, OLD)], KEY_TAG_SECRET_PREVIOUS_ENV),
            (
                vec![(KEY_TAG_SECRET_ENV, SECRET), (KEY_TAG_SECRET_PREVIOUS_ENV, SECRET)],
                KEY_TAG_SECRET_PREVIOUS_ENV,
            ),
        ] {
            let e = from_env(env(&vars)).unwrap_err();
            assert!(e.contains(names), "{e}");
            assert!(!e.contains(&short) && !e.contains(SECRET), "{e}");
        }
    }
}
