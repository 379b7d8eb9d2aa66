//! `edge-auth-service`: see `edge_auth_service::cli`.

fn main() -> std::process::ExitCode {
    edge_auth_service::cli::main()
}
