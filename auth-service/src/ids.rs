//! Random identifiers and their encodings: bytes from the OS RNG, lower-case hex
//! and RFC 4648 base32. Used by API keys, session and key ids, refresh tokens and
//! the database's instance id.

use crate::error::{Error, Result};

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Fills `N` bytes from the operating system's RNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| Error::internal(format_args!("OS RNG: {e}")))?;
    Ok(buf)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// Lower-case RFC 4648 base32 without padding: 16 bytes give 26 characters.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Whether every byte of `s` is a base32 digit of [`base32`].
pub fn is_base32(s: &str) -> bool {
    s.bytes().all(|b| BASE32.contains(&b))
}

/// A random identifier: `prefix` + 26 base32 characters (128 bits).
pub fn new_id(prefix: &str) -> Result<String> {
    Ok(format!("{prefix}{}", base32(&random_bytes::<16>()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_known_vectors() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "my");
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
        assert_eq!(base32(&[0u8; 16]).len(), 26);
        assert!(is_base32("mzxw6ytboi"));
        assert!(!is_base32("MZ"));
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    }
}
