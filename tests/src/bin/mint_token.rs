//! Mints an HS256 token for the demo (`make run`).
//!
//! mint-token --secret-env EDGE_AUTH_DEMO_HS256_SECRET --iss https://demo.edge-auth.local \
//!            --aud demo-api --sub alice --ttl 300 [--kid K] [--claim k=v]...
//!
//! The key is the UTF-8 bytes of the environment variable named by
//! `--secret-env` (the secret never appears on the command line). Claims:
//! iss, aud, sub, iat = now, exp = now + ttl, plus each `--claim k=v`: v is
//! taken as JSON when it parses as JSON (`n=5`, `admin=true`, `roles=["a"]`),
//! else as a string (`role=admin`). The token is printed on stdout.

use std::process::ExitCode;

use edge_auth_e2e::tokens::{claims, Alg, TestKey};
use serde_json::Value;

const USAGE: &str = "usage: mint-token --secret-env VAR [--iss ISS] [--aud AUD] [--sub SUB] [--ttl SECONDS] [--kid KID] [--claim k=v]...";

fn run() -> Result<String, String> {
    let mut secret_env = None;
    let (mut iss, mut aud, mut sub) = (
        "https://demo.edge-auth.local".to_string(),
        "demo-api".to_string(),
        "alice".to_string(),
    );
    let mut ttl: i64 = 300;
    let mut kid = None;
    let mut extra: Vec<(String, Value)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_string());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--secret-env" => secret_env = Some(value),
            "--iss" => iss = value,
            "--aud" => aud = value,
            "--sub" => sub = value,
            "--ttl" => ttl = value.parse().map_err(|_| format!("--ttl: not a number: {value}"))?,
            "--kid" => kid = Some(value),
            "--claim" => {
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| format!("--claim expects k=v, got {value}"))?;
                let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
                extra.push((k.to_string(), v));
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let var = secret_env.ok_or_else(|| format!("--secret-env is required\n{USAGE}"))?;
    let secret = std::env::var(&var).map_err(|_| format!("environment variable {var} is not set"))?;
    if secret.is_empty() {
        return Err(format!("environment variable {var} is empty"));
    }
    let mut body = claims(&iss, &aud, &sub, ttl);
    for (k, v) in extra {
        body[k] = v;
    }
    let key = TestKey::hmac(Alg::HS256, kid.as_deref().unwrap_or(""), secret.as_bytes());
    Ok(key.sign_with_kid(kid.as_deref(), &body))
}

fn main() -> ExitCode {
    match run() {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mint-token: {e}");
            ExitCode::from(2)
        }
    }
}
