package ingest

import (
	"sync"
)

// record is one encoded hit waiting for Kafka. Its buffer comes from a pool
// and goes back once Kafka acknowledged it (or it was spooled).
type record struct {
	key [16]byte // partition key: the visitor hash
	buf []byte   // schemas.Hit encoding
}

var recordPool = sync.Pool{New: func() any { return &record{buf: make([]byte, 0, 1024)} }}

func getRecord() *record { return recordPool.Get().(*record) }

func putRecord(r *record) {
	if cap(r.buf) > 64<<10 {
		return // do not keep rare huge buffers alive
	}
	r.buf = r.buf[:0]
	recordPool.Put(r)
}

// queue is the bounded in-process hand-off between HTTP handlers and the
// Kafka producers. Offer never blocks: a full queue is the caller's signal to
// spill or shed.
type queue struct {
	ch chan *record
	// high is the depth above which offer signals over (without blocking):
	// the spiller then moves the excess to the spool. 0 disables it.
	high int
	over chan struct{}
}

func newQueue(size int) *queue {
	return &queue{ch: make(chan *record, size), over: make(chan struct{}, 1)}
}

// offer enqueues r without blocking and reports whether it was accepted. It
// does not allocate.
func (q *queue) offer(r *record) bool {
	select {
	case q.ch <- r:
		if q.high > 0 && len(q.ch) > q.high {
			select {
			case q.over <- struct{}{}:
			default:
			}
		}
		return true
	default:
		return false
	}
}

// free returns how many records fit right now.
func (q *queue) free() int { return cap(q.ch) - len(q.ch) }

func (q *queue) len() int { return len(q.ch) }
