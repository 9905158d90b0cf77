//! The compile, stage by stage: load the policies, render what they need (from the render cache
//! or with the pinned istioctls, in parallel), plan, describe, lay out and emit. The one place
//! the stages are chained.
//!
//! Owns: `CompileConfig` (what a compile needs, checked), the order of the stages, the render
//! requests a policy makes (old side, then new side), a fleet (`compile_all`: several policies in
//! one run, one `render_all` for all of them, names that must differ), and the stderr summary of
//! a compiled plan. Must not: write anything (`cli` calls `write`, so `compile --check` reuses
//! this as it is), print, or decide anything a stage decides.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cache::Cache;
use crate::error::Result;
use crate::render::{
    self, Progress, RenderCounts, RenderOptions, RenderRequest, Rendered, TagRequest,
};
use crate::{describe, emit, error, jobs, layout, plan, policy, VERSION};

/// Everything `compile` needs, checked; built once from the command line.
#[derive(Debug, Clone)]
pub struct CompileConfig {
    pub policy: PathBuf,
    pub out: PathBuf,
    pub force: bool,
    pub istioctl_timeout: Duration,
    /// `--promote`: overrides the policy's `spec.promote`.
    pub promote: Option<String>,
    /// The render cache's directory; `None` for no cache (`--no-cache`).
    pub cache_dir: Option<PathBuf>,
    /// At most this many istioctl calls (and plans of a fleet) at once.
    pub jobs: NonZeroUsize,
}

impl CompileConfig {
    /// `policy` into `out` with the defaults of the command line, and no cache.
    pub fn new(policy: PathBuf, out: PathBuf) -> CompileConfig {
        CompileConfig {
            policy,
            out,
            force: false,
            istioctl_timeout: Duration::from_secs(120),
            promote: None,
            cache_dir: None,
            jobs: jobs::available(),
        }
    }
}

/// What a compile produced, before it is written.
#[derive(Debug)]
pub struct Compiled {
    /// The plan, its kept states released once laid out (`Plan::release_states`: state 0 only).
    pub plan: plan::Plan,
    pub texts: describe::Texts,
    pub files: BTreeMap<String, String>,
    /// The files the compile read (policy, specs, istioctl binaries), which writing must not
    /// delete.
    pub inputs: Vec<std::path::PathBuf>,
    /// For each side whose version pins one binary per platform: the version and the platform
    /// whose binary rendered it (`1.14.1`, `linux/amd64`), for the summary.
    pub platforms: Vec<(String, String)>,
    /// What the run has to say besides the plan (the render cache could not be written, an
    /// entry was corrupt), printed as `note:` lines.
    pub notes: Vec<String>,
    /// Each phase's directory and its apply, patch and delete counts: the lengths of the
    /// bundle's lists, which `plan.json`'s `apply`, `patch` and `delete` entries (and PLAN.md's
    /// phase table) hold one for one.
    pub counts: Vec<(String, [usize; 3])>,
}

