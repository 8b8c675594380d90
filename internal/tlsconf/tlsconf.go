// Package tlsconf builds the client TLS configuration jobpixel uses towards
// its managed services (ClickHouse's secure native port, Kafka) from file
// paths given as flags. It is the one place where certificates are loaded,
// so every client fails the same way, at start, with the file named.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Options name the PEM files and the server name of one TLS client. The
// zero value means no TLS.
type Options struct {
	// Enable turns TLS on; it is implied by any other field being set.
	Enable bool
	// CAFile holds the certificates that may sign the server's certificate;
	// empty trusts the system's roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and its key, for
	// servers that require one; both or neither.
	CertFile, KeyFile string
	// ServerName is checked against the server's certificate; empty uses
	// the host of the address dialled.
	ServerName string
}

// Enabled reports whether o asks for TLS.
func (o Options) Enabled() bool {
	return o.Enable || o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" || o.ServerName != ""
}

// Config returns the client configuration o describes, or nil when o asks
// for no TLS. It verifies the server's certificate always (there is no
// option to skip that) and requires TLS 1.2 or later.
func (o Options) Config() (*tls.Config, error) {
	if !o.Enabled() {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: CA file %s holds no PEM certificate", o.CAFile)
		}
		c.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("tls: a client certificate needs both the certificate and the key file")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
