// Command chdbexec runs SQL statements on a current ClickHouse engine, chDB's
// embedded libchdb.so, for the tests that check every statement jobpixel
// sends also runs there (see internal/testenv.CurrentEngine). It is a child
// process of its own because chdb-go loads the library when the program
// starts and panics without it: a test binary that linked it could not run
// on a machine without the engine.
//
// Usage: CHDB_LIB_PATH=…/libchdb.so chdbexec -path DIR < statements
//
// Standard input holds one JSON object per line, {"db": "…", "sql": "…"}
// (testenv.Statement; testenv.Outcome reads the answers);
// each statement runs in database db ("" for default) of one session whose
// data lives under DIR, in input order, with mutations_sync=1 so a mutation
// is done when its statement returns. Standard output gets one JSON line
// {"version": "…"} and then one {"rows": N, "error": "…"} per statement,
// rows being the rows it returned. A statement that fails does not stop the
// others.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	chdb "github.com/chdb-io/chdb-go/chdb-purego"
)

type statement struct {
	DB  string `json:"db"`
	SQL string `json:"sql"`
}

type outcome struct {
	Rows  int    `json:"rows"`
	Error string `json:"error,omitempty"`
}

func main() {
	path := flag.String("path", "", "directory of the session's data (required)")
	flag.Parse()
	if err := run(*path); err != nil {
		fmt.Fprintln(os.Stderr, "chdbexec:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	if path == "" {
		return fmt.Errorf("-path is required")
	}
	// Every statement is read before the session opens: chDB reads from a
	// piped stdin itself, and input longer than the 64 KiB pipe buffer lost
	// bytes of a statement when read while it ran.
	var stmts []statement
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for in.Scan() {
		var st statement
		if err := json.Unmarshal(in.Bytes(), &st); err != nil {
			return fmt.Errorf("read statement %d: %w", len(stmts)+1, err)
		}
		stmts = append(stmts, st)
	}
	if err := in.Err(); err != nil {
		return fmt.Errorf("read statements: %w", err)
	}
	conn, err := chdb.NewConnectionFromConnString("file:" + path + "?mutations_sync=1")
	if err != nil {
		return fmt.Errorf("open session in %s: %w", path, err)
	}
	defer conn.Close()
	out := json.NewEncoder(os.Stdout)
	version, err := query(conn, "SELECT version()")
	if err != nil {
		return fmt.Errorf("version: %w", err)
	}
	if err := out.Encode(map[string]string{"version": strings.TrimSpace(version)}); err != nil {
		return err
	}
	current := ""
	for _, st := range stmts {
		var o outcome
		db := st.DB
		if db == "" {
			db = "default"
		}
		if db != current {
			if _, err := query(conn, "USE "+db); err != nil {
				o.Error = fmt.Sprintf("use %s: %v", db, err)
			} else {
				current = db
			}
		}
		if o.Error == "" {
			res, err := query(conn, st.SQL)
			if err != nil {
				o.Error = err.Error()
			}
			o.Rows = strings.Count(res, "\n")
		}
		if err := out.Encode(o); err != nil {
			return err
		}
	}
	return nil
}

// query runs sql and returns its result as TabSeparated text (one line a
// row, newlines inside values escaped).
func query(conn chdb.ChdbConn, sql string) (string, error) {
	res, err := conn.Query(sql, "TabSeparated")
	if err != nil {
		return "", err
	}
	defer res.Free()
	if err := res.Error(); err != nil {
		return "", err
	}
	return res.String(), nil
}
