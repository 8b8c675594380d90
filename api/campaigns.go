package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jobpixel/jobpixel/internal/store"
)

// campaignJSON is a campaign as the API shows it.
type campaignJSON struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	Consentless  string   `json:"consentless"`
	Sensitive    bool     `json:"sensitive"`
	AllowedHosts []string `json:"allowed_hosts"`
	// SignedEndpoint says whether the campaign has a server-to-server
	// secret (the secret itself is shown only by POST .../secret).
	SignedEndpoint bool      `json:"signed_endpoint"`
	RequireSigned  bool      `json:"require_signed_applications"`
	UpdatedAt      time.Time `json:"updated_at"`
}

func toJSON(c store.Campaign) campaignJSON {
	hosts := c.AllowedHosts
	if hosts == nil {
		hosts = []string{}
	}
	return campaignJSON{ID: c.ID, Name: c.Name, Consentless: string(c.Consentless), Sensitive: c.Sensitive,
		AllowedHosts: hosts, SignedEndpoint: c.S2SSecret != "", RequireSigned: c.RequireSigned, UpdatedAt: c.UpdatedAt}
}

// campaignInput is the body of POST and PATCH /api/v1/campaigns.
type campaignInput struct {
	Name          *string   `json:"name"`
	Consentless   *string   `json:"consentless"`
	Sensitive     *bool     `json:"sensitive"`
	AllowedHosts  *[]string `json:"allowed_hosts"`
	RequireSigned *bool     `json:"require_signed_applications"`
}

const maxBody = 64 << 10

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &apiError{http.StatusBadRequest, "invalid JSON body: " + err.Error()}
	}
	return nil
}

func (in *campaignInput) apply(c *store.Campaign) error {
	if in.Name != nil {
		n := strings.TrimSpace(*in.Name)
		if n == "" || len(n) > 200 {
			return &apiError{http.StatusBadRequest, "name: must be 1 to 200 characters"}
		}
		c.Name = n
	}
	if in.Consentless != nil {
		switch m := store.ConsentlessMode(*in.Consentless); m {
		case store.ConsentlessCount, store.ConsentlessDrop:
			c.Consentless = m
		default:
			return &apiError{http.StatusBadRequest, fmt.Sprintf("consentless: must be %q or %q", store.ConsentlessCount, store.ConsentlessDrop)}
		}
	}
	if in.Sensitive != nil {
		c.Sensitive = *in.Sensitive
	}
	if in.AllowedHosts != nil {
		hosts, err := allowedHosts(*in.AllowedHosts)
		if err != nil {
			return err
		}
		c.AllowedHosts = hosts
	}
	if in.RequireSigned != nil {
		if *in.RequireSigned && c.S2SSecret == "" {
			return &apiError{http.StatusBadRequest, "require_signed_applications: create the campaign's secret first (POST /api/v1/campaigns/{id}/secret)"}
		}
		c.RequireSigned = *in.RequireSigned
	}
	return nil
}

