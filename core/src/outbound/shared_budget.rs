//! Charging `api_keys.lookup_budget`: one lookup is taken from the client's
//! bucket in shared data ([`crate::api_key::budget`]) with compare-and-swap,
//! so the Envoy's workers share one budget per client.
//!
//! If the bucket cannot be written ([`CAS_TRIES`] compare-and-swaps lost in
//! a row: other workers are charging the same slot at that very moment),
//! the lookup is refused as over budget, for a second: a slot that busy is
//! being flooded, and the bound holds.

use std::net::IpAddr;

use super::shared_fetch::create;
use super::Host;
use crate::api_key::budget::client_key;
use crate::config::LookupBudget;

const CAS_TRIES: usize = 4;

/// Charges one lookup of `client` at `now_ms`. `Err` with the seconds until
/// the client may look a key up again.
pub fn charge(host: &mut dyn Host, budget: &LookupBudget, client: Option<IpAddr>, now_ms: u64) -> Result<(), u64> {
    let (policy, table) = (&budget.policy, &budget.table);
    let name = table.slot_name(&client_key(client, policy.ipv6_prefix), policy.slots);
    for _ in 0..CAS_TRIES {
        let (value, cas) = host.shared_get(&name);
        let charge = table.charge(value.as_deref(), policy, now_ms);
        let Some(bytes) = charge.write else {
            return charge.allowed;
        };
        let Some(cas) = cas.or_else(|| create(host, &name)) else {
            continue;
        };
        if host.shared_set(&name, &bytes, Some(cas)).is_ok() {
            return charge.allowed;
        }
    }
    Err(1)
}
