#!/usr/bin/env python3
"""Checks that kintsugi's modules form the layers docs/architecture.md names.

Each module (a folder under src/ and include/kintsugi/) may include headers
only of the modules before it in LAYERS, so the include graph has no cycle and
the folder order tells the pipeline. Prints every include that breaks the
order (file, line, module it reaches) and exits 1; a module folder missing
from LAYERS is an error too. Usage: module_layers.py [REPO_ROOT]
"""
import pathlib
import re
import sys

# The pipeline, lowest first (docs/architecture.md, "Modules").
LAYERS = ["common", "dist", "config", "io", "tokenizer", "kernels", "pool", "merge", "model",
          "eval", "search", "state", "service", "cli"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"kintsugi/([a-z_]+)/')


def module_of(path, root):
    rel = path.relative_to(root).parts
    return rel[1] if rel[0] == "src" else rel[2]


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    files = sorted((root / "src").glob("*/*.cpp")) + sorted((root / "include/kintsugi").glob("*/*.hpp"))
    if not files:
        print(f"module_layers: no sources under {root}", file=sys.stderr)
        return 1
    errors = []
    for f in files:
        mod = module_of(f, root)
        if mod not in LAYERS:
            errors.append(f"{f.relative_to(root)}: module '{mod}' is not in the layer list")
            continue
        for n, line in enumerate(f.read_text().splitlines(), 1):
            m = INCLUDE.match(line)
            if not m or m.group(1) == mod:
                continue
            dep = m.group(1)
            if dep not in LAYERS or LAYERS.index(dep) > LAYERS.index(mod):
                errors.append(f"{f.relative_to(root)}:{n}: {mod} includes {dep}, "
                              f"which comes after it in the pipeline")
    for e in errors:
        print(e)
    print(f"module_layers: {len(files)} files, {len(errors)} violations")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
