package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func open(t testing.TB, dir string, mod func(*Options)) (*Spool, *[]Corruption) {
	t.Helper()
	var mu sync.Mutex
	var bad []Corruption
	o := Options{Dir: dir, OnCorrupt: func(c Corruption) { mu.Lock(); bad = append(bad, c); mu.Unlock() }}
	if mod != nil {
		mod(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return s, &bad
}

// crash abandons s as a killed process would: no sync, no close, lock gone.
func crash(s *Spool) {
	s.mu.Lock()
	s.closed = true
	close(s.stopSync)
	if s.w != nil {
		s.w.Close()
	}
	s.mu.Unlock()
	unlockDir(s.lock)
}

func rec(i int) []byte {
	b := fmt.Appendf(nil, "record-%06d-", i)
	return append(b, bytes.Repeat([]byte{byte(i)}, i%300)...)
}

// drain consumes everything, batch by batch, committing each.
func drain(t testing.TB, s *Spool, maxRecords, maxBytes int) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		b, err := s.Peek(maxRecords, maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Records) == 0 {
			return out
		}
		out = append(out, b.Records...)
		if err := s.Commit(b); err != nil {
			t.Fatal(err)
		}
	}
}

func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func wantRecords(t testing.TB, got [][]byte, want func(i int) []byte, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Fatalf("got %d records, want %d", len(got), to-from)
	}
	for i, g := range got {
		if !bytes.Equal(g, want(from+i)) {
			t.Fatalf("record %d = %.40q, want %.40q", i, g, want(from+i))
		}
	}
}

func TestAppendPeekCommit(t *testing.T) {
	dir := t.TempDir()
	s, bad := open(t, dir, func(o *Options) { o.SegmentBytes = 8 << 10 })
	defer s.Close()
	if !s.Empty() {
		t.Fatal("new spool not empty")
	}
	const n = 2000
	for i := 0; i < n; i += 10 {
		var batch [][]byte
		for j := i; j < i+10; j++ {
			batch = append(batch, rec(j))
		}
		if err := s.Append(batch...); err != nil {
			t.Fatal(err)
		}
	}
	if len(segFiles(t, dir)) < 10 {
		t.Fatalf("expected many segments of 8 KiB, got %d", len(segFiles(t, dir)))
	}
	// Peek without commit returns the same records.
	b1, _ := s.Peek(37, 1<<20)
	b2, _ := s.Peek(37, 1<<20)
	if len(b1.Records) != 37 || len(b2.Records) != 37 || !bytes.Equal(b1.Records[36], b2.Records[36]) {
		t.Fatalf("peek not repeatable: %d %d", len(b1.Records), len(b2.Records))
	}
	got := drain(t, s, 37, 4<<10)
	wantRecords(t, got, rec, 0, n)
	if !s.Empty() || s.Pending() != 0 || s.Bytes() != 0 {
		t.Fatalf("after drain: empty=%v pending=%d bytes=%d", s.Empty(), s.Pending(), s.Bytes())
	}
	if f := segFiles(t, dir); len(f) != 0 {
		t.Fatalf("segments left after drain: %v", f)
	}
	if len(*bad) != 0 {
		t.Fatalf("corruption reported: %v", *bad)
	}
	// Appends after a full drain work.
	if err := s.Append(rec(1), rec(2)); err != nil {
		t.Fatal(err)
	}
	wantRecords(t, drain(t, s, 10, 1<<20), rec, 1, 3)
}

