//! The upgrade policy (`canary.yaml`) and the IstioOperator specs it names: loading and validation.
//!
//! Owns: the policy file format (the public contract: field names may be extended, never renamed),
//! revision naming, every check that can be made from the inputs alone (versions, skew, revisions,
//! waves, pins present, Istio's support table), and turning all of that into a checked
//! `Policy`. Errors name the file, line and field. The checks report to a `Findings`: `load`
//! stops at the first error, `lint` collects every error and the warnings only lint shows, so
//! the two share every check. Must not: run istioctl, look at rendered objects, or write
//! anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use semver::Version;
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};

use crate::error::{io_reason, shown, Error, Result};
use crate::inventory::{self, Inventory};
use crate::istio::Revision;
use crate::manifest::ObjectId;
use crate::yamlin::{self, Kind};
use crate::yamlpath::{locate, Seg};

pub const API_VERSION: &str = "istio-canary.dev/v1alpha1";
pub const KIND: &str = "CanaryUpgrade";
/// The most minor versions one canary hop may skip, per Istio's documented support.
pub const MAX_SUPPORTED_MINOR_SKIP: u64 = 2;
/// The largest MAJOR, MINOR or PATCH number accepted: far above any Istio release, small enough
/// that version arithmetic stays cheap.
pub const MAX_VERSION_NUMBER: u64 = 10_000;
/// The longest revision: `istiod-<revision>` names a Service and a Deployment, which must be
/// DNS labels of at most 63 characters.
pub const MAX_REVISION_LEN: usize = 63 - "istiod-".len();
/// How many intermediate hops a skip error lists before it shortens the list.
const MAX_HOPS_SHOWN: u64 = 4;

// ---------------------------------------------------------------------------------------------
// File format (serde). Unknown fields are errors everywhere.

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyFile {
    #[schemars(extend("const" = API_VERSION))]
    api_version: String,
    #[schemars(extend("const" = KIND))]
    kind: String,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
    /// Accepted for the usual Kubernetes-style bookkeeping; not used by the compiler.
    #[serde(default)]
    #[allow(dead_code)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    #[allow(dead_code)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    istio_operator: PathBuf,
    from: FromSpec,
    to: ToSpec,
    #[serde(default)]
    revision_naming: RevisionNaming,
    #[serde(default = "default_max_minor_skip")]
    max_minor_skip: u64,
    /// The versions between `from` and `to`, in order: each a version or `{version, revision}`;
    /// without it, a jump of more than `maxMinorSkip` minors goes through the pinned versions.
    #[serde(default)]
    #[schemars(schema_with = "crate::policy_schema::path")]
    path: Vec<Value>,
    #[serde(default)]
    istioctl: BTreeMap<String, PinSpec>,
    waves: Vec<WaveSpec>,
    #[serde(default = "yes")]
    default_tag: bool,
    #[serde(default = "yes")]
    uninstall_old: bool,
    /// The Kubernetes version of the target cluster (`"1.24"`); optional.
    #[serde(default)]
    #[schemars(schema_with = "crate::policy_schema::kubernetes_version")]
    kubernetes_version: Option<Value>,
    /// Gateways (`namespace/name` of the gateway Deployment) the new spec may drop.
    #[serde(default)]
    remove_gateways: Vec<String>,
    /// When the rendered gateways move; optional.
    #[serde(default)]
    gateways: Option<GatewaysSpec>,
    /// The phase whose end state `live/` holds (an index or a phase name); optional.
    #[serde(default)]
    #[schemars(schema_with = "crate::policy_schema::phase")]
    promote: Option<Value>,
    /// The values of the `argocd/` and `flux/` objects; optional.
    #[serde(default)]
    gitops: Option<GitOpsSpec>,
    /// The cluster as it is: the saved output of `inventory::COMMAND`; optional.
    #[serde(default)]
    inventory: Option<PathBuf>,
    /// Revision tags other than `default` that namespaces select (`istio.io/rev=<tag>`), each
    /// moved to the new revision in its own phase; optional.
    #[serde(default)]
    tags: Vec<TagSpec>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GatewaysSpec {
    /// `install` or a wave's name: the rendered gateways move right after it (default: after
    /// the last wave).
    #[serde(default)]
    move_after: Option<String>,
    /// `inPlace` (default): each gateway Deployment is updated where it is. `canary`: a second
    /// Deployment per gateway for the new revision behind the same Service (and load-balancer
    /// address), then a cutover of the Service's selector to the new revision; the old
    /// Deployment goes with the uninstall (Istio 1.29 or later).
    #[serde(default)]
    mode: GatewayMode,
}

/// How the rendered gateways move to a new revision (`spec.gateways.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum GatewayMode {
    /// The gateway Deployments are updated in place.
    #[default]
    InPlace,
    /// A second Deployment per gateway, then the Service's selector switched over.
    Canary,
}

/// The first Istio minor whose gateway chart selects one revision's pods from the gateway
/// Service (`service.selectorLabels`, istio#58561), which canary gateways rely on.
pub const CANARY_GATEWAYS_SINCE: (u64, u64) = (1, 29);

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TagSpec {
    /// The tag's name, as namespaces select it (`istio.io/rev=prod-stable`).
    name: String,
    /// `install` or a wave's name: the tag moves right after it (default: after the last wave).
    #[serde(default)]
    move_after: Option<String>,
}

/// The JSON Schema of this file format (`istio-canary schema`), derived from the types above.
pub fn json_schema() -> String {
    crate::policy_schema::render::<PolicyFile>()
}

fn default_max_minor_skip() -> u64 {
    1
}
fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FromSpec {
    #[schemars(schema_with = "crate::policy_schema::version")]
    version: Value,
    revision: Option<String>,
    istio_operator: Option<PathBuf>,
    /// Whether the default tag and validator point at the old revision (what `istioctl install
    /// --revision R` creates when no default exists); default: true for a named revision.
    default_tag: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ToSpec {
    #[schemars(schema_with = "crate::policy_schema::version")]
    version: Value,
    revision: Option<String>,
}

/// The istioctl of one version: one binary (`path` and `sha256`), or one per platform
/// (`platforms`), of which a compile uses the one for the machine it runs on.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["path", "sha256"]}, {"required": ["platforms"]}]))]
struct PinSpec {
    /// The binary, relative to the policy (with `sha256`; or give `platforms` instead).
    #[serde(default)]
    #[schemars(with = "PathBuf")]
    path: Option<PathBuf>,
    /// The binary's sha256, as `sha256sum` prints it.
    #[serde(default)]
    #[schemars(with = "String")]
    sha256: Option<String>,
    /// One binary per platform, keyed `OS/ARCH` as Go names them (`linux/amd64`,
    /// `darwin/arm64`, …).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, BinarySpec>")]
    platforms: Option<BTreeMap<String, BinarySpec>>,
}

/// One pinned binary: where it is and its sha256.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct BinarySpec {
    path: PathBuf,
    sha256: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WaveSpec {
    name: String,
    #[serde(default)]
    namespaces: Vec<String>,
    /// `namespace/kind/name` of workloads moved one by one (needs an inventory).
    #[serde(default)]
    workloads: Vec<String>,
    /// `namespace/name` of Kubernetes Gateway API Gateways (gateways and waypoints) the wave
    /// moves by setting their own `istio.io/rev` label (needs an inventory).
    #[serde(default)]
    gateways: Vec<String>,
    /// Revision tags (besides `default`) that move right after the wave's namespaces, each in
    /// its own phase: the same as `spec.tags` with `moveAfter: <this wave>`.
    #[serde(default)]
    tags: Vec<String>,
}

/// How a revision name is derived from a version when the policy does not give one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RevisionNaming {
    /// `1.14.1` -> `1-14-1`
    #[default]
    Patch,
    /// `1.14.1` -> `1-14`
    Minor,
}

/// Parses a version field: a YAML string `MAJOR.MINOR.PATCH`.
fn parse_version(value: &Value) -> std::result::Result<Version, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => {
            return Err(format!(
                "version `{n}` was read as a number (YAML drops trailing zeros: 1.10 is 1.1); write the full version in quotes, e.g. \"1.14.1\""
            ))
        }
        _ => return Err("a version must be a string like \"1.14.1\"".to_string()),
    };
    let version = Version::parse(&text).map_err(|e| {
        format!(
            "{} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.14.1): {e}",
            shown(&text)
        )
    })?;
    if [version.major, version.minor, version.patch]
        .iter()
        .any(|n| *n > MAX_VERSION_NUMBER)
    {
        return Err(format!(
            "version {} has a number above {MAX_VERSION_NUMBER}; MAJOR, MINOR and PATCH may be at most {MAX_VERSION_NUMBER}",
            shown(&text)
        ));
    }
    Ok(version)
}

/// Parses `spec.kubernetesVersion`: a string `1.24` (a patch, `1.24.3`, or a leading `v` is
/// accepted and ignored).
fn parse_kubernetes_version(value: &Value) -> std::result::Result<crate::k8s::Minor, String> {
    let Value::String(text) = value else {
        return Err("kubernetesVersion must be a quoted string like \"1.24\" (YAML reads 1.30 as the number 1.3)".to_string());
    };
    let t = text.strip_prefix('v').unwrap_or(text);
    let mut parts = t.split('.');
    let num = |p: Option<&str>| p.and_then(|p| p.parse::<u64>().ok()).filter(|n| *n < 1000);
    match (
        num(parts.next()),
        num(parts.next()),
        parts.next(),
        parts.next(),
    ) {
        (Some(1), Some(minor), None, None) => Ok(crate::k8s::Minor::new(1, minor)),
        (Some(1), Some(minor), Some(p), None) if p.parse::<u64>().is_ok() => {
            Ok(crate::k8s::Minor::new(1, minor))
        }
        _ => Err(format!(
            "kubernetesVersion `{text}` is not a Kubernetes version like \"1.24\""
        )),
    }
}

/// Checks a revision name: a DNS-1123 label short enough for `istiod-<revision>`, or `default`.
/// `derived_from` is the version a derived revision comes from, for the message.
fn check_revision(s: &str, derived_from: Option<&Version>) -> std::result::Result<(), Error> {
    let what = match derived_from {
        None => format!("revision {}", shown(s)),
        Some(v) => format!(
            "revision {}, derived from version {},",
            shown(s),
            shown(&v.to_string())
        ),
    };
    if s.len() > MAX_REVISION_LEN {
        return Err(Error::new(format!(
            "{what} is {} characters long; at most {MAX_REVISION_LEN} fit: `istiod-<revision>` names the revision's Service and Deployment, which must be DNS labels of at most 63 characters",
            s.len()
        ))
        .with_help(format!(
            "choose a revision of at most {MAX_REVISION_LEN} characters"
        )));
    }
    if s.contains('.') {
        return Err(Error::new(format!(
            "{what} is not a DNS-1123 label: dots are not allowed"
        ))
        .with_help(format!("write `{}`", s.replace('.', "-"))));
    }
    check_dns1123(s)
        .map_err(|_| Error::new(format!("{what} is not a DNS-1123 label {DNS1123_RULES}")))
}

fn check_sha256(s: &str) -> std::result::Result<(), String> {
    if s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "sha256 {} must be 64 lowercase hex digits (the output of `sha256sum`)",
            shown(s)
        ))
    }
}

const DNS1123_RULES: &str = "(lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)";

/// Checks a DNS-1123 label: lowercase alphanumerics and `-`, starting and ending alphanumeric,
/// at most 63 characters.
pub fn check_dns1123(s: &str) -> std::result::Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let valid = !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| ok_char(c) || c == '-')
        && s.starts_with(ok_char)
        && s.ends_with(ok_char);
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{} is not a DNS-1123 label {DNS1123_RULES}",
            shown(s)
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// The checked policy.

/// An IstioOperator spec as read from disk.
#[derive(Debug, Clone)]
pub struct OperatorSpec {
    /// The path as it appears in messages (relative to the working directory when given so).
    pub path: PathBuf,
    /// The path as written in the policy (relative to the policy file), for the plan's inputs.
    pub declared: String,
    pub sha256: String,
    /// The file's text, for pointing errors at it.
    pub text: String,
    pub document: Mapping,
    /// `spec.values.global.istioNamespace`, default `istio-system`.
    pub istio_namespace: String,
}

/// One control plane of the upgrade: its version, revision and the spec it is rendered from.
#[derive(Debug, Clone)]
pub struct Release {
    pub version: Version,
    pub revision: Revision,
    pub operator: OperatorSpec,
    /// The vendored istioctl that renders this side.
    pub istioctl: Pin,
}

/// A vendored istioctl: where it is and the digest it must have.
#[derive(Debug, Clone)]
pub struct Pin {
    /// The binary this machine runs (of a multi-platform pin: its platform's).
    pub path: PathBuf,
    pub sha256: String,
    /// The platform whose binary `path` is, when the version pins one per platform.
    pub platform: Option<String>,
    /// Every binary the policy pins for this version, as `plan.json` and PLAN.md record them
    /// (`1.14.1`, or `1.14.1 linux/amd64` for each platform): the same whichever machine
    /// compiles, so the output does not depend on it.
    pub recorded: BTreeMap<String, String>,
    /// The pin's entry under `spec.istioctl`, so digest, existence and version errors point at it.
    pub location: Option<crate::error::Location>,
}

/// A revision tag the plan moves (`spec.tags`): in every hop, its webhook configuration is
/// re-applied from the new revision's render right after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagMove {
    pub name: String,
    /// `install` or a wave's name; `None`: after the last wave.
    pub after: Option<String>,
}

