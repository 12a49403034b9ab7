"""Fails when a module imports, directly or through others, a module that imports it back.

Inside each crate, every file is a module; a module depends on the modules it names through
`crate::` and `super::` paths. A cycle of such dependencies (up to six long) is printed, and the
script exits 1. The crate root (`lib.rs`, `main.rs`) wires modules together and is not counted.
"""
import glob
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "."
found = []
for crate in sorted(glob.glob(os.path.join(root, "crates/*/src")) + [os.path.join(root, "migrations/src")]):
    files = glob.glob(os.path.join(crate, "**/*.rs"), recursive=True)

    def module_of(path):
        parts = os.path.relpath(path, crate)[:-3].split(os.sep)
        if parts[-1] in ("mod", "lib", "main"):
            parts = parts[:-1]
        return "::".join(parts) or "crate"

    modules = {module_of(f): f for f in files}
    graph = {m: set() for m in modules}
    for module, path in modules.items():
        text = open(path).read()
        text = re.sub(r"#\[cfg\(test\)\]\s*mod tests \{.*", "", text, flags=re.S)
        base = module.split("::") if module != "crate" else []
        named = set()
        for group in re.findall(r"crate::\{([^;]*?)\};", text, flags=re.S):
            for item in re.split(r",\s*", group):
                item = item.strip()
                if item:
                    named.add(item.split("::")[0].split("{")[0].strip())
        named.update(re.findall(r"crate::([a-z_][a-z0-9_]*)", text))
        for item in re.findall(r"super::([a-z_][a-z0-9_]*)", text):
            named.add("::".join(base[:-1] + [item]))
        for name in named:
            parts = name.split("::")
            for candidate in [name] + ["::".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]:
                if candidate in modules and candidate not in (module, "crate") and not module.startswith(candidate + "::"):
                    graph[module].add(candidate)
                    break

    cycles = set()

    def walk(start, node, path):
        for next_module in graph[node]:
            if next_module == start and len(path) > 1:
                i = path.index(min(path))
                cycles.add(tuple(path[i:] + path[:i]))
            elif next_module not in path and len(path) < 6:
                walk(start, next_module, path + [next_module])

    for module in graph:
        walk(module, module, [module])
    found += [f"{os.path.relpath(crate, root)}: {' -> '.join(c + (c[0],))}" for c in sorted(cycles)]

for line in found:
    print(line)
sys.exit(1 if found else 0)
