//! Rendering each revision with its vendored istioctl: the only process I/O in the tool.
//!
//! Owns: `render_all`, which turns a list of render requests into renders in request order
//! (looked up in the render cache first, identical requests rendered once, the others on at most
//! `--jobs` threads, the error of the first failing call reported, the cache's stores written
//! while the caller's continuation runs); checking a binary's sha256 against its pin before it
//! ever runs (read as a regular file of at most `yamlin::ISTIOCTL_LIMIT`, and only when a render
//! needs it: a cached render reads no binary), checking the version it reports (beside its
//! renders, whose output is stored only once the check passed), preparing the IstioOperator
//! spec for one revision (`spec.revision`, `values.revisionTags`, `values.defaultRevision`) and
//! the cache key of the call, running `istioctl manifest generate` with an argument vector
//! (never a shell), no cluster credentials and a timeout, and parsing what it printed (or what
//! the cache holds) through the same gate; istioctl's process group (killed whole when a call
//! ends, so nothing it started is left running), the bounds on its output, and SIGINT/SIGTERM
//! while it runs. Must not: decide what goes in which phase, print (progress goes to a
//! callback), or write anywhere but its own temp dirs and, through `cache`, the cache directory.

use std::collections::HashMap;
use std::io::Read;
use std::num::NonZeroUsize;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rustix::process::{kill_process_group, waitid, Pid, Signal, WaitId, WaitIdOptions};
use semver::Version;
use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::cache::{self, Cache};
use crate::error::{io_reason, Error, Location, Result};
use crate::istio::Revision;
use crate::jobs;
use crate::manifest::{parse_manifest, Object};
use crate::policy::{hex, Pin, Release};
use crate::yamlin;

/// The sha256 of the binary at `path`, read through `yamlin::open_regular` (a regular file only,
/// never blocking) and hashed as it is read; `None` when it is over `yamlin::ISTIOCTL_LIMIT`,
/// which its size tells before a byte is read.
fn hash_pinned(path: &Path) -> std::io::Result<Option<String>> {
    let file = yamlin::open_regular(path)?;
    if file.metadata()?.len() > yamlin::ISTIOCTL_LIMIT {
        return Ok(None);
    }
    let mut hasher = Sha256::new();
    // A file that grows while it is read is hashed only up to the limit, and so mismatches.
    std::io::copy(&mut file.take(yamlin::ISTIOCTL_LIMIT), &mut hasher)?;
    Ok(Some(hex(&hasher.finalize())))
}

/// How many lines of istioctl's stderr an error shows.
const STDERR_TAIL_LINES: usize = 20;

/// The most of istioctl's stdout that is read: the largest real render is about 1 MB.
pub const STDOUT_LIMIT: usize = 64 << 20;
/// The most of istioctl's stderr that is read.
pub const STDERR_LIMIT: usize = 1 << 20;

/// How often a running call checks for its exit, its deadline and signals.
const POLL: Duration = Duration::from_millis(5);

/// What one render produced.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub version: Version,
    pub revision: Revision,
    pub istio_namespace: String,
    pub objects: Vec<Object>,
}

/// Which tag objects a render should include.
#[derive(Debug, Clone, Default)]
pub struct TagRequest {
    /// `values.revisionTags`, e.g. `["default"]`.
    pub revision_tags: Vec<String>,
    /// Set `values.defaultRevision` to the rendered revision (renders `istiod-default-validator`).
    pub default_revision: bool,
}

impl TagRequest {
    /// The default tag and validator for the rendered revision when `on`, nothing otherwise.
    pub fn default_tag(on: bool) -> TagRequest {
        if on {
            TagRequest {
                revision_tags: vec!["default".to_string()],
                default_revision: true,
            }
        } else {
            TagRequest::default()
        }
    }
}

/// A vendored istioctl whose digest and version have been checked.
#[derive(Debug)]
pub struct Istioctl {
    version: Version,
    /// As the user wrote it (relative to the working directory), for messages.
    shown: PathBuf,
    /// Absolute, for running from the temp dir.
    absolute: PathBuf,
    timeout: Duration,
    /// The pin's entry in the policy, for errors about the binary itself.
    pin_location: Option<Location>,
}

struct Output {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Istioctl {
    /// Checks the binary's sha256 against the pin (before running it), then the version it
    /// reports.
    pub fn verify(version: &Version, pin: &Pin, timeout: Duration) -> Result<Istioctl> {
        let istioctl = Istioctl::pinned(version, pin, timeout)?;
        istioctl.check_version()?;
        Ok(istioctl)
    }