// hostPattern is a host name, or "*." and a domain for its subdomains.
var hostPattern = regexp.MustCompile(`^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// allowedHosts validates and normalises (lowercase, no duplicates, sorted)
// a campaign's allowed page hosts.
func allowedHosts(in []string) ([]string, error) {
	if len(in) > 50 {
		return nil, &apiError{http.StatusBadRequest, "allowed_hosts: at most 50 hosts"}
	}
	out := make([]string, 0, len(in))
	for i, h := range in {
		h = strings.ToLower(strings.TrimSpace(h))
		if len(h) > 253 || !hostPattern.MatchString(h) || h == "*" {
			return nil, &apiError{http.StatusBadRequest, fmt.Sprintf("allowed_hosts[%d]: %q is not a host name (e.g. jobs.example.com) or *.domain", i, in[i])}
		}
		out = append(out, h)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func (a *API) listCampaigns(w http.ResponseWriter, r *http.Request) {
	c, err := a.client(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	cs, err := a.st.ClientCampaigns(r.Context(), c.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]campaignJSON, len(cs))
	for i, x := range cs {
		out[i] = toJSON(x)
	}
	writeJSON(w, http.StatusOK, map[string]any{"campaigns": out})
}

func (a *API) createCampaign(w http.ResponseWriter, r *http.Request) {
	c, err := a.client(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var in campaignInput
	if err := decodeBody(r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	if in.Name == nil {
		a.fail(w, r, &apiError{http.StatusBadRequest, "name: required"})
		return
	}
	camp := store.Campaign{Consentless: store.ConsentlessCount}
	if err := in.apply(&camp); err != nil {
		a.fail(w, r, err)
		return
	}
	created, err := a.st.CreateCampaign(r.Context(), c.ID, camp.Name,
		store.CampaignOptions{Consentless: camp.Consentless, Sensitive: camp.Sensitive, AllowedHosts: camp.AllowedHosts})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("campaign created", "client", c.ID, "campaign", created.ID)
	writeJSON(w, http.StatusCreated, toJSON(created))
}

func (a *API) ownCampaign(w http.ResponseWriter, r *http.Request) (store.Client, store.Campaign, bool) {
	c, err := a.client(r)
	if err != nil {
		a.fail(w, r, err)
		return c, store.Campaign{}, false
	}
	id := r.PathValue("id")
	if !store.ValidID(id) {
		a.fail(w, r, &apiError{http.StatusNotFound, "campaign not found"})
		return c, store.Campaign{}, false
	}
	camp, err := a.clientCampaign(r.Context(), c.ID, id)
	if err != nil {
		a.fail(w, r, err)
		return c, store.Campaign{}, false
	}
	return c, camp, true
}

// clientCampaign returns campaign id of client clientID; one of another
// client, or none, is the same 404.
func (a *API) clientCampaign(ctx context.Context, clientID, id string) (store.Campaign, error) {
	camp, err := a.st.ClientCampaign(ctx, clientID, id)
	if errors.Is(err, store.ErrNotFound) {
		err = &apiError{http.StatusNotFound, "campaign not found"}
	}
	return camp, err
}

func (a *API) getCampaign(w http.ResponseWriter, r *http.Request) {
	if _, camp, ok := a.ownCampaign(w, r); ok {
		writeJSON(w, http.StatusOK, toJSON(camp))
	}
}

func (a *API) patchCampaign(w http.ResponseWriter, r *http.Request) {
	c, camp, ok := a.ownCampaign(w, r)
	if !ok {
		return
	}
	var in campaignInput
	if err := decodeBody(r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := in.apply(&camp); err != nil {
		a.fail(w, r, err)
		return
	}
	updated, err := a.st.UpdateCampaign(r.Context(), camp)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("campaign updated", "client", c.ID, "campaign", camp.ID, "consentless", camp.Consentless, "sensitive", camp.Sensitive,
		"allowed_hosts", len(camp.AllowedHosts), "require_signed", camp.RequireSigned)
	writeJSON(w, http.StatusOK, toJSON(updated))
}

// rotateSecret answers POST /api/v1/campaigns/{id}/secret: a new secret for
// the campaign's signed server-to-server endpoint, shown this once (the old
// one stops working within seconds).
func (a *API) rotateSecret(w http.ResponseWriter, r *http.Request) {
	c, camp, ok := a.ownCampaign(w, r)
	if !ok {
		return
	}
	updated, err := a.st.RotateS2SSecret(r.Context(), camp)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("campaign secret rotated", "client", c.ID, "campaign", camp.ID)
	writeJSON(w, http.StatusOK, map[string]any{"campaign": toJSON(updated), "secret": updated.S2SSecret})
}

// eraseCampaign deletes every visitor-derived row of the campaign: the
// client's documented instruction to delete. 202: the deletion is recorded
// and runs in the background (ClickHouse mutations).
func (a *API) eraseCampaign(w http.ResponseWriter, r *http.Request) {
	c, camp, ok := a.ownCampaign(w, r)
	if !ok {
		return
	}
	if err := a.st.EraseCampaign(r.Context(), "client:"+c.ID, c.ID, camp.ID); err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("campaign data erased on the client's request", "client", c.ID, "campaign", camp.ID)
	writeJSON(w, http.StatusAccepted, map[string]string{"campaign": camp.ID, "status": "erasing"})
}
