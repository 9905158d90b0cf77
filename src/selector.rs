//! Admission webhook matching, evaluated the way kube-apiserver does it: label selectors
//! (`namespaceSelector`, `objectSelector`) and webhook `rules`, for the one request the tool asks
//! about, a pod CREATE.
//!
//! Owns: `LabelSelector` (metav1.LabelSelector: `matchLabels` and `matchExpressions` with `In`,
//! `NotIn`, `Exists`, `DoesNotExist`, validated as the API server validates them at create time),
//! `Webhook` (one entry of a Mutating/ValidatingWebhookConfiguration's `webhooks` list: name,
//! selectors, rules, `clientConfig`) and the question "is this webhook called for a pod CREATE in a
//! namespace with these labels, for a pod with these labels?". The sources are
//! k8s.io/apimachinery (`metav1.LabelSelectorAsSelector`, `labels.Requirement.Matches`,
//! `metav1validation.ValidateLabelSelector`) and k8s.io/apiserver's webhook dispatch
//! (`predicates/namespace`, `predicates/object`, `predicates/rules`), with the
//! admissionregistration/v1 defaults (`SetDefaults_MutatingWebhook`, `SetDefaults_Rule`).
//!
//! Must not: do I/O, decide anything about phases, or guess. Whatever kube-apiserver would
//! refuse to store (an invalid selector, an unknown operator or scope) is an `Err`, and so is what
//! this module cannot evaluate (`matchConditions`, which are CEL); a webhook is never silently
//! treated as matching or not matching. Errors are plain `String`s: callers wrap them into
//! `crate::error::Error` with the object they came from.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::{Mapping, Value};

use crate::k8s::NAME_LABEL;

/// The labels kube-apiserver matches a `namespaceSelector` against for objects in namespace
/// `name`: the namespace's own labels plus [`NAME_LABEL`]` = name`, which the server
/// always sets (overwriting any other value). Callers must pass namespace labels through this
/// (or add the label themselves) before calling [`Webhook::calls_for_pod_create`].
pub fn served_namespace_labels(
    name: &str,
    labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = labels.clone();
    out.insert(NAME_LABEL.to_string(), name.to_string());
    out
}

/// A label selector operator (`metav1.LabelSelectorOperator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Operator {
    fn parse(text: &str) -> Result<Operator, String> {
        match text {
            "In" => Ok(Operator::In),
            "NotIn" => Ok(Operator::NotIn),
            "Exists" => Ok(Operator::Exists),
            "DoesNotExist" => Ok(Operator::DoesNotExist),
            other => Err(format!(
                "operator {other:?} is not a valid selector operator (In, NotIn, Exists, DoesNotExist)"
            )),
        }
    }
}

/// One requirement of a selector (`labels.Requirement`): a key, an operator and a set of values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: BTreeSet<String>,
}

impl Requirement {
    /// `labels.Requirement.Matches`. Values are compared as strings, and a label whose value is
    /// `""` is present:
    /// - `In`: the key is present and its value is in the set;
    /// - `NotIn`: the key is absent, or its value is not in the set;
    /// - `Exists`: the key is present (any value, `""` included);
    /// - `DoesNotExist`: the key is absent.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

/// A `metav1.LabelSelector` as an admission webhook's `namespaceSelector` or `objectSelector`.
/// All requirements are ANDed; a selector without requirements matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The empty selector `{}`, which matches every set of labels.
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// Reads a webhook's `namespaceSelector` / `objectSelector`.
    ///
    /// - `null` (and an absent field, see [`Webhook::parse`]) is the empty selector: the API
    ///   server defaults a webhook's nil selectors to `{}` (`SetDefaults_MutatingWebhook`).
    ///   Elsewhere in Kubernetes a nil selector matches nothing; this reader is for webhooks.
    /// - `{}`, `matchLabels: {}` and `matchExpressions: []` match everything
    ///   (`LabelSelectorAsSelector` returns `labels.Everything()`).
    /// - `matchLabels` `k: v` is the requirement `k In [v]`.
    /// - A selector kube-apiserver refuses to store is an error (`ValidateLabelSelector`):
    ///   `In`/`NotIn` without values, `Exists`/`DoesNotExist` with values, an unknown operator,
    ///   an invalid label key or value, a value that is not a string (the API's typed decoding
    ///   refuses `true` or `1` where a string is expected), and, as kubectl's strict field
    ///   validation does, an unknown field (so a misspelt `matchLabel` cannot silently select
    ///   everything).
    pub fn parse(value: &Value) -> Result<LabelSelector, String> {
        let map = match value {
            Value::Null => return Ok(LabelSelector::everything()),
            Value::Mapping(map) => map,
            _ => return Err("a label selector must be a mapping".to_string()),
        };
        let mut requirements = Vec::new();
        for (field, v) in map {
            match field.as_str() {
                Some("matchLabels") => requirements.extend(parse_match_labels(v)?),
                Some("matchExpressions") => requirements.extend(parse_match_expressions(v)?),
                _ => {
                    return Err(format!(
                    "unknown field {} in a label selector (only matchLabels and matchExpressions)",
                    describe_key(field)
                ))
                }
            }
        }
        Ok(LabelSelector { requirements })
    }