    /// The binary at the pin's path once its sha256 is the pin's: it may run from now on. Reads
    /// the binary; runs nothing.
    fn pinned(version: &Version, pin: &Pin, timeout: Duration) -> Result<Istioctl> {
        let at_pin = |mut err: Error| {
            err.location.clone_from(&pin.location);
            err
        };
        let actual = hash_pinned(&pin.path).map_err(|e| {
            at_pin(Error::new(format!(
                "cannot read istioctl {version} at {}: {}",
                pin.path.display(),
                io_reason(&e)
            ))
            .with_help(format!("vendor istioctl {version} at that path (see README: \"Vendoring istioctl\"), or fix spec.istioctl")))
        })?;
        let Some(actual) = actual else {
            return Err(at_pin(
                Error::new(format!(
                    "istioctl {version} at {} is over its limit of {}",
                    pin.path.display(),
                    yamlin::size(yamlin::ISTIOCTL_LIMIT)
                ))
                .with_help(
                    "a real istioctl is about 100 MB; check that spec.istioctl names the binary",
                ),
            ));
        };
        if actual != pin.sha256 {
            return Err(at_pin(Error::new(format!(
                "sha256 mismatch for istioctl {version} at {}:\n  expected {}\n  actual   {actual}",
                pin.path.display(),
                pin.sha256
            ))
            .with_help("the file is not the binary that was pinned; if you replaced it on purpose, review it and update spec.istioctl with its new sha256sum")));
        }
        let absolute = std::path::absolute(&pin.path)
            .map_err(|e| Error::io("cannot resolve", &pin.path, &e))?;
        Ok(Istioctl {
            version: version.clone(),
            shown: pin.path.clone(),
            absolute,
            timeout,
            pin_location: pin.location.clone(),
        })
    }

    /// Runs `istioctl version` and requires it to report the pinned version.
    fn check_version(&self) -> Result<()> {
        let version = &self.version;
        let workdir = workdir()?;
        let args = ["version", "--remote=false"];
        let out = self.run(&args, workdir.path())?;
        let reported = parse_version_output(&String::from_utf8_lossy(&out.stdout));
        match reported {
            Some(v) if &v == version => Ok(()),
            Some(v) => Err(self.at_pin(
                Error::new(format!(
                    "{} reports version {v}, but the policy pins it for {version}",
                    self.shown.display()
                ))
                .with_help("point spec.istioctl at the binary of the right release"),
            )),
            None => Err(self.at_pin(Error::new(format!(
                "{} did not report a version for `{}`{}",
                self.shown.display(),
                self.command_line(&args),
                stderr_tail(&out.stderr)
            )))),
        }
    }

    fn command_line(&self, args: &[&str]) -> String {
        command_line(&self.shown, args)
    }