/// The platforms a pin may name (Go's `GOOS/GOARCH`, the names of istioctl's release
/// archives): those istio-canary runs on.
/// Each with the name istioctl's release archives give it.
pub const PLATFORMS: &[(&str, &str)] = &[
    ("darwin/amd64", "osx"),
    ("darwin/arm64", "osx-arm64"),
    ("linux/amd64", "linux-amd64"),
    ("linux/arm64", "linux-arm64"),
];

/// Names the platform whose binary a multi-platform pin gives, instead of this machine's (for
/// a binary run under emulation, such as Rosetta's `darwin/amd64` on `darwin/arm64`).
pub const PLATFORM_ENV: &str = "ISTIO_CANARY_PLATFORM";

/// The platform whose binary a multi-platform pin gives: `ISTIO_CANARY_PLATFORM` when set,
/// else this machine's.
fn selected_platform() -> Result<String> {
    let env = std::env::var_os(PLATFORM_ENV).map(|v| v.to_string_lossy().into_owned());
    platform_from(env.as_deref(), std::env::consts::OS, std::env::consts::ARCH)
}

/// The platform named by `env` (`ISTIO_CANARY_PLATFORM`), or else by Rust's `os` and `arch`
/// mapped to Go's names.
fn platform_from(env: Option<&str>, os: &str, arch: &str) -> Result<String> {
    if let Some(value) = env {
        check_platform(value).map_err(|m| Error::new(format!("{PLATFORM_ENV}: {m}")))?;
        return Ok(value.to_string());
    }
    let go_os = match os {
        "macos" => "darwin",
        other => other,
    };
    let go_arch = match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let name = format!("{go_os}/{go_arch}");
    check_platform(&name).map_err(|_| {
        Error::new(format!(
            "istio-canary does not know this machine's platform ({os}/{arch}) by Go's name"
        ))
        .with_help(format!(
            "set {PLATFORM_ENV} to the platform whose pin to use"
        ))
    })?;
    Ok(name)
}

fn check_platform(name: &str) -> std::result::Result<(), String> {
    if PLATFORMS.iter().any(|(known, _)| *known == name) {
        return Ok(());
    }
    let known: Vec<&str> = PLATFORMS.iter().map(|(known, _)| *known).collect();
    Err(format!(
        "platform {} is not one istio-canary runs on ({})",
        shown(name),
        known.join(", ")
    ))
}

/// How istioctl's release archives name a platform (`istioctl-<version>-<this>.tar.gz`).
fn release_suffix(platform: &str) -> &str {
    PLATFORMS
        .iter()
        .find(|(name, _)| *name == platform)
        .map_or(platform, |(_, archive)| archive)
}

/// A pin's binaries, checked: one, or one per platform.
enum Binaries {
    One(BinarySpec),
    Platforms(BTreeMap<String, BinarySpec>),
}

#[derive(Debug, Clone)]
pub struct Wave {
    pub name: String,
    pub namespaces: Vec<String>,
    /// Workloads moved one by one (their pod template relabelled), in policy order.
    pub workloads: Vec<ObjectId>,
    /// Gateway API Gateways moved by their own `istio.io/rev` label, in policy order.
    pub gateways: Vec<ObjectId>,
}

/// `spec.inventory`: the cluster as it is, and the file it came from.
#[derive(Debug, Clone)]
pub struct InventoryFile {
    /// The path as it appears in messages.
    pub path: PathBuf,
    /// The path as written in the policy (relative to the policy file), for the plan's inputs.
    pub declared: String,
    pub sha256: String,
    pub inventory: Inventory,
}

/// A policy that passed every input check. Everything after `policy` works from this.
#[derive(Debug, Clone)]
pub struct Policy {
    pub path: PathBuf,
    pub sha256: String,
    pub name: String,
    pub from: Release,
    /// The versions the upgrade passes through between `from` and `to`, in order (empty for one
    /// hop): `spec.path`, or the newest pinned patch of each minor the skew rule needs.
    pub via: Vec<Release>,
    pub to: Release,
    pub revision_naming: RevisionNaming,
    pub max_minor_skip: u64,
    pub waves: Vec<Wave>,
    pub default_tag: bool,
    pub uninstall_old: bool,
    /// The old revision owns the default tag and validator (`spec.from.defaultTag`, assumed for
    /// a named revision: `istioctl install` creates them when no default exists).
    pub from_default_tag: bool,
    /// Whether `from_default_tag` was written in the policy (else it is an assumption).
    pub from_default_tag_declared: bool,
    /// The target cluster's Kubernetes minor, when the policy names it.
    pub kubernetes_version: Option<crate::k8s::Minor>,
    /// `namespace/name` of gateway Deployments the new spec may drop (deleted with the old
    /// revision).
    pub remove_gateways: BTreeSet<String>,
    /// `spec.promote` (or `--promote`): the phase whose end state `live/` holds.
    pub promote: Option<Promote>,
    /// `spec.gitops`: what the policy says about the `argocd/` and `flux/` objects.
    pub gitops: GitOps,
    /// `spec.inventory`: the cluster as it is (without it, state 0 is assumed).
    pub inventory: Option<InventoryFile>,
    /// `spec.tags`: the revision tags the plan moves besides `default`, in policy order.
    pub tags: Vec<TagMove>,
    /// `spec.gateways.moveAfter`: `install` or a wave after which the rendered gateways move
    /// (`None`: after the last wave).
    pub gateways_after: Option<String>,
    /// `spec.gateways.mode`: in place, or a canary Deployment and a Service cutover.
    pub gateway_mode: GatewayMode,
}

impl Policy {
    /// Every control plane of the upgrade in order: `from`, the versions passed through, `to`.
    /// Hop `i` goes from `releases()[i]` to `releases()[i + 1]`.
    pub fn releases(&self) -> Vec<&Release> {
        std::iter::once(&self.from)
            .chain(&self.via)
            .chain(std::iter::once(&self.to))
            .collect()
    }
}

/// A phase named by `spec.promote` or `--promote`: resolved against the plan's phases by `plan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhaseRef {
    /// 1-based phase index (`3`, `"03"`).
    Index(u64),
    /// A phase name (`migrate-canary`) or directory (`03-migrate-canary`).
    Name(String),
}

impl fmt::Display for PhaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PhaseRef::Index(i) => write!(f, "{i}"),
            PhaseRef::Name(n) => write!(f, "{n}"),
        }
    }
}

/// The promote point and where it was given, so an unknown phase is reported there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promote {
    pub phase: PhaseRef,
    /// `spec.promote` or `--promote`.
    pub source: &'static str,
    pub location: Option<crate::error::Location>,
}

/// Reads a promote point: a positive phase index (a YAML number or a string of digits such as
/// `"03"`), or a phase name or directory (a DNS-1123 label).
pub fn parse_phase_ref(value: &Value) -> std::result::Result<PhaseRef, String> {
    let text = match value {
        Value::Number(n) => match n.as_u64() {
            Some(i) if i >= 1 => return Ok(PhaseRef::Index(i)),
            _ => {
                return Err(format!(
                    "promote `{n}` is not a phase: give a phase index from 1, or a phase name like `migrate-canary`"
                ))
            }
        },
        Value::String(s) => s.as_str(),
        _ => {
            return Err(
                "promote must be a phase index (3) or a phase name (migrate-canary)".to_string(),
            )
        }
    };
    parse_phase_text(text)
}

/// Reads a promote point given as text (`--promote 3`, `--promote migrate-canary`).
pub fn parse_phase_text(text: &str) -> std::result::Result<PhaseRef, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.trim_start_matches('0').parse::<u64>() {
            Ok(i) if i >= 1 => Ok(PhaseRef::Index(i)),
            _ => Err(format!(
                "promote {} is not a phase: phase indexes start at 1",
                shown(text)
            )),
        };
    }
    check_dns1123(text).map_err(|why| {
        format!(
            "promote {} is neither a phase index nor a phase name: {why}",
            shown(text)
        )
    })?;
    Ok(PhaseRef::Name(text.to_string()))
}

/// A version the upgrade passes through: a `spec.path` entry, or chosen from the pins.
#[derive(Debug)]
struct Stop {
    version: Version,
    /// The revision the path entry names (else derived from the version).
    revision: Option<String>,
}

/// Reads a `spec.path` entry: a version (`"1.14.6"`) or `{version: "1.14.6", revision: r}`.
fn parse_stop(entry: &Value) -> std::result::Result<Stop, String> {
    let Value::Mapping(m) = entry else {
        return Ok(Stop {
            version: parse_version(entry)?,
            revision: None,
        });
    };
    let (mut version, mut revision) = (None, None);
    for (k, v) in m {
        match k.as_str() {
            Some("version") => version = Some(parse_version(v)?),
            Some("revision") => match v {
                Value::String(r) => revision = Some(r.clone()),
                _ => return Err("a path entry's revision must be a string like \"1-14-6\"".into()),
            },
            _ => {
                return Err(format!(
                    "a path entry has the fields `version` and `revision`, not {}",
                    shown(&crate::cluster::scalar(k).unwrap_or_default())
                ))
            }
        }
    }
    match version {
        Some(version) => Ok(Stop { version, revision }),
        None => Err("a path entry needs a `version`".into()),
    }
}

/// One hop of the path may move at most `max_skip` minors, within one major version.
fn check_hop_skip(from: &Version, to: &Version, max_skip: u64) -> Result<()> {
    if to.major != from.major {
        return Err(Error::new(format!(
            "cannot plan a hop across major versions ({from} -> {to})"
        )));
    }
    let skip = to.minor - from.minor;
    if skip <= max_skip {
        return Ok(());
    }
    let mut help = format!("add a version of each minor between {from} and {to} to spec.path");
    if skip <= MAX_SUPPORTED_MINOR_SKIP {
        help.push_str(&format!(
            ", or set maxMinorSkip: {skip} (Istio supports at most {MAX_SUPPORTED_MINOR_SKIP} minors per canary hop)"
        ));
    }
    Err(Error::new(format!(
        "{from} -> {to} moves {skip} minor version{} in one hop; maxMinorSkip is {max_skip}",
        if skip == 1 { "" } else { "s" }
    ))
    .with_help(help))
}

