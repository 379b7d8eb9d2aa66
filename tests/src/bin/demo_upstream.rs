//! The demo upstream for `make run`: the echo server on 127.0.0.1 (default
//! port 8081) until killed. Every request is answered 200 with JSON listing
//! the method, path and every header received.
//!
//! Usage: demo-upstream [--port 8081] [--bind 127.0.0.1]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use edge_auth_e2e::servers::EchoServer;

fn main() -> ExitCode {
    let mut port: u16 = 8081;
    let mut bind = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let parsed = match (arg.as_str(), value.as_deref()) {
            ("--port", Some(v)) => v.parse().map(|p| port = p).is_ok(),
            ("--bind", Some(v)) => v.parse().map(|b| bind = b).is_ok(),
            _ => false,
        };
        if !parsed {
            eprintln!("usage: demo-upstream [--port PORT] [--bind IP]   (bad argument {arg:?})");
            return ExitCode::from(2);
        }
    }
    let server = match EchoServer::start_at(SocketAddr::new(bind, port)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo-upstream: cannot listen on {bind}:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("demo-upstream: echoing requests on http://{}", server.addr());
    loop {
        std::thread::park();
    }
}
