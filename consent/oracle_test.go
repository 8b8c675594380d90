package consent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The differential test: testdata/iabtcf/oracle.js makes random TC strings
// with the official IAB implementation (@iabtcf/core) and prints what that
// implementation decodes from them; every field must match Parse, and
// Summarize must agree with both.

const oracleDir = "testdata/iabtcf"

// oracleWant is what the reference decoder read from a string (see
// describe() in oracle.js).
type oracleWant struct {
	Version                   int                 `json:"version"`
	Created                   int64               `json:"created"`
	LastUpdated               int64               `json:"lastUpdated"`
	CmpID                     int                 `json:"cmpId"`
	CmpVersion                int                 `json:"cmpVersion"`
	ConsentScreen             int                 `json:"consentScreen"`
	ConsentLanguage           string              `json:"consentLanguage"`
	VendorListVersion         int                 `json:"vendorListVersion"`
	PolicyVersion             int                 `json:"policyVersion"`
	IsServiceSpecific         bool                `json:"isServiceSpecific"`
	UseNonStandardTexts       bool                `json:"useNonStandardTexts"`
	SpecialFeatureOptIns      []int               `json:"specialFeatureOptIns"`
	PurposesConsent           []int               `json:"purposesConsent"`
	PurposesLITransparency    []int               `json:"purposesLITransparency"`
	PurposeOneTreatment       bool                `json:"purposeOneTreatment"`
	PublisherCC               string              `json:"publisherCC"`
	VendorConsents            []int               `json:"vendorConsents"`
	VendorLegitimateInterests []int               `json:"vendorLegitimateInterests"`
	PublisherRestrictions     []oracleRestriction `json:"publisherRestrictions"`
	DisclosedVendors          *[]int              `json:"disclosedVendors"`
	AllowedVendors            *[]int              `json:"allowedVendors"`
	PublisherTC               *oraclePublisherTC  `json:"publisherTC"`
}

type oracleRestriction struct {
	Purpose int   `json:"purpose"`
	Type    int   `json:"type"`
	Vendors []int `json:"vendors"`
}

type oraclePublisherTC struct {
	PurposesConsent              []int `json:"purposesConsent"`
	PurposesLITransparency       []int `json:"purposesLITransparency"`
	NumCustomPurposes            int   `json:"numCustomPurposes"`
	CustomPurposesConsent        []int `json:"customPurposesConsent"`
	CustomPurposesLITransparency []int `json:"customPurposesLITransparency"`
}

type oracleLine struct {
	Kind  string      `json:"kind"`
	Index int         `json:"index"`
	TC    string      `json:"tc"`
	Probe [2]uint16   `json:"probe"`
	OK    *bool       `json:"ok"`
	Error string      `json:"error"`
	Want  *oracleWant `json:"want"`
}

// diffTC lists every field where tc differs from want.
func diffTC(tc *TCString, want *oracleWant) []string {
	var diffs []string
	check := func(field string, got, want any) {
		if !reflect.DeepEqual(got, want) {
			diffs = append(diffs, fmt.Sprintf("%s: got %v, want %v", field, got, want))
		}
	}
	check("Version", tc.Version, want.Version)
	check("Created", tc.Created.UnixMilli(), want.Created)
	check("LastUpdated", tc.LastUpdated.UnixMilli(), want.LastUpdated)
	check("CmpID", tc.CmpID, want.CmpID)
	check("CmpVersion", tc.CmpVersion, want.CmpVersion)
	check("ConsentScreen", tc.ConsentScreen, want.ConsentScreen)
	check("ConsentLanguage", tc.ConsentLanguage, want.ConsentLanguage)
	check("VendorListVersion", tc.VendorListVersion, want.VendorListVersion)
	check("PolicyVersion", tc.PolicyVersion, want.PolicyVersion)
	check("IsServiceSpecific", tc.IsServiceSpecific, want.IsServiceSpecific)
	check("UseNonStandardTexts", tc.UseNonStandardTexts, want.UseNonStandardTexts)
	check("SpecialFeatureOptIns", tc.SpecialFeatureOptIns.IDs(), nonNil(want.SpecialFeatureOptIns))
	check("PurposesConsent", tc.PurposesConsent.IDs(), nonNil(want.PurposesConsent))
	check("PurposesLITransparency", tc.PurposesLITransparency.IDs(), nonNil(want.PurposesLITransparency))
	check("PurposeOneTreatment", tc.PurposeOneTreatment, want.PurposeOneTreatment)
	check("PublisherCC", tc.PublisherCC, want.PublisherCC)
	check("VendorConsents", nonNil(tc.VendorConsents.IDs()), nonNil(want.VendorConsents))
	check("VendorLegitimateInterests", nonNil(tc.VendorLegitimateInterests.IDs()), nonNil(want.VendorLegitimateInterests))
	check("PublisherRestrictions", normRestrictions(tc.PublisherRestrictions), nonNilR(want.PublisherRestrictions))
	check("DisclosedVendors", optionalIDs(tc.DisclosedVendors), optionalWant(want.DisclosedVendors))
	check("AllowedVendors", optionalIDs(tc.AllowedVendors), optionalWant(want.AllowedVendors))
	switch {
	case (tc.PublisherTC == nil) != (want.PublisherTC == nil):
		diffs = append(diffs, fmt.Sprintf("PublisherTC: got %v, want %v", tc.PublisherTC, want.PublisherTC))
	case tc.PublisherTC != nil:
		p, w := tc.PublisherTC, want.PublisherTC
		check("PublisherTC.PurposesConsent", p.PurposesConsent.IDs(), nonNil(w.PurposesConsent))
		check("PublisherTC.PurposesLITransparency", p.PurposesLITransparency.IDs(), nonNil(w.PurposesLITransparency))
		check("PublisherTC.NumCustomPurposes", p.NumCustomPurposes, w.NumCustomPurposes)
		check("PublisherTC.CustomPurposesConsent", maskIDs(p.CustomPurposesConsent), nonNil(w.CustomPurposesConsent))
		check("PublisherTC.CustomPurposesLITransparency", maskIDs(p.CustomPurposesLITransparency), nonNil(w.CustomPurposesLITransparency))
	}
	return diffs
}