/// The versions between `from` and `to`: `spec.path` as written (each hop forward and within
/// `maxMinorSkip`), or, when `to` is more than `maxMinorSkip` minors ahead, the newest pinned
/// patch of the farthest minor each hop can reach. Every minor no pin covers is listed at once.
fn resolve_path(
    path: &[Value],
    from: &Version,
    to: &Version,
    max_skip: u64,
    pinned: &BTreeSet<&Version>,
    at: &dyn Fn(&[Seg<'_>], Error) -> Error,
) -> Result<Vec<Stop>> {
    use Seg::{Index, Key};
    if !path.is_empty() {
        let mut stops: Vec<Stop> = Vec::new();
        for (i, entry) in path.iter().enumerate() {
            let seg = [Key("spec"), Key("path"), Index(i)];
            let stop =
                parse_stop(entry).map_err(|m| at(&seg, Error::new(format!("spec.path: {m}"))))?;
            let (prev, prev_field) = match stops.last() {
                Some(p) => (&p.version, format!("spec.path[{}]", i - 1)),
                None => (from, "spec.from.version".to_string()),
            };
            if stop.version <= *prev {
                return Err(at(
                    &seg,
                    Error::new(format!(
                        "spec.path goes backwards: {} comes after {prev} ({prev_field})",
                        stop.version
                    ))
                    .with_help("list the versions between spec.from.version and spec.to.version in ascending order"),
                ));
            }
            if stop.version >= *to {
                return Err(at(
                    &seg,
                    Error::new(format!(
                        "spec.path entry {} is not before spec.to.version {to}",
                        stop.version
                    ))
                    .with_help("spec.path lists only the versions between spec.from.version and spec.to.version"),
                ));
            }
            check_hop_skip(prev, &stop.version, max_skip).map_err(|e| at(&seg, e))?;
            stops.push(stop);
        }
        let last = stops.last().map(|s| &s.version).unwrap_or(from);
        check_hop_skip(last, to, max_skip)
            .map_err(|e| at(&[Key("spec"), Key("to"), Key("version")], e))?;
        return Ok(stops);
    }
    let skip = to.minor - from.minor;
    if skip <= max_skip {
        return Ok(Vec::new());
    }
    if max_skip == 0 {
        return check_hop_skip(from, to, max_skip)
            .map(|()| Vec::new())
            .map_err(|mut e| {
                e.help = (skip <= MAX_SUPPORTED_MINOR_SKIP).then(|| format!(
                    "set maxMinorSkip: {skip} (Istio supports at most {MAX_SUPPORTED_MINOR_SKIP} minors per canary hop)"
                ));
                at(&[Key("spec"), Key("to"), Key("version")], e)
            });
    }
    // From each stop, the farthest minor within reach that has a pinned release.
    let (mut stops, mut missing) = (Vec::new(), Vec::new());
    let mut minor = from.minor;
    while to.minor - minor > max_skip {
        let reach = minor + 1..=minor + max_skip;
        let best = pinned
            .iter()
            .copied()
            .filter(|v| v.major == from.major && v.pre.is_empty() && reach.contains(&v.minor))
            .max();
        match best {
            Some(v) => {
                minor = v.minor;
                stops.push(Stop {
                    version: v.clone(),
                    revision: None,
                });
            }
            None => {
                minor += max_skip;
                missing.push(format!("{}.{minor}", from.major));
            }
        }
    }
    if missing.is_empty() {
        return Ok(stops);
    }
    let shown_missing = if missing.len() > MAX_HOPS_SHOWN as usize {
        format!(
            "{}, … ({} minors in all)",
            missing[..MAX_HOPS_SHOWN as usize].join(", "),
            missing.len()
        )
    } else {
        missing.join(", ")
    };
    let mut help = format!(
        "pin a release of each minor listed (`\"{m}.N\": {{path: vendor/istioctl-{m}.N, sha256: <sha256sum of the binary>}}` under spec.istioctl; each hop goes to the newest pinned patch of the farthest minor it may reach), or list the versions to pass through in spec.path",
        m = missing[0]
    );
    if skip <= MAX_SUPPORTED_MINOR_SKIP {
        help.push_str(&format!(
            ", or set maxMinorSkip: {skip} (Istio supports at most {MAX_SUPPORTED_MINOR_SKIP} minors per canary hop)"
        ));
    }
    Err(at(
        &[Key("spec"), Key("to"), Key("version")],
        Error::new(format!(
            "{from} -> {to} moves {skip} minor versions, more than maxMinorSkip ({max_skip}) allows in one hop, and no istioctl is pinned for Istio {shown_missing} to pass through"
        ))
        .with_help(help),
    ))
}

/// No two revisions of one path alike: `seen` holds the earlier ones with where they come from.
fn check_distinct_revision(
    revision: &Revision,
    version: &Version,
    seen: &[(Revision, String)],
) -> Result<()> {
    match seen.iter().find(|(r, _)| r == revision) {
        None => Ok(()),
        Some((_, field)) => Err(Error::new(format!(
            "{field} and {version} would both be revision `{revision}`: every hop installs its control plane beside the previous one, so no two versions of the path may share a revision"
        ))
        .with_help(format!(
            "use `revisionNaming: patch`, or give the path entry an explicit revision: `{{version: \"{version}\", revision: {}-b}}`",
            revision.label()
        ))),
    }
}

/// Derives a revision name from a version.
pub fn revision_for(version: &Version, naming: RevisionNaming) -> String {
    let base = match naming {
        RevisionNaming::Patch => format!("{}-{}-{}", version.major, version.minor, version.patch),
        RevisionNaming::Minor => format!("{}-{}", version.major, version.minor),
    };
    if version.pre.is_empty() || naming == RevisionNaming::Minor {
        base
    } else {
        format!("{base}-{}", version.pre.as_str().replace('.', "-")).to_lowercase()
    }
}

/// Reads a file the policy names (an IstioOperator spec), given its path as the policy's
/// directory joined with what the policy says. `load` reads the file system; tests and fuzz
/// targets pass files held in memory.
pub type ReadFile<'a> = &'a dyn Fn(&Path, u64) -> std::io::Result<Vec<u8>>;

/// Reads and checks a policy file and the IstioOperator specs it names. Each file is read by
/// `yamlin::read_limited` (a regular file only) with its size limit (`yamlin::POLICY_LIMIT`,
/// `yamlin::SPEC_LIMIT`) and no further.
pub fn load(path: &Path) -> Result<Policy> {
    load_from(&read_policy(path)?, path, &read_named)
}

/// Reads a policy file as `load` does and runs every check of `load_from` on it, collecting
/// every error and warning (`lint_from`); a file that cannot be read is one error.
pub fn lint(path: &Path) -> Findings {
    match read_policy(path) {
        Ok(bytes) => lint_from(&bytes, path, &read_named),
        Err(e) => Findings {
            all: true,
            errors: vec![e],
            warnings: Vec::new(),
        },
    }
}

/// The policy file's bytes, at most `yamlin::POLICY_LIMIT`.
fn read_policy(path: &Path) -> Result<Vec<u8>> {
    yamlin::read_limited(path, yamlin::POLICY_LIMIT)
        .map_err(|e| Error::io("cannot read policy", path, &e).with_help(MISSING_POLICY_HELP))
}

/// Reads a file the policy names, from the file system.
fn read_named(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    yamlin::read_limited(path, limit)
}

/// Checks a policy given as bytes. `path` names it in messages and is where the files it names
/// are relative to; `read` reads those files.
pub fn load_from(bytes: &[u8], path: &Path, read: ReadFile<'_>) -> Result<Policy> {
    check_policy(bytes, path, read, &mut Findings::default())
}

/// Runs every check of `load_from` on a policy and collects what they find instead of stopping
/// at the first error (`istio-canary lint`), plus the warnings only lint reports. The errors come
/// in the order `load_from` meets them, so the first is the one `load_from` returns.
pub fn lint_from(bytes: &[u8], path: &Path, read: ReadFile<'_>) -> Findings {
    let mut findings = Findings {
        all: true,
        ..Findings::default()
    };
    if let Err(e) = check_policy(bytes, path, read, &mut findings) {
        // Every error of a collecting check was recorded where it was found; this is only a
        // guard against reporting nothing for an error.
        if !findings.errors.contains(&e) {
            findings.errors.push(e);
        }
    }
    findings
}

/// What the checks of a policy found. One set of checks (`check_policy`) serves both callers:
/// `load_from` stops at the first error (the default), `lint_from` collects every error and
/// warning.
#[derive(Debug, Default)]
pub struct Findings {
    /// Collect (lint) rather than stop at the first error (load).
    all: bool,
    pub errors: Vec<Error>,
    pub warnings: Vec<Error>,
}

impl Findings {
    /// Reports an error: the end of the check when loading, one more finding when linting.
    fn error(&mut self, e: Error) -> Result<()> {
        if self.all {
            self.errors.push(e);
            Ok(())
        } else {
            Err(e)
        }
    }

    /// Reports a warning: only lint shows warnings.
    fn warning(&mut self, w: Error) {
        if self.all {
            self.warnings.push(w);
        }
    }

    /// The outcome of a check that yields a value: when linting, an error is recorded and kept,
    /// so the checks that need the value are skipped and the others still run.
    fn keep<T>(&mut self, r: Result<T>) -> Result<Result<T>> {
        match r {
            Ok(v) => Ok(Ok(v)),
            Err(e) => {
                self.error(e.clone())?;
                Ok(Err(e))
            }
        }
    }
}

/// Every check of a policy. Each error goes through `f`: loading returns at the first, linting
/// records it and goes on with every check that does not need the value it refused.
fn check_policy(bytes: &[u8], path: &Path, read: ReadFile<'_>, f: &mut Findings) -> Result<Policy> {
    let text = f.keep(yamlin::decode(bytes, Kind::Policy, path))??;
    let file: PolicyFile = f.keep(yamlin::from_str(text, path))??;
    let at = |segs: &[Seg<'_>], err: Error| -> Error {
        match locate(text, segs) {
            Some((line, col)) => err.at(path, text, line, col),
            None => err.in_file(path),
        }
    };
    use Seg::{Index, Key};

    if file.api_version != API_VERSION {
        f.error(at(
            &[Key("apiVersion")],
            Error::new(format!(
                "apiVersion {} is not supported; expected `{API_VERSION}`",
                shown(&file.api_version)
            )),
        ))?;
    }
    if file.kind != KIND {
        f.error(at(
            &[Key("kind")],
            Error::new(format!("kind {} is not `{KIND}`", shown(&file.kind))),
        ))?;
    }
    let spec = file.spec;
    if let Err(why) = check_dns1123(&file.metadata.name) {
        f.error(at(
            &[Key("metadata"), Key("name")],
            Error::new(format!("metadata.name: {why}")),
        ))?;
    }
    let from_version = f.keep(
        parse_version(&spec.from.version)
            .map_err(|m| at(&[Key("spec"), Key("from"), Key("version")], Error::new(m))),
    )?;
    let to_version = f.keep(
        parse_version(&spec.to.version)
            .map_err(|m| at(&[Key("spec"), Key("to"), Key("version")], Error::new(m))),
    )?;
    let mut pins: BTreeMap<Version, (String, Binaries)> = BTreeMap::new();
    for (key, pin) in spec.istioctl {
        let seg = [Key("spec"), Key("istioctl"), Key(key.as_str())];
        let Ok(version) = f.keep(
            parse_version(&Value::String(key.clone()))
                .map_err(|m| at(&seg, Error::new(format!("spec.istioctl: {m}")))),
        )?
        else {
            continue;
        };
        let binaries = match (pin.path, pin.sha256, pin.platforms) {
            (Some(path), Some(sha256), None) => Binaries::One(BinarySpec { path, sha256 }),
            (None, None, Some(platforms)) if !platforms.is_empty() => {
                for name in platforms.keys() {
                    if let Err(m) = check_platform(name) {
                        f.error(at(
                            &[Key("spec"), Key("istioctl"), Key(key.as_str()), Key("platforms"), Key(name)],
                            Error::new(m).with_help("name each binary by the platform it runs on, as istioctl's release archives do (istioctl-1.22.0-osx-arm64.tar.gz is darwin/arm64)"),
                        ))?;
                    }
                }
                Binaries::Platforms(platforms)
            }
            (path, sha256, platforms) => {
                let what = match (path, sha256, platforms) {
                    (Some(_), None, None) => "has a path but no sha256",
                    (None, Some(_), None) => "has a sha256 but no path",
                    (None, None, None) => "names no binary",
                    (None, None, Some(_)) => "has no platforms",
                    _ => "has both path/sha256 and platforms",
                };
                f.error(at(
                    &seg,
                    Error::new(format!("the istioctl pin of {key} {what}")),
                )
                .with_help(format!(
                    "pin one binary (`\"{key}\": {{path: vendor/istioctl-{key}, sha256: …}}`) or one per platform (`\"{key}\": {{platforms: {{linux/amd64: {{path: …, sha256: …}}, darwin/arm64: {{path: …, sha256: …}}}}}}`)"
                )))?;
                continue;
            }
        };
        let digests: Vec<(Vec<Seg<'_>>, &str)> = match &binaries {
            Binaries::One(b) => vec![(vec![Key("sha256")], b.sha256.as_str())],
            Binaries::Platforms(p) => p
                .iter()
                .map(|(name, b)| {
                    (
                        vec![Key("platforms"), Key(name.as_str()), Key("sha256")],
                        b.sha256.as_str(),
                    )
                })
                .collect(),
        };
        for (field, digest) in digests {
            if let Err(m) = check_sha256(digest) {
                let mut segs = vec![Key("spec"), Key("istioctl"), Key(key.as_str())];
                segs.extend(field);
                f.error(at(&segs, Error::new(m)))?;
            }
        }
        pins.insert(version, (key, binaries));
    }
    if let Some(r) = &spec.from.revision {
        if let Err(e) = check_revision(r, None) {
            f.error(at(&[Key("spec"), Key("from"), Key("revision")], e))?;
        }
    }
    if let Some(r) = &spec.to.revision {
        if let Err(e) = check_revision(r, None) {
            f.error(at(&[Key("spec"), Key("to"), Key("revision")], e))?;
        }
    }

    // Versions and skew.
    if let (Ok(from_version), Ok(to_version)) = (&from_version, &to_version) {
        check_skew(from_version, to_version, spec.max_minor_skip, f, &at)?;
    } else if spec.max_minor_skip > MAX_SUPPORTED_MINOR_SKIP {
        f.error(max_minor_skip_error(spec.max_minor_skip, &at))?;
    }
    // The path: the versions passed through, one hop each.
    let stops: Vec<Stop> = match (&from_version, &to_version) {
        (Ok(from), Ok(to)) if from < to && from.major == to.major => {
            let pinned: BTreeSet<&Version> = pins.keys().collect();
            f.keep(resolve_path(
                &spec.path,
                from,
                to,
                spec.max_minor_skip,
                &pinned,
                &at,
            ))?
            .unwrap_or_default()
        }
        _ => Vec::new(),
    };

    // Revisions.
    let derived = |side: &'static str, version: &Version| -> Result<Revision> {
        let name = revision_for(version, spec.revision_naming);
        check_revision(&name, Some(version)).map_err(|mut e| {
            e.help = Some(format!(
                "set spec.{side}.revision to a DNS-1123 label of at most {MAX_REVISION_LEN} characters"
            ));
            at(&[Key("spec"), Key(side), Key("version")], e)
        })?;
        Ok(Revision::Named(name))
    };
    let from_revision = match (&spec.from.revision, &from_version) {
        (Some(r), _) if r == "default" => Ok(Revision::Default),
        (Some(r), _) => Ok(Revision::Named(r.clone())),
        (None, Ok(v)) => f.keep(derived("from", v))?,
        (None, Err(e)) => Err(e.clone()),
    };
    let to_revision = match (&spec.to.revision, &to_version) {
        (Some(r), _) if r == "default" => f.keep(Err(at(
                &[Key("spec"), Key("to"), Key("revision")],
                Error::new("the target revision cannot be `default`")
                    .with_help("a canary upgrade installs the new control plane as a named revision beside the old one; omit `revision` to derive it from the version"),
            )))?,
        (Some(r), _) => Ok(Revision::Named(r.clone())),
        (None, Ok(v)) => f.keep(derived("to", v))?,
        (None, Err(e)) => Err(e.clone()),
    };
    if let (Ok(from_revision), Ok(to_revision)) = (&from_revision, &to_revision) {
        if from_revision == to_revision {
            let seg = if spec.to.revision.is_some() {
                Key("revision")
            } else {
                Key("version")
            };
            f.error(at(
                &[Key("spec"), Key("to"), seg],
                Error::new(format!(
                    "the old and the new control plane would both be revision `{to_revision}`"
                ))
                .with_help("two revisions side by side need different names: set `to.revision`, or use `revisionNaming: patch`"),
            ))?;
        }
    }

    // The revisions between: each derived from its version unless the path entry names one, and
    // no two revisions of the whole path alike (two control planes side by side in one hop, and
    // an uninstall that must not delete a later hop's revision).
    let mut via_revisions = Vec::new();
    let mut seen: Vec<(Revision, String)> = Vec::new();
    if let Ok(r) = &from_revision {
        seen.push((r.clone(), "spec.from".into()));
    }
    for (i, stop) in stops.iter().enumerate() {
        let seg = [Key("spec"), Key("path"), Index(i)];
        let revision = match &stop.revision {
            Some(r) if r == "default" => Err(at(
                &seg,
                Error::new(format!("path entry {}: a revision passed through cannot be `default`", stop.version))
                    .with_help("every hop installs its new control plane as a named revision beside the old one; omit `revision` to derive it from the version"),
            )),
            Some(r) => check_revision(r, None)
                .map(|()| Revision::Named(r.clone()))
                .map_err(|e| at(&seg, e)),
            None => {
                let name = revision_for(&stop.version, spec.revision_naming);
                check_revision(&name, Some(&stop.version))
                    .map(|()| Revision::Named(name))
                    .map_err(|e| at(&seg, e))
            }
        };
        let revision = f.keep(revision.and_then(|r| {
            check_distinct_revision(&r, &stop.version, &seen)
                .map(|()| r)
                .map_err(|e| at(&seg, e))
        }))?;
        if let Ok(r) = &revision {
            seen.push((r.clone(), format!("spec.path[{i}] ({})", stop.version)));
        }
        via_revisions.push(revision);
    }
    if let (false, Ok(to_revision), Ok(to_version)) = (stops.is_empty(), &to_revision, &to_version)
    {
        if let Err(e) = check_distinct_revision(to_revision, to_version, &seen) {
            f.error(at(&[Key("spec"), Key("to"), Key("version")], e))?;
        }
    }

    // A pin for every version the plan uses (pins for other versions are unused); every missing
    // one is listed at once.
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut wanted: Vec<(&Version, String)> = Vec::new();
    if let Ok(v) = &from_version {
        wanted.push((v, "spec.from.version".to_string()));
    }
    wanted.extend(
        stops
            .iter()
            .enumerate()
            .map(|(i, s)| (&s.version, format!("spec.path[{i}]"))),
    );
    if let Ok(v) = &to_version {
        wanted.push((v, "spec.to.version".to_string()));
    }
    let missing: Vec<(&Version, String)> = wanted
        .iter()
        .filter(|(v, _)| !pins.contains_key(*v))
        .cloned()
        .collect();
    let pins_missing = match missing.first() {
        None => Ok(()),
        Some((first, _)) => {
            let listed: Vec<String> = missing
                .iter()
                .map(|(v, field)| format!("{v} ({field})"))
                .collect();
            f.keep(Err(at(
                &[Key("spec"), Key("istioctl")],
                Error::new(format!("no istioctl is pinned for {}", listed.join(", ")))
                    .with_help(format!(
                        "add `\"{first}\": {{path: vendor/istioctl-{first}, sha256: <sha256sum of the binary>}}` under spec.istioctl, one entry per version"
                    )),
            )))?
        }
    };
    // Every missing pin was listed above; a pin is taken once per version of the path.
    let mut take_pin = |version: &Version| -> Result<Pin> {
        let Some((key, binaries)) = pins.remove(version) else {
            return Err(Error::new(format!(
                "internal error: the pin of {version} was checked and is gone"
            )));
        };
        let entry = [Key("spec"), Key("istioctl"), Key(key.as_str())];
        let (chosen, platform, recorded) = match binaries {
            Binaries::One(b) => {
                let recorded = BTreeMap::from([(key.clone(), b.sha256.clone())]);
                (b, None, recorded)
            }
            Binaries::Platforms(mut by_platform) => {
                let recorded = by_platform
                    .iter()
                    .map(|(name, b)| (format!("{key} {name}"), b.sha256.clone()))
                    .collect();
                let platform = selected_platform().map_err(|e| at(&entry, e))?;
                let Some(b) = by_platform.remove(&platform) else {
                    let pinned: Vec<&str> = by_platform.keys().map(String::as_str).collect();
                    return Err(at(
                        &[Key("spec"), Key("istioctl"), Key(key.as_str()), Key("platforms")],
                        Error::new(format!(
                            "no istioctl {version} is pinned for {platform}, the platform this compile uses; the pin has {}",
                            pinned.join(", ")
                        )),
                    )
                    .with_help(format!(
                        "add `{platform}: {{path: …, sha256: …}}` under spec.istioctl.\"{key}\".platforms (the sha256 of istioctl from istioctl-{version}-{}.tar.gz)",
                        release_suffix(&platform)
                    )));
                };
                (b, Some(platform), recorded)
            }
        };
        let location_segs: Vec<Seg<'_>> = match &platform {
            Some(name) => vec![
                Key("spec"),
                Key("istioctl"),
                Key(key.as_str()),
                Key("platforms"),
                Key(name.as_str()),
            ],
            None => entry.to_vec(),
        };
        Ok(Pin {
            path: dir.join(chosen.path),
            sha256: chosen.sha256,
            recorded,
            location: at(&location_segs, Error::new("")).location,
            platform,
        })
    };
    let (from_pin, via_pins, to_pin) = match (&pins_missing, &from_version, &to_version) {
        (Ok(()), Ok(from), Ok(to)) => {
            let from_pin = f.keep(take_pin(from))?;
            let mut via_pins = Vec::new();
            for stop in &stops {
                via_pins.push(f.keep(take_pin(&stop.version))?);
            }
            (from_pin, via_pins, f.keep(take_pin(to))?)
        }
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            (Err(e.clone()), Vec::new(), Err(e.clone()))
        }
    };
    for (key, _) in pins.values() {
        f.warning(
            at(
                &[Key("spec"), Key("istioctl"), Key(key.as_str())],
                Error::new(format!(
                    "spec.istioctl pins {}, which no version of the upgrade's path names (spec.from.version, spec.path or the pins it goes through, spec.to.version): the upgrade never runs it",
                    shown(key)
                )),
            )
            .with_help("remove the pin, or check that from/to name the versions you meant"),
        );
    }

    // Waves.
    if spec.waves.is_empty() {
        f.error(at(
            &[Key("spec"), Key("waves")],
            Error::new("spec.waves is empty: at least one wave of namespaces is needed"),
        ))?;
    }
    let mut wave_names = BTreeSet::new();
    let mut namespace_wave: BTreeMap<&str, &str> = BTreeMap::new();
    for (wi, wave) in spec.waves.iter().enumerate() {
        if let Err(why) = check_dns1123(&wave.name) {
            f.error(at(
                &[Key("spec"), Key("waves"), Index(wi), Key("name")],
                Error::new(format!("wave name {why}")),
            ))?;
        }
        for (ni, ns) in wave.namespaces.iter().enumerate() {
            if let Err(why) = check_dns1123(ns) {
                f.error(at(
                    &[
                        Key("spec"),
                        Key("waves"),
                        Index(wi),
                        Key("namespaces"),
                        Index(ni),
                    ],
                    Error::new(format!("namespace {why}")),
                ))?;
            }
        }
        for (ni, ns) in wave.namespaces.iter().enumerate() {
            if crate::k8s::SYSTEM_NAMESPACES.contains(&ns.as_str()) {
                f.error(at(
                    &[Key("spec"), Key("waves"), Index(wi), Key("namespaces"), Index(ni)],
                    Error::new(format!(
                        "namespace `{ns}` is a Kubernetes system namespace and cannot be a wave"
                    ))
                    .with_help("a wave relabels the namespace and restarts every workload in it; the cluster's own components are not meshed this way"),
                ))?;
            }
        }
        if !wave_names.insert(wave.name.as_str()) {
            f.error(at(
                &[Key("spec"), Key("waves"), Index(wi), Key("name")],
                Error::new(format!("wave name `{}` is used twice", wave.name)),
            ))?;
        }
        if wave.namespaces.is_empty()
            && wave.workloads.is_empty()
            && wave.gateways.is_empty()
            && wave.tags.is_empty()
        {
            f.error(at(
                &[Key("spec"), Key("waves"), Index(wi), Key("namespaces")],
                Error::new(format!("wave `{}` has no namespaces", wave.name))
                    .with_help("a wave moves namespaces (`namespaces`), revision tags (`tags`) or, with an inventory, single workloads (`workloads: [namespace/deployment/name]`) and Gateways (`gateways: [namespace/name]`)"),
            ))?;
        }
        for (ni, ns) in wave.namespaces.iter().enumerate() {
            if let Some(first) = namespace_wave.insert(ns.as_str(), wave.name.as_str()) {
                f.error(at(
                    &[
                        Key("spec"),
                        Key("waves"),
                        Index(wi),
                        Key("namespaces"),
                        Index(ni),
                    ],
                    Error::new(format!(
                        "namespace `{}` is in wave `{first}` and again in wave `{}`",
                        ns, wave.name
                    ))
                    .with_help("each namespace moves exactly once: keep it in one wave"),
                ))?;
            }
        }
    }

    // Tags and deletion.
    let from_is_default = from_revision
        .as_ref()
        .is_ok_and(|r| *r == Revision::Default);
    let from_default_tag = spec.from.default_tag.unwrap_or(
        from_revision
            .as_ref()
            .is_ok_and(|r| *r != Revision::Default),
    );
    if from_default_tag && from_is_default {
        f.error(at(
            &[Key("spec"), Key("from"), Key("defaultTag")],
            Error::new(
                "from.defaultTag: true with an unrevisioned old install (revision `default`): its own injector serves the default, and istioctl creates no default tag for it",
            )
            .with_help("remove from.defaultTag, or give from.revision if the old install is a named revision"),
        ))?;
    }
    if let Ok(from_revision) = &from_revision {
        if !spec.default_tag && spec.uninstall_old {
            f.error(at(
                &[Key("spec"), Key("defaultTag")],
                Error::new(format!(
                    "defaultTag: false with uninstallOld: true would delete revision {from_revision} while the default tag may still point at it"
                ))
                .with_help("pods in namespaces labelled istio-injection=enabled could then not start; move the tag (defaultTag: true) or keep the old revision (uninstallOld: false)"),
            ))?;
        }
        if !spec.uninstall_old {
            f.warning(
                at(
                    &[Key("spec"), Key("uninstallOld")],
                    Error::new(format!(
                        "uninstallOld: false leaves revision {from_revision} installed after the upgrade: its istiod, webhooks and gateways keep running, and the plan has no uninstall phase"
                    )),
                )
                .with_help("set uninstallOld: true (the default) once nothing needs the old revision, or delete it with a later plan"),
            );
        }
    }

    let kubernetes_version = match &spec.kubernetes_version {
        None => {
            f.warning(
                at(&[Key("spec")], Error::new(
                    "spec.kubernetesVersion is not set: the plan cannot check Istio's support table or that the cluster serves every API version the new revision uses",
                ))
                .with_help("set the Kubernetes version of the target cluster, e.g. kubernetesVersion: \"1.30\""),
            );
            Ok(None)
        }
        Some(v) => f.keep(parse_kubernetes_version(v).map(Some).map_err(|m| {
            at(
                &[Key("spec"), Key("kubernetesVersion")],
                Error::new(m).with_help("the Kubernetes version of the cluster the plan is for, e.g. kubernetesVersion: \"1.24\""),
            )
        }))?,
    };
    if let Ok(Some(k)) = &kubernetes_version {
        // On a path of several hops, the plan says between which hops the cluster must be
        // upgraded when a later Istio does not support it (`plan::checks::kubernetes_path`).
        let sides: &[(&str, &Result<Version>)] = if stops.is_empty() {
            &[("from", &from_version), ("to", &to_version)]
        } else {
            &[("from", &from_version)]
        };
        for (side, version) in sides.iter().copied() {
            let Ok(version) = version else { continue };
            let istio = crate::k8s::Minor::new(version.major, version.minor);
            if crate::k8s::istio_supports(istio).is_none() {
                f.warning(
                    at(
                        &[Key("spec"), Key(side), Key("version")],
                        Error::new(format!(
                            "Istio {istio} is not in this tool's support table, so whether it supports Kubernetes {k} is not checked"
                        )),
                    )
                    .with_help("check istio.io's supported releases (docs/releases/supported-releases) by hand, or use a newer istio-canary"),
                );
            } else if let Some((lowest, highest)) = crate::k8s::istio_support_gap(istio, *k) {
                f.error(at(
                    &[Key("spec"), Key("kubernetesVersion")],
                    istio_unsupported(istio, lowest, highest, *k),
                ))?;
            }
        }
    }
    let mut remove_gateways = BTreeSet::new();
    for (i, g) in spec.remove_gateways.iter().enumerate() {
        let ok = g
            .split_once('/')
            .is_some_and(|(ns, name)| check_dns1123(ns).is_ok() && check_dns1123(name).is_ok());
        if !ok {
            f.error(at(
                &[Key("spec"), Key("removeGateways"), Index(i)],
                Error::new(format!(
                    "removeGateways entry `{g}` is not `namespace/name` of a gateway Deployment"
                ))
                .with_help("e.g. `istio-system/istio-egressgateway`"),
            ))?;
            continue;
        }
        remove_gateways.insert(g.clone());
    }
    let promote = match &spec.promote {
        None => Ok(None),
        Some(v) => {
            let field = [Key("spec"), Key("promote")];
            f.keep(parse_phase_ref(v).map_err(|m| {
                at(&field, Error::new(m).with_help("spec.promote names the phase whose end state live/ holds, e.g. `promote: migrate-canary` or `promote: 3`"))
            }).map(|phase| Some(Promote {
                phase,
                source: "spec.promote",
                location: at(&field, Error::new("")).location,
            })))?
        }
    };

    let gitops = f.keep(check_gitops(spec.gitops.as_ref(), &at))?;
    let inventory = match &spec.inventory {
        None => Ok(None),
        Some(rel) => f.keep(load_inventory(dir, rel, read, &at).map(Some))?,
    };
    let waves = match &inventory {
        Ok(inventory) => check_wave_targets(&spec.waves, inventory.as_ref(), &at, f)?,
        Err(e) => Err(e.clone()),
    };

    let revisions: Vec<&Revision> = from_revision
        .iter()
        .chain(via_revisions.iter().flatten())
        .chain(to_revision.iter())
        .collect();
    let tags = f.keep(check_tags(&spec.tags, &spec.waves, &revisions, &at))?;
    let gateways_after = match spec.gateways.as_ref().and_then(|g| g.move_after.clone()) {
        None => Ok(None),
        Some(after) => f.keep(
            check_move_after(&after, &spec.waves)
                .map(|()| Some(after))
                .map_err(|e| {
                    at(
                        &[Key("spec"), Key("gateways"), Key("moveAfter")],
                        e.within("spec.gateways.moveAfter"),
                    )
                }),
        )?,
    };

    let gateway_mode = spec.gateways.as_ref().map(|g| g.mode).unwrap_or_default();
    if gateway_mode == GatewayMode::Canary {
        let old = stops
            .iter()
            .map(|s| &s.version)
            .chain(to_version.as_ref().ok())
            .find(|v| (v.major, v.minor) < CANARY_GATEWAYS_SINCE);
        if let Some(v) = old {
            f.error(at(
                &[Key("spec"), Key("gateways"), Key("mode")],
                Error::new(format!(
                    "canary gateways need Istio {}.{} or later for every revision they deploy, and {v} is older",
                    CANARY_GATEWAYS_SINCE.0, CANARY_GATEWAYS_SINCE.1
                ))
                .with_help("the gateway chart selects one revision's pods from the gateway Service from 1.29 on (service.selectorLabels); upgrade to 1.29 with mode: inPlace first, or leave mode out"),
            ))?;
        }
    }

    let to_operator = match &to_revision {
        Ok(r) => f.keep(load_operator(
            dir,
            &spec.istio_operator,
            r,
            read,
            text,
            path,
            &[Key("spec"), Key("istioOperator")],
        ))?,
        Err(e) => Err(e.clone()),
    };
    let from_operator = match (&from_revision, &spec.from.istio_operator, &to_operator) {
        (Err(e), _, _) => Err(e.clone()),
        (Ok(r), Some(p), _) => f.keep(load_operator(
            dir,
            p,
            r,
            read,
            text,
            path,
            &[Key("spec"), Key("from"), Key("istioOperator")],
        ))?,
        // The same spec renders the old revision too; its revision field must not pin either.
        (Ok(r), None, Ok(to)) => f.keep(check_operator_revision(to, r).map(|()| to.clone()))?,
        (Ok(_), None, Err(e)) => Err(e.clone()),
    };

    if let (Ok(from_operator), Ok(to_operator)) = (&from_operator, &to_operator) {
        // Moving the control plane to another namespace is not a canary: the new istiod would
        // run a second self-signed CA there (its own `istio-ca-secret`), so moved and unmoved
        // workloads would stop trusting each other.
        if from_operator.istio_namespace != to_operator.istio_namespace {
            f.error(at(
                &[Key("spec"), Key("istioOperator")],
                Error::new(format!(
                    "the new spec runs the control plane in namespace `{}`, the old one in `{}` (values.global.istioNamespace): a canary upgrade keeps the control-plane namespace",
                    to_operator.istio_namespace, from_operator.istio_namespace
                ))
                .with_help("istiod in another namespace would start its own self-signed CA, and workloads on the two revisions would stop trusting each other; keep values.global.istioNamespace, or move the namespace as a separate migration with a shared root CA (plug-in certificates)"),
            ))?;
        }
        for (wi, wave) in spec.waves.iter().enumerate() {
            for (ni, ns) in wave.namespaces.iter().enumerate() {
                if *ns == from_operator.istio_namespace || *ns == to_operator.istio_namespace {
                    f.error(at(
                        &[Key("spec"), Key("waves"), Index(wi), Key("namespaces"), Index(ni)],
                        Error::new(format!(
                            "namespace `{ns}` is the Istio control-plane namespace and cannot be a wave"
                        ))
                        .with_help("istiod and the gateways there move in the install and gateways phases; restarting the namespace as a wave would restart the control plane"),
                    ))?;
                }
            }
        }
    }

    Ok(Policy {
        path: path.to_path_buf(),
        sha256: sha256_hex(bytes),
        name: file.metadata.name,
        via: {
            let operator = to_operator.clone()?;
            let mut via = Vec::new();
            for ((stop, revision), istioctl) in stops.into_iter().zip(via_revisions).zip(via_pins) {
                via.push(Release {
                    version: stop.version,
                    revision: revision?,
                    operator: operator.clone(),
                    istioctl: istioctl?,
                });
            }
            via
        },
        from: Release {
            version: from_version?,
            revision: from_revision?,
            operator: from_operator?,
            istioctl: from_pin?,
        },
        to: Release {
            version: to_version?,
            revision: to_revision?,
            operator: to_operator?,
            istioctl: to_pin?,
        },
        revision_naming: spec.revision_naming,
        max_minor_skip: spec.max_minor_skip,
        waves: waves?,
        default_tag: spec.default_tag,
        uninstall_old: spec.uninstall_old,
        from_default_tag,
        from_default_tag_declared: spec.from.default_tag.is_some(),
        kubernetes_version: kubernetes_version?,
        remove_gateways,
        promote: promote?,
        gitops: gitops?,
        inventory: inventory?,
        tags: tags?,
        gateways_after: gateways_after?,
        gateway_mode,
    })
}

