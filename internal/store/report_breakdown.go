package store

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/jobpixel/jobpixel/uaclass"
)

// Funnel holds the step rates of page view → apply click → application,
// rounded to 4 decimals; a rate is nil when the step before it has no
// events. Counts are of events, not of people, so a rate may exceed 1
// (applications reported server-to-server without a tracked click).
type Funnel struct {
	ViewToClick        *float64 `json:"view_to_click"`
	ClickToApplication *float64 `json:"click_to_application"`
	ViewToApplication  *float64 `json:"view_to_application"`
}

// FunnelOf computes the funnel of c.
func FunnelOf(c Counts) Funnel {
	return Funnel{rate(c.ApplyClicks, c.PageViews), rate(c.Applications, c.ApplyClicks), rate(c.Applications, c.PageViews)}
}

func rate(n, d uint64) *float64 {
	if d == 0 {
		return nil
	}
	r := math.Round(float64(n)/float64(d)*10_000) / 10_000
	return &r
}

// BreakdownRow is the figures of one value of a dimension.
type BreakdownRow struct {
	Value string `json:"value"`
	Counts
	Funnel Funnel `json:"funnel"`
}

// Breakdown is a campaign's figures per value of one dimension over
// [From, To] (UTC days).
type Breakdown struct {
	Campaign  string `json:"campaign"`
	From      string `json:"from"`
	To        string `json:"to"`
	Dimension string `json:"dimension"`
	Vacancy   string `json:"vacancy,omitempty"`
	Channel   string `json:"channel,omitempty"`
	// Totals are over every row the filters keep, Bots the bot hits they
	// keep (never in any other figure).
	Totals Counts         `json:"totals"`
	Funnel Funnel         `json:"funnel"`
	Bots   uint64         `json:"bots"`
	Rows   []BreakdownRow `json:"rows"`
	// Other sums the values beyond the limit (its visitors are distinct
	// over all of them); nil when every value is in Rows.
	Other *BreakdownRow `json:"other"`
}

// BreakdownQuery asks for a Breakdown. Vacancy and Channel filter when not
// empty (Channel is one of Channels). Limit bounds Rows (zero or less is
// DefaultBreakdownLimit, at most MaxBreakdownLimit), except for the
// time dimensions day and week, which list every day or ISO week (its
// Monday) with events in date order.
type BreakdownQuery struct {
	Dimension        string
	From, To         time.Time
	Limit            int
	Vacancy, Channel string
}

// Breakdown limits: the default and the largest Limit.
const (
	DefaultBreakdownLimit = 50
	MaxBreakdownLimit     = 500
)

// None labels an empty value (no vacancy, country, UTM parameter …).
const None = "(none)"

// dimension is how one dimension is grouped and labelled.
type dimension struct {
	expr  string // a String expression over events
	time  bool   // sorted by value, never limited
	label func(string) string
}

func noneIfEmpty(s string) string {
	if s == "" {
		return None
	}
	return s
}

func uaLabel[T interface {
	~uint8
	String() string
}](s string) string {
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return s
	}
	return T(n).String()
}

const channelExpr = `if(channel = '', '` + ChannelUnknown + `', channel)`

var dimensions = map[string]dimension{
	"day":          {expr: "toString(date)", time: true},
	"week":         {expr: "toString(toMonday(date))", time: true},
	"country":      {expr: "toStringCutToZero(country)", label: noneIfEmpty},
	"region":       {expr: "region", label: noneIfEmpty},
	"device":       {expr: "toString(device)", label: uaLabel[uaclass.Device]},
	"browser":      {expr: "toString(browser)", label: uaLabel[uaclass.Browser]},
	"vacancy":      {expr: "vacancy", label: noneIfEmpty},
	"utm_source":   {expr: "utm_source", label: noneIfEmpty},
	"utm_medium":   {expr: "utm_medium", label: noneIfEmpty},
	"utm_campaign": {expr: "utm_campaign", label: noneIfEmpty},
	"channel":      {expr: channelExpr},
}

