#!/usr/bin/env bash
# The Kubernetes packaging: the Helm chart renders (packaging/render.py, a checked
# subset of Helm's templates: no helm binary comes from Debian or PyPI) to exactly the
# committed packaging/kubernetes/cairn.yaml, and every object validates in strict mode
# against the newest Kubernetes schemas kubernetes-validate ships (the two CRD kinds
# against packaging/schemas). A deliberately wrong field must be refused.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null \
    || { echo "FAIL: kubernetes-validate is missing (pip install kubernetes-validate; tools/setup.sh does)"; exit 1; }
python3 packaging/validate.py
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
# The validator is not vacuous: an unknown field in a pod spec fails strict validation.
python3 - "$T" <<'PY'
import sys, yaml, kubernetes_validate
docs = [d for d in yaml.safe_load_all(open("packaging/kubernetes/cairn.yaml")) if d]
ds = next(d for d in docs if d["kind"] == "DaemonSet")
ds["spec"]["template"]["spec"]["containers"][0]["mountPropagation"] = "Bidirectional"
try:
    kubernetes_validate.validate(ds, "1.37.0", strict=True)
except Exception:
    print("a misplaced field is refused, as it must be")
else:
    sys.exit("FAIL: strict validation accepted a misplaced field")
PY
# Other values render too: etcd managers, no ServiceMonitor, no local provisioner.
cat > "$T/values.yaml" <<'YAML'
manager: {metaBackend: etcd, replicas: 3}
serviceMonitor: {enabled: false}
localStaticProvisioner: {enabled: false}
YAML
python3 packaging/render.py -f "$T/values.yaml" --out "$T/etcd.yaml"
grep -q -- '--meta=etcd://' "$T/etcd.yaml" || { echo "FAIL: the etcd values did not switch the manager's --meta"; exit 1; }
! grep -q 'kind: ServiceMonitor' "$T/etcd.yaml" || { echo "FAIL: serviceMonitor.enabled=false still renders one"; exit 1; }
echo "PASS"
