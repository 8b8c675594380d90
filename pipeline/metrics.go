package pipeline

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	consumed      prometheus.Counter
	inserted      prometheus.Counter
	skipped       *prometheus.CounterVec
	insertErrors  prometheus.Counter
	kafkaErrors   prometheus.Counter
	insertLatency prometheus.Histogram
	lag           *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		consumed: prometheus.NewCounter(prometheus.CounterOpts{Name: "jobpixel_pipeline_consumed_total", Help: "Messages read from Kafka."}),
		inserted: prometheus.NewCounter(prometheus.CounterOpts{Name: "jobpixel_pipeline_inserted_total", Help: "Events written to ClickHouse."}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobpixel_pipeline_skipped_total", Help: "Messages not written, by reason (already stored, duplicate id, undecodable).",
		}, []string{"reason"}),
		insertErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "jobpixel_pipeline_insert_errors_total", Help: "Failed ClickHouse inserts (each is retried)."}),
		kafkaErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "jobpixel_pipeline_kafka_errors_total", Help: "Kafka fetch, join and commit errors."}),
		insertLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jobpixel_pipeline_insert_seconds", Help: "ClickHouse insert latency.", Buckets: prometheus.ExponentialBuckets(0.005, 3, 8),
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "jobpixel_pipeline_consumer_lag", Help: "Messages behind the partition end."}, []string{"partition"}),
	}
	if reg != nil {
		reg.MustRegister(m.consumed, m.inserted, m.skipped, m.insertErrors, m.kafkaErrors, m.insertLatency, m.lag)
	}
	return m
}
