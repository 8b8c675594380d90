package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jobpixel/jobpixel/anonymize"
)

// Salt returns the salt of the UTC day containing day, creating a random one
// if none exists. Concurrent callers converge on the row with the smallest
// (created, salt).
func (s *Store) Salt(ctx context.Context, day time.Time) ([32]byte, error) {
	day = utcDay(day)
	var out [32]byte
	read := func() (bool, error) {
		var rows []struct {
			Salt string `ch:"salt"`
		}
		err := s.conn.Select(ctx, &rows, `SELECT salt FROM salts WHERE day = toDate(?) ORDER BY created, salt LIMIT 1`, day.Format(time.DateOnly))
		if err != nil || len(rows) == 0 {
			return false, err
		}
		copy(out[:], rows[0].Salt)
		return true, nil
	}
	ok, err := read()
	if err != nil {
		return out, fmt.Errorf("store: read salt: %w", err)
	}
	if ok {
		return out, nil
	}
	fresh := anonymize.NewSalt()
	if err := s.insertOne(ctx, "INSERT INTO salts (day, salt, created)", day, string(fresh[:]), uint64(time.Now().UnixNano())); err != nil {
		return out, fmt.Errorf("store: insert salt: %w", err)
	}
	if ok, err = read(); err != nil || !ok {
		return out, fmt.Errorf("store: read salt after insert: %v", err)
	}
	return out, nil
}

// DropSaltsBefore destroys the salts of every day before day (UTC), by
// dropping their partitions. It returns the days dropped.
func (s *Store) DropSaltsBefore(ctx context.Context, day time.Time) ([]string, error) {
	day = utcDay(day)
	var parts []struct {
		Partition string `ch:"partition"`
	}
	err := s.conn.Select(ctx, &parts, `SELECT DISTINCT partition FROM system.parts
		WHERE database = ? AND table = 'salts' AND active AND partition < ?`, s.db, day.Format("20060102"))
	if err != nil {
		return nil, fmt.Errorf("store: list salt partitions: %w", err)
	}
	var dropped []string
	for _, p := range parts {
		if err := s.conn.Exec(ctx, "ALTER TABLE salts DROP PARTITION "+p.Partition); err != nil {
			return dropped, fmt.Errorf("store: drop salt partition %s: %w", p.Partition, err)
		}
		dropped = append(dropped, p.Partition)
	}
	return dropped, nil
}
