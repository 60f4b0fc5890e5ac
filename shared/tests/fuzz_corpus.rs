//! Replays the committed fuzz corpus (`fuzz/corpus/`, including anything a
//! fuzzing run found) through the fuzz targets' own checks, on the stable
//! toolchain, in every test run.

#[path = "../../fuzz/src/lib.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        check(&std::fs::read(&path).unwrap());
        inputs += 1;
    }
    inputs
}

#[test]
fn malformed_bus_payloads_from_the_corpus_never_panic_or_pass_as_garbage() {
    assert!(replay("bus_payload", checks::check_bus_payload) >= 5);
}

#[test]
fn client_frames_and_query_values_from_the_corpus_never_panic() {
    assert!(replay("client_input", checks::check_client_input) >= 4);
}
