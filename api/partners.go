package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jobpixel/jobpixel/internal/store"
)

// Partner shares: a client instructs us to let a partner read irreversibly
// anonymised weekly aggregates of one campaign. The client manages shares
// with its own token; the partner reads with the share's token, which
// opens the partner report and nothing else (README, "Partners").

// PartnerRounding is the multiple every published partner count is
// rounded down to.
const PartnerRounding = 5

// partnerSettle is how long after a week ends it is first published, so
// late hits (an ingest spool replayed after a Kafka outage) are in it and a
// published week does not change afterwards: a week that changed between
// two reads would let a partner difference the two.
const partnerSettle = 24 * time.Hour

// shareJSON is a share as the client sees it: never the token (only the
// creation answer carries it, once).
type shareJSON struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	MinVisitors uint32     `json:"min_visitors"`
	CreatedAt   time.Time  `json:"created_at"`
	CreatedBy   string     `json:"created_by"`
	RevokedAt   *time.Time `json:"revoked_at"`
}

func shareToJSON(sh store.Share) shareJSON {
	out := shareJSON{ID: sh.ID, Name: sh.Name, MinVisitors: sh.MinVisitors, CreatedAt: sh.CreatedAt, CreatedBy: sh.CreatedBy}
	if sh.Revoked {
		t := sh.RevokedAt
		out.RevokedAt = &t
	}
	return out
}

// shareInput is the body of POST /api/v1/campaigns/{id}/partners.
type shareInput struct {
	Name        *string `json:"name"`
	MinVisitors *int64  `json:"min_visitors"`
}

// validate returns the trimmed name and min_visitors (default
// store.MinShareVisitors), or a 400 naming the field.
func (in shareInput) validate() (string, uint32, error) {
	if in.Name == nil {
		return "", 0, &apiError{http.StatusBadRequest, "name: required"}
	}
	name := strings.TrimSpace(*in.Name)
	if !store.ValidShareName(name) {
		return "", 0, &apiError{http.StatusBadRequest, fmt.Sprintf("name: must be 1 to %d characters, without control characters", store.MaxShareName)}
	}
	k := int64(store.MinShareVisitors)
	if in.MinVisitors != nil {
		k = *in.MinVisitors
	}
	if k < store.MinShareVisitors {
		return "", 0, &apiError{http.StatusBadRequest, fmt.Sprintf("min_visitors: must be at least %d", store.MinShareVisitors)}
	}
	if k > store.MaxShareVisitors {
		return "", 0, &apiError{http.StatusBadRequest, fmt.Sprintf("min_visitors: must be at most %d", store.MaxShareVisitors)}
	}
	return name, uint32(k), nil
}

func (a *API) createPartner(w http.ResponseWriter, r *http.Request) {
	c, camp, ok := a.ownCampaign(w, r)
	if !ok {
		return
	}
	var in shareInput
	if err := decodeBody(r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	name, k, err := in.validate()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	sh, token, err := a.st.CreateShare(r.Context(), "client:"+c.ID, c.ID, camp.ID, name, k)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("partner share created", "client", c.ID, "campaign", camp.ID, "share", sh.ID, "min_visitors", k)
	writeJSON(w, http.StatusCreated, struct {
		shareJSON
		Token string `json:"token"`
	}{shareToJSON(sh), token})
}

func (a *API) listPartners(w http.ResponseWriter, r *http.Request) {
	c, camp, ok := a.ownCampaign(w, r)
	if !ok {
		return
	}
	shares, err := a.st.Shares(r.Context(), c.ID, camp.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]shareJSON, len(shares))
	for i, sh := range shares {
		out[i] = shareToJSON(sh)
	}
	writeJSON(w, http.StatusOK, map[string]any{"campaign": camp.ID, "partners": out})
}

// revokePartner revokes a share: 204, also when it was revoked already.
func (a *API) revokePartner(w http.ResponseWriter, r *http.Request) {
	c, camp, ok := a.ownCampaign(w, r)
	if !ok {
		return
	}
	id := r.PathValue("share")
	if !store.ValidID(id) {
		a.fail(w, r, &apiError{http.StatusNotFound, "partner share not found"})
		return
	}
	if _, err := a.st.RevokeShare(r.Context(), "client:"+c.ID, c.ID, camp.ID, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = &apiError{http.StatusNotFound, "partner share not found"}
		}
		a.fail(w, r, err)
		return
	}
	a.log.Info("partner share revoked", "client", c.ID, "campaign", camp.ID, "share", id)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// partner authenticates the request's partner token. Partner tokens are
// not cached: every request reads the share from ClickHouse, so a
// revocation, an erasure or the end of the client takes effect at the next
// request on every replica.
func (a *API) partner(r *http.Request) (store.Share, error) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return store.Share{}, &apiError{http.StatusUnauthorized, "missing bearer token"}
	}
	sh, err := a.st.ShareByToken(r.Context(), token)
	if errors.Is(err, store.ErrNotFound) {
		return store.Share{}, &apiError{http.StatusUnauthorized, "invalid token"}
	}
	return sh, err
}

// monday returns the Monday (UTC) of the ISO week of day d.
func monday(d time.Time) time.Time {
	d = d.UTC().Truncate(24 * time.Hour)
	return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7))
}

