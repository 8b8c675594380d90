// Package api is the api role: the client API under /api/v1/, behind
// per-client bearer tokens. It serves a client's campaigns (list, create,
// update, erase), their conversion reports, forwarding instructions and the
// forwarding ledger (instructions.go), and partner shares with the partner
// report behind a partner's own token (partners.go). Package app mounts it
// beside the client dashboard (api/dashboard).
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jobpixel/jobpixel/internal/store"
)

// Store is what the API reads; *store.Store implements it.
type Store interface {
	ClientByToken(ctx context.Context, token string) (store.Client, error)
	ClientCampaign(ctx context.Context, clientID, campaignID string) (store.Campaign, error)
	CampaignReport(ctx context.Context, clientID, campaignID string, from, to time.Time) (store.Report, error)
	Breakdown(ctx context.Context, clientID, campaignID string, q store.BreakdownQuery) (store.Breakdown, error)
	ClientCampaigns(ctx context.Context, clientID string) ([]store.Campaign, error)
	CreateCampaign(ctx context.Context, clientID, name string, opts store.CampaignOptions) (store.Campaign, error)
	UpdateCampaign(ctx context.Context, c store.Campaign) (store.Campaign, error)
	RotateS2SSecret(ctx context.Context, c store.Campaign) (store.Campaign, error)
	EraseCampaign(ctx context.Context, actor, clientID, campaignID string) error
	// Forwarding instructions and ledger (instructions.go).
	AddInstruction(ctx context.Context, in store.Instruction, seal func(version uint32) (string, error)) (store.Instruction, error)
	Instructions(ctx context.Context, clientID, campaignID string) ([]store.Instruction, error)
	Ledger(ctx context.Context, clientID, campaignID string, from, to time.Time, limit int) ([]store.LedgerRow, error)
	DeadLetters(ctx context.Context, clientID, campaignID string, from, to time.Time, limit int) ([]store.DeadLetter, error)
	UnconfirmedIntents(ctx context.Context, clientID, campaignID string, from, to, before time.Time, limit int) ([]store.Unconfirmed, error)
	ForwardStatuses(ctx context.Context, clientID, campaignID string, version uint32) ([]store.ForwardStatus, error)
	Audit(ctx context.Context, actor, action, clientID, campaignID, detail string) error
	// Partner shares and the partner report (partners.go).
	CreateShare(ctx context.Context, actor, clientID, campaignID, name string, minVisitors uint32) (store.Share, string, error)
	Shares(ctx context.Context, clientID, campaignID string) ([]store.Share, error)
	RevokeShare(ctx context.Context, actor, clientID, campaignID, shareID string) (store.Share, error)
	ShareByToken(ctx context.Context, token string) (store.Share, error)
	CampaignWeeks(ctx context.Context, clientID, campaignID string, from, to time.Time) ([]store.WeekCounts, error)
}

// MaxRangeDays bounds a report's date range.
const MaxRangeDays = 400

// API is the client-facing HTTP API.
type API struct {
	st  Store
	log *slog.Logger
	now func() time.Time
	fwd Forwarding // instruction endpoints (SetForwarding)

	mu     sync.Mutex
	tokens map[string]tokenEntry // token hash → client, cached briefly
}

type tokenEntry struct {
	client  store.Client
	expires time.Time
}

// tokenTTL bounds how long a revoked token keeps working on one replica.
const tokenTTL = 30 * time.Second

// New returns the API.
func New(st Store, log *slog.Logger) *API {
	return &API{st: st, log: log, now: time.Now, tokens: map[string]tokenEntry{}}
}

