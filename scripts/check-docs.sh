#!/usr/bin/env bash
# Documentation checks (CI and `make check`): the repository must stand alone.
#  1. every relative link in README.md, docs/*.md, charts/tiketi/README.md and e2e/*.md points at a
#     file or directory that exists (an #anchor is not checked);
#  2. no tracked file cites a document outside the repository (the design notes or the wire contract
#     by their old names, or a path into a sibling "shared" directory): cite docs/design.md and
#     docs/wire-contract.md instead;
#  3. every environment variable of service/src/config.rs and operator/src/main.rs is documented in
#     docs/configuration.md;
#  4. every value of charts/tiketi/values.yaml is in the chart README's values table (itself, or a
#     parent key: `service.image.repository` / `.tag` and `a.b`, `c` rows name siblings).
set -euo pipefail
cd "$(dirname "$0")/.."

# the chart's values are read with PyYAML (Debian: python3-yaml)
if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "[check-docs] installing python3-yaml from apt" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-yaml >/dev/null
fi

python3 - <<'EOF'
import glob, os, re, subprocess, sys

errors = []

# 1. relative links
pages = ["README.md", "charts/tiketi/README.md"] + sorted(glob.glob("docs/*.md")) + sorted(glob.glob("e2e/*.md"))
link = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
for page in pages:
    if not os.path.exists(page):
        continue
    fenced = False
    for n, line in enumerate(open(page, encoding="utf-8"), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        for target in link.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            path = target.split("#", 1)[0]
            resolved = os.path.normpath(os.path.join(os.path.dirname(page), path))
            if not os.path.exists(resolved):
                errors.append(f"{page}:{n}: dangling link {target}")

# 2. citations of documents outside the repository (patterns split so this file does not match itself)
outside = re.compile("|".join([r"DESIGN" + r"\.md", r"DESIGN" + r" §", r"contract" + r" §",
                               r"\.\./" + "shared", "shared/" + "reference", "/work/" + "shared"]))
files = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True).stdout.split(b"\0")
for f in files:
    name = f.decode()
    if not name or name == "Cargo.lock" or name.startswith("patches/") or not os.path.isfile(name):
        continue
    try:
        text = open(name, encoding="utf-8").read()
    except (UnicodeDecodeError, OSError):
        continue
    for n, line in enumerate(text.splitlines(), 1):
        if outside.search(line):
            errors.append(f"{name}:{n}: cites a document outside the repository: {line.strip()[:120]}")

# 3. every service and operator variable documented
documented = open("docs/configuration.md", encoding="utf-8").read()
for source in ["service/src/config.rs", "operator/src/main.rs"]:
    config = open(source, encoding="utf-8").read()
    for var in re.findall(r'env = "([A-Z0-9_]+)"', config):
        if f"`{var}`" not in documented:
            errors.append(f"docs/configuration.md: {var} ({source}) is not documented")

# 4. every chart value in the chart README's values table
import yaml
values = yaml.safe_load(open("charts/tiketi/values.yaml", encoding="utf-8"))
readme = open("charts/tiketi/README.md", encoding="utf-8").read()
named = set()
for row in readme[readme.index("## Values"):].splitlines():
    if not row.startswith("| `"):
        continue
    first = None
    for t in re.findall(r"`([^`]+)`", row.split("|")[1]):
        t = t.strip().rstrip("*").rstrip(".")
        parent = first.rsplit(".", 1)[0] if first and "." in first else ""
        if first is None:
            first = t
            named.add(t)
        elif t.startswith("."):
            named.add(parent + t)
        elif "." not in t and parent:
            named.add(f"{parent}.{t}")
        else:
            named.add(t)

def leaves(d, prefix=""):
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v:
            yield from leaves(v, key)
        else:
            yield key

for key in leaves(values):
    parts = key.split(".")
    if not any(".".join(parts[:i]) in named for i in range(1, len(parts) + 1)):
        errors.append(f"charts/tiketi/README.md: value {key} (values.yaml) is not in the values table")

for e in errors:
    print(e, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"docs: {len(pages)} pages' links resolve, no outside citations, every service and operator variable and chart value documented")
EOF