// settledWeeks returns the Mondays of the ISO weeks that overlap the days
// [from, to] and ended at least partnerSettle before now, oldest first.
// Each is reported whole (Monday to Sunday), whatever from and to cut off:
// a week's figures never depend on the range asked for, so ranges cannot
// be differenced.
func settledWeeks(from, to, now time.Time) []time.Time {
	var out []time.Time
	for w := monday(from); !w.After(to); w = w.AddDate(0, 0, 7) {
		if w.AddDate(0, 0, 7).Add(partnerSettle).After(now) {
			break
		}
		out = append(out, w)
	}
	return out
}

// partnerCounts are the published figures of a week, or their total.
// Deliberately its own type: a field added to store.Counts (sources,
// countries, e-mails...) must not reach partners by accident.
type partnerCounts struct {
	PageViews    uint64 `json:"page_views"`
	ApplyClicks  uint64 `json:"apply_clicks"`
	Applications uint64 `json:"applications"`
	Visitors     uint64 `json:"visitors"`
}

type partnerWeek struct {
	Week string `json:"week"` // its Monday, YYYY-MM-DD
	partnerCounts
}

// partnerReport is everything a partner ever receives: the share, the
// range, the rules applied, and the published weeks.
type partnerReport struct {
	Share           string        `json:"share"`
	Name            string        `json:"name"`
	From            string        `json:"from"`
	To              string        `json:"to"`
	MinVisitors     uint32        `json:"min_visitors"`
	Rounding        int           `json:"rounding"`
	SuppressedWeeks int           `json:"suppressed_weeks"`
	Weeks           []partnerWeek `json:"weeks"`
	Totals          partnerCounts `json:"totals"`
}

func roundDown(n uint64) uint64 { return n - n%PartnerRounding }

// anonymise turns the raw weekly figures of a campaign into what a partner
// may see. weeks are the Mondays to report (settledWeeks); rows the raw
// figures of those that have any. A week is published only when its
// distinct visitors reach minVisitors; otherwise it is left out entirely
// and only counted in SuppressedWeeks, whether it had a few visitors or
// none (so the count does not reveal small activity either). Published
// figures are rounded down to a multiple of PartnerRounding, and totals
// are the sum of the published, rounded weeks: never computed from
// suppressed or unrounded data, so totals minus weeks reveals nothing.
func anonymise(weeks []time.Time, rows []store.WeekCounts, minVisitors uint32) (published []partnerWeek, suppressed int, totals partnerCounts) {
	raw := make(map[string]store.WeekCounts, len(rows))
	for _, r := range rows {
		raw[r.Week.UTC().Format(time.DateOnly)] = r
	}
	published = []partnerWeek{}
	for _, w := range weeks {
		day := w.UTC().Format(time.DateOnly)
		r, ok := raw[day]
		if !ok || r.Visitors < uint64(minVisitors) {
			suppressed++
			continue
		}
		c := partnerCounts{PageViews: roundDown(r.PageViews), ApplyClicks: roundDown(r.ApplyClicks),
			Applications: roundDown(r.Applications), Visitors: roundDown(r.Visitors)}
		published = append(published, partnerWeek{Week: day, partnerCounts: c})
		totals.PageViews += c.PageViews
		totals.ApplyClicks += c.ApplyClicks
		totals.Applications += c.Applications
		totals.Visitors += c.Visitors
	}
	return published, suppressed, totals
}

// partnerReport serves GET /api/v1/partner/report to a partner token.
func (a *API) partnerReport(w http.ResponseWriter, r *http.Request) {
	sh, err := a.partner(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	from, to, err := dateRange(r.URL.Query(), a.now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	asCSV, err := wantCSV(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	weeks := settledWeeks(from, to, a.now())
	var rows []store.WeekCounts
	if len(weeks) > 0 {
		last := weeks[len(weeks)-1].AddDate(0, 0, 6)
		if rows, err = a.st.CampaignWeeks(r.Context(), sh.ClientID, sh.CampaignID, weeks[0], last); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	rep := partnerReport{Share: sh.ID, Name: sh.Name, From: from.Format(time.DateOnly), To: to.Format(time.DateOnly),
		MinVisitors: sh.MinVisitors, Rounding: PartnerRounding}
	rep.Weeks, rep.SuppressedWeeks, rep.Totals = anonymise(weeks, rows, sh.MinVisitors)
	if asCSV {
		writeCSV(w, fmt.Sprintf("%s-%s-%s.csv", sh.ID, rep.From, rep.To), partnerCSV(rep))
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// partnerCSV is the partner report as one table: a row per published week,
// then "total" (the JSON's totals). The rules (min_visitors, rounding,
// suppressed weeks) are only in the JSON.
func partnerCSV(rep partnerReport) [][]string {
	row := func(week string, c partnerCounts) []string {
		u := func(n uint64) string { return strconv.FormatUint(n, 10) }
		return []string{week, u(c.PageViews), u(c.ApplyClicks), u(c.Applications), u(c.Visitors)}
	}
	rows := [][]string{{"week", "page_views", "apply_clicks", "applications", "visitors"}}
	for _, w := range rep.Weeks {
		rows = append(rows, row(w.Week, w.partnerCounts))
	}
	return append(rows, row("total", rep.Totals))
}
