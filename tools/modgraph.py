#!/usr/bin/env python3
"""Module graph of jwtgate's sources: which module includes which, by layer.

A module is src/<layer>/<name>.c with its header src/<layer>/<name>.h (a private header such as
upstream-int.h belongs to its layer). Layers, top to bottom, follow the path a request crosses
(STYLE.md "Layout shows the architecture"); a lower layer should not include a higher one. This prints
each layer's modules with what they include, then every upward include, and exits 1 when there are
more upward includes than --max-upward allows (a meson test keeps the number from growing).

  tools/modgraph.py [--root DIR] [--max-upward N] [--dot]
"""
import argparse
import os
import re
import sys

# Top to bottom. `tools` (jwtgate-token) stands beside the proxy and may include anything.
LAYERS = ["admin", "server", "codec", "route", "jwt", "upstream", "telemetry", "config", "core"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z]+)/([A-Za-z0-9_-]+)\.h"', re.M)


def scan(root):
    """{(layer, module): set((layer, module))} over src/<layer>/*.{c,h}."""
    graph = {}
    src = os.path.join(root, "src")
    for layer in sorted(os.listdir(src)):
        d = os.path.join(src, layer)
        if not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            if not f.endswith((".c", ".h")):
                continue
            mod = (layer, f[:-2])
            deps = graph.setdefault(mod, set())
            with open(os.path.join(d, f), encoding="utf-8") as fh:
                for lay, name in INCLUDE.findall(fh.read()):
                    if (lay, name) != mod:
                        deps.add((lay, name))
    return graph


def rank(layer):
    return LAYERS.index(layer) if layer in LAYERS else -1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--max-upward", type=int, default=None)
    ap.add_argument("--dot", action="store_true", help="print a Graphviz digraph of the layers instead")
    a = ap.parse_args()
    graph = scan(a.root)
    unknown = sorted({lay for lay, _ in graph} - set(LAYERS) - {"tools"})
    if unknown:
        print(f"unknown layer folder(s): {', '.join(unknown)} (add them to LAYERS)", file=sys.stderr)
        return 1
    upward = sorted((m, d) for m, deps in graph.items() for d in deps
                    if m[0] != "tools" and rank(d[0]) < rank(m[0]))
    if a.dot:
        edges = sorted({(m[0], d[0]) for m, deps in graph.items() for d in deps if m[0] != d[0]})
        print("digraph layers {\n  rankdir=TB;")
        for s, t in edges:
            style = ' [color=red, label="up"]' if rank(t) < rank(s) and s != "tools" else ""
            print(f'  "{s}" -> "{t}"{style};')
        print("}")
        return 0
    for layer in ["tools"] + LAYERS:
        mods = sorted(n for lay, n in graph if lay == layer)
        if not mods:
            continue
        print(f"{layer}/")
        for n in mods:
            deps = sorted(graph[(layer, n)], key=lambda d: (rank(d[0]), d[1]))
            shown = ", ".join(f"{d[0]}/{d[1]}" if d[0] != layer else d[1] for d in deps)
            print(f"  {n:<14} -> {shown}" if shown else f"  {n}")
    print(f"\nupward includes ({len(upward)}):")
    for m, d in upward:
        print(f"  {m[0]}/{m[1]} -> {d[0]}/{d[1]}")
    if a.max_upward is not None and len(upward) > a.max_upward:
        print(f"{len(upward)} upward includes, more than the {a.max_upward} allowed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
