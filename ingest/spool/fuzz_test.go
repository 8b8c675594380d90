package spool

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

// validSegment encodes recs as a whole segment file.
func validSegment(recs ...[]byte) []byte {
	b := []byte(segMagic)
	for _, r := range recs {
		b = appendRecord(b, r)
	}
	return b
}

// referenceParse is an independent reading of the format spec in
// format.go: the records that are intact from the start of the file, and the
// offset where intact data ends.
func referenceParse(data []byte) (recs [][]byte, end int) {
	if len(data) < 8 || string(data[:8]) != "JPSPOOL1" {
		return nil, 0
	}
	end = 8
	for {
		rest := data[end:]
		if len(rest) < 8 {
			return recs, end
		}
		n := binary.LittleEndian.Uint32(rest)
		if n == 0 || n > 1<<20 || uint64(len(rest)) < 8+uint64(n) {
			return recs, end
		}
		sum := crc32.New(crc32.MakeTable(crc32.Castagnoli))
		sum.Write(rest[:4])
		sum.Write(rest[8 : 8+n])
		if sum.Sum32() != binary.LittleEndian.Uint32(rest[4:]) {
			return recs, end
		}
		recs = append(recs, rest[8:8+n])
		end += 8 + int(n)
	}
}

// FuzzSegment opens a spool whose only segment holds arbitrary bytes. It
// must never panic, must return exactly the intact records, and must report
// the rest (if any) as one damaged region; afterwards the spool is empty and
// usable.
func FuzzSegment(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("JPSPOOL"))
	f.Add([]byte(segMagic))
	f.Add(validSegment([]byte("a"), []byte("hello"), bytes.Repeat([]byte{7}, 300)))
	v := validSegment([]byte("first"), []byte("second"))
	f.Add(v[:len(v)-3])
	w := validSegment([]byte("first"), []byte("second"))
	w[len(w)-1] ^= 1
	f.Add(w)
	huge := validSegment([]byte("x"))
	binary.LittleEndian.PutUint32(huge[8:], 1<<31)
	f.Add(huge)
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, bad := open(t, dir, nil)
		defer s.Close()
		want, end := referenceParse(data)
		got := drain(t, s, 7, 256)
		if len(got) != len(want) {
			t.Fatalf("got %d records, want %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("record %d differs", i)
			}
		}
		switch {
		case end == len(data) || len(data) == 0:
			if len(*bad) != 0 {
				t.Fatalf("intact segment reported as damaged: %+v", *bad)
			}
		default:
			// A bad header is reported from 0; damaged records from end.
			from := int64(end)
			if end == 0 {
				from = 0
			}
			if len(*bad) != 1 || (*bad)[0].Offset != from || (*bad)[0].Bytes != int64(len(data))-from {
				t.Fatalf("damage from %d of %d bytes: reports %+v", from, len(data), *bad)
			}
		}
		if !s.Empty() || s.Bytes() != 0 {
			t.Fatalf("after draining: pending %d, bytes %d", s.Pending(), s.Bytes())
		}
		if err := s.Append([]byte("after")); err != nil {
			t.Fatal(err)
		}
		if got := drain(t, s, 10, 1<<20); len(got) != 1 || string(got[0]) != "after" {
			t.Fatalf("append after damage: read back %q", got)
		}
	})
}

// FuzzDamage writes records through the spool, then tears the segment at
// cut and flips bits at flip, and reopens it: exactly the records wholly
// before the damage come back, in order, and the damage is reported.
func FuzzDamage(f *testing.F) {
	f.Add([]byte("some records of various sizes, here and there"), uint8(5), uint32(60), uint32(0), uint8(0))
	f.Add([]byte("abc"), uint8(1), uint32(1000), uint32(12), uint8(0x80))
	f.Add(bytes.Repeat([]byte("q"), 2000), uint8(30), uint32(1500), uint32(3), uint8(1))
	f.Add([]byte("tiny"), uint8(4), uint32(5), uint32(0), uint8(0))
	f.Fuzz(func(t *testing.T, seed []byte, n uint8, cut uint32, flip uint32, mask uint8) {
		if len(seed) == 0 || n == 0 {
			return
		}
		var recs [][]byte
		for i := 0; i < int(n); i++ {
			a, b := i*len(seed)/int(n), (i+1)*len(seed)/int(n)
			recs = append(recs, append([]byte{byte(i)}, seed[a:b]...))
		}
		dir := t.TempDir()
		s, _ := open(t, dir, func(o *Options) { o.SegmentBytes = 1 << 30 })
		for _, r := range recs {
			if err := s.Append(r); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		name := filepath.Join(dir, segName(0))
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		damage := len(data) // first damaged byte
		if c := int(cut) % (len(data) + 1); c < len(data) {
			data = data[:c]
			damage = c
		}
		if mask != 0 && len(data) > 0 {
			p := int(flip) % len(data)
			data[p] ^= mask
			damage = min(damage, p)
		}
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
		// Records wholly before the damage survive.
		intact, end := 0, 8
		if damage < 8 {
			end = 0
		} else {
			for _, r := range recs {
				if end+int(recordLen(len(r))) > damage {
					break
				}
				end += int(recordLen(len(r)))
				intact++
			}
		}
		s, bad := open(t, dir, nil)
		defer s.Close()
		got := drain(t, s, 4, 1<<10)
		if len(got) != intact {
			t.Fatalf("damage at %d of %d: got %d records, want %d", damage, len(data), len(got), intact)
		}
		for i := range got {
			if !bytes.Equal(got[i], recs[i]) {
				t.Fatalf("record %d differs", i)
			}
		}
		if wantReport := end < len(data); wantReport != (len(*bad) == 1) || len(*bad) > 1 {
			t.Fatalf("damage at %d, intact to %d of %d: reports %+v", damage, end, len(data), *bad)
		}
		if !s.Empty() {
			t.Fatal("damaged spool not drained")
		}
	})
}
