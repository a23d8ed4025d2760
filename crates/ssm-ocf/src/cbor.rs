//! CBOR representations (ciborium's `Value`), with the helpers OCF payloads
//! need: text-keyed maps that may be indefinite-length or carry duplicate
//! keys (the reference stack's `eps` bug, DIGEST §2).
use ciborium::Value;

/// Why bytes are not one CBOR item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    /// Not CBOR (ciborium's reason).
    #[error("bad CBOR: {0}")]
    Malformed(String),
    /// Bytes after the first item.
    #[error("trailing bytes after CBOR item")]
    TrailingBytes,
}

/// Decodes one CBOR item; trailing bytes are an error.
pub fn decode(bytes: &[u8]) -> Result<Value, CborError> {
    let mut rd = bytes;
    let v: Value =
        ciborium::de::from_reader(&mut rd).map_err(|e| CborError::Malformed(e.to_string()))?;
    if !rd.is_empty() {
        return Err(CborError::TrailingBytes);
    }
    Ok(v)
}

/// Encodes a value (definite lengths).
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail for a Value.
    let _ = ciborium::ser::into_writer(v, &mut out);
    out
}

/// A text-keyed map as a list of entries.
pub fn map(entries: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.into()), v))
            .collect(),
    )
}

/// The first value under `key` in a map.
pub fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

/// Every value under `key` (duplicate keys kept, in order).
pub fn get_all<'a>(v: &'a Value, key: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    v.as_map()
        .into_iter()
        .flatten()
        .filter(move |(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

/// A text array.
pub fn text_array<S: AsRef<str>>(items: &[S]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|s| Value::Text(s.as_ref().into()))
            .collect(),
    )
}

/// The strings of a text array (non-text items skipped).
pub fn texts(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_text().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// CBOR value to JSON, for humans and `--json` (bytes become hex).
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Integer(i) => {
            let i: i128 = (*i).into();
            i64::try_from(i)
                .map(J::from)
                .unwrap_or_else(|_| J::String(i.to_string()))
        }
        Value::Bytes(b) => J::String(hex::encode(b)),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .unwrap_or(J::Null),
        Value::Text(s) => J::String(s.clone()),
        Value::Bool(b) => J::Bool(*b),
        Value::Null => J::Null,
        Value::Tag(_, inner) => to_json(inner),
        Value::Array(a) => J::Array(a.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| {
                    (
                        k.as_text()
                            .map(String::from)
                            .unwrap_or_else(|| format!("{k:?}")),
                        to_json(v),
                    )
                })
                .collect(),
        ),
        _ => J::Null,
    }
}

/// JSON to CBOR (for introspection data kept as JSON).
pub fn from_json(j: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match j {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Integer(i.into()),
            (_, Some(u), _) => Value::Integer(u.into()),
            (_, _, Some(f)) => Value::Float(f),
            _ => Value::Null,
        },
        J::String(s) => Value::Text(s.clone()),
        J::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        J::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (Value::Text(k.clone()), from_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indefinite_map_and_duplicates() {
        let v = decode(&[0xbf, 0x65, b'v', b'a', b'l', b'u', b'e', 0xf5, 0xff]).unwrap();
        assert_eq!(get(&v, "value"), Some(&Value::Bool(true)));
        // {"ep": "a", "ep": "b"}
        let v = decode(&[
            0xa2, 0x62, b'e', b'p', 0x61, b'a', 0x62, b'e', b'p', 0x61, b'b',
        ])
        .unwrap();
        let eps: Vec<_> = get_all(&v, "ep").filter_map(|x| x.as_text()).collect();
        assert_eq!(eps, ["a", "b"]);
        assert!(decode(&[0xf5, 0x00]).is_err());
        assert!(decode(&[0xbf]).is_err());
    }
}
