package store

import (
	"context"
	"sync"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// prepareBatch is PrepareBatch with a guard against a clickhouse-go race:
// Batch.Send watches its context in a goroutine and closes the TCP
// connection when the context is cancelled — even when that goroutine only
// runs after Send returned and the connection went back to the pool, where
// another query is now using it ("use of closed network connection").
// Callers routinely cancel a context right after an insert, so the batch
// gets a context that follows ctx only until Send or Abort returns.
func (s *Store) prepareBatch(ctx context.Context, query string) (driver.Batch, error) {
	bctx, done := followUntilDone(ctx)
	b, err := s.conn.PrepareBatch(bctx, query)
	if err != nil {
		done()
		return nil, err
	}
	return &guardedBatch{Batch: b, done: done}, nil
}

type guardedBatch struct {
	driver.Batch
	done func()
}

func (b *guardedBatch) Send() error {
	defer b.done()
	return b.Batch.Send()
}

func (b *guardedBatch) Abort() error {
	defer b.done()
	return b.Batch.Abort()
}

// followUntilDone returns a context cancelled when ctx is, until done is
// called; after done it is never cancelled. done waits for the forwarding
// goroutine, so no cancellation can arrive after it returns.
func followUntilDone(ctx context.Context) (context.Context, func()) {
	if ctx.Done() == nil {
		return ctx, func() {} // never cancelled
	}
	f := &followCtx{Context: context.WithoutCancel(ctx), done: make(chan struct{})}
	stop, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-stop:
		case <-ctx.Done():
			select {
			case <-stop:
			default:
				f.cancel(ctx.Err())
			}
		}
	}()
	var once sync.Once
	return f, func() {
		once.Do(func() {
			close(stop)
			<-exited
		})
	}
}

// followCtx carries ctx's values, is cancelled only by followUntilDone's
// goroutine, and has no deadline.
type followCtx struct {
	context.Context
	done chan struct{}
	mu   sync.Mutex
	err  error
}

func (c *followCtx) Done() <-chan struct{} { return c.done }

func (c *followCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *followCtx) cancel(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	close(c.done)
}
