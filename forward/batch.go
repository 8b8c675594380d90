package forward

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// ItemError is one item that was not accepted.
type ItemError struct {
	// Index is the item's position in the slice the caller passed in.
	// (In an Outcome returned by a Batcher.Send func it is the position
	// within that batch; Batcher.Run translates it.)
	Index int
	// ID is the item's id (Conversion.ID, Member.ID) when known.
	ID string
	// Err says why; Classify(Err) tells whether to dead-letter (Permanent)
	// or requeue (Retryable, Throttled).
	Err error
}

// BatchResult is the outcome of one platform request (with its retries);
// the caller records one ledger row per BatchResult.
type BatchResult struct {
	// Seq is the 1-based position of the batch in the run.
	Seq int
	// Size is the number of items in the batch.
	Size int
	// Sent is the number of items the platform accepted.
	Sent int
	// Status is the HTTP status of the last response, 0 if none.
	Status int
	// Attempts is the number of requests made; 0 if the batch was not
	// attempted (context done, or an earlier batch stopped the run).
	Attempts int
	// Err is the batch-level error, nil if the request succeeded. When
	// non-nil, every item of the batch is listed in Failed with this error.
	Err error
	// Failed lists the batch's items that were not accepted, with the
	// caller's indexes.
	Failed []ItemError
}

// Result is the outcome of a send: every input item is either accepted or
// listed exactly once in Failures().
type Result struct {
	// Rejected lists items refused locally and never sent (e.g. an event
	// too old for the platform, an identifier that is not a hash). Each
	// error is Permanent: dead-letter them with the reason.
	Rejected []ItemError
	// Batches lists each platform request in order.
	Batches []BatchResult
}

// Sent returns the number of items the platform accepted.
func (r Result) Sent() int {
	n := 0
	for _, b := range r.Batches {
		n += b.Sent
	}
	return n
}

// Failures returns every item not accepted (local rejections, whole-batch
// failures and per-item failures), ordered by Index.
func (r Result) Failures() []ItemError {
	out := slices.Clone(r.Rejected)
	for _, b := range r.Batches {
		out = append(out, b.Failed...)
	}
	slices.SortStableFunc(out, func(a, b ItemError) int { return a.Index - b.Index })
	return out
}

// Err summarises the failures: nil if every item was accepted; otherwise
// one error per failed batch and, if any items failed individually, one
// error for those wrapping the first item's error.
func (r Result) Err() error {
	var errs []error
	if n := len(r.Rejected); n > 0 {
		errs = append(errs, fmt.Errorf("%d item(s) refused locally, first #%d: %w", n, r.Rejected[0].Index, r.Rejected[0].Err))
	}
	var first *ItemError
	n := 0
	for i := range r.Batches {
		b := &r.Batches[i]
		if b.Err != nil {
			errs = append(errs, fmt.Errorf("batch %d (%d items): %w", b.Seq, b.Size, b.Err))
			continue
		}
		if len(b.Failed) > 0 && first == nil {
			first = &b.Failed[0]
		}
		n += len(b.Failed)
	}
	if first != nil {
		errs = append(errs, fmt.Errorf("%d item(s) refused by the platform, first #%d: %w", n, first.Index, first.Err))
	}
	return errors.Join(errs...)
}

// Batch describes the request a Batcher.Send func is asked to make.
type Batch struct {
	// Seq is the 1-based position of this batch; it does not change
	// between retries of the same batch.
	Seq int
	// Count is the number of batches in the run.
	Count int
	// Total is the number of items in the run (after local rejections).
	Total int
}

// Last reports whether this is the final batch of the run.
func (b Batch) Last() bool { return b.Seq == b.Count }

// Outcome is what a Batcher.Send func reports for a request that did not
// fail as a whole.
type Outcome struct {
	// Status is the HTTP status of the response.
	Status int
	// Failed lists items the platform refused individually (partial
	// failure); Index is the position within the batch.
	Failed []ItemError
}

// Batcher splits items into requests of at most Size, sends them one after
// the other with Send, and retries each failed request according to Retry.
type Batcher[T any] struct {
	// Size is the maximum number of items per request; it must be > 0.
	Size int
	// Retry is the retry policy applied to each request.
	Retry RetryPolicy
	// Check, if set, is called for every item before batching; an item for
	// which it returns an error is not sent and lands in Result.Rejected
	// (non-*Error errors are wrapped as Permanent).
	Check func(item T) error
	// ID, if set, labels items in ItemErrors.
	ID func(item T) string
	// StopOnError makes a failed batch end the run: the remaining batches
	// are not attempted and fail with the same error. Use it when batches
	// depend on each other (e.g. an upload session with sequence numbers).
	// Independently of it, once the context is done or a batch gave up
	// while throttled, remaining batches are not attempted.
	StopOnError bool
	// Send makes one request. It is called again with the same Batch and
	// items for a retry. A nil error with an Outcome means the request
	// succeeded except for Outcome.Failed; an error (classified with
	// Classify) means the whole batch failed. Send must not retain items.
	Send func(ctx context.Context, b Batch, items []T) (Outcome, error)
}

