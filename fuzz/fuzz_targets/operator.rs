//! The IstioOperator loader: arbitrary bytes as every spec a fixed valid policy names (the
//! example's `canary.yaml`). `load_from` must return `Ok` or an `Error`: never panic, hang or
//! allocate without bound.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

const POLICY: &[u8] = include_bytes!("../../fixtures/example/canary.yaml");

fuzz_target!(|data: &[u8]| {
    let read = |_: &Path, _: u64| -> std::io::Result<Vec<u8>> { Ok(data.to_vec()) };
    let _ = istio_canary::policy::load_from(POLICY, Path::new("canary.yaml"), &read);
});
