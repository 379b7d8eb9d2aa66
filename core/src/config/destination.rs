//! `rules[].match.hosts`, `match.route_name` and `match.route_metadata`:
//! a rule's conditions on where the request goes, and the facts the shell
//! must gather for them ([`Needs`]).

use serde::Deserialize;

use crate::policy::destination::{DestinationMatch, HostPattern, MetadataKey, Needs};

use super::field::err;
use super::rules::RawMatch;
use super::ConfigError;

/// The longest route name, metadata filter, key or value accepted, in bytes.
const MAX_ROUTE_TEXT_BYTES: usize = 256;
/// The most hosts one rule may list.
const MAX_HOSTS: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouteMetadata {
    pub(super) filter: String,
    pub(super) key: String,
    pub(super) equals: String,
}

/// Non-empty printable text: it is compared to, or sent as part of a
/// property path (`\0`-separated) to, the host.
fn route_text(s: &str, at: &str) -> Result<String, ConfigError> {
    if s.is_empty() || s.len() > MAX_ROUTE_TEXT_BYTES || s.chars().any(char::is_control) {
        return Err(err(
            at,
            format!("must be 1 to {MAX_ROUTE_TEXT_BYTES} bytes without control characters"),
        ));
    }
    Ok(s.to_owned())
}

/// Whether `m` has any condition on the destination.
pub(super) fn has_destination(m: &RawMatch) -> bool {
    m.hosts.is_some() || m.route_name.is_some() || m.route_metadata.is_some()
}

/// The destination conditions of the rule at `at` (`rules[i].match`),
/// recording in `needs` what they read.
pub(super) fn compile_destination(m: &RawMatch, at: &str, needs: &mut Needs) -> Result<DestinationMatch, ConfigError> {
    let hosts = match &m.hosts {
        None => None,
        Some(list) => {
            if list.is_empty() || list.len() > MAX_HOSTS {
                return Err(err(format!("{at}.hosts"), format!("list 1 to {MAX_HOSTS} hosts")));
            }
            let mut patterns = Vec::with_capacity(list.len());
            for (j, h) in list.iter().enumerate() {
                let p = HostPattern::parse(h).map_err(|m| err(format!("{at}.hosts[{j}]"), m))?;
                if patterns.contains(&p) {
                    return Err(err(format!("{at}.hosts[{j}]"), format!("\"{h}\" is listed twice")));
                }
                patterns.push(p);
            }
            needs.host = true;
            Some(patterns)
        }
    };
    let route_name = match &m.route_name {
        None => None,
        Some(n) => {
            needs.route_name = true;
            Some(route_text(n, &format!("{at}.route_name"))?)
        }
    };
    let route_metadata = match &m.route_metadata {
        None => None,
        Some(r) => {
            let key = MetadataKey {
                filter: route_text(&r.filter, &format!("{at}.route_metadata.filter"))?,
                key: route_text(&r.key, &format!("{at}.route_metadata.key"))?,
            };
            let equals = route_text(&r.equals, &format!("{at}.route_metadata.equals"))?;
            Some((needs.metadata_index(key), equals))
        }
    };
    Ok(DestinationMatch {
        hosts,
        route_name,
        route_metadata,
    })
}
