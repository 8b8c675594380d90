package systemtest

import (
	"bytes"
	"context"
	"fmt"
	"github.com/jobpixel/jobpixel/app"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/jobpixel/jobpixel/anonymize"
	"github.com/jobpixel/jobpixel/internal/store"
)

// visitorSecrets are the personal values one test visitor sends.
type visitorSecrets struct {
	ip      netip.Addr
	email   string
	fbp     string
	gclid   string
	liFatID string
	consent string // query parameters carrying the consent signals
	ads     bool   // whether those signals allow ads
}

func (v visitorSecrets) needles() [][]byte {
	ip16 := v.ip.As16()
	emailHash, _ := anonymize.EmailMeta(nil, []byte(v.email))
	return [][]byte{[]byte(v.ip.String()), ip16[:], []byte(v.email), []byte(v.fbp), []byte(v.gclid), []byte(v.liFatID), emailHash}
}

// TestNothingLeaksWithoutConsent sends hits with mixed consent and then
// scans the Kafka topic and every ClickHouse table: a visitor's full IP,
// e-mail (plain or hashed), cookie value and click ids appear in Kafka only
// when that visitor allowed ads, never a plain e-mail anywhere, and never a
// full IP in ClickHouse.
func TestNothingLeaksWithoutConsent(t *testing.T) {
	// The day the test starts: no salt of an earlier day may be kept (one
	// of this day stays even if the test runs past midnight).
	startDay := time.Now().UTC().Truncate(24 * time.Hour)
	var cfg app.Config
	a := startApp(t, func(c *app.Config) { cfg = *c })
	brokers := strings.Split(cfg.KafkaBrokers, ",")
	ctx := context.Background()
	st := a.Store()
	client, _, _ := st.CreateClient(ctx, "Acme")
	camp, _ := st.CreateCampaign(ctx, client.ID, "Privacy", store.CampaignOptions{})
	if err := a.RefreshCampaigns(ctx); err != nil {
		t.Fatal(err)
	}
	consents := []struct {
		q   string
		gpc bool
		ads bool
	}{
		{"", false, false},
		{"gcs=G100&ad_user_data=denied", false, false},
		{"gdpr=1", false, false},                                         // GDPR applies, no TC string
		{"gdpr=1&gdpr_consent=garbage", false, false},                    // malformed TC string
		{"ad_user_data=granted&ad_personalization=granted", true, false}, // GPC wins
		{"ad_user_data=granted&ad_personalization=granted&ad_storage=granted", false, true},
	}
	var visitors []visitorSecrets
	for i := 0; i < 24; i++ {
		c := consents[i%len(consents)]
		ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)})
		if i%2 == 1 {
			ip = netip.MustParseAddr(fmt.Sprintf("2001:db8:77:%x::%x", i, 1000+i))
		}
		v := visitorSecrets{ip: ip, email: fmt.Sprintf("person.%d.zq@example.org", i),
			fbp: fmt.Sprintf("fb.1.1700000000000.%d77123", i), gclid: fmt.Sprintf("Cj0KCQgclid%dXYZ", i),
			liFatID: fmt.Sprintf("lifat-%d-9f8e7d", i), consent: c.q, ads: c.ads}
		visitors = append(visitors, v)
		q := url.Values{"c": {camp.ID}, "e": {"vacancy_email"}, "em": {v.email}, "fbp": {v.fbp},
			"li_fat_id": {v.liFatID}, "u": {"https://jobs.example.com/x?gclid=" + v.gclid + "&utm_source=ads"}}
		req, _ := http.NewRequest("GET", "http://"+a.IngestAddr()+"/p.gif?"+q.Encode()+"&"+c.q, nil)
		req.Header.Set("X-Forwarded-For", ip.String())
		req.Header.Set("User-Agent", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15")
		if c.gpc {
			req.Header.Set("Sec-GPC", "1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if r := resp.Header.Get("X-Jobpixel-Reject"); r != "" {
			t.Fatalf("visitor %d rejected: %s", i, r)
		}
	}
	// Wait until every hit is stored.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n []struct {
			N uint64 `ch:"n"`
		}
		if err := st.Conn().Select(ctx, &n, "SELECT count() AS n FROM events"); err != nil {
			t.Fatal(err)
		}
		if n[0].N == uint64(len(visitors)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d hits stored", n[0].N, len(visitors))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Kafka: read the whole topic, each partition up to its end offset
	// (every hit is stored, so every message is in the topic by now).
	var topic [][]byte
	for p := 0; p < cfg.KafkaPartitions; p++ {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		conn, err := kafka.DialLeader(dctx, "tcp", brokers[0], cfg.KafkaTopic, p)
		cancel()
		if err != nil {
			t.Fatalf("partition %d: %v", p, err)
		}
		first, last, err := conn.ReadOffsets()
		conn.Close()
		if err != nil {
			t.Fatalf("partition %d offsets: %v", p, err)
		}
		if first == last {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: cfg.KafkaTopic, Partition: p, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(first); err != nil {
			t.Fatal(err)
		}
		for next := first; next < last; {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			m, err := r.ReadMessage(rctx)
			cancel()
			if err != nil {
				t.Fatalf("partition %d: reading offset %d of [%d, %d): %v", p, next, first, last, err)
			}
			topic = append(topic, append(append([]byte{}, m.Key...), m.Value...))
			next = m.Offset + 1
		}
		r.Close()
	}
	if len(topic) != len(visitors) {
		t.Fatalf("read %d messages from Kafka, want %d", len(topic), len(visitors))
	}
	allowedSeen := 0
	for i, v := range visitors {
		for j, needle := range v.needles() {
			found := false
			for _, m := range topic {
				if bytes.Contains(m, needle) {
					found = true
				}
			}
			plainEmail := j == 2
			switch {
			case found && plainEmail:
				t.Errorf("visitor %d: plain e-mail in Kafka", i)
			case found && !v.ads:
				t.Errorf("visitor %d (consent %q): personal value #%d %q in Kafka without ad consent", i, v.consent, j, needle)
			case found:
				allowedSeen++
			}
		}
	}
	if allowedSeen == 0 {
		t.Error("no consented identifier reached Kafka: the test cannot tell leaks from nothing")
	}

	// ClickHouse: every column of every table, as text and as raw bytes.
	dump := dumpDatabase(t, st)
	for i, v := range visitors {
		for j, needle := range v.needles() {
			if j >= 3 && v.ads {
				continue // cookie values and click ids may be stored (URL) with ad consent
			}
			if j == 6 && v.ads {
				continue
			}
			if bytes.Contains(dump, needle) {
				t.Errorf("visitor %d (consent %q): personal value #%d %q stored in ClickHouse", i, v.consent, j, needle)
			}
		}
	}
	// The only salts kept are today's (and tomorrow's, fetched ahead).
	var days []struct {
		Day time.Time `ch:"day"`
	}
	if err := st.Conn().Select(ctx, &days, "SELECT day FROM salts"); err != nil {
		t.Fatal(err)
	}
	for _, d := range days {
		if d.Day.Before(startDay) {
			t.Errorf("salt of %s still stored", d.Day.Format(time.DateOnly))
		}
	}
}

// dumpDatabase returns every value of every table of the test database.
func dumpDatabase(t *testing.T, st *store.Store) []byte {
	t.Helper()
	ctx := context.Background()
	var tables []struct {
		Name string `ch:"name"`
	}
	if err := st.Conn().Select(ctx, &tables, "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine NOT LIKE '%View'"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, tb := range tables {
		var cols []struct {
			Name string `ch:"name"`
			Type string `ch:"type"`
		}
		if err := st.Conn().Select(ctx, &cols, "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = ?", tb.Name); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range cols {
			if strings.HasPrefix(c.Type, "AggregateFunction") {
				names = append(names, "hex(toString("+c.Name+"))") // the state's bytes
				continue
			}
			names = append(names, c.Name)
		}
		rows, err := st.Conn().Query(ctx, "SELECT "+strings.Join(names, ", ")+" FROM "+tb.Name)
		if err != nil {
			t.Fatalf("dump %s: %v", tb.Name, err)
		}
		types := rows.ColumnTypes()
		for rows.Next() {
			vals := make([]any, len(types))
			for i, ct := range types {
				vals[i] = reflect.New(ct.ScanType()).Interface()
			}
			if err := rows.Scan(vals...); err != nil {
				t.Fatalf("dump %s: %v", tb.Name, err)
			}
			for _, v := range vals {
				fmt.Fprintf(&out, "%s\x00", reflect.ValueOf(v).Elem().Interface())
			}
		}
		rows.Close()
		out.WriteString(strings.Repeat("\x00", 4))
	}
	return out.Bytes()
}
