package forward

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"
)

type item struct {
	id  string
	bad bool
}

func items(n int) []item {
	out := make([]item, n)
	for i := range out {
		out[i] = item{id: "e" + strconv.Itoa(i)}
	}
	return out
}

// accounted checks that every input item is either sent or failed, once.
func accounted(t *testing.T, res Result, n int) {
	t.Helper()
	failures := res.Failures()
	seen := map[int]bool{}
	for _, f := range failures {
		if f.Index < 0 || f.Index >= n || seen[f.Index] {
			t.Fatalf("failure index %d out of range or repeated", f.Index)
		}
		if f.Err == nil || Classify(f.Err) == 0 {
			t.Fatalf("failure %d has no classified error", f.Index)
		}
		seen[f.Index] = true
	}
	if got := res.Sent() + len(failures); got != n {
		t.Fatalf("sent %d + failed %d = %d, want %d", res.Sent(), len(failures), got, n)
	}
	if (len(failures) == 0) != (res.Err() == nil) {
		t.Fatalf("Err() = %v with %d failures", res.Err(), len(failures))
	}
}

type call struct {
	b   Batch
	ids []string
}

func recorder(calls *[]call, fail func(b Batch, attempt int) (Outcome, error)) func(context.Context, Batch, []item) (Outcome, error) {
	attempts := map[int]int{}
	return func(_ context.Context, b Batch, its []item) (Outcome, error) {
		ids := make([]string, len(its))
		for i, it := range its {
			ids[i] = it.id
		}
		*calls = append(*calls, call{b, ids})
		attempts[b.Seq]++
		if fail != nil {
			return fail(b, attempts[b.Seq])
		}
		return Outcome{Status: 200}, nil
	}
}

func TestBatcherSplitsAtLimit(t *testing.T) {
	var calls []call
	b := Batcher[item]{Size: 1000, Retry: newClock().policy(3), Send: recorder(&calls, nil)}
	res := b.Run(context.Background(), items(2500))
	accounted(t, res, 2500)
	var sizes []int
	for _, c := range calls {
		sizes = append(sizes, len(c.ids))
		if c.b.Count != 3 || c.b.Total != 2500 || c.b.Last() != (c.b.Seq == 3) {
			t.Errorf("batch info %+v", c.b)
		}
	}
	if !slices.Equal(sizes, []int{1000, 1000, 500}) {
		t.Errorf("sizes = %v", sizes)
	}
	if calls[2].ids[0] != "e2000" || res.Sent() != 2500 || len(res.Batches) != 3 {
		t.Errorf("third batch starts at %s, sent %d, %d batches", calls[2].ids[0], res.Sent(), len(res.Batches))
	}
	for i, br := range res.Batches {
		if br.Seq != i+1 || br.Attempts != 1 || br.Status != 200 || br.Err != nil {
			t.Errorf("batch result %+v", br)
		}
	}
}

func TestBatcherExactMultiple(t *testing.T) {
	var calls []call
	b := Batcher[item]{Size: 10, Send: recorder(&calls, nil)}
	res := b.Run(context.Background(), items(20))
	accounted(t, res, 20)
	if len(calls) != 2 {
		t.Errorf("%d calls", len(calls))
	}
	if res := b.Run(context.Background(), nil); len(res.Batches) != 0 || res.Err() != nil {
		t.Errorf("empty run = %+v", res)
	}
}

func TestBatcherCheckAndPerItemFailures(t *testing.T) {
	in := items(7)
	in[1].bad, in[4].bad = true, true
	var calls []call
	b := Batcher[item]{
		Size: 2,
		Check: func(it item) error {
			if it.bad {
				return errors.New("bad item")
			}
			return nil
		},
		ID: func(it item) string { return it.id },
		Send: recorder(&calls, func(b Batch, _ int) (Outcome, error) {
			if b.Seq == 2 { // items e3, e5: refuse the second one
				return Outcome{Status: 200, Failed: []ItemError{{Index: 1, Err: &Error{Kind: Permanent, Code: "CLICK_NOT_FOUND"}}}}, nil
			}
			return Outcome{Status: 200}, nil
		}),
	}
	res := b.Run(context.Background(), in)
	accounted(t, res, 7)
	if len(calls) != 3 || !slices.Equal(calls[1].ids, []string{"e3", "e5"}) || calls[0].b.Total != 5 {
		t.Fatalf("calls = %+v", calls)
	}
	var got []string
	for _, f := range res.Failures() {
		got = append(got, fmt.Sprintf("%d:%s:%v", f.Index, f.ID, Classify(f.Err)))
	}
	if want := []string{"1:e1:permanent", "4:e4:permanent", "5:e5:permanent"}; !slices.Equal(got, want) {
		t.Errorf("failures = %v, want %v", got, want)
	}
	if res.Sent() != 4 {
		t.Errorf("sent = %d", res.Sent())
	}
}

