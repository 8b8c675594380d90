package schemas

import (
	"bytes"
	"reflect"
	"testing"
)

func sample() Hit {
	h := Hit{
		Flags: FlagBot | FlagFullIP, ReceivedMs: 1764000000123, Event: EventApplication, Consent: 0xdeadbeef,
		Country: [2]byte{'N', 'L'}, Browser: 1, OS: 2, Device: 3,
		Campaign: []byte("cmp_1"), Client: []byte("cl_1"), ClientEventID: []byte("e1"), Vacancy: []byte("job-9"),
		URL: []byte("https://jobs.example.com/?utm_source=x"), Referrer: []byte("https://google.com/"),
		UserAgent: []byte("Mozilla/5.0"), Region: []byte("NL-NH"), UTMSource: []byte("x"), UTMMedium: []byte("m"),
		UTMCampaign: []byte("c"), UTMTerm: []byte("t"), UTMContent: []byte("co"), Gclid: []byte("g"),
		Gbraid: []byte("gb"), Wbraid: []byte("wb"), Fbc: []byte("fb.1.1.abc"), Fbp: []byte("fb.1.1.2"),
		LiFatID: []byte("li"), EmailMeta: bytes.Repeat([]byte("a"), 64), EmailGoogle: bytes.Repeat([]byte("b"), 64),
	}
	for i := range h.ID {
		h.ID[i] = byte(i)
		h.Visitor[i] = byte(100 + i)
		h.IP[i] = byte(200 + i)
	}
	return h
}

func TestRoundTrip(t *testing.T) {
	h := sample()
	b := h.Append(nil)
	var got Hit
	if err := got.Decode(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h, got) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, h)
	}
	// Empty fields decode as empty.
	var z, zd Hit
	if err := zd.Decode(z.Append(nil)); err != nil {
		t.Fatal(err)
	}
	if len(zd.Campaign) != 0 || zd.Event != EventUnknown {
		t.Fatalf("zero hit decoded as %+v", zd)
	}
}

// A newer writer appends fields; this version must still decode the record.
func TestDecodeNewerVersion(t *testing.T) {
	h := sample()
	b := h.Append(nil)
	b[0] = WireVersion + 1
	b = append(b, 0x05, 'x', 'y', 'z', 'z', 'y')
	var got Hit
	if err := got.Decode(b); err != nil {
		t.Fatalf("newer version: %v", err)
	}
	if string(got.EmailGoogle) != string(h.EmailGoogle) {
		t.Fatalf("fields shifted")
	}
}

func TestDecodeTruncated(t *testing.T) {
	s := sample()
	b := s.Append(nil)
	for n := 0; n < len(b); n++ {
		var h Hit
		if err := h.Decode(b[:n]); err == nil {
			t.Fatalf("decode of %d/%d bytes succeeded", n, len(b))
		}
	}
	var h Hit
	if err := h.Decode([]byte{0}); err == nil {
		t.Fatal("version 0 accepted")
	}
}

func TestAppendAllocs(t *testing.T) {
	h := sample()
	buf := make([]byte, 0, 2048)
	if n := testing.AllocsPerRun(1000, func() { buf = h.Append(buf[:0]) }); n != 0 {
		t.Fatalf("Append allocates %.1f times, want 0", n)
	}
	var d Hit
	if n := testing.AllocsPerRun(1000, func() { _ = d.Decode(buf) }); n != 0 {
		t.Fatalf("Decode allocates %.1f times, want 0", n)
	}
}

func TestParseEvent(t *testing.T) {
	for e := EventPageView; e <= EventVacancyEmail; e++ {
		if ParseEvent([]byte(e.String())) != e {
			t.Errorf("%v does not round-trip", e)
		}
	}
	if ParseEvent([]byte("Page_View")) != EventUnknown || ParseEvent(nil) != EventUnknown {
		t.Error("unknown names must give EventUnknown")
	}
}

func FuzzDecode(f *testing.F) {
	s := sample()
	f.Add(s.Append(nil))
	var z Hit
	f.Add(z.Append(nil))
	f.Add([]byte{1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Hit
		if err := h.Decode(b); err != nil {
			return
		}
		// A record that decodes re-encodes to a record that decodes to the same hit.
		b2 := h.Append(nil)
		var h2 Hit
		if err := h2.Decode(b2); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(normal(h), normal(h2)) {
			t.Fatalf("re-encode changed the hit")
		}
	})
}

// normal maps nil and empty slices to nil for comparison.
func normal(h Hit) Hit {
	for _, f := range h.strings() {
		if len(*f) == 0 {
			*f = nil
		}
	}
	return h
}

func BenchmarkAppend(b *testing.B) {
	h := sample()
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		buf = h.Append(buf[:0])
	}
}

func TestMigrations(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 2 || ms[0].Version != 1 {
		t.Fatalf("migrations = %+v", ms)
	}
	for _, m := range ms {
		for _, s := range m.Statements {
			if bytes.Contains([]byte(s), []byte(" TTL ")) {
				t.Errorf("migration %d uses TTL, which ClickHouse 18.16 lacks", m.Version)
			}
		}
	}
}

func TestClientEventKey(t *testing.T) {
	a := ClientEventKey([]byte("cmp_1"), []byte("eid-1"))
	if a != ClientEventKey([]byte("cmp_1"), []byte("eid-1")) {
		t.Fatal("not deterministic")
	}
	for _, other := range [][2]string{{"cmp_2", "eid-1"}, {"cmp_1", "eid-2"}, {"cmp_1e", "id-1"}, {"cmp_", "1eid-1"}} {
		if ClientEventKey([]byte(other[0]), []byte(other[1])) == a {
			t.Errorf("%q collides with cmp_1/eid-1", other)
		}
	}
	long := make([]byte, MaxClientEventIDLen)
	if n := testing.AllocsPerRun(100, func() { ClientEventKey([]byte("cmp_1"), long) }); n != 0 {
		t.Errorf("allocates %v times", n)
	}
}
