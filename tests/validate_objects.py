#!/usr/bin/env python3
"""Validates emitted YAML objects for tests/validate.rs.

Usage: validate_objects.py KUBERNETES_VERSION SCHEMA_DIR FILE...

Kubernetes objects are checked with kubernetes-validate (strict: unknown fields are errors)
against the OpenAPI schemas of KUBERNETES_VERSION. Argo CD Applications and Flux Kustomizations
are checked with jsonschema against the files in SCHEMA_DIR. Only Istio custom resources (API
groups ending in istio.io) and Gateway API ones (gateway.networking.k8s.io: label patches of the
users' Gateways), which have no published schema, are skipped.

Prints one `SKIPPED`, `INVALID` or `UNSUPPORTED` line per object concerned, then a
`checked N, skipped N, invalid N` line. Exit 0 when nothing is invalid, 1 otherwise, 2 when the
tools are missing or the version is not shipped.
"""
import json
import os
import sys

try:
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as e:
    print(f"MISSING {e.name}")
    sys.exit(2)

CRD_SCHEMAS = {
    ("argoproj.io/v1alpha1", "Application"): "argocd-application-v1alpha1.json",
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"): "flux-kustomization-v1.json",
}


def main():
    version, schema_dir, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    shipped = sorted(set(kubernetes_validate.utils.all_versions()), key=lambda v: [int(x) for x in v.split(".")])
    if not any(v.startswith(f"{version}.") for v in shipped):
        print(f"UNSUPPORTED kubernetes-validate ships no schemas for {version} (it has {', '.join(shipped)})")
        sys.exit(2)
    schemas = {}
    for key, name in CRD_SCHEMAS.items():
        with open(os.path.join(schema_dir, name)) as f:
            schemas[key] = json.load(f)
    checked = skipped = invalid = 0
    for path in files:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        for doc in docs:
            api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
            what = f"{path}: {api_version} {kind} {doc.get('metadata', {}).get('name')}"
            key = (api_version, kind)
            checked += 1
            if key in schemas:
                errors = sorted(jsonschema.Draft7Validator(schemas[key]).iter_errors(doc), key=str)
                for e in errors:
                    print(f"INVALID {what}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
                invalid += 1 if errors else 0
                continue
            try:
                kubernetes_validate.validate(doc, f"{version}.0", strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
                if group.endswith("istio.io"):
                    print(f"SKIPPED {what} (an Istio custom resource: no published schema)")
                    skipped += 1
                    checked -= 1
                elif group == "gateway.networking.k8s.io":
                    # The Gateway API is CRDs the cluster installs, not Kubernetes' own schema.
                    print(f"SKIPPED {what} (a Gateway API custom resource: no published schema)")
                    skipped += 1
                    checked -= 1
                else:
                    print(f"INVALID {what}: no schema for {api_version} {kind} in Kubernetes {version}")
                    invalid += 1
            except kubernetes_validate.ValidationError as e:
                print(f"INVALID {what}: {'/'.join(map(str, e.path))}: {e.message}")
                invalid += 1
    print(f"checked {checked}, skipped {skipped}, invalid {invalid}")
    sys.exit(1 if invalid else 0)


if __name__ == "__main__":
    main()
