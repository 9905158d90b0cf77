//! A compile killed with SIGKILL at any point, as a CI runner cancelling a job does: `--out` is
//! always the complete previous output or the complete new one, never a mix or nothing, and a
//! render cache it was writing never hands out a partial entry (the exhaustive, byte-by-byte
//! version of that is the unit test in `src/cache.rs`). What a killed write leaves beside `--out`
//! (its staging directory) the next compile removes, and says so, while a compile still running
//! keeps its own.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{fixtures, read_tree};

/// A temp dir with `ex/` (a policy of 600 namespaces in 6 waves: an output of 1,400 to 2,100
/// files), `istioctl` (the stand-ins) and `cache/`.
fn large_policy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let ex = tmp.path().join("ex");
    std::fs::create_dir(&ex).unwrap();
    std::fs::copy(fixtures().join("example/iop.yaml"), ex.join("iop.yaml")).unwrap();
    std::os::unix::fs::symlink(fixtures().join("istioctl"), tmp.path().join("istioctl")).unwrap();
    let example = std::fs::read_to_string(fixtures().join("example/canary.yaml")).unwrap();
    let mut policy = example[..example.find("  waves:").unwrap()].to_string();
    policy.push_str("  waves:\n");
    for wave in 0..6 {
        let namespaces: Vec<String> = (0..100).map(|n| format!("team-{wave}-{n}")).collect();
        policy.push_str(&format!(
            "  - name: wave-{wave}\n    namespaces: [{}]\n",
            namespaces.join(", ")
        ));
    }
    std::fs::write(ex.join("canary.yaml"), policy).unwrap();
    tmp
}

/// Starts `compile` in `dir` with `args`; its render cache is the one `args` names.
fn start(dir: &Path, args: &[&str]) -> (Child, tempfile::TempDir) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_istio-canary"));
    let own = common::own_cache(&mut command);
    let child = command
        .current_dir(dir)
        .arg("compile")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, own)
}

