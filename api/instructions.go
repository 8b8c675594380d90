package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jobpixel/jobpixel/instruction"
	"github.com/jobpixel/jobpixel/internal/store"
)

// Forwarding is what the instruction endpoints need from the deployment:
// the key that seals credentials (nil: instructions carrying credentials
// are refused) and the destination allow-list.
type Forwarding struct {
	Key   *instruction.Key
	Allow instruction.AllowList
}

// SetForwarding configures the instruction endpoints. Without it every
// instruction is refused (no key, empty allow-list).
func (a *API) SetForwarding(f Forwarding) { a.fwd = f }

// instructionJSON is an instruction version as the API shows it. It never
// carries credentials, only the names of those that are set.
type instructionJSON struct {
	Campaign    string            `json:"campaign"`
	Version     uint32            `json:"version"`
	CreatedAt   time.Time         `json:"created_at"`
	Actor       string            `json:"actor"`
	RequestedBy string            `json:"requested_by,omitempty"`
	Revoked     bool              `json:"revoked"`
	Instruction *instruction.Spec `json:"instruction,omitempty"`
	Note        string            `json:"note,omitempty"`
}

func instructionToJSON(in store.Instruction) instructionJSON {
	out := instructionJSON{Campaign: in.CampaignID, Version: in.Version, CreatedAt: in.CreatedAt, Actor: in.Actor,
		RequestedBy: in.RequestedBy, Revoked: in.Revoked}
	spec, err := instruction.Decode(in.Spec)
	if err == nil {
		if in.Revoked {
			out.Note = spec.Note
		} else {
			out.Instruction = &spec
		}
	}
	return out
}

func (a *API) listInstructions(w http.ResponseWriter, r *http.Request) {
	c, camp, ok := a.ownCampaign(w, r)
	if !ok {
		return
	}
	hist, err := a.st.Instructions(r.Context(), c.ID, camp.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	versions := make([]instructionJSON, len(hist))
	for i, in := range hist {
		versions[i] = instructionToJSON(in)
	}
	var active *uint32
	if n := len(hist); n > 0 && !hist[n-1].Revoked {
		v := hist[n-1].Version
		active = &v
	}
	status, err := a.instructionStatus(r.Context(), hist)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"campaign": camp.ID, "sensitive": camp.Sensitive, "active_version": active, "versions": versions, "status": status,
	})
}

// MetaExpiryNotice is how long before a Meta token's token_expires_at the
// instruction's status warns of it.
const MetaExpiryNotice = 7 * 24 * time.Hour

// instructionStatus is the status of the active version of an instruction
// history: what stops a platform's forwarding that only the client can
// fix — the credentials the forward role found refused (forward_status,
// e.g. "Google credentials expired at …; send new credentials") and a Meta
// token that expires within MetaExpiryNotice or has expired
// (token_expires_at) — joined by "; ", or "" when there is none (or no
// active version).
func (a *API) instructionStatus(ctx context.Context, hist []store.Instruction) (string, error) {
	n := len(hist)
	if n == 0 || hist[n-1].Revoked {
		return "", nil
	}
	in := hist[n-1]
	reported, err := a.st.ForwardStatuses(ctx, in.ClientID, in.CampaignID, in.Version)
	if err != nil {
		return "", err
	}
	var out []string
	meta := ""
	if spec, err := instruction.Decode(in.Spec); err == nil && spec.Meta != nil && spec.Meta.TokenExpiresAt != "" {
		at, err := time.Parse(time.RFC3339, spec.Meta.TokenExpiresAt)
		switch now := a.now(); {
		case err != nil || now.Before(at.Add(-MetaExpiryNotice)):
		case now.Before(at):
			meta = "Meta token expires at " + spec.Meta.TokenExpiresAt + "; send a new one before"
		default:
			meta = "Meta token expired at " + spec.Meta.TokenExpiresAt + "; send new credentials"
		}
	}
	for _, f := range reported {
		if f.Platform == "meta" && meta != "" {
			continue // the expiry says it
		}
		out = append(out, f.Status)
	}
	if meta != "" {
		out = append(out, meta)
	}
	return strings.Join(out, "; "), nil
}

