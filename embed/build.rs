//! Says whether this compiler has the AVX-512 and AVX-VNNI intrinsics (stable from Rust
//! 1.89; the workspace builds from 1.88): the `embed_avx512` cfg turns those kernels on.

use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(embed_avx512)");
    println!("cargo::rerun-if-env-changed=RUSTC");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .unwrap_or_default();
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    if minor.is_some_and(|m| m >= 89) {
        println!("cargo::rustc-cfg=embed_avx512");
    }
}
