#!/usr/bin/env python3
"""Checks the Kubernetes packaging: the committed rendering is current, every object
validates against the Kubernetes OpenAPI schemas in strict mode (kubernetes-validate),
and the two custom resources, which kubernetes-validate has no schema for, validate
against the abridged CRD schemas in packaging/schemas/ (also strict).

Usage: packaging/validate.py [--kubernetes-version 1.35.0]
"""
import argparse
import json
import os
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
CRD_SCHEMAS = {
    ("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass"): "volumesnapshotclass-snapshot.storage.k8s.io-v1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json",
}


def newest_version():
    d = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
    versions = [v[1:-len("-local-strict")] for v in os.listdir(d) if v.endswith("-local-strict")]
    return max(versions, key=lambda v: tuple(int(x) for x in v.split(".")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubernetes-version", default=newest_version())
    args = ap.parse_args()
    check = subprocess.run([sys.executable, os.path.join(HERE, "render.py"), "--check"])
    if check.returncode != 0:
        return 1
    failures = 0
    files = [os.path.join(HERE, "kubernetes", f) for f in ("cairn.yaml", "namespace.yaml")]
    kinds = {}
    for path in files:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            key = (doc["apiVersion"], doc["kind"])
            name = f'{doc["kind"]}/{doc["metadata"]["name"]}'
            try:
                if key in CRD_SCHEMAS:
                    with open(os.path.join(HERE, "schemas", CRD_SCHEMAS[key])) as f:
                        jsonschema.validate(doc, json.load(f))
                    how = "CRD schema"
                else:
                    kubernetes_validate.validate(doc, args.kubernetes_version, strict=True)
                    how = "kubernetes " + args.kubernetes_version
                kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
                print(f"ok    {name} ({how}, strict)")
            except Exception as e:
                failures += 1
                print(f"FAIL  {name}: {type(e).__name__}: {e}")
    print(f"validate.py: {sum(kinds.values())} objects valid, {failures} invalid; kinds: "
          + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
