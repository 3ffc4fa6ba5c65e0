//! Generates the C header from src/ffi into `$OUT_DIR/mcprouter.h` (and nowhere else) and
//! tells the crate where it is (`MCPROUTER_GENERATED_HEADER`), for tests/header.rs.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=src/lib.rs");

    let crate_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let header = out_dir.join("mcprouter.h");
    println!("cargo:rustc-env=MCPROUTER_GENERATED_HEADER={}", header.display());

    let config = match cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")) {
        Ok(c) => c,
        Err(e) => fail(&format!("cannot read cbindgen.toml: {e}")),
    };
    // `with_src` follows the `mod` tree from lib.rs without running `cargo metadata` (which
    // `with_crate` would, from inside a build).
    match cbindgen::Builder::new().with_src(crate_dir.join("src/lib.rs")).with_config(config).generate() {
        Ok(bindings) => {
            bindings.write_to_file(&header);
        }
        Err(e) => fail(&format!("cbindgen could not generate the C header: {e}")),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
