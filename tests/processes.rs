//! Nothing istioctl starts outlives the tool, and a runaway istioctl cannot take the machine
//! with it: every case runs a fake istioctl (generated in a temp dir) that records its own pid
//! and its children's, runs the tool under a wall-clock and a memory limit, and then checks that
//! each recorded process is gone. Linux only: it reads `/proc`.
#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{fixtures, sha256_hex, snapshot_settings};
use rustix::process::{kill_process, Pid, Signal};

/// The most a case may take; the slowest one (the timeout case) needs about 4 s.
const WALL_CLOCK: Duration = Duration::from_secs(60);
/// The tool's address-space limit (`ulimit -v`, KiB). The tool reads at most 64 MiB of stdout,
/// so 1 GiB leaves room for everything else and still stops an unbounded read within a second.
const MEMORY_KIB: u64 = 1 << 20;

/// A policy in a fresh temp dir whose 1.14.1 pin is a shell script: `version` prints 1.14.1,
/// anything else runs `body` with `$PIDS` naming the file where it records pids.
struct Case {
    dir: tempfile::TempDir,
    /// The render caches of the runs (`common::own_cache`), kept until the case ends.
    caches: std::sync::Mutex<Vec<tempfile::TempDir>>,
}

struct Outcome {
    code: Option<i32>,
    stderr: String,
}

impl Case {
    fn new(body: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = format!(
            "#!/bin/sh\nPIDS='{}'\nif [ \"$1\" = version ]; then echo 1.14.1; exit 0; fi\n{body}\n",
            pids.display()
        );
        let istioctl = dir.path().join("istioctl-1.14.1");
        std::fs::write(&istioctl, &script).unwrap();
        let mut perms = std::fs::metadata(&istioctl).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&istioctl, perms).unwrap();
        let standin = fixtures().join("istioctl/istioctl-1.13.5");
        let policy = format!(
            r#"apiVersion: istio-canary.dev/v1alpha1
kind: CanaryUpgrade
metadata:
  name: processes
spec:
  istioOperator: {iop}
  from:
    version: 1.13.5
  to:
    version: 1.14.1
  istioctl:
    "1.13.5": {{path: {standin}, sha256: {standin_sha}}}
    "1.14.1": {{path: istioctl-1.14.1, sha256: {sha}}}
  waves:
  - name: canary
    namespaces: [bookinfo]
"#,
            iop = fixtures().join("example/iop.yaml").display(),
            standin = standin.display(),
            standin_sha = sha256_hex(&std::fs::read(&standin).unwrap()),
            sha = sha256_hex(script.as_bytes()),
        );
        std::fs::write(dir.path().join("canary.yaml"), policy).unwrap();
        Case {
            dir,
            caches: std::sync::Mutex::default(),
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("bundles")
    }

    /// The pids the fake istioctl recorded so far.
    fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.path().join("pids"))
            .unwrap_or_default()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect()
    }

    /// Starts `istio-canary compile` under the memory limit, with stdout and stderr piped.
    fn start(&self, extra: &[&str]) -> std::process::Child {
        let mut command = Command::new("sh");
        let cache = common::own_cache(&mut command);
        self.caches.lock().unwrap().push(cache);
        command
            .arg("-c")
            .arg(format!("ulimit -v {MEMORY_KIB} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_istio-canary"))
            .args(["compile", "--policy", "canary.yaml", "--out", "bundles"])
            .args(extra)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits for `child` at most `WALL_CLOCK`; past it, kills the tool and what it left and fails.
    fn finish(&self, child: std::process::Child) -> Outcome {
        let pid = Pid::from_child(&child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        match rx.recv_timeout(WALL_CLOCK) {
            Ok(out) => {
                let out = out.unwrap();
                Outcome {
                    code: out.status.code(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                }
            }
            Err(_) => {
                let _ = kill_process(pid, Signal::KILL);
                kill_all(&self.pids());
                panic!("istio-canary took longer than {WALL_CLOCK:?}");
            }
        }
    }

    fn compile(&self, extra: &[&str]) -> Outcome {
        self.finish(self.start(extra))
    }

    /// Fails (after killing them) if any recorded process still runs shortly after the tool
    /// exited. SIGKILL is delivered at once, but a process needs a moment to die.
    fn assert_nothing_left(&self, expected: usize) {
        let pids = self.pids();
        assert_eq!(pids.len(), expected, "recorded pids: {pids:?}");
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let alive: Vec<i32> = pids.iter().copied().filter(|&p| running(p)).collect();
            if alive.is_empty() {
                return;
            }
            if Instant::now() >= until {
                kill_all(&alive);
                panic!("processes of istioctl's group outlived istio-canary: {alive:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Case {
    /// A failing test still leaves nothing running behind it.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let alive: Vec<i32> = self.pids().into_iter().filter(|&p| running(p)).collect();
            kill_all(&alive);
        }
    }
}

/// Whether `pid` exists and is not a zombie (a killed orphan may wait a while to be reaped).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z' | 'X'))
        }
    }
}

