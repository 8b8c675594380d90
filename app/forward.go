package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/jobpixel/jobpixel/api"
	"github.com/jobpixel/jobpixel/consent"
	"github.com/jobpixel/jobpixel/instruction"
	"github.com/jobpixel/jobpixel/relay"
)

// forwarding returns the secrets key and destination allow-list shared by
// the API (which seals credentials and checks destinations) and the
// forward role (which opens them and checks again before sending).
func (c *Config) forwarding() (api.Forwarding, error) {
	key, err := instruction.ParseKey(c.SecretsKey)
	if err != nil {
		return api.Forwarding{}, fmt.Errorf("secrets.key: %w", err)
	}
	allow, err := instruction.ParseAllowList(c.ForwardAllowedHosts)
	if err != nil {
		return api.Forwarding{}, fmt.Errorf("forward.allowed-hosts: %w", err)
	}
	return api.Forwarding{Key: key, Allow: allow}, nil
}

// startForward starts one relay per platform, each in its own consumer
// group (<forward.group>-google, -meta, -linkedin): a slow platform holds
// only its own group, never ingest, the pipeline or another platform.
func (a *App) startForward(brokers []string) error {
	fwd, err := a.cfg.forwarding()
	if err != nil {
		return err
	}
	if fwd.Key == nil {
		return errors.New("forward role: -secrets.key (JOBPIXEL_SECRETS_KEY) is required to open the instructions' credentials")
	}
	if a.cfg.ForwardGroup == a.cfg.KafkaGroup {
		return fmt.Errorf("forward.group %q must differ from kafka.group", a.cfg.ForwardGroup)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.fwdCancel = cancel
	for _, p := range []consent.Platform{consent.Google, consent.Meta, consent.LinkedIn} {
		r, err := relay.New(relay.Config{
			Brokers: brokers, Dialer: a.kafka.Dialer(), Topic: a.cfg.KafkaTopic, Group: a.cfg.ForwardGroup + "-" + p.String(), Platform: p,
			Key: fwd.Key, Allow: fwd.Allow,
			Refresh: a.cfg.ForwardRefresh, AudienceInterval: a.cfg.ForwardAudienceInterval,
			MaxHold: a.cfg.ForwardMaxHold, StopGrace: a.cfg.ForwardStopGrace,
			MetaVersion: a.cfg.ForwardMetaVersion, LinkedInVersion: a.cfg.ForwardLinkedInVersion, AdsVersion: a.cfg.ForwardAdsVersion,
		}, a.st, a.log.With("role", "forward"), a.reg)
		if err != nil {
			cancel()
			return err
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := r.Run(ctx); err != nil {
				a.errc <- err
			}
		}()
	}
	a.log.Info("forwarding started", "allowed_hosts", fwd.Allow.Hosts(), "group", a.cfg.ForwardGroup)
	return nil
}