func nonNil(s []int) []int {
	if s == nil {
		return []int{}
	}
	return s
}

func nonNilR(s []oracleRestriction) []oracleRestriction {
	if s == nil {
		return []oracleRestriction{}
	}
	for i := range s {
		s[i].Vendors = nonNil(s[i].Vendors)
	}
	return s
}

func optionalIDs(s *VendorSet) []int {
	if s == nil {
		return nil
	}
	return nonNil(s.IDs())
}

func optionalWant(s *[]int) []int {
	if s == nil {
		return nil
	}
	return nonNil(*s)
}

// normRestrictions merges restrictions the way the reference keeps them:
// one vendor set per (purpose, type), empty sets dropped, sorted.
func normRestrictions(rs []Restriction) []oracleRestriction {
	type key struct{ purpose, typ int }
	sets := map[key]map[int]bool{}
	for _, r := range rs {
		k := key{r.Purpose, int(r.Type)}
		for _, id := range rangesIDs(r.Vendors) {
			if sets[k] == nil {
				sets[k] = map[int]bool{}
			}
			sets[k][id] = true
		}
	}
	out := []oracleRestriction{}
	for k, set := range sets {
		ids := make([]int, 0, len(set))
		for id := range set {
			ids = append(ids, id)
		}
		sort.Ints(ids)
		out = append(out, oracleRestriction{Purpose: k.purpose, Type: k.typ, Vendors: ids})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Purpose != out[j].Purpose {
			return out[i].Purpose < out[j].Purpose
		}
		return out[i].Type < out[j].Type
	})
	return out
}

// summaryFromWant computes the Summary from the reference's decoding: a
// third, independent derivation to hold Summarize and TCString.Summary to.
func summaryFromWant(w *oracleWant, vendors Vendors) Summary {
	s := Summary{
		CmpID:                  w.CmpID,
		PolicyVersion:          w.PolicyVersion,
		IsServiceSpecific:      w.IsServiceSpecific,
		PurposeOneTreatment:    w.PurposeOneTreatment,
		PurposesConsent:        PurposesOf(w.PurposesConsent...),
		PurposesLITransparency: PurposesOf(w.PurposesLITransparency...),
	}
	for _, id := range w.SpecialFeatureOptIns {
		s.SpecialFeatureOptIns |= 1 << (id - 1)
	}
	for p := Google; p <= LinkedIn; p++ {
		id := vendors.ID(p)
		if id == 0 {
			continue
		}
		v := VendorSummary{
			ID:                 id,
			Consent:            contains(w.VendorConsents, id),
			LegitimateInterest: contains(w.VendorLegitimateInterests, id),
		}
		for _, r := range w.PublisherRestrictions {
			if !contains(r.Vendors, id) {
				continue
			}
			switch RestrictionType(r.Type) {
			case NotAllowed:
				v.NotAllowed |= PurposesOf(r.Purpose)
			case RequireConsent:
				v.RequireConsent |= PurposesOf(r.Purpose)
			case RequireLI:
				v.RequireLI |= PurposesOf(r.Purpose)
			}
		}
		if v.Consent {
			v.ConsentPurposes = s.PurposesConsent &^ (v.NotAllowed | v.RequireLI)
		}
		if v.LegitimateInterest {
			v.LIPurposes = s.PurposesLITransparency &^ (v.NotAllowed | v.RequireConsent)
		}
		s.vendors[p.index()] = v
	}
	return s
}

