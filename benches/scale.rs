//! The scale benchmark: prints, for the cases of issue 13 section 4, how long the real binary
//! takes cold and warm next to the istioctl calls it made, and its peak memory; and, for synthetic
//! policies of thousands of namespaces, each stage's wall time, user CPU and peak memory. It
//! prints figures and asserts nothing about them: no test is timed.
//!
//! `cargo bench --bench scale` runs the targets table: the bundled example, a synthetic case
//! (5,000 namespaces in 20 waves over a 3-hop path, 1.13.5 to 1.16.2) and a fleet (500 policies
//! over 3 versions). Each command is the built `istio-canary` binary in a child process of its
//! own (so its peak memory is its own): `compile` cold (an empty render cache) and warm (the
//! cache filled), `compile --check` cold and warm, `verify`, and for one policy compile cold
//! again with `--jobs 8` (every istioctl call of the case at once). istioctl is the stand-in of
//! `fixtures/istioctl` behind a wrapper this benchmark writes into its temp dir: the wrapper
//! sleeps `--istioctl-delay SECONDS` (default 0.5) before each `manifest generate`, pads the
//! manifest with YAML comments to `--manifest-kib KIB` (default 900, the size of Istio's
//! recorded all-on render) and logs each call's start and end, so each row shows wall time, CPU
//! time (`wait4`: user + system, istioctl's included), peak memory and the number, sum and
//! maximum of the istioctl calls it made.
//!
//! `cargo bench --bench scale -- 5000x20` instead runs the stage breakdown of the cases named
//! (`NAMESPACESxWAVES`, one hop 1.13.5 to 1.14.1; `stages` names the default set): a compile
//! cold through `pipeline::compile`, then plan, describe, layout and emit timed one by one with
//! the renders kept. Must not: write anything but its temporary directory, or decide what is
//! fast enough.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    let mut named: Vec<(usize, usize)> = args.iter().filter_map(|a| parse_case(a)).collect();
    if args.iter().any(|a| a == "stages") {
        named.extend_from_slice(DEFAULT_CASES);
    }
    if named.is_empty() {
        let wrapper = match wrapper_options(&args) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        };
        if let Err(e) = targets(&wrapper) {
            eprintln!("{e}");
            std::process::exit(1);
        }
        return;
    }
    let Ok(me) = std::env::current_exe() else {
        eprintln!("cannot find the benchmark's own executable");
        std::process::exit(2);
    };
    println!(
        "{:<14} {:<9} {:>9} {:>9} {:>10}   output",
        "case", "stage", "wall", "user", "peak"
    );
    for (namespaces, waves) in named {
        let status = Command::new(&me)
            .args(["--one", &format!("{namespaces}x{waves}")])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("case {namespaces}x{waves} failed");
            std::process::exit(1);
        }
    }
}

/// How the istioctl wrapper behaves: the delay before each render and the manifest's size.
struct Wrapper {
    delay: f64,
    manifest_kib: usize,
}

fn wrapper_options(args: &[String]) -> Result<Wrapper, String> {
    let mut w = Wrapper {
        delay: 0.5,
        manifest_kib: 900,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} takes a value"))
                .cloned()
        };
        match a.as_str() {
            "--istioctl-delay" => {
                let v = value(a)?;
                w.delay = v
                    .parse()
                    .ok()
                    .filter(|d: &f64| d.is_finite() && *d >= 0.0)
                    .ok_or_else(|| format!("--istioctl-delay takes seconds, not {v}"))?;
            }
            "--manifest-kib" => {
                let v = value(a)?;
                w.manifest_kib = v
                    .parse()
                    .map_err(|_| format!("--manifest-kib takes a number, not {v}"))?;
            }
            _ => {}
        }
    }
    Ok(w)
}

/// What one run of the binary took: wall time, peak resident memory (the process's own, and
/// its children's when higher: istioctl's on a cold run) and the istioctl calls it made.
struct Run {
    wall: Duration,
    /// User and system CPU time (its istioctl children's included).
    cpu: Duration,
    peak_kib: u64,
    calls: Vec<Duration>,
}