    /// `labels.Selector.Matches`: every requirement matches. No requirements: `true`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The requirements, `matchLabels` first (in key order), then `matchExpressions` in order.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

fn describe_key(key: &Value) -> String {
    match key.as_str() {
        Some(s) => format!("{s:?}"),
        None => "(not a string)".to_string(),
    }
}

fn parse_match_labels(v: &Value) -> Result<Vec<Requirement>, String> {
    let map = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(map) => map,
        _ => return Err("matchLabels must be a mapping".to_string()),
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let key = k
            .as_str()
            .ok_or_else(|| "matchLabels: a key is not a string".to_string())?;
        check_label_key(key).map_err(|e| format!("matchLabels: {e}"))?;
        let value = v
            .as_str()
            .ok_or_else(|| format!("matchLabels: the value of {key:?} must be a string"))?;
        check_label_value(value).map_err(|e| format!("matchLabels: {key:?}: {e}"))?;
        out.push(Requirement {
            key: key.to_string(),
            operator: Operator::In,
            values: BTreeSet::from([value.to_string()]),
        });
    }
    // A YAML mapping keeps document order; Kubernetes' map has none. Key order does not change
    // the result (ANDed), sort for a stable `requirements()`.
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

fn parse_match_expressions(v: &Value) -> Result<Vec<Requirement>, String> {
    let list = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Sequence(list) => list,
        _ => return Err("matchExpressions must be a list".to_string()),
    };
    list.iter()
        .enumerate()
        .map(|(i, item)| parse_expression(item).map_err(|e| format!("matchExpressions[{i}]: {e}")))
        .collect()
}

fn parse_expression(item: &Value) -> Result<Requirement, String> {
    let map = item
        .as_mapping()
        .ok_or_else(|| "must be a mapping with key, operator and values".to_string())?;
    let mut key = None;
    let mut operator = None;
    let mut values = Vec::new();
    for (field, v) in map {
        match field.as_str() {
            Some("key") => key = Some(v.as_str().ok_or("key must be a string")?),
            Some("operator") => operator = Some(v.as_str().ok_or("operator must be a string")?),
            Some("values") => values = string_list(v, "values")?,
            _ => return Err(format!("unknown field {}", describe_key(field))),
        }
    }
    let key = key.ok_or("key is required")?;
    check_label_key(key)?;
    let operator = Operator::parse(operator.ok_or("operator is required")?)?;
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            return Err(format!(
                "{key:?}: values must be specified when operator is In or NotIn"
            ))
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            return Err(format!(
                "{key:?}: values may not be specified when operator is Exists or DoesNotExist"
            ))
        }
        _ => {}
    }
    for value in &values {
        check_label_value(value).map_err(|e| format!("{key:?}: {e}"))?;
    }
    Ok(Requirement {
        key: key.to_string(),
        operator,
        values: values.into_iter().collect(),
    })
}

/// A list of strings; `null` is the empty list.
fn string_list(v: &Value, what: &str) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{what}: every entry must be a string"))
            })
            .collect(),
        _ => Err(format!("{what} must be a list of strings")),
    }
}

/// `validation.IsQualifiedName`: an optional DNS-1123 subdomain prefix and `/`, then a name of at
/// most 63 characters of `[A-Za-z0-9_.-]` that starts and ends alphanumeric.
fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let bad = |why: &str| Err(format!("label key {key:?} is invalid: {why}"));
    if let Some(prefix) = prefix {
        // An empty prefix (`/x`) is no DNS-1123 subdomain either.
        if prefix.len() > 253 || !is_dns1123_subdomain(prefix) {
            return bad("the prefix must be a DNS-1123 subdomain");
        }
    }
    // An empty name (`x/`) is no label token either.
    if name.len() > 63 || !is_label_token(name) {
        return bad(
            "the name must be 1-63 characters of [A-Za-z0-9_.-], alphanumeric at both ends",
        );
    }
    Ok(())
}

/// `validation.IsValidLabelValue`: empty, or at most 63 characters of `[A-Za-z0-9_.-]` that start
/// and end alphanumeric.
fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || (value.len() <= 63 && is_label_token(value)) {
        Ok(())
    } else {
        Err(format!(
            "label value {value:?} is invalid: at most 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends"
        ))
    }
}

fn is_label_token(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        !label.is_empty()
            && label.starts_with(ok)
            && label.ends_with(ok)
            && label.chars().all(|c| ok(c) || c == '-')
    })
}

/// `rules[].scope` (`admissionregistration/v1.ScopeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `"*"`, the default when absent (`SetDefaults_Rule`).
    All,
    Cluster,
    Namespaced,
}

/// One entry of a webhook's `rules` (`RuleWithOperations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub operations: Vec<String>,
    pub api_groups: Vec<String>,
    pub api_versions: Vec<String>,
    pub resources: Vec<String>,
    pub scope: Scope,
}

const OPERATIONS: [&str; 5] = ["CREATE", "UPDATE", "DELETE", "CONNECT", "*"];

impl Rule {
    /// Reads a rule, refusing what `ValidateRuleWithOperations` refuses: a missing or empty
    /// `operations`/`apiGroups`/`apiVersions`/`resources`, `"*"` next to other entries in
    /// `operations`/`apiGroups`/`apiVersions`, an unknown operation or scope, an empty version or
    /// resource. (The cross-entry checks among `resources`, such as `*/*` next to others, are not
    /// repeated: they refuse configurations but never change what a stored rule matches.)
    pub fn parse(value: &Value) -> Result<Rule, String> {
        let map = value.as_mapping().ok_or("a rule must be a mapping")?;
        let list = |field: &str| -> Result<Vec<String>, String> {
            let items = string_list(map.get(field).unwrap_or(&Value::Null), field)?;
            if items.is_empty() {
                return Err(format!("{field} is required"));
            }
            if items.len() > 1 && items.iter().any(|s| s == "*") {
                return Err(format!(
                    "{field}: if '*' is present, it must be the only entry"
                ));
            }
            Ok(items)
        };
        let operations = list("operations")?;
        if let Some(op) = operations
            .iter()
            .find(|op| !OPERATIONS.contains(&op.as_str()))
        {
            return Err(format!(
                "operations: {op:?} is not one of CREATE, UPDATE, DELETE, CONNECT, *"
            ));
        }
        let api_groups = list("apiGroups")?;
        let api_versions = list("apiVersions")?;
        if api_versions.iter().any(String::is_empty) {
            return Err("apiVersions: a version must not be empty".to_string());
        }
        let resources = string_list(map.get("resources").unwrap_or(&Value::Null), "resources")?;
        if resources.is_empty() || resources.iter().any(String::is_empty) {
            return Err("resources is required, and no resource may be empty".to_string());
        }
        let scope = match map.get("scope") {
            None | Some(Value::Null) => Scope::All,
            Some(v) => match v.as_str() {
                Some("*") => Scope::All,
                Some("Cluster") => Scope::Cluster,
                Some("Namespaced") => Scope::Namespaced,
                _ => return Err(format!("scope {v:?} is not one of *, Cluster, Namespaced")),
            },
        };
        Ok(Rule {
            operations,
            api_groups,
            api_versions,
            resources,
            scope,
        })
    }