impl Compiled {
    /// The short phase summary printed on stderr, each phase's counts those of `counts`.
    pub fn summary(&self, out: &Path) -> Result<String> {
        let p = &self.plan;
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
            self.counts.len(),
            out.display()
        );
        for (version, platform) in &self.platforms {
            let _ = writeln!(
                s,
                "  istioctl {version}: the {platform} binary of its pin (plan.json records every platform's)"
            );
        }
        let width = self
            .counts
            .iter()
            .map(|(dir, _)| dir.len() + 1)
            .max()
            .unwrap_or(0)
            .max(28);
        for (dir, counts) in &self.counts {
            let _ = writeln!(s, "  {dir:<width$} {}", phase_counts(counts));
        }
        if let Some(phase) = p.promote.and_then(|n| p.phases.get(n - 1)) {
            let _ = writeln!(
                s,
                "  live/ holds the desired state after {} (the root Kustomization builds it)",
                phase.dir
            );
        }
        for n in self.texts.notes.iter().chain(&self.notes) {
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
fn phase_counts(&[apply, patch, delete]: &[usize; 3]) -> String {
    let counts = [("apply", apply), ("patch", patch), ("delete", delete)];
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

/// What a policy needs rendered, in request order: each control plane of its path once, as it
/// is installed: the first as running (`istioctl install --revision R` also creates the default
/// tag and validator when none exists, which `manifest generate` leaves out), every later one
/// with the default tag when the policy moves it. A hop's old side is the previous hop's new
/// render.
fn render_requests(policy: &policy::Policy) -> Vec<RenderRequest<'_>> {
    policy
        .releases()
        .into_iter()
        .enumerate()
        .map(|(i, release)| {
            let mut tags = TagRequest::default_tag(if i == 0 {
                policy.from_default_tag
            } else {
                policy.default_tag
            });
            // The tags the plan moves exist on every control plane of the path: on the first as
            // installed (an assumption PLAN.md states), on each later one once its hop moves
            // them.
            tags.revision_tags
                .extend(policy.tags.iter().map(|t| t.name.clone()));
            RenderRequest { release, tags }
        })
        .collect()
}

/// Loads the policy, renders every release of its path, plans and emits. Writes nothing.
pub fn compile(config: &CompileConfig) -> Result<Compiled> {
    compile_with_progress(config, &|_| {})
}

/// `compile`, telling `progress` about each istioctl call.
pub fn compile_with_progress(
    config: &CompileConfig,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Compiled> {
    let batch = compile_all(
        std::slice::from_ref(&config.policy),
        false,
        config,
        progress,
        Ok,
    )?;
    let mut compiled =
        batch.results.into_iter().next().ok_or_else(|| {
            error::Error::new("internal error: a compile of one policy gave none")
        })?;
    compiled.notes = batch.notes;
    Ok(compiled)
}

/// What `compile_all` produced: `each`'s result per policy, in the policies' order, how many
/// renders came from the cache, and what the run has to say about the cache.
#[derive(Debug)]
pub struct Batch<T> {
    pub results: Vec<T>,
    pub counts: RenderCounts,
    pub notes: Vec<String>,
}

/// Compiles every policy (`config.policy` is not read; `config.promote` applies to each). In a
/// `fleet` (each policy writing `OUT/<metadata.name>/`) the policies must have different names
/// and an error names its policy. Loads them all, renders what they need in one `render::render_all` (so a render several policies
/// share runs once), then plans, describes, lays out and emits each on at most `config.jobs`
/// threads and hands each `Compiled` to `each` (which may write it, compare it, or keep what it
/// needs and drop the rest). The error is the first policy's, in order. Writes nothing itself.
pub fn compile_all<T: Send>(
    policies: &[PathBuf],
    fleet: bool,
    config: &CompileConfig,
    progress: &(dyn Fn(&Progress) + Sync),
    each: impl Fn(Compiled) -> Result<T> + Sync,
) -> Result<Batch<T>> {
    let in_fleet = |path: &Path, e: error::Error| {
        if fleet {
            e.within(format!("policy {}", path.display()))
        } else {
            e
        }
    };
    let mut loaded = Vec::with_capacity(policies.len());
    for path in policies {
        let policy = load(path, config).map_err(|e| in_fleet(path, e))?;
        loaded.push(policy);
    }
    if fleet {
        refuse_shared_names(&loaded)?;
    }
    let per_policy_requests: Vec<Vec<RenderRequest>> = loaded.iter().map(render_requests).collect();
    let requests: Vec<RenderRequest> = per_policy_requests.concat();
    let cache = match &config.cache_dir {
        Some(dir) => Cache::at(dir.clone()),
        None => Cache::none(),
    };
    let options = RenderOptions {
        timeout: config.istioctl_timeout,
        jobs: config.jobs,
        cache: &cache,
        progress,
    };
    // The cache's stores are written while the policies are planned.
    let (results, counts) = render::render_all(&requests, &options, |renders, counts| {
        // Each policy's renders, in the order of its requests (as many as it made).
        let mut rest = renders.as_slice();
        let mut per_policy: Vec<&[Arc<Rendered>]> = Vec::with_capacity(loaded.len());
        for made in &per_policy_requests {
            let (mine, others) = rest.split_at(made.len().min(rest.len()));
            per_policy.push(mine);
            rest = others;
        }
        // The threads left over from running the policies side by side go to each policy's
        // plan (a single policy gets them all; in a fleet of more policies than jobs, each gets
        // one).
        let inner = std::num::NonZeroUsize::new(config.jobs.get() / loaded.len().max(1))
            .unwrap_or(std::num::NonZeroUsize::MIN);
        let results = jobs::map(&loaded, config.jobs, |i, policy| {
            let sides = per_policy
                .get(i)
                .ok_or_else(|| error::Error::new("internal error: a policy without its renders"))?;
            let compiled = finish(policy, sides, threads_for(policy, inner))
                .map_err(|e| in_fleet(&policy.path, e))?;
            each(compiled)
        });
        Ok((results, counts))
    })?;
    Ok(Batch {
        results: results.into_iter().collect::<Result<_>>()?,
        counts,
        notes: cache.notes(),
    })
}

/// Reads one policy, with `--promote` applied.
fn load(path: &Path, config: &CompileConfig) -> Result<policy::Policy> {
    let mut policy = policy::load(path)?;
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
    Ok(policy)
}

/// In a fleet each policy writes `OUT/<metadata.name>/`, so two policies may not share a name.
fn refuse_shared_names(policies: &[policy::Policy]) -> Result<()> {
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for p in policies {
        if let Some(first) = seen.insert(&p.name, &p.path) {
            return Err(error::Error::new(format!(
                "policies {} and {} are both named `{}`: in a fleet each policy writes OUT/<metadata.name>/",
                first.display(),
                p.path.display(),
                p.name
            ))
            .with_help("give each policy of the fleet its own metadata.name"));
        }
    }
    Ok(())
}

/// Below this many named namespaces (over all hops) a policy is planned on one thread: its
/// work takes milliseconds, less than starting the threads costs (measured on the bundled
/// example: a quarter more CPU time and no less wall time with two).
const THREADS_FROM_NAMESPACES: usize = 200;

/// The threads one policy's plan, layout and emit may use: `jobs`, or one for a small policy.
fn threads_for(policy: &policy::Policy, jobs: std::num::NonZeroUsize) -> std::num::NonZeroUsize {
    let named: usize = policy.waves.iter().map(|w| w.namespaces.len()).sum();
    let hops = policy.releases().len().saturating_sub(1);
    if named * hops < THREADS_FROM_NAMESPACES {
        std::num::NonZeroUsize::MIN
    } else {
        jobs
    }
}

/// Plans, describes, lays out and emits one policy from its renders, one per release of its
/// path (hop i goes from render i to render i + 1), on at most `jobs` threads.
fn finish(
    policy: &policy::Policy,
    renders: &[Arc<Rendered>],
    jobs: std::num::NonZeroUsize,
) -> Result<Compiled> {
    let releases = policy.releases();
    let mut inputs = vec![policy.path.clone()];
    for r in &releases {
        inputs.push(r.operator.path.clone());
        inputs.push(r.istioctl.path.clone());
    }
    if let Some(inventory) = &policy.inventory {
        inputs.push(inventory.path.clone());
    }
    let rendered: Vec<&Rendered> = renders.iter().map(|r| &**r).collect();
    let mut plan = plan::plan(policy, &rendered, jobs)?;
    // Both read the plan only.
    let (texts, bundle) = jobs::join(
        jobs,
        || describe::describe(&plan),
        || layout::layout(&plan, jobs),
    );
    let bundle = bundle?;
    // Emitting makes the whole output's text: the kept states go first.
    plan.release_states();
    let counts = bundle
        .phases
        .iter()
        .map(|d| {
            (
                d.path.clone(),
                [d.apply.len(), d.patch.len(), d.delete.len()],
            )
        })
        .collect();
    let files = emit::emit(
        &plan,
        &texts,
        bundle,
        &emit::EmitContext {
            tool_version: VERSION.to_string(),
            gitops: policy.gitops.clone(),
            jobs,
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
        notes: Vec::new(),
        counts,
    })
}