// Handler returns the routes of the API.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/campaigns/{id}/report", a.report)
	mux.HandleFunc("GET /api/v1/campaigns/{id}/report/breakdown", a.breakdown)
	mux.HandleFunc("GET /api/v1/campaigns", a.listCampaigns)
	mux.HandleFunc("POST /api/v1/campaigns", a.createCampaign)
	mux.HandleFunc("GET /api/v1/campaigns/{id}", a.getCampaign)
	mux.HandleFunc("PATCH /api/v1/campaigns/{id}", a.patchCampaign)
	mux.HandleFunc("DELETE /api/v1/campaigns/{id}/data", a.eraseCampaign)
	mux.HandleFunc("POST /api/v1/campaigns/{id}/secret", a.rotateSecret)
	mux.HandleFunc("GET /api/v1/campaigns/{id}/instructions", a.listInstructions)
	mux.HandleFunc("POST /api/v1/campaigns/{id}/instructions", a.addInstruction)
	mux.HandleFunc("POST /api/v1/campaigns/{id}/instructions/revoke", a.revokeInstruction)
	mux.HandleFunc("DELETE /api/v1/campaigns/{id}/instructions", a.revokeInstruction)
	mux.HandleFunc("GET /api/v1/campaigns/{id}/ledger", a.ledger)
	mux.HandleFunc("POST /api/v1/campaigns/{id}/partners", a.createPartner)
	mux.HandleFunc("GET /api/v1/campaigns/{id}/partners", a.listPartners)
	mux.HandleFunc("DELETE /api/v1/campaigns/{id}/partners/{share}", a.revokePartner)
	mux.HandleFunc("GET /api/v1/partner/report", a.partnerReport)
	return mux
}

// apiError is an error with the HTTP status it maps to.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		if ae.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="jobpixel"`)
		}
		writeJSON(w, ae.status, map[string]string{"error": ae.msg})
		return
	}
	a.log.Error("api request failed", "path", r.URL.Path, "err", err)
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "storage unavailable, retry later"})
}

// client authenticates the request's bearer token.
func (a *API) client(r *http.Request) (store.Client, error) {
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || token == "" {
		return store.Client{}, &apiError{http.StatusUnauthorized, "missing bearer token"}
	}
	key := store.HashToken(token)
	now := a.now()
	a.mu.Lock()
	e, hit := a.tokens[key]
	a.mu.Unlock()
	if hit && now.Before(e.expires) {
		return e.client, nil
	}
	c, err := a.st.ClientByToken(r.Context(), token)
	if errors.Is(err, store.ErrNotFound) {
		return store.Client{}, &apiError{http.StatusUnauthorized, "invalid token"}
	}
	if err != nil {
		return store.Client{}, err
	}
	a.mu.Lock()
	if len(a.tokens) > 10_000 {
		clear(a.tokens)
	}
	a.tokens[key] = tokenEntry{client: c, expires: now.Add(tokenTTL)}
	a.mu.Unlock()
	return c, nil
}

func parseDay(s string) (time.Time, error) {
	return time.ParseInLocation(time.DateOnly, s, time.UTC)
}

func (a *API) report(w http.ResponseWriter, r *http.Request) {
	c, err := a.client(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	id := r.PathValue("id")
	if !store.ValidID(id) {
		a.fail(w, r, &apiError{http.StatusNotFound, "campaign not found"})
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
	if _, err := a.clientCampaign(r.Context(), c.ID, id); err != nil {
		a.fail(w, r, err)
		return
	}
	rep, err := a.st.CampaignReport(r.Context(), c.ID, id, from, to)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if asCSV {
		writeCSV(w, fmt.Sprintf("%s-report-%s-%s.csv", id, rep.From, rep.To), reportCSV(rep))
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// dateRange reads a report's from and to query parameters: UTC days, to
// defaulting to today and from to 29 days before to, at most MaxRangeDays
// apart. Its errors are 400s naming the parameter.
func dateRange(q url.Values, now time.Time) (from, to time.Time, err error) {
	to = now.UTC().Truncate(24 * time.Hour)
	if s := q.Get("to"); s != "" {
		if to, err = parseDay(s); err != nil {
			return from, to, &apiError{http.StatusBadRequest, "to: want YYYY-MM-DD"}
		}
	}
	from = to.AddDate(0, 0, -29)
	if s := q.Get("from"); s != "" {
		if from, err = parseDay(s); err != nil {
			return from, to, &apiError{http.StatusBadRequest, "from: want YYYY-MM-DD"}
		}
	}
	if from.After(to) {
		return from, to, &apiError{http.StatusBadRequest, "from: after to"}
	}
	if to.Sub(from) > MaxRangeDays*24*time.Hour {
		return from, to, &apiError{http.StatusBadRequest, fmt.Sprintf("from: range longer than %d days", MaxRangeDays)}
	}
	return from, to, nil
}
