//! The pipeline direction, enforced: every module of `src/` may use only the modules before it in
//! `istio_canary::LAYERS` (its own `#[cfg(test)]` module aside). A module missing from the list,
//! a listed module that does not exist, or one `use crate::x` against the order fails here, with
//! the file, the line and both modules named.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use istio_canary::LAYERS;

/// `src/` files as module names: `src/plan/hop.rs` is part of `plan`.
fn modules() -> Vec<(String, PathBuf)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            // `mod tests;` files are compiled only for unit tests, like a `#[cfg(test)]` module.
            if path.file_stem().and_then(|s| s.to_str()) == Some("tests") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap().to_path_buf();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            out.push((top, Path::new("src").join(rel)));
        }
    }
    out.sort();
    out
}

/// Every `crate::NAME` a text uses outside its `#[cfg(test)]` module, with its line.
fn uses(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        if line.trim_start().starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((i + 1, name));
            }
        }
        // `use crate::{a, b}` form.
        if let Some(at) = line.find("crate::{") {
            for part in line[at + "crate::{".len()..].split([',', '}']) {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push((i + 1, name));
                }
            }
        }
    }
    out
}

fn rank(name: &str) -> Option<usize> {
    LAYERS.iter().position(|m| *m == name)
}

#[test]
fn every_module_has_a_place_and_imports_only_earlier_ones() {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (module, path) in modules() {
        if module == "lib" || module == "main" {
            continue;
        }
        seen.insert(module.clone());
        let Some(own) = rank(&module) else {
            problems.push(format!(
                "{}: module `{module}` is not in LAYERS",
                path.display()
            ));
            continue;
        };
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(&path)).unwrap();
        for (line, used) in uses(&text) {
            if used == module {
                continue;
            }
            // Items of the crate root (`VERSION`, `LAYERS`, re-exports) are not modules.
            if used.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                continue;
            }
            match rank(&used) {
                Some(r) if r < own => {}
                Some(_) => problems.push(format!(
                    "{}:{line}: `{module}` uses `{used}`, which comes after it in the pipeline",
                    path.display()
                )),
                None => problems.push(format!(
                    "{}:{line}: `{module}` uses `crate::{used}`, which is not a module in LAYERS",
                    path.display()
                )),
            }
        }
    }
    for m in LAYERS {
        if !seen.contains(*m) {
            problems.push(format!("LAYERS names `{m}`, which has no file in src/"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_check_sees_an_import_against_the_pipeline() {
    // The scanner itself: a lower module using a higher one is found, a use in a test module is
    // not, and the braced form is read.
    let text = "use crate::plan::Plan;\nuse crate::{error, emit};\n#[cfg(test)]\nmod tests { use crate::cli; }\n";
    let found: Vec<String> = uses(text).into_iter().map(|(_, n)| n).collect();
    assert_eq!(found, ["plan", "error", "emit"]);
    assert!(rank("plan") > rank("mesh"));
}