// Dimensions lists the dimensions Breakdown knows, in the README's order.
var Dimensions = []string{"day", "week", "country", "region", "device", "browser", "vacancy",
	"utm_source", "utm_medium", "utm_campaign", "channel"}

const eventCountCols = `countIf(event = 'page_view') AS page_views, countIf(event = 'apply_click') AS apply_clicks,
	countIf(event = 'application') AS applications, countIf(event = 'vacancy_email') AS vacancy_emails,
	uniq(visitor) AS visitors`

// Breakdown reads the events of one campaign grouped by q.Dimension, people
// only: rows sorted by page views (then value), day and week by date. The
// figures mean what CampaignReport's do. The caller has checked that
// clientID owns campaignID and that q.Dimension is one of Dimensions.
func (s *Store) Breakdown(ctx context.Context, clientID, campaignID string, q BreakdownQuery) (Breakdown, error) {
	b := Breakdown{Campaign: campaignID, From: q.From.Format(time.DateOnly), To: q.To.Format(time.DateOnly),
		Dimension: q.Dimension, Vacancy: q.Vacancy, Channel: q.Channel, Rows: []BreakdownRow{}}
	dim, ok := dimensions[q.Dimension]
	if !ok {
		return b, fmt.Errorf("store: breakdown: unknown dimension %q", q.Dimension)
	}
	where := ` FROM events WHERE client_id = ? AND campaign_id = ? AND date >= toDate(?) AND date <= toDate(?)`
	args := []any{clientID, campaignID, b.From, b.To}
	if q.Vacancy != "" {
		where += ` AND vacancy = ?`
		args = append(args, q.Vacancy)
	}
	if q.Channel != "" {
		where += ` AND ` + channelExpr + ` = ?`
		args = append(args, q.Channel)
	}
	people := where + ` AND bot = 0`

	var rows []struct {
		Value string `ch:"value"`
		Counts
	}
	query := `SELECT ` + dim.expr + ` AS value, ` + eventCountCols + people + ` GROUP BY value ORDER BY `
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultBreakdownLimit
	}
	limit = min(limit, MaxBreakdownLimit)
	if dim.time {
		query += `value`
	} else {
		query += `page_views DESC, value LIMIT ` + strconv.Itoa(limit+1)
	}
	if err := s.conn.Select(ctx, &rows, query, args...); err != nil {
		return b, fmt.Errorf("store: breakdown by %s: %w", q.Dimension, err)
	}
	more := !dim.time && len(rows) > limit
	if more {
		rows = rows[:limit]
	}
	shown := make([]string, len(rows))
	for i, r := range rows {
		shown[i] = r.Value
		if dim.label != nil {
			r.Value = dim.label(r.Value)
		}
		b.Rows = append(b.Rows, BreakdownRow{Value: r.Value, Counts: r.Counts, Funnel: FunnelOf(r.Counts)})
	}
	var tot []Counts
	if err := s.conn.Select(ctx, &tot, `SELECT `+eventCountCols+people, args...); err != nil {
		return b, fmt.Errorf("store: breakdown totals: %w", err)
	}
	if len(tot) == 1 {
		b.Totals = tot[0]
	}
	b.Funnel = FunnelOf(b.Totals)
	if more {
		var other []Counts
		if err := s.conn.Select(ctx, &other, `SELECT `+eventCountCols+people+` AND NOT has(?, `+dim.expr+`)`, append(args, shown)...); err != nil {
			return b, fmt.Errorf("store: breakdown by %s, other values: %w", q.Dimension, err)
		}
		if len(other) == 1 {
			b.Other = &BreakdownRow{Value: "(other)", Counts: other[0], Funnel: FunnelOf(other[0])}
		}
	}
	var bots []struct {
		N uint64 `ch:"n"`
	}
	if err := s.conn.Select(ctx, &bots, `SELECT count() AS n`+where+` AND bot = 1`, args...); err != nil {
		return b, fmt.Errorf("store: breakdown bots: %w", err)
	}
	if len(bots) == 1 {
		b.Bots = bots[0].N
	}
	return b, nil
}