    /// Whether the rule covers `CREATE` of `pods` (group `""`, version `v1`, no subresource,
    /// namespaced), following apiserver's `rules.Matcher`: each of operation, group and version
    /// is the exact value or `"*"`; a resource entry `res[/sub]` matches when `res` is `pods` or
    /// `*` and `sub` is absent or `*` (so `pods`, `*`, `*/*` and `pods/*` all cover a pod, but
    /// `*/status` does not); scope `*` or `Namespaced` (a Pod is namespaced), not `Cluster`.
    /// `matchPolicy: Equivalent` adds nothing for pods: `pods` is served only as `v1`.
    pub fn covers_pod_create(&self) -> bool {
        let exact_or_wildcard =
            |items: &[String], want: &str| items.iter().any(|item| item == "*" || item == want);
        let resource = self.resources.iter().any(|entry| {
            let (res, sub) = entry.split_once('/').unwrap_or((entry, ""));
            (res == "*" || res == "pods") && (sub == "*" || sub.is_empty())
        });
        exact_or_wildcard(&self.operations, "CREATE")
            && exact_or_wildcard(&self.api_groups, "")
            && exact_or_wildcard(&self.api_versions, "v1")
            && resource
            && self.scope != Scope::Cluster
    }
}

/// `clientConfig.service` of a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    pub path: Option<String>,
    /// 443 when absent (the API default).
    pub port: u16,
}

/// One entry of a webhook configuration's `webhooks` list, read and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub name: String,
    pub namespace_selector: LabelSelector,
    pub object_selector: LabelSelector,
    pub rules: Vec<Rule>,
    /// `clientConfig.service`, when the webhook calls a Service.
    pub service: Option<ServiceRef>,
    /// `clientConfig.url`, when the webhook calls a URL.
    pub url: Option<String>,
}

impl Webhook {
    /// Reads one webhook. Absent or `null` selectors are `{}` (the API server's default); absent
    /// `rules` is the empty list (such a webhook is never called). Errors: a missing `name`, an
    /// invalid selector or rule (see [`LabelSelector::parse`], [`Rule::parse`]), a
    /// `clientConfig` without exactly one of `service` and `url`, a `service` without
    /// `namespace`/`name`, and non-empty `matchConditions` (CEL expressions, which this module
    /// does not evaluate; refusing is the only answer that is never wrong).
    pub fn parse(webhook: &Mapping) -> Result<Webhook, String> {
        let name = webhook
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a webhook has no name")?
            .to_string();
        let in_webhook = |e: String| format!("webhook {name:?}: {e}");
        let selector = |field: &str| {
            LabelSelector::parse(webhook.get(field).unwrap_or(&Value::Null))
                .map_err(|e| in_webhook(format!("{field}: {e}")))
        };
        let namespace_selector = selector("namespaceSelector")?;
        let object_selector = selector("objectSelector")?;
        let rules = match webhook.get("rules") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .map(|(i, r)| Rule::parse(r).map_err(|e| in_webhook(format!("rules[{i}]: {e}"))))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(in_webhook("rules must be a list".to_string())),
        };
        match webhook.get("matchConditions") {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(items)) if items.is_empty() => {}
            Some(_) => {
                return Err(in_webhook(
                    "matchConditions (CEL) are not evaluated, so whether the webhook is called \
                     cannot be decided"
                        .to_string(),
                ))
            }
        }
        let (service, url) = parse_client_config(webhook).map_err(in_webhook)?;
        Ok(Webhook {
            name,
            namespace_selector,
            object_selector,
            rules,
            service,
            url,
        })
    }

    /// Whether kube-apiserver calls this webhook when a pod with `pod_labels` is created in a
    /// namespace with `namespace_labels` (apiserver `ShouldCallHook`): some rule covers the
    /// request ([`Rule::covers_pod_create`]), the `namespaceSelector` matches the namespace's
    /// labels (a Pod is namespaced, so its namespace's labels are used; only cluster-scoped
    /// objects other than Namespaces skip the `namespaceSelector`), and the `objectSelector`
    /// matches the pod's labels.
    ///
    /// `namespace_labels` must be the labels as the server holds them, which always include
    /// `kubernetes.io/metadata.name` (use [`served_namespace_labels`]).
    pub fn calls_for_pod_create(
        &self,
        namespace_labels: &BTreeMap<String, String>,
        pod_labels: &BTreeMap<String, String>,
    ) -> bool {
        self.rules.iter().any(Rule::covers_pod_create)
            && self.namespace_selector.matches(namespace_labels)
            && self.object_selector.matches(pod_labels)
    }
}

