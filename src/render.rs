//! Rendering each revision with its vendored istioctl: the only process I/O in the tool.
//!
//! Owns: checking a binary's sha256 against its pin before it ever runs, checking the version it
//! reports, preparing the IstioOperator spec for one revision (`spec.revision`,
//! `values.revisionTags`, `values.defaultRevision`), running `istioctl manifest generate` with an
//! argument vector (never a shell), no cluster credentials and a timeout, and parsing what it
//! prints. Must not: decide what goes in which phase, or write anywhere but its own temp dir.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use semver::Version;
use serde_yaml::{Mapping, Value};

use crate::error::{io_reason, Error, Result};
use crate::manifest::{parse_manifest, Object};
use crate::policy::{sha256_hex, Pin, Revision, Side};

/// How many lines of istioctl's stderr an error shows.
const STDERR_TAIL_LINES: usize = 20;

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

/// A vendored istioctl whose digest and version have been checked.
#[derive(Debug)]
pub struct Istioctl {
    version: Version,
    /// As the user wrote it (relative to the working directory), for messages.
    shown: PathBuf,
    /// Absolute, for running from the temp dir.
    absolute: PathBuf,
    timeout: Duration,
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
        let bytes = std::fs::read(&pin.path).map_err(|e| {
            Error::new(format!(
                "cannot read istioctl {version} at {}: {}",
                pin.path.display(),
                io_reason(&e)
            ))
            .with_help(format!("vendor istioctl {version} at that path (see README: \"Vendoring istioctl\"), or fix spec.istioctl"))
        })?;
        let actual = sha256_hex(&bytes);
        if actual != pin.sha256 {
            return Err(Error::new(format!(
                "sha256 mismatch for istioctl {version} at {}:\n  expected {}\n  actual   {actual}",
                pin.path.display(),
                pin.sha256
            ))
            .with_help("the file is not the binary that was pinned; if you replaced it on purpose, review it and update spec.istioctl with its new sha256sum"));
        }
        let absolute = std::path::absolute(&pin.path)
            .map_err(|e| Error::io("cannot resolve", &pin.path, &e))?;
        let istioctl = Istioctl {
            version: version.clone(),
            shown: pin.path.clone(),
            absolute,
            timeout,
        };
        let workdir = workdir()?;
        let args = ["version", "--remote=false"];
        let out = istioctl.run(&args, workdir.path())?;
        let reported = parse_version_output(&String::from_utf8_lossy(&out.stdout));
        match reported {
            Some(v) if &v == version => Ok(istioctl),
            Some(v) => Err(Error::new(format!(
                "{} reports version {v}, but the policy pins it for {version}",
                pin.path.display()
            ))
            .with_help("point spec.istioctl at the binary of the right release")),
            None => Err(Error::new(format!(
                "{} did not report a version for `{}`{}",
                pin.path.display(),
                istioctl.command_line(&args),
                stderr_tail(&out.stderr)
            ))),
        }
    }

    fn command_line(&self, args: &[&str]) -> String {
        let mut s = self.shown.display().to_string();
        for a in args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    /// Runs the binary with `args` in `workdir`: no shell, no inherited environment beyond PATH,
    /// no kubeconfig, stdin closed, killed after the timeout.
    fn run(&self, args: &[&str], workdir: &Path) -> Result<Output> {
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
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            let shown = self.shown.display();
            let (why, help) = match e.kind() {
                std::io::ErrorKind::PermissionDenied => (
                    "it is not executable".to_string(),
                    format!("make it executable: chmod +x {shown}"),
                ),
                // The file was read for its digest, so what is missing is its interpreter.
                std::io::ErrorKind::NotFound => (
                    "the interpreter named on its #! line was not found".to_string(),
                    "vendor the istioctl release binary, or install what the script needs"
                        .to_string(),
                ),
                _ => (
                    io_reason(&e),
                    format!("check that {shown} is an istioctl binary for this machine"),
                ),
            };
            Error::new(format!(
                "cannot run istioctl {} at {shown}: {why}",
                self.version
            ))
            .with_help(help)
        })?;
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() >= self.timeout => {
                    // Best effort: the process may have exited between the two calls.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::new(format!(
                        "istioctl {} did not finish within {}s and was stopped: `{}`",
                        self.version,
                        self.timeout.as_secs_f64(),
                        self.command_line(args)
                    ))
                    .with_help("raise the limit with --istioctl-timeout SECONDS if this binary is just slow"));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => {
                    return Err(Error::new(format!(
                        "waiting for istioctl {}: {}",
                        self.version,
                        io_reason(&e)
                    )))
                }
            }
        };
        let collect = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            h.and_then(|h| h.join().ok()).unwrap_or_default()
        };
        Ok(Output {
            status,
            stdout: collect(stdout),
            stderr: collect(stderr),
        })
    }

    /// `istioctl manifest generate -f <spec>` for one revision.
    pub fn manifest_generate(&self, side: &Side, tags: &TagRequest) -> Result<Rendered> {
        let workdir = workdir()?;
        let spec_name = format!("iop-{}.yaml", side.revision);
        let spec = operator_for(&side.operator.document, &side.revision, tags);
        let spec_text = crate::yamlout::mapping_to_string(&spec).map_err(|e| Error {
            message: format!("cannot serialize the IstioOperator spec: {}", e.message),
            ..e
        })?;
        std::fs::write(workdir.path().join(&spec_name), spec_text)
            .map_err(|e| Error::io("cannot write", &workdir.path().join(&spec_name), &e))?;
        let args = ["manifest", "generate", "-f", spec_name.as_str()];
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
        let text = String::from_utf8(out.stdout).map_err(|_| {
            Error::new(format!(
                "istioctl {} printed output that is not UTF-8: `{}`",
                self.version,
                self.command_line(&args)
            ))
        })?;
        let source = format!("output of `{}`", self.command_line(&args));
        let objects = parse_manifest(&text, &source).map_err(|mut e| {
            e.message = format!(
                "istioctl {} printed invalid manifest YAML: {}",
                self.version, e.message
            );
            e
        })?;
        Ok(Rendered {
            version: self.version.clone(),
            revision: side.revision.clone(),
            istio_namespace: side.operator.istio_namespace.clone(),
            objects,
        })
    }
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

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        // A read error leaves what was read so far; the exit status tells the rest.
        let _ = r.read_to_end(&mut buf);
        buf
    })
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