    /// Runs the binary with `args` in `workdir`: no shell, no inherited environment beyond PATH,
    /// no kubeconfig, stdin closed, in its own process group. The whole group is killed when the
    /// call ends (success, error, timeout, too much output, SIGINT/SIGTERM), and every read ends
    /// by the deadline.
    fn run(&self, args: &[&str], workdir: &Path) -> Result<Output> {
        let deadline = Instant::now() + self.timeout;
        install_signal_handlers()?;
        let mut cmd = Command::new(&self.absolute);
        cmd.args(args)
            .current_dir(workdir)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", workdir)
            .env("KUBECONFIG", workdir.join("no-kubeconfig"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // From here until the group is gone, SIGINT and SIGTERM only raise a flag.
        let _busy = Busy::start();
        let child = cmd.spawn().map_err(|e| self.spawn_error(&e))?;
        let mut group = Group::new(child);
        let (tx, rx) = mpsc::channel();
        if let Some(out) = group.child.stdout.take() {
            read_capped(out, Stream::Stdout, tx.clone())?;
        }
        if let Some(err) = group.child.stderr.take() {
            read_capped(err, Stream::Stderr, tx)?;
        }
        let (mut stdout, mut stderr, mut status) = (None, None, None);
        loop {
            if let Some(signal) = received_signal() {
                group.stop();
                return Err(interrupted(signal));
            }
            if status.is_none() && group.leader_exited()? {
                status = Some(group.stop_and_reap()?);
            }
            match (status, stdout.take(), stderr.take()) {
                (Some(status), Some(stdout), Some(stderr)) => {
                    return Ok(Output {
                        status,
                        stdout,
                        stderr,
                    })
                }
                (_, out, err) => (stdout, stderr) = (out, err),
            }
            let now = Instant::now();
            if now >= deadline {
                group.stop();
                return Err(self.deadline_error(args, status));
            }
            let wait = (deadline - now).min(POLL);
            match rx.recv_timeout(wait) {
                Ok((stream, Ok(bytes))) => match stream {
                    Stream::Stdout => stdout = Some(bytes),
                    Stream::Stderr => stderr = Some(bytes),
                },
                Ok((stream, Err(Unread::TooMuch))) => {
                    group.stop();
                    return Err(Error::new(format!(
                        "istioctl {} printed more than {} on {} and was stopped: `{}`",
                        self.version,
                        stream.limit_text(),
                        stream.name(),
                        self.command_line(args)
                    ))
                    .with_help(format!(
                        "istio-canary reads at most {} of istioctl's stdout and {} of its stderr (a real render is about 1 MB); check that spec.istioctl points at an istioctl release binary",
                        Stream::Stdout.limit_text(),
                        Stream::Stderr.limit_text()
                    )));
                }
                Ok((stream, Err(Unread::Failed(e)))) => {
                    group.stop();
                    return Err(Error::new(format!(
                        "cannot read the {} of istioctl {}: {}: `{}`",
                        stream.name(),
                        self.version,
                        io_reason(&e),
                        self.command_line(args)
                    )));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // Both streams are read; only the leader's exit is awaited.
                Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            }
        }
    }

    /// Why the binary could not be started.
    fn spawn_error(&self, e: &std::io::Error) -> Error {
        let shown = self.shown.display();
        let (why, help) = match e.kind() {
            std::io::ErrorKind::PermissionDenied => (
                "it is not executable".to_string(),
                format!("make it executable: chmod +x {shown}"),
            ),
            // The file was read for its digest, so what is missing is its interpreter.
            std::io::ErrorKind::NotFound => (
                "the interpreter named on its #! line was not found".to_string(),
                "vendor the istioctl release binary, or install what the script needs".to_string(),
            ),
            _ => (
                io_reason(e),
                format!("check that {shown} is an istioctl binary for this machine"),
            ),
        };
        self.at_pin(
            Error::new(format!(
                "cannot run istioctl {} at {shown}: {why}",
                self.version
            ))
            .with_help(help),
        )
    }

    /// The deadline passed: istioctl still ran, or it exited but something it started outside
    /// its process group kept its output open.
    fn deadline_error(&self, args: &[&str], status: Option<ExitStatus>) -> Error {
        let limit = self.timeout.as_secs_f64();
        match status {
            None => Error::new(format!(
                "istioctl {} did not finish within {limit}s and was stopped: `{}`",
                self.version,
                self.command_line(args)
            ))
            .with_help("raise the limit with --istioctl-timeout SECONDS if this binary is just slow"),
            Some(status) => Error::new(format!(
                "istioctl {} exited ({}), but its output was still open after {limit}s: `{}`",
                self.version,
                describe_status(status),
                self.command_line(args)
            ))
            .with_help("a process it started left its process group (setsid) and holds its stdout or stderr; istio-canary stopped the group but cannot stop that process: vendor the istioctl release binary rather than a wrapper"),
        }
    }

    /// Points an error about the pinned binary itself at the pin in the policy.
    fn at_pin(&self, mut err: Error) -> Error {
        err.location.clone_from(&self.pin_location);
        err
    }

    /// `istioctl manifest generate -f <spec>` for one revision, uncached.
    pub fn manifest_generate(&self, side: &Release, tags: &TagRequest) -> Result<Rendered> {
        let job = Job::new(side, tags)?;
        let stdout = self.generate(&job)?;
        job.parse(&stdout, None)
    }

    /// Runs `istioctl manifest generate` on the job's spec, in a fresh temp dir; istioctl's
    /// stdout when it exits 0.
    fn generate(&self, job: &Job) -> Result<Vec<u8>> {
        let workdir = workdir()?;
        let spec_path = workdir.path().join(&job.spec_name);
        std::fs::write(&spec_path, &job.spec_text)
            .map_err(|e| Error::io("cannot write", &spec_path, &e))?;
        let args = job.args();
        let out = self.run(&args, workdir.path())?;
        if !out.status.success() {
            return Err(Error::new(format!(
                "istioctl {} failed ({}): `{}`{}",
                self.version,
                describe_status(out.status),
                self.command_line(&args),
                stderr_tail(&out.stderr)
            )));
        }
        Ok(out.stdout)
    }
}

/// One render to make: a release (its version, revision, IstioOperator spec and pinned istioctl)
/// and the tag objects to include. A pipeline renders a list of them (two sides today, one per
/// release of a multi-hop path, every side of every policy of a fleet).
#[derive(Debug, Clone)]
pub struct RenderRequest<'a> {
    pub release: &'a Release,
    pub tags: TagRequest,
}

/// How `render_all` runs.
pub struct RenderOptions<'a> {
    /// The limit of each istioctl call.
    pub timeout: Duration,
    /// At most this many istioctl calls run at once.
    pub jobs: NonZeroUsize,
    /// Where renders are looked up before istioctl runs, and stored after.
    pub cache: &'a Cache,
    /// Told when an istioctl call starts and ends (cli shows it on a terminal).
    pub progress: &'a (dyn Fn(&Progress) + Sync),
}

/// An istioctl call starting or ending, for a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// `checking istioctl 1.14.1` or `rendering 1.14.1 (1-14-1)`.
    pub what: String,
    /// Whether the call has ended.
    pub finished: bool,
    /// Calls ended so far, and calls this run makes.
    pub done: usize,
    pub total: usize,
}

/// What the calls of one `render_all` were: how many renders came from the cache and how many
/// istioctl made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderCounts {
    pub cached: usize,
    pub rendered: usize,
}