fn kill_all(pids: &[i32]) {
    for &p in pids {
        if let Some(pid) = Pid::from_raw(p) {
            let _ = kill_process(pid, Signal::KILL);
        }
    }
}

/// Waits until the fake istioctl has recorded `n` pids.
fn wait_for_pids(case: &Case, n: usize) {
    let until = Instant::now() + WALL_CLOCK;
    while case.pids().len() < n {
        assert!(Instant::now() < until, "the fake istioctl never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn standin(version: &str) -> PathBuf {
    fixtures().join(format!("istioctl/istioctl-{version}"))
}

fn quoted(p: &Path) -> String {
    format!("'{}'", p.display())
}

#[test]
fn a_child_left_holding_stdout_is_killed_and_does_not_delay_success() {
    // A wrapper that starts a helper on istioctl's pipes and then becomes the real istioctl.
    let case = Case::new(&format!(
        "sleep 1000 &\necho $! >> \"$PIDS\"\necho $$ >> \"$PIDS\"\nexec {} \"$@\"",
        quoted(&standin("1.14.1"))
    ));
    let started = Instant::now();
    let r = case.compile(&["--istioctl-timeout", "30"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(case.out().join("PLAN.md").exists());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "success waited for the helper: {:?}",
        started.elapsed()
    );
    case.assert_nothing_left(2);
}

#[test]
fn the_timeout_kills_the_whole_group() {
    // The wrapper waits for its children, which hold stdout and never finish.
    let case = Case::new(
        "sleep 1000 &\necho $! >> \"$PIDS\"\nsleep 1000 &\necho $! >> \"$PIDS\"\necho $$ >> \"$PIDS\"\nwait",
    );
    // Long enough for the stand-in's calls on a busy machine.
    let r = case.compile(&["--istioctl-timeout", "3"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("istioctl 1.14.1 did not finish within 3s and was stopped"),
        "{}",
        r.stderr
    );
    case.assert_nothing_left(3);
}

#[test]
fn endless_stdout_stops_at_the_limit() {
    let case = Case::new("echo $$ >> \"$PIDS\"\nexec yes 'kind: ConfigMap'");
    let r = case.compile(&[]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("printed more than 64 MiB on stdout and was stopped"),
        "{}",
        r.stderr
    );
    case.assert_nothing_left(1);
}

#[test]
fn endless_stderr_stops_at_the_limit() {
    let case = Case::new("echo $$ >> \"$PIDS\"\nexec yes 'warning: still thinking' >&2");
    let r = case.compile(&[]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("printed more than 1 MiB on stderr and was stopped"),
        "{}",
        r.stderr
    );
    case.assert_nothing_left(1);
}

/// Sends `signal` to the tool while istioctl (and a child of it) runs.
fn interrupt(signal: Signal) -> (Case, Outcome) {
    let case = Case::new("sleep 1000 &\necho $! >> \"$PIDS\"\necho $$ >> \"$PIDS\"\nwait");
    let child = case.start(&["--istioctl-timeout", "600"]);
    wait_for_pids(&case, 2);
    kill_process(Pid::from_child(&child), signal).unwrap();
    let r = case.finish(child);
    case.assert_nothing_left(2);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(!case.out().exists(), "--out was written");
    (case, r)
}

#[test]
fn sigint_stops_istioctl_and_exits_2() {
    let (_case, r) = interrupt(Signal::INT);
    snapshot_settings().bind(|| insta::assert_snapshot!("error-interrupted", r.stderr));
}

#[test]
fn sigterm_stops_istioctl_and_exits_2() {
    let (_case, r) = interrupt(Signal::TERM);
    assert!(
        r.stderr.starts_with("error: interrupted by SIGTERM"),
        "{}",
        r.stderr
    );
}
