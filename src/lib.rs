//! istio-canary compiles an Istio canary (revision-based) control-plane upgrade into ordered,
//! reviewable YAML bundles, one per phase.
//!
//! The pipeline, one module per stage, none reaching backwards:
//! `policy` (load and validate) -> `render` (istioctl, the only process I/O) -> `plan` (pure)
//! -> `layout` (pure: every file's path and every object's Git form) -> `emit` (pure: plan and
//! layout to path -> text) -> `write` (atomic). `manifest` is the one YAML reader and object
//! identity; `error` the one error type; `cli` the command line; `schema` the plan.json types;
//! `check` reads a written output back (`compile --check`, `verify`, `show`, `plan` text) with
//! those types and writes nothing.

pub mod check;
pub mod cli;
pub mod diff;
pub mod emit;
pub mod error;
pub mod gitops;
pub mod k8s;
pub mod layout;
pub mod manifest;
pub mod mesh;
pub mod names;
pub mod plan;
pub mod policy;
pub mod render;
pub mod schema;
pub mod selector;
pub mod write;
pub mod yamlin;
pub mod yamlout;
pub mod yamlpath;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::error::Result;
use crate::render::{Istioctl, TagRequest};

/// The tool's version, as it appears in generated files.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a compile produced, before it is written.
#[derive(Debug)]
pub struct Compiled {
    pub plan: plan::Plan,
    pub files: BTreeMap<String, String>,
    /// The files the compile read (policy, specs, istioctl binaries), which writing must not
    /// delete.
    pub inputs: Vec<std::path::PathBuf>,
}

impl Compiled {
    /// The short phase summary printed on stderr.
    pub fn summary(&self, out: &Path) -> String {
        let p = &self.plan;
        let mut s = format!(
            "istio-canary: {} {} ({}) -> {} ({}): {} phases in {}/\n",
            p.name,
            p.from().version,
            p.from().revision,
            p.to().version,
            p.to().revision,
            p.phases.len(),
            out.display()
        );
        for phase in &p.phases {
            let (mut files, mut commands, mut deletes) = (0, 0, 0);
            for c in &phase.changes {
                match c {
                    mesh::Change::Apply(_)
                    | mesh::Change::Labels {
                        via: mesh::Via::File,
                        ..
                    } => files += 1,
                    mesh::Change::Labels { .. } => commands += 1,
                    mesh::Change::Delete(_) => deletes += 1,
                }
            }
            let mut what = Vec::new();
            if files > 0 || deletes == 0 {
                what.push(format!("apply {files}"));
            }
            if commands > 0 {
                what.push(format!("label {commands}"));
            }
            if deletes > 0 {
                what.push(format!("delete {deletes}"));
            }
            let _ = writeln!(s, "  {:<28} {}", phase.dir, what.join(", "));
        }
        if let Some(phase) = p.promote.and_then(|n| p.phases.get(n - 1)) {
            let _ = writeln!(
                s,
                "  live/ holds the desired state after {} (the root Kustomization builds it)",
                phase.dir
            );
        }
        for w in &p.warnings {
            let _ = writeln!(s, "warning: already before the upgrade: {w}");
        }
        let _ = writeln!(s, "  see {}/PLAN.md for the commands", out.display());
        s
    }
}

/// Loads the policy, renders both revisions, plans and emits. Writes nothing.
pub fn compile(config: &cli::CompileConfig) -> Result<Compiled> {
    let mut policy = policy::load(&config.policy)?;
    if let Some(text) = &config.promote {
        policy.promote = Some(policy::Promote {
            phase: policy::parse_phase_text(text).map_err(|m| {
                error::Error::new(format!("--promote: {m}"))
                    .with_help("--promote takes a phase index (3) or a phase name (migrate-canary)")
            })?,
            source: "--promote",
            location: None,
        });
    }
    let inputs = vec![
        policy.path.clone(),
        policy.from.operator.path.clone(),
        policy.to.operator.path.clone(),
        policy.from.istioctl.path.clone(),
        policy.to.istioctl.path.clone(),
    ];
    let old_ctl = Istioctl::verify(
        &policy.from.version,
        &policy.from.istioctl,
        config.istioctl_timeout,
    )?;
    let new_ctl = Istioctl::verify(
        &policy.to.version,
        &policy.to.istioctl,
        config.istioctl_timeout,
    )?;
    let old = old_ctl.manifest_generate(&policy.from, &TagRequest::default())?;
    let tags = if policy.default_tag {
        TagRequest {
            revision_tags: vec!["default".to_string()],
            default_revision: true,
        }
    } else {
        TagRequest::default()
    };
    let new = new_ctl.manifest_generate(&policy.to, &tags)?;
    let plan = plan::plan(&policy, &old, &new)?;
    let files = emit::emit(
        &plan,
        &emit::EmitContext {
            tool_version: VERSION.to_string(),
        },
    )?;
    Ok(Compiled {
        plan,
        files,
        inputs,
    })
}
