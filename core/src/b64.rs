//! Base64url without padding (RFC 7515 section 2), the encoding of every JWS part.

use ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};

/// Decodes unpadded base64url; `None` for any other alphabet, padding or a bad length.
pub fn decode_url(s: &str) -> Option<Vec<u8>> {
    Base64UrlSafeNoPadding::decode_to_vec(s, None).ok()
}

/// Decodes into `buf`, returning the decoded slice; `None` when invalid or too long for `buf`.
pub fn decode_url_into<'a>(s: &str, buf: &'a mut [u8]) -> Option<&'a [u8]> {
    Base64UrlSafeNoPadding::decode(buf, s, None).ok()
}

pub fn encode_url(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap_or_default()
}