/// One distinct render: the spec handed to istioctl, its arguments and the cache key they make.
#[derive(Debug, Clone)]
struct Job {
    version: Version,
    revision: Revision,
    istio_namespace: String,
    pin: Pin,
    spec_name: String,
    spec_text: String,
    key: cache::Key,
}

impl Job {
    fn new(release: &Release, tags: &TagRequest) -> Result<Job> {
        let spec_name = format!("iop-{}.yaml", release.revision);
        let spec = operator_for(&release.operator.document, &release.revision, tags);
        let spec_text = crate::yamlout::mapping_to_string(&spec)
            .map_err(|e| e.within("cannot serialize the IstioOperator spec"))?;
        let args = ["manifest", "generate", "-f", spec_name.as_str()].join("\0");
        // The pin is the binary's identity (a binary is hashed only when it is about to run);
        // the version too, since one script may stand in for several versions.
        let key = cache::key(&[
            release.istioctl.sha256.as_bytes(),
            release.version.to_string().as_bytes(),
            spec_text.as_bytes(),
            args.as_bytes(),
        ]);
        Ok(Job {
            version: release.version.clone(),
            revision: release.revision.clone(),
            istio_namespace: release.operator.istio_namespace.clone(),
            pin: release.istioctl.clone(),
            spec_name,
            spec_text,
            key,
        })
    }

    fn args(&self) -> [&str; 4] {
        ["manifest", "generate", "-f", self.spec_name.as_str()]
    }

    fn command_line(&self) -> String {
        command_line(&self.pin.path, &self.args())
    }

    fn describe(&self) -> String {
        format!("rendering {} ({})", self.version, self.revision)
    }

    /// istioctl's stdout, from a call or from the cache, read into a render: the same checks
    /// either way (UTF-8, the YAML gate, the manifest reader).
    fn parse(&self, stdout: &[u8], cached: Option<&Path>) -> Result<Rendered> {
        let origin = match cached {
            Some(dir) => format!(" (read from the render cache {})", dir.display()),
            None => String::new(),
        };
        let text = std::str::from_utf8(stdout).map_err(|_| {
            Error::new(format!(
                "istioctl {} printed output that is not UTF-8: `{}`{origin}",
                self.version,
                self.command_line()
            ))
        })?;
        let source = format!("output of `{}`{origin}", self.command_line());
        let objects = parse_manifest(text, &source).map_err(|e| {
            e.within(format!(
                "istioctl {} printed invalid manifest YAML",
                self.version
            ))
        })?;
        Ok(Rendered {
            version: self.version.clone(),
            revision: self.revision.clone(),
            istio_namespace: self.istio_namespace.clone(),
            objects,
        })
    }
}

/// A pinned binary to check before it runs: version, path and digest.
type PinId = (Version, PathBuf, String);

fn pin_id(job: &Job) -> PinId {
    (
        job.version.clone(),
        job.pin.path.clone(),
        job.pin.sha256.clone(),
    )
}

/// One istioctl call, or one cached render to read, of `render_all`'s pool.
#[derive(Debug, Clone, Copy)]
enum Call {
    /// `istioctl version` of the pin at this index.
    Version(usize),
    /// The job at this index: its cached render read, or istioctl run for it.
    Render(usize),
}

