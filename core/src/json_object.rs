//! JSON objects read the way every later reader will read them.
//!
//! RFC 8259 leaves an object with a repeated member name open: `serde_json` keeps the last
//! value, while other parsers keep the first or refuse the document. A token whose payload
//! says `{"sub":"alice","sub":"admin"}` would then be checked here as one subject and read
//! upstream (the backend decodes the forwarded token) as another. RFC 7515 4 and RFC 7519 4
//! say such a JOSE header or claims set must be refused or read last-wins; edge-auth refuses
//! it, at any depth, since it cannot know the other reader's rule.

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `bytes` as one JSON object, refusing a member name repeated in it or in any
/// object nested in it.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, serde_json::Error> {
    let Unique(value) = serde_json::from_slice(bytes)?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(de::Error::custom("not a JSON object")),
    }
}

/// A JSON value whose objects have no repeated member name.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Unique::deserialize(d).map(|Unique(v)| v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Unique(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if map.contains_key(&name) {
                return Err(de::Error::custom("a member name is repeated"));
            }
            let Unique(v) = access.next_value_seed(UniqueSeed)?;
            map.insert(name, v);
        }
        Ok(Value::Object(map))
    }
}

struct UniqueSeed;

impl<'de> DeserializeSeed<'de> for UniqueSeed {
    type Value = Unique;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Unique, D::Error> {
        Unique::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_object_reads_as_serde_json_reads_it() {
        for doc in [
            r#"{}"#,
            r#"{"sub":"alice","n":1,"f":1.5,"neg":-3,"big":18446744073709551615,"t":true,"z":null}"#,
            r#"{"a":{"b":[1,{"c":"d"},[]],"e":{}},"s":"\u00e9\"\\"}"#,
        ] {
            let want: Map<String, Value> = serde_json::from_str(doc).unwrap();
            assert_eq!(parse_object(doc.as_bytes()).unwrap(), want, "{doc}");
        }
    }

    #[test]
    fn a_repeated_member_name_is_refused_at_any_depth() {
        for doc in [
            r#"{"sub":"alice","sub":"admin"}"#,
            r#"{"sub":"alice","sub":"alice"}"#,
            r#"{"a":1,"b":2,"a":1}"#,
            r#"{"nested":{"role":"user","role":"admin"}}"#,
            r#"{"list":[{"x":1},{"y":1,"y":2}]}"#,
            // The same name spelled with an escape is the same name once decoded.
            r#"{"sub":"alice","s\u0075b":"admin"}"#,
        ] {
            assert!(parse_object(doc.as_bytes()).is_err(), "{doc}");
        }
    }

    #[test]
    fn only_an_object_is_an_object() {
        for doc in ["[]", "1", "\"x\"", "null", "", "{", r#"{"a":1}x"#, r#"{"a":1}{"a":2}"#] {
            assert!(parse_object(doc.as_bytes()).is_err(), "{doc}");
        }
    }

    #[test]
    fn names_that_differ_only_in_case_are_different_names() {
        let map = parse_object(br#"{"sub":"a","Sub":"b"}"#).unwrap();
        assert_eq!(map.len(), 2);
    }
}