/// The error of a `maxMinorSkip` above what Istio supports for one hop.
fn max_minor_skip_error(max_minor_skip: u64, at: At<'_>) -> Error {
    at(
        &[Seg::Key("spec"), Seg::Key("maxMinorSkip")],
        Error::new(format!(
            "maxMinorSkip {max_minor_skip} is more than Istio supports for one canary hop ({MAX_SUPPORTED_MINOR_SKIP})"
        )),
    )
}

/// The skew checks that need only the two versions: newer, within one major, at most
/// `maxMinorSkip` minors apart.
fn check_skew(
    from_version: &Version,
    to_version: &Version,
    max_minor_skip: u64,
    f: &mut Findings,
    at: At<'_>,
) -> Result<()> {
    use Seg::Key;
    if to_version <= from_version {
        f.error(at(
            &[Key("spec"), Key("to"), Key("version")],
            Error::new(format!(
                "target version {to_version} is not newer than the running version {from_version}"
            ))
            .with_help("a canary upgrade installs a newer control plane; to go back, keep the old revision and move namespaces back to it"),
        ))?;
        return Ok(());
    }
    if max_minor_skip > MAX_SUPPORTED_MINOR_SKIP {
        f.error(max_minor_skip_error(max_minor_skip, at))?;
    }
    if to_version.major != from_version.major {
        return f.error(at(
            &[Key("spec"), Key("to"), Key("version")],
            Error::new(format!(
                "cannot plan an upgrade across major versions ({from_version} -> {to_version})"
            )),
        ));
    }
    Ok(())
}