func sensitiveError() error {
	return &apiError{http.StatusConflict, "campaign is marked sensitive: its data is never forwarded to an ad platform, whatever the instruction " +
		"(a sensitive campaign's audience would reveal special categories of data); unmark it with PATCH {\"sensitive\": false} only if that is not so"}
}

func (a *API) addInstruction(w http.ResponseWriter, r *http.Request) {
	c, camp, ok := a.ownCampaign(w, r)
	if !ok {
		return
	}
	if camp.Sensitive {
		a.fail(w, r, sensitiveError())
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, instruction.MaxBody+1))
	if err != nil {
		a.fail(w, r, &apiError{http.StatusBadRequest, "reading body: " + err.Error()})
		return
	}
	hist, err := a.st.Instructions(r.Context(), c.ID, camp.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// Credentials a platform section leaves out are those of the current
	// version (not across a revocation: a revoked instruction's tokens are
	// not reused).
	var prev instruction.Credentials
	if n := len(hist); n > 0 && !hist[n-1].Revoked && a.fwd.Key != nil {
		cur := hist[n-1]
		prev, err = a.fwd.Key.Open(cur.Secrets, cur.KeyID, instruction.AAD(cur.ClientID, cur.CampaignID, cur.Version))
		if err != nil {
			a.log.Warn("previous instruction's credentials do not open; they must be given again", "campaign", camp.ID, "version", cur.Version, "err", err)
			prev = instruction.Credentials{}
		}
	}
	spec, creds, err := instruction.Parse(body, prev, a.fwd.Allow)
	if err != nil {
		var ie *instruction.Error
		if errors.As(err, &ie) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": ie.Error(), "field": ie.Field})
			return
		}
		a.fail(w, r, err)
		return
	}
	if !creds.IsZero() && a.fwd.Key == nil {
		a.fail(w, r, &apiError{http.StatusUnprocessableEntity, instruction.ErrNoKey.Error()})
		return
	}
	actor := "client:" + c.ID
	in, err := a.st.AddInstruction(r.Context(), store.Instruction{
		ClientID: c.ID, CampaignID: camp.ID, Actor: actor, RequestedBy: spec.RequestedBy,
		Spec: spec.Encode(), KeyID: a.fwd.Key.ID(),
	}, func(version uint32) (string, error) {
		return a.fwd.Key.Seal(creds, instruction.AAD(c.ID, camp.ID, version))
	})
	if errors.Is(err, store.ErrConflict) {
		a.fail(w, r, &apiError{http.StatusConflict, err.Error()})
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var platforms []string
	for _, p := range spec.Platforms() {
		platforms = append(platforms, p.String())
	}
	detail := fmt.Sprintf("instruction v%d: platforms %s", in.Version, strings.Join(platforms, ","))
	if err := a.st.Audit(r.Context(), actor, "instruction_created", c.ID, camp.ID, detail); err != nil {
		a.log.Error("audit failed", "err", err)
	}
	a.log.Info("forwarding instruction stored", "client", c.ID, "campaign", camp.ID, "version", in.Version, "platforms", platforms)
	writeJSON(w, http.StatusCreated, instructionToJSON(in))
}

// revokeInput is the optional body of a revocation.
type revokeInput struct {
	RequestedBy string `json:"requested_by"`
	Note        string `json:"note"`
}

