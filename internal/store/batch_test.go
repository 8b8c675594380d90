package store

import (
	"context"
	"testing"
	"time"
)

func TestFollowUntilDone(t *testing.T) {
	// Cancelled while followed: the batch context is cancelled too.
	ctx, cancel := context.WithCancel(context.Background())
	b, done := followUntilDone(ctx)
	cancel()
	select {
	case <-b.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("cancellation not followed")
	}
	if b.Err() == nil {
		t.Fatal("Err() is nil after cancellation")
	}
	done()
	// Cancelled after done: never cancelled.
	ctx, cancel = context.WithCancel(context.Background())
	b, done = followUntilDone(ctx)
	done()
	cancel()
	select {
	case <-b.Done():
		t.Fatal("cancelled after done")
	case <-time.After(100 * time.Millisecond):
	}
	done() // idempotent
}
