//! The one simulation: a list of changes run step by step on a cluster state, the invariants
//! checked after every step. Phases and rollbacks both go through `run`.
//!
//! Owns: how a list of changes splits into steps (the directory, then each command, then the
//! deletes) and which expectations hold after which step. Must not: decide changes, or say
//! anything to a user (a broken step is a `Violation`; the caller makes it a `Refusal`).

use std::collections::BTreeSet;

use crate::cluster::{Change, ClusterState, Via};
use crate::manifest::ObjectId;
use crate::mesh::{dangling_references, lost_gateway_backends, Evaluated, Violation, Watch};

/// What the plan expects of the named namespaces in one state: the revision each must be
/// injected by, or `None`: any single healthy injector (between the steps of a phase).
pub use crate::mesh::Expected;

/// The steps a list of changes runs as: the directory (every file at once), then each label
/// command, then the pod-template patches (restarts) together, then the deletes.
pub fn steps(changes: &[Change]) -> Vec<Vec<&Change>> {
    let mut steps: Vec<Vec<&Change>> = vec![Vec::new()];
    for c in changes {
        match c {
            Change::Labels {
                via: Via::Command(_),
                ..
            } => steps.push(vec![c]),
            // The restarts run together after the label commands: they change no namespace,
            // webhook or Service, only which injector the workloads' new pods meet.
            Change::Template { .. } => {
                if !steps
                    .last()
                    .is_some_and(|s| s.iter().any(|x| matches!(x, Change::Template { .. })))
                {
                    steps.push(Vec::new());
                }
                if let Some(s) = steps.last_mut() {
                    s.push(c);
                }
            }
            Change::Delete(_) => {
                if steps
                    .last()
                    .is_some_and(|s| s.iter().all(|x| !matches!(x, Change::Delete(_))))
                {
                    steps.push(Vec::new());
                }
                if let Some(s) = steps.last_mut() {
                    s.push(c);
                }
            }
            _ => steps[0].push(c),
        }
    }
    steps
}

/// Runs `changes` on `state` step by step. After every step but the last the state must meet
/// `between`, after the last `end`; no step may delete an object something left still
/// references, nor leave a Service that selected gateway pods selecting none. Violations in
/// `known` (already there before the upgrade) are not blamed; `known` never holds an
/// undecidable one (`plan_hops` refuses such a state 0 first). Returns the end state and what
/// the simulation knows of it (judged by `end`, for the next run from there), or the first new
/// violation (in `Violation` order, as `mesh::violations` and the step's dangling references
/// give them together). With `seen` (what an earlier run knew of `state`, and the
/// expectations it was judged by) it resumes from there instead of evaluating `state` whole.
///
/// Each state is evaluated by a `mesh::Watch` from the one before: a step that relabels
/// namespaces evaluates only those, a step that changes a webhook, Service or Deployment every
/// namespace (once per distinct label set), and new expectations only the namespaces whose
/// expectation changed. Nothing is skipped that a change can affect.
pub fn run_from(
    state: &ClusterState,
    seen: Option<(&Evaluated, &Expected)>,
    changes: &[Change],
    between: &Expected,
    end: &Expected,
    known: &BTreeSet<Violation>,
) -> Result<(ClusterState, Evaluated), Violation> {
    let mut state = state.clone();
    let steps = steps(changes);
    let last = steps.len() - 1;
    let mut watch: Option<Watch<'_>> = None;
    for (si, step) in steps.iter().enumerate() {
        let before = state.clone();
        for c in step {
            state.apply(c);
        }
        let expect = if si == last { end } else { between };
        let ids = step.iter().map(|c| c.id());
        let watch = match (&mut watch, seen) {
            (Some(w), _) => {
                w.update(&state, ids, expect);
                w
            }
            (None, Some((seen, was))) => {
                let mut w = Watch::resume(&before, seen.clone(), was, expect);
                w.update(&state, ids, expect);
                watch.insert(w)
            }
            (None, None) => watch.insert(Watch::new(&state, expect)),
        };
        let deleted: Vec<&ObjectId> = step
            .iter()
            .filter(|c| matches!(c, Change::Delete(_)))
            .map(|c| c.id())
            .collect();
        let mut dangling = dangling_references(&state, &deleted);
        dangling.extend(lost_gateway_backends(
            &before,
            &state,
            step.iter().map(|c| c.id()),
        ));
        let new = |v: &&Violation| !known.contains(*v);
        // The watch gives its violations in order; the dangling references sort among them.
        let first = [watch.violations().find(new), dangling.iter().find(new)]
            .into_iter()
            .flatten()
            .min();
        if let Some(v) = first {
            return Err(v.clone());
        }
    }
    // `steps` is never empty, so the watch was made.
    let seen = match watch {
        Some(w) => w.into_evaluated(),
        None => Watch::new(&state, end).into_evaluated(),
    };
    Ok((state, seen))
}
