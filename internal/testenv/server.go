package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// ServerOptions configure a private ClickHouse server (StartServer).
type ServerOptions struct {
	// Certs, when set, opens the secure native port with Certs.Cert and
	// Certs.Key.
	Certs *Certs
	// Password, when set, is the default user's password (stored as its
	// SHA-256); empty leaves the user without one.
	Password string
}

// Server is a private ClickHouse server of one test.
type Server struct {
	Addr       string // plain native protocol
	SecureAddr string // TLS native protocol; "" without ServerOptions.Certs
}

// StartServer starts a ClickHouse server of its own for the test, on free
// loopback ports with its data in a temporary directory, and stops it when
// the test ends. It is for tests of how jobpixel connects (TLS, passwords);
// tests of what jobpixel stores use the shared server (ClickHouseAddr). The
// test fails when clickhouse-server is missing under CI and skips
// otherwise (`make test` installs it).
func StartServer(t testing.TB, o ServerOptions) Server {
	t.Helper()
	bin, err := exec.LookPath("clickhouse-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("clickhouse-server not installed (make test installs it)")
		}
		t.Skip("clickhouse-server not installed")
	}
	dir := t.TempDir()
	ports := freePorts(t, 3)
	var srv Server
	srv.Addr = "127.0.0.1:" + strconv.Itoa(ports[0])
	secure := ""
	if o.Certs != nil {
		srv.SecureAddr = "127.0.0.1:" + strconv.Itoa(ports[2])
		secure = fmt.Sprintf(`<tcp_port_secure>%d</tcp_port_secure>
    <openSSL><server><certificateFile>%s</certificateFile><privateKeyFile>%s</privateKeyFile><verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile><cacheSessions>true</cacheSessions><disableProtocols>sslv2,sslv3</disableProtocols><preferServerCiphers>true</preferServerCiphers></server></openSSL>`,
			ports[2], o.Certs.Cert, o.Certs.Key)
	}
	config := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>%[1]s/server.log</log><errorlog>%[1]s/error.log</errorlog><size>10M</size><count>1</count></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>%[2]d</tcp_port>
    <http_port>%[3]d</http_port>
    %[4]s
    <mark_cache_size>67108864</mark_cache_size>
    <path>%[1]s/data/</path>
    <tmp_path>%[1]s/tmp/</tmp_path>
    <user_files_path>%[1]s/user_files/</user_files_path>
    <users_config>%[1]s/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
`, dir, ports[0], ports[1], secure)
	password := "<password></password>"
	if o.Password != "" {
		sum := sha256.Sum256([]byte(o.Password))
		password = "<password_sha256_hex>" + hex.EncodeToString(sum[:]) + "</password_sha256_hex>"
	}
	users := `<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>1000000000</max_memory_usage></default></profiles>
    <users><default>` + password + `<networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`
	for name, body := range map[string]string{"config.xml": config, "users.xml": users} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "--config-file="+filepath.Join(dir, "config.xml"))
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatalf("start clickhouse-server: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	ping := fmt.Sprintf("http://127.0.0.1:%d/ping", ports[1])
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if resp, err := client.Get(ping); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return srv
			}
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("clickhouse-server exited: %v\n%s", err, log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("clickhouse-server did not answer on %s in 30 s\n%s", ping, log)
		}
	}
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
