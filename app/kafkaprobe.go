package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/segmentio/kafka-go"
)

// kafkaProbe returns a check that one of brokers, dialled with dialer (TLS,
// SASL), answers metadata for topic: ingest uses it to leave the "Kafka
// down" state when no hit is waiting to prove Kafka is back.
func kafkaProbe(dialer *kafka.Dialer, brokers []string, topic string) func(context.Context) error {
	return func(ctx context.Context) error {
		var errs []error
		for _, b := range brokers {
			conn, err := dialer.DialContext(ctx, "tcp", b)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if dl, ok := ctx.Deadline(); ok {
				_ = conn.SetDeadline(dl)
			}
			_, err = conn.ReadPartitions(topic)
			conn.Close()
			if err == nil {
				return nil
			}
			errs = append(errs, err)
		}
		return fmt.Errorf("kafka probe: %w", errors.Join(errs...))
	}
}
