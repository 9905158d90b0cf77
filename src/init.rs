//! `istio-canary init`: the text of a commented starter policy (`canary.yaml`) for an upgrade
//! from one Istio version to another, and what to do next.
//!
//! Owns: the starter's text (every value the user gave is written as a quoted YAML string, so
//! no argument can add a field), the placeholder the istioctl pins hold until the user fills
//! them in, and the next-steps message. Must not: write anything (`write::write_new` creates
//! the file and never replaces one), run istioctl, or make a check of its own: `check` hands
//! the starter, pins filled with a well-formed digest, to `policy::load_from`, so init refuses
//! exactly what `compile` would refuse before it runs istioctl.

use std::path::Path;

use crate::error::Result;
use crate::policy::{self, ReadFile};

/// What the pins' `sha256` holds until the user writes the binary's digest there.
pub const PIN_PLACEHOLDER: &str = "FILL-IN";

/// The arguments of `init`.
#[derive(Debug, Clone)]
pub struct Starter {
    /// `metadata.name`.
    pub name: String,
    pub from: String,
    pub to: String,
    /// `spec.istioOperator`, relative to the policy's directory.
    pub istio_operator: String,
    /// The namespaces to move: the first in wave `canary`, the others in wave `rest`.
    pub namespaces: Vec<String>,
}

/// A value as a double-quoted YAML scalar (JSON's quoting is valid YAML).
fn quoted(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| String::from("\"\""))
}

/// Where the starter says the istioctl binary of `version` goes, relative to the policy.
pub fn pin_path(version: &str) -> String {
    format!("vendor/istioctl-{version}")
}

/// The starter policy's text.
pub fn starter_text(s: &Starter) -> String {
    let pin = |version: &str| {
        format!(
            "    {v}:\n      path: {p}\n      sha256: {PIN_PLACEHOLDER}   # the output of: sha256sum {path}\n",
            v = quoted(version),
            p = quoted(&pin_path(version)),
            path = pin_path(version),
        )
    };
    let list = |names: &[String]| {
        names
            .iter()
            .map(|n| quoted(n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (first, rest) = s.namespaces.split_at(s.namespaces.len().min(1));
    let mut waves = format!(
        "  - name: canary                      # one migrate phase per wave, in this order\n    namespaces: [{}]\n",
        list(first)
    );
    if !rest.is_empty() {
        waves.push_str(&format!(
            "  - name: rest\n    namespaces: [{}]\n",
            list(rest)
        ));
    }
    format!(
        "# An istio-canary upgrade policy, written by `istio-canary init`: Istio {from_plain} to {to_plain}
# as a canary. The new revision is installed beside the running one, the namespaces below move
# to it wave by wave, then the gateways and the default tag, then the old revision is deleted.
# Every field is described in the README's Policy reference; `istio-canary schema` gives your
# editor the same (see Editor support).
#
# Before `istio-canary compile` runs:
# 1. Vendor the istioctl binary of each version at its `path` below (README: Vendoring
#    istioctl) and replace each {PIN_PLACEHOLDER} with its sha256.
# 2. Check the waves: the namespaces whose pods move to the new revision, in order.
apiVersion: {api_version}
kind: {kind}
metadata:
  name: {name}
spec:
  # The IstioOperator spec both revisions are rendered from, relative to this file. To render
  # the old revision from another spec, add `istioOperator` under `from`.
  istioOperator: {iop}
  from:
    version: {from}  # the Istio version running now
  to:
    version: {to}  # the Istio version to upgrade to
  # The istioctl binary of each version, pinned by its sha256: a binary whose digest differs is
  # never run.
  istioctl:
{pins}  waves:
{waves}",
        from_plain = s.from,
        to_plain = s.to,
        api_version = policy::API_VERSION,
        kind = policy::KIND,
        name = quoted(&s.name),
        iop = quoted(&s.istio_operator),
        from = quoted(&s.from),
        to = quoted(&s.to),
        // One pin when both versions are the same: the loader then says what is wrong with
        // the upgrade, not that a key is repeated.
        pins = if s.from == s.to {
            pin(&s.from)
        } else {
            pin(&s.from) + &pin(&s.to)
        },
    )
}

/// Loads `text` as the policy at `path` would be loaded, with every placeholder pin filled with
/// a well-formed digest: the loader's refusal, or nothing.
pub fn check(text: &str, path: &Path, read: ReadFile<'_>) -> Result<()> {
    let filled = text.replace(
        &format!("sha256: {PIN_PLACEHOLDER} "),
        &format!("sha256: {} ", "0".repeat(64)),
    );
    policy::load_from(filled.as_bytes(), path, read)
        .map(|_| ())
        .map_err(|e| e.within("the starter policy (nothing was written)"))
}

/// What to do after `init` wrote the starter at `policy` (`compile` is the command line to run).
pub fn next_steps(s: &Starter, policy: &Path, compile: &str) -> String {
    let policy = policy.display();
    let versions = if s.from == s.to {
        vec![s.from.as_str()]
    } else {
        vec![s.from.as_str(), s.to.as_str()]
    };
    let binaries: Vec<String> = versions.iter().map(|v| pin_path(v)).collect();
    format!(
        "istio-canary: wrote {policy}, a starter policy for Istio {from} -> {to}\n\
         next:\n\
         \x20 1. put the istioctl binaries at {binaries} (relative to {policy}; README: Vendoring istioctl)\n\
         \x20 2. replace each {PIN_PLACEHOLDER} in {policy} with the sha256 of its binary (sha256sum)\n\
         \x20 3. check the waves, then run:\n\
         \x20    {compile}\n",
        from = s.from,
        to = s.to,
        binaries = binaries.join(" and "),
    )
}