/// The entries of `dir` whose name starts with `prefix`.
fn named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap())
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `ready` holds or `child` exits; true when it held first.
fn wait_until(child: &mut Child, ready: impl Fn() -> bool) -> bool {
    loop {
        if ready() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// SIGKILL (std's `kill`), then reaps; true when the kill ended it (it had not exited).
fn kill(child: &mut Child) -> bool {
    let _ = child.kill();
    let status = child.wait().unwrap();
    status.code().is_none()
}

#[test]
fn a_compile_killed_while_writing_leaves_the_old_or_the_new_output_whole() {
    let tmp = large_policy();
    let ex = tmp.path().join("ex");
    let compile = |out: &str, extra: &[&str]| {
        let mut args = vec!["--cache-dir", "../cache", "--quiet"];
        args.extend_from_slice(extra);
        common::compile_into(&ex, &tmp.path().join(out), &args)
    };
    // Two different outputs of the same policy: without and with live/.
    let outputs: [BTreeMap<String, String>; 2] =
        [compile("ref-a", &[]), compile("ref-b", &["--promote", "3"])];
    assert_ne!(outputs[0], outputs[1]);
    assert!(outputs[0].len() > 1000, "{} files", outputs[0].len());
    let out = tmp.path().join("out");
    compile("out", &[]);
    let mut current = 0;
    let mut killed_while_writing = 0;
    for delay_ms in [0, 0, 1, 2, 3, 5, 8, 12, 20, 30, 50, 80, 130, 200, 300, 500] {
        let next = 1 - current;
        let promote: &[&str] = if next == 1 { &["--promote", "3"] } else { &[] };
        let mut args = vec!["--cache-dir", "../cache", "--out", "../out"];
        args.extend_from_slice(promote);
        // What earlier killed runs left stays until a compile gets as far as writing.
        let before = named(tmp.path(), ".istio-canary-");
        let (mut child, _own) = start(&ex, &args);
        // A staging directory of this run beside --out: the write has begun.
        let writing = wait_until(&mut child, || {
            named(tmp.path(), ".istio-canary-new-")
                .iter()
                .any(|p| !before.contains(p))
        });
        std::thread::sleep(Duration::from_millis(delay_ms));
        if kill(&mut child) && writing {
            killed_while_writing += 1;
        }
        let found = read_tree(&out);
        current = match outputs.iter().position(|o| *o == found) {
            Some(which) => which,
            None => panic!(
                "killed {delay_ms} ms into the write, --out is neither output: {} files",
                found.len()
            ),
        };
    }
    assert!(killed_while_writing > 0, "no kill landed during a write");
    // The next compile that writes removes every staging directory the killed runs left, and
    // names each on stderr.
    // The runs above may all have been cleaned up by the next one (it depends on how fast
    // this machine is): kill more runs the moment their staging directory appears until one
    // is left behind. They alternate between the two outputs: a compile whose --out already
    // holds exactly its output writes nothing, so only every other one has a write to kill.
    let mut left = named(tmp.path(), ".istio-canary-");
    for attempt in 0..20 {
        if !left.is_empty() {
            break;
        }
        let mut args = vec!["--cache-dir", "../cache", "--out", "../out"];
        if attempt % 2 == 0 {
            args.extend_from_slice(&["--promote", "3"]);
        }
        let (mut child, _own) = start(&ex, &args);
        wait_until(&mut child, || {
            !named(tmp.path(), ".istio-canary-new-").is_empty()
        });
        kill(&mut child);
        left = named(tmp.path(), ".istio-canary-");
    }
    assert!(!left.is_empty(), "no killed run left a staging directory");
    // Whatever the kills hit, --out is one of the two outputs.
    let found = read_tree(&out);
    assert!(outputs.contains(&found), "--out is neither output");
    let run = common::compile_run(&ex, &out, &["--cache-dir", "../cache", "--quiet"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for dir in &left {
        assert!(
            run.stderr.contains(&format!(
                "note: removed {}, left by a compile that was killed (process ",
                dir.display()
            )),
            "{} not named: {}",
            dir.display(),
            run.stderr
        );
    }
    assert_eq!(named(tmp.path(), ".istio-canary-"), Vec::<PathBuf>::new());
    assert_eq!(read_tree(&out), outputs[0]);
}

/// Two compiles writing beside the same --out: neither removes the other's staging directory
/// while it runs, and both finish with a whole output.
#[test]
fn a_running_compiles_staging_directory_is_not_removed_by_another() {
    let tmp = large_policy();
    let ex = tmp.path().join("ex");
    let reference =
        common::compile_into(&ex, &tmp.path().join("ref"), &["--cache-dir", "../cache"]);
    for round in 0..4 {
        let (mut first, _a) = start(&ex, &["--cache-dir", "../cache", "--out", "../out"]);
        // Once the first is writing, the second starts its own write beside it.
        wait_until(&mut first, || {
            !named(tmp.path(), ".istio-canary-new-").is_empty()
        });
        let second = common::compile_run(
            &ex,
            &tmp.path().join("out"),
            &["--cache-dir", "../cache", "--quiet"],
        );
        assert_eq!(second.code, 0, "round {round}: {}", second.stderr);
        assert!(
            !second.stderr.contains("note: removed"),
            "round {round}: {}",
            second.stderr
        );
        assert!(first.wait().unwrap().success(), "round {round}");
        assert_eq!(
            read_tree(&tmp.path().join("out")),
            reference,
            "round {round}"
        );
        assert_eq!(named(tmp.path(), ".istio-canary-"), Vec::<PathBuf>::new());
    }
}

#[test]
fn a_cache_write_killed_at_any_point_never_yields_a_used_partial_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let example = fixtures().join("example");
    let reference = common::compile_into(&example, &tmp.path().join("reference"), &["--no-cache"]);
    for (round, delay_ms) in [0, 0, 1, 2, 5, 10, 20, 50].into_iter().enumerate() {
        let cache = tmp.path().join(format!("cache-{round}"));
        let cache_arg = cache.to_str().unwrap().to_string();
        let out = tmp.path().join(format!("out-{round}"));
        let out_arg = out.to_str().unwrap().to_string();
        let args = [
            "--policy",
            "canary.yaml",
            "--out",
            &out_arg,
            "--cache-dir",
            &cache_arg,
            "--jobs",
            "1",
        ];
        let (mut child, _own) = start(&example, &args);
        // The first store has begun: a temporary file or an entry is in the cache.
        wait_until(&mut child, || !named(&cache.join("renders"), "").is_empty());
        std::thread::sleep(Duration::from_millis(delay_ms));
        kill(&mut child);
        // What the killed run left is either a whole entry or a temporary file no lookup reads.
        let again = common::compile_run(&example, &out, &["--cache-dir", &cache_arg]);
        assert_eq!(again.code, 0, "round {round}: {}", again.stderr);
        assert!(
            !again.stderr.contains("did not match"),
            "round {round}: a partial entry was visible: {}",
            again.stderr
        );
        assert_eq!(read_tree(&out), reference, "round {round}");
    }
}
