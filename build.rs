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
        let minor = env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_else(|_| "0".into());
        // Before 1.0 every minor version may break the ABI (0.2 did), so the SONAME carries it
        // (CMakeLists.txt's WTD_SOVERSION follows the same rule).
        let soversion = if major == "0" {
            format!("0.{minor}")
        } else {
            major
        };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libwtd.so.{soversion}");
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
    let mut raw = Vec::new();
    bindings.write(&mut raw);
    let text = match by_object(&String::from_utf8_lossy(&raw)) {
        Ok(t) => t.into_bytes(),
        Err(e) => {
            println!("cargo:warning=wtd: header not grouped by object ({e}); cbindgen order kept");
            raw
        }
    };
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

/// The header's sections, in reading order, and which names belong to each (first match wins).
/// Types and functions of one object sit together, as in msquic.h: each section lists its
/// constants, then its types (cbindgen's dependency order), then its functions (source order).
const SECTIONS: &[(&str, &[&str])] = &[
    (
        "Results, versions and the runtime",
        &[
            "wtd_result",
            "WTD_VERSION_",
            "wtd_last_error_message",
            "wtd_version",
            "wtd_set_runtime_threads",
            "wtd_set_send_coalescing",
            "wtd_runtime_mode",
            "wtd_set_runtime_mode",
            "wtd_poll",
            "wtd_shutdown",
        ],
    ),
    ("Log", &["wtd_log_"]),
    ("Handles (opaque; see each object's section)", &["@handle"]),
    (
        "Server",
        &["wtd_server", "wtd_session_request", "wtd_draft"],
    ),
    (
        "Client",
        &["wtd_client", "wtd_verify_mode", "wtd_session_open_sibling"],
    ),
    (
        "Session",
        &["wtd_session", "wtd_datagram_buffer", "wtd_draft_str"],
    ),
    (
        "Transport",
        &[
            "wtd_transport",
            "wtd_datagram_",
            "wtd_queue_",
            "WTD_QUEUE_",
            "wtd_priority_count",
            "wtd_throughput_result",
            "wtd_drop_policy",
            "wtd_issue",
            "wtd_create_heartbeat_datagram",
            "wtd_is_heartbeat_datagram",
        ],
    ),
    ("Layer: structured datagrams", &["wtd_structured"]),
    ("Layer: reliability", &["wtd_reliab"]),
    ("Layer: broadcaster", &["wtd_broadcast"]),
    (
        "Layer: monitor",
        &["wtd_monitor", "wtd_alert", "WTD_ALERT_"],
    ),
];

/// The name an item of cbindgen's output declares, its kind (0 constant, 1 type, 2 function)
/// and whether it is an opaque handle typedef; `None` when it is not recognized.
fn item_name(item: &str) -> Option<(String, usize, bool)> {
    let code: Vec<&str> = item
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("/*") || t.starts_with("*") || t.starts_with("//"))
        })
        .collect();
    let first = *code.first()?;
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    if let Some(rest) = first.strip_prefix("#define ") {
        return Some((ident(rest), 0, false));
    }
    if let Some(rest) = first.strip_prefix("enum ") {
        return Some((ident(rest), 1, false));
    }
    if let Some(rest) = first.strip_prefix("typedef struct ") {
        let name = ident(rest);
        let opaque = first.trim_end().ends_with(&format!("{name};"));
        return Some((name, 1, opaque));
    }
    if first.starts_with("typedef ") {
        // A function-pointer typedef: `typedef R (*name)(...`.
        let at = first.find("(*")?;
        return Some((ident(&first[at + 2..]), 1, false));
    }
    // A function declaration: the identifier right before the first '('.
    let head = &first[..first.find('(')?];
    let name = head.rsplit([' ', '*']).next()?.to_string();
    Some((name, 2, false))
}

/// Regroups cbindgen's output (all types first, then all functions) by object.
fn by_object(text: &str) -> Result<String, String> {
    let open = "#ifdef __cplusplus\nextern \"C\" {\n#endif // __cplusplus\n";
    let close = "#ifdef __cplusplus\n}  // extern \"C\"\n#endif  // __cplusplus\n";
    let includes_end = text
        .find("#include <stdbool.h>\n")
        .map(|i| i + "#include <stdbool.h>\n".len())
        .ok_or("no includes")?;
    let (prologue, rest) = text.split_at(includes_end);
    let (types, rest) = rest.split_once(open).ok_or("no extern \"C\" block")?;
    let (functions, epilogue) = rest.split_once(close).ok_or("no end of extern \"C\"")?;
    // [section][0 = constants, 1 = types, 2 = functions]
    let mut out: Vec<[Vec<&str>; 3]> = vec![Default::default(); SECTIONS.len()];
    for item in types
        .split("\n\n")
        .chain(functions.split("\n\n"))
        .map(|i| i.trim_matches('\n'))
        .filter(|i| !i.is_empty())
    {
        let (name, kind, opaque) =
            item_name(item).ok_or_else(|| format!("unknown item: {item}"))?;
        let key = if opaque {
            "@handle".to_string()
        } else {
            name.clone()
        };
        let section = SECTIONS
            .iter()
            .position(|(_, prefixes)| prefixes.iter().any(|p| key.starts_with(p)))
            .ok_or_else(|| format!("no section for {name}"))?;
        out[section][kind].push(item);
    }
    let mut s = String::from(prologue);
    s.push('\n');
    s.push_str(open);
    for ((title, _), parts) in SECTIONS.iter().zip(&out) {
        if parts.iter().all(Vec::is_empty) {
            continue;
        }
        s.push_str(&format!("\n/* {:=<94} */\n/* {title} */\n", ""));
        for item in parts.iter().flatten() {
            s.push('\n');
            s.push_str(item);
            s.push('\n');
        }
    }
    s.push('\n');
    s.push_str(close);
    s.push_str(epilogue);
    Ok(s)
}
