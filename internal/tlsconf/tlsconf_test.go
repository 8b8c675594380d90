package tlsconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfig(t *testing.T) {
	if c, err := (Options{}).Config(); c != nil || err != nil {
		t.Fatalf("zero Options = %v, %v; want no TLS", c, err)
	}
	c, err := Options{Enable: true, ServerName: "ch.example"}.Config()
	if err != nil || c == nil || c.RootCAs != nil || c.ServerName != "ch.example" || c.InsecureSkipVerify {
		t.Fatalf("system roots: %+v, %v", c, err)
	}
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{CAFile: filepath.Join(dir, "missing.pem")}, "read CA file"},
		{Options{CAFile: junk}, "holds no PEM certificate"},
		{Options{CertFile: junk}, "both the certificate and the key"},
		{Options{KeyFile: junk}, "both the certificate and the key"},
		{Options{CertFile: junk, KeyFile: junk}, "client certificate"},
	} {
		if _, err := tc.o.Config(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.o, err, tc.want)
		}
	}
}
