//! Writing the emitted files: all or nothing.
//!
//! Owns: building the output beside `--out` in a temporary directory, swapping it in only when
//! complete, refusing to replace a directory istio-canary did not write (unless `--force`), and
//! leaving the previous output untouched on any error. Must not: decide file contents.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::emit::MARKER_FILE;
use crate::error::{Error, Result};

/// Replaces `out` with exactly `files` (paths relative to `out`).
pub fn write_atomic(out: &Path, files: &BTreeMap<String, String>, force: bool) -> Result<()> {
    if out.exists() {
        if !out.is_dir() {
            return Err(
                Error::new(format!("{} exists and is not a directory", out.display()))
                    .with_help("choose another --out"),
            );
        }
        if !force && !out.join(MARKER_FILE).is_file() {
            return Err(Error::new(format!(
                "refusing to replace {}: it was not written by istio-canary (no {MARKER_FILE} file)",
                out.display()
            ))
            .with_help("choose another --out, or pass --force to replace the directory and everything in it"));
        }
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io("cannot create", &parent, &e))?;
    let staging = tempfile::Builder::new()
        .prefix(".istio-canary-new-")
        .tempdir_in(&parent)
        .map_err(|e| Error::io("cannot create a staging directory in", &parent, &e))?;
    for (rel, text) in files {
        let path = staging.path().join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, &e))?;
        }
        std::fs::write(&path, text).map_err(|e| Error::io("cannot write", &path, &e))?;
    }
    if out.exists() {
        let trash = tempfile::Builder::new()
            .prefix(".istio-canary-old-")
            .tempdir_in(&parent)
            .map_err(|e| Error::io("cannot create a staging directory in", &parent, &e))?;
        let old = trash.path().join("previous");
        std::fs::rename(out, &old).map_err(|e| Error::io("cannot move aside", out, &e))?;
        if let Err(e) = std::fs::rename(staging.path(), out) {
            // Put the previous output back; the error is the rename that failed.
            let _ = std::fs::rename(&old, out);
            return Err(Error::io("cannot move the new output into", out, &e));
        }
        // `trash` (with the previous output) is removed when dropped.
    } else {
        std::fs::rename(staging.path(), out)
            .map_err(|e| Error::io("cannot move the new output into", out, &e))?;
    }
    // The staging directory now is `out`; do not let its guard delete it.
    let _ = staging.keep();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn replaces_its_own_output_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("bundles");
        write_atomic(
            &out,
            &files(&[(MARKER_FILE, "#\n"), ("a/x.yaml", "x\n")]),
            false,
        )
        .unwrap();
        write_atomic(
            &out,
            &files(&[(MARKER_FILE, "#\n"), ("b/y.yaml", "y\n")]),
            false,
        )
        .unwrap();
        assert!(!out.join("a").exists());
        assert_eq!(
            std::fs::read_to_string(out.join("b/y.yaml")).unwrap(),
            "y\n"
        );
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["bundles"]);
    }

    #[test]
    fn refuses_a_foreign_directory_unless_forced() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("mine");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("notes.txt"), "keep").unwrap();
        let err = write_atomic(&out, &files(&[(MARKER_FILE, "#\n")]), false).unwrap_err();
        assert!(
            err.message.starts_with("refusing to replace"),
            "{}",
            err.message
        );
        assert!(out.join("notes.txt").exists());
        write_atomic(&out, &files(&[(MARKER_FILE, "#\n")]), true).unwrap();
        assert!(!out.join("notes.txt").exists());
    }

    #[test]
    fn refuses_an_out_path_that_is_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("bundles");
        std::fs::write(&out, "not a directory").unwrap();
        let err = write_atomic(&out, &files(&[(MARKER_FILE, "#\n")]), true).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "error: {} exists and is not a directory\nhelp: choose another --out",
                out.display()
            )
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "not a directory");
    }
}
