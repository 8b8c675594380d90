#!/usr/bin/env node
// Differential-test oracle for github.com/jobpixel/jobpixel/consent.
//
// It uses the official IAB implementation (@iabtcf/core, pinned in
// package-lock.json) and never touches the network: the Global Vendor List
// each case needs is built in memory.
//
// Usage:
//   node oracle.js gen --seed N --count N [--mutations N]
//       Prints one JSON object per line. Each generated case is a random
//       TCModel encoded with TCString.encode; "want" holds what
//       TCString.decode reads back from that string. With --mutations N,
//       every case is followed by N corrupted copies of its string (kind
//       "mutant"), each with the reference decoder's verdict ("ok") and, when
//       it accepts the string, its fields.
//   node oracle.js decode TCSTRING...
//       Prints the reference decoding of each argument (used to write the
//       real-world fixtures in ../fixtures.json).
'use strict';

const { TCString, TCModel, GVL, PurposeRestriction } = require('@iabtcf/core');

// ---- deterministic PRNG (mulberry32) ------------------------------------

function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const r = {
    float: next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)), // inclusive
    bool: (p = 0.5) => next() < p,
    pick: (arr) => arr[Math.floor(next() * arr.length)],
    shuffle: (arr) => {
      for (let i = arr.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        [arr[i], arr[j]] = [arr[j], arr[i]];
      }
      return arr;
    },
  };
  return r;
}

// ---- random sets ---------------------------------------------------------

function subset(r, lo, hi, p) {
  const out = [];
  for (let i = lo; i <= hi; i++) if (r.bool(p)) out.push(i);
  return out;
}

// idSet returns ids from universe (sorted array) in one of several shapes so
// that the encoder picks both the bitfield and the range encoding.
function idSet(r, universe) {
  if (universe.length === 0) return [];
  switch (r.pick(['none', 'few', 'sparse', 'dense', 'runs', 'all', 'runs'])) {
    case 'none':
      return [];
    case 'few': {
      const n = r.int(1, 4);
      const out = new Set();
      for (let i = 0; i < n; i++) out.add(r.pick(universe));
      return [...out];
    }
    case 'sparse':
      return universe.filter(() => r.bool(0.03));
    case 'dense':
      return universe.filter(() => r.bool(r.pick([0.5, 0.8, 0.97])));
    case 'all':
      return universe.slice();
    case 'runs': {
      const out = [];
      const runs = r.int(1, 6);
      for (let i = 0; i < runs; i++) {
        const start = r.int(0, universe.length - 1);
        const len = r.int(1, Math.max(1, Math.floor(universe.length / r.pick([3, 10, 50]))));
        for (let j = start; j < Math.min(universe.length, start + len); j++) out.push(universe[j]);
      }
      return out;
    }
  }
  throw new Error('unreachable');
}

// ---- an in-memory Global Vendor List --------------------------------------

const LANGS = [];
GVL.consentLanguages.forEach((l) => LANGS.push(l));

