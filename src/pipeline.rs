//! The compile, stage by stage: load the policy, verify and run both pinned istioctls, plan,
//! describe, lay out and emit. The one place the stages are chained.
//!
//! Owns: `CompileConfig` (what a compile needs, checked), the order of the stages, and the
//! stderr summary of a compiled plan. Must not: write anything (`cli` calls `write`, so
//! `compile --check` reuses this as it is), print, or decide anything a stage decides.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Result;
use crate::render::{Istioctl, TagRequest};
use crate::{check, describe, emit, error, layout, plan, policy, schema, VERSION};

/// Everything `compile` needs, checked; built once from the command line.
#[derive(Debug, Clone)]
pub struct CompileConfig {
    pub policy: PathBuf,
    pub out: PathBuf,
    pub force: bool,
    pub istioctl_timeout: Duration,
    /// `--promote`: overrides the policy's `spec.promote`.
    pub promote: Option<String>,
}

/// What a compile produced, before it is written.
#[derive(Debug)]
pub struct Compiled {
    pub plan: plan::Plan,
    pub texts: describe::Texts,
    pub files: BTreeMap<String, String>,
    /// The files the compile read (policy, specs, istioctl binaries), which writing must not
    /// delete.
    pub inputs: Vec<std::path::PathBuf>,
    /// For each side whose version pins one binary per platform: the version and the platform
    /// whose binary rendered it (`1.14.1`, `linux/amd64`), for the summary.
    pub platforms: Vec<(String, String)>,
}

impl Compiled {
    /// The short phase summary printed on stderr. Each phase's counts are read from the
    /// compiled `plan.json` (its `apply`, `patch` and `delete` entries), the same entries
    /// PLAN.md's phase table counts, so the two cannot disagree.
    pub fn summary(&self, out: &Path) -> Result<String> {
        let p = &self.plan;
        let json = self
            .files
            .get(schema::PLAN_JSON)
            .ok_or_else(|| error::Error::new("internal error: compile produced no plan.json"))?;
        let doc = check::parse_plan(Path::new(schema::PLAN_JSON), json)?;
        let hops = match p.hops.len() {
            1 => String::new(),
            n => format!(" in {n} hops"),
        };
        let mut s = format!(
            "istio-canary: {} {} ({}) -> {} ({}){hops}: {} phases in {}/\n",
            p.name,
            p.from().version,
            p.from().revision,
            p.to().version,
            p.to().revision,
            doc.phases.len(),
            out.display()
        );
        for (version, platform) in &self.platforms {
            let _ = writeln!(
                s,
                "  istioctl {version}: the {platform} binary of its pin (plan.json records every platform's)"
            );
        }
        let width = doc
            .phases
            .iter()
            .map(|p| p.dir.len() + 1)
            .max()
            .unwrap_or(0)
            .max(28);
        for phase in &doc.phases {
            let _ = writeln!(s, "  {:<width$} {}", phase.dir, phase_counts(phase));
        }
        if let Some(phase) = p.promote.and_then(|n| p.phases.get(n - 1)) {
            let _ = writeln!(
                s,
                "  live/ holds the desired state after {} (the root Kustomization builds it)",
                phase.dir
            );
        }
        for n in &self.texts.notes {
            let _ = writeln!(s, "note: {n}");
        }
        for w in &self.texts.warnings {
            let _ = writeln!(s, "warning: already before the upgrade: {w}");
        }
        let _ = writeln!(s, "  see {}/PLAN.md for the commands", out.display());
        Ok(s)
    }
}

/// A phase's counts as PLAN.md's table heads them (`apply 2, patch 1`), zeros left out.
fn phase_counts(phase: &schema::PhaseDoc) -> String {
    let counts = [
        ("apply", phase.apply.len()),
        ("patch", phase.patch.len()),
        ("delete", phase.delete.len()),
    ];
    let what: Vec<String> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    if what.is_empty() {
        "nothing".to_string()
    } else {
        what.join(", ")
    }
}

/// Loads the policy, renders both revisions, plans and emits. Writes nothing.
pub fn compile(config: &CompileConfig) -> Result<Compiled> {
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
    let releases = policy.releases();
    let mut inputs = vec![policy.path.clone()];
    for r in &releases {
        inputs.push(r.operator.path.clone());
        inputs.push(r.istioctl.path.clone());
    }
    if let Some(inventory) = &policy.inventory {
        inputs.push(inventory.path.clone());
    }
    // Each control plane of the path is rendered once, as it is installed: the first as running
    // (`istioctl install --revision R` also creates the default tag and validator when none
    // exists, which `manifest generate` leaves out), every later one with the default tag when
    // the policy moves it. A hop's old side is the previous hop's new render.
    let mut renders = Vec::with_capacity(releases.len());
    for (i, release) in releases.iter().enumerate() {
        let ctl = Istioctl::verify(&release.version, &release.istioctl, config.istioctl_timeout)?;
        let mut tags = if i == 0 {
            TagRequest::default_tag(policy.from_default_tag)
        } else {
            TagRequest::default_tag(policy.default_tag)
        };
        // The tags the plan moves exist on every control plane of the path: on the first as
        // installed (an assumption PLAN.md states), on each later one once its hop moves them.
        tags.revision_tags
            .extend(policy.tags.iter().map(|t| t.name.clone()));
        renders.push(ctl.manifest_generate(release, &tags)?);
    }
    let rendered: Vec<&crate::render::Rendered> = renders.iter().collect();
    let plan = plan::plan(&policy, &rendered)?;
    let texts = describe::describe(&plan);
    let bundle = layout::layout(&plan)?;
    let files = emit::emit(
        &plan,
        &texts,
        &bundle,
        &emit::EmitContext {
            tool_version: VERSION.to_string(),
            gitops: policy.gitops.clone(),
        },
    )?;
    let platforms = policy
        .releases()
        .into_iter()
        .filter_map(|side| {
            let platform = side.istioctl.platform.clone()?;
            Some((side.version.to_string(), platform))
        })
        .collect();
    Ok(Compiled {
        plan,
        texts,
        files,
        inputs,
        platforms,
    })
}
