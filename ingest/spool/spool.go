// Package spool is a bounded first-in-first-out queue of byte records on
// disk, for data that must outlive the process: ingest writes hits here when
// Kafka is slow or down and replays them, in order, when it is back.
//
// Records are appended to segment files and consumed from the oldest one. A
// consumer reads a batch with Peek, delivers it, and only then calls Commit,
// which persists how far the spool is consumed and deletes finished segments;
// a batch that was read but not committed is read again after a crash or
// restart (at least once). Every record carries a CRC: a torn tail left by a
// crash, or a damaged record, is reported through Options.OnCorrupt and the
// log and skipped, never returned and never a panic. See format.go for the
// on-disk layout.
//
// Durability: appended bytes are written to the file (write(2)) before Append
// returns, so they survive the process being killed. A background goroutine
// fsyncs them every Options.SyncInterval (without blocking appends), and
// Close does; a machine crash can lose up to SyncInterval of appends.
//
// A Spool is safe for concurrent use by many appenders and one consumer.
package spool

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrFull is returned by Append when the records do not fit under
// Options.MaxBytes. Nothing was written.
var ErrFull = errors.New("spool: full")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("spool: closed")

// Options configures a spool. Zero values take the defaults named.
type Options struct {
	// Dir holds the segment files; it is created if missing. One process at
	// a time may use it (it is locked).
	Dir string
	// MaxBytes caps the bytes of all segment files (default 1 GiB). Append
	// fails with ErrFull rather than exceed it.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment file is started
	// (default MaxBytes/16, within 64 KiB and 64 MiB). Disk space is
	// reclaimed a whole segment at a time.
	SegmentBytes int64
	// SyncInterval is how often appended data is fsynced (default 1 s).
	SyncInterval time.Duration
	// Log receives corruption and I/O reports (default: discarded).
	Log *slog.Logger
	// OnCorrupt, if set, is called (with the spool locked; do not call back
	// into it) for every damaged region that is skipped.
	OnCorrupt func(Corruption)
}

// Corruption describes a damaged region that was skipped.
type Corruption struct {
	File   string // segment or ack file name
	Offset int64  // where the damage starts
	Bytes  int64  // bytes skipped
	Err    error  // what was wrong
}

// segment is one segment file.
type segment struct {
	id   uint64
	size int64 // bytes in the file
}

// Spool is an open spool directory.
type Spool struct {
	opts Options
	lock *os.File

	mu     sync.Mutex
	segs   []segment // oldest first; segs[0].id == head.seg when not empty
	head   position  // first unconsumed byte
	w      *os.File  // appends go to segs[len-1] when non-nil
	nextID uint64
	dirty  bool
	buf    []byte
	closed bool

	stopSync chan struct{}
	syncDone sync.WaitGroup

	used    atomic.Int64 // bytes of all segment files
	pending atomic.Int64 // record bytes (with headers) not yet consumed
}

