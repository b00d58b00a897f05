"""Extract every field path of Rocket.Chat's published ``IStats`` type.

The npm package ``@rocket.chat/core-typings`` is versioned with the Rocket.Chat
server; its ``dist/IStats.d.ts`` is the type of the statistics record a server
of that release builds and POSTs. For each requested version this script

1. ``npm pack``s the package into a temporary directory and unpacks it,
2. installs ``typescript`` and ``@types/node`` (pinned below) there,
3. runs a small Node program (``WALKER_JS`` below) that asks the TypeScript
   type checker for the properties of ``IStats``, following everything the
   checker resolves: ``extends`` (``IRocketChatRecord``), imported interfaces
   and type aliases of the package, intersections, ``Pick``, ``z.infer``, and
   ``node:os``'s ``CpuInfo``; arrays become ``[]``, string index signatures
   and ``Record<string, ...>`` become ``{}``; ``Date`` is a leaf,
4. installs, only if the walk found imports it could not resolve, the
   packages they name at the range the package's own ``package.json`` gives
   (a Yarn ``patch:`` range is replaced by the version it patches), then walks
   again,
5. writes ``tests/data/istats/<version>.json``.

Paths use the notation of ``schemas/catalogue.json`` (``a.b``, ``a[]``,
``a.{}``); intermediate objects and arrays are listed too, as the catalogue
lists them. The output has ``paths`` (the sorted list) and ``fields``
(path -> ``type`` as TypeScript prints it, ``optional`` (``?`` or
``| undefined`` on that property itself, not inherited from a parent),
``nullable`` (``| null``), ``kind`` (``leaf``, ``object`` or ``array``)).

Needs ``node`` and ``npm`` (Node 20 / npm 11 tested) and the npm registry.
Run from the repository root:

    uv run python tools/istats_fields.py                  # the default versions
    uv run python tools/istats_fields.py 8.8.1 6.13.1     # chosen versions
    uv run python tools/istats_fields.py --out /tmp/x 8.8.1
    npm view @rocket.chat/core-typings versions --json    # what the registry has

Then compare with the catalogue: ``uv run python tools/istats_compare.py``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "@rocket.chat/core-typings"
# Latest patch of each minor the registry here holds (6.5 ... 6.13, 8.3 ... 8.8):
# it has no 6.6-6.8, 6.10-6.12, 7.x, 8.4 or 8.5 at all.
DEFAULT_VERSIONS = ["6.5.9", "6.9.7", "6.13.1", "8.3.8", "8.6.2", "8.7.1", "8.8.1"]
TYPESCRIPT = "5.9.3"  # 5.x: the JS compiler API (7.x is the native port)
TYPES_NODE = "22.20.7"
REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "data" / "istats"

WALKER_JS = r"""// Walks the IStats interface of an unpacked @rocket.chat/core-typings package.
// usage: node walk.js <package-dir> [<TypeName>]   -> JSON on stdout
'use strict';
const path = require('path');
const ts = require('typescript');

const pkgDir = path.resolve(process.argv[2]);
const typeName = process.argv[3] || 'IStats';
const entry = path.join(pkgDir, 'dist', `${typeName}.d.ts`);
const typeRoots = [path.join(__dirname, 'node_modules', '@types')];
const program = ts.createProgram([entry], {
  strict: true, strictNullChecks: true, skipLibCheck: true, noEmit: true,
  target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS,
  moduleResolution: ts.ModuleResolutionKind.Node10, types: ['node'], typeRoots,
});
const checker = program.getTypeChecker();
const sf = program.getSourceFile(entry);
if (!sf) throw new Error(`cannot read ${entry}`);
const modSym = checker.getSymbolAtLocation(sf);
const exp = modSym && checker.getExportsOfModule(modSym).find((s) => s.name === typeName);
if (!exp) throw new Error(`${typeName} is not exported by ${entry}`);
const root = checker.getDeclaredTypeOfSymbol(exp);

const fields = {};      // path -> {type, optional, nullable, kind}
const warnings = [];
const F = ts.TypeFlags;
const LEAF = F.String | F.Number | F.Boolean | F.BigInt | F.StringLiteral | F.NumberLiteral |
  F.BooleanLiteral | F.BigIntLiteral | F.Enum | F.EnumLiteral | F.Any | F.Unknown | F.Never |
  F.TemplateLiteral | F.ESSymbol | F.UniqueESSymbol | F.Void | F.StringMapping;
