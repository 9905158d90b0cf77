//! Shared helpers for the integration tests: running the real binary, reading output trees,
//! snapshot settings, and finding `../shared` (the recorded istioctl output).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    manifest_dir().join("fixtures")
}

/// The folders under `fixtures/<kind>/` that hold a `canary.yaml`, sorted.
pub fn fixture_dirs(kind: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures().join(kind))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("canary.yaml").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// insta settings: snapshots in the top-level `snapshots/`, named by the test alone, with the
/// tool version and the stand-in's digest filtered to stable text.
pub fn snapshot_settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(manifest_dir().join("snapshots"));
    s.set_prepend_module_to_snapshot(false);
    s.add_filter(&regex_escape(env!("CARGO_PKG_VERSION")), "[VERSION]");
    s.add_filter(&standin_sha256(), "[STANDIN-SHA256]");
    s
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

/// The sha256 of the stand-in istioctl script (every `istioctl-<version>` links to it).
pub fn standin_sha256() -> String {
    let bytes = std::fs::read(fixtures().join("istioctl/istioctl")).expect("stand-in istioctl");
    sha256_hex(&bytes)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    istio_canary::policy::sha256_hex(bytes)
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Gives `command` (the binary, or a shell that execs it) a render cache of its own:
/// `XDG_CACHE_HOME` is a fresh temp dir, removed when the returned guard is dropped. Every test
/// that runs the binary goes through here, so no test reads or fills the user's `~/.cache`, and
/// each compile starts cold (istioctl runs) unless the test passes `--cache-dir` itself.
#[must_use = "the cache directory is removed when the guard is dropped"]
pub fn own_cache(command: &mut Command) -> tempfile::TempDir {
    let cache = tempfile::tempdir().expect("a temp dir for the render cache");
    command.env("XDG_CACHE_HOME", cache.path());
    cache
}

/// Runs the istio-canary binary in `cwd` with `args`.
pub fn run(cwd: &Path, args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_istio-canary"));
    let _cache = own_cache(&mut command);
    let out = command
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("run istio-canary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs the istio-canary binary in `cwd` with `args` under a wall-clock limit and an address-space
/// limit (`ulimit -v`, KiB, inherited by istioctl), and panics when the run exceeds the time.
/// A run killed for memory has code -1.
pub fn run_bounded(cwd: &Path, args: &[&str], time: std::time::Duration, memory_kib: u64) -> Run {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let (out_path, err_path) = (scratch.path().join("stdout"), scratch.path().join("stderr"));
    let mut command = Command::new("sh");
    let _cache = own_cache(&mut command);
    let mut child = command
        .arg("-c")
        .arg(format!("ulimit -v {memory_kib}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_istio-canary"))
        .args(args)
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("run istio-canary");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > time {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{}: {args:?} still running after {time:?}", cwd.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&std::fs::read(&out_path).unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&std::fs::read(&err_path).unwrap_or_default()).into_owned(),
    }
}

/// Runs `compile` of `dir`'s `canary.yaml` into `out`, plus `extra` arguments.
pub fn compile_run(dir: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "compile",
        "--policy",
        "canary.yaml",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(dir, &args)
}

/// Compiles `dir`'s `canary.yaml` into `out` with the binary, plus `extra` arguments; asserts
/// exit 0 and returns the output tree.
pub fn compile_into(dir: &Path, out: &Path, extra: &[&str]) -> BTreeMap<String, String> {
    let r = compile_run(dir, out, extra);
    assert_eq!(r.code, 0, "{}: {}", dir.display(), r.stderr);
    read_tree(out)
}

/// The example compiled once per test binary, into a temp dir kept for the whole run.
pub fn compiled_example() -> &'static Path {
    static DIR: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    &DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("bundles");
        compile_into(&fixtures().join("example"), &out, &[]);
        (tmp, out)
    })
    .1
}

/// A temp dir holding a copy of the compiled example as `bundles/`.
pub fn copy_example() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bundles");
    for (rel, text) in read_tree(compiled_example()) {
        let path = out.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    (tmp, out)
}

/// Every file under `dir` (relative path -> text), sorted.
pub fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// One text with every file under a header line naming its path.
pub fn combined(files: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    for (path, text) in files {
        s.push_str(&format!("=== {path}\n{text}"));
    }
    s
}

/// `../shared/upstream-istioctl-output`, or None where it is absent (see `unavailable`).
pub fn recordings(check: &str) -> Option<PathBuf> {
    let dir = manifest_dir().join("../shared/upstream-istioctl-output");
    if dir.is_dir() {
        return Some(dir);
    }
    unavailable(&format!(
        "{check}: ../shared/upstream-istioctl-output is not beside the project"
    ));
    None
}

/// `kubectl`, if installed, or None (see `unavailable`).
pub fn kubectl(check: &str) -> Option<&'static str> {
    let ok = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some("kubectl");
    }
    unavailable(&format!("{check}: kubectl is not installed"));
    None
}

std::thread_local! {
    /// The checks the running trial could not make; `None` outside `trial`.
    static NOT_RUN: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// The one way a test says that a check cannot run here (a tool, a Python module or
/// `../shared` is missing). With the `CI` environment variable set it fails the test: on CI
/// every check must run. Otherwise the test goes on (or returns) and its trial is reported as
/// `ignored (not run: WHAT)` and counted in the summary line's `ignored`, where a user sees it:
/// libtest captures a passing test's output, so a printed `SKIPPED` would be hidden behind `ok`.
/// Only a test run by `trial` (a `harness = false` test file, see `tests!`) can report that;
/// called from anywhere else it fails the test rather than let it pass.
pub fn unavailable(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} (CI is set, and on CI a check that cannot run fails)");
    }
    NOT_RUN.with(|not_run| match not_run.borrow_mut().as_mut() {
        Some(list) => list.push(what.to_string()),
        None => panic!(
            "{what} (and this test is not run by common::trial, so the skip would pass unseen)"
        ),
    });
}

/// A libtest-mimic trial that runs `test` and reports it `ignored` (with what was not run) when
/// it called `unavailable`, failed when it panicked, passed otherwise.
pub fn trial(name: &str, test: impl FnOnce() + Send + 'static) -> libtest_mimic::Trial {
    libtest_mimic::Trial::ignorable_test(name, move || {
        NOT_RUN.with(|not_run| *not_run.borrow_mut() = Some(Vec::new()));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(test));
        let not_run = NOT_RUN
            .with(|not_run| not_run.borrow_mut().take())
            .unwrap_or_default();
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
        Ok(if not_run.is_empty() {
            libtest_mimic::Completion::Completed
        } else {
            libtest_mimic::Completion::ignored_with(format!("not run: {}", not_run.join("; ")))
        })
    })
}

/// The `main` of a `harness = false` test file: one `trial` per function named, under its own
/// name, so `cargo test` reports each like a `#[test]` (and a function not named here is dead
/// code, which clippy refuses).
#[macro_export]
macro_rules! tests {
    ($($test:ident),* $(,)?) => {
        fn main() {
            let args = libtest_mimic::Arguments::from_args();
            libtest_mimic::run(&args, vec![$(common::trial(stringify!($test), $test)),*]).exit();
        }
    };
}
