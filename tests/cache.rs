//! The render cache, parallel renders and fleets as a user meets them: a warm compile needs no
//! istioctl binary at all (`compile --check` included), a damaged entry is never used, a cache
//! that cannot be written is not an error, `--jobs` does not change a byte, a fleet writes one
//! directory per policy and renders what its policies share once, istioctl calls fail in request
//! order and a render is cached only once its binary reported the pinned version, and progress
//! appears only on a terminal. `cache prune` keeps the cache bounded: least recently used first,
//! while compiles run.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fixtures, read_tree, run, sha256_hex};

/// The example in a temp dir whose pinned binaries can be taken away: `example/` holds the
/// policy and spec, `istioctl` links to the stand-ins, `cache/` is the render cache.
struct Example {
    tmp: tempfile::TempDir,
}

impl Example {
    fn new() -> Example {
        let tmp = tempfile::tempdir().unwrap();
        let example = tmp.path().join("example");
        std::fs::create_dir(&example).unwrap();
        for name in ["canary.yaml", "iop.yaml"] {
            std::fs::copy(fixtures().join("example").join(name), example.join(name)).unwrap();
        }
        std::os::unix::fs::symlink(fixtures().join("istioctl"), tmp.path().join("istioctl"))
            .unwrap();
        Example { tmp }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("example")
    }

    fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    fn out(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `compile` of the example with the cache (unless `extra` turns it off), plus `extra`.
    fn compile(&self, out: &str, extra: &[&str]) -> common::Run {
        let cache = self.cache();
        let mut args = Vec::new();
        if !extra.contains(&"--no-cache") {
            args.extend(["--cache-dir", cache.to_str().unwrap()]);
        }
        args.extend_from_slice(extra);
        common::compile_run(&self.dir(), &self.out(out), &args)
    }

    /// Pins each `(version, sha256)` to the binary `../<dir>/istioctl-<version>` instead of the
    /// stand-in.
    fn repin(&self, dir: &str, pins: &[(&str, &str)]) {
        let policy = self.dir().join("canary.yaml");
        let standin = common::standin_sha256();
        let mut text = std::fs::read_to_string(&policy).unwrap();
        for (version, sha) in pins {
            let pin = format!("path: ../istioctl/istioctl-{version}\n      sha256: {standin}");
            assert!(text.contains(&pin), "{pin} not in the example");
            let new = format!("path: ../{dir}/istioctl-{version}\n      sha256: {sha}");
            text = text.replace(&pin, &new);
        }
        std::fs::write(&policy, text).unwrap();
    }

    /// `compile` with `--jobs jobs`, which must fail (exit 2, nothing written) with stderr
    /// starting `error: ` and `message`.
    fn refused(&self, jobs: &str, message: &str) -> common::Run {
        let r = self.compile("out", &["--jobs", jobs]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        let error = format!("error: {message}");
        assert!(r.stderr.starts_with(&error), "{}", r.stderr);
        assert!(!self.out("out").exists());
        r
    }

    /// Takes the pinned binaries away: nothing can run or hash them any more.
    fn remove_binaries(&self) {
        std::fs::remove_file(self.tmp.path().join("istioctl")).unwrap();
    }

    /// The cache's entries, by file name.
    fn entries(&self) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(self.cache().join("renders"))
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                let name = e.file_name().into_string().unwrap();
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect()
    }
}

fn a_warm_compile_needs_no_istioctl_binary() {
    let ex = Example::new();
    let cold = ex.compile("cold", &[]);
    assert_eq!(cold.code, 0, "{}", cold.stderr);
    assert_eq!(ex.entries().len(), 2, "one entry per side");
    ex.remove_binaries();
    let warm = ex.compile("warm", &[]);
    assert_eq!(warm.code, 0, "{}", warm.stderr);
    assert_eq!(read_tree(&ex.out("cold")), read_tree(&ex.out("warm")));
    assert_eq!(warm.stderr, cold.stderr.replace("/cold/", "/warm/"));
    // compile --check, as a pull-request job with a shared cache and no binaries runs it.
    let check = ex.compile("warm", &["--check"]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(
        check.stderr.contains("is up to date (132 files)"),
        "{}",
        check.stderr
    );
    // Without the cache the binaries are needed, and their absence is the error it always was.
    let uncached = ex.compile("none", &["--no-cache"]);
    assert_eq!(uncached.code, 2);
    assert!(
        uncached
            .stderr
            .starts_with("error: cannot read istioctl 1.27.0 at ../istioctl/istioctl-1.27.0"),
        "{}",
        uncached.stderr
    );
    assert!(!ex.out("none").exists());
}

/// A binary whose sha256 matches its pin may render while it reports its version (no render
/// waits for a check), but what it rendered is stored only once it reported the pinned version:
/// a binary of another release never fills the cache, and the other side's render still does.
fn a_render_is_stored_only_once_its_binary_reported_the_pinned_version() {
    let ex = Example::new();
    let wrong = ex.tmp.path().join("wrong");
    std::fs::create_dir(&wrong).unwrap();
    let rendered = ex.tmp.path().join("rendered");
    let text_of_script = format!(
        "#!/bin/sh\n# Reports 1.28.1, slowly; renders as the 1.28.0 stand-in.\nif [ \"$1\" = version ]; then sleep 1; echo 1.28.1; exit 0; fi\ntouch '{}'\nexec '{}' \"$@\"\n",
        rendered.display(),
        fixtures().join("istioctl/istioctl-1.28.0").display()
    );
    let digest = script(&wrong, "istioctl-1.28.0", &text_of_script);
    ex.repin("wrong", &[("1.28.0", &digest)]);
    // Four jobs: both checks and both renders at once.
    ex.refused(
        "4",
        "../wrong/istioctl-1.28.0 reports version 1.28.1, but the policy pins it for 1.28.0\n",
    );
    assert!(rendered.exists(), "the render did not run beside the check");
    // The cache holds the 1.27.0 render exactly as a good run stores it, and nothing else.
    let good = Example::new();
    assert_eq!(good.compile("out", &[]).code, 0);
    let old_side: BTreeMap<String, Vec<u8>> = good
        .entries()
        .into_iter()
        .filter(|(_, bytes)| String::from_utf8_lossy(bytes).contains("name: istiod-1-27-0\n"))
        .collect();
    assert_eq!(old_side.len(), 1);
    let entries = ex.entries();
    assert_eq!(
        entries.keys().collect::<Vec<_>>(),
        old_side.keys().collect::<Vec<_>>()
    );
    assert!(entries == old_side, "the entry is not a good run's");
}

/// Writes an executable script `name` into `dir` and returns its sha256.
fn script(dir: &Path, name: &str, text: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    sha256_hex(text.as_bytes())
}

/// Once a call has failed, no later call starts: its error is the one reported, and nothing
/// else runs for an output that cannot be written.
fn no_call_starts_after_a_failed_one() {
    let ex = Example::new();
    let bins = ex.tmp.path().join("bins");
    std::fs::create_dir(&bins).unwrap();
    let ran = ex.tmp.path().join("ran");
    let failing = script(
        &bins,
        "istioctl-1.27.0",
        "#!/bin/sh\nif [ \"$1\" = version ]; then echo 1.27.0; exit 0; fi\necho 'cannot render' >&2\nexit 1\n",
    );
    let later = script(
        &bins,
        "istioctl-1.28.0",
        &format!(
            "#!/bin/sh\nif [ \"$1\" = version ]; then echo 1.28.0; exit 0; fi\ntouch '{}'\nexec '{}' \"$@\"\n",
            ran.display(),
            fixtures().join("istioctl/istioctl-1.28.0").display()
        ),
    );
    ex.repin("bins", &[("1.27.0", &failing), ("1.28.0", &later)]);
    // One job: the checks, then the 1.27.0 render, which fails; the 1.28.0 render would be next.
    let r = ex.refused("1", "istioctl 1.27.0 failed (exit status 1): `../bins/istioctl-1.27.0 manifest generate -f iop-1-27-0.yaml`");
    assert!(r.stderr.contains("cannot render"), "{}", r.stderr);
    assert!(!ran.exists(), "a render started after the failed one");
}

/// Calls running at once that both fail: the error reported is the first render's in request
/// order, even when the later one fails first.
fn the_first_failure_in_request_order_is_reported_whatever_ends_first() {
    let ex = Example::new();
    let bins = ex.tmp.path().join("bins");
    std::fs::create_dir(&bins).unwrap();
    let slow = script(
        &bins,
        "istioctl-1.27.0",
        "#!/bin/sh\nif [ \"$1\" = version ]; then echo 1.27.0; exit 0; fi\nsleep 1\necho 'slow failure' >&2\nexit 1\n",
    );
    let fast = script(
        &bins,
        "istioctl-1.28.0",
        "#!/bin/sh\nif [ \"$1\" = version ]; then echo 1.28.0; exit 0; fi\necho 'fast failure' >&2\nexit 1\n",
    );
    ex.repin("bins", &[("1.27.0", &slow), ("1.28.0", &fast)]);
    let r = ex.refused("4", "istioctl 1.27.0 failed (exit status 1): ");
    assert!(r.stderr.contains("slow failure"), "{}", r.stderr);
    assert!(!r.stderr.contains("fast failure"), "{}", r.stderr);
}

fn a_corrupt_entry_is_ignored_said_and_rewritten() {
    let ex = Example::new();
    assert_eq!(ex.compile("first", &[]).code, 0);
    let good = ex.entries();
    for (name, bytes) in &good {
        std::fs::write(
            ex.cache().join("renders").join(name),
            &bytes[..bytes.len() / 2],
        )
        .unwrap();
    }
    let again = ex.compile("again", &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(read_tree(&ex.out("first")), read_tree(&ex.out("again")));
    let note = format!(
        "note: render cache {}: 2 entries did not match their own digest and were ignored (rendered again)\n",
        ex.cache().display()
    );
    assert!(again.stderr.contains(&note), "{}", again.stderr);
    assert_eq!(ex.entries(), good, "the entries were rewritten whole");
}

fn a_hostile_render_in_a_well_formed_entry_is_still_refused() {
    let ex = Example::new();
    assert_eq!(ex.compile("first", &[]).code, 0);
    // An entry whose header matches its payload, and whose payload is what the YAML gate
    // refuses from istioctl itself.
    let payload = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  <<: {namespace: y}\n";
    for name in ex.entries().keys() {
        let header = format!(
            "istio-canary-render-cache-v1 {name} {} {}\n",
            payload.len(),
            sha256_hex(payload.as_bytes())
        );
        std::fs::write(ex.cache().join("renders").join(name), header + payload).unwrap();
    }
    ex.remove_binaries();
    let r = ex.compile("hostile", &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("error: istioctl 1.27.0 printed invalid manifest YAML: "),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("merge key"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "(read from the render cache {})",
            ex.cache().display()
        )),
        "{}",
        r.stderr
    );
    assert!(!ex.out("hostile").exists());
}

fn a_cache_that_cannot_be_written_is_not_an_error() {
    let ex = Example::new();
    // A file where the cache directory would be: nothing can be stored under it.
    std::fs::write(ex.cache(), "").unwrap();
    let r = ex.compile("out", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(ex.out("out").join("PLAN.md").is_file());
    let note = format!(
        "note: render cache {} is not writable (Not a directory): 2 renders were not stored\n",
        ex.cache().display()
    );
    assert!(r.stderr.contains(&note), "{}", r.stderr);
}

/// How many entries the cache in `dir` holds.
fn entries_in(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("renders")).unwrap().count()
}

/// The binary with the environment `env` gives it (and nothing of the test's own cache).
fn run_with_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> common::Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_istio-canary"));
    command
        .current_dir(dir)
        .args(args)
        .env_remove("XDG_CACHE_HOME")
        .env_remove("HOME");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn the_default_cache_is_under_xdg_cache_home_else_home() {
    let ex = Example::new();
    let compile = ["compile", "--policy", "canary.yaml", "--out", "../out"];
    let xdg = ex.tmp.path().join("xdg");
    let r = run_with_env(&ex.dir(), &compile, &[("XDG_CACHE_HOME", &xdg)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(entries_in(&xdg.join("istio-canary")), 2);
    let home = ex.tmp.path().join("home");
    let r = run_with_env(&ex.dir(), &compile, &[("HOME", &home)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(entries_in(&home.join(".cache/istio-canary")), 2);
    // Neither: an error saying what to pass, unless the cache is off.
    let r = run_with_env(&ex.dir(), &compile, &[]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: no directory for the render cache: neither XDG_CACHE_HOME nor HOME is set to an absolute path\nhelp: pass --cache-dir DIR to keep renders there, or --no-cache to render every time\n"
    );
    let mut no_cache = compile.to_vec();
    no_cache.push("--no-cache");
    let r = run_with_env(&ex.dir(), &no_cache, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // --cache-dir and --no-cache say opposite things.
    let r = run(&ex.dir(), &["compile", "--cache-dir", "c", "--no-cache"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with(
            "error: the argument '--cache-dir <DIR>' cannot be used with '--no-cache'"
        ),
        "{}",
        r.stderr
    );
}

fn jobs_do_not_change_a_byte() {
    let ex = Example::new();
    for jobs in ["1", "2", "8"] {
        let r = ex.compile(&format!("jobs-{jobs}"), &["--no-cache", "--jobs", jobs]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let one = read_tree(&ex.out("jobs-1"));
    assert_eq!(one, read_tree(&ex.out("jobs-2")));
    assert_eq!(one, read_tree(&ex.out("jobs-8")));
    let r = ex.compile("zero", &["--jobs", "0"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .starts_with("error: invalid value '0' for '--jobs <N>'"),
        "{}",
        r.stderr
    );
    // `plan` takes the same render flags.
    let cache = ex.cache();
    let plan = run(
        &ex.dir(),
        &[
            "plan",
            "--format",
            "json",
            "--jobs",
            "1",
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
    );
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_eq!(plan.stdout, one["plan.json"]);
    let plan = run(&ex.dir(), &["plan", "--no-cache"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
}

fn quiet_prints_only_notes_and_warnings() {
    let ex = Example::new();
    let r = ex.compile("out", &["--quiet"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(ex.out("out").join("PLAN.md").is_file());
    // The example has nothing to warn about: no summary, nothing at all.
    assert_eq!(r.stderr, "");
    // A plan with a warning (a problem already there before the upgrade) still shows it.
    let r = common::compile_run(
        &fixtures().join("scenarios/three-hops"),
        &ex.out("warned"),
        &["--quiet", "--no-cache"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(
        lines[0].starts_with("warning: already before the upgrade: "),
        "{}",
        r.stderr
    );
}

/// Every scenario in one run, into `OUT/<name>/`.
fn a_fleet_writes_one_directory_per_policy_and_renders_shared_sides_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, cache) = (tmp.path().join("fleet"), tmp.path().join("cache"));
    let scenarios = fixtures().join("scenarios");
    let fleet = |extra: &[&str]| {
        let mut args = vec![
            "compile",
            "--policies",
            scenarios.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(tmp.path(), &args)
    };
    let cold = fleet(&[]);
    assert_eq!(cold.code, 0, "{}", cold.stderr);
    let dirs = common::fixture_dirs("scenarios");
    let renders = entries_in(&cache);
    assert!(
        renders < 2 * dirs.len(),
        "{renders} renders for {} policies",
        dirs.len()
    );
    let footer = format!(
        "istio-canary: {} policies in {}/: {renders} distinct renders, 0 from the render cache\n",
        dirs.len(),
        out.display()
    );
    assert!(cold.stderr.ends_with(&footer), "{}", cold.stderr);
    // Each directory is what compiling that policy alone writes.
    for dir in &dirs {
        let text = std::fs::read_to_string(dir.join("canary.yaml")).unwrap();
        let name = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("name: "))
            .unwrap();
        let alone = tmp.path().join("alone").join(name);
        let cache_arg = cache.to_str().unwrap();
        let want = common::compile_into(dir, &alone, &["--cache-dir", cache_arg]);
        assert_eq!(read_tree(&out.join(name)), want, "{name}");
    }
    // Warm: every render from the cache.
    let warm = fleet(&["--quiet"]);
    assert_eq!(warm.code, 0, "{}", warm.stderr);
    assert!(!warm.stderr.contains("istio-canary:"), "{}", warm.stderr);
    let check = fleet(&["--check"]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(
        check.stderr.starts_with(&format!(
            "istio-canary: {} policies in {}/ are up to date (",
            dirs.len(),
            out.display()
        )),
        "{}",
        check.stderr
    );
    // One file edited in one policy's directory: that policy's diff, and exit 1.
    let plan = out.join("keep-old/PLAN.md");
    std::fs::write(&plan, "edited\n").unwrap();
    let check = fleet(&["--check"]);
    assert_eq!(check.code, 1, "{}", check.stderr);
    assert!(
        check.stdout.contains("changed: PLAN.md\n"),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains(&format!(
            "{}/ is out of date: 1 changed, 0 missing, 0 extra\n",
            out.join("keep-old").display()
        )),
        "{}",
        check.stdout
    );
    assert_eq!(check.stdout.matches("is out of date").count(), 1);
    // Two policies named with --policy: each directory as compiling it alone writes it.
    let pair = tmp.path().join("pair");
    let mut args = vec!["compile", "--out", pair.to_str().unwrap()];
    let chosen = ["keep-old", "no-default-tag"].map(|n| scenarios.join(n).join("canary.yaml"));
    for policy in &chosen {
        args.extend(["--policy", policy.to_str().unwrap()]);
    }
    args.extend(["--cache-dir", cache.to_str().unwrap()]);
    let r = run(tmp.path(), &args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for name in ["keep-old", "no-default-tag"] {
        let alone = tmp.path().join("alone").join(name);
        assert_eq!(read_tree(&pair.join(name)), read_tree(&alone), "{name}");
    }
    assert_eq!(std::fs::read_dir(&pair).unwrap().count(), 2);
    // Three shards write the fleet's directories between them, each exactly once.
    let sharded = tmp.path().join("sharded");
    let mut written = Vec::new();
    for shard in ["0/3", "1/3", "2/3"] {
        let mut args = vec!["compile", "--policies", scenarios.to_str().unwrap()];
        args.extend(["--shard", shard, "--out", sharded.to_str().unwrap()]);
        args.extend(["--cache-dir", cache.to_str().unwrap(), "--quiet"]);
        let r = run(tmp.path(), &args);
        assert_eq!(r.code, 0, "{shard}: {}", r.stderr);
        let names: Vec<String> = std::fs::read_dir(&sharded)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !written.contains(n))
            .collect();
        assert!(!names.is_empty(), "{shard} wrote nothing");
        written.extend(names);
    }
    written.sort();
    let mut all: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    all.sort();
    assert_eq!(written, all);
    for (shard, why) in [
        ("3/3", "I must be less than N (shards are numbered from 0)"),
        ("1", "expected I/N, such as 0/4"),
    ] {
        let args = ["compile", "--policies", "x", "--shard", shard];
        let r = run(tmp.path(), &args);
        assert_eq!(r.code, 2);
        let want = format!("error: invalid value '{shard}' for '--shard <I/N>': {why}\n");
        assert!(r.stderr.starts_with(&want), "{}", r.stderr);
    }
    let r = run(tmp.path(), &["compile", "--shard", "0/2"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with(
            "error: the following required arguments were not provided:\n  --policies <DIR>"
        ),
        "{}",
        r.stderr
    );
}

fn a_fleet_refuses_two_policies_of_one_name_and_reports_the_first_error() {
    let ex = Example::new();
    let fleet = |args: &[&str]| {
        let mut all = vec!["compile", "--out", "../fleet"];
        all.extend_from_slice(args);
        run(&ex.dir(), &all)
    };
    let r = fleet(&["--policy", "canary.yaml", "--policy", "./canary.yaml"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: policies canary.yaml and ./canary.yaml are both named `bookinfo-cluster`: in a fleet each policy writes OUT/<metadata.name>/\nhelp: give each policy of the fleet its own metadata.name\n"
    );
    assert!(!ex.out("fleet").exists());
    // Two policies whose binaries are both missing: the first policy's error, every time.
    let second = std::fs::read_to_string(ex.dir().join("canary.yaml"))
        .unwrap()
        .replace("name: bookinfo-cluster", "name: second")
        .replace("../istioctl/", "../missing-istioctl/");
    std::fs::write(ex.dir().join("second.yaml"), second).unwrap();
    let first = std::fs::read_to_string(ex.dir().join("canary.yaml"))
        .unwrap()
        .replace("../istioctl/", "../gone/");
    std::fs::write(ex.dir().join("canary.yaml"), first).unwrap();
    for _ in 0..3 {
        let r = fleet(&[
            "--policy",
            "canary.yaml",
            "--policy",
            "second.yaml",
            "--no-cache",
        ]);
        assert_eq!(r.code, 2);
        assert!(
            r.stderr
                .starts_with("error: cannot read istioctl 1.27.0 at ../gone/istioctl-1.27.0"),
            "{}",
            r.stderr
        );
    }
    // A directory that is not there, and one with no policy in it.
    let r = fleet(&["--policies", "no-such-dir"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: cannot read --policies no-such-dir: No such file or directory\n"
    );
    let r = fleet(&["--policies", "."]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: --policies .: no subdirectory holds a canary.yaml\nhelp: --policies takes a directory with one subdirectory per policy (DIR/<cluster>/canary.yaml)\n"
    );
    assert!(!ex.out("fleet").exists());
}

/// On a terminal each istioctl call is shown as it starts and ends; elsewhere nothing is.
fn progress_is_shown_on_a_terminal_only() {
    let script = Command::new("script").arg("--version").output();
    if !script.is_ok_and(|o| o.status.success()) {
        common::unavailable("progress on a terminal: `script` (util-linux) is not installed");
        return;
    }
    let ex = Example::new();
    let bin = env!("CARGO_BIN_EXE_istio-canary");
    let cache = ex.cache();
    let command = format!(
        "'{bin}' compile --policy canary.yaml --out ../tty --cache-dir '{}' --jobs 1",
        cache.display()
    );
    // `script` runs the command with a pseudo-terminal as its stdin, stdout and stderr.
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(ex.dir())
        .env("XDG_CACHE_HOME", &cache)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    assert_eq!(out.status.code(), Some(0), "{shown}");
    for line in [
        "istio-canary: [0/4] checking istioctl 1.27.0…\n",
        "istio-canary: [1/4] checking istioctl 1.27.0: done\n",
        "istio-canary: [2/4] rendering 1.27.0 (1-27-0)…\n",
        "istio-canary: [4/4] rendering 1.28.0 (1-28-0): done\n",
    ] {
        assert!(shown.contains(line), "{line:?} not in:\n{shown}");
    }
    // Warm, there is no call to show; and a redirected stderr never gets progress.
    let warm = ex.compile("warm", &[]);
    assert!(
        !warm.stderr.contains("checking istioctl"),
        "{}",
        warm.stderr
    );
    let cold = ex.compile("cold", &["--no-cache"]);
    assert!(
        !cold.stderr.contains("checking istioctl"),
        "{}",
        cold.stderr
    );
}

/// Sets the last-used time of the cache entry `name` to `days` days ago.
fn age_entry(cache: &Path, name: &str, days: u64) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(cache.join("renders").join(name))
        .unwrap();
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(days * 86_400);
    file.set_modified(when).unwrap();
}

fn prune(ex: &Example, limits: &[&str]) -> common::Run {
    let cache = ex.cache();
    let mut args = vec!["cache", "prune", "--cache-dir", cache.to_str().unwrap()];
    args.extend_from_slice(limits);
    run(&ex.dir(), &args)
}

fn prune_removes_the_least_recently_used_first_and_a_compile_marks_what_it_uses() {
    let ex = Example::new();
    let reference = ex.compile("out", &[]);
    assert_eq!(reference.code, 0, "{}", reference.stderr);
    let reference = read_tree(&ex.out("out"));
    let names: Vec<String> = ex.entries().into_keys().collect();
    assert_eq!(names.len(), 2);
    let sizes: Vec<u64> = names
        .iter()
        .map(|n| {
            std::fs::metadata(ex.cache().join("renders").join(n))
                .unwrap()
                .len()
        })
        .collect();
    // Both unused for ten days; a warm compile uses both, so an age limit keeps both.
    age_entry(&ex.cache(), &names[0], 10);
    age_entry(&ex.cache(), &names[1], 10);
    assert_eq!(ex.compile("out", &[]).code, 0);
    let r = prune(&ex, &["--max-age", "1"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    assert!(
        r.stderr
            .ends_with(": removed 0 entries (0.0 MiB), kept 2 (0.1 MiB)\n"),
        "{}",
        r.stderr
    );
    // The first used two days ago, the second one day ago: a size that holds one keeps the
    // second.
    age_entry(&ex.cache(), &names[0], 2);
    age_entry(&ex.cache(), &names[1], 1);
    let r = prune(&ex, &["--max-size", &sizes[1].to_string()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        format!(
            "istio-canary: render cache {}: removed 1 entry (0.0 MiB), kept 1 (0.0 MiB)\n",
            ex.cache().display()
        )
    );
    assert_eq!(
        ex.entries().into_keys().collect::<Vec<_>>(),
        [names[1].clone()]
    );
    // Older than a day: it goes too. The next compile renders both again, the same bytes.
    age_entry(&ex.cache(), &names[1], 3);
    let r = prune(&ex, &["--max-age", "2", "--max-size", "1G"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(ex.entries().is_empty());
    assert_eq!(ex.compile("out", &[]).code, 0);
    assert_eq!(read_tree(&ex.out("out")), reference);
    assert_eq!(ex.entries().len(), 2);
    // A cache never written is empty, not an error.
    let r = run(
        &ex.dir(),
        &[
            "cache",
            "prune",
            "--cache-dir",
            "../none",
            "--max-size",
            "0",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("removed 0 entries (0.0 MiB), kept 0 (0.0 MiB)"),
        "{}",
        r.stderr
    );
}

fn prune_removes_killed_stores_temporary_files_and_nothing_it_did_not_write() {
    let ex = Example::new();
    assert_eq!(ex.compile("out", &[]).code, 0);
    let renders = ex.cache().join("renders");
    for name in [".tmp-killed", ".tmp-running", "notes.txt"] {
        std::fs::write(renders.join(name), "x").unwrap();
    }
    std::fs::create_dir(renders.join("a".repeat(64))).unwrap();
    age_entry(&ex.cache(), ".tmp-killed", 1);
    age_entry(&ex.cache(), "notes.txt", 30);
    let r = prune(&ex, &["--max-size", "0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.ends_with(": removed 2 entries (0.1 MiB), kept 0 (0.0 MiB), and 1 temporary file of killed stores\n"),
        "{}",
        r.stderr
    );
    let mut left: Vec<String> = std::fs::read_dir(&renders)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            ".tmp-running".to_string(),
            "a".repeat(64),
            "notes.txt".to_string()
        ]
    );
}

fn prune_refusals_say_what_to_give() {
    let ex = Example::new();
    let r = prune(&ex, &[]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with("error: the following required arguments were not provided:\n  <--max-size <SIZE>|--max-age <DAYS>>\n"),
        "{}",
        r.stderr
    );
    let r = prune(&ex, &["--max-size", "1.5G"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with("error: invalid value '1.5G' for '--max-size <SIZE>': `1.5G` is not a size: give bytes, or a number with K, M or G (500M, 2G)\n"),
        "{}",
        r.stderr
    );
    let file = ex.tmp.path().join("file");
    std::fs::write(&file, "").unwrap();
    let r = run(
        &ex.dir(),
        &[
            "cache",
            "prune",
            "--cache-dir",
            file.to_str().unwrap(),
            "--max-age",
            "1",
        ],
    );
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        format!(
            "error: cannot read the render cache {}/renders: Not a directory\n",
            file.display()
        )
    );
    // No --cache-dir and no default: the default directory's error.
    let r = run_with_env(&ex.dir(), &["cache", "prune", "--max-age", "1"], &[]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .starts_with("error: no directory for the render cache"),
        "{}",
        r.stderr
    );
    let xdg = ex.tmp.path().join("xdg");
    let r = run_with_env(
        &ex.dir(),
        &["cache", "prune", "--max-age", "1"],
        &[("XDG_CACHE_HOME", &xdg)],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&xdg.join("istio-canary").display().to_string()),
        "{}",
        r.stderr
    );
}

/// A prune that empties the cache while compiles read it: every compile gives the same bytes
/// and none sees a damaged entry.
fn prune_during_compiles_never_hands_out_a_partial_entry() {
    let ex = Example::new();
    assert_eq!(ex.compile("ref", &[]).code, 0);
    let reference = read_tree(&ex.out("ref"));
    for round in 0..6 {
        let cache = ex.cache();
        let out = ex.out("out");
        let mut command = Command::new(env!("CARGO_BIN_EXE_istio-canary"));
        let _own = common::own_cache(&mut command);
        let child = command
            .current_dir(ex.dir())
            .args([
                "compile",
                "--out",
                out.to_str().unwrap(),
                "--cache-dir",
                cache.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(round * 15));
        let r = prune(&ex, &["--max-size", "0"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let done = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&done.stderr);
        assert!(done.status.success(), "round {round}: {stderr}");
        assert!(!stderr.contains("did not match"), "round {round}: {stderr}");
        assert_eq!(read_tree(&out), reference, "round {round}");
    }
}

tests!(
    a_warm_compile_needs_no_istioctl_binary,
    a_render_is_stored_only_once_its_binary_reported_the_pinned_version,
    no_call_starts_after_a_failed_one,
    the_first_failure_in_request_order_is_reported_whatever_ends_first,
    a_corrupt_entry_is_ignored_said_and_rewritten,
    a_hostile_render_in_a_well_formed_entry_is_still_refused,
    a_cache_that_cannot_be_written_is_not_an_error,
    the_default_cache_is_under_xdg_cache_home_else_home,
    jobs_do_not_change_a_byte,
    quiet_prints_only_notes_and_warnings,
    a_fleet_writes_one_directory_per_policy_and_renders_shared_sides_once,
    a_fleet_refuses_two_policies_of_one_name_and_reports_the_first_error,
    progress_is_shown_on_a_terminal_only,
    prune_removes_the_least_recently_used_first_and_a_compile_marks_what_it_uses,
    prune_removes_killed_stores_temporary_files_and_nothing_it_did_not_write,
    prune_refusals_say_what_to_give,
    prune_during_compiles_never_hands_out_a_partial_entry,
);
