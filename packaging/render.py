#!/usr/bin/env python3
"""Renders the Helm chart packaging/helm/cairn into plain YAML without a helm binary.

Neither Debian 12 nor PyPI ships a helm binary this project can install, so this script
implements the small subset of Helm's Go templates the chart is written in, and refuses
anything else (so the chart cannot drift into syntax this renderer would get wrong):

  {{ .Values.a.b }}  {{ .Release.Name }}  {{ .Release.Namespace }}  {{ .Chart.Version }}
  {{ .Chart.AppVersion }}  pipelines with | quote  | toYaml  | nindent N  | indent N
  | default X  (also prefix form: toYaml X, default X Y, eq X Y, ne X Y, not X)
  {{ include "name" . }}  {{ define "name" }}...{{ end }}
  {{ if COND }} ... {{ else if COND }} ... {{ else }} ... {{ end }}
  whitespace trimming with {{- and -}}, and {{/* comments */}}.

Usage:
  packaging/render.py [--values FILE] [--release NAME] [--namespace NS] [--out FILE]
  packaging/render.py --write      # regenerate packaging/kubernetes/cairn.yaml
  packaging/render.py --check      # the committed packaging/kubernetes/cairn.yaml is current
"""
import argparse
import os
import re
import shlex
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
CHART = os.path.join(HERE, "helm", "cairn")
RENDERED = os.path.join(HERE, "kubernetes", "cairn.yaml")
DEFAULT_RELEASE = "cairn"
DEFAULT_NAMESPACE = "cairn-system"

ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


class TemplateError(Exception):
    pass


def tokenize(src, name):
    """Text and action tokens, with {{- and -}} trimming applied to the text."""
    tokens, pos = [], 0
    for m in ACTION.finditer(src):
        text = src[pos:m.start()]
        if m.group(1) == "-":
            text = text.rstrip(" \t\r\n")
        tokens.append(("text", text))
        tokens.append(("action", m.group(2), m.group(3) == "-", name))
        pos = m.end()
    tokens.append(("text", src[pos:]))
    # Apply right trims to the following text.
    out = []
    trim_next = False
    for t in tokens:
        if t[0] == "text":
            out.append(("text", t[1].lstrip(" \t\r\n") if trim_next else t[1]))
            trim_next = False
        else:
            out.append(t)
            trim_next = t[2]
    return out


def parse(tokens):
    """A tree: list of nodes; ("text", s), ("expr", e), ("if", [(cond, body)...], else_body),
    ("define", name, body)."""
    pos = 0

    def block(stop):
        nonlocal pos
        nodes = []
        while pos < len(tokens):
            t = tokens[pos]
            if t[0] == "text":
                if t[1]:
                    nodes.append(("text", t[1]))
                pos += 1
                continue
            body = t[1]
            if body.startswith("/*"):
                if not body.endswith("*/"):
                    raise TemplateError(f"{t[3]}: unclosed comment")
                pos += 1
                continue
            word = body.split(None, 1)[0] if body else ""
            if word in ("end", "else") and stop:
                return nodes
            pos += 1
            if word == "if":
                branches = [(body[3:].strip(), block(True))]
                else_body = []
                while True:
                    if pos >= len(tokens):
                        raise TemplateError(f"{t[3]}: 'if' without 'end'")
                    e = tokens[pos][1]
                    pos += 1
                    if e == "end":
                        break
                    if e.startswith("else if "):
                        branches.append((e[8:].strip(), block(True)))
                    elif e == "else":
                        else_body = block(True)
                    else:
                        raise TemplateError(f"{t[3]}: unexpected '{e}'")
                nodes.append(("if", branches, else_body))
            elif word == "define":
                name = shlex.split(body[7:])[0]
                inner = block(True)
                if pos >= len(tokens) or tokens[pos][1] != "end":
                    raise TemplateError(f"{t[3]}: 'define' without 'end'")
                pos += 1
                nodes.append(("define", name, inner))
            elif word in ("range", "with", "template", "tpl", "block"):
                raise TemplateError(f"{t[3]}: '{word}' is outside the subset render.py supports")
            else:
                nodes.append(("expr", body, t[3]))
        if stop:
            raise TemplateError("unexpected end of template")
        return nodes

    return block(False)


