#![allow(dead_code)]
//! Locating `shared/vectors` (read at test time, never copied).
use std::path::PathBuf;

/// `$SSM_SHARED_DIR`, else `shared/` beside the repository checkout.
pub fn shared_dir() -> PathBuf {
    if let Ok(d) = std::env::var("SSM_SHARED_DIR") {
        return PathBuf::from(d);
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = repo.join("../shared");
    assert!(
        p.join("vectors").is_dir(),
        "test vectors not found at {} (set SSM_SHARED_DIR to the shared/ folder)",
        p.display()
    );
    p
}

pub fn load(name: &str) -> serde_json::Value {
    let path = shared_dir().join("vectors").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn hex(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

pub fn opt_hex(v: &serde_json::Value) -> Option<Vec<u8>> {
    v.as_str().map(|s| hex::decode(s).expect("valid hex"))
}
