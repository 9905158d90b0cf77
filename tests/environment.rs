//! istioctl runs with a cleared environment: only PATH passes through, HOME is its temp dir and
//! KUBECONFIG points at a file that does not exist. A fake istioctl that checks this wraps the
//! stand-in; the tool is run with a leaking variable and a real kubeconfig in its environment.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{fixtures, sha256_hex};

#[test]
fn istioctl_sees_no_credentials_and_no_inherited_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let standin = fixtures().join("istioctl/istioctl-1.28.0");
    let fake = format!(
        "#!/bin/sh\n\
         # Fails unless the environment is the cleared one istio-canary promises.\n\
         [ -n \"$ISTIO_CANARY_LEAK\" ] && {{ echo \"inherited ISTIO_CANARY_LEAK\" >&2; exit 1; }}\n\
         [ -e \"$KUBECONFIG\" ] && {{ echo \"KUBECONFIG $KUBECONFIG exists\" >&2; exit 1; }}\n\
         [ \"$HOME\" = \"$(pwd)\" ] || {{ echo \"HOME is $HOME, not the temp dir $(pwd)\" >&2; exit 1; }}\n\
         [ -n \"$PATH\" ] || {{ echo \"no PATH\" >&2; exit 1; }}\n\
         exec {} \"$@\"\n",
        standin.display()
    );
    let fake_path = dir.join("istioctl-1.28.0");
    std::fs::write(&fake_path, &fake).unwrap();
    std::fs::set_permissions(&fake_path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\n").unwrap();
    let example = fixtures().join("example");
    let policy = std::fs::read_to_string(example.join("canary.yaml"))
        .unwrap()
        .replace("iop.yaml", &example.join("iop.yaml").display().to_string())
        .replace(
            "path: ../istioctl/istioctl-1.27.0",
            &format!(
                "path: {}",
                fixtures().join("istioctl/istioctl-1.27.0").display()
            ),
        )
        .replace("path: ../istioctl/istioctl-1.28.0", "path: istioctl-1.28.0");
    let standin_sha = sha256_hex(&std::fs::read(&standin).unwrap());
    let fake_sha = sha256_hex(fake.as_bytes());
    // The 1.28.0 pin is the second occurrence of the stand-in's digest.
    let at = policy.rfind(&standin_sha).unwrap();
    let policy = format!(
        "{}{fake_sha}{}",
        &policy[..at],
        &policy[at + standin_sha.len()..]
    );
    std::fs::write(dir.join("canary.yaml"), policy).unwrap();

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_istio-canary"));
    let _cache = common::own_cache(&mut command);
    let out = command
        .current_dir(dir)
        .args(["compile", "--policy", "canary.yaml", "--out", "bundles"])
        .env("ISTIO_CANARY_LEAK", "1")
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("bundles/PLAN.md").is_file());
}
