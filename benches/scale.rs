//! The scale benchmark: compiles synthetic large policies (thousands of namespaces in many waves)
//! with real-sized renders and prints, per stage, wall time, user CPU and peak memory, and the
//! size of the output. It prints figures and asserts nothing about them: no test is timed.
//!
//! `cargo bench --bench scale` runs the default cases; `cargo bench --bench scale -- 5000x20`
//! runs the cases named (`NAMESPACESxWAVES`). Each case runs in a child process of its own, so
//! its peak memory is its own. A case first compiles cold (`pipeline::compile`: the stand-in
//! istioctl of `fixtures/istioctl` renders Istio's recorded 1.13.5 and 1.14.1 output), then warm:
//! the two renders kept, plan, describe, layout and emit are timed one by one. Must not: write
//! anything but its temporary directory, or decide what is fast enough.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use istio_canary::render::{Istioctl, TagRequest};
use istio_canary::{describe, emit, layout, plan, policy, schema, VERSION};

const DEFAULT_CASES: &[(usize, usize)] = &[(3, 2), (5000, 20), (5000, 100), (10000, 20)];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, case] = args.as_slice() {
        if flag == "--one" {
            let Some((namespaces, waves)) = parse_case(case) else {
                eprintln!("--one takes NAMESPACESxWAVES, not {case}");
                std::process::exit(2);
            };
            if let Err(e) = one_case(namespaces, waves) {
                eprintln!("{e}");
                std::process::exit(1);
            }
            return;
        }
    }
    // `cargo bench` passes `--bench`; any NxW argument names a case.
    let named: Vec<(usize, usize)> = args.iter().filter_map(|a| parse_case(a)).collect();
    let cases = if named.is_empty() {
        DEFAULT_CASES.to_vec()
    } else {
        named
    };
    let Ok(me) = std::env::current_exe() else {
        eprintln!("cannot find the benchmark's own executable");
        std::process::exit(2);
    };
    println!(
        "{:<14} {:<9} {:>9} {:>9} {:>10}   output",
        "case", "stage", "wall", "user", "peak"
    );
    for (namespaces, waves) in cases {
        let status = Command::new(&me)
            .args(["--one", &format!("{namespaces}x{waves}")])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("case {namespaces}x{waves} failed");
            std::process::exit(1);
        }
    }
}

fn parse_case(text: &str) -> Option<(usize, usize)> {
    let (n, w) = text.split_once('x')?;
    let (n, w) = (n.parse().ok()?, w.parse().ok()?);
    (n >= w && w >= 1).then_some((n, w))
}

/// Wall time, user CPU and peak resident memory of one stage.
struct Measured {
    wall: Duration,
    user: Duration,
    peak_kib: u64,
}

fn user_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    Duration::from_secs(usage.ru_utime.tv_sec as u64)
        + Duration::from_micros(usage.ru_utime.tv_usec as u64)
}

/// Resets the peak resident set size (`VmHWM`) to the current one, where Linux allows it.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident set size since the last reset, in KiB (`VmHWM`, else `ru_maxrss`).
fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| {
            let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
            // SAFETY: as in `user_cpu`.
            let usage = unsafe {
                libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
                usage.assume_init()
            };
            usage.ru_maxrss as u64
        })
}

fn measure<T>(f: impl FnOnce() -> T) -> (T, Measured) {
    reset_peak();
    let (wall, user) = (Instant::now(), user_cpu());
    let out = f();
    let m = Measured {
        wall: wall.elapsed(),
        user: user_cpu() - user,
        peak_kib: peak_kib(),
    };
    (out, m)
}

fn row(case: &str, stage: &str, m: &Measured, output: &str) {
    println!(
        "{case:<14} {stage:<9} {:>8.3}s {:>8.3}s {:>7} MB   {output}",
        m.wall.as_secs_f64(),
        m.user.as_secs_f64(),
        m.peak_kib / 1024,
    );
}