/// The error when Istio `istio`, which supports Kubernetes `lowest` to `highest`, does not
/// support the cluster's Kubernetes `k`: the one text of this skew, for `policy` and `plan`.
pub fn istio_unsupported(
    istio: crate::k8s::Minor,
    lowest: crate::k8s::Minor,
    highest: crate::k8s::Minor,
    k: crate::k8s::Minor,
) -> Error {
    Error::new(format!(
        "Istio {istio} supports Kubernetes {lowest} to {highest}, not {k} (spec.kubernetesVersion)"
    ))
    .with_help("Istio's support table (istio.io, docs/releases/supported-releases): upgrade Kubernetes or Istio in hops that both revisions support")
}

/// A `moveAfter`: `install` or the name of a wave of the policy.
fn check_move_after(after: &str, waves: &[WaveSpec]) -> Result<()> {
    if after == "install" || waves.iter().any(|w| w.name == after) {
        return Ok(());
    }
    let mut names = vec!["install".to_string()];
    names.extend(waves.iter().map(|w| w.name.clone()));
    Err(
        Error::new(format!("{} is neither `install` nor a wave", shown(after)))
            .with_help(format!("moveAfter takes one of: {}", names.join(", "))),
    )
}

/// `spec.tags`: each a DNS-1123 label, once, neither `default` (moved by `defaultTag`) nor named
/// like a revision (a namespace selecting it could not tell the two apart, and a later upgrade
/// would derive that revision), moved after `install` or a wave of the policy.
fn check_tags(
    specs: &[TagSpec],
    waves: &[WaveSpec],
    revisions: &[&Revision],
    at: &dyn Fn(&[Seg<'_>], Error) -> Error,
) -> Result<Vec<TagMove>> {
    use Seg::{Index, Key};
    // `spec.tags`, then each wave's `tags` (moved right after that wave), with where each is.
    let mut entries: Vec<(TagSpec, Vec<Seg<'_>>, Option<&str>)> = specs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                TagSpec {
                    name: t.name.clone(),
                    move_after: t.move_after.clone(),
                },
                vec![Key("spec"), Key("tags"), Index(i), Key("name")],
                None,
            )
        })
        .collect();
    for (wi, w) in waves.iter().enumerate() {
        for (ti, t) in w.tags.iter().enumerate() {
            entries.push((
                TagSpec {
                    name: t.clone(),
                    move_after: Some(w.name.clone()),
                },
                vec![Key("spec"), Key("waves"), Index(wi), Key("tags"), Index(ti)],
                Some(w.name.as_str()),
            ));
        }
    }
    let mut out: Vec<TagMove> = Vec::new();
    let mut wave_of: BTreeMap<String, Option<&str>> = BTreeMap::new();
    for (i, (t, name_at, in_wave)) in entries.iter().enumerate() {
        check_dns1123(&t.name).map_err(|why| at(name_at, Error::new(format!("tag name {why}"))))?;
        if t.name == "default" {
            return Err(at(
                name_at,
                Error::new("the `default` tag is moved by spec.defaultTag, not by spec.tags")
                    .with_help("remove it from spec.tags; defaultTag: true (the default) moves it after the waves"),
            ));
        }
        let revision_like = t
            .name
            .split('-')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && t.name.contains('-');
        if revisions.iter().any(|r| r.label() == t.name) || revision_like {
            return Err(at(
                name_at,
                Error::new(format!(
                    "tag `{}` is named like a revision: `istio.io/rev={}` would not say whether it selects the tag or a revision",
                    t.name, t.name
                ))
                .with_help("name tags for what they mean to the namespaces that select them, e.g. prod-stable or prod-canary"),
            ));
        }
        if let Some(first) = wave_of.insert(t.name.clone(), *in_wave) {
            let place = |w: Option<&str>| match w {
                None => "spec.tags".to_string(),
                Some(w) => format!("wave `{w}`"),
            };
            let msg = if first == *in_wave {
                format!("tag `{}` is listed twice", t.name)
            } else {
                format!(
                    "tag `{}` is listed in {} and again in {}",
                    t.name,
                    place(first),
                    place(*in_wave)
                )
            };
            return Err(at(name_at, Error::new(msg))
                .with_help("each tag moves exactly once: keep it in one place"));
        }
        if let (Some(after), None) = (&t.move_after, in_wave) {
            check_move_after(after, waves).map_err(|e| {
                at(
                    &[Key("spec"), Key("tags"), Index(i), Key("moveAfter")],
                    e.within(format!("tag `{}`", t.name)),
                )
            })?;
        }
        out.push(TagMove {
            name: t.name.clone(),
            after: t.move_after.clone(),
        });
    }
    Ok(out)
}

