//! Kubernetes names, checked by the rules the API server applies to each kind, before any of them
//! becomes part of a file path.
//!
//! Owns: the name rules (DNS-1123 label and subdomain, DNS-1035 label, path segment names), which
//! rule applies to which kind, and the checks for kinds and API groups. Every rule accepted here
//! yields a string that is a single, normal path segment: never empty, `.` or `..`, and never
//! holding `/` or NUL. Must not: read files, run processes, or build paths itself.

/// The rule an object name must follow, as Kubernetes' apimachinery validation defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// At most 63 characters: lowercase letters, digits and `-`, starting and ending with a
    /// letter or digit. Namespaces.
    Dns1123Label,
    /// At most 253 characters: lowercase letters, digits, `-` and `.`, each dot-separated part
    /// starting and ending with a letter or digit. Most kinds.
    Dns1123Subdomain,
    /// A DNS-1123 label that starts with a letter. Services.
    Dns1035Label,
    /// Anything but `.` and `..`, without `/` or `%`. RBAC kinds. This tool also refuses control
    /// characters (NUL, newline, …), which Kubernetes allows but no file name should hold.
    PathSegment,
}

impl NameRule {
    /// The rule in words, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            NameRule::Dns1123Label => {
                "a DNS-1123 label (at most 63 characters: lowercase letters, digits and '-', starting and ending with a letter or digit)"
            }
            NameRule::Dns1123Subdomain => {
                "a DNS-1123 subdomain (at most 253 characters: lowercase letters, digits, '-' and '.', each '.'-separated part starting and ending with a letter or digit)"
            }
            NameRule::Dns1035Label => {
                "a DNS-1035 label (at most 63 characters: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit)"
            }
            NameRule::PathSegment => {
                "a path segment name (not empty, not '.' or '..', and without '/', '%' or control characters)"
            }
        }
    }

    pub fn accepts(self, s: &str) -> bool {
        match self {
            NameRule::Dns1123Label => is_dns1123_label(s),
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(s),
            NameRule::Dns1035Label => is_dns1035_label(s),
            NameRule::PathSegment => is_path_segment_name(s),
        }
    }
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const RBAC_KINDS: &[&str] = &["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"];

/// The rule for the `metadata.name` of an object of `kind` in API `group`.
pub fn rule_for(group: &str, kind: &str) -> NameRule {
    match (group, kind) {
        ("", "Namespace") => NameRule::Dns1123Label,
        ("", "Service") => NameRule::Dns1035Label,
        (RBAC_GROUP, k) if RBAC_KINDS.contains(&k) => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.starts_with(is_lower_alnum)
        && s.ends_with(is_lower_alnum)
}

/// DNS-1123 labels joined by `.` (each label unbounded on its own), at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| is_lower_alnum(c) || c == '-')
                && part.starts_with(is_lower_alnum)
                && part.ends_with(is_lower_alnum)
        })
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Kubernetes' `IsValidPathSegmentName` (not `.` or `..`, no `/` or `%`), non-empty, and without
/// control characters.
pub fn is_path_segment_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s.contains(['/', '%'])
        && !s.chars().any(char::is_control)
}

/// A kind, as Kubernetes checks a CustomResourceDefinition's `spec.names.kind`: mixed case, but
/// lowercased it must be a DNS-1035 label (`ConfigMap`, `EnvoyFilter`).
pub fn is_kind(s: &str) -> bool {
    is_dns1035_label(&s.to_ascii_lowercase())
}

/// An API group: empty (the core group) or a DNS-1123 subdomain.
pub fn is_group(s: &str) -> bool {
    s.is_empty() || is_dns1123_subdomain(s)
}

