//! What a rule asks of a request besides its credential: the route table
//! and path normalisation, hosts and Envoy routes, browser origins and CORS, client addresses, and
//! scopes and roles.

pub mod caller;
pub mod destination;
pub mod ip;
pub mod origin;
pub mod path;
pub mod routes;
pub mod scopes;
