//! Compile-time diagnostics of the macros, checked against the snapshots in
//! `tests/ui/<category>/*.stderr` (regenerate them with
//! `TRYBUILD=overwrite cargo test --test ui`, then read every one).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    for category in [
        "derive",
        "receiver",
        "signature",
        "arguments",
        "tags",
        "placement",
        "many",
        "visibility",
    ] {
        t.compile_fail(format!("tests/ui/{category}/*.rs"));
    }
    t.pass("tests/ui/pass/*.rs");
}
