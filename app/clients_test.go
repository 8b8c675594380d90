package app

import (
	"context"
	"strings"
	"testing"

	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/internal/testenv"
)

func TestClientsCommand(t *testing.T) {
	db := testenv.Database(t)
	ctx := context.Background()
	var out strings.Builder
	args := []string{"-clickhouse.addr", testenv.ClickHouseAddr(t), "-clickhouse.database", db}
	if err := Clients(ctx, append([]string{"create", "-name", "Acme"}, args...), &out); err != nil {
		t.Fatal(err)
	}
	var id, token string
	for _, line := range strings.Split(out.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "client "); ok {
			id = strings.Fields(v)[0]
		}
		if v, ok := strings.CutPrefix(line, "token "); ok {
			token = v
		}
	}
	st, err := store.Open(ctx, store.Config{Addr: testenv.ClickHouseAddr(t), Database: db})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if c, err := st.ClientByToken(ctx, token); err != nil || c.ID != id {
		t.Fatalf("printed token does not authenticate %s: %v", id, err)
	}
	if err := Clients(ctx, append([]string{"end", "-id", id}, args...), &out); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClientByToken(ctx, token); err == nil {
		t.Fatal("ended client's token still works")
	}
	if err := Clients(ctx, append([]string{"end", "-id", "cl_nope"}, args...), &out); err == nil {
		t.Fatal("ending an unknown client succeeded")
	}
	if err := Clients(ctx, append([]string{"create"}, args...), &out); err == nil {
		t.Fatal("create without a name succeeded")
	}
}