// Open opens (creating if needed) the spool in opts.Dir. Unconsumed records
// of a previous run are kept and returned first.
func Open(opts Options) (*Spool, error) {
	if opts.Dir == "" {
		return nil, errors.New("spool: no directory")
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 1 << 30
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = min(max(opts.MaxBytes/16, 64<<10), 64<<20)
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	s := &Spool{opts: opts, lock: lock, stopSync: make(chan struct{})}
	if err := s.load(); err != nil {
		unlockDir(lock)
		return nil, err
	}
	s.syncDone.Add(1)
	go s.syncLoop()
	return s, nil
}

func (s *Spool) path(name string) string { return filepath.Join(s.opts.Dir, name) }

// load reads the directory: segments, ack position.
func (s *Spool) load() error {
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	_ = os.Remove(s.path(ackTmpName))
	for _, e := range entries {
		id, ok := parseSegName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.segs = append(s.segs, segment{id: id, size: fi.Size()})
	}
	slices.SortFunc(s.segs, func(a, b segment) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	if n := len(s.segs); n > 0 {
		s.nextID = s.segs[n-1].id + 1
		s.head = position{seg: s.segs[0].id}
	}
	b, err := os.ReadFile(s.path(ackName))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("spool: %w", err)
	default:
		ack, derr := decodeAck(b)
		if derr != nil {
			// Replay from the oldest segment: duplicates, not losses.
			s.corrupt(Corruption{File: ackName, Bytes: int64(len(b)), Err: derr})
			break
		}
		if ack.seg >= s.head.seg {
			s.head = ack
			s.nextID = max(s.nextID, ack.seg)
		}
	}
	// Drop what the ack says is consumed.
	for len(s.segs) > 0 && s.segs[0].id < s.head.seg {
		s.removeSeg(s.segs[0].id)
		s.segs = s.segs[1:]
	}
	if len(s.segs) == 0 {
		s.head = position{seg: s.nextID}
	} else if s.segs[0].id != s.head.seg {
		s.head = position{seg: s.segs[0].id}
	} else if s.head.off > s.segs[0].size {
		s.head.off = s.segs[0].size
	}
	s.dropConsumed()
	s.recount()
	if p := s.pending.Load(); p > 0 {
		s.opts.Log.Info("spool holds records of a previous run", "dir", s.opts.Dir, "bytes", p, "segments", len(s.segs))
	}
	return nil
}

// Append writes records, in order, all or none. A record is 1 to MaxRecord
// bytes. It returns ErrFull, writing nothing, when they do not fit under
// MaxBytes. The records are copied; the caller keeps their buffers.
func (s *Spool) Append(recs ...[]byte) error {
	var total int64
	for _, r := range recs {
		if len(r) == 0 || len(r) > MaxRecord {
			return fmt.Errorf("spool: record of %d bytes (want 1 to %d)", len(r), MaxRecord)
		}
		total += recordLen(len(r))
	}
	if total == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	roll := s.w == nil || s.segs[len(s.segs)-1].size >= s.opts.SegmentBytes
	need := total
	if roll {
		need += int64(len(segMagic))
	}
	if s.used.Load()+need > s.opts.MaxBytes {
		return ErrFull
	}
	if roll {
		if err := s.roll(); err != nil {
			return err
		}
	}
	s.buf = s.buf[:0]
	for _, r := range recs {
		s.buf = appendRecord(s.buf, r)
	}
	seg := &s.segs[len(s.segs)-1]
	if _, err := s.w.Write(s.buf); err != nil {
		// Take back a partial write; if that fails too, leave the segment
		// to the reader's torn-tail check and start a new one next time.
		if terr := s.w.Truncate(seg.size); terr != nil {
			s.opts.Log.Error("spool: cannot undo a partial write", "segment", segName(seg.id), "err", terr)
			s.sealLocked()
			if fi, serr := os.Stat(s.path(segName(seg.id))); serr == nil {
				seg.size = fi.Size()
			}
			s.recount()
		} else if _, serr := s.w.Seek(seg.size, io.SeekStart); serr != nil {
			s.sealLocked()
		}
		return fmt.Errorf("spool: write %s: %w", segName(seg.id), err)
	}
	if cap(s.buf) > 4<<20 {
		s.buf = nil
	}
	seg.size += total
	s.used.Add(total)
	s.pending.Add(total)
	s.dirty = true
	return nil
}

// roll seals the active segment, if any, and starts a new one.
func (s *Spool) roll() error {
	s.sealLocked()
	id := s.nextID
	f, err := os.OpenFile(s.path(segName(id)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("spool: new segment: %w", err)
	}
	if _, err := f.Write([]byte(segMagic)); err != nil {
		f.Close()
		_ = os.Remove(f.Name())
		return fmt.Errorf("spool: new segment: %w", err)
	}
	s.nextID++
	s.w = f
	if len(s.segs) == 0 {
		s.head = position{seg: id}
	}
	s.segs = append(s.segs, segment{id: id, size: int64(len(segMagic))})
	s.used.Add(int64(len(segMagic)))
	return nil
}

func (s *Spool) syncLocked() {
	if s.w == nil || !s.dirty {
		return
	}
	if err := s.w.Sync(); err != nil {
		s.opts.Log.Warn("spool: fsync failed", "file", s.w.Name(), "err", err)
	}
	s.dirty = false
}

// sealLocked closes the active segment; later appends start a new one.
func (s *Spool) sealLocked() {
	if s.w == nil {
		return
	}
	s.syncLocked()
	if err := s.w.Close(); err != nil {
		s.opts.Log.Warn("spool: closing segment", "file", s.w.Name(), "err", err)
	}
	s.w = nil
}

// Batch is a run of records read by Peek. Records are owned by the caller.
type Batch struct {
	Records [][]byte
	Bytes   int // payload bytes in Records
	end     position
}

// Peek returns up to maxRecords records holding up to about maxBytes of
// payload (always at least one record when any is available), oldest first,
// without consuming them: the next Peek returns the same records until
// Commit. An empty batch means nothing is spooled. Damaged data met on the
// way is reported, skipped and, when nothing precedes it in the batch,
// consumed at once.
func (s *Spool) Peek(maxRecords, maxBytes int) (Batch, error) {
	maxRecords, maxBytes = max(maxRecords, 1), max(maxBytes, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Batch{}, ErrClosed
	}
	var b Batch
	pos := s.head
	var f *os.File
	var fid uint64
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for i := 0; i < len(s.segs) && len(b.Records) < maxRecords && b.Bytes < maxBytes; {
		seg := s.segs[i]
		if pos.seg != seg.id {
			pos = position{seg: seg.id}
		}
		active := s.w != nil && i == len(s.segs)-1
		next := func() { // move past this segment
			if i+1 < len(s.segs) {
				pos = position{seg: s.segs[i+1].id}
			} else {
				pos = position{seg: seg.id, off: seg.size}
			}
			i++
		}
		if pos.off >= seg.size {
			if active {
				break
			}
			next()
			continue
		}
		if f == nil || fid != seg.id {
			if f != nil {
				f.Close()
			}
			var err error
			if f, err = os.Open(s.path(segName(seg.id))); err != nil {
				f = nil
				if len(b.Records) > 0 {
					break
				}
				return Batch{}, fmt.Errorf("spool: %w", err)
			}
			fid = seg.id
		}
		if pos.off < int64(len(segMagic)) {
			var m [len(segMagic)]byte
			n, _ := f.ReadAt(m[:], 0)
			if n < len(m) || string(m[:]) != segMagic {
				s.skip(seg, pos.off, errMagic, active)
				next()
				continue
			}
			pos.off = int64(len(segMagic))
			continue
		}
		// Read a chunk: what is left of the budget, at least 4 KiB.
		want := min(seg.size-pos.off, int64(max(maxBytes-b.Bytes, 4<<10)+headerLen))
		chunk := make([]byte, want)
		n, err := f.ReadAt(chunk, pos.off)
		if int64(n) < want {
			// The file is shorter than we think: treat it as torn.
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			s.opts.Log.Warn("spool: short read", "segment", segName(seg.id), "offset", pos.off, "err", err)
			seg.size = pos.off + int64(n)
			s.segs[i].size = seg.size
			s.recount()
			chunk = chunk[:n]
		}
		k := 0
		for k < len(chunk) && len(b.Records) < maxRecords && b.Bytes < maxBytes {
			payload, rn, need, derr := decodeRecord(chunk[k:])
			if derr == nil {
				b.Records = append(b.Records, payload)
				b.Bytes += len(payload)
				k += rn
				continue
			}
			if errors.Is(derr, errShort) {
				avail := seg.size - (pos.off + int64(k))
				if need == 0 {
					need = headerLen
				}
				if int64(need) <= avail {
					// Complete on disk, just not in this chunk.
					if k == 0 {
						chunk = make([]byte, need)
						if _, rerr := f.ReadAt(chunk, pos.off); rerr != nil {
							return Batch{}, fmt.Errorf("spool: read %s: %w", segName(seg.id), rerr)
						}
						continue
					}
					break
				}
			}
			// Torn tail or corruption: the rest of the segment is lost.
			pos.off += int64(k)
			k = 0
			chunk = nil
			s.skip(seg, pos.off, derr, active)
			next()
			break
		}
		if chunk != nil {
			pos.off += int64(k)
		}
	}
	b.end = pos
	if len(b.Records) == 0 && pos != s.head {
		// Only damaged data was passed: consume it now.
		if err := s.commitLocked(pos); err != nil {
			return Batch{}, err
		}
	}
	return b, nil
}

// skip reports the damaged rest of seg from off.
func (s *Spool) skip(seg segment, off int64, err error, active bool) {
	s.corrupt(Corruption{File: segName(seg.id), Offset: off, Bytes: seg.size - off, Err: err})
	if active {
		s.sealLocked() // never append after damage
	}
}

func (s *Spool) corrupt(c Corruption) {
	s.opts.Log.Error("spool: damaged data skipped", "dir", s.opts.Dir, "file", c.File, "offset", c.Offset, "bytes", c.Bytes, "err", c.Err)
	if s.opts.OnCorrupt != nil {
		s.opts.OnCorrupt(c)
	}
}

// Commit consumes the records of b (and everything before them). Finished
// segments are deleted; the position is persisted before Commit returns.
func (s *Spool) Commit(b Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if b.end.seg < s.head.seg || b.end.seg == s.head.seg && b.end.off <= s.head.off {
		return nil // nothing new (or a stale batch)
	}
	return s.commitLocked(b.end)
}

func (s *Spool) commitLocked(p position) error {
	s.head = p
	for len(s.segs) > 0 && s.segs[0].id < p.seg {
		s.removeSeg(s.segs[0].id)
		s.segs = s.segs[1:]
	}
	s.dropConsumed()
	s.recount()
	return s.writeAck()
}

// dropConsumed deletes the head segment once it is read to its end; the
// active segment too, so an empty spool holds no files.
func (s *Spool) dropConsumed() {
	for len(s.segs) > 0 && s.head.seg == s.segs[0].id && s.head.off >= s.segs[0].size {
		if s.w != nil && len(s.segs) == 1 {
			s.w.Close()
			s.w = nil
		}
		s.removeSeg(s.segs[0].id)
		s.segs = s.segs[1:]
		if len(s.segs) > 0 {
			s.head = position{seg: s.segs[0].id}
		} else {
			s.head = position{seg: s.nextID}
		}
	}
}

func (s *Spool) removeSeg(id uint64) {
	if err := os.Remove(s.path(segName(id))); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.opts.Log.Warn("spool: removing consumed segment", "segment", segName(id), "err", err)
	}
}

func (s *Spool) writeAck() error {
	tmp := s.path(ackTmpName)
	if err := os.WriteFile(tmp, encodeAck(s.head), 0o600); err != nil {
		return fmt.Errorf("spool: write ack: %w", err)
	}
	if err := os.Rename(tmp, s.path(ackName)); err != nil {
		return fmt.Errorf("spool: write ack: %w", err)
	}
	return nil
}

// recount recomputes the byte gauges from the segment list.
func (s *Spool) recount() {
	var used, pending int64
	for i, seg := range s.segs {
		used += seg.size
		start := int64(len(segMagic))
		if i == 0 {
			start = max(start, s.head.off)
		}
		pending += max(0, seg.size-start)
	}
	s.used.Store(used)
	s.pending.Store(pending)
}

// Bytes returns the bytes of all segment files (what MaxBytes caps).
func (s *Spool) Bytes() int64 { return s.used.Load() }

// Pending returns the bytes of records not yet consumed (headers included;
// damaged data counts until a Peek skips it).
func (s *Spool) Pending() int64 { return s.pending.Load() }

// Empty reports whether nothing is waiting to be consumed.
func (s *Spool) Empty() bool { return s.pending.Load() == 0 }

// MaxBytes returns the configured cap.
func (s *Spool) MaxBytes() int64 { return s.opts.MaxBytes }

// Sync flushes appended data to stable storage. Appends proceed meanwhile.
func (s *Spool) Sync() error {
	s.mu.Lock()
	f := s.w
	if f == nil || !s.dirty {
		s.mu.Unlock()
		return nil
	}
	s.dirty = false
	s.mu.Unlock()
	// A concurrent seal syncs and closes f itself; its error here is moot.
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("spool: fsync: %w", err)
	}
	return nil
}

func (s *Spool) syncLoop() {
	defer s.syncDone.Done()
	t := time.NewTicker(s.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopSync:
			return
		case <-t.C:
			if err := s.Sync(); err != nil {
				s.opts.Log.Warn("spool: fsync failed", "err", err)
			}
		}
	}
}

// Close syncs and closes the spool. Unconsumed records stay on disk for the
// next Open.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stopSync)
	s.syncDone.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.w != nil {
		if s.dirty {
			err = s.w.Sync()
		}
		if cerr := s.w.Close(); err == nil {
			err = cerr
		}
		s.w = nil
	}
	unlockDir(s.lock)
	if err != nil {
		return fmt.Errorf("spool: close: %w", err)
	}
	return nil
}