func (a *API) revokeInstruction(w http.ResponseWriter, r *http.Request) {
	c, camp, ok := a.ownCampaign(w, r)
	if !ok {
		return
	}
	var in revokeInput
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		a.fail(w, r, &apiError{http.StatusBadRequest, "reading body: " + err.Error()})
		return
	}
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			a.fail(w, r, &apiError{http.StatusBadRequest, "invalid JSON body: " + err.Error()})
			return
		}
	}
	in.RequestedBy, in.Note = strings.TrimSpace(in.RequestedBy), strings.TrimSpace(in.Note)
	if len(in.RequestedBy) > 200 || len(in.Note) > 2000 {
		a.fail(w, r, &apiError{http.StatusBadRequest, "requested_by: at most 200 characters; note: at most 2000"})
		return
	}
	hist, err := a.st.Instructions(r.Context(), c.ID, camp.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if n := len(hist); n == 0 || hist[n-1].Revoked {
		a.fail(w, r, &apiError{http.StatusConflict, "campaign has no active instruction to revoke"})
		return
	}
	actor := "client:" + c.ID
	rev, err := a.st.AddInstruction(r.Context(), store.Instruction{
		ClientID: c.ID, CampaignID: camp.ID, Actor: actor, RequestedBy: in.RequestedBy, Revoked: true,
		Spec: instruction.Spec{RequestedBy: in.RequestedBy, Note: in.Note}.Encode(),
	}, nil)
	if errors.Is(err, store.ErrConflict) {
		a.fail(w, r, &apiError{http.StatusConflict, err.Error()})
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.st.Audit(r.Context(), actor, "instruction_revoked", c.ID, camp.ID,
		fmt.Sprintf("revocation v%d of v%d", rev.Version, hist[len(hist)-1].Version)); err != nil {
		a.log.Error("audit failed", "err", err)
	}
	a.log.Info("forwarding instruction revoked", "client", c.ID, "campaign", camp.ID, "version", rev.Version)
	out := instructionToJSON(rev)
	writeJSON(w, http.StatusCreated, map[string]any{
		"revocation": out,
		"effect":     "forwarding stops within seconds; members already added to platform audiences are being removed",
	})
}

// MaxLedgerRows bounds one ledger answer.
const MaxLedgerRows = 10000

func (a *API) ledger(w http.ResponseWriter, r *http.Request) {
	c, camp, ok := a.ownCampaign(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	to := a.now().UTC().Truncate(24 * time.Hour)
	var err error
	if s := q.Get("to"); s != "" {
		if to, err = parseDay(s); err != nil {
			a.fail(w, r, &apiError{http.StatusBadRequest, "to: want YYYY-MM-DD"})
			return
		}
	}
	from := to.AddDate(0, 0, -29)
	if s := q.Get("from"); s != "" {
		if from, err = parseDay(s); err != nil {
			a.fail(w, r, &apiError{http.StatusBadRequest, "from: want YYYY-MM-DD"})
			return
		}
	}
	if from.After(to) || to.Sub(from) > MaxRangeDays*24*time.Hour {
		a.fail(w, r, &apiError{http.StatusBadRequest, "from: must be before to, at most 400 days"})
		return
	}
	limit := 1000
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > MaxLedgerRows {
			a.fail(w, r, &apiError{http.StatusBadRequest, fmt.Sprintf("limit: 1 to %d", MaxLedgerRows)})
			return
		}
	}
	rows, err := a.st.Ledger(r.Context(), c.ID, camp.ID, from, to, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	dead, err := a.st.DeadLetters(r.Context(), c.ID, camp.ID, from, to, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// Requests whose intent was recorded but whose answer never was (the
	// process stopped in between); younger ones may still be in flight.
	unconfirmed, err := a.st.UnconfirmedIntents(r.Context(), c.ID, camp.ID, from, to, a.now().Add(-store.UnconfirmedAfter), limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if rows == nil {
		rows = []store.LedgerRow{}
	}
	if dead == nil {
		dead = []store.DeadLetter{}
	}
	if unconfirmed == nil {
		unconfirmed = []store.Unconfirmed{}
	}
	hist, err := a.st.Instructions(r.Context(), c.ID, camp.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	status, err := a.instructionStatus(r.Context(), hist)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"campaign": camp.ID, "from": from.Format(time.DateOnly), "to": to.Format(time.DateOnly),
		"batches": rows, "dead_letters": dead, "unconfirmed": unconfirmed, "status": status,
	})
}