/// Checks the parts of an object's identity that become file names. `Err` says which field holds
/// which value and the rule it breaks.
pub fn check_object_id(
    api_version: &str,
    group: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<(), String> {
    if !is_group(group) {
        return Err(format!(
            "apiVersion {} has an invalid API group {}: it must be empty or {}",
            quote(api_version),
            quote(group),
            NameRule::Dns1123Subdomain.describe()
        ));
    }
    if !is_kind(kind) {
        return Err(format!(
            "kind {} is not a valid kind: it must be letters, digits and '-', starting with a letter and ending with a letter or digit, at most 63 characters",
            quote(kind)
        ));
    }
    if let Some(ns) = namespace {
        if !is_dns1123_label(ns) {
            return Err(format!(
                "metadata.namespace {} is not a valid namespace: it must be {}",
                quote(ns),
                NameRule::Dns1123Label.describe()
            ));
        }
    }
    let rule = rule_for(group, kind);
    if !rule.accepts(name) {
        return Err(format!(
            "metadata.name {} is not a valid {kind} name: it must be {}",
            quote(name),
            rule.describe()
        ));
    }
    Ok(())
}

/// How many characters of a value a message shows.
const SHOWN_CHARS: usize = 80;

/// A value for a message: quoted with control characters escaped, and cut after
/// `SHOWN_CHARS` characters with its full length said.
pub fn quote(s: &str) -> String {
    let count = s.chars().count();
    if count <= SHOWN_CHARS {
        return format!("{s:?}");
    }
    let start: String = s.chars().take(SHOWN_CHARS).collect();
    format!("{start:?}… ({count} characters)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1123_label_follows_kubernetes() {
        for ok in ["a", "0", "istio-system", "a1-b2", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a.b",
            "a_b",
            "..",
            "../x",
            "a/b",
            "a\0",
            "ä",
            &"a".repeat(64),
        ] {
            assert!(!is_dns1123_label(bad), "{bad:?}");
        }
    }

    #[test]
    fn dns1123_subdomain_follows_kubernetes() {
        let long_part = "a".repeat(100);
        for ok in [
            "a",
            "istiod-1-14-1",
            "gateways.networking.istio.io",
            "1.2.3",
            long_part.as_str(),
            &"a".repeat(253),
        ] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".a",
            "a.",
            "a..b",
            "a.-b",
            "a-.b",
            "A.b",
            "a_b",
            "a/b",
            "../../x",
            "a:b",
            &"a".repeat(254),
        ] {
            assert!(!is_dns1123_subdomain(bad), "{bad:?}");
        }
    }

    #[test]
    fn dns1035_label_starts_with_a_letter() {
        assert!(is_dns1035_label("istiod"));
        assert!(is_dns1035_label("istiod-1-14-1"));
        assert!(!is_dns1035_label("1-istiod"));
        assert!(!is_dns1035_label("istiod.x"));
        assert!(!is_dns1035_label(&format!("a{}", "b".repeat(63))));
    }

    #[test]
    fn path_segment_names_follow_kubernetes_and_never_escape_a_directory() {
        for ok in [
            "system:auth-delegator",
            "istiod-clusterrole-1-14-1-istio-system",
            "Upper_Case with space",
            "...",
            "a..b",
            "ünïcode",
        ] {
            assert!(is_path_segment_name(ok), "{ok}");
        }
        for bad in [
            "", ".", "..", "/", "a/b", "../x", "x/..", "100%", "a\0b", "a\nb", "\u{7f}",
        ] {
            assert!(!is_path_segment_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn every_accepted_name_is_one_normal_path_segment() {
        let samples = [
            "a", ".", "..", "...", "a/b", "a\0", "system:x", "-", "a.b", "%2e%2e", "x\\y", "",
        ];
        for rule in [
            NameRule::Dns1123Label,
            NameRule::Dns1123Subdomain,
            NameRule::Dns1035Label,
            NameRule::PathSegment,
        ] {
            for s in samples {
                if rule.accepts(s) {
                    let mut parts = std::path::Path::new(s).components();
                    assert!(
                        matches!(parts.next(), Some(std::path::Component::Normal(p)) if p == s),
                        "{rule:?} accepts {s:?}"
                    );
                    assert!(parts.next().is_none(), "{rule:?} accepts {s:?}");
                    assert!(!s.contains('\0'), "{rule:?} accepts {s:?}");
                }
            }
        }
    }

    #[test]
    fn kinds_and_groups() {
        for ok in [
            "ConfigMap",
            "EnvoyFilter",
            "HorizontalPodAutoscaler",
            "V1",
            "my-kind",
        ] {
            assert!(is_kind(ok), "{ok}");
        }
        for bad in [
            "",
            "1Kind",
            "Config Map",
            "Foo/../x",
            "Kind-",
            "Käse",
            &"K".repeat(64),
        ] {
            assert!(!is_kind(bad), "{bad:?}");
        }
        for ok in [
            "",
            "apps",
            "rbac.authorization.k8s.io",
            "networking.istio.io",
        ] {
            assert!(is_group(ok), "{ok}");
        }
        for bad in ["..", "a/b", "Apps", "a..b"] {
            assert!(!is_group(bad), "{bad:?}");
        }
    }

    #[test]
    fn rules_by_kind() {
        assert_eq!(rule_for("", "Namespace"), NameRule::Dns1123Label);
        assert_eq!(rule_for("", "Service"), NameRule::Dns1035Label);
        assert_eq!(
            rule_for("serving.knative.dev", "Service"),
            NameRule::Dns1123Subdomain
        );
        assert_eq!(rule_for("", "ConfigMap"), NameRule::Dns1123Subdomain);
        for kind in RBAC_KINDS {
            assert_eq!(rule_for(RBAC_GROUP, kind), NameRule::PathSegment);
        }
        assert_eq!(
            rule_for("example.com", "ClusterRole"),
            NameRule::Dns1123Subdomain
        );
    }

    #[test]
    fn errors_name_the_field_and_the_value() {
        assert_eq!(
            check_object_id("v1", "", "ConfigMap", Some("istio-system"), "../x").unwrap_err(),
            format!(
                "metadata.name \"../x\" is not a valid ConfigMap name: it must be {}",
                NameRule::Dns1123Subdomain.describe()
            )
        );
        assert!(check_object_id("v1", "", "ConfigMap", Some("../.."), "x")
            .unwrap_err()
            .starts_with("metadata.namespace \"../..\" is not a valid namespace"));
        assert!(check_object_id("a/b/v1", "a/b", "X", None, "x")
            .unwrap_err()
            .starts_with("apiVersion \"a/b/v1\" has an invalid API group \"a/b\""));
        assert!(check_object_id("v1", "", "A/B", None, "x")
            .unwrap_err()
            .starts_with("kind \"A/B\" is not a valid kind"));
        let rbac = "rbac.authorization.k8s.io";
        assert!(check_object_id(
            "rbac.authorization.k8s.io/v1",
            rbac,
            "ClusterRole",
            None,
            "system:foo"
        )
        .is_ok());
        assert!(check_object_id(
            "rbac.authorization.k8s.io/v1",
            rbac,
            "ClusterRole",
            None,
            "a/b"
        )
        .is_err());
    }

    #[test]
    fn long_values_are_cut_and_control_characters_escaped() {
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(10_000);
        assert_eq!(
            quote(&long),
            format!("\"{}\"… (10000 characters)", "x".repeat(80))
        );
    }

    #[test]
    fn the_manifest_reader_refuses_names_that_would_leave_a_directory() {
        let read = |doc: &str| {
            let body: serde_yaml::Mapping = serde_yaml::from_str(doc).unwrap();
            crate::manifest::Object::from_mapping(body)
        };
        let err =
            read("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ../../x, namespace: a}\n")
                .unwrap_err();
        assert!(err.starts_with("metadata.name \"../../x\""), "{err}");
        let err = read("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: ..}\n")
            .unwrap_err();
        assert!(err.starts_with("metadata.namespace \"..\""), "{err}");
        let cr = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: 'system:foo'}\n";
        assert_eq!(read(cr).unwrap().id.name, "system:foo");
    }
}