impl Run {
    /// Several runs one after the other (a fleet's `verify`, one per policy).
    fn add(self, other: Run) -> Run {
        let mut calls = self.calls;
        calls.extend(other.calls);
        Run {
            wall: self.wall + other.wall,
            cpu: self.cpu + other.cpu,
            peak_kib: self.peak_kib.max(other.peak_kib),
            calls,
        }
    }
}

/// A temp dir laid out for the targets: the wrapper, its call log, and the cases' inputs.
struct Bench {
    dir: tempfile::TempDir,
    fixtures: PathBuf,
    /// The wrapper's sha256 (every `istioctl-<version>` is a link to the one wrapper).
    digest: String,
    log: PathBuf,
}

impl Bench {
    fn new(wrapper: &Wrapper) -> Result<Bench, String> {
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let bin = dir.path().join("istioctl");
        std::fs::create_dir(&bin).map_err(|e| e.to_string())?;
        let log = dir.path().join("calls.log");
        let pad = dir.path().join("padding.yaml");
        let line = "# padding: istio-canary's benchmark makes the stand-in's manifest real-sized\n";
        std::fs::write(&pad, line.repeat(wrapper.manifest_kib * 1024 / line.len()))
            .map_err(|e| e.to_string())?;
        // The stand-in takes its version from its name, so the wrapper runs the stand-in link of
        // its own name; the log line is written after the call, in one append.
        let script = format!(
            "#!/bin/sh\n# istio-canary's benchmark: the stand-in istioctl, slowed down and padded.\nstart=$(date +%s%N)\ncase \"$1\" in manifest) sleep {delay} ;; esac\n\"{standin}/${{0##*/}}\" \"$@\"\ncode=$?\ncase \"$1\" in manifest) [ $code -eq 0 ] && cat \"{pad}\" ;; esac\necho \"$start $(date +%s%N)\" >> \"{log}\"\nexit $code\n",
            delay = wrapper.delay,
            standin = fixtures.join("istioctl").display(),
            pad = pad.display(),
            log = log.display(),
        );
        let script_path = bin.join("wrapper");
        std::fs::write(&script_path, &script).map_err(|e| e.to_string())?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        for version in VERSIONS {
            std::os::unix::fs::symlink("wrapper", bin.join(format!("istioctl-{version}")))
                .map_err(|e| e.to_string())?;
        }
        Ok(Bench {
            digest: policy::sha256_hex(script.as_bytes()),
            dir,
            fixtures,
            log,
        })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A case's directory, holding the example's IstioOperator spec.
    fn case_dir(&self, name: &str) -> Result<PathBuf, String> {
        let dir = self.path(name);
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        std::fs::copy(self.fixtures.join("example/iop.yaml"), dir.join("iop.yaml"))
            .map_err(|e| e.to_string())?;
        Ok(dir)
    }

    /// The `spec.istioctl` pins of `versions`, at the wrapper.
    fn pins(&self, versions: &[&str]) -> String {
        versions
            .iter()
            .map(|v| {
                format!(
                    "    \"{v}\": {{path: {}, sha256: {}}}\n",
                    self.path("istioctl")
                        .join(format!("istioctl-{v}"))
                        .display(),
                    self.digest
                )
            })
            .collect()
    }

    /// Runs the binary with `args` in `cwd`; fails when it exits with another code than `code`.
    fn run(&self, cwd: &Path, args: &[&str], code: i32) -> Result<Run, String> {
        let _ = std::fs::remove_file(&self.log);
        let stderr = self.path("stderr.txt");
        let file = std::fs::File::create(&stderr).map_err(|e| e.to_string())?;
        let start = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_istio-canary"))
            .args(args)
            .current_dir(cwd)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| format!("starting istio-canary: {e}"))?;
        let (status, usage) = wait4(child.id()).map_err(|e| format!("waiting: {e}"))?;
        let wall = start.elapsed();
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == code) {
            return Err(format!(
                "istio-canary {} exited with {status:#x}, not {code}: {}",
                args.join(" "),
                std::fs::read_to_string(&stderr).unwrap_or_default()
            ));
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let calls = log
            .lines()
            .filter_map(|l| {
                let (a, b) = l.split_once(' ')?;
                let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
                Some(Duration::from_nanos(b.saturating_sub(a)))
            })
            .collect();
        let time = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        Ok(Run {
            wall,
            cpu: time(usage.ru_utime) + time(usage.ru_stime),
            peak_kib: usage.ru_maxrss as u64,
            calls,
        })
    }
}

