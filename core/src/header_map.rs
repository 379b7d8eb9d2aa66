//! A request's headers as the proxy-wasm host serialises them, read in place.
//!
//! Reading the whole map once (`proxy_get_header_map_pairs`) costs one host
//! call; reading headers one by one costs a host call each, and a re-entry
//! into the VM for every value found. The filter therefore reads the map once
//! per request and answers every question about its headers from this view.
//!
//! The layout (proxy-wasm ABI): a little-endian `u32` count `n`, then `n`
//! pairs of `u32` sizes (name, value), then for each pair the name, a NUL,
//! the value and a NUL. [`HeaderMap::parse`] checks the whole layout once and
//! notes where each name and value is, so that every later lookup is a scan
//! of a short list of slices.

/// A well-formed serialised header map: its pairs, borrowed from the buffer.
#[derive(Debug, Clone, Default)]
pub struct HeaderMap<'a> {
    pairs: Vec<(&'a [u8], &'a [u8])>,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(b)).ok()
}

impl<'a> HeaderMap<'a> {
    /// Checks `buf`'s layout; `None` when a size runs past the end, a
    /// terminator is not NUL, or bytes are left over. An empty buffer is an
    /// empty map.
    pub fn parse(buf: &'a [u8]) -> Option<HeaderMap<'a>> {
        if buf.is_empty() {
            return Some(HeaderMap::default());
        }
        let count = u32_at(buf, 0)?;
        // Each pair takes at least 8 bytes of sizes and 2 terminators: a
        // count the buffer cannot hold is refused before any multiplication.
        if count > buf.len() / 10 {
            return None;
        }
        let table_end = 4 + count * 8;
        let sizes = buf.get(4..table_end)?;
        let data = buf.get(table_end..)?;
        let mut pairs = Vec::with_capacity(count);
        let mut at = 0usize;
        for i in 0..count {
            let name_len = u32_at(sizes, i * 8)?;
            let value_len = u32_at(sizes, i * 8 + 4)?;
            let mut field = |len: usize| {
                let end = at.checked_add(len)?;
                let bytes = data.get(at..end)?;
                if data.get(end) != Some(&0) {
                    return None;
                }
                at = end + 1;
                Some(bytes)
            };
            let name = field(name_len)?;
            let value = field(value_len)?;
            pairs.push((name, value));
        }
        (at == data.len()).then_some(HeaderMap { pairs })
    }

    /// Every (name, value) pair, in the host's order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + '_ {
        self.pairs.iter().copied()
    }

    /// The first value of header `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.values(name).next()
    }

    /// Whether the request carries header `name` at all.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every value of header `name`, in order.
    pub fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.pairs
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|&(_, v)| v)
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Serialises `pairs` the way the host does (for tests and tools).
pub fn serialize<'p>(pairs: impl IntoIterator<Item = (&'p [u8], &'p [u8])>) -> Vec<u8> {
    let list: Vec<(&[u8], &[u8])> = pairs.into_iter().collect();
    let mut out = Vec::new();
    out.extend_from_slice(&(list.len() as u32).to_le_bytes());
    for (n, v) in &list {
        out.extend_from_slice(&(n.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (n, v) in &list {
        out.extend_from_slice(n);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn map(pairs: &[(&str, &str)]) -> Vec<u8> {
        serialize(pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    #[test]
    fn reads_pairs_in_order() {
        let buf = map(&[
            (":method", "GET"),
            (":path", "/a?b"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8"),
        ]);
        let m = HeaderMap::parse(&buf).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m.get(":method"), Some(&b"GET"[..]));
        assert_eq!(m.get(":path"), Some(&b"/a?b"[..]));
        let xff: Vec<&[u8]> = m.values("x-forwarded-for").collect();
        assert_eq!(xff, [&b"1.2.3.4"[..], &b"5.6.7.8"[..]]);
        assert_eq!(m.get("authorization"), None);
        assert!(!m.contains("cookie"));
        let names: Vec<&[u8]> = m.iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 4);
    }

    #[test]
    fn names_match_whatever_their_case() {
        let buf = map(&[("X-Edge-Auth-Subject", "forged")]);
        let m = HeaderMap::parse(&buf).unwrap();
        assert!(m.contains("x-edge-auth-subject"));
        assert!(!m.contains("x-edge-auth-subjec"));
        assert!(!m.contains("x-edge-auth-subjectx"));
    }

    #[test]
    fn empty_values_and_binary_values_are_kept() {
        let buf = serialize([(&b"a"[..], &b""[..]), (&b"b"[..], &b"\xff\x00\x01"[..])]);
        let m = HeaderMap::parse(&buf).unwrap();
        assert_eq!(m.get("a"), Some(&b""[..]));
        assert_eq!(m.get("b"), Some(&b"\xff\x00\x01"[..]));
    }

    #[test]
    fn an_empty_buffer_or_zero_pairs_is_an_empty_map() {
        assert!(HeaderMap::parse(&[]).unwrap().is_empty());
        let none = map(&[]);
        let m = HeaderMap::parse(&none).unwrap();
        assert!(m.is_empty());
        assert_eq!(m.iter().count(), 0);
    }

    #[test]
    fn malformed_layouts_are_refused() {
        let good = map(&[("name", "value"), ("n2", "v2")]);
        assert!(HeaderMap::parse(&good).is_some());
        // Every truncation, and any trailing byte.
        for cut in 1..good.len() {
            assert!(HeaderMap::parse(&good[..cut]).is_none(), "cut at {cut}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(HeaderMap::parse(&longer).is_none());
        // A terminator that is not NUL.
        let mut bad = good.clone();
        let name_end = 4 + 2 * 8 + 4;
        assert_eq!(bad[name_end], 0);
        bad[name_end] = b'x';
        assert!(HeaderMap::parse(&bad).is_none());
        // Counts and sizes past the end, including ones that would overflow.
        for count in [3u32, 1 << 20, u32::MAX] {
            let mut b = good.clone();
            b[..4].copy_from_slice(&count.to_le_bytes());
            assert!(HeaderMap::parse(&b).is_none(), "count {count}");
        }
        for size in [6u32, 1 << 30, u32::MAX] {
            let mut b = good.clone();
            b[4..8].copy_from_slice(&size.to_le_bytes());
            assert!(HeaderMap::parse(&b).is_none(), "size {size}");
        }
    }

    #[test]
    fn a_shorter_name_size_cannot_shift_pairs() {
        // "name" declared as 3 bytes: the terminator check lands on 'e'.
        let mut b = map(&[("name", "value")]);
        b[4..8].copy_from_slice(&3u32.to_le_bytes());
        assert!(HeaderMap::parse(&b).is_none());
    }

    #[test]
    fn many_pairs_parse() {
        let names: Vec<String> = (0..500).map(|i| format!("h{i}")).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        let buf = map(&pairs);
        let m = HeaderMap::parse(&buf).unwrap();
        assert_eq!(m.len(), 500);
        assert_eq!(m.get("h499"), Some(&b"v"[..]));
    }
}
