package relay

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	consumed prometheus.Counter
	skipped  *prometheus.CounterVec
	items    *prometheus.CounterVec
	errors   *prometheus.CounterVec
	holding  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		consumed: prometheus.NewCounter(prometheus.CounterOpts{Name: "jobpixel_forward_consumed_total",
			Help: "Hits read from Kafka by the forwarder."}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jobpixel_forward_skipped_total",
			Help: "Hits or items not forwarded, by reason (no_instruction, revoked, sensitive, no_consent, ...)."}, []string{"reason"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jobpixel_forward_items_total",
			Help: "Items handled by the forwarder, by purpose and outcome (sent, retry, held_credentials, dead_letter)."}, []string{"purpose", "outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jobpixel_forward_errors_total",
			Help: "Forwarder errors by what failed (kafka, clickhouse, instructions, stale_instructions)."}, []string{"what"}),
		holding: prometheus.NewGauge(prometheus.GaugeOpts{Name: "jobpixel_forward_holding",
			Help: "1 while a partition holds to retry failed sends."}),
	}
	reg.MustRegister(m.consumed, m.skipped, m.items, m.errors, m.holding)
	return m
}
