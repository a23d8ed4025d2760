//! UUIDs as OCF writes them: text (`"de305d54-…"`), in CBOR too (serde's
//! default for `Uuid` is a byte string in non-human-readable formats).
use serde::{Deserialize, Deserializer, Serializer};
use uuid::Uuid;

/// Serialises as text.
pub fn serialize<S: Serializer>(u: &Uuid, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&u.to_string())
}

/// Accepts text (and, leniently, 16 raw bytes).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Bytes(serde_bytes_compat::Bytes),
    }
    match Either::deserialize(d)? {
        Either::Text(t) => t.parse().map_err(serde::de::Error::custom),
        Either::Bytes(b) => Uuid::from_slice(&b.0).map_err(serde::de::Error::custom),
    }
}

mod serde_bytes_compat {
    use serde::{Deserialize, Deserializer};
    /// A byte string.
    pub struct Bytes(pub Vec<u8>);
    impl<'de> Deserialize<'de> for Bytes {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Bytes;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                    Ok(Bytes(v.to_vec()))
                }
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                    Ok(Bytes(v))
                }
            }
            d.deserialize_bytes(V)
        }
    }
}
