//! Hostile inputs too large to store as fixtures, generated here: deep nesting, huge values,
//! files over their size limit, `/dev/zero`. Each case runs the real binary under a wall-clock
//! limit and a memory limit and fails when it exceeds either; it must exit 2 with the expected
//! message and leave a previous `--out` byte-identical.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fixtures, read_tree, sha256_hex, standin_sha256};

/// Wall-clock limit of one case. A linear scan of the largest case (10 MiB) takes a few seconds
/// in a debug build; the quadratic behaviours these cases guard against take minutes to hours,
/// so 30 s separates them with room for a loaded CI machine.
const TIME_LIMIT: Duration = Duration::from_secs(30);
/// Address-space limit of one case, in KiB (`ulimit -v`).
const MEMORY_LIMIT_KIB: u64 = 1_000_000;

struct Outcome {
    code: i32,
    stderr: String,
}

/// One case at a time, so that a case's time is its own and not its neighbours'.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `istio-canary compile --policy <policy> --out <out>` in `cwd` under the limits.
fn run_limited(cwd: &Path, policy: &str, out: &Path) -> Outcome {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let stderr_path = out.with_extension("stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut command = Command::new("sh");
    let _cache = common::own_cache(&mut command);
    let mut child = command
        .arg("-c")
        .arg(format!("ulimit -v {MEMORY_LIMIT_KIB}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_istio-canary"))
        .args(["compile", "--policy", policy, "--out"])
        .arg(out)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{policy}: still running after {TIME_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    std::fs::remove_file(&stderr_path).unwrap();
    Outcome {
        // Killed by a signal (e.g. out of memory under the limit): no code.
        code: status.code().unwrap_or(-1),
        stderr,
    }
}

/// A scratch directory with a previous compile in `bundles/`.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("bundles");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join(".istio-canary"), "# previous compile\n").unwrap();
        std::fs::write(out.join("PLAN.md"), "previous plan\n").unwrap();
        Case { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) {
        std::fs::write(self.path(name), bytes).unwrap();
    }

    /// Compiles `policy` and requires exit 2, an untouched `--out`, and a message with `expect`.
    /// Returns stderr.
    fn fails(&self, policy: &str, expect: &str) -> String {
        let out = self.path("bundles");
        let before = read_tree(&out);
        let r = run_limited(self.dir.path(), policy, &out);
        assert_eq!(
            r.code,
            2,
            "{policy}: exit code {}:\n{}",
            r.code,
            cut(&r.stderr)
        );
        assert!(
            r.stderr.contains(expect),
            "{policy}: expected `{expect}` in:\n{}",
            cut(&r.stderr)
        );
        assert_eq!(
            read_tree(&out),
            before,
            "{policy}: the previous output changed"
        );
        r.stderr
    }
}

/// Test output stays readable even when the tool echoes too much.
fn cut(s: &str) -> &str {
    &s[..s.len().min(2000)]
}

/// A policy for 1.13.5 -> 1.14.1 with the stand-in istioctl, the example spec, and `extra`
/// lines appended under `spec:`; `to` replaces the target version.
fn policy(to: &str, spec_path: &str, ctl_114: (&str, &str), extra: &str) -> String {
    let standin = fixtures().join("istioctl");
    format!(
        "apiVersion: istio-canary.dev/v1alpha1\nkind: CanaryUpgrade\nmetadata:\n  name: hostile\nspec:\n  istioOperator: {spec_path}\n  from:\n    version: 1.13.5\n  to:\n    version: \"{to}\"\n  istioctl:\n    \"1.13.5\": {{path: {}, sha256: {}}}\n    \"{to}\": {{path: {}, sha256: {}}}\n  waves:\n  - name: canary\n    namespaces: [bookinfo]\n{extra}",
        standin.join("istioctl-1.13.5").display(),
        standin_sha256(),
        ctl_114.0,
        ctl_114.1,
    )
}

fn example_spec() -> String {
    fixtures().join("example/iop.yaml").display().to_string()
}

fn standin_114() -> (String, String) {
    (
        fixtures()
            .join("istioctl/istioctl-1.14.1")
            .display()
            .to_string(),
        standin_sha256(),
    )
}

fn simple_policy(extra: &str) -> String {
    let (p, s) = standin_114();
    policy("1.14.1", &example_spec(), (&p, &s), extra)
}

#[test]
fn deep_flow_nesting_in_the_policy_is_refused_quickly() {
    let case = Case::new();
    let text = simple_policy(&format!("  defaultTag: {}\n", "[".repeat(300 * 1024)));
    case.write("canary.yaml", text);
    let stderr = case.fails(
        "canary.yaml",
        "error: sequences and mappings are nested deeper than 64 levels here\n  --> canary.yaml:17:77",
    );
    assert!(stderr.len() < 2000, "{}", cut(&stderr));
}

#[test]
fn deep_nesting_in_the_spec_is_refused_quickly() {
    let case = Case::new();
    case.write(
        "iop.yaml",
        format!(
            "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  values: {}\n",
            "{a: [".repeat(60 * 1024)
        ),
    );
    let (p, s) = standin_114();
    case.write("canary.yaml", policy("1.14.1", "iop.yaml", (&p, &s), ""));
    case.fails(
        "canary.yaml",
        "error: sequences and mappings are nested deeper than 64 levels here\n  --> iop.yaml:4:",
    );
}

#[test]
fn a_huge_bad_value_is_echoed_cut_and_measured() {
    let case = Case::new();
    // Just under the policy's limit: a metadata.name of about a million characters.
    let name = "A".repeat(1_000_000);
    case.write(
        "canary.yaml",
        simple_policy("").replace("name: hostile", &format!("name: {name}")),
    );
    let stderr = case.fails(
        "canary.yaml",
        &format!("metadata.name: `{}…` (1000000 bytes)", "A".repeat(80)),
    );
    assert!(stderr.len() < 2000, "{}", cut(&stderr));
}

#[test]
fn a_ten_megabyte_key_in_istioctl_output_is_echoed_cut() {
    let case = Case::new();
    let script = "#!/bin/sh\nif [ \"$1\" = version ]; then echo 1.14.1; exit 0; fi\nprintf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: big\\ndata:\\n  ? '\nhead -c 10485760 /dev/zero | tr '\\0' a\nprintf '\\n  : 1\\n  ? '\nhead -c 10485760 /dev/zero | tr '\\0' a\nprintf '\\n  : 2\\n'\n";
    case.write("istioctl-1.14.1", script);
    let ctl = case.path("istioctl-1.14.1");
    let mut perms = std::fs::metadata(&ctl).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&ctl, perms).unwrap();
    let digest = sha256_hex(script.as_bytes());
    case.write(
        "canary.yaml",
        policy("1.14.1", &example_spec(), ("istioctl-1.14.1", &digest), ""),
    );
    let stderr = case.fails(
        "canary.yaml",
        &format!("duplicate key `{}…` (10485760 bytes)", "a".repeat(80)),
    );
    assert!(stderr.len() < 2000, "{}", cut(&stderr));
}

