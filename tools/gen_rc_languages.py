#!/usr/bin/env python3
"""Regenerate schemas/data/rocketchat-languages.json: the language codes Rocket.Chat offers its
users, written the way they end up as keys of the statistics record's `userLanguages`.

How a key is formed (Rocket.Chat source):
  * apps/meteor/app/statistics/server/lib/statistics.ts, getUserLanguages():
        const languages = { none: totalUsers };
        result.forEach(({ _id, total }) => { if (!_id) return; languages[_id] = total; languages.none -= total; });
  * packages/models/src/models/Users.ts, getUserLanguages():
        { $match: { language: { $exists: true, $ne: '' } } },
        { $group: { _id: '$language', total: { $sum: 1 } } }
    so a key is the user's stored `language` verbatim (no case folding, no '-'/'_' rewriting),
    and `none` counts every user without one (totalUsers is an estimated count: can go < 0).
  * the stored value comes from saveUserPreferences (`language: Match.Optional(String)`, any
    string, then Users.setLanguage) called by the web client with the key of the chosen
    language, and by the mobile app with its own list (app/i18n/index.ts LANGUAGES `value`).
  * web keys: file names of the i18n locales. The 3.x-6.x web client lower-cased them
    (client/providers/TranslationProvider.tsx: `.map(([key, language]) => ({ ...language,
    key: key.toLowerCase() }))`, also the Blaze accountPreferences `languages()` helper), so
    "pt-br", "zh-tw" occur in stored data; current clients keep the file-name case
    (`[...new Set([...i18nextInstance.languages, ...languages])].map((key) => ({ key, ... }))`
    with `languages` from @rocket.chat/i18n) and the Default entry has key '' (not counted).

Inputs:
  --rc-git DIR        a clone of github.com/RocketChat/Rocket.Chat (all history), or
  --paths-file FILE   the same locale paths listed one per line (tools/rocketchat-i18n-paths.txt)
  --mobile-git DIR    a clone of github.com/RocketChat/Rocket.Chat.ReactNative (LANGUAGES history)
  --out DIR           repository root (default .)
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

LAYOUTS = {
    "packages/i18n/src/locales/": "packages/i18n/src/locales/*.i18n.json (current layout, 6.x-8.x)",
    "apps/meteor/packages/rocketchat-i18n/i18n/": "apps/meteor/packages/rocketchat-i18n/i18n/*.i18n.json (monorepo layout, 5.x-6.x)",
    "packages/rocketchat-i18n/i18n/": "packages/rocketchat-i18n/i18n/*.i18n.json (Meteor-package layout, 0.x-4.x)",
}
# `<namespace>.<lang>.i18n.*` files are extra string sets for one package, not languages
NAMESPACED = re.compile(r"^(assistify\w*|dbsAI|livechat|setup-wizard)\.")
LOCALE_FILE = re.compile(r"^(?P<code>[A-Za-z]{2,3}(?:-[A-Za-z0-9]+)*)\.i18n\.(?:json|yml)$")


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, errors="replace", check=False).stdout


def web_codes(paths: list[str]) -> dict[str, set[str]]:
    by_layout: dict[str, set[str]] = {v: set() for v in LAYOUTS.values()}
    for p in paths:
        for prefix, label in LAYOUTS.items():
            if p.startswith(prefix):
                name = p[len(prefix):]
                m = LOCALE_FILE.match(name)
                if "/" not in name and m and not NAMESPACED.match(name):
                    by_layout[label].add(m.group("code"))
    return by_layout


def mobile_codes(repo: str) -> set[str]:
    out: set[str] = set()
    for f in ("app/i18n/index.js", "app/i18n/index.ts"):
        for c in git(repo, "log", "--all", "--format=%H", "--", f).split():
            out.update(re.findall(r"value:\s*'([^']+)'", git(repo, "show", f"{c}:{f}")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rc-git")
    ap.add_argument("--paths-file")
    ap.add_argument("--mobile-git")
    ap.add_argument("--out", default=".")
    a = ap.parse_args()
    if a.rc_git:
        paths = git(a.rc_git, "log", "--all", "--format=", "--name-only", "--", *LAYOUTS).split()
        paths_source = "git history of github.com/RocketChat/Rocket.Chat"
    elif a.paths_file:
        paths = [l.strip() for l in Path(a.paths_file).read_text().splitlines() if l.strip() and not l.startswith("#")]
        paths_source = f"{a.paths_file} (file index listing of github.com/RocketChat/Rocket.Chat, all history)"
    else:
        ap.error("--rc-git or --paths-file is required")
    by_layout = web_codes(paths)
    web = set().union(*by_layout.values())
    mobile = mobile_codes(a.mobile_git) if a.mobile_git else set()
    offered = web | mobile
    lower = {c.lower() for c in offered} - offered
    keys = sorted(offered | lower | {"none"}, key=str.lower)
    doc = {
        "description": "Language codes Rocket.Chat offers its users, as they appear as keys of userLanguages "
        "(the user's stored `language`, verbatim), plus the `none` key.",
        "applies_to": ["userLanguages (map keys)"],
        "source": {
            "web_locales": paths_source,
            "mobile_locales": "git history of app/i18n/index.{js,ts} (LANGUAGES value) in github.com/RocketChat/Rocket.Chat.ReactNative"
            if a.mobile_git
            else None,
            "key_formation": [
                "apps/meteor/app/statistics/server/lib/statistics.ts: const languages = { none: totalUsers }; ... if (!_id) { return; } languages[_id] = total; languages.none -= total;",
                "packages/models/src/models/Users.ts getUserLanguages: { $match: { language: { $exists: true, $ne: '' } } }, { $group: { _id: '$language', total: { $sum: 1 } } }",
                "apps/meteor/server/methods/saveUserPreferences.ts: language: Match.Optional(String) ... await Users.setLanguage(user._id, settings.language)",
                "client/providers/TranslationProvider.tsx (3.x-6.x): .map(([key, language]) => ({ ...language, key: key.toLowerCase() }))",
                "apps/meteor/client/providers/TranslationProvider.tsx (current): key taken from @rocket.chat/i18n languages (file names), Default = key ''",
                "Rocket.Chat.ReactNative app/views/LanguageView: saveUserPreferences({ language: value }) with LANGUAGES values",
            ],
        },
        "generator": "python3 tools/gen_rc_languages.py --paths-file tools/rocketchat-i18n-paths.txt --mobile-git <Rocket.Chat.ReactNative clone> --out .",
        "notes": [
            "`none` = users without a language (estimated total minus the others: may be negative).",
            "Users set by the 3.x-6.x web client carry lower-cased codes (pt-br, zh-tw, de-at); keys are grouped case-sensitively, so pt-BR and pt-br can both appear.",
            "The server accepts any string as `language` (REST users.setPreferences, DDP saveUserPreferences): unknown keys are user input.",
            "The default Language setting (wizard.language / settings) uses the same codes but is not a userLanguages key.",
        ],
        "none_key": "none",
        "codes": sorted(offered, key=str.lower),
        "legacy_lowercase": sorted(lower),
        "all_keys": keys,
        "by_source": {**{k: sorted(v, key=str.lower) for k, v in by_layout.items()}, "mobile app LANGUAGES values": sorted(mobile, key=str.lower)},
    }
    out = Path(a.out) / "schemas" / "data" / "rocketchat-languages.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}: {len(offered)} codes, {len(lower)} lower-case variants")


if __name__ == "__main__":
    main()