/// What one call of the pool gave: a version check passed, or a render with the stdout to store
/// when it came from istioctl.
enum Done {
    Checked,
    Rendered(Rendered, Option<Vec<u8>>),
}

/// Renders every request, then hands the renders (in request order) and how many came from the
/// cache to `then`, and returns what it returns. Requests that make the same spec for the same
/// pin are rendered once. A render found in the cache starts no process and reads no binary. The
/// binaries of the other renders are hashed and checked against their pins before any of them
/// runs; then the version checks and the renders run in one pool of at most `jobs` threads, the
/// checks first (a pinned binary is the one the user reviewed, so it may render while it reports
/// its version: no render waits for a check). A render is stored in the cache only once its
/// binary has reported the pinned version, and the stores (each fsynced) are written on a thread
/// of their own while `then` runs. Every render, cached or not, is parsed the same way. When
/// several fail, the error is the first in the pool's order (a failed check before a failed
/// render, each in request order): every call before a failed one runs, none after it starts.
pub fn render_all<T>(
    requests: &[RenderRequest],
    options: &RenderOptions,
    then: impl FnOnce(Vec<Arc<Rendered>>, RenderCounts) -> Result<T>,
) -> Result<T> {
    let mut jobs: Vec<Job> = Vec::new();
    let mut job_of_key: HashMap<cache::Key, usize> = HashMap::new();
    let mut job_of_request = Vec::with_capacity(requests.len());
    for request in requests {
        let job = Job::new(request.release, &request.tags)?;
        let at = *job_of_key.entry(job.key.clone()).or_insert_with(|| {
            jobs.push(job);
            jobs.len() - 1
        });
        job_of_request.push(at);
    }
    let cached: Vec<Option<Vec<u8>>> = jobs
        .iter()
        .map(|job| match options.cache.get(&job.key) {
            cache::Lookup::Hit(bytes) => Some(bytes),
            cache::Lookup::Miss | cache::Lookup::Corrupt => None,
        })
        .collect();
    // The distinct pins of the renders to make, in request order, each with its first job; and
    // each job's pin (none for a cached render).
    let mut pins: Vec<PinId> = Vec::new();
    let mut pin_at: HashMap<PinId, usize> = HashMap::new();
    let mut first_job_of_pin = Vec::new();
    let mut pin_of_job: Vec<Option<usize>> = Vec::with_capacity(jobs.len());
    for (i, (job, hit)) in jobs.iter().zip(&cached).enumerate() {
        if hit.is_some() {
            pin_of_job.push(None);
            continue;
        }
        let at = *pin_at.entry(pin_id(job)).or_insert_with(|| {
            pins.push(pin_id(job));
            first_job_of_pin.push(i);
            pins.len() - 1
        });
        pin_of_job.push(Some(at));
    }
    // The pool's calls: the version checks (short), then every job, each in request order.
    let calls: Vec<Call> = (0..pins.len())
        .map(Call::Version)
        .chain((0..jobs.len()).map(Call::Render))
        .collect();
    let misses = cached.iter().filter(|c| c.is_none()).count();
    // No binary runs before every one that will has matched its pin.
    let pinned = jobs::map(&pins, options.jobs, |p, id| {
        let pin = &jobs[first_job_of_pin[p]].pin;
        Istioctl::pinned(&id.0, pin, options.timeout)
    });
    check_interrupted()?;
    let pinned: Vec<Istioctl> = pinned.into_iter().collect::<Result<_>>()?;
    let counter = Counter {
        done: AtomicUsize::new(0),
        total: pins.len() + misses,
        progress: options.progress,
    };
    let first_failed = AtomicUsize::new(usize::MAX);
    let results = jobs::map(&calls, options.jobs, |c, &call| {
        if c > first_failed.load(Ordering::SeqCst) {
            // An earlier call failed: its error is the one reported.
            return None;
        }
        let result = match call {
            Call::Version(p) => match pinned.get(p) {
                None => Err(Error::new("internal error: a check without its istioctl")),
                Some(istioctl) => counter
                    .run(format!("checking istioctl {}", istioctl.version), || {
                        istioctl.check_version()
                    })
                    .map(|()| Done::Checked),
            },
            Call::Render(i) => render_one(&jobs[i], cached[i].as_deref(), options, || {
                let istioctl = pin_of_job[i].and_then(|p| pinned.get(p));
                let istioctl = istioctl
                    .ok_or_else(|| Error::new("internal error: a render without its istioctl"))?;
                counter.run(jobs[i].describe(), || istioctl.generate(&jobs[i]))
            }),
        };
        if result.is_err() {
            first_failed.fetch_min(c, Ordering::SeqCst);
        }
        Some(result)
    });
    check_interrupted()?;
    drop(cached);
    // Every call up to the first failure ran; the renders of binaries that reported their
    // version are stored, even when a later call failed. The checks come first in `calls`, so
    // `checked` is complete before the first render is read.
    let mut checked = vec![false; pins.len()];
    let mut renders: Vec<Option<Arc<Rendered>>> = jobs.iter().map(|_| None).collect();
    let mut stores: Vec<(&cache::Key, Vec<u8>)> = Vec::new();
    let mut failure = None;
    for (call, result) in calls.iter().zip(results) {
        match (call, result) {
            // Skipped after a failure: the failure is what is reported.
            (_, None) if failure.is_some() => {}
            (_, None) => {
                failure = Some(Error::new(
                    "internal error: a call was skipped without a failure before it",
                ))
            }
            (_, Some(Err(e))) => {
                failure.get_or_insert(e);
            }
            (Call::Version(p), Some(Ok(_))) => checked[*p] = true,
            (Call::Render(i), Some(Ok(Done::Rendered(rendered, stdout)))) => {
                let job = &jobs[*i];
                if let Some(stdout) = stdout {
                    if pin_of_job[*i].is_some_and(|p| checked[p]) {
                        stores.push((&job.key, stdout));
                    }
                }
                renders[*i] = Some(Arc::new(rendered));
            }
            (Call::Render(_), Some(Ok(Done::Checked))) => {
                failure.get_or_insert(Error::new(
                    "internal error: a render gave a version check's result",
                ));
            }
        }
    }
    let store = || {
        for (key, stdout) in &stores {
            options.cache.put(key, stdout);
        }
    };
    if let Some(e) = failure {
        store();
        return Err(e);
    }
    let renders: Vec<Arc<Rendered>> = job_of_request
        .iter()
        .map(|&j| {
            renders[j]
                .clone()
                .ok_or_else(|| Error::new("internal error: a request without its render"))
        })
        .collect::<Result<_>>()?;
    let counts = RenderCounts {
        cached: jobs.len() - misses,
        rendered: misses,
    };
    if stores.is_empty() {
        return then(renders, counts);
    }
    std::thread::scope(|scope| {
        scope.spawn(store);
        then(renders, counts)
    })
}

