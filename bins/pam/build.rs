//! Planted bugs (DESIGN.md §8, scenarios/mutants.toml): `KEYBOUND_MUTANT=NAME` at build time
//! compiles this crate with `--cfg keybound_mutant="NAME"`. Only this crate's (and the other
//! hooked crates') build scripts react, so a mutant build recompiles the hooked crates and their
//! dependants, never the world (RUSTFLAGS would invalidate every crate). `keybound-lab mutants`
//! sets it for its own target directory; every other build removes it.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=KEYBOUND_MUTANT");
    let Ok(name) = std::env::var("KEYBOUND_MUTANT") else {
        return;
    };
    let name = name.trim();
    if name.is_empty() {
        return;
    }
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "KEYBOUND_MUTANT={name:?}: a planted-bug name is lowercase letters, digits and '-'"
    );
    println!("cargo::rustc-cfg=keybound_mutant=\"{name}\"");
    println!(
        "cargo::warning=PLANTED BUG `{name}` compiled into {} (KEYBOUND_MUTANT is set): a test build only, never ship it",
        std::env::var("CARGO_PKG_NAME").unwrap_or_default()
    );
}
