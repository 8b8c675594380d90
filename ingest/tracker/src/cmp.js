// Consent banner of the demo vacancy page (GET /demo/vacancy): a real IAB
// TCF v2.2 CMP API (__tcfapi) made with the official @iabtcf/cmpapi and
// @iabtcf/core, bundled by build.mjs into dist/cmp.js (served as
// /demo/cmp.js). It needs no network: the vendor list is an excerpt bundled
// from gvl.json (Google, vendor 755, and LinkedIn). The choice is kept in
// memory only, so the demo page writes no cookie of its own; a reload asks
// again.
import { CmpApi } from '@iabtcf/cmpapi';
import { GVL, TCModel, TCString } from '@iabtcf/core';
import vendorList from './gvl.json';

// CMP ids are assigned by IAB Europe; 4095 (the largest 12-bit value) is not
// assigned to anyone and marks this as a demo.
const CMP_ID = 4095;
const CMP_VERSION = 1;
const PURPOSES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

const cmp = new CmpApi(CMP_ID, CMP_VERSION, true);
// GDPR applies and the banner is showing: no decision yet.
cmp.update('', true);

let current = '';

// encode returns the TC string of "accept all" (purposes 1-10 and every
// vendor of the list) or of "refuse all" (no consent, legitimate interest
// objected to).
function encode(accept) {
  const gvl = new GVL(vendorList);
  const m = new TCModel(gvl);
  m.cmpId = CMP_ID;
  m.cmpVersion = CMP_VERSION;
  m.consentScreen = 1;
  m.publisherCountryCode = 'DE';
  m.isServiceSpecific = true;
  if (accept) {
    m.purposeConsents.set(PURPOSES);
    m.purposeLegitimateInterests.set([2, 7, 8, 9, 10]);
    const ids = Object.keys(gvl.vendors).map(Number);
    m.vendorConsents.set(ids);
    m.vendorLegitimateInterests.set(ids.filter((id) => gvl.vendors[id].legIntPurposes.length > 0));
  }
  return TCString.encode(m);
}

function show(visible) {
  const banner = document.getElementById('jp-consent');
  if (banner) banner.hidden = !visible;
}

function decide(accept) {
  current = encode(accept);
  cmp.update(current, false);
  show(false);
  const status = document.getElementById('jp-consent-status');
  if (status) status.textContent = accept ? 'accepted' : 'refused';
}

function wire() {
  const on = (id, f) => {
    const el = document.getElementById(id);
    if (el) el.addEventListener('click', (e) => { e.preventDefault(); f(); });
  };
  on('jp-accept', () => decide(true));
  on('jp-refuse', () => decide(false));
  on('jp-settings', () => {
    cmp.update(current, true);
    show(true);
  });
  show(true);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', wire);
else wire();