func TestBatcherPermanentBatchFailureContinues(t *testing.T) {
	var calls []call
	b := Batcher[item]{Size: 2, Retry: newClock().policy(5), Send: recorder(&calls, func(b Batch, _ int) (Outcome, error) {
		if b.Seq == 1 {
			return Outcome{}, &Error{Kind: Permanent, Status: 400, Code: "100"}
		}
		return Outcome{Status: 200}, nil
	})}
	res := b.Run(context.Background(), items(5))
	accounted(t, res, 5)
	if len(calls) != 3 || res.Batches[0].Attempts != 1 || res.Batches[0].Status != 400 || len(res.Batches[0].Failed) != 2 {
		t.Errorf("calls=%d first=%+v", len(calls), res.Batches[0])
	}
}

func TestBatcherStopOnError(t *testing.T) {
	var calls []call
	b := Batcher[item]{Size: 2, StopOnError: true, Retry: newClock().policy(5), Send: recorder(&calls, func(b Batch, _ int) (Outcome, error) {
		if b.Seq == 2 {
			return Outcome{}, &Error{Kind: Permanent, Status: 400, Code: "2650/1870158"}
		}
		return Outcome{Status: 200}, nil
	})}
	res := b.Run(context.Background(), items(6))
	accounted(t, res, 6)
	if len(calls) != 2 || res.Batches[2].Attempts != 0 || Classify(res.Batches[2].Err) != Permanent {
		t.Errorf("calls=%d third=%+v", len(calls), res.Batches[2])
	}
}

func TestBatcherRetriesThenSucceeds(t *testing.T) {
	c := newClock()
	var calls []call
	b := Batcher[item]{Size: 3, Retry: c.policy(5), Send: recorder(&calls, func(b Batch, attempt int) (Outcome, error) {
		if b.Seq == 1 && attempt <= 2 {
			return Outcome{}, &Error{Kind: Throttled, Status: 429, RetryAfter: 4 * time.Second}
		}
		return Outcome{Status: 200}, nil
	})}
	res := b.Run(context.Background(), items(4))
	accounted(t, res, 4)
	if res.Batches[0].Attempts != 3 || res.Err() != nil || !slices.Equal(c.sleeps, []time.Duration{4 * time.Second, 4 * time.Second}) {
		t.Errorf("batch=%+v sleeps=%v", res.Batches[0], c.sleeps)
	}
	// A retry resends the same batch.
	if !slices.Equal(calls[0].ids, calls[1].ids) || calls[0].b != calls[2].b {
		t.Errorf("retry changed the batch: %+v", calls[:3])
	}
}

func TestBatcherThrottledGiveUpStopsRun(t *testing.T) {
	var calls []call
	b := Batcher[item]{Size: 2, Retry: newClock().policy(2), Send: recorder(&calls, func(Batch, int) (Outcome, error) {
		return Outcome{}, &Error{Kind: Throttled, Status: 429, RetryAfter: time.Second}
	})}
	res := b.Run(context.Background(), items(6))
	accounted(t, res, 6)
	if len(calls) != 2 {
		t.Errorf("calls = %d, want 2 (one batch, two attempts)", len(calls))
	}
	for _, br := range res.Batches[1:] {
		if br.Attempts != 0 || Classify(br.Err) != Throttled || RetryAfterOf(br.Err) != time.Second {
			t.Errorf("not-attempted batch %+v", br)
		}
	}
}

func TestBatcherContextDone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var calls []call
	b := Batcher[item]{Size: 2, Send: recorder(&calls, nil)}
	res := b.Run(ctx, items(3))
	accounted(t, res, 3)
	if len(calls) != 0 || !errors.Is(res.Err(), context.Canceled) || Classify(res.Batches[0].Err) != Retryable {
		t.Errorf("calls=%d err=%v", len(calls), res.Err())
	}
}

func TestRejectAll(t *testing.T) {
	err := Rejectf("no token")
	res := RejectAll(3, func(i int) string { return "m" + strconv.Itoa(i) }, err)
	accounted(t, res, 3)
	if res.Failures()[2].ID != "m2" {
		t.Errorf("%+v", res.Failures())
	}
}