class Renderer:
    def __init__(self, values, release, namespace, chart):
        self.root = {
            "Values": values,
            # Helm sets Service to "Helm"; the plain manifests are applied with kubectl.
            "Release": {"Name": release, "Namespace": namespace, "Service": "kubectl"},
            "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart.get("appVersion", "")},
        }
        self.defines = {}

    def lookup(self, path, where):
        cur = self.root
        for part in path.strip(".").split("."):
            if not part:
                continue
            if not isinstance(cur, dict):
                raise TemplateError(f"{where}: {path} goes through a non-map")
            # Helm renders a missing key as empty; a typo in .Values would go unnoticed,
            # so this renderer refuses it instead.
            if part not in cur:
                raise TemplateError(f"{where}: {path} is not set (add it to values.yaml)")
            cur = cur[part]
        return cur

    def atom(self, word, where):
        if word == ".":
            return self.root
        if word.startswith("."):
            return self.lookup(word, where)
        if word.startswith('"'):
            return shlex.split(word)[0]
        if re.fullmatch(r"-?\d+", word):
            return int(word)
        if word in ("true", "false"):
            return word == "true"
        raise TemplateError(f"{where}: cannot evaluate '{word}'")

    def call(self, words, piped, where):
        fn, args = words[0], words[1:]
        if not fn.startswith(".") and not fn.startswith('"') and not re.fullmatch(r"-?\d+|true|false", fn):
            vals = [self.atom(a, where) for a in args] + ([piped[0]] if piped else [])
            return self.function(fn, vals, where)
        if args or piped:
            raise TemplateError(f"{where}: '{' '.join(words)}' is not a function call")
        return self.atom(fn, where)

    def function(self, fn, a, where):
        if fn == "quote":
            return '"' + str(scalar(a[0])).replace("\\", "\\\\").replace('"', '\\"') + '"'
        if fn == "toYaml":
            if a[0] in (None, {}, []):
                return "{}" if isinstance(a[0], dict) else ("[]" if isinstance(a[0], list) else "")
            return yaml.safe_dump(a[0], default_flow_style=False, sort_keys=True).rstrip("\n")
        if fn == "nindent":
            return "\n" + indent(str(a[1]), a[0])
        if fn == "indent":
            return indent(str(a[1]), a[0])
        if fn == "default":
            return a[1] if a[1] not in (None, "", {}, [], False, 0) else a[0]
        if fn == "eq":
            return a[0] == a[1]
        if fn == "ne":
            return a[0] != a[1]
        if fn == "not":
            return not truthy(a[0])
        if fn == "include":
            if a[0] not in self.defines:
                raise TemplateError(f"{where}: no template named {a[0]}")
            return self.render(self.defines[a[0]])
        raise TemplateError(f"{where}: function '{fn}' is outside the subset render.py supports")

    def evaluate(self, expr, where):
        value = None
        piped = False
        for stage in split_pipeline(expr):
            words = split_words(stage)
            value = self.call(words, [value] if piped else None, where)
            piped = True
        return value

    def render(self, nodes):
        out = []
        for n in nodes:
            if n[0] == "text":
                out.append(n[1])
            elif n[0] == "expr":
                out.append(str(scalar(self.evaluate(n[1], n[2]))))
            elif n[0] == "if":
                for cond, body in n[1]:
                    if truthy(self.evaluate(cond, "if")):
                        out.append(self.render(body))
                        break
                else:
                    out.append(self.render(n[2]))
            elif n[0] == "define":
                pass
        return "".join(out)

    def collect_defines(self, nodes):
        for n in nodes:
            if n[0] == "define":
                self.defines[n[1]] = n[2]


def split_pipeline(expr):
    parts, cur, quoted = [], "", False
    for ch in expr:
        if ch == '"':
            quoted = not quoted
        if ch == "|" and not quoted:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def split_words(stage):
    return re.findall(r'"(?:[^"\\]|\\.)*"|\S+', stage)


def scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return ""
    return v


def truthy(v):
    return v not in (None, False, 0, "", {}, [])


def indent(text, n):
    pad = " " * n
    return "\n".join(pad + line if line else line for line in text.split("\n"))


def deep_merge(base, over):
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render_chart(values_files=(), release=DEFAULT_RELEASE, namespace=DEFAULT_NAMESPACE):
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    with open(os.path.join(CHART, "values.yaml")) as f:
        values = yaml.safe_load(f)
    for path in values_files:
        with open(path) as f:
            values = deep_merge(values, yaml.safe_load(f))
    r = Renderer(values, release, namespace, chart)
    tdir = os.path.join(CHART, "templates")
    names = sorted(os.listdir(tdir))
    trees = {}
    for name in names:
        with open(os.path.join(tdir, name)) as f:
            trees[name] = parse(tokenize(f.read(), name))
        r.collect_defines(trees[name])
    docs = [f"# Rendered from packaging/helm/cairn by packaging/render.py (release {release}, namespace {namespace}).\n"
            "# Do not edit: change the chart and run packaging/render.py --write.\n"]
    for name in names:
        if name.startswith("_") or not name.endswith(".yaml"):
            continue
        text = r.render(trees[name])
        for doc in re.split(r"^---\s*$", text, flags=re.M):
            if doc.strip():
                yaml.safe_load(doc)  # every document must be valid YAML
                docs.append(f"---\n# Source: cairn/templates/{name}\n" + doc.strip("\n") + "\n")
    return "".join(docs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--values", "-f", action="append", default=[])
    ap.add_argument("--release", default=DEFAULT_RELEASE)
    ap.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    ap.add_argument("--out", default=None, help="default: stdout")
    ap.add_argument("--write", action="store_true", help="write packaging/kubernetes/cairn.yaml (the committed rendering)")
    ap.add_argument("--check", action="store_true", help="fail if the committed rendering is not current")
    args = ap.parse_args()
    try:
        text = render_chart(args.values, args.release, args.namespace)
    except TemplateError as e:
        print(f"render.py: {e}", file=sys.stderr)
        return 2
    if args.check:
        with open(RENDERED) as f:
            if f.read() != text:
                print(f"render.py: {os.path.relpath(RENDERED)} is out of date; run packaging/render.py --write", file=sys.stderr)
                return 1
        print("render.py: packaging/kubernetes/cairn.yaml is current")
        return 0
    if args.write or args.out:
        with open(args.out or RENDERED, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