/// One job's render: its cached stdout when there is one, else what `generate` runs; parsed
/// either way, with istioctl's stdout kept for the cache.
fn render_one(
    job: &Job,
    cached: Option<&[u8]>,
    options: &RenderOptions,
    generate: impl FnOnce() -> Result<Vec<u8>>,
) -> Result<Done> {
    match cached {
        Some(bytes) => Ok(Done::Rendered(job.parse(bytes, options.cache.dir())?, None)),
        None => {
            let stdout = generate()?;
            // Only what reads as a render is kept.
            let rendered = job.parse(&stdout, None)?;
            Ok(Done::Rendered(rendered, Some(stdout)))
        }
    }
}

/// Counts istioctl calls as they end and reports each start and end.
struct Counter<'a> {
    done: AtomicUsize,
    total: usize,
    progress: &'a (dyn Fn(&Progress) + Sync),
}

impl Counter<'_> {
    fn run<T>(&self, what: String, call: impl FnOnce() -> T) -> T {
        (self.progress)(&Progress {
            what: what.clone(),
            finished: false,
            done: self.done.load(Ordering::SeqCst),
            total: self.total,
        });
        let out = call();
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        (self.progress)(&Progress {
            what,
            finished: true,
            done,
            total: self.total,
        });
        out
    }
}