function named(ids) {
  const m = {};
  for (const id of ids) m[id] = { id, name: `item ${id}`, description: '', descriptionLegal: '' };
  return m;
}
const PURPOSES = named([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
const SPECIAL_PURPOSES = named([1, 2, 3]);
const FEATURES = named([1, 2, 3]);
const SPECIAL_FEATURES = named([1, 2]);

// GVL.changeLanguage (called when a TCModel is cloned during encoding) would
// fetch translations over the network; pre-seeding its cache avoids that.
for (const lang of LANGS) {
  GVL.LANGUAGE_CACHE.set(lang, {
    purposes: PURPOSES,
    specialPurposes: SPECIAL_PURPOSES,
    features: FEATURES,
    specialFeatures: SPECIAL_FEATURES,
    stacks: {},
  });
}

// GVL.getJson deep-copies the whole list through JSON.stringify/parse each
// time a GVL is cached or cloned, which dominated the run time. The oracle
// never mutates a list, so sharing the objects is equivalent. (Only encoding
// consults the GVL; the expectations come from TCString.decode, which does not.)
GVL.prototype.getJson = function getJson() {
  return {
    gvlSpecificationVersion: this.gvlSpecificationVersion,
    vendorListVersion: this.vendorListVersion,
    tcfPolicyVersion: this.tcfPolicyVersion,
    lastUpdated: this.lastUpdated,
    purposes: this.purposes,
    specialPurposes: this.specialPurposes,
    features: this.features,
    specialFeatures: this.specialFeatures,
    stacks: this.stacks,
    vendors: this.fullVendorList,
  };
};

const LI_ABLE = [2, 7, 8, 9, 10, 11]; // purposes that may use legitimate interest in TCF v2.2

function randomGVL(r, vendorIds) {
  const vendors = {};
  for (const id of vendorIds) {
    let purposes = subset(r, 1, 11, r.pick([0.1, 0.5, 0.9]));
    if (r.bool(0.05)) purposes = [];
    const legInt = LI_ABLE.filter((p) => !purposes.includes(p) && r.bool(0.4));
    const flexible = [...purposes, ...legInt].filter((p) => LI_ABLE.includes(p) && r.bool(0.6));
    vendors[id] = {
      id,
      name: `vendor ${id}`,
      purposes,
      legIntPurposes: legInt,
      flexiblePurposes: flexible,
      specialPurposes: subset(r, 1, 2, 0.3),
      features: subset(r, 1, 3, 0.3),
      specialFeatures: subset(r, 1, 2, 0.2),
      policyUrl: 'https://example.invalid/privacy',
      cookieMaxAgeSeconds: 86400,
      usesCookies: true,
      usesNonCookieAccess: false,
    };
  }
  return new GVL({
    gvlSpecificationVersion: 3,
    vendorListVersion: r.int(1, 4095),
    tcfPolicyVersion: r.pick([2, 4, 4, 4, 5, r.int(0, 63)]),
    lastUpdated: '2024-01-01T00:00:00Z',
    purposes: PURPOSES,
    specialPurposes: SPECIAL_PURPOSES,
    features: FEATURES,
    specialFeatures: SPECIAL_FEATURES,
    stacks: {},
    vendors,
  });
}

// ---- one random case -----------------------------------------------------

const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

function randomCase(r) {
  const maxV = r.bool(0.05) ? 3000 : r.pick([8, 40, 60, 150, 300, 800, 1200]);
  const all = [];
  for (let i = 1; i <= maxV; i++) all.push(i);
  let gvlIds = all.filter(() => r.bool(r.pick([0.3, 0.7, 0.95])));
  if (maxV >= 755 && r.bool(0.8) && !gvlIds.includes(755)) gvlIds.push(755);
  gvlIds.sort((a, b) => a - b);
  if (gvlIds.length === 0) gvlIds = [1];

  const gvl = randomGVL(r, gvlIds);
  gvl.lang_ = r.pick(LANGS); // the encoder writes gvl.language as ConsentLanguage
  const m = new TCModel(gvl);

  m.cmpId = r.int(2, 4095);
  m.cmpVersion = r.int(0, 4095);
  m.consentScreen = r.int(0, 63);
  m.publisherCountryCode = LETTERS[r.int(0, 25)] + LETTERS[r.int(0, 25)];
  m.isServiceSpecific = r.bool();
  m.useNonStandardStacks = r.bool();
  m.purposeOneTreatment = r.bool(0.2);
  const t0 = Date.UTC(2018, 0, 1);
  const t1 = Date.UTC(2032, 0, 1);
  m.created = new Date(t0 + Math.floor(r.float() * (t1 - t0)));
  m.lastUpdated = new Date(m.created.getTime() + Math.floor(r.float() * 1e10));

  m.specialFeatureOptins.set(subset(r, 1, 12, r.pick([0, 0.5, 1])));
  m.purposeConsents.set(subset(r, 1, 24, r.pick([0, 0.3, 0.8, 1])));
  m.purposeLegitimateInterests.set(subset(r, 1, 24, r.pick([0, 0.3, 0.8, 1])));

  m.vendorConsents.set(idSet(r, r.bool(0.8) ? gvlIds : all));
  m.vendorLegitimateInterests.set(idSet(r, r.bool(0.8) ? gvlIds : all));

  const nRestr = r.pick([0, 0, 1, 2, 4, 8]);
  for (let i = 0; i < nRestr; i++) {
    const pr = new PurposeRestriction(r.int(1, 11), r.int(0, 2));
    for (const id of idSet(r, gvlIds)) m.publisherRestrictions.add(id, pr); // GVL-incompatible ones are dropped
  }

  const optional = [];
  if (r.bool(0.5)) optional.push('vendorsDisclosed'); // the encoder fills it with every GVL vendor
  if (r.bool(0.25)) {
    optional.push('vendorsAllowed');
    m.vendorsAllowed.set(idSet(r, gvlIds));
  }
  if (r.bool(m.isServiceSpecific ? 0.7 : 0.3)) {
    optional.push('publisherTC');
    m.publisherConsents.set(subset(r, 1, 24, r.pick([0, 0.5, 1])));
    m.publisherLegitimateInterests.set(subset(r, 1, 24, r.pick([0, 0.5, 1])));
    const n = r.pick([0, 0, 1, 5, 24, 63]);
    m.numCustomPurposes = n;
    if (n > 0) {
      m.publisherCustomConsents.set(subset(r, 1, n, 0.5));
      m.publisherCustomLegitimateInterests.set(subset(r, 1, n, 0.5));
    }
  }
  const segments = ['core', ...r.shuffle(optional)];

  // Vendors the Go side should summarize as "Meta" and "LinkedIn": prefer
  // vendors that carry publisher restrictions, sometimes none (0).
  const restricted = m.publisherRestrictions.getVendors();
  const probe = () => {
    if (r.bool(0.1)) return 0;
    if (restricted.length > 0 && r.bool(0.6)) return r.pick(restricted);
    return r.pick(gvlIds);
  };

  const tc = TCString.encode(m, { segments });
  GVL.emptyCache(); // populate() caches every list by version; keep memory flat
  return { kind: 'case', tc, probe: [probe(), probe()], want: describe(tc) };
}

// ---- what the reference decoder reads back -------------------------------

function ids(vector) {
  return [...vector.values()].map(Number).sort((a, b) => a - b);
}

function segmentTypes(tc) {
  const dict = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  return tc.split('.').map((s, i) => (i === 0 ? 0 : dict.indexOf(s[0]) >> 3));
}

function describe(tc) {
  const m = TCString.decode(tc);
  const types = segmentTypes(tc);
  const restrictions = m.publisherRestrictions
    .getRestrictions()
    .map((pr) => ({
      purpose: pr.purposeId,
      type: pr.restrictionType,
      vendors: m.publisherRestrictions.getVendors(pr).map(Number).sort((a, b) => a - b),
    }))
    .filter((x) => x.vendors.length > 0)
    .sort((a, b) => a.purpose - b.purpose || a.type - b.type);
  const want = {
    version: Number(m.version),
    created: m.created.getTime(),
    lastUpdated: m.lastUpdated.getTime(),
    cmpId: Number(m.cmpId),
    cmpVersion: Number(m.cmpVersion),
    consentScreen: Number(m.consentScreen),
    consentLanguage: m.consentLanguage,
    vendorListVersion: Number(m.vendorListVersion),
    policyVersion: Number(m.policyVersion),
    isServiceSpecific: m.isServiceSpecific,
    useNonStandardTexts: m.useNonStandardStacks,
    specialFeatureOptIns: ids(m.specialFeatureOptins),
    purposesConsent: ids(m.purposeConsents),
    purposesLITransparency: ids(m.purposeLegitimateInterests),
    purposeOneTreatment: m.purposeOneTreatment,
    publisherCC: m.publisherCountryCode,
    vendorConsents: ids(m.vendorConsents),
    vendorLegitimateInterests: ids(m.vendorLegitimateInterests),
    publisherRestrictions: restrictions,
    disclosedVendors: types.includes(1) ? ids(m.vendorsDisclosed) : null,
    allowedVendors: types.includes(2) ? ids(m.vendorsAllowed) : null,
    publisherTC: types.includes(3)
      ? {
          purposesConsent: ids(m.publisherConsents),
          purposesLITransparency: ids(m.publisherLegitimateInterests),
          numCustomPurposes: Number(m.numCustomPurposes),
          customPurposesConsent: ids(m.publisherCustomConsents),
          customPurposesLITransparency: ids(m.publisherCustomLegitimateInterests),
        }
      : null,
  };
  return want;
}

// ---- corrupted copies ------------------------------------------------------

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

// Corruptions that change field values are confined to the fixed-size core
// header (the first 36 characters: 216 bits > 213) and to segment-type
// characters: a corrupted vendor range can make the reference decoder spend
// minutes materialising up to 4095 x 65535 ids into its (unbalanced) trees.
// Range and bitfield corruption is left to the Go fuzzers.
function mutate(r, tc) {
  const header = Math.min(36, tc.indexOf('.') < 0 ? tc.length : tc.indexOf('.'));
  const segStarts = [];
  for (let i = 0; i < tc.length; i++) if (tc[i] === '.' && i + 1 < tc.length) segStarts.push(i + 1);
  const spot = () => (segStarts.length > 0 && r.bool(0.2) ? r.pick(segStarts) : r.int(0, header - 1));
  switch (r.int(0, 6)) {
    case 0: // truncate
      return tc.slice(0, r.int(1, tc.length - 1));
    case 1: { // replace one character
      const i = spot();
      return tc.slice(0, i) + r.pick(B64) + tc.slice(i + 1);
    }
    case 2:
    case 3: { // flip one bit of a character
      const i = spot();
      const v = B64.indexOf(tc[i]);
      if (v < 0) return tc;
      return tc.slice(0, i) + B64[v ^ (1 << r.int(0, 5))] + tc.slice(i + 1);
    }
    case 4: // append junk characters
      return tc + Array.from({ length: r.int(1, 8) }, () => r.pick(B64)).join('');
    case 5: { // drop or duplicate a segment
      const segs = tc.split('.');
      const i = r.int(0, segs.length - 1);
      if (r.bool()) segs.splice(i, 1);
      else segs.splice(i, 0, segs[i]);
      return segs.join('.');
    }
    case 6: // insert a character that is not base64url (or an extra dot)
      return tc.slice(0, r.int(0, tc.length)) + r.pick(['=', '+', '/', '.', ' ', '~']) + tc.slice(r.int(0, tc.length));
  }
  throw new Error('unreachable');
}

function mutant(r, tc) {
  const s = mutate(r, tc);
  try {
    return { kind: 'mutant', tc: s, ok: true, want: describe(s) };
  } catch (e) {
    return { kind: 'mutant', tc: s, ok: false, error: String(e && e.message) };
  }
}

// ---- main ------------------------------------------------------------------

function arg(argv, name, def) {
  const i = argv.indexOf(name);
  if (i < 0 || i + 1 >= argv.length) return def;
  const v = Number(argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name} wants a non-negative integer`);
  return v;
}

function main(argv) {
  const out = [];
  const flush = () => {
    if (out.length) process.stdout.write(out.join('\n') + '\n');
    out.length = 0;
  };
  if (argv[0] === 'gen') {
    const seed = arg(argv, '--seed', 1);
    const count = arg(argv, '--count', 3000);
    const mutations = arg(argv, '--mutations', 0);
    const r = rng(seed);
    for (let i = 0; i < count; i++) {
      const c = randomCase(r);
      c.index = i;
      out.push(JSON.stringify(c));
      for (let j = 0; j < mutations; j++) out.push(JSON.stringify(mutant(r, c.tc)));
      if (out.length >= 256) flush();
    }
    flush();
    return;
  }
  if (argv[0] === 'decode') {
    for (const tc of argv.slice(1)) {
      try {
        out.push(JSON.stringify({ tc, ok: true, want: describe(tc) }));
      } catch (e) {
        out.push(JSON.stringify({ tc, ok: false, error: String(e && e.message) }));
      }
    }
    flush();
    return;
  }
  process.stderr.write('usage: node oracle.js gen --seed N --count N [--mutations N] | decode TCSTRING...\n');
  process.exit(2);
}

main(process.argv.slice(2));
