#!/usr/bin/env node
// Regenerates
//   schemas/data/user-agent-names.json   (allow-lists for the session aggregates)
//   tests/data/versions/browsers.txt     (device versions as Rocket.Chat stores them)
//   tests/data/versions/os.txt           (OS versions as ua-parser-js reports them)
//
// Inputs (all public, nothing is committed from them):
//   --uap-git DIR   a git clone of github.com/faisalman/ua-parser-js (tags 0.7.x / 1.0.x);
//                   each tag's src/ua-parser.js is evaluated in a throw-away vm context,
//                   its regex map is walked for literal names, and its own test corpora
//                   (test/*.json) are parsed.
//   --ua-json FILE  (repeatable) JSON arrays of real user-agent strings, e.g. the
//                   `src/index.json`, `src/desktop.json`, `src/mobile.json` of the npm
//                   package top-user-agents (`npm pack top-user-agents@<v>`).
//   --mobile-git DIR  a git clone of RocketChat/Rocket.Chat.ReactNative (tags = app versions)
//   --desktop-git DIR a git clone of RocketChat/Rocket.Chat.Electron (tags = app versions)
//   --out DIR       the repository root to write into
//
// Rocket.Chat's derivation that this reproduces (apps/meteor/app/statistics/server/lib/
// SAUMonitor.ts `_getUserAgentInfo` and UAParserCustom.ts) is ported in `rcDeviceInfo` below.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';

const args = process.argv.slice(2);
const opt = (name, multi = false) => {
	const out = [];
	for (let i = 0; i < args.length; i++) if (args[i] === name) out.push(args[i + 1]);
	return multi ? out : out[0];
};
const uapGit = opt('--uap-git');
const uaJson = opt('--ua-json', true);
const mobileGit = opt('--mobile-git');
const desktopGit = opt('--desktop-git');
const outDir = opt('--out') || '.';
if (!uapGit) {
	console.error('usage: gen_ua_data.mjs --uap-git DIR [--ua-json FILE]... [--mobile-git DIR] [--desktop-git DIR] --out DIR');
	process.exit(2);
}

const git = (dir, ...a) => execFileSync('git', ['-C', dir, ...a], { encoding: 'utf8', maxBuffer: 1 << 28 });
const vkey = (s) => s.split(/[^0-9]+/).filter(Boolean).map(Number);
const vcmp = (a, b) => {
	const x = vkey(a), y = vkey(b);
	for (let i = 0; i < Math.max(x.length, y.length); i++) {
		const d = (x[i] ?? -1) - (y[i] ?? -1);
		if (d) return d;
	}
	return a < b ? -1 : a > b ? 1 : 0;
};

// Every ua-parser-js release a `^0.7.x` or `^1.0.x` range in Rocket.Chat's package.json can
// resolve to (Rocket.Chat pinned ^0.7.x up to 4.x, ^1.0.x since; see the JSON's notes).
const uapTags = git(uapGit, 'tag')
	.split('\n')
	.filter((t) => /^(0\.7\.(1[7-9]|[2-9]\d)|1\.0\.\d+)$/.test(t))
	.sort(vcmp);

const loadParser = (tag) => {
	let src = git(uapGit, 'show', `${tag}:src/ua-parser.js`);
	if (!src.includes('var regexes = {')) throw new Error(`no regex map in ${tag}`);
	// the IIFE receives the vm's global object as `window`; expose the private regex map on it
	src = src.replace('var regexes = {', 'var regexes = window.__uapRegexes = {');
	const sandbox = { exports: {}, module: { exports: {} } };
	sandbox.module.exports = sandbox.exports;
	vm.createContext(sandbox);
	vm.runInContext(src, sandbox);
	const UAParser = sandbox.module.exports.UAParser || sandbox.exports.UAParser || sandbox.module.exports;
	return { UAParser, regexes: sandbox.__uapRegexes };
};

// literal names / types in the regex map: props like [NAME, 'Chrome'] or [TYPE, MOBILE]
const literals = (section) => {
	const names = new Set(), dynamic = [];
	for (let i = 1; i < section.length; i += 2) {
		for (const p of section[i]) {
			if (Array.isArray(p) && p[0] === 'name') {
				if (p.length === 2 && typeof p[1] === 'string') names.add(p[1]);
				else dynamic.push(String(p.slice(1).map(String)));
			} else if (p === 'name') dynamic.push('(capture)');
		}
	}
	return { names, dynamic };
};
const deviceTypes = (section) => {
	const types = new Set();
	for (let i = 1; i < section.length; i += 2)
		for (const p of section[i]) if (Array.isArray(p) && p[0] === 'type' && typeof p[1] === 'string') types.add(p[1]);
	return types;
};

