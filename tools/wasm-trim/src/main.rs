//! `wasm-trim MODULE`: removes, in place, the exports of the proxy-wasm
//! callbacks edge-auth does not implement (see the library's documentation).

use std::process::ExitCode;

use edge_auth_wasm_trim::{trim, UNUSED_CALLBACKS};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path] = args.as_slice() else {
        eprintln!("usage: wasm-trim MODULE.wasm");
        return ExitCode::from(2);
    };
    let result = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|module| trim(&module, UNUSED_CALLBACKS).map_err(|e| e.to_string()))
        .and_then(|(trimmed, removed)| {
            if removed.is_empty() {
                return Ok(removed);
            }
            // write beside, then rename: a reader never sees half a module
            let tmp = format!("{path}.trim");
            std::fs::write(&tmp, trimmed)
                .and_then(|()| std::fs::rename(&tmp, path))
                .map(|()| removed)
                .map_err(|e| e.to_string())
        });
    match result {
        Ok(removed) if removed.is_empty() => {
            println!("wasm-trim: {path}: nothing to remove");
            ExitCode::SUCCESS
        }
        Ok(removed) => {
            println!("wasm-trim: {path}: removed exports {}", removed.join(", "));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wasm-trim: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}