fn parse_client_config(webhook: &Mapping) -> Result<(Option<ServiceRef>, Option<String>), String> {
    let config = webhook
        .get("clientConfig")
        .and_then(Value::as_mapping)
        .ok_or("clientConfig is required")?;
    let url = match config.get("url") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .ok_or("clientConfig.url must be a string")?
                .to_string(),
        ),
    };
    let service = match config.get("service") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let s = v
                .as_mapping()
                .ok_or("clientConfig.service must be a mapping")?;
            let text = |field: &str| s.get(field).and_then(Value::as_str).map(str::to_string);
            let port = match s.get("port") {
                None | Some(Value::Null) => 443,
                Some(p) => p
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0)
                    .ok_or("clientConfig.service.port must be a port number (1-65535)")?,
            };
            Some(ServiceRef {
                namespace: text("namespace").ok_or("clientConfig.service.namespace is required")?,
                name: text("name").ok_or("clientConfig.service.name is required")?,
                path: text("path"),
                port,
            })
        }
    };
    if service.is_some() == url.is_some() {
        return Err("clientConfig needs exactly one of service and url".to_string());
    }
    Ok((service, url))
}

/// The webhooks of a MutatingWebhookConfiguration or ValidatingWebhookConfiguration body, in
/// order. An absent or `null` `webhooks` is the empty list (the API allows a configuration with
/// no webhooks). Fails on the first webhook that [`Webhook::parse`] refuses.
pub fn webhooks_of(configuration: &Mapping) -> Result<Vec<Webhook>, String> {
    match configuration.get("webhooks") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_mapping()
                    .ok_or_else(|| format!("webhooks[{i}] is not a mapping"))
                    .and_then(Webhook::parse)
            })
            .collect(),
        Some(_) => Err("webhooks must be a list".to_string()),
    }
}

/// Whether one webhook entry is called for a pod CREATE; see [`Webhook::calls_for_pod_create`]
/// (the namespace labels must include `kubernetes.io/metadata.name`).
pub fn webhook_matches_pod_create(
    webhook: &Mapping,
    namespace_labels: &BTreeMap<String, String>,
    pod_labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    Ok(Webhook::parse(webhook)?.calls_for_pod_create(namespace_labels, pod_labels))
}

/// `clientConfig.service` of one webhook entry as (namespace, name), when it has one.
pub fn webhook_service(webhook: &Mapping) -> Option<(String, String)> {
    let service = webhook.get("clientConfig")?.get("service")?;
    Some((
        service.get("namespace")?.as_str()?.to_string(),
        service.get("name")?.as_str()?.to_string(),
    ))
}