#[test]
fn exponential_aliases_in_the_spec_are_refused() {
    let case = Case::new();
    // Ten levels of nine aliases each: 9^10 strings once expanded ("billion laughs").
    let mut spec = String::from("apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        spec.push_str(&format!("  a{i}: &a{i} [{refs}]\n"));
    }
    case.write("iop.yaml", spec);
    let (p, s) = standin_114();
    case.write("canary.yaml", policy("1.14.1", "iop.yaml", (&p, &s), ""));
    case.fails(
        "canary.yaml",
        "error: repetition limit exceeded\n  --> iop.yaml\n",
    );
}

#[test]
fn a_policy_over_its_limit_is_refused_by_size() {
    let case = Case::new();
    let mut text = simple_policy("");
    text.push_str(&format!("# {}\n", "x".repeat(1 << 20)));
    case.write("canary.yaml", text);
    case.fails(
        "canary.yaml",
        "error: the policy is larger than 1 MiB, the most istio-canary reads\n  --> canary.yaml\n",
    );
}

#[test]
fn dev_zero_as_the_policy_or_the_spec_is_refused_as_a_device() {
    let case = Case::new();
    case.fails(
        "/dev/zero",
        "error: cannot read policy /dev/zero: it is a character device, not a regular file\n",
    );
    let (p, s) = standin_114();
    case.write("canary.yaml", policy("1.14.1", "/dev/zero", (&p, &s), ""));
    case.fails(
        "canary.yaml",
        "error: cannot read IstioOperator spec /dev/zero: it is a character device, not a regular file\n",
    );
}

#[test]
fn a_spec_over_its_limit_is_refused_by_size() {
    let case = Case::new();
    // Sparse: a gibibyte that costs no disk, read only up to the limit.
    std::fs::File::create(case.path("iop.yaml"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let (p, s) = standin_114();
    case.write("canary.yaml", policy("1.14.1", "iop.yaml", (&p, &s), ""));
    case.fails(
        "canary.yaml",
        "error: the IstioOperator spec is larger than 4 MiB, the most istio-canary reads\n  --> iop.yaml\n",
    );
}

#[test]
fn huge_version_numbers_do_not_allocate() {
    let case = Case::new();
    let (p, s) = standin_114();
    case.write(
        "canary.yaml",
        policy("1.18446744073709551615.1", &example_spec(), (&p, &s), ""),
    );
    case.fails(
        "canary.yaml",
        "error: version `1.18446744073709551615.1` has a number above 10000",
    );
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let case = Case::new();
    case.write("canary.yaml", format!("\u{feff}{}", simple_policy("")));
    let out = case.path("bundles");
    let r = run_limited(case.dir.path(), "canary.yaml", &out);
    assert_eq!(r.code, 0, "{}", cut(&r.stderr));
    assert!(out.join("PLAN.md").is_file());
}
