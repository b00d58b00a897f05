#!/usr/bin/env node
// Verify a collector receipt (`statsToken`) the way a Rocket.Chat server does.
//
//   cd tests/js && npm ci
//   PUBLIC_STATS_KEY_V2="$(base64 -w0 public.pem)" node verify_receipt.mjs <token> [--now <ISO date>]
//   echo <token> | PUBLIC_STATS_KEY_V2=... node verify_receipt.mjs
//
// Prints one JSON object on stdout and exits 0 when the token verifies:
//   {"payload": {...}, "protectedHeader": {...}, "days": N,
//    "remainingDays": R, "restricted": false|true}
// `days` is AirGappedRestriction's daysSinceLastStatsReport (null when the
// payload's timestamp does not parse: NaN in Rocket.Chat), `remainingDays` and
// `restricted` what notifyRemainingDaysUntilRestriction makes of it.
// Otherwise prints {"error": {...}, "remainingDays": 0, "restricted": true}
// (Rocket.Chat's catch -> applyRestrictions) and the message on stderr, exit 1.
// Exit 2: usage error (no token).
//
// `--now` replaces `new Date()` for the day count (for tests). Like Rocket.Chat,
// the count uses the process's local calendar date (getFullYear/getMonth/getDate),
// so it depends on TZ; run with TZ=UTC for a server in UTC.
//
// What Rocket.Chat runs, quoted (RocketChat/Rocket.Chat):
//
// ee/packages/license/src/token.ts
//   const base64Decode = (key: string): string => Buffer.from(key, 'base64').toString('utf-8');
//   const PUBLIC_STATS_KEY_V2 = process.env.PUBLIC_STATS_KEY_V2 || '';
//   ... export async function decryptStatsToken(encrypted: string): Promise<string> {
//   ...   const [payload] = await verify(encrypted, base64Decode(PUBLIC_STATS_KEY_V2));
//   ...   return JSON.stringify(payload);
//   (with NODE_ENV=test it verifies against a freshly generated test key instead;
//   this script does not imitate that branch)
//
// packages/jwt/src/index.ts (@rocket.chat/jwt, private, depends on "jose": "^4.15.9")
//   export async function verify(jwt: string, spki: string, alg = 'RS256') {
//   	const publicKey = await importSPKI(spki, alg);
//   	const { payload, protectedHeader } = await jwtVerify(jwt, publicKey, {});
//   	return [payload, protectedHeader];
//
// ee/packages/license/src/AirGappedRestriction.ts
//   const DAY_IN_MS = 24 * 60 * 60 * 1000;
//   const NO_ACTION_PERIOD_IN_DAYS = 3;
//   const WARNING_PERIOD_IN_DAYS = 7;
//   ... const { timestamp: lastStatsReportTimestamp } = JSON.parse(await decryptStatsToken(encryptedToken));
//   const now = new Date();
//   const lastStatsReport = new Date(lastStatsReportTimestamp);
//   const nowUTC = Date.UTC(now.getFullYear(), now.getMonth(), now.getDate());
//   const lastStatsReportUTC = Date.UTC(lastStatsReport.getFullYear(), lastStatsReport.getMonth(), lastStatsReport.getDate());
//   const daysSinceLastStatsReport = Math.floor((nowUTC - lastStatsReportUTC) / DAY_IN_MS);
//   ... } catch { this.applyRestrictions(); }
//   applyRestrictions(): this.notifyRemainingDaysUntilRestriction(NO_ACTION_PERIOD_IN_DAYS + WARNING_PERIOD_IN_DAYS);
//   notifyRemainingDaysUntilRestriction(daysSinceLastStatsReport):
//     const remainingDaysUntilRestriction = Math.max(NO_ACTION_PERIOD_IN_DAYS + WARNING_PERIOD_IN_DAYS - daysSinceLastStatsReport, 0);
//     this.#restricted = remainingDaysUntilRestriction === 0;

import { importSPKI, jwtVerify } from 'jose';

const DAY_IN_MS = 24 * 60 * 60 * 1000;
const NO_ACTION_PERIOD_IN_DAYS = 3;
const WARNING_PERIOD_IN_DAYS = 7;

const base64Decode = (key) => Buffer.from(key, 'base64').toString('utf-8');

// @rocket.chat/jwt verify(), unchanged.
async function verify(jwt, spki, alg = 'RS256') {
	const publicKey = await importSPKI(spki, alg);
	const { payload, protectedHeader } = await jwtVerify(jwt, publicKey, {});
	return [payload, protectedHeader];
}

function daysSince(lastStatsReportTimestamp, now) {
	const lastStatsReport = new Date(lastStatsReportTimestamp);
	const nowUTC = Date.UTC(now.getFullYear(), now.getMonth(), now.getDate());
	const lastStatsReportUTC = Date.UTC(lastStatsReport.getFullYear(), lastStatsReport.getMonth(), lastStatsReport.getDate());
	return Math.floor((nowUTC - lastStatsReportUTC) / DAY_IN_MS);
}

function restriction(daysSinceLastStatsReport) {
	const remainingDays = Math.max(NO_ACTION_PERIOD_IN_DAYS + WARNING_PERIOD_IN_DAYS - daysSinceLastStatsReport, 0);
	// NaN stays NaN here, and NaN === 0 is false: Rocket.Chat does not restrict then.
	return { remainingDays: Number.isNaN(remainingDays) ? null : remainingDays, restricted: remainingDays === 0 };
}

async function readStdin() {
	if (process.stdin.isTTY) return '';
	const chunks = [];
	for await (const c of process.stdin) chunks.push(c);
	return Buffer.concat(chunks).toString('utf-8');
}

async function main() {
	const args = process.argv.slice(2);
	let now = new Date();
	const i = args.indexOf('--now');
	if (i >= 0) {
		now = new Date(args[i + 1]);
		if (Number.isNaN(now.getTime())) {
			process.stderr.write(`--now: not a date: ${args[i + 1]}\n`);
			return 2;
		}
		args.splice(i, 2);
	}
	const token = (args[0] ?? (await readStdin())).trim();
	if (!token) {
		process.stderr.write('usage: PUBLIC_STATS_KEY_V2=<base64 SPKI PEM> node verify_receipt.mjs <token> [--now <date>]\n');
		return 2;
	}
	const PUBLIC_STATS_KEY_V2 = process.env.PUBLIC_STATS_KEY_V2 || '';

	let payload;
	let protectedHeader;
	try {
		[payload, protectedHeader] = await verify(token, base64Decode(PUBLIC_STATS_KEY_V2));
	} catch (err) {
		const error = { name: err?.name, code: err?.code, message: err?.message };
		process.stdout.write(`${JSON.stringify({ error, ...restriction(NO_ACTION_PERIOD_IN_DAYS + WARNING_PERIOD_IN_DAYS) })}\n`);
		process.stderr.write(`${err?.code ?? err?.name}: ${err?.message}\n`);
		return 1;
	}
	// decryptStatsToken returns JSON.stringify(payload); AirGappedRestriction JSON.parses it.
	const { timestamp } = JSON.parse(JSON.stringify(payload));
	const days = daysSince(timestamp, now);
	const out = { payload, protectedHeader, days: Number.isNaN(days) ? null : days, ...restriction(days) };
	process.stdout.write(`${JSON.stringify(out)}\n`);
	return 0;
}

process.exitCode = await main();