func TestByteBudget(t *testing.T) {
	s, _ := open(t, t.TempDir(), nil)
	defer s.Close()
	big := bytes.Repeat([]byte("x"), 200<<10)
	for i := 0; i < 5; i++ {
		if err := s.Append(big); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := s.Peek(100, 100)
	if len(b.Records) != 1 {
		t.Fatalf("a record over the byte budget: got %d records, want exactly 1", len(b.Records))
	}
	b, _ = s.Peek(100, 450<<10)
	if len(b.Records) != 3 {
		t.Fatalf("got %d records for a 450 KiB budget, want 3 (the last one crosses it)", len(b.Records))
	}
}

func TestReopenAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, func(o *Options) { o.SegmentBytes = 4 << 10 })
	for i := 0; i < 500; i++ {
		if err := s.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Consume 123, read (but do not commit) 50 more, then die.
	b, _ := s.Peek(123, 1<<30)
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	s.Peek(50, 1<<30)
	crash(s)

	s, bad := open(t, dir, func(o *Options) { o.SegmentBytes = 4 << 10 })
	if s.Empty() {
		t.Fatal("reopened spool is empty")
	}
	for i := 500; i < 600; i++ {
		if err := s.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	wantRecords(t, drain(t, s, 64, 1<<20), rec, 123, 600)
	if len(*bad) != 0 {
		t.Fatalf("corruption reported after a clean crash: %v", *bad)
	}
	s.Close()
	s, _ = open(t, dir, nil)
	defer s.Close()
	if !s.Empty() {
		t.Fatal("drained spool not empty after reopen")
	}
}

func TestFull(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, func(o *Options) { o.MaxBytes = 64 << 10; o.SegmentBytes = 16 << 10 })
	defer s.Close()
	rec := bytes.Repeat([]byte("y"), 1000)
	n := 0
	for ; ; n++ {
		err := s.Append(rec)
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if s.Bytes() > 64<<10 {
		t.Fatalf("spool holds %d bytes, over its 64 KiB cap", s.Bytes())
	}
	if n < 55 {
		t.Fatalf("only %d KB records fit in 64 KiB", n)
	}
	// Consuming frees whole segments, so appends succeed again.
	b, _ := s.Peek(20, 1<<20)
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(rec); err != nil {
		t.Fatalf("append after consuming: %v", err)
	}
	if got := len(drain(t, s, 1000, 1<<30)); got != n-20+1 {
		t.Fatalf("drained %d records, want %d", got, n-20+1)
	}
}

func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, nil)
	for i := 0; i < 100; i++ {
		if err := s.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	crash(s)
	files := segFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("segments: %v", files)
	}
	fi, _ := os.Stat(files[0])
	// Cut the last record in half.
	cut := fi.Size() - int64(len(rec(99)))/2
	if err := os.Truncate(files[0], cut); err != nil {
		t.Fatal(err)
	}
	s, bad := open(t, dir, nil)
	defer s.Close()
	if err := s.Append(rec(100)); err != nil { // a new segment after the torn one
		t.Fatal(err)
	}
	got := drain(t, s, 7, 1<<20)
	want := func(i int) []byte {
		if i == 99 {
			return rec(100)
		}
		return rec(i)
	}
	wantRecords(t, got, want, 0, 100)
	if len(*bad) != 1 || !errors.Is((*bad)[0].Err, errShort) || (*bad)[0].Bytes != cut-(fi.Size()-recordLen(len(rec(99)))) {
		t.Fatalf("corruption reports %+v, want one torn tail", *bad)
	}
}

func TestDamageInMiddleSegment(t *testing.T) {
	dir := t.TempDir()
	mod := func(o *Options) { o.SegmentBytes = 2 << 10 }
	s, _ := open(t, dir, mod)
	var all [][]byte
	for i := 0; i < 200; i++ {
		all = append(all, rec(i))
		if err := s.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	files := segFiles(t, dir)
	if len(files) < 5 {
		t.Fatalf("want several segments, got %d", len(files))
	}
	// Flip a payload byte of the second record of the third segment.
	victim := files[2]
	data, _ := os.ReadFile(victim)
	first := binary.LittleEndian.Uint32(data[8:12])
	off := 8 + headerLen + int(first) + headerLen + 3
	data[off] ^= 0x40
	os.WriteFile(victim, data, 0o600)
	// Which records were in which segment: count records per file.
	count := func(name string) int {
		d, _ := os.ReadFile(name)
		n := 0
		for k := 8; k < len(d); {
			sz := binary.LittleEndian.Uint32(d[k:])
			k += headerLen + int(sz)
			n++
		}
		return n
	}
	before := 0
	for _, f := range files[:2] {
		before += count(f)
	}
	lost := count(victim) - 1

	s, bad := open(t, dir, mod)
	defer s.Close()
	got := drain(t, s, 10, 1<<20)
	var want [][]byte
	want = append(want, all[:before+1]...)
	want = append(want, all[before+1+lost:]...)
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d differs", i)
		}
	}
	if len(*bad) != 1 || !errors.Is((*bad)[0].Err, errCRC) || (*bad)[0].File != filepath.Base(victim) {
		t.Fatalf("corruption reports %+v, want one CRC error in %s", *bad, filepath.Base(victim))
	}
	if !s.Empty() || len(segFiles(t, dir)) != 0 {
		t.Fatal("damaged segment not consumed")
	}
}

