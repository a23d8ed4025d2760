//! The reference vectors live in `shared/vectors` beside the repository
//! checkout and are read at test time, never copied.
use std::path::PathBuf;

/// `$SSM_SHARED_DIR`, else `shared/` beside the repository checkout. Panics
/// with a clear message when it is missing: the tests must not pass without
/// their vectors.
pub fn shared_dir() -> PathBuf {
    if let Ok(d) = std::env::var("SSM_SHARED_DIR") {
        return PathBuf::from(d);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    assert!(
        p.join("vectors").is_dir(),
        "test vectors not found at {} (set SSM_SHARED_DIR to the shared/ folder)",
        p.display()
    );
    p
}

/// Parses `shared/vectors/<name>`.
pub fn load(name: &str) -> serde_json::Value {
    let path = shared_dir().join("vectors").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A hex string field as bytes.
pub fn hex(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

/// An optional hex string field.
pub fn opt_hex(v: &serde_json::Value) -> Option<Vec<u8>> {
    v.as_str().map(|s| hex::decode(s).expect("valid hex"))
}
