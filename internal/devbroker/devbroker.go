// Package devbroker runs a Kafka-wire-protocol broker (franz-go's kfake) for
// local runs and tests, where no real Kafka cluster exists. Production points
// jobpixel at a real cluster instead; nothing else in jobpixel knows the
// difference.
package devbroker

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Config describes a development broker.
type Config struct {
	// Dir holds the broker's data; empty keeps everything in memory.
	Dir string
	// Port to listen on (127.0.0.1); 0 picks a free port.
	Port int
	// Topics are created with Partitions partitions on a fresh data
	// directory (kfake loses topics created at run time if it is killed,
	// so every topic jobpixel uses is seeded at first start).
	Topics     []string
	Partitions int32
}

// Broker is a running development broker.
type Broker struct {
	c *kfake.Cluster
}

// Start starts a single-node broker.
func Start(cfg Config) (*Broker, error) {
	if cfg.Partitions <= 0 {
		cfg.Partitions = 6
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(cfg.Port),
		kfake.DefaultNumPartitions(int(cfg.Partitions)),
		kfake.AllowAutoTopicCreation(),
	}
	if len(cfg.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(cfg.Partitions, cfg.Topics...))
	}
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("devbroker: %w", err)
		}
		abs, err := filepath.Abs(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("devbroker: %w", err)
		}
		opts = append(opts, kfake.DataDir(abs))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("devbroker: start kfake: %w", err)
	}
	return &Broker{c: c}, nil
}

// Addr returns the host:port clients connect to.
func (b *Broker) Addr() string { return b.c.ListenAddrs()[0] }

// Close stops the broker, writing its state to disk when it has a data
// directory.
func (b *Broker) Close() { b.c.Close() }
