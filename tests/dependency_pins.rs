//! Cargo.toml names `gemm` (with its `x86-v4` feature) only to switch on the
//! AVX-512 kernels inside candle-core's gemm. That works only while both resolve to
//! the same gemm; after a candle upgrade to another gemm version the feature would
//! silently stop applying. This test reads Cargo.lock and fails loudly instead.

/// The `dependencies` entries of package `name` in Cargo.lock.
fn locked_dependencies(lock: &str, name: &str) -> Vec<String> {
    let header = format!("name = \"{name}\"\n");
    let block = lock
        .split("[[package]]")
        .find(|b| b.trim_start().starts_with(header.trim_end()))
        .unwrap_or_else(|| panic!("{name} is not in Cargo.lock"));
    block
        .lines()
        .skip_while(|l| !l.starts_with("dependencies = ["))
        .skip(1)
        .take_while(|l| !l.starts_with(']'))
        .map(|l| l.trim().trim_end_matches(',').trim_matches('"').to_string())
        .collect()
}

fn gemm_of(lock: &str, name: &str) -> String {
    locked_dependencies(lock, name)
        .into_iter()
        .find(|d| d == "gemm" || d.starts_with("gemm "))
        .unwrap_or_else(|| panic!("{name} does not depend on gemm"))
}

#[test]
fn shelfrank_and_candle_core_share_one_gemm() {
    let lock = std::fs::read_to_string("Cargo.lock").expect("Cargo.lock");
    assert_eq!(
        gemm_of(&lock, "shelfrank"),
        gemm_of(&lock, "candle-core"),
        "Cargo.toml's gemm must be the version candle-core uses, or its x86-v4 feature does not reach candle"
    );
}

#[test]
fn the_check_sees_a_version_split() {
    let lock = "[[package]]\nname = \"candle-core\"\nversion = \"0.10.0\"\ndependencies = [\n \"byteorder\",\n \"gemm 0.20.0\",\n]\n\n\
                [[package]]\nname = \"shelfrank\"\nversion = \"0.1.0\"\ndependencies = [\n \"gemm 0.19.0\",\n \"pulp\",\n]\n";
    assert_eq!(gemm_of(lock, "candle-core"), "gemm 0.20.0");
    assert_eq!(gemm_of(lock, "shelfrank"), "gemm 0.19.0");
}
