//! The checked-in C header must be what the build generates, and must carry the crate's
//! version.

use std::path::Path;

/// Where build.rs wrote the header it generated from src/ffi.
const GENERATED: &str = env!("MCPROUTER_GENERATED_HEADER");

fn checked_in_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include/mcprouter.h")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn checked_in_header_matches_the_generated_one() {
    let generated = read(Path::new(GENERATED));
    let checked_in = read(&checked_in_path());
    if generated == checked_in {
        return;
    }
    let first_difference = generated.lines().zip(checked_in.lines()).position(|(a, b)| a != b).map_or_else(
        || "one file is a prefix of the other".to_owned(),
        |i| format!("first difference at line {}", i + 1),
    );
    panic!(
        "include/mcprouter.h is out of date with src/ffi ({first_difference}).\n\
         Refresh it with:\n\n    cp '{GENERATED}' include/mcprouter.h\n\n\
         (or run scripts/refresh-header.sh), then review and commit the diff."
    );
}

fn define(header: &str, name: &str) -> String {
    let prefix = format!("#define {name} ");
    header
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("include/mcprouter.h has no `#define {name}`"))
}

#[test]
fn header_version_matches_cargo_toml() {
    let header = read(&checked_in_path());
    let expected = [
        ("MCPROUTER_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR").to_owned()),
        ("MCPROUTER_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR").to_owned()),
        ("MCPROUTER_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH").to_owned()),
        ("MCPROUTER_VERSION", format!("\"{}\"", env!("CARGO_PKG_VERSION"))),
    ];
    for (name, want) in expected {
        let got = define(&header, name);
        assert_eq!(
            got, want,
            "{name} in include/mcprouter.h is {got} but Cargo.toml says {want}: update after_includes in \
             cbindgen.toml, then run scripts/refresh-header.sh"
        );
    }
}

#[test]
fn version_function_matches_the_header() {
    let header = read(&checked_in_path());
    // SAFETY: mcprouter_version returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(mcprouter::ffi::mcprouter_version()) };
    assert_eq!(format!("\"{}\"", version.to_str().unwrap()), define(&header, "MCPROUTER_VERSION"));
}