/// `path args…` as a message shows a command.
fn command_line(path: &Path, args: &[&str]) -> String {
    let mut s = path.display().to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// A fresh directory for one istioctl call: its working directory and HOME.
fn workdir() -> Result<tempfile::TempDir> {
    tempfile::tempdir().map_err(|e| {
        Error::new(format!(
            "cannot create a temporary directory: {}",
            io_reason(&e)
        ))
    })
}

/// istioctl's process group, led by the child. Dropping it kills the group and reaps the leader,
/// so no return path leaves a process of the group running.
struct Group {
    child: Child,
    pgid: Pid,
    reaped: bool,
}

impl Group {
    fn new(child: Child) -> Group {
        let pgid = Pid::from_child(&child);
        Group {
            child,
            pgid,
            reaped: false,
        }
    }

    /// Whether the leader has exited, without reaping it: while it is an unreaped zombie its
    /// pid, and so the group id, cannot be given to another process.
    fn leader_exited(&self) -> Result<bool> {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        match waitid(WaitId::Pid(self.pgid), options) {
            Ok(status) => Ok(status.is_some()),
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(Error::new(format!(
                "waiting for istioctl: {}",
                io_reason(&e.into())
            ))),
        }
    }

    /// SIGKILL to every process of the group, then reaps the leader.
    fn stop_and_reap(&mut self) -> Result<ExitStatus> {
        // Cannot fail while the leader is unreaped: the group exists and is ours.
        let _ = kill_process_group(self.pgid, Signal::KILL);
        let status = self.child.wait();
        self.reaped = true;
        status.map_err(|e| Error::new(format!("waiting for istioctl: {}", io_reason(&e))))
    }

    /// Like `stop_and_reap`, on a path that already has its error to report.
    fn stop(&mut self) {
        if !self.reaped {
            let _ = self.stop_and_reap();
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn limit(self) -> usize {
        match self {
            Stream::Stdout => STDOUT_LIMIT,
            Stream::Stderr => STDERR_LIMIT,
        }
    }

    fn limit_text(self) -> String {
        format!("{} MiB", self.limit() >> 20)
    }
}

/// Why a stream's bytes are not there.
#[derive(Debug)]
enum Unread {
    /// It went past its limit.
    TooMuch,
    /// Reading it failed.
    Failed(std::io::Error),
}

type Chunk = (Stream, std::result::Result<Vec<u8>, Unread>);

/// Reads `r` to its end (or one byte past the stream's limit) on a thread, and sends the result.
fn read_capped(
    r: impl Read + Send + 'static,
    stream: Stream,
    tx: mpsc::Sender<Chunk>,
) -> Result<()> {
    let spawned = std::thread::Builder::new().spawn(move || {
        let limit = stream.limit();
        let mut buf = Vec::new();
        let result = match r.take(limit as u64 + 1).read_to_end(&mut buf) {
            Err(e) => Err(Unread::Failed(e)),
            Ok(_) if buf.len() > limit => Err(Unread::TooMuch),
            Ok(_) => Ok(buf),
        };
        // The receiver is gone only when the call has already ended with an error.
        let _ = tx.send((stream, result));
    });
    spawned.map(drop).map_err(|e| {
        Error::new(format!(
            "cannot start a thread to read istioctl's {}: {}",
            stream.name(),
            io_reason(&e)
        ))
    })
}

/// False while an istioctl call runs: SIGINT and SIGTERM then only set `RECEIVED`, and the call
/// stops istioctl's group and returns an error. Otherwise they act as if no handler were set.
static IDLE: AtomicBool = AtomicBool::new(true);
/// The SIGINT or SIGTERM received during a call, or 0.
static RECEIVED: AtomicUsize = AtomicUsize::new(0);
/// How many calls run (`render_all` runs several at once; the last to end makes `IDLE` true).
static RUNNING: Mutex<usize> = Mutex::new(0);

/// Installs the SIGINT and SIGTERM handlers once. istioctl runs in its own process group, so a
/// terminal's Ctrl-C reaches only istio-canary, which must stop istioctl itself.
fn install_signal_handlers() -> Result<()> {
    static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let installed = INSTALLED.get_or_init(|| {
        for signal in [SIGINT, SIGTERM] {
            // In this order: when idle, the default action (exit) runs before the flag is set.
            signal_hook::flag::register_conditional_default(signal, &IDLE)
                .and_then(|_| signal_hook::flag::register_usize(signal, &RECEIVED, signal as usize))
                .map_err(|e| io_reason(&e))?;
        }
        Ok(())
    });
    installed.clone().map_err(|why| {
        Error::new(format!(
            "cannot install the SIGINT/SIGTERM handlers that stop istioctl: {why}"
        ))
    })
}

/// The error of a run that received SIGINT or SIGTERM while istioctl ran. It names no call:
/// every call running then is stopped, and which ones were running is a matter of timing.
fn interrupted(signal: &str) -> Error {
    Error::new(format!(
        "interrupted by {signal}: every running istioctl was stopped with its whole process group, and --out was left as it was"
    ))
}

/// The interruption, if a signal arrived during a call of this run: it wins over every other
/// outcome, so the error does not depend on which calls saw it.
fn check_interrupted() -> Result<()> {
    match received_signal() {
        Some(signal) => Err(interrupted(signal)),
        None => Ok(()),
    }
}

fn received_signal() -> Option<&'static str> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s if s == SIGINT as usize => Some("SIGINT"),
        _ => Some("SIGTERM"),
    }
}

/// Marks an istioctl call as running until dropped (after its process group is gone).
struct Busy;

impl Busy {
    fn start() -> Busy {
        let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        *running += 1;
        IDLE.store(false, Ordering::SeqCst);
        Busy
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        *running = running.saturating_sub(1);
        if *running == 0 {
            IDLE.store(true, Ordering::SeqCst);
        }
    }
}

fn describe_status(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_string(),
    }
}

fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "\n  (it printed nothing on stderr)".to_string();
    }
    let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
    let mut out = String::from("\n  stderr:");
    for l in &lines[start..] {
        out.push_str("\n    ");
        out.push_str(l);
    }
    out
}

/// Finds the version in `istioctl version --remote=false` output: a bare `1.14.1` or
/// `client version: 1.14.1` (newer releases).
pub fn parse_version_output(stdout: &str) -> Option<Version> {
    stdout
        .split(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .filter_map(|tok| Version::parse(tok.trim_start_matches('v')).ok())
        .next()
}

/// The user's IstioOperator with the fields istio-canary manages set for one render.
pub fn operator_for(document: &Mapping, revision: &Revision, tags: &TagRequest) -> Mapping {
    let mut doc = document.clone();
    let spec = mapping_entry(&mut doc, "spec");
    match revision.name() {
        Some(name) => {
            spec.insert("revision".into(), Value::String(name.to_string()));
        }
        None => {
            spec.remove("revision");
        }
    }
    if !tags.revision_tags.is_empty() || tags.default_revision {
        let values = mapping_entry(spec, "values");
        if !tags.revision_tags.is_empty() {
            values.insert(
                "revisionTags".into(),
                Value::Sequence(
                    tags.revision_tags
                        .iter()
                        .cloned()
                        .map(Value::String)
                        .collect(),
                ),
            );
        }
        if tags.default_revision {
            values.insert(
                "defaultRevision".into(),
                Value::String(revision.label().to_string()),
            );
        }
    }
    doc
}

fn mapping_entry<'a>(map: &'a mut Mapping, key: &str) -> &'a mut Mapping {
    let entry = map
        .entry(Value::String(key.to_string()))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if !entry.is_mapping() {
        *entry = Value::Mapping(Mapping::new());
    }
    match entry {
        Value::Mapping(m) => m,
        _ => unreachable!("entry was just made a mapping"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(r: impl Read + Send + 'static, stream: Stream) -> Result<Vec<u8>, Unread> {
        let (tx, rx) = mpsc::channel();
        read_capped(r, stream, tx).unwrap();
        rx.recv().unwrap().1
    }

    #[test]
    fn reads_a_stream_up_to_its_limit_and_no_further() {
        let at_limit = std::io::repeat(b'y').take(STDERR_LIMIT as u64);
        assert_eq!(read(at_limit, Stream::Stderr).unwrap().len(), STDERR_LIMIT);
        let endless = std::io::repeat(b'y');
        assert!(matches!(
            read(endless, Stream::Stderr),
            Err(Unread::TooMuch)
        ));
    }

    #[test]
    fn a_failed_read_is_not_taken_for_the_end_of_the_output() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("device gone"))
            }
        }
        assert!(matches!(
            read(Failing, Stream::Stdout),
            Err(Unread::Failed(_))
        ));
    }

    #[test]
    fn reads_both_version_output_styles() {
        let v = Version::parse("1.14.1").unwrap();
        assert_eq!(parse_version_output("1.14.1\n"), Some(v.clone()));
        assert_eq!(parse_version_output("client version: 1.14.1\n"), Some(v));
        assert_eq!(parse_version_output("no version here\n"), None);
    }

    #[test]
    fn sets_revision_and_tags_and_keeps_the_rest() {
        let doc: Mapping = serde_yaml::from_str("apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  profile: default\n").unwrap();
        let rev = Revision::Named("1-14-1".into());
        let tags = TagRequest {
            revision_tags: vec!["default".into()],
            default_revision: true,
        };
        let out = serde_yaml::to_string(&operator_for(&doc, &rev, &tags)).unwrap();
        assert_eq!(out, "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  profile: default\n  revision: 1-14-1\n  values:\n    revisionTags:\n    - default\n    defaultRevision: 1-14-1\n");
        let out = serde_yaml::to_string(&operator_for(
            &doc,
            &Revision::Default,
            &TagRequest::default(),
        ))
        .unwrap();
        assert!(!out.contains("revision"), "{out}");
    }
}