// Run checks, splits and sends items and returns a Result accounting for
// every one of them. It never drops an item: whatever was not accepted is
// in Result.Failures(), with indexes into items.
func (b Batcher[T]) Run(ctx context.Context, items []T) Result {
	if b.Size <= 0 {
		panic("forward: Batcher.Size must be positive")
	}
	var res Result
	keep := make([]int, 0, len(items))
	for i, it := range items {
		if b.Check != nil {
			if err := b.Check(it); err != nil {
				var fe *Error
				if !errors.As(err, &fe) {
					err = &Error{Kind: Permanent, Reason: err.Error(), Err: err}
				}
				res.Rejected = append(res.Rejected, ItemError{Index: i, ID: b.id(it), Err: err})
				continue
			}
		}
		keep = append(keep, i)
	}
	total := len(keep)
	count := (total + b.Size - 1) / b.Size
	var stop error
	for seq := 1; seq <= count; seq++ {
		idx := keep[(seq-1)*b.Size : min(seq*b.Size, total)]
		br := BatchResult{Seq: seq, Size: len(idx)}
		if stop == nil {
			if cerr := ctx.Err(); cerr != nil {
				stop = &Error{Kind: Classify(cerr), Reason: "not attempted: context done", Err: cerr}
			}
		}
		if stop != nil {
			br.Err = stop
			br.Failed = b.all(items, idx, stop)
			res.Batches = append(res.Batches, br)
			continue
		}
		batch := make([]T, len(idx))
		for j, i := range idx {
			batch[j] = items[i]
		}
		info := Batch{Seq: seq, Count: count, Total: total}
		var out Outcome
		attempts, err := b.Retry.Do(ctx, func(ctx context.Context) error {
			var err error
			out, err = b.Send(ctx, info, batch)
			return err
		})
		br.Attempts = attempts
		br.Status = out.Status
		if err != nil {
			var fe *Error
			if errors.As(err, &fe) && fe.Status != 0 {
				br.Status = fe.Status
			}
			br.Err = err
			br.Failed = b.all(items, idx, err)
			kind := Classify(err)
			switch {
			case ctx.Err() != nil:
				stop = &Error{Kind: kind, Reason: "not attempted: context done", Err: ctx.Err()}
			case kind == Throttled:
				stop = &Error{Kind: Throttled, RetryAfter: RetryAfterOf(err),
					Reason: fmt.Sprintf("not attempted: batch %d gave up throttled", seq), Err: err}
			case b.StopOnError:
				stop = &Error{Kind: kind, Reason: fmt.Sprintf("not attempted: batch %d failed", seq), Err: err}
			}
			res.Batches = append(res.Batches, br)
			continue
		}
		seen := make(map[int]bool, len(out.Failed))
		for _, f := range out.Failed {
			if f.Index < 0 || f.Index >= len(idx) || seen[f.Index] {
				continue
			}
			seen[f.Index] = true
			orig := idx[f.Index]
			if f.ID == "" {
				f.ID = b.id(items[orig])
			}
			if f.Err == nil {
				f.Err = &Error{Kind: Permanent, Status: out.Status, Reason: "refused by the platform"}
			}
			f.Index = orig
			br.Failed = append(br.Failed, f)
		}
		br.Sent = len(idx) - len(br.Failed)
		res.Batches = append(res.Batches, br)
	}
	return res
}

func (b Batcher[T]) id(it T) string {
	if b.ID == nil {
		return ""
	}
	return b.ID(it)
}

func (b Batcher[T]) all(items []T, idx []int, err error) []ItemError {
	out := make([]ItemError, len(idx))
	for j, i := range idx {
		out[j] = ItemError{Index: i, ID: b.id(items[i]), Err: err}
	}
	return out
}

// RejectAll returns a Result in which every one of n items is rejected
// locally with err, for a call that cannot be attempted at all (e.g. an
// invalid Destination). ids, if non-nil, labels the items.
func RejectAll(n int, ids func(i int) string, err error) Result {
	var res Result
	for i := range n {
		ie := ItemError{Index: i, Err: err}
		if ids != nil {
			ie.ID = ids(i)
		}
		res.Rejected = append(res.Rejected, ie)
	}
	return res
}
