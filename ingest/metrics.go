package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a hit is rejected. Each is a label value of
// jobpixel_ingest_rejected_total and the value of the X-Jobpixel-Reject
// response header of /p.gif.
const (
	reasonMissingCampaign = "missing_campaign"
	reasonBadCampaign     = "bad_campaign"
	reasonUnknownCampaign = "unknown_campaign"
	reasonBadEvent        = "bad_event"
	reasonFieldTooLong    = "field_too_long"
	reasonNoConsent       = "no_consent"
	reasonQueueFull       = "queue_full"
	reasonSpoolFull       = "spool_full"
	reasonNotReady        = "not_ready"
	reasonForbiddenHost   = "forbidden_host"
	reasonUnsigned        = "signature_required"
	reasonBadSignature    = "bad_signature"
)

var allReasons = []string{reasonMissingCampaign, reasonBadCampaign, reasonUnknownCampaign,
	reasonBadEvent, reasonFieldTooLong, reasonNoConsent, reasonQueueFull, reasonSpoolFull, reasonNotReady,
	reasonForbiddenHost, reasonUnsigned, reasonBadSignature}

type metrics struct {
	accepted       *prometheus.CounterVec
	rejected       *prometheus.CounterVec
	rejectedBy     map[string]prometheus.Counter
	acceptedPixel  prometheus.Counter
	acceptedBatch  prometheus.Counter
	acceptedS2S    prometheus.Counter
	consentInvalid prometheus.Counter
	tcfInvalid     *prometheus.CounterVec
}

// deliveryMetrics are the metrics of the queue, Kafka and spool paths
// (delivery.go, producer.go).
type deliveryMetrics struct {
	dropped        *prometheus.CounterVec
	produced       prometheus.Counter
	produceErrors  prometheus.Counter
	produceLatency prometheus.Histogram
	queueDepth     prometheus.GaugeFunc
	spooled        prometheus.Counter
	replayed       prometheus.Counter
	spoolErrors    prometheus.Counter
	spoolCorrupt   prometheus.Counter
	kafkaUp        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobpixel_ingest_accepted_total", Help: "Hits accepted and queued for Kafka, by endpoint.",
		}, []string{"endpoint"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobpixel_ingest_rejected_total", Help: "Hits rejected, by reason.",
		}, []string{"reason"}),
	}
	m.consentInvalid = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "jobpixel_ingest_consent_invalid_total", Help: "Malformed consent signals (TC string, gcs, gdpr, Consent Mode values); each counts as a denial.",
	})
	m.tcfInvalid = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jobpixel_ingest_tcf_invalid_total", Help: "Malformed TC strings, by why they were rejected (a site's CMP writing broken strings shows here).",
	}, []string{"reason"})
	m.rejectedBy = make(map[string]prometheus.Counter, len(allReasons))
	for _, r := range allReasons {
		m.rejectedBy[r] = m.rejected.WithLabelValues(r)
	}
	m.acceptedPixel = m.accepted.WithLabelValues("pixel")
	m.acceptedBatch = m.accepted.WithLabelValues("events")
	m.acceptedS2S = m.accepted.WithLabelValues("s2s")
	if reg != nil {
		reg.MustRegister(m.accepted, m.rejected, m.consentInvalid, m.tcfInvalid)
	}
	return m
}

// newDeliveryMetrics creates the delivery metrics and registers them on reg
// when it is not nil; depth reads the queue's length.
func newDeliveryMetrics(reg prometheus.Registerer, depth func() float64) *deliveryMetrics {
	m := &deliveryMetrics{
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobpixel_ingest_dropped_total", Help: "Accepted hits lost, by cause. Should stay 0.",
		}, []string{"cause"}),
		produced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobpixel_ingest_produced_total", Help: "Hits acknowledged by Kafka.",
		}),
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobpixel_ingest_produce_errors_total", Help: "Failed Kafka write attempts (each is retried).",
		}),
		produceLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jobpixel_ingest_produce_seconds", Help: "Time to get a batch acknowledged by Kafka.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		queueDepth: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "jobpixel_ingest_queue_depth", Help: "Hits waiting in the in-process queue.",
		}, depth),
		spooled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobpixel_ingest_spooled_total", Help: "Hits written to the disk spool (Kafka down or slow).",
		}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobpixel_ingest_replayed_total", Help: "Spooled hits acknowledged by Kafka.",
		}),
		spoolErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobpixel_ingest_spool_errors_total", Help: "Spool I/O errors (appends, reads, position writes).",
		}),
		spoolCorrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobpixel_ingest_spool_corrupt_total", Help: "Damaged spool regions (torn tails, checksum errors) skipped.",
		}),
		kafkaUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jobpixel_ingest_kafka_up", Help: "1 while Kafka takes writes, 0 while hits are spooled because it does not.",
		}),
	}
	m.kafkaUp.Set(1)
	if reg != nil {
		reg.MustRegister(m.dropped, m.produced, m.produceErrors, m.produceLatency, m.queueDepth,
			m.spooled, m.replayed, m.spoolErrors, m.spoolCorrupt, m.kafkaUp)
	}
	return m
}