/// Reads `spec.inventory` (at most `yamlin::INVENTORY_LIMIT` bytes, a regular file) and checks
/// it holds what every plan with an inventory needs: the namespaces.
fn load_inventory(
    dir: &Path,
    rel: &Path,
    read: ReadFile<'_>,
    at: &dyn Fn(&[Seg<'_>], Error) -> Error,
) -> Result<InventoryFile> {
    let field = [Seg::Key("spec"), Seg::Key("inventory")];
    let path = dir.join(rel);
    let bytes = read(&path, yamlin::INVENTORY_LIMIT).map_err(|e| {
        at(
            &field,
            Error::new(format!(
                "cannot read inventory {}: {}",
                path.display(),
                io_reason(&e)
            )),
        )
        .with_help(format!("save the output of `{}`", inventory::COMMAND))
    })?;
    let parsed = inventory::parse(&bytes, &path)?;
    if !parsed.holds("", "Namespace") {
        return Err(at(
            &field,
            Error::new(format!(
                "inventory {} holds no Namespace: the plan cannot see which namespaces are injected",
                path.display()
            )),
        )
        .with_help(format!("capture it with `{}`", inventory::COMMAND)));
    }
    Ok(InventoryFile {
        declared: rel.to_string_lossy().into_owned(),
        sha256: sha256_hex(&bytes),
        path,
        inventory: parsed,
    })
}

/// The kinds a wave may move one by one, by the names `kubectl` takes for them.
const WORKLOAD_KINDS: &[(&str, &str)] = &[
    ("deployment", "Deployment"),
    ("deployments", "Deployment"),
    ("statefulset", "StatefulSet"),
    ("statefulsets", "StatefulSet"),
    ("daemonset", "DaemonSet"),
    ("daemonsets", "DaemonSet"),
];

/// The waves as the plan takes them: each wave's namespaces, and its workloads resolved to
/// identities. With an inventory, every namespace and workload a wave names must be in it (the
/// plan cannot move what the cluster does not have); workloads need an inventory.
fn check_wave_targets(
    waves: &[WaveSpec],
    inventory: Option<&InventoryFile>,
    at: &dyn Fn(&[Seg<'_>], Error) -> Error,
    f: &mut Findings,
) -> Result<Result<Vec<Wave>>> {
    use Seg::{Index, Key};
    let mut out = Vec::new();
    let mut moved: BTreeMap<ObjectId, String> = BTreeMap::new();
    // Every identity the inventory holds, once: a wave's names are looked up, never scanned for.
    let held: BTreeSet<&ObjectId> = inventory
        .map(|inv| inv.inventory.objects.iter().map(|o| &o.id).collect())
        .unwrap_or_default();
    for (wi, wave) in waves.iter().enumerate() {
        if let Some(inv) = inventory {
            for (ni, ns) in wave.namespaces.iter().enumerate() {
                if !held.contains(&crate::cluster::namespace_id(ns)) {
                    f.error(at(
                        &[Key("spec"), Key("waves"), Index(wi), Key("namespaces"), Index(ni)],
                        Error::new(format!(
                            "namespace `{ns}` is not in the inventory {}",
                            inv.path.display()
                        )),
                    )
                    .with_help("a wave relabels namespaces that exist; remove it from the wave, or capture the inventory again"))?;
                }
            }
        }
        let mut workloads = Vec::new();
        for (i, w) in wave.workloads.iter().enumerate() {
            let field = [
                Key("spec"),
                Key("waves"),
                Index(wi),
                Key("workloads"),
                Index(i),
            ];
            let Some(inv) = inventory else {
                f.error(at(
                    &field,
                    Error::new(format!(
                        "wave `{}` moves workload `{w}`, which needs spec.inventory",
                        wave.name
                    )),
                )
                .with_help(format!(
                    "the plan must see a workload to move it: save the output of `{}` and name it in spec.inventory",
                    inventory::COMMAND
                )))?;
                continue;
            };
            let parts: Vec<&str> = w.split('/').collect();
            let kind = match parts.as_slice() {
                [ns, kind, name] if check_dns1123(ns).is_ok() && check_dns1123(name).is_ok() => {
                    WORKLOAD_KINDS
                        .iter()
                        .find(|(k, full)| kind.eq_ignore_ascii_case(k) || kind == full)
                        .map(|(_, full)| *full)
                }
                _ => None,
            };
            let (Some(kind), [ns, _, name]) = (kind, parts.as_slice()) else {
                f.error(at(
                    &field,
                    Error::new(format!(
                        "workloads entry {} is not `namespace/kind/name` of a Deployment, StatefulSet or DaemonSet",
                        shown(w)
                    )),
                )
                .with_help("e.g. `shop/deployment/cart`"))?;
                continue;
            };
            let id = ObjectId {
                group: "apps".into(),
                kind: kind.into(),
                namespace: Some(ns.to_string()),
                name: name.to_string(),
            };
            if !held.contains(&id) {
                f.error(
                    at(
                        &field,
                        Error::new(format!(
                            "{id} is not in the inventory {}",
                            inv.path.display()
                        )),
                    )
                    .with_help(
                        "name a workload the inventory holds, or capture the inventory again",
                    ),
                )?;
                continue;
            }
            if first_move(&mut moved, &id, &wave.name, "workload", &field, at, f)? {
                workloads.push(id);
            }
        }
        let gateways = check_wave_gateways(wave, wi, inventory, &mut moved, at, f)?;
        out.push(Wave {
            name: wave.name.clone(),
            namespaces: wave.namespaces.clone(),
            workloads,
            gateways,
        });
    }
    Ok(Ok(out))
}

/// Records that wave `wave` moves `id` (a workload or a Gateway, `what`); false, with an error at
/// `field`, when an earlier wave already moves it.
fn first_move(
    moved: &mut BTreeMap<ObjectId, String>,
    id: &ObjectId,
    wave: &str,
    what: &str,
    field: &[Seg<'_>],
    at: &dyn Fn(&[Seg<'_>], Error) -> Error,
    f: &mut Findings,
) -> Result<bool> {
    let Some(first) = moved.insert(id.clone(), wave.to_string()) else {
        return Ok(true);
    };
    f.error(at(
        field,
        Error::new(format!(
            "{id} is in wave `{first}` and again in wave `{wave}`"
        ))
        .with_help(format!(
            "each {what} moves exactly once: keep it in one wave"
        )),
    ))?;
    Ok(false)
}

/// A wave's `gateways`, resolved to identities: each `namespace/name` of a Gateway API Gateway
/// of the inventory (one is needed: the plan must see a Gateway's labels and class to move it)
/// of a class istiod programs, and moved by one wave only.
fn check_wave_gateways(
    wave: &WaveSpec,
    wi: usize,
    inventory: Option<&InventoryFile>,
    moved: &mut BTreeMap<ObjectId, String>,
    at: &dyn Fn(&[Seg<'_>], Error) -> Error,
    f: &mut Findings,
) -> Result<Vec<ObjectId>> {
    use crate::istio::{
        gateway_class, GATEWAY_API_GROUP, ISTIO_CONTROLLER_PREFIX, ISTIO_GATEWAY_CLASSES,
    };
    use Seg::{Index, Key};
    let mut out = Vec::new();
    for (i, g) in wave.gateways.iter().enumerate() {
        let field = [
            Key("spec"),
            Key("waves"),
            Index(wi),
            Key("gateways"),
            Index(i),
        ];
        let Some(inv) = inventory else {
            f.error(at(
                &field,
                Error::new(format!(
                    "wave `{}` moves Gateway `{g}`, which needs spec.inventory",
                    wave.name
                )),
            )
            .with_help(format!(
                "the plan must see a Gateway's labels and class to move it: save the output of `{}` (with `{}` added to its list when the Gateway API CRDs are installed) and name it in spec.inventory",
                inventory::COMMAND,
                inventory::GATEWAY_API_RESOURCE
            )))?;
            continue;
        };
        let (ns, name) = match g.split('/').collect::<Vec<_>>().as_slice() {
            [ns, name] if check_dns1123(ns).is_ok() && check_dns1123(name).is_ok() => {
                (ns.to_string(), name.to_string())
            }
            _ => {
                f.error(
                    at(
                        &field,
                        Error::new(format!(
                            "gateways entry {} is not `namespace/name` of a Gateway API Gateway",
                            shown(g)
                        )),
                    )
                    .with_help(
                        "e.g. `edge/public` (a gateway.networking.k8s.io Gateway or waypoint)",
                    ),
                )?;
                continue;
            }
        };
        let id = ObjectId {
            group: GATEWAY_API_GROUP.into(),
            kind: "Gateway".into(),
            namespace: Some(ns),
            name,
        };
        let objects = &inv.inventory.objects;
        let Some(gw) = objects.iter().find(|o| o.id == id) else {
            f.error(at(
                &field,
                Error::new(format!("{id} is not in the inventory {}", inv.path.display())),
            )
            .with_help(format!(
                "name a Gateway the inventory holds; capture Gateways with `{}` in the inventory command's list",
                inventory::GATEWAY_API_RESOURCE
            )))?;
            continue;
        };
        let class = gateway_class(gw).unwrap_or("");
        let istio_class = crate::istio::is_istio_gateway_class(class, objects);
        if !istio_class {
            f.error(at(
                &field,
                Error::new(format!(
                    "{id} is of class {}, which istiod does not program: its istio.io/rev label means nothing",
                    shown(class)
                )),
            )
            .with_help(format!(
                "list only Gateways of an Istio class ({}, or a GatewayClass whose controllerName starts with `{ISTIO_CONTROLLER_PREFIX}`)",
                ISTIO_GATEWAY_CLASSES.join(", ")
            )))?;
            continue;
        }
        if first_move(moved, &id, &wave.name, "Gateway", &field, at, f)? {
            out.push(id);
        }
    }
    Ok(out)
}

const MISSING_POLICY_HELP: &str =
    "pass the policy with --policy FILE (default canary.yaml in the current directory)";

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A digest in lowercase hex, as `sha256sum` prints it.
pub fn hex(digest: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(digest.len() * 2);
    for &b in digest {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Reads an IstioOperator spec named by the policy and checks the fields istio-canary manages.
fn load_operator(
    dir: &Path,
    rel: &Path,
    revision: &Revision,
    read: ReadFile<'_>,
    policy_text: &str,
    policy_path: &Path,
    field: &[Seg<'_>],
) -> Result<OperatorSpec> {
    let path = dir.join(rel);
    let bytes = read(&path, yamlin::SPEC_LIMIT).map_err(|e| {
        let err = Error::new(format!(
            "cannot read IstioOperator spec {}: {}",
            path.display(),
            io_reason(&e)
        ));
        match locate(policy_text, field) {
            Some((l, c)) => err.at(policy_path, policy_text, l, c),
            None => err.in_file(policy_path),
        }
    })?;
    let text = yamlin::decode(&bytes, Kind::Spec, &path)?;
    let value: Value = yamlin::from_str(text, &path)?;
    let at = |segs: &[Seg<'_>], err: Error| -> Error {
        match locate(text, segs) {
            Some((line, col)) => err.at(&path, text, line, col),
            None => err.in_file(&path),
        }
    };
    use Seg::Key;
    let Value::Mapping(document) = value else {
        return Err(Error::new("an IstioOperator spec must be a YAML mapping").in_file(&path));
    };
    let kind = document.get("kind").and_then(Value::as_str);
    let api = document
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if kind != Some("IstioOperator") || !api.starts_with("install.istio.io/") {
        return Err(at(
            &[Key("kind")],
            Error::new(format!(
                "{} is not an IstioOperator (expected apiVersion install.istio.io/v1alpha1, kind IstioOperator)",
                path.display()
            )),
        ));
    }
    let spec = match document.get("spec") {
        None | Some(Value::Null) => None,
        Some(Value::Mapping(m)) => Some(m),
        Some(_) => return Err(at(&[Key("spec")], Error::new("spec must be a mapping"))),
    };
    let values = spec
        .and_then(|s| s.get("values"))
        .and_then(Value::as_mapping);
    for managed in ["revisionTags", "defaultRevision"] {
        if values.is_some_and(|v| v.contains_key(managed)) {
            return Err(at(
                &[Key("spec"), Key("values"), Key(managed)],
                Error::new(format!("spec.values.{managed} is managed by istio-canary")).with_help(
                    "remove it: tags move in the default-tag phase (policy field defaultTag)",
                ),
            ));
        }
    }
    let istio_namespace = values
        .and_then(|v| v.get("global"))
        .and_then(Value::as_mapping)
        .and_then(|g| g.get("istioNamespace"))
        .and_then(Value::as_str)
        .unwrap_or("istio-system")
        .to_string();
    // It reaches the commands of PLAN.md: it must be a namespace name, nothing a shell reads.
    check_dns1123(&istio_namespace).map_err(|why| {
        at(
            &[
                Key("spec"),
                Key("values"),
                Key("global"),
                Key("istioNamespace"),
            ],
            Error::new(format!("values.global.istioNamespace: {why}")),
        )
    })?;
    let op = OperatorSpec {
        path: path.clone(),
        declared: rel.display().to_string(),
        sha256: sha256_hex(&bytes),
        text: text.to_string(),
        document,
        istio_namespace,
    };
    check_operator_revision(&op, revision)?;
    Ok(op)
}

/// A `spec.revision` in an IstioOperator must agree with the revision the plan renders from it.
fn check_operator_revision(op: &OperatorSpec, revision: &Revision) -> Result<()> {
    let written = op
        .document
        .get("spec")
        .and_then(Value::as_mapping)
        .and_then(|s| s.get("revision"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let agrees = match revision {
        Revision::Default => written.is_empty() || written == "default",
        Revision::Named(n) => written.is_empty() || written == n,
    };
    if agrees {
        return Ok(());
    }
    let err = Error::new(format!(
        "spec.revision is {} but the plan renders this spec as revision `{revision}`",
        shown(written)
    ))
    .with_help("remove spec.revision from the IstioOperator: istio-canary sets it for each revision it renders");
    Err(
        match locate(&op.text, &[Seg::Key("spec"), Seg::Key("revision")]) {
            Some((l, c)) => err.at(&op.path, &op.text, l, c),
            None => err.in_file(&op.path),
        },
    )
}

// ---------------------------------------------------------------------------------------------
// spec.gitops: the values of the Argo CD Applications (`argocd/`) and Flux Kustomizations
// (`flux/`). Every field is optional; what the policy leaves out, `gitops` writes as the
// controller's usual default or as a placeholder.

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GitOpsSpec {
    #[serde(default, rename = "repoURL")]
    repo_url: Option<String>,
    #[serde(default)]
    target_revision: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    argocd: Option<ArgoCdSpec>,
    #[serde(default)]
    flux: Option<FluxSpec>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ArgoCdSpec {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    destination: Option<DestinationSpec>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DestinationSpec {
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FluxSpec {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    source_ref: Option<SourceRefSpec>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SourceRefSpec {
    #[serde(default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// The kinds a Flux Kustomization's `sourceRef` may name (kustomize.toolkit.fluxcd.io/v1).
pub const FLUX_SOURCE_KINDS: &[&str] = &[
    "GitRepository",
    "OCIRepository",
    "Bucket",
    "ExternalArtifact",
];

/// `spec.gitops`, checked: `None` wherever the policy says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitOps {
    /// Argo CD's `spec.source.repoURL`.
    pub repo_url: Option<String>,
    /// Argo CD's `spec.source.targetRevision`.
    pub target_revision: Option<String>,
    /// The bundle's directory inside the repository (`--out` relative to the repository root),
    /// `.` for the root: plain segments of letters, digits, `.`, `_` and `-`.
    pub path: Option<String>,
    pub argocd: ArgoCd,
    pub flux: Flux,
}

/// `spec.gitops.argocd`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArgoCd {
    /// The namespace of the Applications (a DNS-1123 label).
    pub namespace: Option<String>,
    /// The AppProject (a DNS-1123 subdomain).
    pub project: Option<String>,
    pub destination: Option<Destination>,
}

/// Where Argo CD applies: one cluster, by API server URL or by name, and optionally the
/// namespace for objects that name none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub cluster: Cluster,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cluster {
    Server(String),
    Name(String),
}

/// `spec.gitops.flux`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flux {
    /// The namespace of the Kustomizations (a DNS-1123 label).
    pub namespace: Option<String>,
    pub source_ref: Option<SourceRef>,
}

/// The Flux source that serves the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRef {
    /// One of `FLUX_SOURCE_KINDS`; `None` is Flux's `GitRepository`.
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
}

type At<'a> = &'a dyn Fn(&[Seg<'_>], Error) -> Error;

/// A value written as is into a GitOps object: not empty, no whitespace or control character.
fn check_gitops_token(value: &str, what: &str, example: &str) -> std::result::Result<(), Error> {
    if value.is_empty() {
        return Err(Error::new(format!("{what} is empty")).with_help(format!("e.g. {example}")));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::new(format!(
            "{what} {} holds whitespace or a control character",
            shown(value)
        ))
        .with_help(format!("e.g. {example}")));
    }
    Ok(())
}

/// The bundle's path inside the repository: `.`, or plain relative segments of letters, digits,
/// `.`, `_` and `-` (nothing Flux's variable substitution or a shell would read).
fn check_gitops_path(value: &str) -> std::result::Result<(), Error> {
    const WHAT: &str = "spec.gitops.path";
    const HELP: &str = "the bundle's directory relative to the repository root (`--out` as seen from the root), e.g. `clusters/prod/istio-upgrade`, or `.` for the root";
    if value == "." {
        return Ok(());
    }
    let bad = |c: &char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    let why = if value.is_empty() {
        Some("is empty".to_string())
    } else if value.starts_with('/') {
        Some(format!("{} is absolute", shown(value)))
    } else if value
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        Some(format!(
            "{} is not a plain relative path: a segment between `/` is empty, `.` or `..`",
            shown(value)
        ))
    } else {
        value.chars().find(bad).map(|c| {
            format!(
                "{} holds {}: only letters, digits, `.`, `_`, `-` and `/` between segments are allowed",
                shown(value),
                shown(&c.to_string())
            )
        })
    };
    match why {
        Some(why) => Err(Error::new(format!("{WHAT} {why}")).with_help(HELP)),
        None => Ok(()),
    }
}

/// Checks `spec.gitops`, pointing each refusal at its field.
fn check_gitops(spec: Option<&GitOpsSpec>, at: At<'_>) -> Result<GitOps> {
    use Seg::Key;
    let Some(spec) = spec else {
        return Ok(GitOps::default());
    };
    let field = |keys: &[&str], err: Error| -> Error {
        let mut segs = vec![Key("spec"), Key("gitops")];
        segs.extend(keys.iter().map(|k| Key(k)));
        at(&segs, err)
    };
    let label = |keys: &[&str], value: &str| -> Result<()> {
        check_dns1123(value).map_err(|why| {
            field(
                keys,
                Error::new(format!("spec.gitops.{}: {why}", keys.join("."))),
            )
        })
    };
    let subdomain = |keys: &[&str], value: &str| -> Result<()> {
        if crate::names::is_dns1123_subdomain(value) {
            return Ok(());
        }
        Err(field(
            keys,
            Error::new(format!(
                "spec.gitops.{}: {} is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', each part starting and ending with a letter or digit, at most 253 characters)",
                keys.join("."),
                shown(value)
            )),
        ))
    };
    let token = |keys: &[&str], value: &str, example: &str| -> Result<()> {
        check_gitops_token(value, &format!("spec.gitops.{}", keys.join(".")), example)
            .map_err(|e| field(keys, e))
    };
    if let Some(url) = &spec.repo_url {
        let example = "`repoURL: https://git.example.com/mesh.git`, the URL Argo CD clones";
        token(&["repoURL"], url, example)?;
    }
    if let Some(rev) = &spec.target_revision {
        let example = "`targetRevision: main`, a branch, tag or commit";
        token(&["targetRevision"], rev, example)?;
    }
    if let Some(path) = &spec.path {
        check_gitops_path(path).map_err(|e| field(&["path"], e))?;
    }
    let mut argocd = ArgoCd::default();
    if let Some(a) = &spec.argocd {
        if let Some(ns) = &a.namespace {
            label(&["argocd", "namespace"], ns)?;
        }
        if let Some(project) = &a.project {
            subdomain(&["argocd", "project"], project)?;
        }
        if let Some(d) = &a.destination {
            let keys = ["argocd", "destination"];
            let cluster = match (&d.server, &d.name) {
                (Some(server), None) => {
                    let example = "`server: https://kubernetes.default.svc`, the cluster Argo CD runs in";
                    token(&["argocd", "destination", "server"], server, example)?;
                    if !(server.starts_with("https://") || server.starts_with("http://")) {
                        return Err(field(
                            &["argocd", "destination", "server"],
                            Error::new(format!(
                                "spec.gitops.argocd.destination.server {} is not a URL: Argo CD names a cluster by its API server URL",
                                shown(server)
                            ))
                            .with_help(format!("e.g. {example}, or give the cluster's `name` instead")),
                        ));
                    }
                    Cluster::Server(server.clone())
                }
                (None, Some(name)) => {
                    let example = "`name: in-cluster`, a cluster's name in Argo CD";
                    token(&["argocd", "destination", "name"], name, example)?;
                    Cluster::Name(name.clone())
                }
                (server, _) => {
                    return Err(field(
                        &keys,
                        Error::new(format!(
                            "spec.gitops.argocd.destination {}: give exactly one of `server` (the cluster's API server URL) and `name` (its name in Argo CD)",
                            if server.is_some() { "has both `server` and `name`" } else { "names no cluster" }
                        ))
                        .with_help("for the cluster Argo CD runs in: `destination: {server: https://kubernetes.default.svc}`"),
                    ))
                }
            };
            if let Some(ns) = &d.namespace {
                label(&["argocd", "destination", "namespace"], ns)?;
            }
            argocd.destination = Some(Destination {
                cluster,
                namespace: d.namespace.clone(),
            });
        }
        argocd.namespace = a.namespace.clone();
        argocd.project = a.project.clone();
    }
    let mut flux = Flux::default();
    if let Some(f) = &spec.flux {
        if let Some(ns) = &f.namespace {
            label(&["flux", "namespace"], ns)?;
        }
        if let Some(s) = &f.source_ref {
            if let Some(kind) = &s.kind {
                if !FLUX_SOURCE_KINDS.contains(&kind.as_str()) {
                    return Err(field(
                        &["flux", "sourceRef", "kind"],
                        Error::new(format!(
                            "spec.gitops.flux.sourceRef.kind {} is not a kind a Flux Kustomization reads from",
                            shown(kind)
                        ))
                        .with_help(format!("one of {}", FLUX_SOURCE_KINDS.join(", "))),
                    ));
                }
            }
            subdomain(&["flux", "sourceRef", "name"], &s.name)?;
            if let Some(ns) = &s.namespace {
                label(&["flux", "sourceRef", "namespace"], ns)?;
            }
            flux.source_ref = Some(SourceRef {
                kind: s.kind.clone(),
                name: s.name.clone(),
                namespace: s.namespace.clone(),
            });
        }
        flux.namespace = f.namespace.clone();
    }
    Ok(GitOps {
        repo_url: spec.repo_url.clone(),
        target_revision: spec.target_revision.clone(),
        path: spec.path.clone(),
        argocd,
        flux,
    })
}

#[cfg(test)]
mod gitops_tests {
    use super::*;

    fn check(yaml: &str) -> Result<GitOps> {
        let text = format!("spec:\n  gitops:\n{yaml}");
        let spec: BTreeMap<String, BTreeMap<String, GitOpsSpec>> =
            serde_yaml::from_str(&text).unwrap();
        let at = |segs: &[Seg<'_>], err: Error| -> Error {
            match locate(&text, segs) {
                Some((line, col)) => err.at(Path::new("canary.yaml"), &text, line, col),
                None => err.in_file(Path::new("canary.yaml")),
            }
        };
        check_gitops(spec["spec"].get("gitops"), &at)
    }

    fn refused(yaml: &str) -> (String, (usize, usize)) {
        let err = check(yaml).expect_err(yaml);
        let loc = err.location.as_ref().expect("a location");
        (err.message, (loc.line, loc.column))
    }

    #[test]
    fn every_value_is_kept_as_written() {
        let g = check("    repoURL: git@github.com:org/mesh.git\n    targetRevision: v1.2\n    path: clusters/prod\n    argocd:\n      namespace: gitops\n      project: mesh.prod\n      destination: {name: prod-east, namespace: istio-system}\n    flux:\n      namespace: flux\n      sourceRef: {kind: OCIRepository, name: mesh, namespace: sources}\n").unwrap();
        assert_eq!(g.repo_url.as_deref(), Some("git@github.com:org/mesh.git"));
        assert_eq!(g.path.as_deref(), Some("clusters/prod"));
        assert_eq!(
            g.argocd.destination,
            Some(Destination {
                cluster: Cluster::Name("prod-east".into()),
                namespace: Some("istio-system".into())
            })
        );
        assert_eq!(
            g.flux.source_ref.unwrap().kind.as_deref(),
            Some("OCIRepository")
        );
        assert_eq!(check("    path: .\n").unwrap().path.as_deref(), Some("."));
        assert_eq!(check("    {}\n").unwrap(), GitOps::default());
    }

    #[test]
    fn each_bad_value_is_refused_at_its_field() {
        let (m, at) = refused("    repoURL: 'https://x y'\n");
        assert!(m.contains("holds whitespace"), "{m}");
        assert_eq!(at, (3, 5));
        for (path, why) in [
            ("/abs", "is absolute"),
            ("a//b", "segment"),
            ("a/../b", "segment"),
            ("./a", "segment"),
            ("a/", "segment"),
            ("a/${X}", "holds `$`"),
            ("a b", "holds ` `"),
            ("''", "is empty"),
        ] {
            let (m, _) = refused(&format!("    path: {path}\n"));
            assert!(m.contains(why), "{path}: {m}");
        }
        let (_, at) = refused("    argocd:\n      destination: {server: a, name: b}\n");
        assert_eq!(at, (4, 7), "at the destination");
        let (_, at) = refused("    flux:\n      sourceRef: {kind: HelmRepository, name: a}\n");
        assert_eq!(at, (4, 19), "at the kind");
        for (yaml, why) in [
            (
                "argocd:\n      destination: {server: a, name: b}",
                "has both",
            ),
            (
                "argocd:\n      destination: {namespace: a}",
                "names no cluster",
            ),
            (
                "argocd:\n      destination: {server: kubernetes.default.svc}",
                "is not a URL",
            ),
            (
                "flux:\n      sourceRef: {kind: HelmRepository, name: a}",
                "HelmRepository",
            ),
            ("flux:\n      sourceRef: {name: Mesh}", "DNS-1123 subdomain"),
            ("argocd: {project: 'a b'}", "spec.gitops.argocd.project"),
            (
                "flux: {namespace: Flux}",
                "spec.gitops.flux.namespace: `Flux` is not a DNS-1123 label",
            ),
        ] {
            let (m, _) = refused(&format!("    {yaml}\n"));
            assert!(m.contains(why), "{yaml}: {m}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IOP: &str =
        "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  profile: default\n";
    const PIN: &str = "{path: istioctl, sha256: c34db1783223b51f5dc0076dbc8b231f655fc0303c5478d8e641d7b9ccdf2d60}";

    #[test]
    fn hex_is_two_lowercase_digits_per_byte_high_nibble_first() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xf0, 0xff]), "000fa5f0ff");
        assert_eq!(hex(&[]), "");
        // As `sha256sum` prints the digest of the empty input.
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    /// A valid policy with `from`/`to` versions and extra lines under `spec`.
    fn policy(from: &str, to: &str, extra: &str) -> String {
        format!(
            "apiVersion: istio-canary.dev/v1alpha1\nkind: CanaryUpgrade\nmetadata:\n  name: t\nspec:\n  istioOperator: iop.yaml\n  from:\n    version: \"{from}\"\n  to:\n    version: \"{to}\"\n  istioctl:\n    \"{from}\": {PIN}\n    \"{to}\": {PIN}\n  waves:\n  - name: w\n    namespaces: [a]\n{extra}"
        )
    }

    /// Checks `text` as `dir/canary.yaml`, with `files` (name -> text) as the only files.
    fn check(text: &str, files: &[(&str, &str)]) -> Result<Policy> {
        let read = |p: &Path, _: u64| -> std::io::Result<Vec<u8>> {
            files
                .iter()
                .find(|(name, _)| Path::new("dir").join(name) == p)
                .map(|(_, text)| text.as_bytes().to_vec())
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        };
        load_from(text.as_bytes(), Path::new("dir/canary.yaml"), &read)
    }

    fn check_err(text: &str, files: &[(&str, &str)]) -> Error {
        match check(text, files) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e,
        }
    }

    fn line_col(err: &Error) -> (usize, usize) {
        let loc = err.location.as_ref().expect("a location");
        (loc.line, loc.column)
    }

    #[test]
    fn a_policy_from_a_string_with_specs_in_memory() {
        let p = check(&policy("1.13.5", "1.14.1", ""), &[("iop.yaml", IOP)]).unwrap();
        assert_eq!(p.to.revision, Revision::Named("1-14-1".into()));
        assert_eq!(p.to.istioctl.path, Path::new("dir/istioctl"));
        assert_eq!(p.from.operator.path, Path::new("dir/iop.yaml"));
        let err = check_err(&policy("1.13.5", "1.14.1", ""), &[]);
        assert_eq!(
            err.message,
            "cannot read IstioOperator spec dir/iop.yaml: entity not found"
        );
    }

    #[test]
    fn each_malformed_path_entry_is_refused_at_the_entry() {
        let pins = "    \"1.14.1\": {path: istioctl, sha256: c34db1783223b51f5dc0076dbc8b231f655fc0303c5478d8e641d7b9ccdf2d60}\n";
        for (entry, message) in [
            ("{revision: r}", "spec.path: a path entry needs a `version`"),
            (
                "{version: \"1.14.1\", revision: [a]}",
                "spec.path: a path entry's revision must be a string like \"1-14-6\"",
            ),
            (
                "{version: \"1.14.1\", revision: default}",
                "path entry 1.14.1: a revision passed through cannot be `default`",
            ),
        ] {
            let text = policy("1.13.5", "1.15.3", &format!("  path: [{entry}]\n")).replacen(
                "  istioctl:\n",
                &format!("  istioctl:\n{pins}"),
                1,
            );
            let err = check_err(&text, &[("iop.yaml", IOP)]);
            assert_eq!(err.message, message, "{entry}");
            let line = text.lines().position(|l| l.starts_with("  path:")).unwrap() + 1;
            assert_eq!(line_col(&err).0, line, "{entry}: {err}");
        }
    }

    #[test]
    fn a_byte_order_mark_is_accepted_in_the_policy_and_the_spec() {
        let text = format!("\u{feff}{}", policy("1.13.5", "1.14.1", ""));
        let iop = format!("\u{feff}{IOP}");
        let p = check(&text, &[("iop.yaml", &iop)]).unwrap();
        assert_eq!(p.name, "t");
        assert_eq!(p.sha256, sha256_hex(text.as_bytes()));
        // Lines still count from the first line after the mark.
        let bad = format!("\u{feff}{}", policy("1.13.5", "1.14.1", "  wavez: []\n"));
        assert_eq!(line_col(&check_err(&bad, &[("iop.yaml", IOP)])), (17, 3));
    }

    #[test]
    fn merge_keys_that_hide_managed_fields_are_refused() {
        let iop = "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\ntags: &t {revisionTags: [prod]}\nspec:\n  values:\n    <<: *t\n";
        let err = check_err(&policy("1.13.5", "1.14.1", ""), &[("iop.yaml", iop)]);
        assert_eq!(
            err.location.as_ref().unwrap().file,
            Path::new("dir/iop.yaml")
        );
        assert_eq!(line_col(&err), (6, 5));
    }

    #[test]
    fn a_duplicate_pin_is_refused_at_the_second_one() {
        let text = policy("1.13.5", "1.14.1", "")
            .replace("  waves:", &format!("    1.14.1: {PIN}\n  waves:"));
        let err = check_err(&text, &[("iop.yaml", IOP)]);
        assert_eq!(line_col(&err), (14, 5));
        assert!(err.message.contains("first at line 13 column 5"), "{err}");
    }

    #[test]
    fn json_policies_get_lines_and_columns() {
        let json = "{\"apiVersion\": \"istio-canary.dev/v1alpha1\", \"kind\": \"CanaryUpgrade\", \"metadata\": {\"name\": \"t\"},\n \"spec\": {\"istioOperator\": \"iop.yaml\", \"from\": {\"version\": \"1.13.5\"}, \"to\": {\"version\": \"1.14.1\"},\n  \"istioctl\": {}, \"waves\": [{\"name\": \"w\", \"namespaces\": [\"a\", \"B\"]}]}}".to_string();
        let err = check_err(&json, &[("iop.yaml", IOP)]);
        assert_eq!(
            err.message,
            "no istioctl is pinned for 1.13.5 (spec.from.version), 1.14.1 (spec.to.version)"
        );
        assert_eq!(line_col(&err), (3, 3));
        let err = check_err(&json.replace("\"1.14.1\"", "1.14"), &[("iop.yaml", IOP)]);
        assert!(err.message.contains("was read as a number"), "{err}");
        assert_eq!(line_col(&err), (2, 78));
    }

    #[test]
    fn huge_version_numbers_are_refused_before_any_arithmetic() {
        let err = check_err(
            &policy("1.13.5", "1.18446744073709551615.1", ""),
            &[("iop.yaml", IOP)],
        );
        assert_eq!(err.message, "version `1.18446744073709551615.1` has a number above 10000; MAJOR, MINOR and PATCH may be at most 10000");
        // At the bound, the list of minors with no pin stays short.
        let err = check_err(&policy("1.0.0", "1.10000.0", ""), &[("iop.yaml", IOP)]);
        assert_eq!(err.message, "1.0.0 -> 1.10000.0 moves 10000 minor versions, more than maxMinorSkip (1) allows in one hop, and no istioctl is pinned for Istio 1.1, 1.2, 1.3, 1.4, … (9999 minors in all) to pass through");
    }

    #[test]
    fn revisions_must_leave_room_for_istiod_prefix() {
        let ok = "a".repeat(MAX_REVISION_LEN);
        let text = policy("1.13.5", "1.14.1", "").replace(
            "version: \"1.14.1\"\n",
            &format!("version: \"1.14.1\"\n    revision: {ok}\n"),
        );
        let p = check(&text, &[("iop.yaml", IOP)]).unwrap();
        assert_eq!(p.to.revision.istiod().len(), 63);
        let err = check_err(&text.replace(&ok, &format!("{ok}a")), &[("iop.yaml", IOP)]);
        assert!(
            err.message.starts_with(&format!(
                "revision `{ok}a` is 57 characters long; at most 56 fit"
            )),
            "{err}"
        );
        // Derived from a long pre-release: pointed at the version.
        let pre = format!("1.14.1-{}", "b".repeat(50));
        let err = check_err(&policy("1.13.5", &pre, ""), &[("iop.yaml", IOP)]);
        assert!(err.message.starts_with("revision `1-14-1-bbb"), "{err}");
        assert!(
            err.message.contains(&format!(
                ", derived from version `{pre}`, is 57 characters long"
            )),
            "{err}"
        );
        assert_eq!(line_col(&err), (10, 5));
        // A pre-release that ends in '-' would derive a revision that is not a label.
        let err = check_err(&policy("1.13.5", "1.14.1-rc-", ""), &[("iop.yaml", IOP)]);
        assert!(
            err.message.contains(
                "`1-14-1-rc-`, derived from version `1.14.1-rc-`, is not a DNS-1123 label"
            ),
            "{err}"
        );
    }

    #[test]
    fn revision_names_follow_the_naming_scheme() {
        let v = Version::parse("1.14.1").unwrap();
        assert_eq!(revision_for(&v, RevisionNaming::Patch), "1-14-1");
        assert_eq!(revision_for(&v, RevisionNaming::Minor), "1-14");
        let beta = Version::parse("1.15.0-beta.1").unwrap();
        assert_eq!(revision_for(&beta, RevisionNaming::Patch), "1-15-0-beta-1");
    }

    #[test]
    fn dns1123_rejects_dots_and_uppercase() {
        assert!(check_dns1123("1-14-1").is_ok());
        assert!(check_dns1123("1.14.1").is_err());
        assert!(check_dns1123("Shop").is_err());
        assert!(check_dns1123("-a").is_err());
    }

    /// A policy whose 1.14.1 pin is `pin` (flow YAML).
    fn with_pin(pin: &str) -> String {
        policy("1.13.5", "1.14.1", "").replace(
            &format!("    \"1.14.1\": {PIN}"),
            &format!("    \"1.14.1\": {pin}"),
        )
    }

    const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn a_multi_platform_pin_gives_this_machines_binary_and_records_every_platform() {
        let Ok(host) = selected_platform() else {
            return; // only on a machine istio-canary knows
        };
        let other = if host == "linux/amd64" {
            "darwin/arm64"
        } else {
            "linux/amd64"
        };
        let text = with_pin(&format!(
            "{{platforms: {{\"{host}\": {{path: host/istioctl, sha256: {SHA_A}}}, \"{other}\": {{path: other/istioctl, sha256: {SHA_B}}}}}}}"
        ));
        let p = check(&text, &[("iop.yaml", IOP)]).unwrap();
        assert_eq!(p.to.istioctl.path, Path::new("dir/host/istioctl"));
        assert_eq!(p.to.istioctl.sha256, SHA_A);
        assert_eq!(p.to.istioctl.platform.as_deref(), Some(host.as_str()));
        assert_eq!(
            p.to.istioctl.recorded,
            BTreeMap::from([
                (format!("1.14.1 {host}"), SHA_A.to_string()),
                (format!("1.14.1 {other}"), SHA_B.to_string()),
            ])
        );
        // A single pin is recorded under its version alone, as before.
        assert_eq!(
            p.from.istioctl.recorded.keys().collect::<Vec<_>>(),
            ["1.13.5"]
        );
        assert_eq!(p.from.istioctl.platform, None);
    }

    #[test]
    fn a_pin_is_one_binary_or_one_per_platform() {
        let cases = [
            ("{path: istioctl}", "the istioctl pin of 1.14.1 has a path but no sha256"),
            (&format!("{{sha256: {SHA_A}}}") as &str, "the istioctl pin of 1.14.1 has a sha256 but no path"),
            ("{}", "the istioctl pin of 1.14.1 names no binary"),
            ("{platforms: {}}", "the istioctl pin of 1.14.1 has no platforms"),
            (
                &format!("{{path: istioctl, sha256: {SHA_A}, platforms: {{linux/amd64: {{path: istioctl, sha256: {SHA_A}}}}}}}"),
                "the istioctl pin of 1.14.1 has both path/sha256 and platforms",
            ),
            (
                &format!("{{platforms: {{windows/amd64: {{path: istioctl, sha256: {SHA_A}}}}}}}"),
                "platform `windows/amd64` is not one istio-canary runs on (darwin/amd64, darwin/arm64, linux/amd64, linux/arm64)",
            ),
            (
                "{platforms: {linux/amd64: {path: istioctl, sha256: nope}}}",
                "sha256 `nope` must be 64 lowercase hex digits (the output of `sha256sum`)",
            ),
        ];
        for (pin, message) in cases {
            let err = check_err(&with_pin(pin), &[("iop.yaml", IOP)]);
            assert_eq!(err.message, message, "{pin}");
            assert_eq!(line_col(&err).0, 13, "{pin}: {err}");
        }
    }

    #[test]
    fn a_platform_without_a_binary_is_refused_with_the_platforms_pinned() {
        let Ok(host) = selected_platform() else {
            return;
        };
        let others: Vec<&str> = PLATFORMS
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| *name != host)
            .collect();
        let entries: Vec<String> = others
            .iter()
            .map(|name| format!("\"{name}\": {{path: istioctl, sha256: {SHA_A}}}"))
            .collect();
        let text = with_pin(&format!("{{platforms: {{{}}}}}", entries.join(", ")));
        let err = check_err(&text, &[("iop.yaml", IOP)]);
        assert_eq!(
            err.message,
            format!(
                "no istioctl 1.14.1 is pinned for {host}, the platform this compile uses; the pin has {}",
                others.join(", ")
            )
        );
        assert!(
            err.help
                .as_deref()
                .is_some_and(|h| h.contains(&format!("`{host}: {{path: …, sha256: …}}`"))),
            "{err}"
        );
    }

    #[test]
    fn the_platform_is_go_s_name_for_this_machine_unless_the_environment_names_one() {
        assert_eq!(
            platform_from(None, "linux", "x86_64").unwrap(),
            "linux/amd64"
        );
        assert_eq!(
            platform_from(None, "macos", "aarch64").unwrap(),
            "darwin/arm64"
        );
        assert_eq!(
            platform_from(Some("darwin/amd64"), "linux", "x86_64").unwrap(),
            "darwin/amd64"
        );
        let unknown = platform_from(None, "freebsd", "x86_64").unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "error: istio-canary does not know this machine's platform (freebsd/x86_64) by Go's name\nhelp: set ISTIO_CANARY_PLATFORM to the platform whose pin to use"
        );
        let bad = platform_from(Some("linux/x86_64"), "linux", "x86_64").unwrap_err();
        assert_eq!(
            bad.message,
            "ISTIO_CANARY_PLATFORM: platform `linux/x86_64` is not one istio-canary runs on (darwin/amd64, darwin/arm64, linux/amd64, linux/arm64)"
        );
        assert_eq!(release_suffix("darwin/arm64"), "osx-arm64");
    }
}