// checkAgreement holds Parse, Summarize and TCString.Summary to each other
// for one string: same verdict, same error kind, same summary.
func checkAgreement(t *testing.T, s string, vendors Vendors) (*TCString, error) {
	t.Helper()
	tc, perr := Parse(s)
	sum, serr := Summarize([]byte(s), vendors)
	if (perr == nil) != (serr == nil) {
		t.Fatalf("%q: Parse error %v but Summarize error %v", s, perr, serr)
	}
	if perr != nil {
		var pe *Error
		if !errors.As(perr, &pe) || !errors.Is(perr, serr) {
			t.Fatalf("%q: Parse error %v (%T) does not wrap Summarize error %v", s, perr, perr, serr)
		}
		if msg := perr.Error(); strings.Contains(msg, "%!") || !strings.HasPrefix(msg, "tcf: ") {
			t.Fatalf("%q: badly formatted error %q", s, msg)
		}
		return nil, perr
	}
	if got := tc.Summary(vendors); got != sum {
		t.Fatalf("%q: Summarize = %+v\nTCString.Summary = %+v", s, sum, got)
	}
	return tc, nil
}

func requireOracle() bool {
	_, ci := os.LookupEnv("CI")
	return ci || os.Getenv("JOBPIXEL_REQUIRE_ORACLE") == "1"
}

// runOracle runs oracle.js, or skips (fails under CI or
// JOBPIXEL_REQUIRE_ORACLE=1) when node or its node_modules are missing.
func runOracle(t *testing.T, args ...string) []byte {
	t.Helper()
	missing := ""
	node, err := exec.LookPath("node")
	if err != nil {
		missing = "node is not on PATH"
	} else if _, err := os.Stat(filepath.Join(oracleDir, "node_modules", "@iabtcf", "core", "package.json")); err != nil {
		missing = "consent/" + oracleDir + "/node_modules is missing"
	}
	if missing != "" {
		msg := fmt.Sprintf("IAB reference oracle unavailable: %s; install it with `npm ci --prefix consent/%s`", missing, oracleDir)
		if requireOracle() {
			t.Fatal(msg + " (required because CI or JOBPIXEL_REQUIRE_ORACLE=1 is set)")
		}
		t.Skip(msg)
	}
	cmd := exec.Command(node, append([]string{"oracle.js"}, args...)...)
	cmd.Dir = oracleDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node oracle.js %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v >= 0 {
		return v
	}
	return def
}

