//! The manifest reader: arbitrary bytes as istioctl's stdout, through the same steps `render`
//! takes (UTF-8, then `parse_manifest`, which passes the `yamlin` gate first). It must return
//! objects or an `Error`, never panic or hang. Every object it returns must be written by
//! `Object::to_yaml` and read back by `parse_manifest` as the same object.
#![no_main]

use istio_canary::manifest::parse_manifest;
use libfuzzer_sys::fuzz_target;

const SOURCE: &str = "output of `istioctl manifest generate -f iop-1-14-1.yaml`";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(objects) = parse_manifest(text, SOURCE) else {
        return;
    };
    for object in objects {
        let written = object
            .to_yaml()
            .unwrap_or_else(|e| panic!("an object read cannot be written: {e}\n{object:?}"));
        let again = parse_manifest(&written, "written").unwrap_or_else(|e| {
            panic!("a written object does not read back: {e}\n--- written:\n{written}")
        });
        assert_eq!(
            again.len(),
            1,
            "one object written, read back as {}:\n{written}",
            again.len()
        );
        assert_eq!(again[0].id, object.id, "identity changed:\n{written}");
        assert_eq!(
            again[0].api_version, object.api_version,
            "apiVersion changed:\n{written}"
        );
        assert_eq!(again[0].body, object.body, "body changed:\n{written}");
    }
});
