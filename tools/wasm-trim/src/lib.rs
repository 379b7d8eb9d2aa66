//! Removes exports from a WebAssembly module, leaving everything else as is.
//!
//! The proxy-wasm Rust SDK exports every callback of the ABI, and a host
//! calls each exported callback for every stream: request body and
//! trailers, response body and trailers, and the access log. For a callback
//! the module does not export, the host skips the call (proxy-wasm-cpp-host
//! returns `Continue` without entering the VM), which is what the SDK's
//! default implementations would have answered anyway. Entering the VM costs
//! far more than the nothing these callbacks do, so `make build` removes the
//! exports of the callbacks edge-auth does not implement ([`UNUSED_CALLBACKS`]).
//!
//! Only the export section is rewritten: the functions stay in the module
//! (unreferenced), so no index anywhere changes.

use std::fmt;

/// The callbacks the filter leaves to the SDK's defaults (see `src/filter.rs`:
/// its `HttpContext` implements request and response headers only, no
/// context implements `on_log` or `on_done`, and a stream's state is dropped
/// with its context). Implementing one of these in the filter means removing
/// it from this list.
pub const UNUSED_CALLBACKS: &[&str] = &[
    "proxy_on_request_body",
    "proxy_on_request_trailers",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
    "proxy_on_log",
    "proxy_on_done",
];

/// Why a module could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrimError {
    /// The module does not start with the WebAssembly magic and version 1.
    NotWasm,
    /// A size or count runs past the end, or an integer is not valid LEB128.
    Truncated,
    /// An export name is not UTF-8.
    BadName,
}

impl fmt::Display for TrimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrimError::NotWasm => "not a WebAssembly 1.0 module",
            TrimError::Truncated => "the module is truncated or malformed",
            TrimError::BadName => "an export name is not UTF-8",
        })
    }
}

impl std::error::Error for TrimError {}

const HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
const EXPORT_SECTION: u8 = 7;

/// Reads an unsigned LEB128 `u32` at `*at`, advancing it.
fn read_u32(bytes: &[u8], at: &mut usize) -> Result<u32, TrimError> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let b = *bytes.get(*at).ok_or(TrimError::Truncated)?;
        *at += 1;
        let low = u32::from(b & 0x7f);
        // the fifth byte may only carry the top four bits
        if i == 4 && (b & 0x70) != 0 {
            return Err(TrimError::Truncated);
        }
        value |= low << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(TrimError::Truncated)
}

fn write_u32(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let b = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn take<'a>(bytes: &'a [u8], at: &mut usize, len: usize) -> Result<&'a [u8], TrimError> {
    let end = at.checked_add(len).ok_or(TrimError::Truncated)?;
    let slice = bytes.get(*at..end).ok_or(TrimError::Truncated)?;
    *at = end;
    Ok(slice)
}

/// One export: its name and the raw bytes of the whole entry.
struct Export<'a> {
    name: &'a str,
    raw: &'a [u8],
}

fn exports(section: &[u8]) -> Result<Vec<Export<'_>>, TrimError> {
    let mut at = 0;
    let count = read_u32(section, &mut at)?;
    let mut list = Vec::new();
    for _ in 0..count {
        let start = at;
        let len = read_u32(section, &mut at)? as usize;
        let name = std::str::from_utf8(take(section, &mut at, len)?).map_err(|_| TrimError::BadName)?;
        take(section, &mut at, 1)?; // kind
        read_u32(section, &mut at)?; // index
        list.push(Export {
            name,
            raw: section.get(start..at).ok_or(TrimError::Truncated)?,
        });
    }
    if at != section.len() {
        return Err(TrimError::Truncated);
    }
    Ok(list)
}

/// Walks the module's sections: `(id, payload)` each, checked to end exactly
/// at the end of the module.
fn sections(module: &[u8]) -> Result<Vec<(u8, &[u8])>, TrimError> {
    if module.get(..8) != Some(&HEADER[..]) {
        return Err(TrimError::NotWasm);
    }
    let mut at = 8;
    let mut list = Vec::new();
    while at < module.len() {
        let id = *module.get(at).ok_or(TrimError::Truncated)?;
        at += 1;
        let size = read_u32(module, &mut at)? as usize;
        list.push((id, take(module, &mut at, size)?));
    }
    Ok(list)
}

/// The names the module exports, in order.
pub fn export_names(module: &[u8]) -> Result<Vec<String>, TrimError> {
    let mut names = Vec::new();
    for (id, payload) in sections(module)? {
        if id == EXPORT_SECTION {
            names.extend(exports(payload)?.iter().map(|e| e.name.to_owned()));
        }
    }
    Ok(names)
}

