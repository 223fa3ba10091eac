//! Build script: generates `include/wtd.h` with cbindgen and sets the SONAME of the cdylib.
//!
//! The header is only rewritten when its content changes (so it never re-triggers builds), and a
//! cbindgen failure (e.g. a half-edited source file) is a warning that keeps the old header.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");

    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libwtd.so.{major}");
    }

    if env::var_os("WTD_SKIP_HEADER").is_some() {
        return;
    }
    generate_header();
}

fn generate_header() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = root.join("include").join("wtd.h");
    let config = match cbindgen::Config::from_file(root.join("cbindgen.toml")) {
        Ok(c) => c,
        Err(e) => {
            println!(
                "cargo:warning=wtd: cannot read cbindgen.toml ({e}); include/wtd.h not updated"
            );
            return;
        }
    };
    let mut bindings = match cbindgen::Builder::new()
        .with_crate(&root)
        .with_config(config)
        .generate()
    {
        Ok(b) => b,
        Err(e) => {
            let msg = e.to_string().replace('\n', " ");
            println!("cargo:warning=wtd: cbindgen failed ({msg}); include/wtd.h not updated");
            return;
        }
    };
    // Only `WTD_*` constants belong to the C API; every other `pub const` in the crate (protocol
    // numbers, internal limits) would otherwise leak into the header as a #define.
    bindings
        .constants
        .retain(|c| c.export_name.to_ascii_uppercase().starts_with("WTD_"));
    let mut text = Vec::new();
    bindings.write(&mut text);
    if fs::read(&out).ok().as_deref() == Some(&text[..]) {
        return;
    }
    if let Some(dir) = out.parent() {
        let _ = fs::create_dir_all(dir);
    }
    // Write to a temporary file and rename, so a concurrent reader never sees half a header.
    let tmp = out.with_extension(format!("h.tmp{}", std::process::id()));
    let res = fs::write(&tmp, &text).and_then(|_| fs::rename(&tmp, &out));
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        println!("cargo:warning=wtd: cannot write {}: {e}", out.display());
    }
}
