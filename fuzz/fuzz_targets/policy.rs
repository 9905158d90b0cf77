//! The policy loader: arbitrary bytes as `canary.yaml`, with a fixed valid IstioOperator spec
//! served for every file the policy names. `load_from` must return `Ok` or an `Error`: never
//! panic, hang or allocate without bound (run with `-timeout` and `-rss_limit_mb`).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

const SPEC: &[u8] = include_bytes!("../../fixtures/example/iop.yaml");

fuzz_target!(|data: &[u8]| {
    let read = |_: &Path, _: u64| -> std::io::Result<Vec<u8>> { Ok(SPEC.to_vec()) };
    let _ = istio_canary::policy::load_from(data, Path::new("canary.yaml"), &read);
});