func TestBadAckFile(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, nil)
	for i := 0; i < 10; i++ {
		s.Append(rec(i))
	}
	b, _ := s.Peek(4, 1<<20)
	s.Commit(b)
	s.Close()
	os.WriteFile(filepath.Join(dir, ackName), []byte("garbage"), 0o600)
	s, bad := open(t, dir, nil)
	defer s.Close()
	// Replayed from the start: duplicates, never losses.
	wantRecords(t, drain(t, s, 100, 1<<20), rec, 0, 10)
	if len(*bad) != 1 || (*bad)[0].File != ackName {
		t.Fatalf("reports %+v, want the ack file", *bad)
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, nil)
	if _, err := Open(Options{Dir: dir}); err == nil {
		t.Fatal("second Open of a spool in use succeeded")
	}
	s.Close()
	s2, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	s2.Close()
}

func TestBadRecords(t *testing.T) {
	s, _ := open(t, t.TempDir(), nil)
	defer s.Close()
	if err := s.Append([]byte{}); err == nil {
		t.Error("empty record accepted")
	}
	if err := s.Append(make([]byte, MaxRecord+1)); err == nil {
		t.Error("oversized record accepted")
	}
	if err := s.Append(make([]byte, MaxRecord)); err != nil {
		t.Errorf("record of MaxRecord bytes: %v", err)
	}
	b, _ := s.Peek(1, 1)
	if len(b.Records) != 1 || len(b.Records[0]) != MaxRecord {
		t.Error("MaxRecord-sized record not read back")
	}
}

// TestConcurrent appends from several goroutines while one consumer drains:
// every record arrives exactly once and each appender's order is kept.
func TestConcurrent(t *testing.T) {
	dir := t.TempDir()
	s, bad := open(t, dir, func(o *Options) { o.SegmentBytes = 16 << 10; o.MaxBytes = 256 << 10 })
	defer s.Close()
	const writers, per = 4, 3000
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; {
				r := binary.LittleEndian.AppendUint32([]byte{byte(w)}, uint32(i))
				r = append(r, bytes.Repeat([]byte{'z'}, i%100)...)
				if err := s.Append(r); errors.Is(err, ErrFull) {
					continue // the consumer frees space
				} else if err != nil {
					t.Error(err)
					return
				}
				i++
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	next := make([]uint32, writers)
	total := 0
	for finished := false; ; {
		select {
		case <-done:
			finished = true
		default:
		}
		b, err := s.Peek(100, 64<<10)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range b.Records {
			w, i := r[0], binary.LittleEndian.Uint32(r[1:5])
			if i != next[w] {
				t.Fatalf("writer %d: got record %d, want %d", w, i, next[w])
			}
			next[w]++
			total++
		}
		if err := s.Commit(b); err != nil {
			t.Fatal(err)
		}
		if finished && len(b.Records) == 0 {
			break
		}
	}
	if total != writers*per {
		t.Fatalf("consumed %d records, want %d", total, writers*per)
	}
	if len(*bad) != 0 {
		t.Fatalf("corruption: %v", *bad)
	}
}