// ---- Rocket.Chat's derivation (port of UAParserCustom.ts + SAUMonitor._getUserAgentInfo) ----
const rcDeviceInfo = (UAParser, ua) => {
	let result;
	const split = ua.split(';');
	if (split[0] && split[0].trim() === 'RC Mobile') {
		result = { device: { type: 'mobile-app' }, app: { name: split[0] } };
		const keys = ['os', 'app'];
		split.slice(1).forEach((el, idx) => {
			const key = keys[idx];
			if (!key) return;
			const parts = el.trim().split(' ');
			const list = key === 'os' ? ['name', 'version'] : ['version', 'bundle'];
			const sub = {};
			parts.forEach((v, j) => {
				if (j < list.length) {
					let val = v;
					if (key === 'app' && list[j] === 'bundle') val = v.replace(/([()])/g, '');
					if (key === 'app' && list[j] === 'version') val = v.replace(/^v/g, '');
					sub[list[j]] = val;
				}
			});
			result[key] = { ...(result[key] || {}), ...sub };
		});
	} else if (ua.includes(' Electron/')) {
		const parsed = new UAParser(ua).getResult();
		const [, name, version] = ua.match(/(Rocket\.Chat)\/(\d+(\.\d+)+)/) || [];
		result = { device: { type: 'desktop-app' }, os: parsed.os, app: { name, version } };
	} else {
		result = new UAParser(ua).getResult();
	}
	const info = { type: 'other', name: '', longVersion: '', os: { name: '', version: '' }, version: '' };
	if (result.browser?.name) {
		info.type = 'browser';
		info.name = result.browser.name;
		info.longVersion = result.browser.version || '';
	}
	if (typeof result.os !== 'string' && result.os?.name) {
		const os = { ...result.os };
		Object.keys(os).forEach((k) => (!os[k] || os[k] === undefined) && delete os[k]);
		info.os = os;
	}
	if (result.device && (result.device.type || result.device.model)) {
		info.type = result.device.type || '';
		if (result.app?.name) {
			info.name = result.app.name;
			info.longVersion = result.app.version;
			if (result.app.bundle) info.longVersion += ` ${result.app.bundle}`;
		}
	}
	if (typeof info.longVersion === 'string') info.version = info.longVersion.match(/(\d+\.){0,2}\d+/)?.[0] || '';
	return info;
};

// ---- corpora of real user-agent strings ----
const testUAs = (tag) => {
	const out = [];
	for (const f of ['browser', 'os', 'device', 'engine', 'cpu', 'mediaplayer']) {
		let txt;
		try {
			txt = git(uapGit, 'show', `${tag}:test/${f}-test.json`);
		} catch {
			continue;
		}
		for (const t of JSON.parse(txt)) if (typeof t.ua === 'string') out.push(t.ua);
	}
	return out;
};
// "name@version:path/in/package" for a file inside an unpacked npm package
const pkgLabel = (f) => {
	for (let d = path.dirname(path.resolve(f)); d !== path.dirname(d); d = path.dirname(d)) {
		const pj = path.join(d, 'package.json');
		if (fs.existsSync(pj)) {
			const { name, version } = JSON.parse(fs.readFileSync(pj, 'utf8'));
			return `${name}@${version}:${path.relative(d, path.resolve(f))}`;
		}
	}
	return path.basename(f);
};
const realUAs = [];
for (const f of uaJson) realUAs.push(...JSON.parse(fs.readFileSync(f, 'utf8')).filter((s) => typeof s === 'string'));

// app user agents Rocket.Chat's own clients send, built from their tags
// (the Electron repository also carries Rocket.Chat *server* tags 0.10.1..0.65.2, whose trees
// have a .meteor directory: those are not desktop app versions and are skipped)
const isServerTree = (dir, tag) => git(dir, 'ls-tree', '--name-only', tag, '.meteor').trim() !== '';
const appTags = (dir) => (dir ? git(dir, 'tag').split('\n').filter((t) => /^v?\d+\.\d+/.test(t) && !isServerTree(dir, t)) : []);
const mobileUAs = appTags(mobileGit).flatMap((t) => [
	`RC Mobile; ios 17.4.1; ${t.startsWith('v') ? t : `v${t}`} (1)`,
	`RC Mobile; android 14; ${t.startsWith('v') ? t : `v${t}`} (1)`,
]);
const desktopUAs = appTags(desktopGit).map(
	(t) => `Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Rocket.Chat/${t.replace(/^v/, '')} Chrome/124.0.6367.91 Electron/30.0.1 Safari/537.36`,
);

