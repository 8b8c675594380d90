package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/user"

	"github.com/jobpixel/jobpixel/internal/store"
)

// Clients runs the operator commands on client accounts:
//
//	jobpixel clients create -name NAME   create a client, print its id and API token
//	jobpixel clients end -id ID           end a client (its visitor data is purged two months later)
//
// They need ClickHouse access (the -clickhouse.* flags), which only
// operators have; every action is written to the audit log.
func Clients(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("clients: want a subcommand: create or end")
	}
	sub, args := args[0], args[1:]
	var cfg Config
	fs := flag.NewFlagSet("jobpixel clients "+sub, flag.ContinueOnError)
	cfg.Register(fs)
	name := fs.String("name", "", "client name (create)")
	id := fs.String("id", "", "client id (end)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := cfg.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		return err
	}
	actor := "operator"
	if u, err := user.Current(); err == nil {
		actor = "operator:" + u.Username
	}
	switch sub {
	case "create":
		if *name == "" {
			return errors.New("clients create: -name is required")
		}
		c, token, err := st.CreateClient(ctx, *name)
		if err != nil {
			return err
		}
		if err := st.Audit(ctx, actor, "create_client", c.ID, "", ""); err != nil {
			return err
		}
		fmt.Fprintf(out, "client %s created\ntoken %s\n(the token is shown once; only its hash is stored)\n", c.ID, token)
	case "end":
		if *id == "" {
			return errors.New("clients end: -id is required")
		}
		if err := st.EndClient(ctx, actor, *id); err != nil {
			return fmt.Errorf("clients end %s: %w", *id, err)
		}
		fmt.Fprintf(out, "client %s ended: its campaigns stop being tracked now; its visitor data is purged after %s\n", *id, store.ProcessorGrace)
	default:
		return fmt.Errorf("clients: unknown subcommand %q (want create or end)", sub)
	}
	return nil
}
