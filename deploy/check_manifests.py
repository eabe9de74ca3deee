"""Validate rendered Kubernetes manifests offline; run by deploy/validate.sh in .tools/deploy.

Built-in kinds are checked by ``kubernetes-validate`` (its bundled OpenAPI schemas, strict: an
unknown field fails) for every Kubernetes version given. Custom resources have no bundled
schema there; the ones TaskPilot renders (KEDA ScaledObject, Prometheus operator
ServiceMonitor, CloudNativePG Cluster) are checked against the partial, hand-written schemas
in deploy/schemas/ instead, and are reported as such. Any other custom resource fails: nothing
passes unchecked.

Then TaskPilot's own invariants: non-root, read-only root filesystem, probes on /healthz and
/readyz, secrets only through secretKeyRef, and, with ``--expect Kind=N``, how many objects of
a kind the render must hold.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

SCHEMAS = Path(__file__).resolve().parent / "schemas"
CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.keda.sh.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.monitoring.coreos.com.json",
    ("postgresql.cnpg.io/v1", "Cluster"): "cluster.postgresql.cnpg.io.json",
}
SECRET_VARS = {"DATABASE_URL", "TASKPILOT_SECRET_KEYS"}


def name_of(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def check_builtin(doc: dict, versions: list[str]) -> list[str]:
    errors = []
    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{name_of(doc)}: Kubernetes {version}: {exc.message}")
    return errors


def check_custom(doc: dict, schema_file: str) -> list[str]:
    schema = json.loads((SCHEMAS / schema_file).read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{name_of(doc)}: {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


def check_deployment(doc: dict) -> list[str]:
    """The promises the image and the docs make about every TaskPilot pod."""
    errors = []
    pod = doc["spec"]["template"]["spec"]
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        errors.append(f"{name_of(doc)}: pod securityContext.runAsNonRoot is not true")
    for c in pod["containers"]:
        where = f"{name_of(doc)} container {c['name']}"
        sc = c.get("securityContext", {})
        if not sc.get("readOnlyRootFilesystem"):
            errors.append(f"{where}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{where}: allowPrivilegeEscalation is not false")
        probes = {
            kind: c.get(f"{kind}Probe", {}).get("httpGet", {}).get("path")
            for kind in ("startup", "liveness", "readiness")
        }
        if probes != {"startup": "/healthz", "liveness": "/healthz", "readiness": "/readyz"}:
            errors.append(f"{where}: probes are {probes}")
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        if "/tmp" not in mounts:  # noqa: S108 (the pod's own emptyDir, checked by name)
            errors.append(f"{where}: no writable /tmp volume")
        for env in c.get("env", []):
            if env["name"] in SECRET_VARS and "valueFrom" not in env:
                errors.append(f"{where}: {env['name']} is a plain value, not a secretKeyRef")
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--kube", action="append", default=[], help="Kubernetes version")
    parser.add_argument("--expect", action="append", default=[], help="Kind=count")
    args = parser.parse_args()
    versions = args.kube or [kubernetes_validate.latest_version()]

    docs = [
        doc
        for path in args.files
        for doc in yaml.safe_load_all(path.read_text())
        if doc  # empty documents between ---
    ]
    errors: list[str] = []
    builtin = custom = 0
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in CUSTOM:
            custom += 1
            errors += check_custom(doc, CUSTOM[key])
            continue
        try:
            errors += check_builtin(doc, versions)
            builtin += 1
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{name_of(doc)}: {key[0]} has no bundled or TaskPilot schema")
        if doc.get("kind") == "Deployment":
            errors += check_deployment(doc)

    kinds = Counter(doc.get("kind") for doc in docs)
    for expectation in args.expect:
        kind, _, count = expectation.partition("=")
        if kinds[kind] != int(count):
            errors.append(f"expected {count} {kind}, rendered {kinds[kind]}")

    files = ", ".join(p.name for p in args.files)
    inventory = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    for error in errors:
        print(f"  FAIL {error}")
    print(
        f"  {files}: {len(docs)} objects ({inventory}); "
        f"{builtin} built-in checked strictly against Kubernetes {', '.join(versions)}; "
        f"{custom} custom resources against the partial schemas in deploy/schemas/"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