/// The module without the exports named in `remove` (names it does not
/// export are ignored, so trimming twice changes nothing), and the names
/// actually removed.
pub fn trim(module: &[u8], remove: &[&str]) -> Result<(Vec<u8>, Vec<String>), TrimError> {
    let mut out = Vec::with_capacity(module.len());
    out.extend_from_slice(&HEADER);
    let mut removed = Vec::new();
    for (id, payload) in sections(module)? {
        out.push(id);
        if id != EXPORT_SECTION {
            write_u32(&mut out, payload.len() as u32);
            out.extend_from_slice(payload);
            continue;
        }
        let (kept, dropped): (Vec<Export<'_>>, Vec<Export<'_>>) =
            exports(payload)?.into_iter().partition(|e| !remove.contains(&e.name));
        removed.extend(dropped.iter().map(|e| e.name.to_owned()));
        let mut body = Vec::with_capacity(payload.len());
        write_u32(&mut body, kept.len() as u32);
        for e in &kept {
            body.extend_from_slice(e.raw);
        }
        write_u32(&mut out, body.len() as u32);
        out.extend_from_slice(&body);
    }
    Ok((out, removed))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// A module with a type, one function per export, the exports, and code.
    fn module(names: &[&str]) -> Vec<u8> {
        let mut m = HEADER.to_vec();
        let section = |m: &mut Vec<u8>, id: u8, body: &[u8]| {
            m.push(id);
            write_u32(m, body.len() as u32);
            m.extend_from_slice(body);
        };
        section(&mut m, 1, &[1, 0x60, 0, 0]); // one type: [] -> []
        let mut funcs = Vec::new();
        write_u32(&mut funcs, names.len() as u32);
        funcs.extend(std::iter::repeat_n(0u8, names.len()));
        section(&mut m, 3, &funcs);
        let mut exports = Vec::new();
        write_u32(&mut exports, names.len() as u32);
        for (i, n) in names.iter().enumerate() {
            write_u32(&mut exports, n.len() as u32);
            exports.extend_from_slice(n.as_bytes());
            exports.push(0); // function
            write_u32(&mut exports, i as u32);
        }
        section(&mut m, 7, &exports);
        let mut code = Vec::new();
        write_u32(&mut code, names.len() as u32);
        for _ in names {
            code.extend_from_slice(&[2, 0, 0x0b]); // size 2: no locals, end
        }
        section(&mut m, 10, &code);
        section(&mut m, 0, b"\x04namexyz"); // a custom section, kept as is
        m
    }

    #[test]
    fn removes_only_the_named_exports() {
        let names = [
            "proxy_on_request_headers",
            "proxy_on_log",
            "proxy_on_response_body",
            "memory_like",
        ];
        let m = module(&names);
        assert_eq!(export_names(&m).unwrap(), names);
        let (trimmed, removed) = trim(&m, UNUSED_CALLBACKS).unwrap();
        assert_eq!(removed, ["proxy_on_log", "proxy_on_response_body"]);
        assert_eq!(
            export_names(&trimmed).unwrap(),
            ["proxy_on_request_headers", "memory_like"]
        );
        // Everything else is byte for byte the same: the module minus the two entries.
        assert!(trimmed.len() < m.len());
        assert!(trimmed.ends_with(b"\x04namexyz"));
        // Trimming again changes nothing.
        let (again, removed) = trim(&trimmed, UNUSED_CALLBACKS).unwrap();
        assert_eq!(again, trimmed);
        assert!(removed.is_empty());
    }

    #[test]
    fn a_module_without_those_exports_is_unchanged() {
        let m = module(&["a", "b"]);
        assert_eq!(trim(&m, UNUSED_CALLBACKS).unwrap(), (m.clone(), vec![]));
        let empty = HEADER.to_vec();
        assert_eq!(trim(&empty, UNUSED_CALLBACKS).unwrap().0, empty);
    }

    #[test]
    fn long_sizes_round_trip() {
        // a name over 127 bytes needs a two-byte LEB128 length
        let long = "x".repeat(300);
        let m = module(&[&long, "proxy_on_log"]);
        let (trimmed, removed) = trim(&m, &["proxy_on_log"]).unwrap();
        assert_eq!(removed, ["proxy_on_log"]);
        assert_eq!(export_names(&trimmed).unwrap(), [long]);
    }

    #[test]
    fn malformed_modules_are_refused() {
        assert_eq!(trim(b"", UNUSED_CALLBACKS), Err(TrimError::NotWasm));
        assert_eq!(trim(b"\0asm\x02\0\0\0", UNUSED_CALLBACKS), Err(TrimError::NotWasm));
        let m = module(&["proxy_on_log", "b"]);
        // Section boundaries: cutting there leaves a shorter valid module.
        let mut boundaries = vec![8];
        let mut at = 8;
        while at < m.len() {
            at += 1;
            let size = read_u32(&m, &mut at).unwrap() as usize;
            at += size;
            boundaries.push(at);
        }
        for cut in 9..m.len() {
            let r = trim(&m[..cut], UNUSED_CALLBACKS);
            assert_eq!(r.is_ok(), boundaries.contains(&cut), "cut at {cut}");
        }
        // a LEB128 that never ends, and one too long for a u32
        let mut bad = HEADER.to_vec();
        bad.extend_from_slice(&[7, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
        assert_eq!(trim(&bad, UNUSED_CALLBACKS), Err(TrimError::Truncated));
        let mut bad = HEADER.to_vec();
        bad.extend_from_slice(&[7, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert_eq!(trim(&bad, UNUSED_CALLBACKS), Err(TrimError::Truncated));
        // an export count larger than the section, and a name that is not UTF-8
        let mut bad = HEADER.to_vec();
        bad.extend_from_slice(&[7, 1, 5]);
        assert_eq!(trim(&bad, UNUSED_CALLBACKS), Err(TrimError::Truncated));
        let mut bad = HEADER.to_vec();
        bad.extend_from_slice(&[7, 5, 1, 1, 0xff, 0, 0]);
        assert_eq!(trim(&bad, UNUSED_CALLBACKS), Err(TrimError::BadName));
        // bytes left over in the export section
        let mut bad = HEADER.to_vec();
        bad.extend_from_slice(&[7, 6, 1, 1, b'a', 0, 0, 9]);
        assert_eq!(trim(&bad, UNUSED_CALLBACKS), Err(TrimError::Truncated));
    }
}