const LIB_LEAVES = new Set(['Date', 'RegExp', 'Function', 'Buffer', 'Uint8Array', 'ObjectId']);

function str(t) {
  return checker.typeToString(t, undefined, ts.TypeFormatFlags.NoTruncation).replace(/import\("[^"]*"\)\./g, '');
}
function isLibLeaf(t) {
  const s = t.getSymbol() || t.aliasSymbol;
  return !!s && LIB_LEAVES.has(s.getName()) && !(t.flags & F.Union);
}
function record(p, info) {
  const old = fields[p];
  if (!old) { fields[p] = info; return; }
  old.optional = old.optional || info.optional;
  old.nullable = old.nullable || info.nullable;
  if (old.type !== info.type) old.type = `${old.type} | ${info.type}`;
}
// Split a type into {nullable, undefinable, parts (non-null members)}.
function split(t) {
  const members = t.isUnion() ? t.types : [t];
  let nullable = false, undefinable = false;
  const parts = [];
  for (const m of members) {
    if (m.flags & F.Null) nullable = true;
    else if (m.flags & F.Undefined) undefinable = true;
    else parts.push(m);
  }
  return { nullable, undefinable, parts };
}
function walk(t, p, stack) {
  const { parts } = split(t);
  for (const m of parts) {
    if ((m.flags & LEAF) || isLibLeaf(m)) continue;
    if (checker.isArrayType(m) || checker.isTupleType(m)) {
      const args = checker.getTypeArguments(m);
      const el = checker.isTupleType(m) ? checker.getUnionType(args.slice()) : args[0];
      visit(`${p}[]`, el, false, stack);
      continue;
    }
    if (!(m.flags & F.Object) && !(m.flags & F.Intersection)) {
      if (m.flags & F.TypeParameter) warnings.push(`${p}: type parameter ${str(m)} kept as a leaf`);
      continue;
    }
    if (stack.includes(m)) { warnings.push(`${p}: recursive type ${str(m)} not expanded`); continue; }
    const next = stack.concat([m]);
    for (const prop of checker.getPropertiesOfType(m)) {
      const decl = prop.valueDeclaration || (prop.declarations && prop.declarations[0]);
      const pt = decl ? checker.getTypeOfSymbolAtLocation(prop, decl) : checker.getTypeOfSymbol(prop);
      if (pt.getCallSignatures().length && !checker.getPropertiesOfType(pt).length) continue; // methods
      visit(p ? `${p}.${prop.getName()}` : prop.getName(), pt, !!(prop.flags & ts.SymbolFlags.Optional), next);
    }
    for (const ii of checker.getIndexInfosOfType(m)) {
      const kt = ii.keyType;
      if (kt.flags & (F.String | F.Number | F.TemplateLiteral)) visit(`${p}.{}`, ii.type, false, next);
      else warnings.push(`${p}: index signature with key ${str(kt)} skipped`);
    }
  }
}
function visit(p, t, optional, stack) {
  const { nullable, undefinable, parts } = split(t);
  let kind = 'leaf';
  if (parts.some((m) => checker.isArrayType(m) || checker.isTupleType(m))) kind = 'array';
  else if (parts.some((m) => !(m.flags & LEAF) && !isLibLeaf(m) && (m.flags & (F.Object | F.Intersection)))) kind = 'object';
  if (parts.some((m) => m.flags & F.Any) && !t.aliasSymbol) warnings.push(`${p}: type resolves to any (${str(t)})`);
  record(p, { type: str(t), optional: optional || undefinable, nullable, kind });
  walk(t, p, stack);
}
walk(root, '', []);
// Bare module specifiers that files of the program import but that do not resolve.
const unresolved = {};
const ambient = new Set(checker.getAmbientModules().map((m) => m.getName().replace(/^"|"$/g, '')));
for (const f of program.getSourceFiles()) {
  if (!f.fileName.startsWith(pkgDir + path.sep)) continue;
  for (const ref of ts.preProcessFile(f.text, true, true).importedFiles) {
    const spec = ref.fileName;
    if (spec.startsWith('.') || ambient.has(spec)) continue;
    const r = ts.resolveModuleName(spec, f.fileName, program.getCompilerOptions(), ts.sys);
    if (!r.resolvedModule) (unresolved[spec] = unresolved[spec] || []).push(path.relative(pkgDir, f.fileName));
  }
}
process.stdout.write(JSON.stringify({ typescript: ts.version, fields, warnings, unresolved }));
"""


def npm(args: list[str], cwd: Path) -> str:
    cmd = ["npm", *args, "--no-audit", "--no-fund", "--loglevel=error"]
    res = subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{res.stderr}")
    return res.stdout


def package_name(spec: str) -> str:
    parts = spec.split("/")
    return "/".join(parts[:2]) if spec.startswith("@") else parts[0]


def install_spec(name: str, manifest: dict) -> str:
    types = "@types/" + name.lstrip("@").replace("/", "__")
    for key, dep in [(k, n) for n in (name, types) for k in ("dependencies", "peerDependencies", "devDependencies")]:
        rng = (manifest.get(key) or {}).get(dep)
        if rng:
            # Yarn patch protocol: "patch:typia@npm%3A9.7.2#~/.yarn/patches/..."
            m = re.match(r"patch:(?:@[^/]+/)?[^@]+@npm(?:%3A|:)([^#]+)", rng)
            if m:
                rng = m.group(1)
            if rng.startswith(("workspace:", "file:", "link:")):
                return ""
            return f"{dep}@{rng}"
    return ""


def walk(tools: Path, pkg: Path) -> dict:
    res = subprocess.run(
        ["node", str(tools / "walk.js"), str(pkg), "IStats"], check=False, capture_output=True, text=True
    )
    if res.returncode:
        raise SystemExit(f"walker failed on {pkg}:\n{res.stderr}")
    return json.loads(res.stdout)


def extract(version: str, tmp: Path, tools: Path) -> dict:
    vdir = tmp / version
    vdir.mkdir()
    (vdir / "package.json").write_text('{"private": true}\n')
    packed = json.loads(npm(["pack", f"{PACKAGE}@{version}", "--json"], vdir))[0]
    with tarfile.open(vdir / packed["filename"]) as tar:
        tar.extractall(vdir, filter="data")
    pkg = vdir / "package"  # outside node_modules: npm install must not prune it
    manifest = json.loads((pkg / "package.json").read_text())
    installed: list[str] = []
    for _ in range(3):
        out = walk(tools, pkg)
        missing = sorted({package_name(s) for s in out["unresolved"]})
        specs = [s for s in (install_spec(n, manifest) for n in missing) if s and s not in installed]
        if not specs:
            break
        npm(["install", "--no-save", "--ignore-scripts", *installed, *specs], vdir)
        installed += specs
    fields = out["fields"]
    return {
        "package": PACKAGE,
        "version": version,
        "source": "dist/IStats.d.ts",
        "integrity": packed.get("integrity"),
        "extractor": {
            "script": "tools/istats_fields.py",
            "typescript": out["typescript"],
            "@types/node": TYPES_NODE,
            "installed_for_resolution": sorted(installed),
        },
        "unresolved_imports": out["unresolved"],
        "warnings": out["warnings"],
        "paths": sorted(fields),
        "fields": {p: fields[p] for p in sorted(fields)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("versions", nargs="*", default=DEFAULT_VERSIONS)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    for exe in ("node", "npm"):
        if not shutil.which(exe):
            raise SystemExit(f"{exe} not found on PATH")
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="istats-"))
    try:
        tools = tmp / "_tools"
        tools.mkdir()
        (tools / "package.json").write_text('{"private": true}\n')
        npm(["install", f"typescript@{TYPESCRIPT}", f"@types/node@{TYPES_NODE}"], tools)
        (tools / "walk.js").write_text(WALKER_JS)
        for v in args.versions:
            doc = extract(v, tmp, tools)
            dest = args.out / f"{v}.json"
            dest.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
            note = f" unresolved={sorted(doc['unresolved_imports'])}" if doc["unresolved_imports"] else ""
            warn = f" warnings={len(doc['warnings'])}" if doc["warnings"] else ""
            print(f"{v}: {len(doc['paths'])} paths -> {dest}{note}{warn}", file=sys.stderr)
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