const browserNames = new Map(); // name -> {literal:Set(tags), parsed:Set(tags)}
const osNames = new Map();
const types = new Map();
const note = (m, k, kind, tag) => {
	if (!m.has(k)) m.set(k, { literal: new Set(), parsed: new Set() });
	m.get(k)[kind].add(tag);
};
const deviceVersions = new Map(); // version -> example name
const osVersions = new Map();
const dynamicRules = new Set();

for (const tag of uapTags) {
	const { UAParser, regexes } = loadParser(tag);
	const b = literals(regexes.browser);
	b.names.forEach((n) => note(browserNames, n, 'literal', tag));
	b.dynamic.forEach((d) => dynamicRules.add(`browser ${d}`));
	const o = literals(regexes.os);
	o.names.forEach((n) => note(osNames, n, 'literal', tag));
	o.dynamic.forEach((d) => dynamicRules.add(`os ${d}`));
	deviceTypes(regexes.device).forEach((t) => note(types, t, 'literal', tag));
	const built = new Set([...mobileUAs, ...desktopUAs]); // app UAs built from real tags: their OS part is made up
	for (const ua of [...testUAs(tag), ...realUAs, ...mobileUAs, ...desktopUAs]) {
		const info = rcDeviceInfo(UAParser, ua);
		if (info.name) note(browserNames, info.name, 'parsed', tag);
		note(types, info.type, 'parsed', tag);
		if (info.os?.name && !built.has(ua)) note(osNames, info.os.name, 'parsed', tag);
		if (info.version && !deviceVersions.has(info.version)) deviceVersions.set(info.version, info.name);
		if (info.os?.version && !built.has(ua) && !osVersions.has(info.os.version)) osVersions.set(info.os.version, info.os.name);
	}
}

const span = (set) => {
	const s = [...set].sort(vcmp);
	return s.length ? (s.length === 1 ? s[0] : `${s[0]}..${s[s.length - 1]}`) : null;
};
const table = (m) =>
	Object.fromEntries(
		[...m.entries()]
			.sort(([a], [b]) => a.localeCompare(b))
			.map(([k, v]) => [k, { regex_literal: span(v.literal), parsed_from_real_ua: span(v.parsed) }]),
	);
const appNames = ['RC Mobile', 'Rocket.Chat'];
const mobileOs = ['ios', 'android'];
const sortedNames = (m, extra = []) => [...new Set(['', ...m.keys(), ...extra])].sort((a, b) => a.localeCompare(b));