/// Every version a case pins.
const VERSIONS: &[&str] = &["1.13.5", "1.14.1", "1.15.3", "1.16.2", "1.27.0", "1.28.0"];

/// Waits for `pid` and returns its wait status and resource usage (its peak resident memory,
/// or its children's when higher).
fn wait4(pid: u32) -> Result<(i32, libc::rusage), String> {
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: pid is our own child, not yet reaped; wait4 fills the status and the struct.
    let got = unsafe { libc::wait4(pid as i32, &mut status, 0, usage.as_mut_ptr()) };
    if got != pid as i32 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // SAFETY: wait4 succeeded, so it filled the struct.
    Ok((status, unsafe { usage.assume_init() }))
}

fn targets(wrapper: &Wrapper) -> Result<(), String> {
    let bench = Bench::new(wrapper)?;
    println!(
        "istioctl: the stand-in, {} s added to each manifest generate, manifest padded to {} KiB",
        wrapper.delay, wrapper.manifest_kib
    );
    println!(
        "{:<26} {:<13} {:>9} {:>9} {:>6} {:>10} {:>10} {:>9}",
        "case", "command", "wall", "cpu", "calls", "calls sum", "calls max", "peak"
    );
    // The bundled example, its pins pointed at the wrapper.
    let example = bench.case_dir("example")?;
    let standin =
        std::fs::read(bench.fixtures.join("istioctl/istioctl")).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(bench.fixtures.join("example/canary.yaml"))
        .map_err(|e| e.to_string())?
        .replace(
            "../istioctl/istioctl-",
            &format!("{}/istioctl-", bench.path("istioctl").display()),
        )
        .replace(&policy::sha256_hex(&standin), &bench.digest);
    std::fs::write(example.join("canary.yaml"), text).map_err(|e| e.to_string())?;
    case(&bench, "example", &example, &["--policy", "canary.yaml"], 1)?;

    // The synthetic case: 5,000 namespaces in 20 waves, 1.13.5 to 1.16.2 through 1.14.1 and
    // 1.15.3 (the pinned versions chain it).
    let synthetic = bench.case_dir("synthetic")?;
    let mut text = format!(
        "apiVersion: istio-canary.dev/v1alpha1\nkind: CanaryUpgrade\nmetadata:\n  name: synthetic\nspec:\n  istioOperator: iop.yaml\n  from:\n    version: 1.13.5\n  to:\n    version: 1.16.2\n  istioctl:\n{}  waves:\n",
        bench.pins(&["1.13.5", "1.14.1", "1.15.3", "1.16.2"])
    );
    text.push_str(&waves(0, 5000, 20));
    std::fs::write(synthetic.join("canary.yaml"), text).map_err(|e| e.to_string())?;
    case(
        &bench,
        "5000 ns, 20 waves, 3 hops",
        &synthetic,
        &["--policy", "canary.yaml"],
        1,
    )?;

    // The fleet: 500 policies of 10 namespaces in 2 waves, half 1.14.1 to 1.15.3 and half
    // 1.15.3 to 1.16.2, sharing one IstioOperator spec.
    let fleet = bench.case_dir("fleet")?;
    let policies = 500;
    for i in 0..policies {
        let (from, to) = [("1.14.1", "1.15.3"), ("1.15.3", "1.16.2")][i % 2];
        let dir = fleet.join(format!("cluster-{i:03}"));
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let mut text = format!(
            "apiVersion: istio-canary.dev/v1alpha1\nkind: CanaryUpgrade\nmetadata:\n  name: cluster-{i:03}\nspec:\n  istioOperator: ../iop.yaml\n  from:\n    version: {from}\n  to:\n    version: {to}\n  istioctl:\n{}  waves:\n",
            bench.pins(&[from, to])
        );
        text.push_str(&waves(i * 10, 10, 2));
        std::fs::write(dir.join("canary.yaml"), text).map_err(|e| e.to_string())?;
    }
    case(
        &bench,
        "fleet: 500 policies",
        &fleet,
        &["--policies", "."],
        policies,
    )?;
    Ok(())
}