func TestOracle(t *testing.T) {
	seed := envInt("JOBPIXEL_ORACLE_SEED", 1)
	count := envInt("JOBPIXEL_ORACLE_COUNT", 3000)
	if testing.Short() {
		count = min(count, 300)
	}
	out := runOracle(t, "gen", "--seed", strconv.Itoa(seed), "--count", strconv.Itoa(count), "--mutations", "1")

	var cases, mutants, mutantsBothAccept, mutantsBothReject, mutantsOnlyReference int
	var rangeSets, bitfieldSets, restricted, withDisclosed, withAllowed, withPublisherTC, googleConsent int
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var l oracleLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("bad oracle line: %v", err)
		}
		switch l.Kind {
		case "case":
			cases++
			vendors := Vendors{Meta: l.Probe[0], LinkedIn: l.Probe[1]}
			tc, err := checkAgreement(t, l.TC, vendors)
			if err != nil {
				t.Fatalf("case %d (seed %d): Parse(%q): %v", l.Index, seed, l.TC, err)
			}
			if d := diffTC(tc, l.Want); len(d) > 0 {
				t.Fatalf("case %d (seed %d): %q differs from @iabtcf/core:\n  %s", l.Index, seed, l.TC, strings.Join(d, "\n  "))
			}
			if got, want := tc.Summary(vendors), summaryFromWant(l.Want, vendors); got != want {
				t.Fatalf("case %d (seed %d): %q: summary %+v, from the reference %+v", l.Index, seed, l.TC, got, want)
			}
			for _, s := range []*VendorSet{&tc.VendorConsents, &tc.VendorLegitimateInterests, tc.DisclosedVendors, tc.AllowedVendors} {
				if s == nil {
					continue
				}
				if s.RangeEncoded {
					rangeSets++
				} else {
					bitfieldSets++
				}
			}
			if len(tc.PublisherRestrictions) > 0 {
				restricted++
			}
			if tc.DisclosedVendors != nil {
				withDisclosed++
			}
			if tc.AllowedVendors != nil {
				withAllowed++
			}
			if tc.PublisherTC != nil {
				withPublisherTC++
			}
			if tc.VendorConsents.Has(GoogleVendorID) {
				googleConsent++
			}
		case "mutant":
			mutants++
			tc, err := checkAgreement(t, l.TC, Vendors{Meta: 1, LinkedIn: 2})
			refOK := l.OK != nil && *l.OK
			switch {
			case err == nil && !refOK:
				t.Fatalf("mutant %q: Parse accepts it, @iabtcf/core rejects it (%s)", l.TC, l.Error)
			case err == nil:
				mutantsBothAccept++
				if d := diffTC(tc, l.Want); len(d) > 0 {
					t.Fatalf("mutant %q differs from @iabtcf/core:\n  %s", l.TC, strings.Join(d, "\n  "))
				}
			case refOK:
				mutantsOnlyReference++ // we are stricter than the reference: fine
			default:
				mutantsBothReject++
			}
		default:
			t.Fatalf("unknown oracle line kind %q", l.Kind)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cases != count {
		t.Fatalf("oracle produced %d cases, want %d", cases, count)
	}
	t.Logf("seed %d: %d generated cases identical to @iabtcf/core (vendor sets: %d range-encoded, %d bitfield; %d with publisher restrictions, %d disclosed-vendors, %d allowed-vendors, %d publisher-TC segments; %d with Google consent)",
		seed, cases, rangeSets, bitfieldSets, restricted, withDisclosed, withAllowed, withPublisherTC, googleConsent)
	t.Logf("%d corrupted strings: %d accepted by both with identical fields, %d rejected by both, %d rejected only by Parse (stricter)",
		mutants, mutantsBothAccept, mutantsBothReject, mutantsOnlyReference)
	if count >= 300 {
		// The generator must keep exercising every encoding path.
		for name, n := range map[string]int{"range-encoded sets": rangeSets, "bitfield sets": bitfieldSets,
			"restricted": restricted, "disclosed": withDisclosed, "allowed": withAllowed, "publisher TC": withPublisherTC, "google": googleConsent} {
			if n < count/50 {
				t.Errorf("only %d cases with %s out of %d: the generator lost coverage", n, name, count)
			}
		}
	}
}

type fixtureFile struct {
	Cases []struct {
		Name           string      `json:"name"`
		TC             string      `json:"tc"`
		OK             bool        `json:"ok"`
		ReferenceError string      `json:"referenceError"`
		Want           *oracleWant `json:"want"`
	} `json:"cases"`
}

// TestFixtures checks Parse against @iabtcf/core's decoding of public and
// real-world strings (testdata/fixtures.json; node is not needed).
func TestFixtures(t *testing.T) {
	raw, err := os.ReadFile("testdata/fixtures.json")
	if err != nil {
		t.Fatal(err)
	}
	var f fixtureFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) < 5 {
		t.Fatalf("only %d fixtures", len(f.Cases))
	}
	for _, c := range f.Cases {
		t.Run(c.Name, func(t *testing.T) {
			vendors := Vendors{Meta: 2, LinkedIn: 37}
			tc, err := checkAgreement(t, c.TC, vendors)
			if !c.OK {
				if err == nil {
					t.Fatalf("Parse accepted a string the reference rejects (%s)", c.ReferenceError)
				}
				t.Logf("rejected as expected: %v (reference: %s)", err, c.ReferenceError)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := diffTC(tc, c.Want); len(d) > 0 {
				t.Fatalf("differs from @iabtcf/core:\n  %s", strings.Join(d, "\n  "))
			}
			if got, want := tc.Summary(vendors), summaryFromWant(c.Want, vendors); got != want {
				t.Fatalf("summary %+v, from the reference %+v", got, want)
			}
		})
	}
}

// TestFixturesCurrent re-decodes the fixtures with the oracle, so that a
// change to fixtures.json or to the pinned @iabtcf/core cannot go unnoticed.
func TestFixturesCurrent(t *testing.T) {
	raw, err := os.ReadFile("testdata/fixtures.json")
	if err != nil {
		t.Fatal(err)
	}
	var f fixtureFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	args := []string{"decode"}
	for _, c := range f.Cases {
		args = append(args, c.TC)
	}
	out := runOracle(t, args...)
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if len(lines) != len(f.Cases) {
		t.Fatalf("oracle decoded %d strings, want %d", len(lines), len(f.Cases))
	}
	for i, c := range f.Cases {
		var l oracleLine
		if err := json.Unmarshal(lines[i], &l); err != nil {
			t.Fatal(err)
		}
		if ok := l.OK != nil && *l.OK; ok != c.OK || (ok && !reflect.DeepEqual(l.Want, c.Want)) {
			t.Errorf("fixture %s: fixtures.json is stale against @iabtcf/core", c.Name)
		}
	}
}