/// The policy of a synthetic case: the example's upgrade (1.13.5 to 1.14.1) with `namespaces`
/// namespaces in `waves` waves of (nearly) equal size.
fn policy_text(fixtures: &Path, namespaces: usize, waves: usize) -> Result<String, String> {
    let standin = fixtures.join("istioctl");
    let digest = std::fs::read(standin.join("istioctl"))
        .map(|bytes| policy::sha256_hex(&bytes))
        .map_err(|e| format!("reading the stand-in istioctl: {e}"))?;
    let mut text = format!(
        "apiVersion: istio-canary.dev/v1alpha1\nkind: CanaryUpgrade\nmetadata:\n  name: scale\nspec:\n  istioOperator: iop.yaml\n  from:\n    version: 1.13.5\n  to:\n    version: 1.14.1\n  istioctl:\n    \"1.13.5\":\n      path: {0}/istioctl-1.13.5\n      sha256: {digest}\n    \"1.14.1\":\n      path: {0}/istioctl-1.14.1\n      sha256: {digest}\n  waves:\n",
        standin.display()
    );
    let per = namespaces.div_ceil(waves);
    for w in 0..waves {
        let names: Vec<String> = (w * per..((w + 1) * per).min(namespaces))
            .map(|i| format!("ns-{i:05}"))
            .collect();
        let _ = writeln!(
            text,
            "  - name: wave-{w:03}\n    namespaces: [{}]",
            names.join(", ")
        );
    }
    Ok(text)
}

fn one_case(namespaces: usize, waves: usize) -> Result<(), String> {
    let case = format!("{namespaces}x{waves}");
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let iop = std::fs::read(fixtures.join("example/iop.yaml")).map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("iop.yaml"), iop).map_err(|e| e.to_string())?;
    let policy_path = dir.path().join("canary.yaml");
    std::fs::write(&policy_path, policy_text(&fixtures, namespaces, waves)?)
        .map_err(|e| e.to_string())?;

    // Cold: the whole compile, istioctl included.
    // No render cache: the cold figures include every istioctl call.
    let config = istio_canary::CompileConfig::new(policy_path.clone(), dir.path().join("out"));
    let (compiled, m) = measure(|| istio_canary::compile(&config));
    let compiled = compiled.map_err(|e| e.to_string())?;
    let size = |name: &str| compiled.files.get(name).map_or(0, String::len);
    let output = format!(
        "{} files, PLAN.md {} bytes, plan.json {} bytes",
        compiled.files.len(),
        size("PLAN.md"),
        size(schema::PLAN_JSON)
    );
    row(&case, "cold", &m, &output);
    drop(compiled);

    // Warm: the renders made once, every stage after them timed.
    let pol = policy::load(&policy_path).map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(120);
    let render = |side: &policy::Release, tags: bool| {
        Istioctl::verify(&side.version, &side.istioctl, timeout)
            .and_then(|ctl| ctl.manifest_generate(side, &TagRequest::default_tag(tags)))
            .map_err(|e| e.to_string())
    };
    let old = render(&pol.from, pol.from_default_tag)?;
    let new = render(&pol.to, pol.default_tag)?;
    let mut stages: Vec<Measured> = Vec::new();
    let (planned, m) = measure(|| plan::plan(&pol, &[&old, &new]).map_err(Box::new));
    let planned = planned.map_err(|r| format!("refused: {r:?}"))?;
    row(
        &case,
        "plan",
        &m,
        &format!("{} phases", planned.phases.len()),
    );
    stages.push(m);
    let (texts, m) = measure(|| describe::describe(&planned));
    row(&case, "describe", &m, "");
    stages.push(m);
    let (bundle, m) = measure(|| layout::layout(&planned));
    let bundle = bundle.map_err(|e| e.to_string())?;
    row(&case, "layout", &m, "");
    stages.push(m);
    let context = emit::EmitContext {
        tool_version: VERSION.to_string(),
        gitops: pol.gitops.clone(),
    };
    let (files, m) = measure(|| emit::emit(&planned, &texts, &bundle, &context));
    files.map_err(|e| e.to_string())?;
    row(&case, "emit", &m, "");
    stages.push(m);
    // The stages run one after the other: their times add up, the peak is the highest.
    let total = Measured {
        wall: stages.iter().map(|m| m.wall).sum(),
        user: stages.iter().map(|m| m.user).sum(),
        peak_kib: stages.iter().map(|m| m.peak_kib).max().unwrap_or(0),
    };
    row(&case, "warm", &total, "plan + describe + layout + emit");
    Ok(())
}