/// The `waves:` entries of `count` namespaces (`ns-<first>` on) in `waves` waves.
fn waves(first: usize, count: usize, waves: usize) -> String {
    let per = count.div_ceil(waves);
    let mut text = String::new();
    for w in 0..waves {
        let names: Vec<String> = (first + w * per..first + ((w + 1) * per).min(count))
            .map(|i| format!("ns-{i:05}"))
            .collect();
        let _ = writeln!(
            text,
            "  - name: wave-{w:03}\n    namespaces: [{}]",
            names.join(", ")
        );
    }
    text
}

/// One case: compile cold and warm, `compile --check` cold and warm, and `verify` (of each
/// policy's output, one process each, for a fleet of `outputs` policies).
fn case(
    bench: &Bench,
    name: &str,
    dir: &Path,
    policy: &[&str],
    outputs: usize,
) -> Result<(), String> {
    let out = dir.join("out");
    let (cache, fresh) = (dir.join("cache"), dir.join("cache-check"));
    let (out, cache, fresh) = (
        out.to_string_lossy().into_owned(),
        cache.to_string_lossy().into_owned(),
        fresh.to_string_lossy().into_owned(),
    );
    let compile = |cache: &str, check: bool| {
        let mut args = vec!["compile", "--out", &out, "--cache-dir", cache, "--quiet"];
        args.extend_from_slice(policy);
        if check {
            args.push("--check");
        }
        bench.run(dir, &args, 0)
    };
    run_row(name, "compile cold", &compile(&cache, false)?);
    run_row(name, "compile warm", &compile(&cache, false)?);
    run_row(name, "--check cold", &compile(&fresh, true)?);
    run_row(name, "--check warm", &compile(&cache, true)?);
    if outputs == 1 {
        // Cold again with as many jobs as the case has istioctl calls: every render at once
        // (what "cold within the slowest call plus warm" assumes; on fewer cores than calls,
        // CPU-bound renders would share them).
        let wide = dir.join("cache-wide").to_string_lossy().into_owned();
        let mut args = vec!["compile", "--out", &out, "--cache-dir", &wide, "--quiet"];
        args.extend_from_slice(policy);
        args.extend_from_slice(&["--jobs", "8"]);
        run_row(name, "cold --jobs 8", &bench.run(dir, &args, 0)?);
    }
    let verify = if outputs == 1 {
        bench.run(dir, &["verify", &out], 0)?
    } else {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&out)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        names.sort();
        let mut total: Option<Run> = None;
        for each in names {
            let run = bench.run(dir, &["verify", &each.to_string_lossy()], 0)?;
            total = Some(match total {
                Some(t) => t.add(run),
                None => run,
            });
        }
        total.ok_or("the fleet wrote no output")?
    };
    run_row(name, "verify", &verify);
    Ok(())
}

fn run_row(case: &str, command: &str, run: &Run) {
    let sum: Duration = run.calls.iter().sum();
    let max = run.calls.iter().max().copied().unwrap_or_default();
    println!(
        "{case:<26} {command:<13} {:>8.3}s {:>8.3}s {:>6} {:>9.3}s {:>9.3}s {:>6} MB",
        run.wall.as_secs_f64(),
        run.cpu.as_secs_f64(),
        run.calls.len(),
        sum.as_secs_f64(),
        max.as_secs_f64(),
        run.peak_kib / 1024,
    );
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
    text.push_str(&self::waves(0, namespaces, waves));
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
    let (planned, m) = measure(|| {
        plan::plan(&pol, &[&old, &new], istio_canary::jobs::available()).map_err(Box::new)
    });
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
    let (bundle, m) = measure(|| layout::layout(&planned, istio_canary::jobs::available()));
    let bundle = bundle.map_err(|e| e.to_string())?;
    row(&case, "layout", &m, "");
    stages.push(m);
    let context = emit::EmitContext {
        tool_version: VERSION.to_string(),
        gitops: pol.gitops.clone(),
        jobs: istio_canary::jobs::available(),
    };
    let (files, m) = measure(|| emit::emit(&planned, &texts, bundle, &context));
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
