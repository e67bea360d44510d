//! Rebuilds when a migration changes (they are embedded) and exposes a hash of them, so the
//! test helper can name and reuse a template database per schema version.

use std::fs;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
    let mut files = Vec::new();
    collect(Path::new("../migrations"), &mut files);
    files.sort();
    // FNV-1a: a stable fingerprint needs no crypto strength and no build dependency.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = fs::read(path).unwrap_or_default();
        for b in path.to_string_lossy().bytes().chain(bytes) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    println!("cargo:rustc-env=OUTPOST_MIGRATIONS_HASH={hash:016x}");
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}