const json = {
	description:
		'Allow-lists for the names and types Rocket.Chat puts in its session aggregates (uniqueDevicesOf*.data[].name/.type, uniqueOSOf*.data[].name), derived from the ua-parser-js releases Rocket.Chat can resolve plus its own mobile/desktop special cases.',
	applies_to: {
		device_names: ['uniqueDevicesOfYesterday.data[].name', 'uniqueDevicesOfLastWeek.data[].name', 'uniqueDevicesOfLastMonth.data[].name'],
		device_types: ['uniqueDevicesOfYesterday.data[].type', 'uniqueDevicesOfLastWeek.data[].type', 'uniqueDevicesOfLastMonth.data[].type'],
		os_names: ['uniqueOSOfYesterday.data[].name', 'uniqueOSOfLastWeek.data[].name', 'uniqueOSOfLastMonth.data[].name'],
	},
	source: {
		rocketchat: [
			'apps/meteor/app/statistics/server/lib/SAUMonitor.ts (_getUserAgentInfo)',
			'apps/meteor/app/statistics/server/lib/UAParserCustom.ts (UAParserMobile appName "RC Mobile", device "mobile-app"; UAParserDesktop device "desktop-app", name from /(Rocket\\.Chat)\\/(\\d+(\\.\\d+)+)/)',
			'packages/models/src/models/Sessions.ts (aggregates group by devices.device.type/name/version and devices.device.os.name/version)',
			'apps/meteor/package.json "ua-parser-js": "^1.0.2" (stored copy); older servers ^0.7.x',
		],
		ua_parser_js: { repository: 'github.com/faisalman/ua-parser-js', tags: uapTags },
		real_user_agents: uaJson.map(pkgLabel),
		mobile_app_tags: mobileGit ? 'github.com/RocketChat/Rocket.Chat.ReactNative tags (UA "RC Mobile; <Platform.OS> <systemVersion>; v<version> (<build>)")' : null,
		desktop_app_tags: desktopGit ? 'github.com/RocketChat/Rocket.Chat.Electron tags (default Electron UA with "Rocket.Chat/<version>" and "Electron/<v>")' : null,
	},
	generator: 'node tools/gen_ua_data.mjs --uap-git <ua-parser-js clone> --ua-json <top-user-agents src/*.json>... --mobile-git <Rocket.Chat.ReactNative clone> --desktop-git <Rocket.Chat.Electron clone> --out .',
	notes: [
		'device name = browser.name from ua-parser-js, replaced by app.name for the mobile app ("RC Mobile") and the desktop app ("Rocket.Chat", or "" when the UA lacks "Rocket.Chat/<ver>"); "" when nothing is known.',
		'device type = "browser" when a browser name was found, else "other"; replaced by ua-parser device.type (mobile, tablet, console, smarttv, wearable, embedded) when device.type or device.model is set, and by "" when only device.model is set (e.g. Macintosh in ua-parser-js 1.0.x: the real 6.8.0 record has type "" for Chrome/Safari on a Mac).',
		'os name = ua-parser-js os.name; the mobile app sends React Native Platform.OS, lowercase "ios" / "android".',
		'device version = first match of /(\\d+\\.){0,2}\\d+/ in the long version, so it never has more than 3 numeric parts; os version is ua-parser-js os.version unchanged.',
		'"Rocket.Chat Desktop" and "Rocket.Chat Mobile" are not names Rocket.Chat produces.',
		'names in parsed_from_real_ua only (no literal) come from regex captures: their spelling follows the user agent text.',
	],
	app_names: appNames,
	mobile_os_names: mobileOs,
	device_types: sortedNames(types, ['browser', 'other', 'mobile-app', 'desktop-app']),
	browser_names: sortedNames(browserNames).filter((n) => !appNames.includes(n)),
	device_names: sortedNames(browserNames, appNames),
	os_names: sortedNames(osNames, mobileOs),
	dynamic_rules_in_regex_map: [...dynamicRules].sort(),
	provenance: {
		browser_names: table(browserNames),
		os_names: {
			...table(osNames),
			...Object.fromEntries(mobileOs.map((n) => [n, { rocketchat: 'UAParserMobile: "RC Mobile; <Platform.OS> <version>; ..." (React Native Platform.OS)' }])),
		},
		device_types: table(types),
		app_names: {
			'RC Mobile': 'UAParserMobile.appName (first ";" field of the mobile app UA)',
			'Rocket.Chat': 'UAParserDesktop: /(Rocket\\.Chat)\\/(\\d+(\\.\\d+)+)/ on the Electron UA',
		},
	},
};

const write = (rel, text) => {
	const p = path.join(outDir, rel);
	fs.mkdirSync(path.dirname(p), { recursive: true });
	fs.writeFileSync(p, text);
	console.error(`wrote ${rel}`);
};
write('schemas/data/user-agent-names.json', `${JSON.stringify(json, null, '\t')}\n`);

const header = (what) =>
	`# ${what}\n# generated by tools/gen_ua_data.mjs from ua-parser-js ${uapTags[0]}..${uapTags[uapTags.length - 1]} run over its own test corpora${
		uaJson.length ? ' and top-user-agents' : ''
	}${mobileGit ? ', RC Mobile and Rocket.Chat Desktop tags' : ''}\n`;
const sortV = (m) => [...m.keys()].sort(vcmp);
write(
	'tests/data/versions/browsers.txt',
	header('device versions (uniqueDevicesOf*.data[].version) exactly as Rocket.Chat stores them: ua-parser-js browser/app version cut by /(\\d+\\.){0,2}\\d+/') +
		sortV(deviceVersions).join('\n') +
		'\n',
);
write('tests/data/versions/os.txt', header('OS versions (uniqueOSOf*.data[].version) exactly as ua-parser-js / the RC mobile UA report them') + sortV(osVersions).join('\n') + '\n');
