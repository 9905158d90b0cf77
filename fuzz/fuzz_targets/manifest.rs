//! The manifest reader: arbitrary bytes as istioctl's stdout, through the same steps `render`
//! takes (UTF-8, then `parse_manifest`, which passes the `yamlin` gate first). It must return
//! objects or an `Error`, never panic or hang. Every object it returns must be written by
//! `Object::to_yaml` (or refused there, when a value carries a tag) and read back by
//! `parse_manifest` as the same object.
#![no_main]

use istio_canary::manifest::parse_manifest;
use libfuzzer_sys::fuzz_target;
use serde_yaml::Value;

const SOURCE: &str = "output of `istioctl manifest generate -f iop-1-14-1.yaml`";

fn tagged(v: &Value) -> bool {
    match v {
        Value::Tagged(_) => true,
        Value::Sequence(items) => items.iter().any(tagged),
        Value::Mapping(m) => m.iter().any(|(k, v)| tagged(k) || tagged(v)),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(objects) = parse_manifest(text, SOURCE) else {
        return;
    };
    for object in objects {
        let written = match object.to_yaml() {
            Ok(written) => written,
            // A tag on a value passes the reader; the writer refuses it with its path (exit 2).
            Err(_) if tagged(&Value::Mapping(object.body.clone())) => continue,
            Err(e) => panic!("an object read cannot be written: {e}\n{object:?}"),
        };
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