/// `clientConfig.url` of one webhook entry, when it has one.
pub fn webhook_url(webhook: &Mapping) -> Option<String> {
    Some(
        webhook
            .get("clientConfig")?
            .get("url")?
            .as_str()?
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{parse_manifest, Object};
    use std::path::Path;
    use std::process::Command;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn selector(yaml: &str) -> LabelSelector {
        LabelSelector::parse(&serde_yaml::from_str(yaml).unwrap())
            .unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    fn selector_error(yaml: &str) -> String {
        match LabelSelector::parse(&serde_yaml::from_str(yaml).unwrap()) {
            Ok(s) => panic!("{yaml} was accepted as {s:?}"),
            Err(e) => e,
        }
    }

    /// Asserts `matches` for each (labels, expected) row, naming the failing row.
    fn check(yaml: &str, rows: &[(&[(&str, &str)], bool)]) {
        let s = selector(yaml);
        for (pairs, want) in rows {
            assert_eq!(s.matches(&labels(pairs)), *want, "{yaml} against {pairs:?}");
        }
    }

    #[test]
    fn in_needs_the_key_with_a_listed_value() {
        check(
            "matchExpressions: [{key: a, operator: In, values: [x, y]}]",
            &[
                (&[("a", "x")], true),
                (&[("a", "y"), ("b", "z")], true),
                (&[("a", "z")], false),
                (&[("a", "")], false),
                (&[("b", "x")], false),
                (&[], false),
            ],
        );
    }

    #[test]
    fn not_in_matches_a_missing_key() {
        check(
            "matchExpressions: [{key: a, operator: NotIn, values: [x]}]",
            &[
                (&[("a", "x")], false),
                (&[("a", "y")], true),
                (&[("a", "")], true),
                (&[("b", "x")], true),
                (&[], true),
            ],
        );
    }

    #[test]
    fn exists_and_does_not_exist_look_at_the_key_only() {
        check(
            "matchExpressions: [{key: a, operator: Exists}]",
            &[
                (&[("a", "x")], true),
                (&[("a", "")], true),
                (&[("b", "x")], false),
            ],
        );
        check(
            "matchExpressions: [{key: a, operator: DoesNotExist, values: null}]",
            &[
                (&[("a", "x")], false),
                (&[("a", "")], false),
                (&[("b", "x")], true),
                (&[], true),
            ],
        );
    }

    #[test]
    fn values_are_compared_as_strings() {
        check(
            "matchExpressions: [{key: a, operator: In, values: ['01', 'false']}]",
            &[
                (&[("a", "01")], true),
                (&[("a", "1")], false),
                (&[("a", "false")], true),
            ],
        );
        // An empty value is a value: `matchLabels: {a: ""}` wants the label present and empty.
        check(
            "matchLabels: {a: ''}",
            &[(&[("a", "")], true), (&[], false), (&[("a", "x")], false)],
        );
    }

    #[test]
    fn match_labels_is_in_with_one_value_and_all_are_anded() {
        check(
            "matchLabels: {a: x, b: y}",
            &[
                (&[("a", "x"), ("b", "y"), ("c", "z")], true),
                (&[("a", "x")], false),
                (&[("a", "x"), ("b", "x")], false),
                (&[], false),
            ],
        );
        let s = selector("matchLabels: {b: y, a: x}");
        assert_eq!(s.requirements().len(), 2);
        assert!(s.requirements().iter().all(|r| r.operator == Operator::In));
    }

    #[test]
    fn match_labels_and_match_expressions_are_anded() {
        check(
            "matchLabels: {app: web}\nmatchExpressions:\n- {key: tier, operator: NotIn, values: [db]}\n- {key: legacy, operator: DoesNotExist}\n",
            &[
                (&[("app", "web")], true),
                (&[("app", "web"), ("tier", "front")], true),
                (&[("app", "web"), ("tier", "db")], false),
                (&[("app", "web"), ("legacy", "")], false),
                (&[("tier", "front")], false),
            ],
        );
    }

    #[test]
    fn every_expression_must_match() {
        check(
            "matchExpressions:\n- {key: a, operator: Exists}\n- {key: b, operator: Exists}\n- {key: c, operator: In, values: [x]}\n",
            &[
                (&[("a", ""), ("b", ""), ("c", "x")], true),
                (&[("a", ""), ("c", "x")], false),
                (&[("b", ""), ("c", "x")], false),
                (&[("a", ""), ("b", "")], false),
            ],
        );
    }

    #[test]
    fn empty_and_null_selectors_match_everything() {
        for yaml in [
            "{}",
            "null",
            "matchLabels: {}",
            "matchExpressions: []",
            "matchLabels: null\nmatchExpressions: null",
        ] {
            check(
                yaml,
                &[(&[], true), (&[("a", "x")], true), (&[("a", "")], true)],
            );
        }
    }

    #[test]
    fn selectors_the_api_server_refuses_are_errors() {
        for (yaml, says) in [
            (
                "matchExpressions: [{key: a, operator: Exists, values: [x]}]",
                "may not be specified",
            ),
            (
                "matchExpressions: [{key: a, operator: DoesNotExist, values: [x]}]",
                "may not be specified",
            ),
            (
                "matchExpressions: [{key: a, operator: In}]",
                "must be specified",
            ),
            (
                "matchExpressions: [{key: a, operator: In, values: []}]",
                "must be specified",
            ),
            (
                "matchExpressions: [{key: a, operator: NotIn, values: null}]",
                "must be specified",
            ),
            (
                "matchExpressions: [{key: a, operator: Equals, values: [x]}]",
                "not a valid selector operator",
            ),
            (
                "matchExpressions: [{key: a, operator: in, values: [x]}]",
                "not a valid selector operator",
            ),
            (
                "matchExpressions: [{key: a, operator: Gt, values: ['1']}]",
                "not a valid selector operator",
            ),
            ("matchExpressions: [{operator: Exists}]", "key is required"),
            ("matchExpressions: [{key: a}]", "operator is required"),
            (
                "matchExpressions: [{key: a, operator: In, values: [true]}]",
                "must be a string",
            ),
            (
                "matchExpressions: [{key: a, operator: In, values: x}]",
                "must be a list",
            ),
            (
                "matchExpressions: [{key: a, operator: Exists, value: x}]",
                "unknown field \"value\"",
            ),
            (
                "matchExpressions: {key: a, operator: Exists}",
                "must be a list",
            ),
            ("matchLabels: {a: true}", "must be a string"),
            ("matchLabels: [a]", "must be a mapping"),
            ("matchLabels: {-a: x}", "label key \"-a\" is invalid"),
            ("matchLabels: {a/b/c: x}", "label key \"a/b/c\" is invalid"),
            (
                "matchLabels: {Istio.io/rev: x}",
                "prefix must be a DNS-1123 subdomain",
            ),
            ("matchLabels: {a: 'x y'}", "label value \"x y\" is invalid"),
            (
                "matchExpressions: [{key: a, operator: In, values: [-x]}]",
                "label value \"-x\" is invalid",
            ),
            ("matchLabel: {a: x}", "unknown field \"matchLabel\""),
            ("[a]", "must be a mapping"),
        ] {
            let e = selector_error(yaml);
            assert!(e.contains(says), "{yaml}: {e:?} should say {says:?}");
        }
        let long = "x".repeat(64);
        assert!(selector_error(&format!("matchLabels: {{a: {long}}}")).contains("is invalid"));
        selector(&format!("matchLabels: {{a: {}}}", "x".repeat(63)));
    }

    #[test]
    fn real_label_keys_are_valid() {
        selector(
            "matchExpressions:\n- {key: istio.io/rev, operator: Exists}\n- {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system]}\n- {key: sidecar.istio.io/inject, operator: NotIn, values: ['false']}\n- {key: istio-injection, operator: DoesNotExist}\n- {key: app.kubernetes.io/name_x.y, operator: Exists}\n",
        );
    }

    #[test]
    fn label_keys_the_api_server_refuses_are_errors() {
        // `IsQualifiedName`: a DNS-1123 subdomain prefix of at most 253 characters, a name of at
        // most 63.
        let label = |n: usize| "a".repeat(n);
        let prefix_253 = [label(63), label(63), label(63), label(61)].join(".");
        assert_eq!(prefix_253.len(), 253);
        let name_63 = "n".repeat(63);
        let key_selector =
            |key: &str| format!("matchExpressions: [{{key: '{key}', operator: Exists}}]");
        for key in [
            format!("{prefix_253}/x"),
            name_63.clone(),
            format!("my-team.example.com/{name_63}"),
            "a1.b-2.c3/x".to_string(),
        ] {
            let s = selector(&key_selector(&key));
            assert!(s.matches(&labels(&[(&key, "")])), "{key}");
        }
        for key in [
            format!("{prefix_253}a/x"),
            format!("{name_63}n"),
            format!("istio.io/{name_63}n"),
            "istio-.io/x".to_string(),
            "-istio.io/x".to_string(),
            "istio.-io/x".to_string(),
            "istIo.io/x".to_string(),
            "istio_x.io/x".to_string(),
            "istio..io/x".to_string(),
            "/x".to_string(),
            "x/".to_string(),
            String::new(),
        ] {
            let e = selector_error(&key_selector(&key));
            assert!(e.contains("is invalid"), "{key:?}: {e}");
        }
    }

    fn webhook(yaml: &str) -> Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    const POD_RULE: &str =
        "[{apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [pods]}]";

    fn with_rules(rules: &str) -> Mapping {
        webhook(&format!(
            "name: w.example.com\nclientConfig: {{service: {{namespace: ns, name: svc}}}}\nrules: {rules}\n"
        ))
    }

    #[test]
    fn rules_decide_whether_a_pod_create_is_covered() {
        let none = BTreeMap::new();
        for (rules, want) in [
            (POD_RULE.to_string(), true),
            ("[{apiGroups: ['*'], apiVersions: ['*'], operations: ['*'], resources: ['*']}]".to_string(), true),
            ("[{apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: ['*/*']}]".to_string(), true),
            ("[{apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: ['pods/*']}]".to_string(), true),
            ("[{apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [pods], scope: '*'}]".to_string(), true),
            ("[{apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [pods], scope: Namespaced}]".to_string(), true),
            ("[{apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [pods], scope: Cluster}]".to_string(), false),
            ("[{apiGroups: [''], apiVersions: [v1], operations: [UPDATE, DELETE], resources: [pods]}]".to_string(), false),
            ("[{apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [pods]}]".to_string(), false),
            ("[{apiGroups: [''], apiVersions: [v1beta1], operations: [CREATE], resources: [pods]}]".to_string(), false),
            ("[{apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [deployments, services]}]".to_string(), false),
            ("[{apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [pods/status, '*/exec']}]".to_string(), false),
            // One covering rule among several is enough.
            (format!("[{{apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: ['*']}}, {}]", &POD_RULE[1..POD_RULE.len() - 1]), true),
            ("[]".to_string(), false),
            ("null".to_string(), false),
        ] {
            let got = webhook_matches_pod_create(&with_rules(&rules), &none, &none).unwrap();
            assert_eq!(got, want, "rules {rules}");
        }
    }

    #[test]
    fn rules_the_api_server_refuses_are_errors() {
        let none = BTreeMap::new();
        for (rules, says) in [
            ("[{apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [pods], scope: Global}]", "scope"),
            ("[{apiGroups: [''], apiVersions: [v1], operations: [PATCH], resources: [pods]}]", "\"PATCH\" is not one of"),
            ("[{apiGroups: [''], apiVersions: [v1], operations: [CREATE, '*'], resources: [pods]}]", "operations: if '*' is present"),
            ("[{apiGroups: ['*', apps], apiVersions: [v1], operations: [CREATE], resources: [pods]}]", "apiGroups: if '*' is present"),
            ("[{apiGroups: [''], apiVersions: [v1], operations: [CREATE]}]", "resources is required"),
            ("[{apiGroups: [''], apiVersions: [''], operations: [CREATE], resources: [pods]}]", "must not be empty"),
            ("[{apiVersions: [v1], operations: [CREATE], resources: [pods]}]", "apiGroups is required"),
            ("{apiGroups: ['']}", "rules must be a list"),
        ] {
            let e = webhook_matches_pod_create(&with_rules(rules), &none, &none).unwrap_err();
            assert!(e.contains(says), "{rules}: {e:?} should say {says:?}");
            assert!(e.starts_with("webhook \"w.example.com\": "), "{e}");
        }
    }

    #[test]
    fn both_selectors_and_the_rules_must_match() {
        let wh = webhook(&format!(
            "name: w.example.com\nclientConfig: {{url: 'https://hook.example.com/x'}}\nrules: {POD_RULE}\nnamespaceSelector: {{matchLabels: {{team: a}}}}\nobjectSelector: {{matchExpressions: [{{key: skip, operator: DoesNotExist}}]}}\n"
        ));
        let ns_a = served_namespace_labels("apps", &labels(&[("team", "a")]));
        let ns_b = served_namespace_labels("apps", &labels(&[("team", "b")]));
        let pod = labels(&[("app", "x")]);
        let skipped = labels(&[("skip", "")]);
        assert!(webhook_matches_pod_create(&wh, &ns_a, &pod).unwrap());
        assert!(!webhook_matches_pod_create(&wh, &ns_b, &pod).unwrap());
        assert!(!webhook_matches_pod_create(&wh, &ns_a, &skipped).unwrap());
        // The namespace's labels decide, never the pod's, and the other way round.
        assert!(!webhook_matches_pod_create(&wh, &pod, &labels(&[("team", "a")])).unwrap());
        assert_eq!(
            webhook_url(&wh).as_deref(),
            Some("https://hook.example.com/x")
        );
        assert_eq!(webhook_service(&wh), None);
    }

    #[test]
    fn absent_selectors_match_every_namespace_and_pod() {
        let wh = with_rules(POD_RULE);
        let parsed = Webhook::parse(&wh).unwrap();
        assert_eq!(parsed.namespace_selector, LabelSelector::everything());
        assert_eq!(parsed.object_selector, LabelSelector::everything());
        assert!(parsed.calls_for_pod_create(&BTreeMap::new(), &labels(&[("a", "")])));
    }

    #[test]
    fn the_namespace_name_label_is_always_served() {
        let ns = served_namespace_labels(
            "kube-system",
            &labels(&[(NAME_LABEL, "forged"), ("x", "y")]),
        );
        assert_eq!(ns.get(NAME_LABEL).map(String::as_str), Some("kube-system"));
        assert_eq!(ns.get("x").map(String::as_str), Some("y"));
        let wh = webhook(&format!(
            "name: auto.sidecar-injector.istio.io\nclientConfig: {{service: {{namespace: istio-system, name: istiod}}}}\nrules: {POD_RULE}\nnamespaceSelector: {{matchExpressions: [{{key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system]}}]}}\n"
        ));
        let pod = BTreeMap::new();
        assert!(!webhook_matches_pod_create(&wh, &ns, &pod).unwrap());
        let apps = served_namespace_labels("apps", &BTreeMap::new());
        assert!(webhook_matches_pod_create(&wh, &apps, &pod).unwrap());
    }

    #[test]
    fn client_config_is_exposed_and_checked() {
        let wh = webhook(&format!(
            "name: w.example.com\nclientConfig: {{service: {{namespace: istio-system, name: istiod-1-14-1, path: /inject}}}}\nrules: {POD_RULE}\n"
        ));
        assert_eq!(
            webhook_service(&wh),
            Some(("istio-system".to_string(), "istiod-1-14-1".to_string()))
        );
        let parsed = Webhook::parse(&wh).unwrap();
        assert_eq!(
            parsed.service,
            Some(ServiceRef {
                namespace: "istio-system".into(),
                name: "istiod-1-14-1".into(),
                path: Some("/inject".into()),
                port: 443,
            })
        );
        assert_eq!(parsed.url, None);
        for (client, says) in [
            ("{}", "exactly one of service and url"),
            (
                "{url: 'https://x', service: {namespace: a, name: b}}",
                "exactly one of service and url",
            ),
            ("{service: {name: b}}", "namespace is required"),
            ("{service: {namespace: a, name: b, port: 70000}}", "port"),
        ] {
            let wh = webhook(&format!("name: w.example.com\nclientConfig: {client}\n"));
            let e = Webhook::parse(&wh).unwrap_err();
            assert!(e.contains(says), "{client}: {e:?}");
        }
        let e = Webhook::parse(&webhook("clientConfig: {url: 'https://x'}")).unwrap_err();
        assert!(e.contains("no name"), "{e}");
    }

    #[test]
    fn match_conditions_cannot_be_decided() {
        let wh = webhook(&format!(
            "name: w.example.com\nclientConfig: {{url: 'https://x'}}\nrules: {POD_RULE}\nmatchConditions: [{{name: c, expression: 'true'}}]\n"
        ));
        let e = webhook_matches_pod_create(&wh, &BTreeMap::new(), &BTreeMap::new()).unwrap_err();
        assert!(e.contains("matchConditions"), "{e}");
        let empty = webhook(&format!(
            "name: w.example.com\nclientConfig: {{url: 'https://x'}}\nrules: {POD_RULE}\nmatchConditions: []\n"
        ));
        assert!(webhook_matches_pod_create(&empty, &BTreeMap::new(), &BTreeMap::new()).unwrap());
    }

    #[test]
    fn an_invalid_selector_names_the_webhook_and_field() {
        let wh = webhook(&format!(
            "name: w.example.com\nclientConfig: {{url: 'https://x'}}\nrules: {POD_RULE}\nobjectSelector: {{matchExpressions: [{{key: a, operator: Exists, values: [x]}}]}}\n"
        ));
        let e = Webhook::parse(&wh).unwrap_err();
        assert!(
            e.starts_with("webhook \"w.example.com\": objectSelector: matchExpressions[0]: "),
            "{e}"
        );
    }

    // ---- Istio's injectors, as the stand-in istioctl renders them ----

    fn render(version: &str, sets: &[&str]) -> Vec<Object> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut cmd = Command::new(root.join(format!("fixtures/istioctl/istioctl-{version}")));
        cmd.args(["manifest", "generate", "-f"])
            .arg(root.join("fixtures/example/iop.yaml"));
        for set in sets {
            cmd.args(["--set", set]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse_manifest(&String::from_utf8(out.stdout).unwrap(), "istioctl").unwrap()
    }

    /// (configuration name, webhook) for every sidecar injector webhook of the renders.
    fn injectors(renders: &[Vec<Object>]) -> Vec<(String, Webhook)> {
        let mut out = Vec::new();
        for object in renders.iter().flatten() {
            if object.id.kind == "MutatingWebhookConfiguration" {
                for wh in webhooks_of(&object.body).unwrap() {
                    if crate::istio::is_injector_webhook(&wh) {
                        out.push((object.id.name.clone(), wh));
                    }
                }
            }
        }
        out
    }

    /// `configuration/webhook` of every injector called for a pod CREATE in namespace `apps`.
    fn injected_by(
        injectors: &[(String, Webhook)],
        ns: &[(&str, &str)],
        pod: &[(&str, &str)],
    ) -> Vec<String> {
        let ns = served_namespace_labels("apps", &labels(ns));
        injectors
            .iter()
            .filter(|(_, wh)| wh.calls_for_pod_create(&ns, &labels(pod)))
            .map(|(config, wh)| {
                format!(
                    "{config}/{}",
                    wh.name.trim_end_matches(".sidecar-injector.istio.io")
                )
            })
            .collect()
    }

    /// (namespace labels, pod labels, the injectors expected to be called).
    type Row<'a> = (Pairs<'a>, Pairs<'a>, &'a [&'a str]);
    type Pairs<'a> = &'a [(&'a str, &'a str)];

    const INJ: &str = "istio-injection";
    const REV: &str = "istio.io/rev";

    #[test]
    fn istio_injection_from_an_unrevisioned_install_to_a_canary() {
        let old = render("1.13.5", &[]);
        let new = render("1.14.1", &["revision=1-14-1"]);
        let all = injectors(&[old, new]);
        let names: Vec<String> = all.iter().map(|(c, w)| format!("{c}/{}", w.name)).collect();
        assert_eq!(all.len(), 6, "{names:?}");
        for (c, w) in &all {
            let want = if c == "istio-sidecar-injector" {
                "istiod"
            } else {
                "istiod-1-14-1"
            };
            let service = w.service.as_ref().unwrap();
            assert_eq!(
                (service.namespace.as_str(), service.name.as_str()),
                ("istio-system", want)
            );
        }
        let old_ns = ["istio-sidecar-injector/namespace"];
        let table: &[Row<'_>] = &[
            (&[(INJ, "enabled")], &[], &old_ns),
            // Both labels: the default (unrevisioned) injector wins, not the revision.
            (&[(INJ, "enabled"), (REV, "1-14-1")], &[], &old_ns),
            (&[(INJ, "disabled"), (REV, "1-14-1")], &[], &[]),
            (
                &[(REV, "1-14-1")],
                &[],
                &["istio-sidecar-injector-1-14-1/rev.namespace"],
            ),
            (
                &[(REV, "default")],
                &[],
                &["istio-sidecar-injector/rev.namespace"],
            ),
            // A pod-level istio.io/rev applies only when the namespace has neither label.
            (
                &[],
                &[(REV, "1-14-1")],
                &["istio-sidecar-injector-1-14-1/rev.object"],
            ),
            (
                &[(REV, "1-14-1")],
                &[(REV, "default")],
                &["istio-sidecar-injector-1-14-1/rev.namespace"],
            ),
            (&[(INJ, "enabled")], &[(REV, "1-14-1")], &old_ns),
            (&[], &[], &[]),
            (
                &[],
                &[("sidecar.istio.io/inject", "true")],
                &["istio-sidecar-injector/object"],
            ),
            (
                &[(INJ, "enabled")],
                &[("sidecar.istio.io/inject", "false")],
                &[],
            ),
            // `istio-injection: ""` (what server-side apply makes of `null`) is present: nothing.
            (&[(INJ, "")], &[], &[]),
            (&[(INJ, "")], &[(REV, "1-14-1")], &[]),
            (&[(INJ, ""), (REV, "1-14-1")], &[], &[]),
            (
                &[(INJ, ""), (REV, "1-14-1")],
                &[("sidecar.istio.io/inject", "true")],
                &[],
            ),
        ];
        for (ns, pod, want) in table {
            assert_eq!(
                injected_by(&all, ns, pod),
                *want,
                "namespace {ns:?}, pod {pod:?}"
            );
        }
    }

    #[test]
    fn istio_injection_between_revisions_with_the_default_tag() {
        let old = render("1.13.5", &["revision=1-13-5"]);
        let new = render(
            "1.14.1",
            &["revision=1-14-1", "values.revisionTags.[0]=default"],
        );
        let all = injectors(&[old, new]);
        let tag_ns = ["istio-revision-tag-default/namespace"];
        let table: &[Row<'_>] = &[
            (
                &[(REV, "1-13-5")],
                &[],
                &["istio-sidecar-injector-1-13-5/rev.namespace"],
            ),
            (
                &[(REV, "1-14-1")],
                &[],
                &["istio-sidecar-injector-1-14-1/rev.namespace"],
            ),
            (
                &[(REV, "default")],
                &[],
                &["istio-revision-tag-default/rev.namespace"],
            ),
            (&[(INJ, "enabled")], &[], &tag_ns),
            (&[(INJ, "enabled"), (REV, "1-13-5")], &[], &tag_ns),
            (&[(INJ, "disabled"), (REV, "1-13-5")], &[], &[]),
            (&[(INJ, "disabled"), (REV, "1-14-1")], &[], &[]),
            (
                &[],
                &[(REV, "1-14-1")],
                &["istio-sidecar-injector-1-14-1/rev.object"],
            ),
            (
                &[],
                &[(REV, "1-13-5")],
                &["istio-sidecar-injector-1-13-5/rev.object"],
            ),
            (
                &[],
                &[(REV, "default")],
                &["istio-revision-tag-default/rev.object"],
            ),
            (&[(INJ, "")], &[], &[]),
            (&[(INJ, ""), (REV, "1-14-1")], &[], &[]),
        ];
        for (ns, pod, want) in table {
            assert_eq!(
                injected_by(&all, ns, pod),
                *want,
                "namespace {ns:?}, pod {pod:?}"
            );
        }
        for (config, wh) in &all {
            if config == "istio-revision-tag-default" {
                assert_eq!(
                    wh.service.as_ref().map(|s| s.name.as_str()),
                    Some("istiod-1-14-1"),
                    "the default tag calls the revision it points at"
                );
            }
        }
    }

    #[test]
    fn a_default_tag_beside_an_unrevisioned_injector_injects_twice() {
        // IST0139 / istio#43932: until the old injector is neutralized, both match.
        let old = render("1.13.5", &[]);
        let new = render(
            "1.14.1",
            &["revision=1-14-1", "values.revisionTags.[0]=default"],
        );
        let all = injectors(&[old, new]);
        assert_eq!(
            injected_by(&all, &[(INJ, "enabled")], &[]),
            [
                "istio-sidecar-injector/namespace",
                "istio-revision-tag-default/namespace"
            ]
        );
    }

    #[test]
    fn every_rendered_webhook_of_every_version_is_read() {
        for version in [
            "1.13.5", "1.14.1", "1.15.3", "1.17.2", "1.20.0", "1.24.0", "1.30.0",
        ] {
            for sets in [
                &[][..],
                &["revision=r1", "values.revisionTags.[0]=default"][..],
            ] {
                let objects = render(version, sets);
                let mut injectors = 0;
                for object in &objects {
                    if object.id.kind.ends_with("WebhookConfiguration") {
                        let webhooks = webhooks_of(&object.body)
                            .unwrap_or_else(|e| panic!("{version} {sets:?} {}: {e}", object.id));
                        for wh in webhooks
                            .iter()
                            .filter(|wh| crate::istio::is_injector_webhook(wh))
                        {
                            injectors += 1;
                            assert!(
                                wh.rules.iter().any(Rule::covers_pod_create),
                                "{version} {}",
                                wh.name
                            );
                            assert!(wh.service.is_some(), "{version} {}", wh.name);
                        }
                    }
                }
                assert!(
                    injectors >= 2,
                    "{version} {sets:?}: {injectors} injector webhooks"
                );
            }
        }
    }
}
