package store

import (
	"context"
	"fmt"
	"time"
)

// Counts are conversion figures for people (bots excluded).
type Counts struct {
	PageViews     uint64 `json:"page_views" ch:"page_views"`
	ApplyClicks   uint64 `json:"apply_clicks" ch:"apply_clicks"`
	Applications  uint64 `json:"applications" ch:"applications"`
	VacancyEmails uint64 `json:"vacancy_emails" ch:"vacancy_emails"`
	// Visitors is the number of distinct daily visitor hashes (a visitor
	// seen on two days counts twice, as the salt rotates daily).
	Visitors uint64 `json:"visitors" ch:"visitors"`
}

// DayCounts are the counts of one UTC day.
type DayCounts struct {
	Date string `json:"date"`
	Counts
}

// SourceCounts are the counts of one traffic source.
type SourceCounts struct {
	Source string `json:"source" ch:"source"`
	Counts
}

// Report is a campaign's conversion report over [From, To] (UTC days).
type Report struct {
	Campaign string         `json:"campaign"`
	From     string         `json:"from"`
	To       string         `json:"to"`
	Totals   Counts         `json:"totals"`
	Bots     uint64         `json:"bots"`
	Days     []DayCounts    `json:"days"`
	Sources  []SourceCounts `json:"sources"`
}

const countCols = `sumMerge(page_views) AS page_views, sumMerge(apply_clicks) AS apply_clicks,
	sumMerge(applications) AS applications, sumMerge(vacancy_emails) AS vacancy_emails,
	uniqMerge(visitors) AS visitors`

// CampaignReport reads the conversion aggregate of one campaign. The caller
// has checked that clientID owns campaignID.
func (s *Store) CampaignReport(ctx context.Context, clientID, campaignID string, from, to time.Time) (Report, error) {
	r := Report{Campaign: campaignID, From: from.Format(time.DateOnly), To: to.Format(time.DateOnly),
		Days: []DayCounts{}, Sources: []SourceCounts{}}
	where := ` FROM conversions_daily WHERE client_id = ? AND campaign_id = ? AND date >= toDate(?) AND date <= toDate(?)`
	args := []any{clientID, campaignID, from.Format(time.DateOnly), to.Format(time.DateOnly)}

	var days []struct {
		Date time.Time `ch:"date"`
		Counts
	}
	if err := s.conn.Select(ctx, &days, `SELECT date, `+countCols+where+` GROUP BY date ORDER BY date`, args...); err != nil {
		return r, fmt.Errorf("store: report days: %w", err)
	}
	for _, d := range days {
		r.Days = append(r.Days, DayCounts{Date: d.Date.Format(time.DateOnly), Counts: d.Counts})
	}
	var tot []Counts
	if err := s.conn.Select(ctx, &tot, `SELECT `+countCols+where, args...); err != nil {
		return r, fmt.Errorf("store: report totals: %w", err)
	}
	if len(tot) == 1 {
		r.Totals = tot[0]
	}
	var srcs []SourceCounts
	if err := s.conn.Select(ctx, &srcs, `SELECT source, `+countCols+where+` GROUP BY source ORDER BY page_views DESC, source LIMIT 100`, args...); err != nil {
		return r, fmt.Errorf("store: report sources: %w", err)
	}
	r.Sources = append(r.Sources, srcs...)
	var bots []struct {
		N uint64 `ch:"n"`
	}
	if err := s.conn.Select(ctx, &bots, `SELECT sum(hits) AS n FROM bots_daily WHERE client_id = ? AND campaign_id = ? AND date >= toDate(?) AND date <= toDate(?)`, args...); err != nil {
		return r, fmt.Errorf("store: report bots: %w", err)
	}
	if len(bots) == 1 {
		r.Bots = bots[0].N
	}
	return r, nil
}
