package main

import (
	"math"
	"slices"
	"time"
)

// figure is one measured quantity over the repetitions of a benchmark.
type figure struct {
	Name   string    `json:"name"`
	Unit   string    `json:"unit"`
	Values []float64 `json:"values"` // one per repetition, in run order
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	// Spread is (max-min)/median: how much the repetitions disagree.
	Spread float64 `json:"spread"`
}

func newFigure(name, unit string, values []float64) figure {
	f := figure{Name: name, Unit: unit, Values: values}
	if len(values) == 0 {
		return f
	}
	s := slices.Clone(values)
	slices.Sort(s)
	f.Min, f.Max, f.Median = s[0], s[len(s)-1], median(s)
	if f.Median != 0 {
		f.Spread = (f.Max - f.Min) / math.Abs(f.Median)
	}
	return f
}

// median of a sorted slice.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// latencies summarises durations (nearest-rank percentiles).
type latencies struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P95  float64 `json:"p95_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

func summarize(d []time.Duration) latencies {
	l := latencies{N: len(d)}
	if len(d) == 0 {
		return l
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x) / 1e6 }
	l.P50, l.P90, l.P95 = ms(percentile(d, 50)), ms(percentile(d, 90)), ms(percentile(d, 95))
	l.P99, l.P999, l.Max = ms(percentile(d, 99)), ms(percentile(d, 99.9)), ms(d[len(d)-1])
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	l.Mean = ms(sum / time.Duration(len(d)))
	return l
}

// percentile by nearest rank of a sorted slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	r := int(math.Ceil(p / 100 * float64(len(sorted))))
	r = min(max(r, 1), len(sorted))
	return sorted[r-1]
}

// pick collects one value per repetition.
func pick[T any](rs []T, f func(T) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}
