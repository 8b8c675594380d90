package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/internal/testenv"
	"github.com/jobpixel/jobpixel/internal/tlsconf"
)

// TestOpenTLS connects to a ClickHouse 18.16 server of the test's own on
// its secure native port, with a CA and certificate the test made and a
// password: the right CA and password open and migrate the database; a CA
// that did not sign the server's certificate, a wrong password, and plain
// text to the secure port each fail at Open with an error that says so.
func TestOpenTLS(t *testing.T) {
	certs := testenv.MakeCerts(t)
	srv := testenv.StartServer(t, testenv.ServerOptions{Certs: &certs, Password: "s3cret-pw"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tc, err := tlsconf.Options{CAFile: certs.CA}.Config()
	if err != nil {
		t.Fatal(err)
	}
	open := func(cfg store.Config) (*store.Store, error) {
		cfg.Database = "tls_test"
		cfg.DialTimeout = 3 * time.Second
		return store.Open(ctx, cfg)
	}
	st, err := open(store.Config{Addr: srv.SecureAddr, User: "default", Password: "s3cret-pw", TLS: tc})
	if err != nil {
		t.Fatalf("open over TLS: %v", err)
	}
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate over TLS: %v", err)
	}
	st.Close()

	other, err := tlsconf.Options{CAFile: testenv.MakeCerts(t).CA}.Config()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  store.Config
		want string
	}{
		{"unknown CA", store.Config{Addr: srv.SecureAddr, Password: "s3cret-pw", TLS: other}, "certificate"},
		{"wrong password", store.Config{Addr: srv.SecureAddr, Password: "guess", TLS: tc}, "password"},
		{"plain text to the secure port", store.Config{Addr: srv.SecureAddr, Password: "s3cret-pw"}, "store: "},
	} {
		st, err := open(c.cfg)
		if err == nil {
			st.Close()
			t.Errorf("%s: Open succeeded", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not contain %q", c.name, err, c.want)
		}
		t.Logf("%s: %v", c.name, err)
	}
}
